"""Where the CLI's sizing comes from: a measurement that held nothing, and an external stack's own
capacity document."""

from __future__ import annotations

from pathlib import Path

from exoarmur_cli import capacity_probe, cli_common
from exoarmur_cli.main import _with_the_stacks_capacity
from exoarmur_cli.run import RunOptions


def test_a_measurement_that_held_no_rate_sizes_nothing_and_says_so(tmp_path, monkeypatch, capsys) -> None:
    measured = tmp_path / "measured.json"
    measured.write_text('{"admission": {"held_per_s": null}}')  # even the lowest rate tried was not held
    monkeypatch.setattr(capacity_probe, "measured_capacity_file", lambda nats_cluster, progress, **shape: measured)
    assert cli_common.measured_capacity(1) is None
    said = " ".join(capsys.readouterr().err.split())
    assert "the measurement sizes nothing" in said and "the gates' declared numbers apply" in said, said


def test_a_measurement_that_held_a_rate_is_the_file_to_size_from(tmp_path, monkeypatch) -> None:
    measured = tmp_path / "measured.json"
    measured.write_text('{"admission": {"held_per_s": 240.0}}')
    monkeypatch.setattr(capacity_probe, "measured_capacity_file", lambda nats_cluster, progress, **shape: measured)
    assert cli_common.measured_capacity(1) == measured


def external(stack_dir: Path, **changes) -> RunOptions:
    return RunOptions(nats_url="nats://127.0.0.1:4222", api_url="http://127.0.0.1:8080", stack_config=stack_dir,
                      **changes)


def test_an_external_stack_sized_by_stack_up_sizes_the_gates_from_the_same_document(tmp_path) -> None:
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / "stack.json").write_text("{}")
    assert _with_the_stacks_capacity(external(stack_dir), None).capacity_from is None  # not sized: declared
    (stack_dir / "capacity_source.json").write_text('{"admission": {"held_per_s": 240.0}}')
    for given in (stack_dir, stack_dir / "stack.json"):  # the folder, or its stack.json
        assert _with_the_stacks_capacity(external(given), None).capacity_from == stack_dir / "capacity_source.json"
    other = tmp_path / "bench.json"
    assert _with_the_stacks_capacity(external(stack_dir, capacity_from=other), None).capacity_from == other
    assert _with_the_stacks_capacity(external(stack_dir), False).capacity_from is None  # --no-measure-capacity
    embedded = RunOptions(stack_config=stack_dir)  # only an external stack's folder is read
    assert _with_the_stacks_capacity(embedded, None).capacity_from is None


def test_a_scaled_run_is_sized_from_a_measurement_of_its_own_scale(tmp_path, monkeypatch) -> None:
    from exoarmur_cli.main import _with_measured_capacity

    measured = tmp_path / "measured.json"
    measured.write_text('{"admission": {"held_per_s": 240.0}}')
    asked: list[dict] = []
    monkeypatch.setattr(capacity_probe, "measured_capacity_file",
                        lambda nats_cluster, progress, **shape: asked.append({"nats_cluster": nats_cluster, **shape})
                        or measured)
    assert _with_measured_capacity(RunOptions(scale=10, nats_cluster=3)).capacity_from == measured
    assert asked == [{"nats_cluster": 3, "cells": 2, "scale": 10}]
