"""``exoarmur self-test``: every gate must be able to go red.

For each injectable defect, run the scenarios of the gate it threatens against a stack carrying
that defect and require the gate RED with the expected criterion among the failed ones. Then run
the clean stack several times and require all green every time. A defect that escapes is fixed
with a sharper scenario or criterion, never with a special case: nothing here is visible to the
scenarios or checkers, which never learn which defect is injected.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from exoarmur.defects import Defect
from exoarmur_cli.gates import Verdict
from exoarmur_cli.run import Run, RunOptions

# defect -> (the gate it threatens, the criterion's metric that must be among the failed ones)
EXPECTED: dict[Defect, tuple[int, str]] = {
    Defect.MEMORY_STORAGE: (1, "acked_intents_lost"),
    Defect.LAZY_FSYNC: (1, "power_loss_acked_intents_lost"),
    Defect.LEDGER_NO_FSYNC: (1, "power_loss_acked_effects_lost"),
    Defect.ACK_BEFORE_DURABLE: (2, "restart_acked_without_terminal"),
    Defect.NONDETERMINISTIC_DECISION: (3, "decision_mismatches"),
    Defect.KILLSWITCH_IGNORED: (5, "executions_while_global_engaged"),
    Defect.KILLSWITCH_FAIL_OPEN: (5, "fail_closed_executions"),
    Defect.APPROVAL_BYPASS: (5, "approval_denied_executed"),
    Defect.TENANT_LEAK: (6, "cross_tenant_reads_leaked"),
    Defect.NO_RATE_LIMIT: (6, "noisy_tenant_rate_limited"),
    Defect.NATS_ANONYMOUS: (6, "nats_outsider_connections_accepted"),
    Defect.NATS_WIDE_ROLE: (6, "nats_forgeries_not_refused"),
    Defect.EFFECTOR_NO_AUTH: (6, "effector_unauthorized_accepted"),
    Defect.NO_IDEMPOTENCY: (7, "chaos_duplicates_accepted_as_new"),
    Defect.FRESH_EFFECTOR_KEY: (7, "duplicate_effects"),
    Defect.NO_TIMEOUT: (7, "hang_resolution_vs_intent_deadline"),
    Defect.UNBOUNDED_RETRY: (7, "attempts_over_policy_observed"),
    Defect.NO_BREAKER: (7, "breaker_opened"),
    Defect.SILENT_DROP: (8, "backpressure_acked_without_terminal"),
    Defect.SWITCH_CACHE: (5, "effects_past_switch_bound"),
    Defect.RETRY_NO_BACKOFF: (7, "retry_gap_median_ms_effector_down"),
    Defect.EFFECT_WRONG_NODE: (6, "effects_off_their_intent"),
    Defect.BATCH_FETCH_WAIT: (4, "first_intent_terminal_s"),
}


@dataclass(frozen=True)
class DefectOutcome:
    defect: str
    gate: int
    expected_metric: str
    verdict: str
    failed_metrics: tuple[str, ...]
    bundle: str

    @property
    def caught(self) -> bool:
        return self.verdict == Verdict.RED.value and self.expected_metric in self.failed_metrics


@dataclass
class SelfTestReport:
    defects: list[DefectOutcome] = field(default_factory=list)
    clean_runs: list[tuple[str, str]] = field(default_factory=list)  # (overall, bundle)

    @property
    def ok(self) -> bool:
        return all(d.caught for d in self.defects) and all(v == Verdict.GREEN.value for v, _ in self.clean_runs)


def run_defect(defect: Defect, out: Path, seed: int, progress: Callable[[str], None],
               definitions_dirs: tuple[Path | None, Path | None] = (None, None)) -> DefectOutcome:
    gate, metric = EXPECTED[defect]
    gates_dir, scenarios_dir = definitions_dirs
    run = Run(RunOptions(gates=(gate,), profile="quick", seed=seed, out=out, defects=(defect.value,),
                         gates_dir=gates_dir, scenarios_dir=scenarios_dir), progress)
    outcome = asyncio.run(run.execute())
    result = outcome.results[0]
    failed = tuple(c.metric for c in result.failed)
    return DefectOutcome(defect.value, gate, metric, result.verdict.value, failed, str(outcome.bundle))


def run_clean(out: Path, seed: int, progress: Callable[[str], None],
              definitions_dirs: tuple[Path | None, Path | None] = (None, None)) -> tuple[str, str]:
    gates_dir, scenarios_dir = definitions_dirs
    options = RunOptions(profile="quick", seed=seed, out=out, gates_dir=gates_dir, scenarios_dir=scenarios_dir)
    outcome = asyncio.run(Run(options, progress).execute())
    return outcome.overall.value, str(outcome.bundle)


def self_test(out: Path, defects: list[Defect], clean_runs: int, seed: int,
              progress: Callable[[str], None],
              definitions_dirs: tuple[Path | None, Path | None] = (None, None)) -> SelfTestReport:
    """``definitions_dirs``: the (gates, scenarios) folders to run with; None: the shipped ones."""
    report = SelfTestReport()
    for defect in defects:
        progress(f"defect {defect.value}: gate {EXPECTED[defect][0]}")
        report.defects.append(run_defect(defect, out, seed, lambda _line: None, definitions_dirs))
        progress(f"  {'caught' if report.defects[-1].caught else 'ESCAPED'}: {report.defects[-1].verdict} "
                 f"failed {', '.join(report.defects[-1].failed_metrics) or '-'}")
    for n in range(clean_runs):
        progress(f"clean run {n + 1}/{clean_runs}")
        report.clean_runs.append(run_clean(out, seed + n, lambda _line: None, definitions_dirs))
        progress(f"  {report.clean_runs[-1][0]}")
    return report


def matrix_rows(report: SelfTestReport) -> list[list[str]]:
    """defect × gate: the verdict in the threatened gate's column, '·' elsewhere."""
    rows = []
    for d in report.defects:
        cells = ["·"] * 8
        cells[d.gate - 1] = f"{d.verdict}{'' if d.caught else ' (ESCAPED)'}"
        rows.append([d.defect, *cells, d.expected_metric, "caught" if d.caught else "ESCAPED"])
    return rows
