"""The reliability substrate: every timeout, retry, rate limit, breaker and bound in one place.

Each module holds one policy table that is the single source of its numbers; decision logic
takes time (``now_s``) and randomness (``random.Random``) as arguments and reads no clock.
``all_policy_tables()`` renders every table as JSON-able rows, for docs and for the harness.
"""

from __future__ import annotations

from exoarmur.reliability import bounds, breaker, rate_limit, retry, timeouts
from exoarmur.reliability.bounds import BOUNDS, BoundPolicy
from exoarmur.reliability.breaker import (
    BREAKER_POLICIES,
    BreakerPolicy,
    BreakerState,
    CircuitBreaker,
    Transition,
)
from exoarmur.reliability.rate_limit import RATE_LIMITS, RateLimitPolicy, TenantLimiter, TokenBucket
from exoarmur.reliability.retry import (
    RETRY_POLICIES,
    RetryDetails,
    RetryPolicy,
    backoff_s,
    retry_async,
)
from exoarmur.reliability.timeouts import (
    TIMEOUTS,
    TimeoutCategory,
    TimeoutPolicy,
    deadline_s,
    with_deadline,
)

__all__ = [
    "BOUNDS",
    "BREAKER_POLICIES",
    "RATE_LIMITS",
    "RETRY_POLICIES",
    "TIMEOUTS",
    "BoundPolicy",
    "BreakerPolicy",
    "BreakerState",
    "CircuitBreaker",
    "RateLimitPolicy",
    "RetryDetails",
    "RetryPolicy",
    "TenantLimiter",
    "TimeoutCategory",
    "TimeoutPolicy",
    "TokenBucket",
    "Transition",
    "all_policy_tables",
    "backoff_s",
    "deadline_s",
    "retry_async",
    "with_deadline",
]


def all_policy_tables() -> dict[str, list[dict]]:
    """Every policy table, keyed by module: JSON-able rows, each table in its own order."""
    return {
        "timeouts": timeouts.policy_table(),
        "retry": retry.policy_table(),
        "rate_limits": rate_limit.policy_table(),
        "breakers": breaker.policy_table(),
        "bounds": bounds.policy_table(),
    }
