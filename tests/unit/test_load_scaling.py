"""Load that scales out: the distributed workers' histories merge into one, and a bigger stack gets a plan that reaches every node."""

from __future__ import annotations

import orjson

from exoarmur_cli.load.runner import merge_histories, worker_history


def _write(path, rows) -> None:
    path.write_bytes(b"".join(orjson.dumps(row) + b"\n" for row in rows))


def test_parts_merge_in_time_order_numbered_afresh_and_are_removed(tmp_path) -> None:
    into = tmp_path / "load-history.jsonl"
    parts = [worker_history(into, 0), worker_history(into, 1)]
    assert [p.name for p in parts] == ["load-history.worker0.jsonl", "load-history.worker1.jsonl"]
    _write(parts[0], [{"index": 0, "time_ms": 1.0, "v": "a"}, {"index": 1, "time_ms": 5.0, "v": "c"}])
    _write(parts[1], [{"index": 0, "time_ms": 3.0, "v": "b"}, {"index": 1, "time_ms": 5.0, "v": "d"}])
    merge_histories(parts, into)
    rows = [orjson.loads(line) for line in into.read_bytes().splitlines()]
    assert [(r["index"], r["v"]) for r in rows] == [(0, "a"), (1, "b"), (2, "c"), (3, "d")]
    assert not any(p.exists() for p in parts)


def test_a_worker_that_wrote_nothing_is_no_error(tmp_path) -> None:
    into = tmp_path / "load-history.jsonl"
    merge_histories([worker_history(into, 0)], into)
    assert into.read_bytes() == b""


def test_the_sustained_phase_is_lengthened_only_when_it_cannot_reach_every_node() -> None:
    from exoarmur_cli.scenarios.capacity import sustained_s

    assert sustained_s(8, 500, 135) == 8  # the seed's size: 2 x 500 / 135 = 7.4 s fits in the plan
    assert sustained_s(8, 5000, 135) == 2 * 5000 / 135  # --scale 10: 74 s


def test_the_default_workers_are_what_the_machine_has_sharing_the_users_evenly() -> None:
    from exoarmur_cli.load.runner import workers_for

    assert workers_for(500, 2) == 2
    assert workers_for(500, 3) == 2  # 500 users do not split three ways
    assert workers_for(500, 8) == 5
    assert workers_for(500, 1) == 0 and workers_for(500, None) == 0  # one CPU: one process


def test_a_layout_counts_its_workers_and_refuses_an_uneven_share() -> None:
    import pytest

    from exoarmur_cli.load.runner import LoadLayout

    assert LoadLayout().for_users(500, 2) == LoadLayout(workers=2)  # None: what the machine has
    counted = LoadLayout(workers=2, remote_workers=2).for_users(500, 8)
    assert counted.workers == 2 and counted.all_workers == 4
    assert LoadLayout(workers=0).for_users(7, 2).all_workers == 0  # one process takes any count
    with pytest.raises(ValueError, match="500 users .* do not divide evenly among 3 Locust workers"):
        LoadLayout(workers=2, remote_workers=1).for_users(500, 2)
    with pytest.raises(ValueError, match="negative"):
        LoadLayout(workers=-1).for_users(500, 2)
