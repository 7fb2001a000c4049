"""``exoarmur self-test``: every gate must be able to go red.

For each injectable defect, run the scenarios its expected criterion needs (``SCENARIOS``, of the
gate it threatens) against a full stack carrying that defect, on each of N seeds, and require that
criterion among the failed ones on every seed (the gate RED, or INCOMPLETE only for the gate's
scenarios deliberately left out, every one of the subset having run). Run the clean stack too, in
the same pool (each clean run beside the defect runs, as a loaded machine would have it), and
require all green every time.
The matrix, its JSON and its JUnit XML are built in ``selftest_report``. A defect that escapes is fixed
with a sharper scenario or criterion, never with a special case: nothing here is visible to the
scenarios or checkers, which never learn which defect is injected.
"""

from __future__ import annotations

import asyncio
import multiprocessing
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from exoarmur.defects import Defect
from exoarmur_cli.gates import GateResult, Verdict
from exoarmur_cli.run import Run, RunOptions


@dataclass(frozen=True)
class RunInputs:
    """What every run of a self-test is built from besides its defect and seed: the gate and
    scenario folders (None: the shipped ones) and the capacity document it is sized from (None:
    the declared numbers; a clean stack's measurement, so a defect run is sized as a clean one)."""

    gates_dir: Path | None = None
    scenarios_dir: Path | None = None
    capacity_from: Path | None = None

    def options(self, seed: int, out: Path, **run) -> RunOptions:
        """A quick run's options with these inputs."""
        return RunOptions(profile="quick", seed=seed, out=out, gates_dir=self.gates_dir,
                          scenarios_dir=self.scenarios_dir, capacity_from=self.capacity_from, **run)


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
    Defect.BREAKER_EAGER: (7, "breaker_trips_below_policy"),
    Defect.BREAKER_MISCOUNT: (7, "breaker_trip_failures_unseen"),
    Defect.BREAKER_LONG_WINDOW: (7, "breaker_trip_calls_unseen"),
    Defect.LATE_APPROVAL_ACCEPTED: (5, "approval_late_grant_executed"),
}

# defect -> the scenarios its run drives: those whose checkers compute the expected criterion's
# metric (a subset of its gate's scenarios; tests/unit/test_selftest_subsets.py holds each one to
# the gate file's ``report``, the metric's scenario prefix or the checker's own scenario constant).
# The stack is the full one, carrying the defect; the gate's other scenarios are simply not run,
# so the gate is INCOMPLETE unless RED, and the defect counts as caught only if its criterion
# failed and every scenario of its subset ran.
SCENARIOS: dict[Defect, tuple[str, ...]] = {
    Defect.MEMORY_STORAGE: ("persistence",),  # checkers.durability.persistence: the persistence snapshots
    Defect.LAZY_FSYNC: ("power_loss",),
    Defect.LEDGER_NO_FSYNC: ("power_loss",),
    Defect.ACK_BEFORE_DURABLE: ("restart",),
    Defect.NONDETERMINISTIC_DECISION: ("replay",),
    Defect.KILLSWITCH_IGNORED: ("killswitch",),
    Defect.KILLSWITCH_FAIL_OPEN: ("killswitch",),
    Defect.APPROVAL_BYPASS: ("killswitch",),
    Defect.TENANT_LEAK: ("tenancy",),
    Defect.NO_RATE_LIMIT: ("tenancy",),
    Defect.NATS_ANONYMOUS: ("tenancy",),
    Defect.NATS_WIDE_ROLE: ("tenancy",),
    Defect.EFFECTOR_NO_AUTH: ("tenancy",),
    Defect.NO_IDEMPOTENCY: ("chaos",),
    Defect.FRESH_EFFECTOR_KEY: ("retry", "chaos"),  # lost answers (retry) and resets (chaos) retry an applied call
    Defect.NO_TIMEOUT: ("timeout",),
    Defect.UNBOUNDED_RETRY: ("timeout", "retry", "breaker"),  # checkers.wire.SINGLE_DELIVERY
    Defect.NO_BREAKER: ("breaker",),
    Defect.SILENT_DROP: ("backpressure",),
    Defect.SWITCH_CACHE: ("killswitch",),
    Defect.RETRY_NO_BACKOFF: ("breaker",),  # checkers.wire.EFFECTOR_DOWN
    Defect.EFFECT_WRONG_NODE: ("tenancy",),
    Defect.BATCH_FETCH_WAIT: ("deployment",),
    Defect.BREAKER_EAGER: ("breaker",),
    Defect.BREAKER_MISCOUNT: ("retry", "breaker"),  # checkers.wire.TRIPS_ON_WIRE
    Defect.BREAKER_LONG_WINDOW: ("retry", "breaker"),  # checkers.wire.TRIPS_ON_WIRE (breaker's history phase)
    Defect.LATE_APPROVAL_ACCEPTED: ("killswitch",),
}


@dataclass(frozen=True)
class FailedCriterion:
    gate: int
    metric: str
    expr: str
    value: float | None  # None: nothing was measured


@dataclass(frozen=True)
class JudgedRun:
    """One run of the self-test as judged: each gate's verdict and every criterion that failed."""

    seed: int
    overall: str
    verdicts: dict[int, str]  # gate -> GREEN | RED | INCOMPLETE
    failed: tuple[FailedCriterion, ...]
    bundle: str
    skipped: tuple[str, ...] = ()  # scenarios of the judged gates deliberately not run (``SCENARIOS``)
    not_run: tuple[str, ...] = ()  # scenarios meant to run that did not finish (NOT RUN or crashed)

    def failed_metrics(self, gate: int) -> tuple[str, ...]:
        return tuple(f.metric for f in self.failed if f.gate == gate)

    def measured_failures(self, gate: int, also: str = "") -> tuple[str, ...]:
        """The failed criteria of ``gate`` that failed on a measurement (not for want of one),
        and ``also`` if it failed at all."""
        return tuple(f.metric for f in self.failed if f.gate == gate and (f.value is not None or f.metric == also))


def judged_run(seed: int, overall: str, results: list[GateResult], bundle: str,
               skipped: tuple[str, ...] = ()) -> JudgedRun:
    not_run = tuple(s for r in results for s in r.scenarios_missing if s not in skipped)
    return JudgedRun(seed, overall, {r.gate_id: r.verdict.value for r in results},
                     tuple(FailedCriterion(r.gate_id, c.metric, c.expr, c.value) for r in results for c in r.failed),
                     bundle, skipped, not_run)


@dataclass(frozen=True)
class DefectOutcome:
    """One defect over every seed: caught only when, on each seed, its gate is RED with the
    expected criterion among the failed ones."""

    defect: str
    gate: int
    expected_metric: str
    runs: tuple[JudgedRun, ...]  # one per seed

    def caught_on(self, run: JudgedRun) -> bool:
        failed = [f for f in run.failed if f.gate == self.gate and f.metric == self.expected_metric]
        if not failed:
            return False
        verdict = run.verdicts.get(self.gate)
        if not run.skipped:
            return verdict == Verdict.RED.value
        # Only the scenarios the criterion needs ran (SCENARIOS; a unit test holds each subset to
        # the scenario computing the metric): the gate is INCOMPLETE by design, or RED; caught only
        # if every one of them did run (a crashed scenario's counts read 0 and prove nothing).
        # As in a full run, a criterion whose measurement the defect prevents (a hang that never
        # resolves has no resolution time) fails as missing, and that is the catch.
        return verdict in (Verdict.RED.value, Verdict.INCOMPLETE.value) and not run.not_run

    @property
    def caught(self) -> bool:
        return bool(self.runs) and all(self.caught_on(run) for run in self.runs)

    @property
    def escaped_seeds(self) -> tuple[int, ...]:
        return tuple(run.seed for run in self.runs if not self.caught_on(run))


@dataclass
class SelfTestReport:
    defects: list[DefectOutcome] = field(default_factory=list)
    clean_runs: list[JudgedRun] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(d.caught for d in self.defects) and all(r.overall == Verdict.GREEN.value for r in self.clean_runs)


def run_defect(defect: Defect, out: Path, seed: int, progress: Callable[[str], None],
               inputs: RunInputs = RunInputs(), html_report: bool = True) -> JudgedRun:
    """One quick run of the gate ``defect`` threatens, on a full stack carrying it, driving only
    the scenarios its expected criterion needs (``SCENARIOS``)."""
    gate, _ = EXPECTED[defect]
    run = Run(inputs.options(seed, out, gates=(gate,), defects=(defect.value,), scenarios=SCENARIOS[defect],
                             html_report=html_report), progress)
    outcome = asyncio.run(run.execute())
    skipped = tuple(s for r in outcome.results for s in r.scenarios if s not in SCENARIOS[defect])
    return judged_run(seed, outcome.overall.value, outcome.results, str(outcome.bundle), skipped)


def run_clean(out: Path, seed: int, progress: Callable[[str], None], inputs: RunInputs = RunInputs()) -> JudgedRun:
    outcome = asyncio.run(Run(inputs.options(seed, out), progress).execute())
    return judged_run(seed, outcome.overall.value, outcome.results, str(outcome.bundle))


def _quiet(_line: str) -> None:
    """A defect run's own progress is not shown (and, run in a worker process, must be picklable)."""


_stop_event = None  # in a worker process: set once any run was interrupted (see ``_runs``)


def _init_worker(stop) -> None:
    global _stop_event
    _stop_event = stop


def _one_run(defect: Defect | None, out: Path, seed: int, inputs: RunInputs) -> JudgedRun:
    """A defect's run, or (``defect`` None) a clean one."""
    if defect is None:
        return run_clean(out, seed, _quiet, inputs)
    return run_defect(defect, out, seed, _quiet, inputs)


def _pooled_run(defect: Defect | None, out: Path, seed: int, inputs: RunInputs) -> JudgedRun | None:
    """``_one_run`` in a worker, or None when the self-test is being stopped. The pool hands a
    worker its next run before the parent can cancel it, so after Ctrl-C (which every worker gets
    too) a worker could start a whole new stack: the shared event stops that."""
    if _stop_event.is_set():
        return None
    try:
        return _one_run(defect, out, seed, inputs)
    except BaseException:
        _stop_event.set()
        raise


Work = tuple[Defect | None, int]  # (the defect, None for a clean run; the seed)


def _runs(work: list[Work], out: Path, inputs: RunInputs, jobs: int) -> Iterator[tuple[Defect | None, JudgedRun]]:
    """Each run of ``work``, ``jobs`` at a time, as each ends. Each run is a whole stack of its
    own (its own ports, temp dirs and process group), so runs side by side share only the CPUs:
    they mostly wait on their scenarios' observing windows."""
    if jobs == 1:
        for defect, seed in work:
            yield defect, _one_run(defect, out, seed, inputs)
        return
    # spawn, not fork: a worker starts clean, without this process's event loop or reaper state
    context = multiprocessing.get_context("spawn")
    stop = context.Event()
    pool = ProcessPoolExecutor(jobs, mp_context=context, initializer=_init_worker, initargs=(stop,))
    try:
        pending = {pool.submit(_pooled_run, defect, out, seed, inputs): defect for defect, seed in work}
        for future in as_completed(pending):
            if (run := future.result()) is not None:
                yield pending[future], run
    except BaseException:
        stop.set()  # Ctrl-C or a failed run: start nothing more; the running ones reap their own stacks
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def self_test(out: Path, defects: list[Defect], clean_runs: int, seed: int,
              progress: Callable[[str], None], seeds: int = 1, inputs: RunInputs = RunInputs(),
              jobs: int = 1) -> SelfTestReport:
    """Each defect on ``seeds`` seeds (``seed``, ``seed + 1``, ...) and ``clean_runs`` clean runs
    (seeds ``seed``, ``seed + 1``, ...), ``jobs`` runs at a time, every one built from ``inputs``.
    The clean runs go first: each is a whole quick run, the longest of the pool, so starting them
    first keeps the pool's tail short; and each runs beside defect runs, so its latency-judged
    criteria hold on a loaded machine, as the gates' margins claim."""
    report = SelfTestReport()
    work: list[Work] = [(None, seed + n) for n in range(clean_runs)]
    work += [(defect, seed + n) for defect in defects for n in range(seeds)]
    progress(f"{len(work) - clean_runs} defect runs and {clean_runs} clean runs, {jobs} at a time")
    runs: dict[Defect, list[JudgedRun]] = {defect: [] for defect in defects}
    for defect, run in _runs(work, out, inputs, jobs):
        if defect is None:
            report.clean_runs.append(run)
            progress(f"clean run (seed {run.seed}): {run.overall}"
                     + (f" failed {', '.join(f.metric for f in run.failed)}" if run.failed else ""))
            continue
        gate, metric = EXPECTED[defect]
        runs[defect].append(run)
        judged = DefectOutcome(defect.value, gate, metric, (run,))
        progress(f"defect {defect.value} (gate {gate}, seed {run.seed}): "
                 f"{'caught' if judged.caught else 'ESCAPED'}: {run.verdicts.get(gate)} "
                 f"failed {', '.join(run.measured_failures(gate, metric)) or '-'}"
                 + (f" (not run: {', '.join(run.skipped)})" if run.skipped else ""))
    report.clean_runs.sort(key=lambda run: run.seed)
    for defect in defects:
        gate, metric = EXPECTED[defect]
        report.defects.append(DefectOutcome(defect.value, gate, metric,
                                            tuple(sorted(runs[defect], key=lambda run: run.seed))))
    return report
