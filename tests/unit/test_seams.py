"""Defects enter through named seams chosen at start-up: every defect has its alternative,
a clean stack gets the production parts, and defects on one seam compose."""

from __future__ import annotations

import pytest

from exoarmur import nats_server, natsio
from exoarmur.api import admission, publisher, reads
from exoarmur.api.admission import ADMISSION_DEFECTS, Admission
from exoarmur.api.publisher import PUBLISHER_DEFECTS, Publisher
from exoarmur.api.reads import AUDIT_SCOPE_DEFECTS, AuditScope
from exoarmur.cell import delivery, effects, safety
from exoarmur.cell.delivery import DELIVERY_DEFECTS, Delivery
from exoarmur.cell.effects import EFFECTOR_CALL_DEFECTS, EffectorCalls
from exoarmur.cell.safety import SAFETY_DEFECTS, Safety
from exoarmur.defects import DESCRIPTIONS, Defect
from exoarmur.effector.ledger import LEDGER_SYNC_DEFECTS, LedgerSync
from exoarmur.effector.auth import EFFECTOR_AUTH_DEFECTS, EffectorAuth
from exoarmur.natsauth import BUS_AUTH_DEFECTS, BusAuth
from exoarmur.seams import choose, injected

SEAMS = [
    (Admission(), ADMISSION_DEFECTS), (Publisher(), PUBLISHER_DEFECTS), (AuditScope(), AUDIT_SCOPE_DEFECTS),
    (Safety(), SAFETY_DEFECTS), (Delivery(), DELIVERY_DEFECTS), (EffectorCalls(), EFFECTOR_CALL_DEFECTS),
    (natsio.Storage(), natsio.STORAGE_DEFECTS), (nats_server.ServerSync(), nats_server.SERVER_SYNC_DEFECTS),
    (LedgerSync(), LEDGER_SYNC_DEFECTS),
    (BusAuth(), BUS_AUTH_DEFECTS), (EffectorAuth(), EFFECTOR_AUTH_DEFECTS),
]


def test_every_defect_replaces_a_part_of_some_seam() -> None:
    covered = {d for _, table in SEAMS for d in table}
    assert covered == set(Defect) == set(DESCRIPTIONS)


@pytest.mark.parametrize("production,table", SEAMS, ids=lambda v: type(v).__name__)
def test_alternatives_name_real_parts_and_differ_from_production(production, table) -> None:
    fields = set(production.__dataclass_fields__)
    for defect, parts in table.items():
        assert parts and set(parts) <= fields, defect
        for name, alternative in parts.items():
            assert getattr(production, name) != alternative, (defect, name)


def test_a_clean_stack_gets_production() -> None:
    for production, table in SEAMS:
        assert choose(production, table, injected([])) is production
    assert natsio.storage() == natsio.Storage()
    assert Admission().rate_limit is admission.token_buckets and Admission().when_full is admission.refuse_queue_full
    assert Publisher().headers is publisher.msg_id_header
    assert AuditScope().subject_filter("t1") == "exo.audit.t1.*"


def test_one_defect_replaces_only_its_parts() -> None:
    chosen = choose(Admission(), ADMISSION_DEFECTS, injected(["silent-drop"]))
    assert chosen.when_full is admission.silent_drop and chosen.rate_limit is admission.token_buckets
    assert choose(Admission(), ADMISSION_DEFECTS, injected(["no-breaker"])) == Admission()
    assert choose(AuditScope(), AUDIT_SCOPE_DEFECTS, {Defect.TENANT_LEAK}).subject_filter("t1") == "exo.audit.*.*"
    assert reads.every_tenant("t1") == "exo.audit.*.*"


def test_defects_on_one_seam_compose() -> None:
    chosen = choose(EffectorCalls(), EFFECTOR_CALL_DEFECTS, injected(["no-timeout", "no-breaker", "unbounded-retry"]))
    assert chosen.within is effects.no_deadline and chosen.breaker is effects.never_opens
    assert chosen.retry.attempts == 1_000_000 and chosen.attempt_key is effects.same_key
    both = choose(Delivery(), DELIVERY_DEFECTS, injected(["ack-before-durable", "no-idempotency"]))
    assert (both.on_receive, both.on_recorded) == (delivery.ack, delivery.hold)
    assert both.is_redelivery is delivery.never_done
    mixed = choose(Safety(), SAFETY_DEFECTS, injected(["killswitch-ignored", "approval-bypass"]))
    assert mixed.switches is safety.ignore_switches and mixed.approval is safety.any_record_approves
    assert mixed.unreadable is safety.fail_closed


def test_unknown_defect_names_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown defect 'nope'"):
        injected(["nope"])


def test_never_opens_allows_everything_and_stays_closed() -> None:
    breaker = effects.never_opens(lambda _t: None)
    for t in range(100):
        breaker.record_failure(float(t))
        assert breaker.allow(float(t)) and breaker.state(float(t)).value == "CLOSED"


def test_key_parts() -> None:
    assert effects.same_key("") == "" and effects.fresh_key("") != effects.fresh_key("")
    assert effects.fresh_key("#1.2").startswith("#1.2~")
