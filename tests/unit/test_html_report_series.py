"""What the report plots is extracted from hand-written histories: every fault an interval, every
answer counted, every switch window and breaker transition on the run's time axis."""

from __future__ import annotations

from builders import T0_WALL_MS, Hist, audit_row, breaker_row, quick_record

from exoarmur_cli.history import OK
from exoarmur_cli.html_report import _series as series


def _faults_history() -> Hist:
    h = Hist()
    h.nemesis("restart_nats", "persistence", mode="SIGKILL", time_ms=1_000)
    h.observe("api_ready_after_restart", "persistence", mode="SIGKILL", ready=True, time_ms=2_500)
    h.nemesis("kill", "restart", target="cell-0", signal="SIGKILL", time_ms=3_000)
    h.nemesis("effector_faults", "restart", applied=True, latency_ms=150, seed=1, time_ms=3_100)
    h.nemesis("start", "restart", target="cell-0", time_ms=3_400)
    h.nemesis("effector_faults", "restart", applied=True, hang=True, time_ms=3_600)  # replaces latency
    h.nemesis("effector_faults", "restart", applied=True, time_ms=4_000)  # clears
    h.nemesis("pause", "chaos", target="cell-1", time_ms=5_000)
    h.nemesis("proxy_toxics", "chaos", target="cells->effector", latency_ms=80, time_ms=5_100)
    h.nemesis("resume", "chaos", target="cell-1", time_ms=5_600)
    h.nemesis("proxy_clear", "chaos", target="cells->effector", time_ms=5_900)
    h.nemesis("corrupt_safety_state", "killswitch", begin=True, key="global", time_ms=6_000)
    h.nemesis("corrupt_safety_state", "killswitch", begin=False, key="global", time_ms=6_050)
    h.nemesis("noisy_tenant", "tenancy", tenant="t2", rate_per_s=150.0, time_ms=7_000)
    h.add(OK, "scenario_done", scenario="tenancy", time_ms=9_000)
    return h


def test_every_fault_is_an_interval_from_its_start_to_the_event_that_ended_it() -> None:
    found = [(i.start_s, i.end_s, i.kind, i.label, i.open_end) for i in series.fault_intervals(_faults_history().events)]
    assert found == [
        (1.0, 2.5, "NATS restart", "NATS restart (SIGKILL)", False),
        (3.0, 3.4, "process killed", "SIGKILL cell-0", False),
        (3.1, 3.6, "effector fault", "effector latency_ms=150", False),
        (3.6, 4.0, "effector fault", "effector hang=True", False),
        (5.0, 5.6, "process paused", "SIGSTOP cell-1", False),
        (5.1, 5.9, "network fault", "cells->effector: latency_ms=80", False),
        (6.0, 6.05, "safety state unreadable", "safety state 'global' unreadable", False),
        (7.0, 9.0, "noisy tenant", "noisy t2 at 150.0/s", True),  # no end recorded: to its scenario's end
    ]


def test_a_fault_without_an_end_is_drawn_to_its_scenario_end_and_says_so() -> None:
    h = Hist()
    h.nemesis("kill", "chaos", target="api", signal="SIGKILL", time_ms=1_000)
    h.submit("chaos-00001", time_ms=4_000)
    (only,) = series.fault_intervals(h.events)
    assert (only.start_s, only.end_s, only.open_end) == (1.0, 4.001, True)


def test_scenario_spans_and_run_end() -> None:
    h = Hist()
    h.submit("persistence-00001", time_ms=1_000)
    h.add(OK, "scenario_done", scenario="persistence", time_ms=2_000)
    h.submit("chaos-00001", time_ms=3_000)  # chaos never finished
    spans = series.scenario_spans(h.events)
    assert [(s.name, s.start_s, s.end_s, s.finished) for s in spans] == [
        ("persistence", 1.0, 2.0, True), ("chaos", 3.0, 3.001, False)]
    assert series.run_end_s(h.events, [{"time_ms": 5_000.0}]) == 5.0


def test_admission_rates_count_every_answer_per_second_by_reason() -> None:
    h = Hist()
    for n in range(3):
        h.submit(f"load-{n}", time_ms=1_000 + n * 10)
    h.submit("load-10", answer="fail", status=429, reason="RATE_LIMITED_TENANT", time_ms=1_100)
    h.submit("load-11", answer="fail", status=503, reason=None, time_ms=2_100)
    h.submit("load-12", answer="info", time_ms=3_100)
    axis, counts = series.admission_rates(h.events)
    assert axis == [1.0, 2.0, 3.0]
    assert counts == {"accepted": [3, 0, 0], "refused RATE_LIMITED_TENANT": [1, 0, 0],
                      "refused without reason": [0, 1, 0], "no answer": [0, 0, 1]}
    assert list(counts)[0] == "accepted" and list(counts)[-1] == "no answer"


def test_admission_rates_fold_rare_reasons_into_other() -> None:
    h = Hist()
    reasons = [f"REASON_{n}" for n in range(series.MAX_REASONS + 2)]
    for n, reason in enumerate(reasons):
        for k in range(len(reasons) - n):  # REASON_0 the most frequent
            h.submit(f"load-{n}-{k}", answer="fail", status=429, reason=reason, time_ms=1_000 + n * 10 + k)
    _, counts = series.admission_rates(h.events)
    assert "refused REASON_0" in counts and "refused REASON_7" not in counts
    assert counts["refused (other reasons)"] == [1 + 2]  # REASON_7 (1) + REASON_6 (2)


def test_latency_quantiles_per_scenario_and_second() -> None:
    h = Hist()
    for n, latency in enumerate([10, 20, 30, 40]):
        h.submit(f"tenancy-{n}", time_ms=1_000 + n * 100)
        h.events[-1] = h.events[-1].__class__(**{**h.events[-1].__dict__, "time_ms": 1_000 + n * 100 + latency})
    data = series.latency_by_scenario(h.events)
    assert list(data) == ["tenancy"]
    (t, p50, p99, answered), = data["tenancy"]
    assert (t, p50, p99, answered) == (1.0, 20.0, 40.0, 4)


def test_switch_windows_and_the_decisions_inside_them() -> None:
    h = Hist()
    h.add("invoke", "killswitch", "operator", "killswitch", engaged=True, scope="global", invoked_wall_ms=T0_WALL_MS + 900)
    h.add(OK, "killswitch", "operator", "killswitch", engaged=True, scope="global", acked_wall_ms=T0_WALL_MS + 1_000,
          revision=1)
    h.add("invoke", "killswitch", "operator", "killswitch", engaged=False, scope="global",
          invoked_wall_ms=T0_WALL_MS + 1_500)
    h.add(OK, "killswitch", "operator", "killswitch", engaged=True, scope="t2", acked_wall_ms=T0_WALL_MS + 2_000,
          revision=2)  # never released
    windows = series.switch_windows(h.events, T0_WALL_MS)
    assert [(w.start_s, w.end_s, w.kind, w.label, w.open_end) for w in windows] == [
        (1.0, 1.5, "global", "global", False), (2.0, 2.0, "tenant", "t2", True)]
    rows = [audit_row(quick_record("killswitch-1", now_ms=T0_WALL_MS + 1_200)),
            audit_row(quick_record("killswitch-2", now_ms=T0_WALL_MS + 9_000))]
    assert [(t, tenant) for t, tenant, _, _ in series.decisions_between(rows, T0_WALL_MS, 0.5, 2.0)] == [(1.2, "t1")]


def test_breaker_steps_start_closed_and_follow_every_transition() -> None:
    rows = [breaker_row("cell-0", "OPEN", "HALF_OPEN", T0_WALL_MS + 3_000),
            breaker_row("cell-0", "CLOSED", "OPEN", T0_WALL_MS + 2_000),
            {"subject": "exo.events.refusals.t1", "data": {}}]
    steps = series.breaker_steps(rows, T0_WALL_MS, cells=["cell-0", "cell-1"])
    assert steps == {"cell-0": [(0.0, "CLOSED"), (2.0, "OPEN"), (3.0, "HALF_OPEN")], "cell-1": [(0.0, "CLOSED")]}


def test_locust_rates_take_the_aggregated_rows_and_skip_unreadable_ones() -> None:
    base = T0_WALL_MS // 1000
    rows = [{"Timestamp": str(base + 1), "Name": "Aggregated", "Requests/s": "0.000000", "Failures/s": "0.000000"},
            {"Timestamp": str(base + 2), "Name": "submit[overload]", "Requests/s": "99", "Failures/s": "9"},
            {"Timestamp": str(base + 2), "Name": "Aggregated", "Requests/s": "129.5", "Failures/s": "3.25"},
            {"Timestamp": "N/A", "Name": "Aggregated", "Requests/s": "1", "Failures/s": "1"}]
    assert series.locust_rates(rows, T0_WALL_MS) == ([1.0, 2.0], [0.0, 129.5], [0.0, 3.25])
