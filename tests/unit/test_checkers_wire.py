"""Far-end checks on the cells -> effector wire: attempts, gaps, deadlines, breaker — each can go red."""

from __future__ import annotations

from builders import T0_WALL_MS, Hist, audit_row, ledger_row, quick_record, recorded

from exoarmur_cli.checkers.wire import wire

POLICY = {"policy": {"retry_attempts": {"effector_call": 4}, "timeouts_s": {"EFFECTOR_CALL": 0.5},
                     "effector_retry_cap_s": 0.25, "breaker_half_open_max_probes": 2, "breaker_open_s": 1.0},
          "stack": {"cells": 2}}


class Wire:
    def __init__(self) -> None:
        self.rows: list[dict] = []
        self.conn = 0

    def attempt(self, key: str, start_ms: float, took_ms: float, status: int | None = 503,
                conn: int | None = None) -> float:
        """One POST on connection ``conn`` (None: a fresh one); ``status`` None: the caller hung up
        after ``took_ms``."""
        if conn is None:
            self.conn += 1
            conn = self.conn
        self.rows.append({"event": "request", "conn": conn, "method": "POST", "path": "/v1/effects",
                          "key": key, "wall_ms": T0_WALL_MS + start_ms})
        end = {"event": "unanswered"} if status is None else {"event": "response", "status": status}
        self.rows.append({**end, "conn": conn, "key": key, "wall_ms": T0_WALL_MS + start_ms + took_ms})
        return start_ms + took_ms

    def retried(self, key: str, gaps_ms: list[float], took_ms: float = 5) -> None:
        t = 0.0
        for gap in [0.0, *gaps_ms]:
            t = self.attempt(key, t + gap, took_ms)


def judge(w: Wire, hist: Hist | None = None) -> dict:
    return wire(recorded(hist, wire=w.rows, params=POLICY))[0]


def test_bounded_spaced_retries_within_deadlines():
    w = Wire()
    for n in range(5):
        w.retried(f"t1:retry-{n:05d}", [3 + 7 * n, 20 + 20 * n, 60 + 30 * n])  # 4 attempts, jittered gaps
    metrics = judge(w)
    assert metrics["wire_requests"] == 20
    assert metrics["attempts_over_policy_observed"] == 0
    assert metrics["attempts_past_deadline"] == 0
    assert metrics["retry_gaps_observed"] == 15
    assert metrics["retry_gaps_over_cap"] == 0
    assert metrics["retry_gap_spread_ms"] > 50


def test_more_attempts_than_declared_on_the_wire():
    w = Wire()
    w.retried("t1:retry-00001", [10, 20, 40, 80])  # 5 attempts
    w.retried("t1:chaos-00001", [10, 20, 40, 80, 100])  # redeliveries may retry again: not judged
    metrics = judge(w)
    assert metrics["attempts_over_policy_observed"] == 1
    assert metrics["wire_keys_judged"] == 1


def test_a_retry_storm_has_no_spread_and_a_slow_backoff_overshoots_the_cap():
    storm = Wire()
    for n in range(5):
        storm.retried(f"t1:retry-{n:05d}", [0, 0, 0])
    assert judge(storm)["retry_gap_spread_ms"] == 0
    slow = Wire()
    slow.retried("t1:retry-00001", [500, 20, 20])
    assert judge(slow)["retry_gaps_over_cap"] == 1


def test_retries_with_the_effector_down_wait_a_backoff_or_fire_at_once():
    backoff = Wire()
    for n in range(3):
        backoff.retried(f"t1:breaker-{n:05d}", [4 + 5 * n, 12 + 6 * n])
    metrics = judge(backoff)
    assert metrics["retry_gaps_effector_down"] == 6 and metrics["retry_gap_median_ms_effector_down"] >= 5
    at_once = Wire()
    for n in range(3):
        at_once.retried(f"t1:breaker-{n:05d}", [1, 1])
        at_once.retried(f"t1:retry-{n:05d}", [30, 40])  # latency elsewhere does not hide it
    assert judge(at_once)["retry_gap_median_ms_effector_down"] == 1
    few = Wire()
    few.retried("t1:breaker-00001", [10, 10])
    assert judge(few)["retry_gap_median_ms_effector_down"] is None


def test_an_attempt_that_outlived_its_deadline():
    w = Wire()
    w.attempt("t1:timeout-00001", 0, 480, status=None)  # gave up at its deadline: fine
    w.attempt("t1:timeout-00002", 0, 3_000, status=200)  # waited 3 s for an answer
    w.attempt("t1:timeout-00003", 0, 5_000, status=None)
    assert judge(w)["attempts_past_deadline"] == 2


def breaker_phase(w: Wire, calls_at_ms: list[float]) -> Hist:
    hist = Hist()
    hist.observe("breakers_open", "breaker", wall_ms=T0_WALL_MS + 1_000)
    for t in calls_at_ms:
        w.attempt(f"t1:breaker-{int(t):05d}", t, 2)
    hist.nemesis("effector_recovered", "breaker", wall_ms=T0_WALL_MS + 1_500)
    return hist


def test_calls_while_every_breaker_is_open_stay_within_the_probe_allowance():
    w = Wire()
    hist = breaker_phase(w, [500, 1_100, 1_200])  # the first is before the open phase
    metrics = judge(w, hist)
    assert metrics["breaker_open_calls_observed"] == 2
    assert metrics["breaker_open_calls_over_allowance"] == 0  # 2 cells x 2 probes


def test_calls_through_an_open_breaker():
    w = Wire()
    hist = breaker_phase(w, [1_000 + 10 * n for n in range(12)])
    assert judge(w, hist)["breaker_open_calls_over_allowance"] == 8


def test_no_wiretap_is_missing():
    metrics = judge(Wire())
    assert metrics == {"wire_requests": 0}


# --- breaker trips against the wire ---------------------------------------------------------------

TRIP_POLICY = {**POLICY, "policy": {**POLICY["policy"], "breaker_window_s": 5.0}}


def tripped(at_ms: float, failures: int, cell: str = "cell-0", calls: int | None = None) -> dict:
    """A trip as the cell published it; ``calls`` in its window (default: its failures, the wire's
    calls of the tests below)."""
    return {"seq": 1, "subject": f"exo.events.breaker.{cell}", "timestamp_ms": T0_WALL_MS + at_ms,
            "data": {"cell_id": cell, "breaker": "effector", "from": "CLOSED", "to": "OPEN", "at_ms": T0_WALL_MS + at_ms,
                     "failures_in_window": failures, "calls_in_window": failures if calls is None else calls}}


def retry_scenario_from(start_ms: float, until_ms: float) -> Hist:
    hist = Hist()
    hist.observe("retry_round", "retry", time_ms=start_ms)
    hist.observe("retry_round", "retry", time_ms=until_ms)
    return hist


def judge_trips(w: Wire, events: list[dict]) -> dict:
    return wire(recorded(retry_scenario_from(1_000, 9_000), wire=w.rows, events=events, params=TRIP_POLICY))[0]


def test_a_trip_whose_failures_the_wire_saw_is_supported():
    w = Wire()
    for n in range(3):  # two answered with errors, one given up on (no answer): three failures
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 100 * n, 20, status=None if n == 2 else 500)
    w.attempt("t1:retry-00009", 2_500, 20, status=200)  # a success is no failure
    metrics = judge_trips(w, [tripped(2_600, failures=3)])
    assert (metrics["breaker_trips_checked_on_wire"], metrics["breaker_trip_failures_unseen"]) == (1, 0)


def test_a_breaker_counting_failures_the_wire_never_carried_is_caught():
    w = Wire()
    for n in range(5):
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 100 * n, 20, status=200)  # all fine on the wire
    w.attempt("t1:retry-00009", 2_600, 20, status=503)
    metrics = judge_trips(w, [tripped(2_700, failures=4)])
    assert (metrics["breaker_trips_checked_on_wire"], metrics["breaker_trip_failures_unseen"]) == (1, 1)


def test_failures_older_than_the_window_do_not_support_a_trip():
    w = Wire()
    for n in range(3):
        w.attempt(f"t1:retry-{n:05d}", 1_000 + 10 * n, 20, status=500)
    metrics = judge_trips(w, [tripped(7_000, failures=3)])  # 6 s later: out of the 5 s window
    assert metrics["breaker_trip_failures_unseen"] == 1


def test_trips_outside_the_retry_and_breaker_scenarios_are_not_judged_on_the_wire():
    w = Wire()
    w.attempt("t1:load-00001", 19_000, 20, status=200)
    metrics = judge_trips(w, [tripped(20_000, failures=5)])  # during load, say: overload hides failures
    assert (metrics["breaker_trips_checked_on_wire"], metrics["breaker_trip_failures_unseen"]) == (0, 0)


def test_no_declared_window_is_no_measurement():
    w = Wire()
    w.attempt("t1:retry-00001", 2_000, 20, status=500)
    metrics = wire(recorded(retry_scenario_from(1_000, 9_000), wire=w.rows, events=[tripped(2_100, 1)],
                            params=POLICY))[0]
    assert metrics["breaker_trip_failures_unseen"] is None


def test_failures_before_the_cell_last_closed_do_not_support_a_trip():
    # The breaker empties its window when it closes: failures the wire saw before that are not in it.
    w = Wire()
    for n in range(3):
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 10 * n, 20, status=500)
    closed = {**tripped(3_000, 0), "data": {**tripped(3_000, 0)["data"], "from": "HALF_OPEN", "to": "CLOSED"}}
    metrics = judge_trips(w, [closed, tripped(3_500, failures=3)])
    assert metrics["breaker_trip_failures_unseen"] == 1


def test_another_cells_failures_do_not_support_a_trip():
    w = Wire()
    for n in range(3):
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 10 * n, 20, status=500)
    audit = [audit_row(quick_record(f"retry-{n:05d}", cell_id="cell-1")) for n in range(3)]
    events = [tripped(2_500, failures=3, cell="cell-0"), tripped(2_600, failures=3, cell="cell-1")]
    metrics = wire(recorded(retry_scenario_from(1_000, 9_000), wire=w.rows, events=events, audit=audit,
                            params=TRIP_POLICY))[0]
    assert (metrics["breaker_trips_checked_on_wire"], metrics["breaker_trip_failures_unseen"]) == (2, 1)


def history_then_failures(w: Wire) -> None:
    """Successes from 1 s to 8 s, then failures from 8.2 s: the 5 s window of a trip at 8.6 s holds
    the successes from 3.35 s on (give or take the 0.25 s slack) and the failures."""
    for n in range(15):
        w.attempt(f"t1:breaker-{n:05d}", 1_000 + 500 * n, 20, status=200)
    for n in range(5):
        w.attempt(f"t1:breaker-{100 + n:05d}", 8_200 + 50 * n, 20, status=503)


def test_a_breaker_counting_calls_older_than_its_window_is_caught():
    w = Wire()
    history_then_failures(w)
    metrics = judge_trips(w, [tripped(8_600, failures=5, calls=20)])  # every success since 1 s: a longer window
    assert (metrics["breaker_trip_calls_unseen"], metrics["breaker_trips_window_tested"]) == (1, 1)
    assert metrics["breaker_trip_failures_unseen"] == 0  # its failures are all there: only the calls tell


def test_a_trip_counting_its_declared_window_only_is_supported():
    w = Wire()
    history_then_failures(w)
    metrics = judge_trips(w, [tripped(8_600, failures=5, calls=15)])  # successes from 3.6 s on, and the failures
    assert (metrics["breaker_trip_calls_unseen"], metrics["breaker_trips_window_tested"]) == (0, 1)


def test_a_trip_with_no_calls_older_than_the_window_does_not_test_it():
    w = Wire()
    for n in range(5):
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 100 * n, 20, status=500)
    metrics = judge_trips(w, [tripped(2_600, failures=5, calls=5)])
    assert (metrics["breaker_trip_calls_unseen"], metrics["breaker_trips_window_tested"]) == (0, 0)


def test_a_call_counts_for_the_cell_whose_connection_carried_it_whoever_recorded_its_intent():
    # cell-0's connection (1000) carried four intents cell-0 recorded, and the lost first delivery of
    # a fifth that cell-1 recorded after a redelivery: its failure is still cell-0's.
    w = Wire()
    for n in range(4):
        w.attempt(f"t1:retry-{n:05d}", 2_000 + 100 * n, 20, status=500, conn=1000)
    w.attempt("t1:retry-00009", 2_450, 20, status=None, conn=1000)
    audit = [audit_row(quick_record(f"retry-{n:05d}", cell_id="cell-0")) for n in range(4)]
    audit.append(audit_row(quick_record("retry-00009", cell_id="cell-1")))
    metrics = wire(recorded(retry_scenario_from(1_000, 9_000), wire=w.rows, events=[tripped(2_600, failures=5)],
                            audit=audit, params=TRIP_POLICY))[0]
    assert (metrics["breaker_trip_failures_unseen"], metrics["breaker_trip_calls_unseen"]) == (0, 0)


# --- the deadline each call carried ------------------------------------------------------------

def with_deadlines(w: Wire, after_arrival_ms: list[float | None]) -> list[dict]:
    """The rows with each request's Exo-Deadline-Ms this long after its arrival (None: no header)."""
    requests = iter(after_arrival_ms)
    for row in w.rows:
        if row["event"] == "request":
            after = next(requests)
            row["deadline_ms"] = None if after is None else row["wall_ms"] + after
    return w.rows


def test_calls_carrying_the_declared_per_attempt_deadline_pass():
    w = Wire()
    for n in range(3):
        w.attempt(f"t1:retry-{n:05d}", 100 * n, 20, status=200)
    metrics = wire(recorded(wire=with_deadlines(w, [500, 480, 430]), params=POLICY))[0]
    assert metrics["call_deadlines_over_declared"] == 0


def test_a_call_fenced_by_a_whole_intent_s_budget_or_by_none_is_caught():
    w = Wire()
    for n in range(3):
        w.attempt(f"t1:retry-{n:05d}", 100 * n, 20, status=200)
    metrics = wire(recorded(wire=with_deadlines(w, [500, 2_950, None]), params=POLICY))[0]
    assert metrics["call_deadlines_over_declared"] == 2


def test_a_wiretap_that_recorded_no_deadlines_is_no_measurement():
    w = Wire()
    w.attempt("t1:retry-00001", 0, 20, status=200)
    assert judge(w)["call_deadlines_over_declared"] is None


# --- jitter: effector-down gaps against their backoff's ceiling ---------------------------------

JITTER_POLICY = {**POLICY, "policy": {**POLICY["policy"], "effector_retry_base_s": 0.02}}


def down_gaps(gaps_ms: list[float]) -> dict:
    """Two effector-down intents (instant 503s), retried after these gaps, half each."""
    w = Wire()
    half = len(gaps_ms) // 2
    w.retried("t1:breaker-00001", gaps_ms[:half], took_ms=1)
    w.retried("t1:breaker-00002", gaps_ms[half:], took_ms=1)
    return wire(recorded(wire=w.rows, params=JITTER_POLICY))[0]


def test_jittered_backoff_leaves_gaps_below_their_ceiling():
    # ceilings 20, 40, 80 ms after attempts 0, 1, 2
    metrics = down_gaps([7, 31, 85, 12, 44, 60])
    assert metrics["retry_gaps_below_ceiling_share_effector_down"] == 4 / 6


def test_a_backoff_without_jitter_waits_each_ceiling_and_is_caught_however_late():
    metrics = down_gaps([21, 42, 83, 26, 47, 90])  # each ceiling, plus the machine's lag
    assert metrics["retry_gaps_below_ceiling_share_effector_down"] == 0.0


# --- the effector's fence: ledger against the deadlines the calls carried ----------------------

def applied_at(key: str, at_ms: float) -> dict:
    row = ledger_row(key.split(":", 1)[1], key.split(":", 1)[0])
    row["first_applied_at_ms"] = T0_WALL_MS + at_ms
    return row


def test_an_effect_written_within_a_call_s_deadline_passes_and_one_written_after_is_caught():
    w = Wire()
    w.attempt("t1:timeout-00001", 0, 500, status=None)  # given up on at its deadline
    w.attempt("t1:timeout-00001", 520, 100, status=200)  # the retry applied it, in time
    w.attempt("t1:timeout-00002", 0, 500, status=None)  # given up on; applied 200 ms later anyway
    rows = with_deadlines(w, [500, 500, 500])
    ledger = [applied_at("t1:timeout-00001", 600), applied_at("t1:timeout-00002", 700)]
    metrics = wire(recorded(wire=rows, ledger=ledger, params=POLICY))[0]
    assert (metrics["effects_deadline_judged"], metrics["effects_applied_past_carried_deadline"]) == (2, 1)


def test_calls_of_late_effector_intents_given_up_at_their_deadline_are_counted():
    hist = Hist()
    hist.submit("timeout-00001", tag="late_effector")
    hist.submit("timeout-00002", tag="hang")
    w = Wire()
    w.attempt("t1:timeout-00001", 0, 500, status=None)
    w.attempt("t1:timeout-00001", 520, 100, status=200)
    w.attempt("t1:timeout-00002", 0, 500, status=None)  # a hang's: not the slow effector's
    metrics = wire(recorded(hist, wire=with_deadlines(w, [500, 500, 500]), params=POLICY))[0]
    assert metrics["late_effector_calls_abandoned"] == 1


# --- 4xx answers are final ------------------------------------------------------------------------

def test_a_call_refused_with_a_4xx_is_not_tried_again():
    w = Wire()
    w.attempt("t1:timeout-00001", 0, 5, status=422)  # refused, and left at that
    w.attempt("t1:timeout-00002", 0, 5, status=412)  # past its deadline: a new attempt carries a new one
    w.attempt("t1:timeout-00002", 50, 5, status=200)
    w.attempt("t1:timeout-00003", 0, 5, status=422)  # refused, then tried again: the policy forbids it
    w.attempt("t1:timeout-00003", 40, 5, status=422)
    metrics = judge(w)
    assert (metrics["calls_refused_4xx"], metrics["retries_after_4xx"]) == (3, 1)


def test_a_retry_that_arrived_too_late_to_write_in_time_does_not_cover_a_late_effect():
    # The harness had the effector add 450 ms before each write. The first call (deadline 500) was
    # given up on; the effect was written at 600, past it. The retry arrived at 520, so it could
    # not have written before 970: its later deadline does not cover the effect.
    hist = Hist()
    hist.nemesis("effector_faults", "timeout", applied=True, latency_ms=450, wall_ms=T0_WALL_MS - 1_000)
    w = Wire()
    w.attempt("t1:timeout-00001", 0, 500, status=None)
    w.attempt("t1:timeout-00001", 520, 500, status=None)
    rows = with_deadlines(w, [500, 500])
    metrics = wire(recorded(hist, wire=rows, ledger=[applied_at("t1:timeout-00001", 600)], params=POLICY))[0]
    assert metrics["effects_applied_past_carried_deadline"] == 1
