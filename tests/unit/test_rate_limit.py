"""Token buckets: refill, burst, refusal, clock steps back; tenant vs global accounting."""

from __future__ import annotations

import json

import pytest

from exoarmur.contracts import ReasonCode
from exoarmur.reliability import rate_limit
from exoarmur.reliability.rate_limit import (
    RATE_LIMITS,
    RateLimitPolicy,
    TenantLimiter,
    TokenBucket,
)

TEN_PER_S = RateLimitPolicy("t", rate_per_s=10.0, burst=5)


def test_agreed_numbers_and_table() -> None:
    assert (RATE_LIMITS["tenant"].rate_per_s, RATE_LIMITS["tenant"].burst) == (200.0, 400)
    assert (RATE_LIMITS["global"].rate_per_s, RATE_LIMITS["global"].burst) == (1200.0, 2000)
    rows = rate_limit.policy_table()
    assert json.loads(json.dumps(rows)) == rows
    assert {"name": "tenant", "rate_per_s": 200.0, "burst": 400} in rows


def test_policy_validation() -> None:
    with pytest.raises(ValueError):
        RateLimitPolicy("x", rate_per_s=0.0, burst=1)
    with pytest.raises(ValueError):
        RateLimitPolicy("x", rate_per_s=1.0, burst=0)


def test_starts_full_burst_then_refuses() -> None:
    bucket = TokenBucket(TEN_PER_S, start_s=100.0)
    assert bucket.tokens(100.0) == 5.0
    assert [bucket.try_acquire(100.0) for _ in range(7)] == [True] * 5 + [False] * 2
    assert bucket.tokens(100.0) == pytest.approx(0.0)


def test_refill_at_rate_and_capped_at_burst() -> None:
    bucket = TokenBucket(TEN_PER_S, start_s=0.0)
    for _ in range(5):
        assert bucket.try_acquire(0.0)
    assert not bucket.try_acquire(0.05)  # half a token
    assert bucket.try_acquire(0.1)  # one token after 0.1 s at 10/s
    assert not bucket.try_acquire(0.1)
    assert bucket.tokens(0.3) == pytest.approx(2.0)
    assert bucket.tokens(1000.0) == 5.0  # never above burst


def test_refusal_takes_nothing_and_multi_token_is_all_or_nothing() -> None:
    bucket = TokenBucket(TEN_PER_S)
    assert bucket.try_acquire(0.0, n=3)
    assert not bucket.try_acquire(0.0, n=3)  # only 2 left
    assert bucket.tokens(0.0) == pytest.approx(2.0)
    assert not bucket.try_acquire(0.0, n=6)  # more than burst: never
    assert bucket.can_acquire(0.0, n=2)
    assert bucket.tokens(0.0) == pytest.approx(2.0)  # peeking takes nothing
    with pytest.raises(ValueError):
        bucket.try_acquire(0.0, n=0)


def test_backwards_timestamp_is_treated_as_last_seen() -> None:
    bucket = TokenBucket(TEN_PER_S, start_s=10.0)
    for _ in range(5):
        assert bucket.try_acquire(10.0)
    # A clock step back neither refills nor drains nor rewinds the refill origin.
    assert not bucket.try_acquire(5.0)
    assert bucket.tokens(-1e9) == pytest.approx(0.0)
    assert bucket.try_acquire(10.1)
    assert not bucket.try_acquire(9.0)
    # Going back did not move the reference point: refill continues from 10.1.
    assert bucket.tokens(10.3) == pytest.approx(2.0)


def test_earlier_than_start_does_not_refill() -> None:
    bucket = TokenBucket(TEN_PER_S, start_s=50.0)
    for _ in range(5):
        bucket.try_acquire(50.0)
    assert bucket.tokens(0.0) == pytest.approx(0.0)


def test_float_accumulation_still_yields_whole_tokens() -> None:
    policy = RateLimitPolicy("fast", rate_per_s=200.0, burst=1)
    bucket = TokenBucket(policy)
    now = 0.0
    admitted = 0
    for _ in range(1000):  # one request every 5 ms, exactly the rate
        if bucket.try_acquire(now):
            admitted += 1
        now += 0.005
    assert admitted == 1000


def test_decisions_depend_only_on_timestamps() -> None:
    stamps = [0.0, 0.0, 0.01, 0.02, 0.02, 0.5, 0.5, 0.5, 0.49, 1.2] * 3
    a, b = TokenBucket(TEN_PER_S), TokenBucket(TEN_PER_S)
    assert [a.try_acquire(t) for t in stamps] == [b.try_acquire(t) for t in stamps]


def small_limiter(tenant_burst: int = 3, global_burst: int = 4) -> TenantLimiter:
    return TenantLimiter(
        RateLimitPolicy("tenant", rate_per_s=1.0, burst=tenant_burst),
        RateLimitPolicy("global", rate_per_s=1.0, burst=global_burst),
    )


def test_tenant_refusal_does_not_consume_global_token() -> None:
    limiter = small_limiter(tenant_burst=2, global_burst=10)
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 0.0) is None
    assert limiter.global_tokens(0.0) == pytest.approx(8.0)
    for _ in range(5):
        assert limiter.admit("a", 0.0) is ReasonCode.RATE_LIMITED_TENANT
    assert limiter.global_tokens(0.0) == pytest.approx(8.0)
    assert limiter.admit("b", 0.0) is None  # other tenants unaffected


def test_global_refusal_does_not_consume_tenant_token() -> None:
    limiter = small_limiter(tenant_burst=3, global_burst=4)
    for _ in range(3):
        assert limiter.admit("a", 0.0) is None
    assert limiter.admit("b", 0.0) is None  # global now empty
    assert limiter.tenant_tokens("b", 0.0) == pytest.approx(2.0)
    for _ in range(3):
        assert limiter.admit("b", 0.0) is ReasonCode.RATE_LIMITED_GLOBAL
    assert limiter.tenant_tokens("b", 0.0) == pytest.approx(2.0)
    assert limiter.admit("c", 0.0) is ReasonCode.RATE_LIMITED_GLOBAL
    assert limiter.tenant_tokens("c", 0.0) == pytest.approx(3.0)


def test_tenant_checked_first_when_both_empty() -> None:
    limiter = small_limiter(tenant_burst=2, global_burst=2)
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 0.0) is ReasonCode.RATE_LIMITED_TENANT
    assert limiter.admit("b", 0.0) is ReasonCode.RATE_LIMITED_GLOBAL


def test_limiter_refills_over_time() -> None:
    limiter = small_limiter(tenant_burst=1, global_burst=5)
    assert limiter.admit("a", 0.0) is None
    assert limiter.admit("a", 0.5) is ReasonCode.RATE_LIMITED_TENANT
    assert limiter.admit("a", 1.0) is None
    assert limiter.admit("a", 0.2) is ReasonCode.RATE_LIMITED_TENANT  # backwards: no refill


def test_unseen_tenant_reads_full_without_creating_state() -> None:
    limiter = TenantLimiter(RATE_LIMITS["tenant"], RATE_LIMITS["global"])
    assert limiter.tenant_tokens("nobody", 0.0) == 400.0
    assert limiter.global_tokens(0.0) == 2000.0


def test_default_policies_admit_burst_then_refuse() -> None:
    limiter = TenantLimiter(RATE_LIMITS["tenant"], RATE_LIMITS["global"])
    results = [limiter.admit("t1", 0.0) for _ in range(401)]
    assert results[:400] == [None] * 400
    assert results[400] is ReasonCode.RATE_LIMITED_TENANT
    assert limiter.global_tokens(0.0) == pytest.approx(1600.0)
