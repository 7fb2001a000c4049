"""The self-test's schedule, with the runs themselves replaced by hand-made results: clean runs go
first into the same pool as the defect runs, every run is reported where it belongs, and a clean
run that is not green fails the self-test."""

from __future__ import annotations

from exoarmur.defects import Defect
from exoarmur_cli import selftest
from exoarmur_cli.selftest import EXPECTED, FailedCriterion, JudgedRun


def fake_runs(monkeypatch, clean_overall: str = "GREEN") -> list[tuple[str, int]]:
    started: list[tuple[str, int]] = []

    def one_run(defect, out, seed, inputs) -> JudgedRun:
        started.append((defect.value if defect else "clean", seed))
        if defect is None:
            return JudgedRun(seed, clean_overall, {g: clean_overall for g in range(1, 9)}, (), f"clean-{seed}")
        gate, metric = EXPECTED[defect]
        return JudgedRun(seed, "RED", {gate: "RED"}, (FailedCriterion(gate, metric, f"{metric} == 0", 1.0),),
                         f"{defect.value}-{seed}")

    monkeypatch.setattr(selftest, "_one_run", one_run)
    return started


def test_clean_runs_go_first_and_every_run_lands_in_its_place(tmp_path, monkeypatch):
    started = fake_runs(monkeypatch)
    lines: list[str] = []
    chosen = [Defect.TENANT_LEAK, Defect.NO_BREAKER]
    report = selftest.self_test(tmp_path, chosen, clean_runs=2, seed=5, progress=lines.append, seeds=2)
    assert started[:2] == [("clean", 5), ("clean", 6)]  # the longest runs first: the pool's tail stays short
    assert sorted(started[2:]) == [("no-breaker", 5), ("no-breaker", 6), ("tenant-leak", 5), ("tenant-leak", 6)]
    assert [run.seed for run in report.clean_runs] == [5, 6]
    assert [(d.defect, [r.seed for r in d.runs]) for d in report.defects] == [("tenant-leak", [5, 6]),
                                                                              ("no-breaker", [5, 6])]
    assert report.ok
    assert lines[0] == "4 defect runs and 2 clean runs, 1 at a time"
    assert "clean run (seed 5): GREEN" in lines


def test_a_clean_run_that_is_not_green_fails_the_self_test(tmp_path, monkeypatch):
    fake_runs(monkeypatch, clean_overall="RED")
    report = selftest.self_test(tmp_path, [Defect.TENANT_LEAK], clean_runs=1, seed=0, progress=lambda line: None)
    assert report.defects[0].caught and not report.ok
