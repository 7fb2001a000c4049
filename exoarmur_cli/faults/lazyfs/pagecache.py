"""The unsynced state of one file: what a page cache holds between a write and its fsync.

``CachedFile`` sits over a backing file descriptor. The backing file holds exactly what has
been made durable (by fsync/fdatasync); everything since lives here, in 4 KiB pages:

* writes land in dirty pages (a page first touched is loaded from the backing file);
* truncate changes the logical size only; bytes of the backing file past the smallest size
  seen since the last sync read as zeros (they were cut off, then perhaps re-extended);
* reads merge the dirty pages over the backing file, so the process sees its own writes;
* ``sync()`` writes the dirty pages and the size to the backing file and fsyncs it;
* ``drop()`` discards all of it — a power loss — and says how much was lost.

Pure over its file descriptor: no FUSE, no threads (the file system holds the lock).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

PAGE = 4096


@dataclass(frozen=True)
class Dropped:
    """What one power loss discarded from one file."""

    bytes_written: int  # bytes passed to write() since the last sync (overwrites counted)
    dirty_pages: int
    truncated: bool  # a size change (truncate or extension) was lost


class CachedFile:
    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.pages: dict[int, bytearray] = {}
        self.durable_size = os.fstat(fd).st_size
        self.size = self.durable_size
        self.valid_limit = self.durable_size  # backing bytes at or past this offset read as zeros
        self.bytes_written = 0
        self.size_changed = False

    @property
    def dirty(self) -> bool:
        return bool(self.pages) or self.size_changed

    def _backing(self, offset: int, length: int) -> bytes:
        """Durable bytes in [offset, offset+length), zero-padded, honouring pending truncation."""
        end = min(offset + length, self.valid_limit)
        data = os.pread(self.fd, end - offset, offset) if end > offset else b""
        return data + bytes(length - len(data))

    def _page(self, index: int) -> bytearray:
        page = self.pages.get(index)
        if page is None:
            page = bytearray(self._backing(index * PAGE, PAGE))
            self.pages[index] = page
        return page

    def write(self, data: bytes, offset: int) -> int:
        pos = 0
        while pos < len(data):
            index, within = divmod(offset + pos, PAGE)
            chunk = min(PAGE - within, len(data) - pos)
            self._page(index)[within:within + chunk] = data[pos:pos + chunk]
            pos += chunk
        if offset + len(data) > self.size:
            self.size = offset + len(data)
            self.size_changed = self.size != self.durable_size or self.size_changed
        self.bytes_written += len(data)
        return len(data)

    def read(self, size: int, offset: int) -> bytes:
        end = min(offset + size, self.size)
        if end <= offset:
            return b""
        if not self.pages and self.valid_limit >= end:
            return os.pread(self.fd, end - offset, offset)
        out = bytearray()
        pos = offset
        while pos < end:
            index, within = divmod(pos, PAGE)
            chunk = min(PAGE - within, end - pos)
            page = self.pages.get(index)
            out += page[within:within + chunk] if page is not None else self._backing(pos, chunk)
            pos += chunk
        return bytes(out)

    def truncate(self, length: int) -> None:
        if length == self.size:
            return
        if length < self.size:
            last = length // PAGE
            for index in [i for i in self.pages if i > last or (i == last and length % PAGE == 0)]:
                del self.pages[index]
            if last in self.pages:
                page = self.pages[last]
                page[length % PAGE:] = bytes(PAGE - length % PAGE)
            self.valid_limit = min(self.valid_limit, length)
        self.size = length
        self.size_changed = True

    def sync(self, datasync: bool = False) -> int:
        """Make everything durable; returns the bytes written to the backing file."""
        written = 0
        if self.size_changed or self.valid_limit < self.durable_size:
            os.ftruncate(self.fd, min(self.valid_limit, self.size))
            os.ftruncate(self.fd, self.size)
        for index in sorted(self.pages):
            start = index * PAGE
            if start >= self.size:
                continue
            chunk = bytes(self.pages[index][: min(PAGE, self.size - start)])
            written += os.pwrite(self.fd, chunk, start)
        (os.fdatasync if datasync else os.fsync)(self.fd)
        self.pages.clear()
        self.durable_size = self.valid_limit = self.size
        self.bytes_written = 0
        self.size_changed = False
        return written

    def drop(self) -> Dropped:
        """Power loss: forget everything unsynced; the file is what the backing file holds."""
        lost = Dropped(self.bytes_written, len(self.pages), self.size_changed)
        self.pages.clear()
        self.durable_size = self.size = self.valid_limit = os.fstat(self.fd).st_size
        self.bytes_written = 0
        self.size_changed = False
        return lost
