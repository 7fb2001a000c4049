"""The page cache of one lazy file, over a real backing file (no FUSE needed)."""

from __future__ import annotations

import os

import pytest

from exoarmur_cli.faults.lazyfs.pagecache import PAGE, CachedFile


@pytest.fixture
def backing(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"A" * (PAGE + 100))
    fd = os.open(path, os.O_RDWR)
    yield path, fd
    os.close(fd)


def test_writes_are_read_back_but_reach_the_backing_file_only_on_sync(backing):
    path, fd = backing
    cache = CachedFile(fd)
    cache.write(b"xyz", PAGE - 1)  # spans two pages
    assert cache.read(5, PAGE - 2) == b"Axyz" + b"A"
    assert path.read_bytes() == b"A" * (PAGE + 100)
    assert cache.sync() == PAGE + 100
    assert path.read_bytes()[PAGE - 2:PAGE + 3] == b"AxyzA"
    assert not cache.dirty and cache.bytes_written == 0


def test_drop_forgets_writes_and_size_changes(backing):
    path, fd = backing
    cache = CachedFile(fd)
    cache.write(b"B" * 10, PAGE + 200)  # extends the file
    cache.truncate(10)
    lost = cache.drop()
    assert lost.bytes_written == 10 and lost.truncated
    assert cache.size == PAGE + 100
    assert cache.read(PAGE + 100, 0) == b"A" * (PAGE + 100)


def test_truncate_then_extend_reads_zeros_not_old_data(backing):
    _, fd = backing
    cache = CachedFile(fd)
    cache.truncate(5)
    cache.write(b"Z", 20)
    assert cache.size == 21
    assert cache.read(100, 0) == b"AAAAA" + bytes(15) + b"Z"
    cache.sync()
    assert os.pread(fd, 100, 0) == b"AAAAA" + bytes(15) + b"Z"
    assert os.fstat(fd).st_size == 21


def test_read_past_the_end_is_empty(backing):
    _, fd = backing
    cache = CachedFile(fd)
    assert cache.read(10, PAGE + 100) == b""
    assert cache.read(10, PAGE + 95) == b"A" * 5
