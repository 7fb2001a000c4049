"""faults checkers: breaker chains and fast fails, retry bounds, hung calls, chaos duplicates."""

from __future__ import annotations

from builders import T0_WALL_MS, Hist, audit_row, breaker_row, intent, intent_row, quick_record, recorded

from exoarmur_cli.checkers.faults import breaker, chaos, retries, timeouts

DOWN = T0_WALL_MS + 1_000  # the effector went down
UP = T0_WALL_MS + 5_000  # and recovered


def cycle(cell: str = "cell-0", start: int = DOWN) -> list[dict]:
    return [breaker_row(cell, "CLOSED", "OPEN", start + 100), breaker_row(cell, "OPEN", "HALF_OPEN", UP + 500),
            breaker_row(cell, "HALF_OPEN", "CLOSED", UP + 600)]


def breaker_run() -> Hist:
    hist = Hist()
    hist.nemesis("effector_faults", "breaker", wall_ms=DOWN, down=True)
    hist.nemesis("effector_recovered", "breaker", wall_ms=UP)
    return hist


def fast_fail(key: str = "breaker-00001", *, stored_ms: int = DOWN + 200, attempts: int = 0,
              cell: str = "cell-0", breaker_state: str = "OPEN") -> dict:
    rec = quick_record(key, now_ms=stored_ms - 5, outcome="FAILED", reason_code="BREAKER_OPEN",
                       breaker_state=breaker_state, attempts=attempts, cell_id=cell)
    return audit_row(rec, timestamp_ms=stored_ms)


# --- breaker --------------------------------------------------------------------------------


def test_breaker_full_cycle_and_fast_fails():
    after = quick_record("breaker-00002", now_ms=UP + 700)
    rec = recorded(breaker_run(), events=cycle(), audit=[fast_fail()], records=[after])
    metrics, evidence = breaker(rec)
    assert metrics == {"breaker_opened": 1, "breaker_half_opened": 1, "breaker_closed_after_recovery": 1,
                       "breaker_invalid_transitions": 0, "breaker_fast_fails": 1, "breaker_open_calls_attempted": 0,
                       "breaker_open_without_transition": 0, "breaker_executed_after_recovery": 1,
                       "breaker_trips_judged": 1, "breaker_trips_below_policy": None}  # no policy: unjudged
    assert evidence["transitions"] == 3


TRIP_POLICY = {"policy": {"breaker_min_calls": 5, "breaker_failure_ratio": 0.5}}


def test_a_trip_at_the_declared_window_is_within_policy():
    events = [breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 100, failures=3, calls=6),  # 0.5 of 6: allowed
              breaker_row("cell-1", "CLOSED", "OPEN", DOWN + 100, failures=5, calls=5)]
    metrics, _ = breaker(recorded(breaker_run(), events=events, params=TRIP_POLICY))
    assert (metrics["breaker_trips_judged"], metrics["breaker_trips_below_policy"]) == (2, 0)


def test_a_breaker_that_opens_early_is_caught():
    # Too few calls, or too small a failed share: a breaker tripping there refuses work it may do.
    events = [breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 100, failures=3, calls=4),
              breaker_row("cell-1", "CLOSED", "OPEN", DOWN + 100, failures=2, calls=6),
              breaker_row("cell-1", "HALF_OPEN", "OPEN", DOWN + 900, failures=1, calls=1)]  # a failed probe: allowed
    metrics, evidence = breaker(recorded(breaker_run(), events=events, params=TRIP_POLICY))
    assert (metrics["breaker_trips_judged"], metrics["breaker_trips_below_policy"]) == (2, 2)
    assert [t["calls_in_window"] for t in evidence["tripped_below_policy"]] == [4, 6]


def test_breaker_chains_are_per_cell_and_reopen_from_half_open_is_legal():
    events = [*cycle("cell-0"), breaker_row("cell-1", "CLOSED", "OPEN", DOWN + 150),
              breaker_row("cell-1", "OPEN", "HALF_OPEN", DOWN + 900), breaker_row("cell-1", "HALF_OPEN", "OPEN", DOWN + 950)]
    metrics, _ = breaker(recorded(breaker_run(), events=events))
    assert metrics["breaker_invalid_transitions"] == 0
    assert metrics["breaker_opened"] == 3


def test_a_restarted_cell_starts_closed_and_its_start_is_no_transition():
    events = [breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 100), breaker_row("cell-0", "START", "CLOSED", DOWN + 200),
              breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 300), breaker_row("cell-0", "START", "CLOSED", UP + 100)]
    metrics, _ = breaker(recorded(breaker_run(), events=events))
    assert metrics["breaker_invalid_transitions"] == 0
    assert metrics["breaker_opened"] == 2
    assert metrics["breaker_closed_after_recovery"] == 0  # a start is not a recovery


def test_breaker_open_to_closed_is_invalid():
    events = [breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 100), breaker_row("cell-0", "OPEN", "CLOSED", UP + 100)]
    metrics, evidence = breaker(recorded(breaker_run(), events=events))
    assert metrics["breaker_invalid_transitions"] == 1
    assert evidence["invalid"] == [{"cell": "cell-0", "from": "OPEN", "to": "CLOSED", "expected_from": "OPEN"}]


def test_breaker_transition_from_a_state_it_was_not_in_is_invalid():
    events = [breaker_row("cell-0", "CLOSED", "OPEN", DOWN + 100),
              breaker_row("cell-0", "HALF_OPEN", "CLOSED", UP + 100)]  # the OPEN→HALF_OPEN step is missing
    metrics, evidence = breaker(recorded(breaker_run(), events=events))
    assert metrics["breaker_invalid_transitions"] == 1
    assert evidence["invalid"][0]["expected_from"] == "OPEN"


def test_breaker_open_refusal_that_still_called_the_effector():
    metrics, _ = breaker(recorded(breaker_run(), events=cycle(), audit=[fast_fail(attempts=1)]))
    assert metrics["breaker_open_calls_attempted"] == 1


def test_breaker_that_opened_during_the_call_may_have_attempted():
    metrics, _ = breaker(recorded(breaker_run(), events=cycle(), audit=[fast_fail(attempts=2, breaker_state="CLOSED")]))
    assert metrics["breaker_open_calls_attempted"] == 0
    assert metrics["breaker_fast_fails"] == 0


def test_breaker_open_outcome_without_a_prior_open_transition():
    late = fast_fail(stored_ms=DOWN + 50)  # stored before the cell's OPEN transition at DOWN + 100
    other_cell = fast_fail("breaker-00002", cell="cell-1")
    metrics, evidence = breaker(recorded(breaker_run(), events=cycle(), audit=[late, other_cell]))
    assert metrics["breaker_open_without_transition"] == 2
    assert evidence["unannounced"] == ["breaker-00001", "breaker-00002"]


def test_breaker_never_closing_after_recovery():
    events = cycle()[:2]
    metrics, _ = breaker(recorded(breaker_run(), events=events))
    assert metrics["breaker_closed_after_recovery"] == 0
    assert metrics["breaker_invalid_transitions"] == 0


# --- retries --------------------------------------------------------------------------------

POLICY = {"params": {"policy": {"retry_attempts": {"effector_call": 3},
                                "timeouts_s": {"EXECUTION_INTENT": 2.0}}}}


def test_retries_within_policy():
    records = [quick_record("retry-00001", attempts=3),
               quick_record("retry-00002", attempts=3, outcome="FAILED", reason_code="RETRY_EXHAUSTED"),
               quick_record("retry-00003", attempts=1)]
    metrics, evidence = retries(recorded(records=records, **POLICY))
    assert metrics == {"attempts_over_policy": 0, "retry_intents_retried": 2, "retry_intents_executed": 2,
                       "retry_unexpected_outcomes": 0}
    assert evidence["attempts_histogram"] == {3: 2, 1: 1}


def test_attempts_over_policy_in_any_scenario():
    metrics, evidence = retries(recorded(records=[quick_record("chaos-00001", attempts=4)], **POLICY))
    assert metrics["attempts_over_policy"] == 1
    assert evidence["over_policy"] == ["chaos-00001"]


def test_retry_bound_unmeasured_without_a_policy():
    metrics, _ = retries(recorded(records=[quick_record("retry-00001", attempts=99)]))
    assert metrics["attempts_over_policy"] is None


def test_flaky_intent_failing_for_an_unbounded_reason():
    records = [quick_record("retry-00001", attempts=2, outcome="FAILED", reason_code="EFFECTOR_ERROR"),
               quick_record("retry-00002", snap_fields={"global_switch": True})]
    metrics, _ = retries(recorded(records=records, **POLICY))
    assert metrics["retry_unexpected_outcomes"] == 2


# --- timeouts -------------------------------------------------------------------------------


def hung(outcome: str, reason: str, *, resolved_after_ms: int = 1_500) -> tuple[Hist, list[dict], list[dict]]:
    hist = Hist()
    hist.submit("timeout-00001", tag="hang")
    hist.submit("timeout-00002", tag="slow")  # not a hang: not judged here
    stored = T0_WALL_MS + 1_000
    rec = quick_record("timeout-00001", now_ms=stored + 10, outcome=outcome, reason_code=reason)
    return hist, [audit_row(rec, timestamp_ms=stored + resolved_after_ms)], [intent_row(intent("timeout-00001"), stored)]


def test_hung_call_bounded_by_its_deadline():
    hist, audit, intents = hung("FAILED", "TIMEOUT_EFFECTOR_CALL")
    metrics, _ = timeouts(recorded(hist, audit=audit, intents=intents, **POLICY))
    assert metrics == {"hang_intents": 1, "hang_not_bounded": 0, "hang_timeouts_reported": 1,
                       "hang_resolution_vs_intent_deadline": 0.75}


def test_hung_call_that_executed_is_not_bounded():
    hist, audit, intents = hung("EXECUTED", "OK")
    metrics, evidence = timeouts(recorded(hist, audit=audit, intents=intents, **POLICY))
    assert metrics["hang_not_bounded"] == 1
    assert metrics["hang_timeouts_reported"] == 0
    assert evidence["unbounded"] == ["timeout-00001"]


def test_hung_call_without_record_or_with_an_unbounded_failure():
    hist, _, intents = hung("FAILED", "TIMEOUT_EFFECTOR_CALL")
    metrics, _ = timeouts(recorded(hist, intents=intents, **POLICY))
    assert metrics["hang_not_bounded"] == 1
    assert metrics["hang_resolution_vs_intent_deadline"] is None
    hist, audit, intents = hung("FAILED", "EFFECTOR_ERROR")
    metrics, _ = timeouts(recorded(hist, audit=audit, intents=intents, **POLICY))
    assert metrics["hang_not_bounded"] == 1


def test_hung_call_resolved_after_the_intent_deadline():
    hist, audit, intents = hung("FAILED", "TIMEOUT_EXECUTION_INTENT", resolved_after_ms=2_500)
    metrics, _ = timeouts(recorded(hist, audit=audit, intents=intents, **POLICY))
    assert metrics["hang_resolution_vs_intent_deadline"] == 1.25


def test_no_hung_call_measures_nothing():
    metrics, _ = timeouts(recorded(**POLICY))
    assert metrics["hang_not_bounded"] is None


# --- chaos ----------------------------------------------------------------------------------


def chaos_run() -> Hist:
    hist = Hist()
    hist.nemesis("kill", "chaos", target="cell-0")
    hist.nemesis("pause", "chaos", target="cell-1")
    hist.nemesis("proxy_toxics", "chaos", latency_ms=200)
    hist.nemesis("proxy_toxics", "chaos", reset_peer=True)
    hist.nemesis("kill", "restart", target="cell-0")  # another scenario
    return hist


def test_resubmission_answered_as_duplicate():
    hist = chaos_run()
    hist.submit("chaos-00001")
    hist.submit("chaos-00001", duplicate=True)
    hist.submit("chaos-00002", answer="info")  # unknown, then resubmitted and accepted once: fine
    hist.submit("chaos-00002")
    metrics, evidence = chaos(recorded(hist))
    assert metrics == {"chaos_faults_injected": 4, "chaos_fault_kinds": 4, "chaos_duplicate_submissions": 2,
                       "chaos_duplicates_accepted_as_new": 0}
    assert len(evidence["faults"]) == 4


def test_resubmission_accepted_as_a_new_intent():
    hist = chaos_run()
    hist.submit("chaos-00001")
    hist.submit("chaos-00001", duplicate=False)
    metrics, _ = chaos(recorded(hist))
    assert metrics["chaos_duplicates_accepted_as_new"] == 1


def test_a_forged_record_in_audit_is_skipped_not_a_crash():
    # A defect that lets a forgery into AUDIT is judged by gates 3 and 6; the breaker and retry
    # checkers judge the stack's own records and keep their criteria measured.
    forged = {"seq": 9, "subject": "exo.audit.t1.x", "timestamp_ms": DOWN,
              "record": {"forged": "marker", "tenant_id": "t1", "idempotency_key": "retry-00009", "outcome": "EXECUTED"}}
    rec = recorded(breaker_run(), events=cycle(), audit=[fast_fail(), forged], records=[quick_record("retry-00001")])
    assert breaker(rec)[0]["breaker_fast_fails"] == 1
    assert retries(rec)[0]["retry_unexpected_outcomes"] == 0
