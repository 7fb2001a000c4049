"""integrity checkers: exactly-once, driver expectations, refusal counters — each can go red."""

from __future__ import annotations

from builders import T0_WALL_MS, Hist, ledger_row, quick_record, recorded, refusal_row

from exoarmur_cli.checkers.integrity import effect_fences, exactly_once, expectations, refusals


def healthy() -> tuple[Hist, list[dict], list[dict]]:
    hist = Hist()
    hist.submit("restart-00001")
    hist.submit("restart-00002", answer="fail", status=429, reason="RATE_LIMITED_TENANT")
    return hist, [quick_record("restart-00001")], [ledger_row("restart-00001")]


# --- exactly_once ---------------------------------------------------------------------------


def test_exactly_once_healthy_run_is_all_zero():
    hist, records, ledger = healthy()
    metrics, _ = exactly_once(recorded(hist, records=records, ledger=ledger))
    assert metrics == {
        "acked_without_terminal": 0, "multi_terminal_records": 0, "duplicate_effects": 0,
        "executed_without_effect": 0, "effects_not_recorded_executed": 0, "unanswered_submissions": 0,
        "accepted_submissions": 1, "terminal_records": 1, "executed_records": 1, "effects_checked": 1,
        "restart_acked_without_terminal": 0, "restart_accepted": 1,
    }


def test_accepted_submission_without_record_is_lost_and_named_by_scenario():
    hist, _, _ = healthy()
    hist.submit("chaos-00001")
    metrics, evidence = exactly_once(recorded(hist))
    assert metrics["acked_without_terminal"] == 2
    assert metrics["restart_acked_without_terminal"] == 1
    assert metrics["chaos_acked_without_terminal"] == 1
    assert ("t1", "chaos-00001") in evidence["lost"]


def test_refused_submission_is_not_owed_a_record():
    hist = Hist()
    hist.submit("restart-00001", answer="fail", status=503, reason="QUEUE_FULL")
    metrics, _ = exactly_once(recorded(hist))
    assert metrics["acked_without_terminal"] == 0 and metrics["accepted_submissions"] == 0


def test_two_records_for_one_intent():
    hist, records, ledger = healthy()
    second = quick_record("restart-00001", outcome="FAILED", reason_code="EFFECTOR_ERROR")
    metrics, evidence = exactly_once(recorded(hist, records=[*records, second], ledger=ledger))
    assert metrics["multi_terminal_records"] == 1
    assert metrics["terminal_records"] == 2
    assert evidence["multi_terminal"] == [("t1", "restart-00001")]


def test_two_effects_for_one_intent():
    hist, records, ledger = healthy()
    metrics, evidence = exactly_once(recorded(hist, records=records, ledger=[*ledger, ledger_row("restart-00001")]))
    assert metrics["duplicate_effects"] == 1
    assert evidence["duplicate_effects"] == [("t1:restart-00001", 1)]


def test_executed_record_without_effect():
    hist, records, _ = healthy()
    metrics, evidence = exactly_once(recorded(hist, records=records))
    assert metrics["executed_without_effect"] == 1
    assert evidence["executed_without_effect"] == [("t1", "restart-00001")]


def test_effect_whose_record_did_not_execute():
    hist = Hist()
    hist.submit("chaos-00001")
    denied = quick_record("chaos-00001", snap_fields={"global_switch": True})
    assert denied["outcome"] == "DENIED"
    metrics, _ = exactly_once(recorded(hist, records=[denied], ledger=[ledger_row("chaos-00001")]))
    assert metrics["effects_not_recorded_executed"] == 1
    assert metrics["executed_without_effect"] == 0


def test_invoke_without_completion_is_unanswered():
    hist, records, ledger = healthy()
    hist.submit("restart-00003", answer=None)
    metrics, _ = exactly_once(recorded(hist, records=records, ledger=ledger))
    assert metrics["unanswered_submissions"] == 1


def test_unknown_answer_is_answered_but_not_accepted():
    hist = Hist()
    hist.submit("restart-00001", answer="info")
    metrics, _ = exactly_once(recorded(hist))
    assert metrics["unanswered_submissions"] == 0 and metrics["accepted_submissions"] == 0


# --- expectations ---------------------------------------------------------------------------


def tagged(answer: str = "ok", **kwargs) -> Hist:
    hist = Hist()
    hist.submit("killswitch-00001", tag="expect:DENIED/KILL_SWITCH_TENANT", answer=answer, **kwargs)
    hist.submit("killswitch-00002")  # untagged: not checked
    return hist


def test_expectation_met():
    record = quick_record("killswitch-00001", snap_fields={"tenant_switch": True})
    metrics, evidence = expectations(recorded(tagged(), records=[record]))
    assert metrics == {"killswitch_expectations_checked": 1, "killswitch_expectations_unmet": 0}
    assert evidence["unmet"] == []


def test_expectation_unmet_when_the_record_says_otherwise():
    metrics, evidence = expectations(recorded(tagged(), records=[quick_record("killswitch-00001")]))
    assert metrics["killswitch_expectations_unmet"] == 1
    assert evidence["unmet"] == [{"key": "killswitch-00001", "expected": "DENIED/KILL_SWITCH_TENANT",
                                  "got": ["EXECUTED/OK"]}]


def test_expectation_unmet_when_refused_or_without_record():
    metrics, evidence = expectations(recorded(tagged("fail", status=429, reason="RATE_LIMITED_TENANT")))
    assert metrics["killswitch_expectations_unmet"] == 1
    assert evidence["unmet"][0]["got"] == "RATE_LIMITED_TENANT"
    metrics, evidence = expectations(recorded(tagged()))
    assert metrics["killswitch_expectations_unmet"] == 1
    assert evidence["unmet"][0]["got"] == "no record"


def test_expectation_unmet_with_two_records_even_if_one_matches():
    records = [quick_record("killswitch-00001", snap_fields={"tenant_switch": True}),
               quick_record("killswitch-00001")]
    metrics, _ = expectations(recorded(tagged(), records=records))
    assert metrics["killswitch_expectations_unmet"] == 1


# --- refusals -------------------------------------------------------------------------------


def told(hist: Hist, reason: str | None, times: int, status: int = 429) -> None:
    for _ in range(times):
        hist.submit(f"load-{len(hist.events):05d}", answer="fail", status=status, reason=reason)


def test_refusal_counters_match_what_clients_were_told():
    hist = Hist()
    told(hist, "RATE_LIMITED_TENANT", 3)
    rows = [refusal_row("RATE_LIMITED_TENANT", 2), refusal_row("RATE_LIMITED_TENANT", 1, tenant="t2")]
    metrics, evidence = refusals(recorded(hist, events=rows))
    assert metrics == {"refusals_observed": 3, "refusals_audited": 3, "refusal_counter_mismatch": 0,
                       "unreasoned_refusals": 0, "server_errors_without_reason": 0}
    assert evidence["by_reason"] == {"RATE_LIMITED_TENANT": {"clients_told": 3, "audited": 3}}


def test_refusal_counter_short_of_what_clients_were_told():
    hist = Hist()
    told(hist, "RATE_LIMITED_TENANT", 3)
    metrics, _ = refusals(recorded(hist, events=[refusal_row("RATE_LIMITED_TENANT", 2)]))
    assert metrics["refusal_counter_mismatch"] == 1


def test_refusal_audited_under_another_reason_is_a_mismatch_both_ways():
    hist = Hist()
    told(hist, "QUEUE_FULL", 1, status=503)
    metrics, _ = refusals(recorded(hist, events=[refusal_row("RATE_LIMITED_GLOBAL", 1)]))
    assert metrics["refusal_counter_mismatch"] == 2


def test_refusal_without_reason_code():
    hist = Hist()
    told(hist, None, 1, status=400)
    told(hist, None, 1, status=500)
    metrics, _ = refusals(recorded(hist))
    assert metrics["unreasoned_refusals"] == 2
    assert metrics["server_errors_without_reason"] == 1


def test_stack_failures_and_no_answer_are_not_admission_refusals():
    hist = Hist()
    told(hist, "STACK_UNAVAILABLE", 1, status=503)
    told(hist, "TIMEOUT_NATS_PUBLISH", 1, status=504)
    hist.submit("load-99999", answer="fail", status=0, reason=None)  # connection refused: no answer
    metrics, _ = refusals(recorded(hist))
    assert metrics["refusals_observed"] == 0
    assert metrics["refusal_counter_mismatch"] == 0
    assert metrics["unreasoned_refusals"] == 0


def test_refused_audit_reads_count_as_refusals():
    hist = Hist()
    hist.add("fail", "read_audit", "p1", "tenancy", caller_tenant="t1", target_tenant="t2", status=403,
             reason_code="TENANT_MISMATCH")
    metrics, _ = refusals(recorded(hist))
    assert metrics["refusals_observed"] == 1 and metrics["refusal_counter_mismatch"] == 1


def test_operator_write_and_approval_refusals_are_counted_like_submissions():
    hist = Hist()
    hist.add("fail", "operator_probe", "peer-own-tenant", "killswitch", method="PUT", path="/v1/x", status=403,
             reason_code="FORBIDDEN")
    hist.add("fail", "approval", "operator", "killswitch", key="k", status_code=400, reason_code="INVALID_INTENT")
    rows = [refusal_row("FORBIDDEN", 1), refusal_row("INVALID_INTENT", 1)]
    metrics, _ = refusals(recorded(hist, events=rows))
    assert (metrics["refusals_observed"], metrics["refusal_counter_mismatch"]) == (2, 0)
    metrics, _ = refusals(recorded(hist, events=rows[:1]))
    assert metrics["refusal_counter_mismatch"] == 1


def test_read_probe_refusals_count_but_not_found_and_out_of_range_answers_do_not():
    hist = Hist()
    hist.add("fail", "read_probe", "p1", "tenancy", path="/v1/audit", status=403, reason_code="TENANT_MISMATCH")
    hist.add("fail", "read_probe", "p1", "tenancy", path="/v1/killswitches", status=403, reason_code="FORBIDDEN")
    hist.add("fail", "read_probe", "p1", "tenancy", path="/v1/intents/{k}", status=404, reason_code="NOT_FOUND")
    hist.add("fail", "read_probe", "p1", "tenancy", path="/v1/audit", status=422, reason_code=None)
    rows = [refusal_row("TENANT_MISMATCH", 1), refusal_row("FORBIDDEN", 1)]
    metrics, _ = refusals(recorded(hist, events=rows))
    assert (metrics["refusals_observed"], metrics["refusal_counter_mismatch"]) == (2, 0)
    assert metrics["unreasoned_refusals"] == 0


# --- effect_fences ---------------------------------------------------------------------------

FENCE_POLICY = {"policy": {"timeouts_s": {"EXECUTION_INTENT": 3.5}, "effect_deadline_skew_ms": 100}}


def fenced(applied_after_decision_ms: int) -> dict:
    """One EXECUTED intent decided at T0 + 1 s, its effect applied that long after."""
    row = ledger_row("chaos-00001")
    row["first_applied_at_ms"] = T0_WALL_MS + 1_000 + applied_after_decision_ms
    return effect_fences(recorded(records=[quick_record("chaos-00001")], ledger=[row], params=FENCE_POLICY))[0]


def test_an_effect_within_its_decision_s_fence_passes():
    assert fenced(3_500 + 100 + 200) == {"effects_past_decision_fence": 0, "effects_fence_checked": 1}


def test_an_effect_applied_after_its_decision_went_stale_is_caught():
    # A redelivery acted on a journaled EXECUTE past its fence: its call carried a new deadline.
    assert fenced(4_800)["effects_past_decision_fence"] == 1


def test_no_declared_deadline_is_no_measurement():
    metrics, _ = effect_fences(recorded(records=[quick_record("chaos-00001")], ledger=[ledger_row("chaos-00001")]))
    assert metrics == {"effects_past_decision_fence": None}
