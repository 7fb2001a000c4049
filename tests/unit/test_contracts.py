"""Wire contracts: canonical JSON, digests, intent validation, and audit-record sealing."""

from __future__ import annotations

import hashlib
import json

import pytest
from pydantic import ValidationError

from exoarmur.contracts import (
    PARAMETERS_MAX_BYTES,
    TERMINAL_OUTCOMES,
    ActionClass,
    AuditRecordV1,
    Decision,
    EffectorReceipt,
    IntentV1,
    Outcome,
    ReasonCode,
    SafetySnapshot,
    audit_id_for,
    canonical_json,
    key_digest,
    sha256_hex,
)

INTENT = dict(intent_id="i-1", tenant_id="t1", peer_id="p1", node_id="n1", action="isolate_host",
              action_class="A1", idempotency_key="k-1", parameters={"b": 2, "a": [1, "x"]})


def record(**changes) -> AuditRecordV1:
    fields = dict(
        audit_id=audit_id_for("t1", "k-1"), tenant_id="t1", intent_id="i-1", idempotency_key="k-1",
        intent_hash="ab" * 32, node_id="n1", action="isolate_host", action_class=ActionClass.A1,
        outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK,
        decision=Decision(outcome=Outcome.EXECUTED, reason_code=ReasonCode.OK, execute=True),
        snapshot=SafetySnapshot(readable=True, node_tenant="t1", now_ms=5, submitted_at_ms=1),
        breaker_state="CLOSED", attempts=1,
        receipt=EffectorReceipt(idempotency_key="t1:k-1", receipt_id="rcpt-1", first_applied_at_ms=4, calls=1,
                                replayed=False),
        cell_id="cell-0", decided_at_ms=5,
    )
    return AuditRecordV1(**{**fields, **changes})


def test_canonical_json_sorts_keys_and_has_no_whitespace() -> None:
    assert canonical_json({"b": 1, "a": {"d": [1, 2], "c": None}}) == b'{"a":{"c":null,"d":[1,2]},"b":1}'
    assert canonical_json({"a": 1, "b": 2}) == canonical_json({"b": 2, "a": 1})


def test_sha256_hex_is_the_hex_digest() -> None:
    assert sha256_hex(b"abc") == hashlib.sha256(b"abc").hexdigest()


def test_key_digest_names_one_tenant_and_key() -> None:
    digest = key_digest("t1", "k-1")
    assert len(digest) == 32 and int(digest, 16) >= 0
    assert digest == key_digest("t1", "k-1")
    assert digest != key_digest("t2", "k-1") and digest != key_digest("t1", "k-2")
    assert key_digest("a", "b.c") != key_digest("a.b", "c")  # the separator keeps the parts apart
    assert audit_id_for("t1", "k-1") == "aud-" + digest


def test_intent_hash_is_the_sha256_of_its_canonical_json() -> None:
    intent = IntentV1(**INTENT)
    assert intent.canonical() == canonical_json(json.loads(intent.model_dump_json()))
    assert intent.intent_hash() == sha256_hex(intent.canonical())
    assert intent.digest() == key_digest("t1", "k-1")
    reordered = IntentV1(**{**INTENT, "parameters": {"a": [1, "x"], "b": 2}})
    assert reordered.intent_hash() == intent.intent_hash()


@pytest.mark.parametrize("field,value", [("node_id", "n2"), ("action", "block_ip"), ("action_class", "A2"),
                                         ("parameters", {"b": 3}), ("correlation_id", "c")])
def test_any_change_to_an_intent_changes_its_hash_but_not_its_digest(field, value) -> None:
    intent, changed = IntentV1(**INTENT), IntentV1(**{**INTENT, field: value})
    assert changed.intent_hash() != intent.intent_hash()
    assert changed.digest() == intent.digest()


@pytest.mark.parametrize("changes", [
    {"surprise": 1},                      # extra fields are refused
    {"tenant_id": "t 1"},                 # ids are subject-safe
    {"intent_id": "x" * 65},
    {"action": "Isolate"},
    {"action_class": "A9"},
    {"idempotency_key": ""},
    {"idempotency_key": "k" * 129},
])
def test_invalid_intents_are_refused(changes) -> None:
    with pytest.raises(ValidationError):
        IntentV1(**{**INTENT, **changes})


def test_parameters_are_bounded_in_canonical_bytes() -> None:
    overhead = len(canonical_json({"p": ""}))
    at_bound = {"p": "x" * (PARAMETERS_MAX_BYTES - overhead)}
    assert len(canonical_json(at_bound)) == PARAMETERS_MAX_BYTES
    IntentV1(**{**INTENT, "parameters": at_bound})
    with pytest.raises(ValidationError, match="the bound is 4096"):
        IntentV1(**{**INTENT, "parameters": {"p": "x" * (PARAMETERS_MAX_BYTES - overhead + 1)}})


def test_contracts_are_frozen() -> None:
    with pytest.raises(ValidationError):
        IntentV1(**INTENT).node_id = "n2"


def test_a_sealed_record_carries_the_hash_of_everything_else() -> None:
    sealed = record().sealed()
    body = json.loads(sealed.model_dump_json())
    del body["record_sha256"]
    assert sealed.record_sha256 == sha256_hex(canonical_json(body)) == sealed.body_hash()
    assert sealed.seal_is_valid() and not record().seal_is_valid()
    assert sealed.sealed() == sealed  # sealing is idempotent


def test_a_sealed_record_survives_the_wire() -> None:
    sealed = record().sealed()
    again = AuditRecordV1.model_validate_json(sealed.canonical())
    assert again == sealed and again.seal_is_valid()


def test_the_cells_one_pass_seal_is_the_sealed_record_on_the_wire() -> None:
    assert record().sealed_canonical() == record().sealed().canonical()
    assert AuditRecordV1.model_validate_json(record().sealed_canonical()).seal_is_valid()


@pytest.mark.parametrize("changes", [
    {"outcome": Outcome.FAILED}, {"attempts": 2}, {"cell_id": "cell-1"}, {"receipt": None},
    {"snapshot": SafetySnapshot(readable=True, node_tenant="t1", now_ms=6, submitted_at_ms=1)},
])
def test_any_edit_to_a_sealed_record_breaks_its_seal(changes) -> None:
    sealed = record().sealed()
    assert not sealed.model_copy(update=changes).seal_is_valid()
    edited_on_the_wire = json.loads(sealed.canonical())
    edited_on_the_wire["attempts"] = 3
    assert not AuditRecordV1.model_validate(edited_on_the_wire).seal_is_valid()


def test_terminal_outcomes_are_every_outcome_but_pending() -> None:
    assert TERMINAL_OUTCOMES == set(Outcome) - {Outcome.PENDING_APPROVAL}
