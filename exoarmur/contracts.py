"""Wire contracts: what crosses a process boundary (HTTP bodies, NATS payloads, the audit log).

Pydantic v2 models with ``extra="forbid"``, so an unknown field is an error, not a surprise.
Canonical JSON (orjson, sorted keys) is the form that is hashed and replayed.
"""

from __future__ import annotations

import hashlib
from enum import Enum
from typing import Any

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer

# Bounds on intent fields live beside the contract they bound.
PARAMETERS_MAX_BYTES = 4096
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


class ActionClass(str, Enum):
    A0 = "A0"  # observe
    A1 = "A1"  # soft containment
    A2 = "A2"  # hard containment: needs operator approval
    A3 = "A3"  # irreversible: needs operator approval


APPROVAL_REQUIRED_CLASSES = frozenset({ActionClass.A2, ActionClass.A3})

# The cells -> effector call's absolute deadline (wall-clock ms since the epoch): a call still
# unapplied when it passes is refused, never applied late (the deadline fence, checked in the
# effector's ledger transaction), with this status.
DEADLINE_HEADER = "Exo-Deadline-Ms"
DEADLINE_PASSED_STATUS = 412  # the request's precondition (its deadline) no longer holds
# The effector keeps an idle connection open this long; its callers drop theirs after half of it.
# A caller reusing a connection at the instant the server closes it (uvicorn's default is 5 s,
# under aiohttp's 15 s) fails a call that no request ever carried: the breaker counted it, the
# wire never saw it (a breaker scenario reused a pooled connection 4,998.5 ms after its last
# answer: 1.5 ms inside uvicorn's 5 s).
EFFECTOR_KEEP_ALIVE_S = 30.0


class Outcome(str, Enum):
    EXECUTED = "EXECUTED"
    DENIED = "DENIED"
    FAILED = "FAILED"
    PENDING_APPROVAL = "PENDING_APPROVAL"  # not terminal: the intent waits for an operator
    EXPIRED = "EXPIRED"


TERMINAL_OUTCOMES = frozenset({Outcome.EXECUTED, Outcome.DENIED, Outcome.FAILED, Outcome.EXPIRED})


class ReasonCode(str, Enum):
    OK = "OK"
    KILL_SWITCH_GLOBAL = "KILL_SWITCH_GLOBAL"
    KILL_SWITCH_TENANT = "KILL_SWITCH_TENANT"
    SAFETY_STATE_UNAVAILABLE = "SAFETY_STATE_UNAVAILABLE"
    APPROVAL_REQUIRED = "APPROVAL_REQUIRED"
    APPROVAL_DENIED = "APPROVAL_DENIED"
    APPROVAL_EXPIRED = "APPROVAL_EXPIRED"
    APPROVAL_MISMATCH = "APPROVAL_MISMATCH"
    TENANT_MISMATCH = "TENANT_MISMATCH"
    UNKNOWN_NODE = "UNKNOWN_NODE"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    FORBIDDEN = "FORBIDDEN"
    INVALID_INTENT = "INVALID_INTENT"
    NOT_FOUND = "NOT_FOUND"
    RATE_LIMITED_TENANT = "RATE_LIMITED_TENANT"
    RATE_LIMITED_GLOBAL = "RATE_LIMITED_GLOBAL"
    QUEUE_FULL = "QUEUE_FULL"
    BREAKER_OPEN = "BREAKER_OPEN"
    RETRY_EXHAUSTED = "RETRY_EXHAUSTED"
    EFFECTOR_ERROR = "EFFECTOR_ERROR"
    STACK_UNAVAILABLE = "STACK_UNAVAILABLE"
    NATS_CLUSTER_UNFORMED = "NATS_CLUSTER_UNFORMED"  # a NATS cluster's routes or JetStream meta leader never came
    CONFIG_INVALID = "CONFIG_INVALID"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    TIMEOUT_NATS_CONNECT = "TIMEOUT_NATS_CONNECT"
    TIMEOUT_NATS_PUBLISH = "TIMEOUT_NATS_PUBLISH"
    TIMEOUT_NATS_SUBSCRIBE = "TIMEOUT_NATS_SUBSCRIBE"
    TIMEOUT_NATS_STREAM_CREATE = "TIMEOUT_NATS_STREAM_CREATE"
    TIMEOUT_KV_CREATE = "TIMEOUT_KV_CREATE"
    TIMEOUT_KV_GET = "TIMEOUT_KV_GET"
    TIMEOUT_KV_PUT = "TIMEOUT_KV_PUT"
    TIMEOUT_KV_DELETE = "TIMEOUT_KV_DELETE"
    TIMEOUT_EXECUTION_INTENT = "TIMEOUT_EXECUTION_INTENT"
    TIMEOUT_EXECUTION_CONTAINMENT = "TIMEOUT_EXECUTION_CONTAINMENT"
    TIMEOUT_APPROVAL_CHECK = "TIMEOUT_APPROVAL_CHECK"
    TIMEOUT_APPROVAL_GRANT = "TIMEOUT_APPROVAL_GRANT"
    TIMEOUT_REPLAY_PROCESSING = "TIMEOUT_REPLAY_PROCESSING"
    TIMEOUT_API_REQUEST = "TIMEOUT_API_REQUEST"
    TIMEOUT_EFFECTOR_CALL = "TIMEOUT_EFFECTOR_CALL"


def canonical_json(data: Any) -> bytes:
    """The one serialisation that is hashed: orjson, sorted keys, no whitespace."""
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def key_digest(tenant_id: str, idempotency_key: str) -> str:
    """A subject-safe token naming one (tenant, idempotency key): the unit of exactly-once."""
    return sha256_hex(f"{tenant_id}\x1f{idempotency_key}".encode())[:32]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def canonical(self) -> bytes:
        return canonical_json(self.model_dump(mode="json"))


class IntentV1(_Wire):
    """One request to act on a node, submitted by a peer on behalf of its tenant."""

    intent_id: str = Field(pattern=ID_PATTERN)
    tenant_id: str = Field(pattern=ID_PATTERN)
    peer_id: str = Field(pattern=ID_PATTERN)
    node_id: str = Field(pattern=ID_PATTERN)
    action: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    action_class: ActionClass
    idempotency_key: str = Field(min_length=1, max_length=128)
    parameters: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str = Field(default="", max_length=128)

    @field_validator("parameters")
    @classmethod
    def _bounded_parameters(cls, value: dict[str, Any]) -> dict[str, Any]:
        size = len(canonical_json(value))
        if size > PARAMETERS_MAX_BYTES:
            raise ValueError(f"parameters are {size} bytes; the bound is {PARAMETERS_MAX_BYTES}")
        return value

    def intent_hash(self) -> str:
        return sha256_hex(self.canonical())

    def digest(self) -> str:
        return key_digest(self.tenant_id, self.idempotency_key)


class KillSwitchState(_Wire):
    engaged: bool
    reason: str = ""
    set_by: str = "operator"


class ApprovalStatus(str, Enum):
    APPROVED = "APPROVED"
    DENIED = "DENIED"


class ApprovalV1(_Wire):
    """An operator's decision on one intent, bound to the intent's hash, with an expiry."""

    tenant_id: str = Field(pattern=ID_PATTERN)
    idempotency_key: str = Field(min_length=1, max_length=128)
    intent_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    status: ApprovalStatus
    expires_at_ms: int
    approved_by: str = "operator"
    # When the api granted it. An intent whose approval wait had run out by then had expired:
    # the approval came too late for it. Absent from approvals granted before it was recorded.
    granted_at_ms: int | None = None

    @model_serializer(mode="wrap")
    def _without_unknown_grant_time(self, to_dict):
        """No ``granted_at_ms`` key when it is unknown: records sealed before the field existed
        keep their canonical bytes, so their seals still verify."""
        data = to_dict(self)
        if data.get("granted_at_ms") is None:
            data.pop("granted_at_ms", None)
        return data


class SafetySnapshot(_Wire):
    """Everything ``decide`` may look at besides the intent. Recorded beside each decision.

    A switch or approval that could not be read is ``None`` together with ``readable=False``;
    a key that does not exist is ``engaged=False`` at revision 0.
    """

    readable: bool
    global_switch: bool = False
    global_revision: int = 0
    tenant_switch: bool = False
    tenant_revision: int = 0
    approval: ApprovalV1 | None = None
    approval_revision: int = 0
    node_tenant: str | None = None  # the tenant that owns the intent's node, per stack config
    now_ms: int = 0  # the time the decision is made at, as an input (decide reads no clock)
    submitted_at_ms: int = 0
    approval_wait_ms: int = 0


class Decision(_Wire):
    outcome: Outcome  # EXECUTE is spelled EXECUTED only once the effect is applied
    reason_code: ReasonCode
    execute: bool = False


class DecisionJournalV1(_Wire):
    """A cell's decision for one intent and the snapshot it was made on, journaled before it is
    acted on (the effector called) or recorded; the first journaled wins. A redelivery reuses a
    journaled refusal, and an EXECUTE whose effect is applied, instead of deciding afresh, so the
    terminal record states the decision any effect was applied under; one whose EXECUTE is not
    applied once ``not_after_ms`` (+ skew) has passed decides afresh and replaces it, unless the
    delivery that journaled it closed it as ``failed`` (then it records that, and acts no more)."""

    tenant_id: str
    idempotency_key: str
    intent_hash: str
    decision: Decision
    snapshot: SafetySnapshot
    cell_id: str
    not_after_ms: int  # every effector call made under this decision carries a deadline <= this
    # Set by the delivery that journaled this EXECUTE when its calls failed, before it records
    # FAILED for this reason: every later delivery records the same, none calls again.
    failed: ReasonCode | None = None


class EffectorReceipt(_Wire):
    idempotency_key: str
    receipt_id: str
    first_applied_at_ms: int
    calls: int
    replayed: bool


class AuditRecordV1(_Wire):
    """The one terminal record of an intent. ``record_sha256`` is the sha256 of the canonical
    JSON of every other field, so any edit to a record is detectable on its own."""

    audit_id: str
    tenant_id: str
    intent_id: str
    idempotency_key: str
    intent_hash: str
    node_id: str
    action: str
    action_class: ActionClass
    outcome: Outcome
    reason_code: ReasonCode
    decision: Decision  # what decide(intent, snapshot) returned; outcome may differ after execution
    snapshot: SafetySnapshot
    breaker_state: str
    attempts: int
    receipt: EffectorReceipt | None
    cell_id: str
    decided_at_ms: int
    record_sha256: str = ""

    def body_hash(self) -> str:
        body = self.model_dump(mode="json", exclude={"record_sha256"})
        return sha256_hex(canonical_json(body))

    def sealed(self) -> "AuditRecordV1":
        return self.model_copy(update={"record_sha256": self.body_hash()})

    def sealed_canonical(self) -> bytes:
        """``sealed().canonical()``, with the record dumped once instead of twice (a cell's hot path)."""
        body = self.model_dump(mode="json", exclude={"record_sha256"})
        body["record_sha256"] = sha256_hex(canonical_json(body))
        return canonical_json(body)

    def seal_is_valid(self) -> bool:
        return self.record_sha256 == self.body_hash()


def audit_id_for(tenant_id: str, idempotency_key: str) -> str:
    return "aud-" + key_digest(tenant_id, idempotency_key)


class RefusalCounterV1(_Wire):
    """Admission refusals, counted per tenant and reason over one flush interval."""

    api_id: str
    tenant_id: str
    reason_code: ReasonCode
    count: int
    window_start_ms: int
    window_end_ms: int


class ErrorBody(_Wire):
    reason_code: ReasonCode
    detail: str


class SubmitResponse(_Wire):
    intent_id: str
    tenant_id: str
    idempotency_key: str
    accepted: bool
    duplicate: bool
    stream_seq: int
