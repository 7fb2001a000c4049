"""Bounded retries with full-jitter exponential backoff, from one table.

Why: transient faults (a dropped connection, a slow PubAck) deserve another try, but an
unbounded or synchronised retry turns one fault into a storm. Every policy caps the number of
attempts and the wait; full jitter (``uniform(0, min(cap, base * 2**n))``) spreads retries
apart. The random source and the sleep are injected, so a seed replays the exact waits.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import TypeVar

from exoarmur.errors import RetryExhausted

T = TypeVar("T")

# Past this exponent ``base * 2**n`` is above any sane cap; clamping avoids float overflow.
_MAX_EXPONENT = 62


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``attempts`` calls in all (the first included); waits come from full jitter."""

    name: str
    attempts: int
    base_s: float
    cap_s: float
    retry_on: str

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"{self.name}: attempts must be >= 1")
        if self.base_s < 0 or self.cap_s < self.base_s:
            raise ValueError(f"{self.name}: need 0 <= base_s <= cap_s")


# The single source of the numbers; only policies the stack applies are listed here, so every
# row the bundle shows is one in force (cells: effector calls).
_POLICIES: tuple[RetryPolicy, ...] = (
    RetryPolicy(
        "effector_call",
        attempts=4,
        base_s=0.02,
        cap_s=0.25,
        retry_on="connection errors, a per-attempt EFFECTOR_CALL timeout, HTTP 5xx or 429; "
        "never another 4xx",
    ),
)

RETRY_POLICIES: Mapping[str, RetryPolicy] = MappingProxyType({p.name: p for p in _POLICIES})


def backoff_s(policy: RetryPolicy, attempt: int, rng: random.Random) -> float:
    """The wait after failed attempt ``attempt`` (0-based): ``uniform(0, min(cap, base*2**n))``."""
    if attempt < 0:
        raise ValueError("attempt is a 0-based index, must be >= 0")
    if attempt >= _MAX_EXPONENT:
        ceiling_s = policy.cap_s
    else:
        ceiling_s = min(policy.cap_s, policy.base_s * 2**attempt)
    return rng.uniform(0.0, ceiling_s)


@dataclass(frozen=True)
class RetryDetails:
    """One retry about to happen: ``attempt`` is the 0-based index of the attempt that failed,
    ``wait_s`` the backoff before the next one, ``error`` the failure as ``Type: message``."""

    policy_name: str
    attempt: int
    wait_s: float
    error: str


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


async def retry_async(
    fn: Callable[[int], Awaitable[T]],
    policy: RetryPolicy,
    rng: random.Random,
    *,
    is_retryable: Callable[[BaseException], bool],
    on_retry: Callable[[RetryDetails], None] | None = None,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
) -> tuple[T, int]:
    """Call ``fn(attempt_index)`` until it returns, at most ``policy.attempts`` times.

    Returns ``(result, attempts_used)``. An error ``is_retryable`` rejects propagates at once,
    unchanged. When every attempt failed retryably, raises ``RetryExhausted`` chained from the
    last error. Cancellation (``BaseException`` that is not ``Exception``) is never retried.
    """
    for attempt in range(policy.attempts):
        try:
            return await fn(attempt), attempt + 1
        except Exception as exc:
            if not is_retryable(exc):
                raise
            if attempt + 1 >= policy.attempts:
                raise RetryExhausted(
                    f"{policy.name}: all {policy.attempts} attempts failed; last: {_describe(exc)}",
                    attempts=policy.attempts,
                    last_error=exc,
                ) from exc
            wait_s = backoff_s(policy, attempt, rng)
            if on_retry is not None:
                on_retry(RetryDetails(policy.name, attempt, wait_s, _describe(exc)))
            await sleep(wait_s)
    raise AssertionError("unreachable: attempts >= 1")  # pragma: no cover


def policy_table() -> list[dict]:
    """JSON-able rows of ``RETRY_POLICIES``."""
    return [asdict(p) for p in RETRY_POLICIES.values()]
