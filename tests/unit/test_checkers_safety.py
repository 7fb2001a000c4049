"""safety checkers: kill switches, fail-closed, approvals, tenant isolation — each can go red."""

from __future__ import annotations

from builders import (
    T0_WALL_MS, Hist, approval, intent, intent_row, ledger_row, quick_record, record, recorded, snapshot,
)

from exoarmur_cli.checkers.safety import killswitch, tenancy

ACK = T0_WALL_MS + 1_000  # the api acknowledged "engaged" at this wall time
RELEASE = T0_WALL_MS + 2_000  # and the operator began releasing it at this one


def engaged_window(hist: Hist, scope: str = "global", revision: int = 5, ack: int = ACK,
                   release: int = RELEASE, inside: tuple[str, ...] = ()) -> None:
    """Engage (ack at ``ack``, ``revision``), submit ``inside`` keys, release (``revision + 1``)."""
    hist.add("invoke", "killswitch", "operator", "killswitch", scope=scope, engaged=True, invoked_wall_ms=ack - 5)
    hist.add("ok", "killswitch", "operator", "killswitch", scope=scope, engaged=True, status=200,
             acked_wall_ms=ack, revision=revision)
    for key in inside:
        hist.submit(key)
    hist.add("invoke", "killswitch", "operator", "killswitch", scope=scope, engaged=False, invoked_wall_ms=release)
    hist.add("ok", "killswitch", "operator", "killswitch", scope=scope, engaged=False, status=200,
             acked_wall_ms=release + 5, revision=revision + 1)


def denied_by_global(key: str, now_ms: int, revision: int = 5) -> dict:
    return quick_record(key, now_ms=now_ms, snap_fields={"global_switch": True, "global_revision": revision})


# --- killswitch -----------------------------------------------------------------------------


BOUND = {"params": {"scenario_params": {"killswitch": {"switch_effect_bound_ms": 250}}}}


def executed(key: str, tenant: str = "t1", *, revision: int = 0, field: str = "global_revision",
             now_ms: int = ACK + 10) -> dict:
    node = "n1" if tenant == "t1" else "n2"
    return quick_record(key, tenant, node=node, now_ms=now_ms, snap_fields={field: revision})


def applied(key: str, tenant: str = "t1", at_ms: int = ACK + 10) -> dict:
    return {**ledger_row(key, tenant, node="n1" if tenant == "t1" else "n2"), "first_applied_at_ms": at_ms}


def test_global_switch_holds_and_propagation_is_measured():
    hist = Hist()
    hist.submit("killswitch-00001")  # before the engage: may execute
    engaged_window(hist, inside=("killswitch-00002", "killswitch-00003"))
    records = [executed("killswitch-00001", now_ms=ACK - 50),
               denied_by_global("killswitch-00002", ACK + 30),
               denied_by_global("killswitch-00003", ACK + 80)]
    ledger = [applied("killswitch-00001", at_ms=ACK + 40)]  # in flight at the ack, applied within the bound
    metrics, evidence = killswitch(recorded(hist, records=records, ledger=ledger, **BOUND))
    assert metrics["global_switch_cycles"] == 1
    assert metrics["submissions_after_global_ack"] == 2  # the set the next criterion ranges over
    assert metrics["executions_while_global_engaged"] == 0
    assert metrics["effects_past_switch_bound"] == 0
    assert metrics["killswitch_propagation_p99_ms"] == 30.0  # first reflecting decision, not the last
    assert metrics["killswitch_cycles_unobserved"] == 0
    assert metrics["fail_closed_executions"] is None  # no corruption was injected: nothing measured
    assert evidence["propagation_ms"] == [30]


def test_execution_of_an_intent_submitted_after_the_ack():
    hist = Hist()
    engaged_window(hist, inside=("killswitch-00001",))
    records = [executed("killswitch-00001", revision=4)]  # read an older revision: a stale read
    metrics, evidence = killswitch(recorded(hist, records=records, **BOUND))
    assert metrics["executions_while_global_engaged"] == 1
    assert evidence["executed_while_engaged"] == ["killswitch-00001"]


def test_a_decision_that_read_the_release_may_execute_even_if_submitted_inside():
    hist = Hist()
    engaged_window(hist, revision=5, inside=("killswitch-00001",))  # the release is revision 6
    released = executed("killswitch-00001", revision=6, now_ms=RELEASE + 1)  # decided after the release landed
    metrics, _ = killswitch(recorded(hist, records=[released], **BOUND))
    assert metrics["executions_while_global_engaged"] == 0
    saw_engage = executed("killswitch-00001", revision=5, now_ms=RELEASE + 1)
    metrics, _ = killswitch(recorded(hist, records=[saw_engage], **BOUND))
    assert metrics["executions_while_global_engaged"] == 1  # it read the engaged revision and still executed


def test_a_clock_tie_with_the_ack_is_not_a_violation():
    """The false red of issue 13: a read of revision 4 whose now_ms equals the engage's ack."""
    hist = Hist()
    hist.submit("killswitch-00001")  # submitted (and read) before the ack
    engaged_window(hist)
    metrics, _ = killswitch(recorded(hist, records=[executed("killswitch-00001", revision=4, now_ms=ACK)],
                                     ledger=[applied("killswitch-00001", at_ms=ACK + 3)], **BOUND))
    assert metrics["executions_while_global_engaged"] == 0
    assert metrics["effects_past_switch_bound"] == 0


def test_an_effect_applied_past_the_bound_while_engaged():
    hist = Hist()
    hist.submit("killswitch-00001")  # in flight at the ack: its effect must land within the bound
    engaged_window(hist)
    ledger = [applied("killswitch-00001", at_ms=ACK + 400)]
    metrics, evidence = killswitch(recorded(hist, records=[executed("killswitch-00001", now_ms=ACK - 1)],
                                            ledger=ledger, **BOUND))
    assert metrics["executions_while_global_engaged"] == 0
    assert metrics["effects_past_switch_bound"] == 1
    assert evidence["effects_past_switch_bound"] == ["t1:killswitch-00001"]


def test_effect_bound_missing_is_a_missing_measurement():
    hist = Hist()
    engaged_window(hist)
    metrics, _ = killswitch(recorded(hist))
    assert metrics["effects_past_switch_bound"] is None


def test_propagation_p99_over_several_cycles():
    hist = Hist()
    records = []
    for n, delay in enumerate((10, 20, 400)):
        base = T0_WALL_MS + 10_000 * (n + 1)
        engaged_window(hist, revision=10 * (n + 1), ack=base, release=base + 5_000)
        records.append(denied_by_global(f"killswitch-0000{n}", base + delay, revision=10 * (n + 1)))
    metrics, _ = killswitch(recorded(hist, records=records))
    assert metrics["global_switch_cycles"] == 3
    assert metrics["killswitch_propagation_p99_ms"] == 400.0


def test_decision_reflecting_the_switch_before_the_ack_counts_as_zero():
    hist = Hist()
    engaged_window(hist)
    metrics, _ = killswitch(recorded(hist, records=[denied_by_global("killswitch-00001", ACK - 3)]))
    assert metrics["killswitch_propagation_p99_ms"] == 0.0


def test_window_without_a_reflecting_decision_leaves_propagation_missing():
    hist = Hist()
    engaged_window(hist)
    stale = denied_by_global("killswitch-00001", ACK + 30, revision=4)  # an older engagement's revision
    metrics, _ = killswitch(recorded(hist, records=[stale]))
    assert metrics["killswitch_propagation_p99_ms"] is None
    assert metrics["killswitch_cycles_unobserved"] == 1


def test_one_unobserved_cycle_spoils_the_whole_propagation_measure():
    hist = Hist()
    engaged_window(hist, revision=5)
    engaged_window(hist, revision=9, ack=ACK + 5_000, release=RELEASE + 5_000)
    metrics, _ = killswitch(recorded(hist, records=[denied_by_global("killswitch-00001", ACK + 30)]))
    assert metrics["killswitch_propagation_p99_ms"] is None
    assert metrics["killswitch_cycles_unobserved"] == 1


def tenant_window_with(hist: Hist) -> None:
    hist.add("invoke", "killswitch", "operator", "killswitch", scope="t1", engaged=True, invoked_wall_ms=ACK - 5)
    hist.add("ok", "killswitch", "operator", "killswitch", scope="t1", engaged=True, status=200,
             acked_wall_ms=ACK, revision=3)
    hist.submit("killswitch-00001", "t1")
    hist.submit("killswitch-00002", "t2", node="n2")  # another tenant: may execute
    hist.add("invoke", "killswitch", "operator", "killswitch", scope="t1", engaged=False, invoked_wall_ms=RELEASE)
    hist.add("ok", "killswitch", "operator", "killswitch", scope="t1", engaged=False, status=200,
             acked_wall_ms=RELEASE + 5, revision=4)


def test_tenant_switch_leak():
    hist = Hist()
    tenant_window_with(hist)
    records = [executed("killswitch-00001", "t1", field="tenant_revision", revision=2),
               executed("killswitch-00002", "t2", field="tenant_revision")]
    ledger = [applied("killswitch-00001", "t1", at_ms=ACK + 300), applied("killswitch-00002", "t2", at_ms=ACK + 300)]
    metrics, evidence = killswitch(recorded(hist, records=records, ledger=ledger, **BOUND))
    assert metrics["tenant_switch_cycles"] == 1
    assert metrics["tenant_switch_submissions"] == 1  # t2's submission is not under t1's switch
    assert metrics["tenant_switch_leaks"] == 1
    assert evidence["tenant_leaks"] == ["killswitch-00001"]
    assert metrics["effects_past_switch_bound"] == 1  # the t1 effect; t2's is not under t1's switch
    assert metrics["global_switch_cycles"] == 0


def test_tenant_switch_holds():
    hist = Hist()
    tenant_window_with(hist)
    records = [quick_record("killswitch-00001", now_ms=ACK + 10, snap_fields={"tenant_switch": True,
                                                                           "tenant_revision": 3}),
               executed("killswitch-00002", "t2", field="tenant_revision")]
    metrics, _ = killswitch(recorded(hist, records=records, ledger=[applied("killswitch-00002", "t2")], **BOUND))
    assert metrics["tenant_switch_leaks"] == 0
    assert metrics["effects_past_switch_bound"] == 0


def corrupted(hist: Hist, *, submit: tuple[str, ...] = ("killswitch-00001",), repair_revision: int = 9) -> None:
    hist.nemesis("corrupt_safety_state", "killswitch", wall_ms=ACK, key="global", begin=True)
    for key in submit:
        hist.submit(key)
    hist.add("invoke", "killswitch", "operator", "killswitch", scope="global", engaged=False, invoked_wall_ms=RELEASE)
    hist.add("ok", "killswitch", "operator", "killswitch", scope="global", engaged=False, status=200,
             acked_wall_ms=RELEASE + 5, revision=repair_revision)
    hist.nemesis("corrupt_safety_state", "killswitch", wall_ms=RELEASE + 6, key="global", begin=False)
    hist.submit("killswitch-00002")  # after the repair: may execute


def test_unreadable_state_fails_closed():
    hist = Hist()
    corrupted(hist)
    records = [quick_record("killswitch-00001", now_ms=ACK + 10, snap_fields={"readable": False}),
               executed("killswitch-00002", revision=9, now_ms=RELEASE + 10)]
    metrics, _ = killswitch(recorded(hist, records=records))
    assert metrics["fail_closed_executions"] == 0
    assert metrics["fail_closed_submissions"] == 1
    assert metrics["fail_closed_denials"] == 1


def test_execution_while_state_unreadable():
    hist = Hist()
    corrupted(hist)
    metrics, evidence = killswitch(recorded(hist, records=[executed("killswitch-00001", revision=0)]))
    assert metrics["fail_closed_executions"] == 1
    assert metrics["fail_closed_denials"] == 0
    assert evidence["fail_open"] == ["killswitch-00001"]


def a2_executed(key: str, **approval_fields) -> dict:
    the_intent = intent(key, action_class="A2")
    granted = approval(the_intent, **approval_fields) if approval_fields.get("status") != "none" else None
    snap = snapshot(the_intent, approval=granted)
    return record(the_intent, snap, outcome="EXECUTED", reason_code="OK")


def test_a2_executed_with_its_approval():
    metrics, _ = killswitch(recorded(records=[a2_executed("killswitch-00001"),
                                              quick_record("killswitch-00002")]))  # A1 needs none
    assert metrics["unapproved_a2a3_executed"] == 0
    assert metrics["a2a3_executed"] == 1


def test_a2_a3_executed_without_a_valid_approval():
    records = [
        a2_executed("killswitch-00001", status="none"),
        a2_executed("killswitch-00002", intent_hash="f" * 64),
        a2_executed("killswitch-00003", expires_at_ms=T0_WALL_MS + 1_000),  # expires as the decision is made
        a2_executed("killswitch-00004", status="DENIED"),
        record(intent("killswitch-00005", action_class="A3"), outcome="EXECUTED", reason_code="OK"),
    ]
    for one in records:
        metrics, _ = killswitch(recorded(records=[one]))
        assert metrics["unapproved_a2a3_executed"] == 1, one["idempotency_key"]


# --- tenancy --------------------------------------------------------------------------------


def tenancy_run() -> Hist:
    hist = Hist()
    hist.submit("tenancy-00001", tag="cross_tenant", answer="fail", status=403, reason="TENANT_MISMATCH")
    hist.submit("tenancy-00002", tag="cross_tenant", answer="fail", status=401, reason="UNAUTHENTICATED")
    hist.submit("tenancy-00003", tag="bad_input", answer="fail", status=400, reason="INVALID_INTENT")
    return hist


OWNERS = {"params": {"node_owners": {"n1": "t1", "n2": "t2"}}}


def test_tenants_stay_apart():
    records = [quick_record("tenancy-00009", "t1", node="n1")]
    metrics, _ = tenancy(recorded(tenancy_run(), records=records, ledger=[ledger_row("tenancy-00009")], **OWNERS))
    assert metrics["cross_tenant_attempts"] == 2
    assert metrics["cross_tenant_accepted"] == 0
    assert metrics["cross_tenant_effects"] == 0
    assert metrics["bad_input_not_refused_4xx"] == 0


def test_cross_tenant_submission_accepted_or_unanswered():
    hist = tenancy_run()
    hist.submit("tenancy-00004", tag="cross_tenant")
    hist.submit("tenancy-00005", tag="cross_tenant", answer=None)
    metrics, _ = tenancy(recorded(hist, **OWNERS))
    assert metrics["cross_tenant_attempts"] == 4
    assert metrics["cross_tenant_accepted"] == 2


def test_effect_on_another_tenants_node():
    foreign = quick_record("tenancy-00009", "t1", node="n2", outcome="EXECUTED", reason_code="OK")
    metrics, evidence = tenancy(recorded(tenancy_run(), records=[foreign],
                                         ledger=[ledger_row("tenancy-00009", node="n2")], **OWNERS))
    assert metrics["cross_tenant_effects"] == 2  # the ledger row and the EXECUTED record
    assert evidence["foreign_effects"] == ["t1:tenancy-00009"]
    assert evidence["foreign_records"] == ["tenancy-00009"]


def test_effect_on_another_node_of_the_same_tenant():
    the_intent = intent("tenancy-00009", "t1", node="n1")
    rows = [intent_row(the_intent)]
    metrics, _ = tenancy(recorded(tenancy_run(), intents=rows, ledger=[ledger_row("tenancy-00009")], **OWNERS))
    assert metrics["effects_off_their_intent"] == 0
    moved = {**ledger_row("tenancy-00009"), "node_id": "n3"}  # n3 is t1's too in this test's world
    metrics, evidence = tenancy(recorded(tenancy_run(), intents=rows, ledger=[moved],
                                         params={"node_owners": {"n1": "t1", "n3": "t1"}}))
    assert metrics["effects_off_their_intent"] == 1
    assert metrics["cross_tenant_effects"] == 0  # same tenant: only the intent oracle sees it
    assert evidence["effects_off_their_intent"] == ["t1:tenancy-00009"]
    metrics, _ = tenancy(recorded(tenancy_run(), ledger=[ledger_row("tenancy-00010")], **OWNERS))
    assert metrics["effects_off_their_intent"] == 1  # an effect for an intent the stream never held


def test_effects_unmeasured_without_node_owners():
    metrics, _ = tenancy(recorded(tenancy_run(), ledger=[ledger_row("tenancy-00009", node="n2")]))
    assert metrics["cross_tenant_effects"] is None


def test_bad_input_not_refused_with_a_reasoned_4xx():
    for answer, status, reason in (("ok", None, None), ("fail", 500, "INTERNAL_ERROR"), ("fail", 400, None),
                                   ("info", None, None)):
        hist = tenancy_run()
        hist.submit("tenancy-00010", tag="bad_input", answer=answer, status=status, reason=reason)
        metrics, _ = tenancy(recorded(hist, **OWNERS))
        assert metrics["bad_input_not_refused_4xx"] == 1, (answer, status, reason)


def test_quiet_tenant_latency_and_noisy_tenant_limits():
    hist = Hist()
    records = []
    for n, (tag, latency_ms) in enumerate([("quiet:baseline", 20), ("quiet:baseline", 30),
                                           ("quiet:noise", 40), ("quiet:noise", 90)]):
        key = f"tenancy-{n:05d}"
        hist.submit(key, "t2", node="n2", tag=tag, time_ms=1_000 * (n + 1))
        invoked_wall = T0_WALL_MS + 1_000 * (n + 1)
        records.append(quick_record(key, "t2", node="n2", now_ms=invoked_wall + latency_ms))
    hist.submit("tenancy-00100", tag="noisy", answer="fail", status=429, reason="RATE_LIMITED_TENANT")
    hist.submit("tenancy-00101", tag="quiet:noise", answer="fail", status=429, reason="RATE_LIMITED_GLOBAL")
    metrics, _ = tenancy(recorded(hist, records=records, **OWNERS))
    assert metrics["quiet_tenant_p99_ms_baseline"] == 30.0
    assert metrics["quiet_tenant_p99_ms_under_noise"] == 90.0
    assert metrics["quiet_tenant_latency_ratio"] == 3.0
    assert metrics["quiet_tenant_refused"] == 1
    assert metrics["noisy_tenant_rate_limited"] == 1


def test_quiet_latency_missing_when_nothing_was_measured():
    metrics, _ = tenancy(recorded(tenancy_run(), **OWNERS))
    assert metrics["quiet_tenant_p99_ms_under_noise"] is None
    assert metrics["quiet_tenant_latency_ratio"] is None


def shared_key_run(duplicate: bool) -> Hist:
    """Tenants t1 and t2 submit the same key; ``duplicate``: the second was taken for the first."""
    hist = tenancy_run()
    hist.submit("tenancy-00007", "t1", peer="p1", node="n1", tag="same_key_other_tenant")
    hist.submit("tenancy-00007", "t2", peer="p2", node="n2", tag="same_key_other_tenant", duplicate=duplicate)
    return hist


def test_one_key_in_two_tenants_is_two_intents():
    records = [quick_record("tenancy-00007", "t1", node="n1"), quick_record("tenancy-00007", "t2", node="n2")]
    metrics, _ = tenancy(recorded(shared_key_run(duplicate=False), records=records, **OWNERS))
    assert (metrics["same_key_other_tenant_submissions"], metrics["same_key_other_tenant_swallowed"]) == (2, 0)


def test_a_key_deduplicated_across_tenants_is_caught():
    # The api keyed its dedupe on the key alone: the second tenant's intent got 202 "duplicate", no record.
    metrics, evidence = tenancy(recorded(shared_key_run(duplicate=True),
                                         records=[quick_record("tenancy-00007", "t1", node="n1")], **OWNERS))
    assert metrics["same_key_other_tenant_swallowed"] == 1
    assert evidence["same_key_swallowed"] == [("t2", "tenancy-00007")]
