"""The effector-caller seam: how a cell applies an allowed intent, at most once.

Production calls the effector with the intent's idempotency key (it applies at most once per
key, so a retry re-reads the first receipt instead of acting again), each attempt under the
EFFECTOR_CALL deadline, all of them under EXECUTION_CONTAINMENT, with bounded jittered retries
(``effector_call``) behind the effector circuit breaker. A run of failures whose answers may have
been lost is reconciled by asking the effector (``GET /v1/effects/{key}``) before recording FAILED.

The deadline fence: every call carries its absolute deadline (``Exo-Deadline-Ms``, wall-clock ms),
and the effector refuses to apply a call whose deadline has passed when it writes its ledger. So
a call the cell stopped waiting for (a timeout, a lost connection) is settled once its deadline
plus the allowed clock skew (``effect_deadline_skew_ms``) has passed: it was applied before then,
or it never will be. The cell waits for that instant before asking, so "not applied" is final.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, TypeVar
from urllib.parse import quote

import aiohttp

from exoarmur import natsio
from exoarmur.clock import now_ms
from exoarmur.contracts import DEADLINE_HEADER, DEADLINE_PASSED_STATUS, EffectorReceipt, IntentV1, Outcome, ReasonCode
from exoarmur.defects import Defect
from exoarmur.errors import BreakerOpen, DeadlineExceeded, ExoError, RetryExhausted
from exoarmur.reliability.breaker import BREAKER_POLICIES, BreakerState, CircuitBreaker, Transition
from exoarmur.reliability.bounds import BOUNDS
from exoarmur.reliability.retry import RETRY_POLICIES, RetryPolicy, retry_async
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s, with_deadline
from exoarmur.seams import Alternatives

T = TypeVar("T")


class EffectorFault(ExoError):
    """The effector answered 5xx or could not be reached: worth another attempt.

    ``answered``: the effector answered (the call is over at its end); otherwise the connection
    failed and the call's fate is unseen until its deadline has passed."""

    reason_code = ReasonCode.EFFECTOR_ERROR

    def __init__(self, message: str, *, answered: bool = True) -> None:
        super().__init__(message)
        self.answered = answered


class EffectorLate(DeadlineExceeded):
    """The effector refused the call because its deadline had passed: not applied (answered)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, reason_code=ReasonCode.TIMEOUT_EFFECTOR_CALL)


class EffectorRejected(ExoError):
    """The effector answered 4xx: the request itself is wrong, another attempt would be too."""

    reason_code = ReasonCode.EFFECTOR_ERROR


@dataclass(frozen=True)
class Execution:
    outcome: Outcome
    reason_code: ReasonCode
    receipt: EffectorReceipt | None
    attempts: int
    breaker_state: str | None = None  # as the first call found it


class EffectUnknown(ExoError):
    """This delivery failed, an earlier attempt (this delivery's, or a delivery before it) may
    have been applied, and the effector cannot be asked now. Recording FAILED could hide an
    applied effect, so the caller retries the intent later instead; ``failed`` is what it records
    once it gives up."""

    reason_code = ReasonCode.EFFECTOR_ERROR

    def __init__(self, failed: Execution) -> None:
        super().__init__(f"effect of a failed execution is unknown ({failed.reason_code.value})")
        self.failed = failed


_ABSENT = object()  # the effector says it never applied the key


# --- the seam's parts: production, and the defects that break them -------------------------------

async def no_deadline(_category: TimeoutCategory, awaitable: Awaitable[T]) -> T:
    """Defect ``no-timeout``: the call is awaited with no deadline at all."""
    return await awaitable


UNBOUNDED_RETRY = replace(RETRY_POLICIES["effector_call"], attempts=1_000_000)  # defect ``unbounded-retry``
# defect ``retry-no-backoff``: the same attempts, but each retry fires at once (no backoff sleep)
NO_BACKOFF_RETRY = replace(RETRY_POLICIES["effector_call"], base_s=0.0, cap_s=0.0)


def effector_breaker(on_transition: Callable[[Transition], None]) -> CircuitBreaker:
    return CircuitBreaker(BREAKER_POLICIES["effector"], on_transition=on_transition)


class NeverOpens:
    """Defect ``no-breaker``: a breaker that allows every call and never leaves CLOSED."""

    def state(self, _now_s: float) -> BreakerState:
        return BreakerState.CLOSED

    def allow(self, _now_s: float) -> bool:
        return True

    def record_success(self, _now_s: float) -> None:
        pass

    def record_failure(self, _now_s: float) -> None:
        pass


def never_opens(_on_transition: Callable[[Transition], None]) -> NeverOpens:
    return NeverOpens()


def eager_breaker(on_transition: Callable[[Transition], None]) -> CircuitBreaker:
    """Defect ``breaker-eager``: numbers of its own, not the policy table's (which still says 5, 0.5)."""
    return CircuitBreaker(replace(BREAKER_POLICIES["effector"], min_calls=2, failure_ratio=0.3),
                          on_transition=on_transition)


def long_window_breaker(on_transition: Callable[[Transition], None]) -> CircuitBreaker:
    """Defect ``breaker-long-window``: a window of its own (60 s), not the policy table's (5 s)."""
    return CircuitBreaker(replace(BREAKER_POLICIES["effector"], window_s=60.0), on_transition=on_transition)


class MiscountingBreaker(CircuitBreaker):
    """Defect ``breaker-miscount``: its window counts every other success as a failure (its
    half-open probes are counted right, so it still closes, and trips again)."""

    successes = 0

    def record_success(self, now_s: float) -> None:
        if self.state(now_s) is BreakerState.CLOSED:
            self.successes += 1
            if self.successes % 2 == 0:
                return self.record_failure(now_s)
        super().record_success(now_s)


def miscounting_breaker(on_transition: Callable[[Transition], None]) -> CircuitBreaker:
    return MiscountingBreaker(BREAKER_POLICIES["effector"], on_transition=on_transition)


def same_key(key_suffix: str) -> str:
    """Every attempt for an intent carries the same Idempotency-Key."""
    return key_suffix


def fresh_key(key_suffix: str) -> str:
    """Defect ``fresh-effector-key``: a new Idempotency-Key on each effector attempt."""
    return f"{key_suffix}~{uuid.uuid4().hex}"


def intent_node(intent: IntentV1, _node_owners: Mapping[str, str]) -> str:
    """The effect is applied to the node the intent names."""
    return intent.node_id


def tenants_first_node(intent: IntentV1, node_owners: Mapping[str, str]) -> str:
    """Defect ``effect-wrong-node``: the effect goes to the tenant's first node (a lookup by
    tenant instead of by the intent), not to the node the intent names."""
    return next((node for node, tenant in node_owners.items() if tenant == intent.tenant_id), intent.node_id)


@dataclass(frozen=True)
class EffectorCalls:
    within: Callable[[TimeoutCategory, Awaitable[Any]], Awaitable[Any]] = with_deadline
    retry: RetryPolicy = RETRY_POLICIES["effector_call"]
    breaker: Callable[[Callable[[Transition], None]], Any] = effector_breaker
    attempt_key: Callable[[str], str] = same_key
    target_node: Callable[[IntentV1, Mapping[str, str]], str] = intent_node


EFFECTOR_CALL_DEFECTS: Alternatives = {
    Defect.NO_TIMEOUT: {"within": no_deadline},
    Defect.UNBOUNDED_RETRY: {"retry": UNBOUNDED_RETRY},
    Defect.NO_BREAKER: {"breaker": never_opens},
    Defect.BREAKER_EAGER: {"breaker": eager_breaker},
    Defect.BREAKER_MISCOUNT: {"breaker": miscounting_breaker},
    Defect.BREAKER_LONG_WINDOW: {"breaker": long_window_breaker},
    Defect.FRESH_EFFECTOR_KEY: {"attempt_key": fresh_key},
    Defect.RETRY_NO_BACKOFF: {"retry": NO_BACKOFF_RETRY},
    Defect.EFFECT_WRONG_NODE: {"target_node": tenants_first_node},
}


# --- the caller ---------------------------------------------------------------------------------

class EffectorCaller:
    """One cell's way to the effector: its HTTP session, breaker and retry RNG."""

    def __init__(self, calls: EffectorCalls, rng: random.Random, on_transition: Callable[[Transition], None],
                 node_owners: Mapping[str, str] | None = None,
                 skew_ms: int = BOUNDS["effect_deadline_skew_ms"].limit) -> None:
        self.calls = calls
        self.skew_ms = skew_ms
        self.node_owners = node_owners or {}
        self.rng = rng
        self.breaker = calls.breaker(on_transition)
        self.http: aiohttp.ClientSession | None = None

    async def execute(self, intent: IntentV1, key_suffix: str = "", *, redelivered: bool = False,
                      not_after_ms: int | None = None) -> Execution:
        """Apply ``intent`` (retrying within policy); EXECUTED with its receipt, or FAILED with why.

        Every call's deadline (sent along) ends no later than the containment deadline nor than
        ``not_after_ms``, the end of the intent's own budget, so no call of this delivery can
        still be applied once a redelivery comes. Before FAILED it asks the effector whether the
        key was applied after all, whenever an attempt was made or the intent is a redelivery (a
        killed cell's call may have landed), first waiting out the deadline (plus skew) of every
        call whose answer it did not see. If the effector cannot say, and a call's fate is unseen
        or the intent is a redelivery, ``EffectUnknown``."""
        attempts = 0
        first_seen: list[str] = []
        unseen_deadlines: list[int] = []  # deadlines of calls sent whose answer never came
        call_ms = int(deadline_s(TimeoutCategory.EFFECTOR_CALL) * 1000)
        last_ms = now_ms() + int(deadline_s(TimeoutCategory.EXECUTION_CONTAINMENT) * 1000)
        if not_after_ms is not None:
            last_ms = min(last_ms, not_after_ms)

        async def attempt(_index: int) -> EffectorReceipt:
            nonlocal attempts
            now = time.monotonic()
            if not first_seen:  # the state the call met, read at the same instant as allow()
                first_seen.append(self.breaker.state(now).value)
            if not self.breaker.allow(now):
                raise BreakerOpen("effector breaker is open")
            attempts += 1
            call_deadline_ms = min(now_ms() + call_ms, last_ms)
            try:
                receipt = await self._call_effector(intent, self.calls.attempt_key(key_suffix), call_deadline_ms)
            except BaseException as exc:  # every allowed call must be recorded, or a probe slot leaks
                if not _answered(exc):
                    unseen_deadlines.append(call_deadline_ms)
                self.breaker.record_failure(time.monotonic())
                raise
            self.breaker.record_success(time.monotonic())
            return receipt

        all_attempts = retry_async(attempt, self.calls.retry, self.rng,
                                   is_retryable=lambda e: isinstance(e, (EffectorFault, DeadlineExceeded)))
        try:
            receipt, _ = await self.calls.within(TimeoutCategory.EXECUTION_CONTAINMENT, all_attempts)
        except ExoError as exc:  # retries exhausted, breaker open, containment deadline, rejected
            reason = exc.reason_code
            if isinstance(exc, RetryExhausted):
                last = exc.last_error
                reason = last.reason_code if isinstance(last, DeadlineExceeded) else ReasonCode.RETRY_EXHAUSTED
            failed = Execution(Outcome.FAILED, reason, None, attempts, _first(first_seen))
            if not (attempts or redelivered):
                return failed  # nothing was ever sent for this intent
            # An attempt may have been applied with its answer lost: ask before recording FAILED,
            # once no call still in flight can be applied (the effector refuses it past its deadline).
            if unseen_deadlines:
                await asyncio.sleep(max(0, max(unseen_deadlines) + self.skew_ms - now_ms()) / 1000)
            applied = await self._applied_receipt(intent, key_suffix)
            if applied is _ABSENT:
                return failed  # it was not applied, and past the deadlines it never can be
            if applied is None:
                if redelivered or unseen_deadlines:  # a call may have landed: never record a guess
                    raise EffectUnknown(failed)
                # Every call of ours was answered: none can still land. (A 5xx answer may hide an
                # effect applied with its response lost; unconfirmable, it is FAILED as before.)
                return failed
            receipt = applied
        return Execution(Outcome.EXECUTED, ReasonCode.OK, receipt, attempts, _first(first_seen))

    async def applied(self, intent: IntentV1, key_suffix: str = "") -> bool | None:
        """Whether the effector applied this intent's key; None if it cannot say."""
        receipt = await self._applied_receipt(intent, key_suffix)
        return None if receipt is None else receipt is not _ABSENT

    async def _applied_receipt(self, intent: IntentV1, key_suffix: str) -> EffectorReceipt | object | None:
        """The effector's receipt for this intent's key if it applied it, ``_ABSENT`` if it says it
        did not, None if it cannot say (unreachable, a deadline, an unexpected answer)."""
        key = quote(natsio.msg_id(intent.tenant_id, intent.idempotency_key) + key_suffix, safe="")

        async def get() -> tuple[int, bytes]:
            async with self.http.get(f"/v1/effects/{key}") as response:
                return response.status, await response.read()

        try:
            status, content = await with_deadline(TimeoutCategory.EFFECTOR_CALL, get())
        except (aiohttp.ClientError, ExoError):
            return None
        if status == 404:
            return _ABSENT
        return EffectorReceipt.model_validate_json(content) if status == 200 else None

    async def _call_effector(self, intent: IntentV1, key_suffix: str = "",
                             deadline_ms: int | None = None) -> EffectorReceipt:
        intent_ref = natsio.msg_id(intent.tenant_id, intent.idempotency_key)
        body = {"intent_ref": intent_ref, "tenant_id": intent.tenant_id,
                "node_id": self.calls.target_node(intent, self.node_owners),
                "action": intent.action, "parameters": intent.parameters}
        headers = {"Idempotency-Key": intent_ref + key_suffix}
        if deadline_ms is not None:
            headers[DEADLINE_HEADER] = str(deadline_ms)

        async def post() -> tuple[int, bytes]:
            async with self.http.post("/v1/effects", json=body, headers=headers) as response:
                return response.status, await response.read()

        try:
            status, content = await self.calls.within(TimeoutCategory.EFFECTOR_CALL, post())
        except aiohttp.ClientError as exc:
            raise EffectorFault(f"effector unreachable: {type(exc).__name__}", answered=False) from None
        if status == DEADLINE_PASSED_STATUS:
            raise EffectorLate(f"effector refused the call past its deadline: {content[:200]!r}")
        if status >= 500:
            raise EffectorFault(f"effector answered {status}")
        if status >= 400:
            raise EffectorRejected(f"effector refused: {status} {content[:200]!r}")
        return EffectorReceipt.model_validate_json(content)


def _answered(exc: BaseException) -> bool:
    """The effector answered this call, so it is over at the effector's end (applied or not)."""
    return isinstance(exc, (EffectorRejected, EffectorLate)) or (isinstance(exc, EffectorFault) and exc.answered)


def _first(values: list[str]) -> str | None:
    return values[0] if values else None
