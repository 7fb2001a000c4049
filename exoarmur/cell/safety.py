"""The safety seam: the snapshot a cell decides on, and the decision it records.

Production reads the kill switches (and, for A2/A3, the approval) fresh for every intent and
fails closed: a state it cannot read is ``readable=False``, which ``decide`` denies. The decision
is ``decide(intent, snapshot)`` on the very snapshot that is recorded, so replay re-derives it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from nats.js import JetStreamContext
from pydantic import ValidationError

from exoarmur import natsio
from exoarmur.clock import now_ms
from exoarmur.cell.fresh_reads import shared_by
from exoarmur.contracts import (
    APPROVAL_REQUIRED_CLASSES,
    ApprovalStatus,
    ApprovalV1,
    Decision,
    IntentV1,
    KillSwitchState,
    SafetySnapshot,
)
from exoarmur.decision import decide
from exoarmur.defects import Defect
from exoarmur.errors import ExoError
from exoarmur.reliability.timeouts import TimeoutCategory
from exoarmur.seams import Alternatives

Read = Awaitable[tuple[bytes | None, int]]


def fresh_read(js: JetStreamContext, bucket: str, key: str, category: TimeoutCategory) -> Read:
    """``key`` read after this call, by a direct get shared with the intents that asked for it in
    the same loop turn (``fresh_reads``)."""
    reads = shared_by(js)
    return reads.read(f"{bucket}/{key}",
                      lambda: natsio.read_key(js, bucket, key, category, leader_only=reads.leader_only))


def read_switches(js: JetStreamContext, tenant_id: str) -> list[Read]:
    """The global and the tenant's kill switch, read fresh."""
    return [
        fresh_read(js, natsio.SAFETY_BUCKET, natsio.GLOBAL_SWITCH_KEY, TimeoutCategory.KV_GET),
        fresh_read(js, natsio.SAFETY_BUCKET, natsio.tenant_switch_key(tenant_id), TimeoutCategory.KV_GET),
    ]


def ignore_switches(_js: JetStreamContext, _tenant_id: str) -> list[Read]:
    """Defect ``killswitch-ignored``: the switches are never read, as if none existed."""
    return [_absent(), _absent()]


SWITCH_CACHE_S = 2.0  # defect ``switch-cache``
_cached_reads: dict[str, tuple[float, tuple[bytes | None, int]]] = {}


def cached_switches(js: JetStreamContext, tenant_id: str) -> list[Read]:
    """Defect ``switch-cache``: each switch value read is reused for 2 s, so a switch engaged in
    the meantime is not seen (a read that failed is not cached: it still fails closed)."""
    return [_cached(js, natsio.GLOBAL_SWITCH_KEY), _cached(js, natsio.tenant_switch_key(tenant_id))]


async def _cached(js: JetStreamContext, key: str) -> tuple[bytes | None, int]:
    hit = _cached_reads.get(key)
    if hit is not None and time.monotonic() - hit[0] < SWITCH_CACHE_S:
        return hit[1]
    value = await natsio.read_key(js, natsio.SAFETY_BUCKET, key, TimeoutCategory.KV_GET)
    _cached_reads[key] = (time.monotonic(), value)
    return value


def as_recorded(approval: ApprovalV1) -> ApprovalV1:
    return approval


def any_record_approves(approval: ApprovalV1) -> ApprovalV1:
    """Defect ``approval-bypass``: "there is an approval record" is taken as yes, even DENIED."""
    return approval.model_copy(update={"status": ApprovalStatus.APPROVED})


def grant_time_ignored(approval: ApprovalV1) -> ApprovalV1:
    """Defect ``late-approval-accepted``: when the approval was granted is not looked at, so one
    that came after the intent's wait ran out authorises it until a cell records it expired."""
    return approval.model_copy(update={"granted_at_ms": None})


def fail_closed(base: dict[str, Any]) -> SafetySnapshot:
    """An unreadable safety state is not "off": ``readable=False``, which ``decide`` denies."""
    return SafetySnapshot(readable=False, now_ms=now_ms(), **base)


def fail_open(base: dict[str, Any]) -> SafetySnapshot:
    """Defect ``killswitch-fail-open``: an unreadable safety state is taken as "no switch engaged"."""
    return SafetySnapshot(readable=True, now_ms=now_ms(), **base)


def decide_as_recorded(intent: IntentV1, snapshot: SafetySnapshot) -> tuple[Decision, SafetySnapshot]:
    """The decision and the snapshot it was made on, as recorded together."""
    return decide(intent, snapshot), snapshot


def decide_on_clock(intent: IntentV1, snapshot: SafetySnapshot) -> tuple[Decision, SafetySnapshot]:
    """Defect ``nondeterministic-decision``: decides on the wall clock, records another time."""
    decision = decide(intent, snapshot.model_copy(update={"now_ms": now_ms()}))
    return decision, snapshot.model_copy(update={"now_ms": snapshot.submitted_at_ms})


@dataclass(frozen=True)
class Safety:
    switches: Callable[[JetStreamContext, str], list[Read]] = read_switches
    approval: Callable[[ApprovalV1], ApprovalV1] = as_recorded
    unreadable: Callable[[dict[str, Any]], SafetySnapshot] = fail_closed
    decide: Callable[[IntentV1, SafetySnapshot], tuple[Decision, SafetySnapshot]] = decide_as_recorded

    async def snapshot(self, js: JetStreamContext, intent: IntentV1, base: dict[str, Any]) -> SafetySnapshot:
        """The safety state for ``intent``, read now; ``base`` holds the fields known without reading."""
        try:
            reads = self.switches(js, intent.tenant_id)
            if intent.action_class in APPROVAL_REQUIRED_CLASSES:
                key = natsio.approval_key(intent.tenant_id, intent.digest())
                reads.append(fresh_read(js, natsio.APPROVALS_BUCKET, key, TimeoutCategory.APPROVAL_CHECK))
            results = await asyncio.gather(*reads)
            (g_raw, g_rev), (t_raw, t_rev) = results[0], results[1]
            approval, a_rev = None, 0
            if len(results) > 2 and results[2][0] is not None:
                approval = self.approval(ApprovalV1.model_validate_json(results[2][0]))
                a_rev = results[2][1]
            return SafetySnapshot(
                readable=True,
                global_switch=_engaged(g_raw), global_revision=g_rev,
                tenant_switch=_engaged(t_raw), tenant_revision=t_rev,
                approval=approval, approval_revision=a_rev, now_ms=now_ms(), **base,
            )
        except (ExoError, ValidationError, ValueError):  # fail closed (in production): unknown is not "off"
            return self.unreadable(base)


SAFETY_DEFECTS: Alternatives = {
    Defect.KILLSWITCH_IGNORED: {"switches": ignore_switches},
    Defect.SWITCH_CACHE: {"switches": cached_switches},
    Defect.APPROVAL_BYPASS: {"approval": any_record_approves},
    Defect.LATE_APPROVAL_ACCEPTED: {"approval": grant_time_ignored},
    Defect.KILLSWITCH_FAIL_OPEN: {"unreadable": fail_open},
    Defect.NONDETERMINISTIC_DECISION: {"decide": decide_on_clock},
}


async def _absent() -> tuple[None, int]:
    return None, 0


def _engaged(raw: bytes | None) -> bool:
    if raw is None:
        return False
    return KillSwitchState.model_validate_json(raw).engaged
