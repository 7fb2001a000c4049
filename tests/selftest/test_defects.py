"""Every gate can go red: each injected defect turns the gate it threatens RED, naming the
expected criterion. Slow (a quick gate run per defect): run with ``pytest -m selftest``."""

from __future__ import annotations

import pytest

from exoarmur.defects import Defect
from exoarmur_cli.selftest import EXPECTED, DefectOutcome, run_defect, self_test

pytestmark = pytest.mark.selftest


def test_every_defect_has_an_expected_gate() -> None:
    assert set(EXPECTED) == set(Defect)


@pytest.mark.parametrize("defect", list(EXPECTED), ids=lambda d: d.value)
def test_defect_turns_its_gate_red(defect: Defect, tmp_path) -> None:
    gate, metric = EXPECTED[defect]
    # No index.html: nobody opens these bundles (deleted with tmp_path); `exoarmur self-test` keeps it.
    outcome = run_defect(defect, tmp_path, seed=0, progress=lambda _line: None, html_report=False)
    # RED, or INCOMPLETE when only the scenarios the criterion needs ran (selftest.SCENARIOS):
    # then every one of them must have run, and the expected criterion must be among the failed.
    assert outcome.verdicts[gate] in ("RED", "INCOMPLETE") and not outcome.not_run, outcome
    assert outcome.verdicts[gate] == "RED" or outcome.skipped, outcome
    assert metric in outcome.failed_metrics(gate), outcome
    assert DefectOutcome(defect.value, gate, metric, (outcome,)).caught, outcome
    pass_fail = (tmp_path / outcome.bundle.split("/")[-1] / "PASS_FAIL.txt").read_text()
    assert "NOT A CLEAN RUN" in pass_fail and defect.value in pass_fail


def test_defect_runs_side_by_side_are_each_judged_on_their_own(tmp_path) -> None:
    """``exoarmur self-test --jobs 2``: two runs at once in worker processes, each on its own stack,
    each judged apart (a catch reported for one defect is that defect's own run)."""
    chosen = [Defect.TENANT_LEAK, Defect.NO_BREAKER]
    lines: list[str] = []
    report = self_test(tmp_path, chosen, clean_runs=0, seed=0, progress=lines.append, jobs=2)
    assert [d.defect for d in report.defects] == [d.value for d in chosen]
    assert all(d.caught for d in report.defects), report
    assert report.ok and lines[0] == "2 defect runs and 0 clean runs, 2 at a time", lines
    bundles = {run.bundle for d in report.defects for run in d.runs}
    assert len(bundles) == 2
    for outcome in report.defects:
        pass_fail = (tmp_path / outcome.runs[0].bundle.split("/")[-1] / "PASS_FAIL.txt").read_text()
        assert outcome.defect in pass_fail and all(d.value not in pass_fail for d in chosen if d.value != outcome.defect)
