"""The measured capacity's keeping: one file per machine and stack shape, reused while fresh."""

from __future__ import annotations

import orjson
import pytest

from exoarmur_cli import capacity_probe

HOUR_S = 3600.0


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EXOARMUR_CACHE_DIR", str(tmp_path / "cache" / "exoarmur"))


def kept(path, measured_at_s: float, held: float | None = 120.0) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(orjson.dumps({"admission": {"held_per_s": held}, "probe": {"measured_at_s": measured_at_s}}))


def test_each_stack_shape_has_a_file_of_its_own_in_the_cache_dir(tmp_path) -> None:
    one, three = capacity_probe.cache_file(1), capacity_probe.cache_file(3)
    assert one != three and one.parent == three.parent == tmp_path / "cache" / "exoarmur"
    assert capacity_probe.cache_file(3) == three  # the same machine and shape: the same file
    # more cells, or more tenants, nodes and peers: another shape, measured on its own
    assert len({one, capacity_probe.cache_file(1, cells=4), capacity_probe.cache_file(1, scale=10)}) == 3
    assert capacity_probe.cache_file(1, cells=2, scale=1) == one  # the defaults are the default shape


def test_without_a_cache_dir_of_its_own_it_is_exoarmur_in_the_users_cache(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("EXOARMUR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert capacity_probe.cache_dir() == tmp_path / "xdg" / "exoarmur"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert capacity_probe.cache_dir() == tmp_path / "home" / ".cache" / "exoarmur"


def test_the_shape_names_the_machine_the_stack_the_version_and_the_bound() -> None:
    assert set(capacity_probe.shape(3)) == {"cpu_model", "cores", "nats_cluster", "cells", "scale", "exoarmur",
                                            "held_p99_ms"}


def test_a_measurement_is_reused_only_while_fresh(tmp_path) -> None:
    path = capacity_probe.cache_file(1)
    now = 1_000_000.0
    kept(path, now - 2 * HOUR_S)
    assert capacity_probe.fresh_measurement(path, now)
    assert not capacity_probe.fresh_measurement(path, now + capacity_probe.MAX_AGE_H * HOUR_S)
    kept(path, now + HOUR_S)  # from the future: a clock that moved, not a measurement to trust
    assert not capacity_probe.fresh_measurement(path, now)


@pytest.mark.parametrize("content", [b"", b"{", b'{"admission": {"held_per_s": 5}}', b"[]",
                                     b'{"admission": {"held_per_s": null}, "probe": {"measured_at_s": 0}}'])
def test_a_file_that_is_not_a_whole_measurement_is_measured_again(tmp_path, content: bytes) -> None:
    path = capacity_probe.cache_file(1)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    assert not capacity_probe.fresh_measurement(path, 10.0)


def test_no_file_is_no_measurement() -> None:
    assert not capacity_probe.fresh_measurement(capacity_probe.cache_file(1), 10.0)
