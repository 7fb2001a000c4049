"""Admission rate limits: a token bucket per tenant, and one shared by all tenants.

Why: one noisy tenant must not starve the others (the tenant bucket), and the stack as a
whole must not accept more than it can drain (the global bucket). Buckets are pure functions
of the timestamps they are given; they read no clock, so a test or a replay decides exactly
as the live run did.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType

from exoarmur.contracts import ReasonCode

# Float refill arithmetic can land a hair under a whole token; this much slack is not a token.
_EPSILON = 1e-9


@dataclass(frozen=True)
class RateLimitPolicy:
    """``rate_per_s`` tokens refill per second, up to ``burst`` held at once (the start level)."""

    name: str
    rate_per_s: float
    burst: int

    def __post_init__(self) -> None:
        if not self.rate_per_s > 0 or self.burst < 1:
            raise ValueError(f"{self.name}: need rate_per_s > 0 and burst >= 1")


# The single source of the numbers.
_POLICIES: tuple[RateLimitPolicy, ...] = (
    RateLimitPolicy("tenant", rate_per_s=200.0, burst=400),
    RateLimitPolicy("global", rate_per_s=1200.0, burst=2000),
)

RATE_LIMITS: Mapping[str, RateLimitPolicy] = MappingProxyType({p.name: p for p in _POLICIES})


class TokenBucket:
    """A token bucket that starts full at ``start_s``.

    A timestamp earlier than the last one seen is treated as the last one: time never runs
    backwards here, so a clock step back can neither refill nor drain the bucket.
    """

    def __init__(self, policy: RateLimitPolicy, start_s: float = 0.0) -> None:
        self.policy = policy
        self._tokens = float(policy.burst)
        self._last_s = start_s

    def _refill(self, now_s: float) -> None:
        if now_s > self._last_s:
            gained = (now_s - self._last_s) * self.policy.rate_per_s
            self._tokens = min(float(self.policy.burst), self._tokens + gained)
            self._last_s = now_s

    def tokens(self, now_s: float) -> float:
        """Tokens available at ``now_s`` (refills, takes nothing)."""
        self._refill(now_s)
        return self._tokens

    def can_acquire(self, now_s: float, n: int = 1) -> bool:
        """Whether ``try_acquire(now_s, n)`` would succeed, without taking anything."""
        if n < 1:
            raise ValueError("n must be >= 1")
        return self.tokens(now_s) + _EPSILON >= n

    def try_acquire(self, now_s: float, n: int = 1) -> bool:
        """Take ``n`` tokens if all are available at ``now_s``; otherwise take none."""
        if not self.can_acquire(now_s, n):
            return False
        self._tokens = max(0.0, self._tokens - n)
        return True


class TenantLimiter:
    """Admits a request only if both its tenant's bucket and the global bucket have a token.

    The tenant bucket is checked first. Both are peeked before either is taken from, so a
    request refused by one bucket costs nothing in the other. A tenant's bucket is created,
    full, the first time the tenant is seen; tenants come from the stack config, so the map is
    bounded by it.
    """

    def __init__(self, tenant_policy: RateLimitPolicy, global_policy: RateLimitPolicy) -> None:
        self.tenant_policy = tenant_policy
        self.global_policy = global_policy
        self._tenants: dict[str, TokenBucket] = {}
        self._global: TokenBucket | None = None

    def _tenant_bucket(self, tenant_id: str, now_s: float) -> TokenBucket:
        bucket = self._tenants.get(tenant_id)
        if bucket is None:
            bucket = self._tenants[tenant_id] = TokenBucket(self.tenant_policy, start_s=now_s)
        return bucket

    def _global_bucket(self, now_s: float) -> TokenBucket:
        if self._global is None:
            self._global = TokenBucket(self.global_policy, start_s=now_s)
        return self._global

    def admit(self, tenant_id: str, now_s: float) -> ReasonCode | None:
        """``None`` if admitted (one token taken from each bucket), else the refusal reason."""
        tenant = self._tenant_bucket(tenant_id, now_s)
        shared = self._global_bucket(now_s)
        if not tenant.can_acquire(now_s):
            return ReasonCode.RATE_LIMITED_TENANT
        if not shared.can_acquire(now_s):
            return ReasonCode.RATE_LIMITED_GLOBAL
        if not (tenant.try_acquire(now_s) and shared.try_acquire(now_s)):
            # Unreachable on one event loop; would mean concurrent use from threads.
            raise RuntimeError("peeked tokens vanished between peek and take")
        return None

    def tenant_tokens(self, tenant_id: str, now_s: float) -> float:
        """Tokens in ``tenant_id``'s bucket at ``now_s`` (a full bucket for an unseen tenant)."""
        bucket = self._tenants.get(tenant_id)
        return float(self.tenant_policy.burst) if bucket is None else bucket.tokens(now_s)

    def global_tokens(self, now_s: float) -> float:
        """Tokens in the global bucket at ``now_s`` (full before the first admit)."""
        if self._global is None:
            return float(self.global_policy.burst)
        return self._global.tokens(now_s)


def policy_table() -> list[dict]:
    """JSON-able rows of ``RATE_LIMITS``."""
    return [asdict(p) for p in RATE_LIMITS.values()]
