"""capacity checkers: load coverage counts only executed work; depth and memory are bounded."""

from __future__ import annotations

from builders import Hist, intent, intent_row, ledger_row, quick_record, recorded

from exoarmur_cli.checkers.capacity import backpressure, load, resources

BOUND = {"params": {"policy": {"pending_bound": 100}}}


def sample(time_ms: float, kind: str, value: float, process: str = "nats") -> dict:
    return {"time_ms": time_ms, "kind": kind, "process": process, "value": value}


# --- load -----------------------------------------------------------------------------------


def test_coverage_counts_only_accepted_submissions_that_executed():
    hist = Hist()
    hist.observe("load_plan", "load", capacity_per_s=10.0, phases=[{"name": "overload"}])
    hist.submit("load-p1-1", "t1", peer="p1", node="n1")  # executed: covers n1, p1, t1
    hist.submit("load-p2-1", "t2", peer="p2", node="n2")  # denied: covers nothing
    hist.submit("load-p3-1", "t3", peer="p3", node="n3", answer="fail", status=429, reason="RATE_LIMITED_GLOBAL")
    hist.submit("load-p4-1", "t4", peer="p4", node="n4")  # accepted, no record yet: covers nothing
    hist.submit("load-p5-1", "t5", peer="p5", node="n5", answer=None)
    records = [quick_record("load-p1-1", "t1", node="n1"),
               quick_record("load-p2-1", "t2", node="n2", snap_fields={"tenant_switch": True})]
    intents = [intent_row(intent(k, t, node=n)) for k, t, n in (("load-p1-1", "t1", "n1"), ("load-p2-1", "t2", "n2"))]
    ledger = [ledger_row("load-p1-1", "t1", node="n1"),
              ledger_row("load-p9-1", "t9", node="n9")]  # an effect without an EXECUTED record: covers nothing
    metrics, evidence = load(recorded(hist, records=records, intents=intents, ledger=ledger))
    assert metrics["load_submissions"] == 5
    assert (metrics["nodes_covered"], metrics["peers_covered"], metrics["tenants_covered"]) == (1, 1, 1)
    assert metrics["load_unanswered"] == 1
    assert metrics["load_unknown_outcomes"] == 0
    assert evidence["refusals_by_reason"] == {"RATE_LIMITED_GLOBAL": 1}
    assert metrics["overload_offered_per_s"] is None  # no overload phase ran


def test_coverage_comes_from_the_stacks_records_not_the_clients_plan():
    hist = Hist()
    hist.submit("load-p1-1", "t1", peer="p1", node="n1")
    records = [quick_record("load-p1-1", "t1", node="n1")]
    metrics, _ = load(recorded(hist, records=records))  # executed, but no effect in the ledger and no intent
    assert (metrics["nodes_covered"], metrics["peers_covered"], metrics["tenants_covered"]) == (0, 0, 0)


def test_uncovered_counts_against_the_stacks_recorded_size():
    hist = Hist()
    keys = [("load-p1-0", "t1", "n1", "p1"), ("load-p2-1", "t1", "n1b", "p2")]
    for k, t, n, p in keys:
        hist.submit(k, t, peer=p, node=n)
    records = [quick_record(k, t, node=n) for k, t, n, _ in keys]
    intents = [intent_row(intent(k, t, node=n).model_copy(update={"peer_id": p})) for k, t, n, p in keys]
    ledger = [ledger_row(k, t, node=n) for k, t, n, _ in keys]
    stack = {"params": {"node_owners": {"n1": "t1", "n1b": "t1", "n3": "t2"},
                        "peer_tenants": {"p1": "t1", "p2": "t1", "p3": "t2"}}}
    metrics, _ = load(recorded(hist, records=records, intents=intents, ledger=ledger, **stack))
    assert (metrics["nodes_uncovered"], metrics["peers_uncovered"], metrics["tenants_uncovered"]) == (1, 1, 1)
    covered_all = {"params": {"node_owners": {"n1": "t1", "n1b": "t1"}, "peer_tenants": {"p1": "t1", "p2": "t1"}}}
    metrics, _ = load(recorded(hist, records=records, intents=intents, ledger=ledger, **covered_all))
    assert (metrics["nodes_uncovered"], metrics["peers_uncovered"], metrics["tenants_uncovered"]) == (0, 0, 0)
    # A peer outside the plan covers nothing: counted by identity, not by how many were seen.
    other_peer = {"params": {"node_owners": {"n1": "t1", "n1b": "t1"}, "peer_tenants": {"p1": "t1", "p9": "t1"}}}
    metrics, _ = load(recorded(hist, records=records, intents=intents, ledger=ledger, **other_peer))
    assert metrics["peers_uncovered"] == 1


def test_uncovered_is_missing_when_the_stacks_size_was_not_recorded():
    metrics, _ = load(recorded(Hist()))
    assert (metrics["nodes_uncovered"], metrics["peers_uncovered"], metrics["tenants_uncovered"]) == (None, None, None)


def test_timeouts_and_bare_http_errors_are_unknown_outcomes():
    hist = Hist()
    hist.submit("load-p1-1", answer="info")
    hist.submit("load-p1-2", answer="fail", status=503, reason="QUEUE_FULL")
    metrics, _ = load(recorded(hist))
    assert metrics["load_unknown_outcomes"] == 1


def test_overload_offered_rate_against_capacity():
    hist = Hist()
    hist.observe("load_plan", "load", capacity_per_s=10.0, phases=[{"name": "overload", "duration_s": 1}])
    for n in range(21):  # 21 submissions within the 1 s window: 21/s
        answer = "fail" if n % 2 else "ok"
        hist.submit(f"load-p1-{n}", time_ms=10_000 + 47 * n, phase="overload", answer=answer, status=429,
                    reason="RATE_LIMITED_GLOBAL")
    metrics, _ = load(recorded(hist))
    assert metrics["overload_offered_per_s"] == 21.0
    assert metrics["overload_offered_vs_capacity"] == 2.1
    assert metrics["overload_refused"] == 10


def test_sends_after_the_phase_window_are_not_offered_during_it():
    hist = Hist()
    hist.observe("load_plan", "load", capacity_per_s=10.0, phases=[{"name": "overload", "duration_s": 1}])
    for n in range(10):  # 10 in the window, then 30 stragglers from a CPU-starved client
        hist.submit(f"load-p1-{n}", time_ms=10_000 + 90 * n, phase="overload")
    for n in range(10, 40):
        hist.submit(f"load-p1-{n}", time_ms=11_500 + n, phase="overload")
    metrics, _ = load(recorded(hist))
    assert metrics["overload_offered_per_s"] == 10.0
    assert metrics["overload_offered_vs_capacity"] == 1.0


def test_no_planned_overload_window_is_no_measurement():
    hist = Hist()
    hist.observe("load_plan", "load", capacity_per_s=10.0, phases=[])
    hist.submit("load-p1-0", time_ms=10_000, phase="overload")
    metrics, _ = load(recorded(hist))
    assert metrics["overload_offered_vs_capacity"] is None


# --- backpressure ---------------------------------------------------------------------------


def backpressure_run() -> Hist:
    hist = Hist()
    hist.add("info", "stall_cells", "nemesis", "backpressure", time_ms=1_000)
    hist.submit("backpressure-00001", answer="fail", status=503, reason="QUEUE_FULL")
    hist.submit("backpressure-00002")
    hist.add("ok", "scenario_done", "harness", "backpressure", time_ms=5_000)
    return hist


def test_pending_within_bound_and_refusals_reasoned():
    samples = [sample(2_000, "pending", 80), sample(3_000, "pending", 105), sample(9_000, "pending", 500)]
    metrics, evidence = backpressure(recorded(backpressure_run(), samples=samples, **BOUND))
    assert metrics == {"queue_full_refusals": 1, "backpressure_accepted_vs_bound": 0.01,
                       "backpressure_pending_peak": 105, "pending_peak_vs_bound": 1.05,
                       "backpressure_refused_without_reason": 0}
    assert evidence["pending_samples"] == 2  # the sample outside the scenario's window is not its


def test_the_queue_filled_is_judged_against_its_bound_whatever_its_size():
    hist = backpressure_run()
    for n in range(3, 93):
        hist.submit(f"backpressure-{n:05d}")
    metrics, _ = backpressure(recorded(hist, **BOUND))
    assert metrics["backpressure_accepted_vs_bound"] == 0.91  # 91 accepted of a bound of 100
    metrics, _ = backpressure(recorded(hist, params={"policy": {"pending_bound": 300}}))
    assert metrics["backpressure_accepted_vs_bound"] < 0.9  # the same 91 do not fill a queue of 300
    metrics, _ = backpressure(recorded(hist, params={"policy": {"pending_bound": None}}))
    assert metrics["backpressure_accepted_vs_bound"] is None  # no bound recorded: no measurement


def test_pending_above_bound():
    samples = [sample(2_000, "pending", 80), sample(3_000, "pending", 120)]
    metrics, _ = backpressure(recorded(backpressure_run(), samples=samples, **BOUND))
    assert metrics["pending_peak_vs_bound"] == 1.2
    assert metrics["pending_peak_vs_bound"] > 1.1


def test_backpressure_refusal_without_reason_and_no_samples():
    hist = backpressure_run()
    hist.submit("backpressure-00003", answer="fail", status=503, reason=None)
    metrics, _ = backpressure(recorded(hist, **BOUND))
    assert metrics["backpressure_refused_without_reason"] == 1
    assert metrics["pending_peak_vs_bound"] is None  # nothing sampled: missing, never "in bound"


# --- resources ------------------------------------------------------------------------------


def test_peak_rss_is_the_largest_of_any_process():
    samples = [sample(1, "rss_mb", 80.5, "api"), sample(2, "rss_mb", 120.0, "api"),
               sample(3, "rss_mb", 210.25, "cell-0"), sample(4, "rss_mb", 90.0, "cell-0"),
               sample(5, "pending", 50)]
    metrics, evidence = resources(recorded(samples=samples, **BOUND))
    assert metrics == {"peak_rss_mb_max": 210.25, "rss_processes_sampled": 2, "run_pending_peak_vs_bound": 0.5,
                       "samples_taken": 5}
    assert evidence["peak_rss_mb"] == {"api": 120.0, "cell-0": 210.25}


def test_no_rss_samples_is_missing():
    metrics, _ = resources(recorded())
    assert metrics["peak_rss_mb_max"] is None
