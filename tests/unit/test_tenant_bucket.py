"""The client's copy of a tenant's admission bucket: sends that fit the burst never wait; past it,
one send per token at a rate a little under the api's."""

import pytest

from exoarmur_cli.scenarios.base import TenantBucket


def test_sends_within_the_burst_never_wait():
    bucket = TenantBucket(50, 100)  # the gate files' tenant numbers: 80 fit before any wait
    assert [bucket.take(0.0) for _ in range(80)] == [0.0] * 80
    assert bucket.take(0.0) > 0


def test_past_the_burst_each_send_waits_for_its_token_under_the_api_rate():
    bucket = TenantBucket(8, 16)  # sized from a 2-core cluster: 0.8 x 8 = 6.4/s, 12.8 in the burst
    waits = [bucket.take(0.0) for _ in range(20)]
    assert waits[:12] == [0.0] * 12
    assert waits[-1] == pytest.approx((20 - 12.8) / 6.4)  # the 20th: 7.2 tokens short at 6.4/s
    assert all(b >= a for a, b in zip(waits, waits[1:]))  # booked one after another


def test_tokens_come_back_with_time_up_to_the_burst():
    bucket = TenantBucket(10, 10)  # 8/s, burst 8
    for _ in range(8):
        bucket.take(0.0)
    assert bucket.take(1.0) == 0.0  # 1 s later: 8 tokens back, one used
    assert bucket.take(100.0) == 0.0
    assert bucket.tokens == pytest.approx(7.0)  # refilled to the burst, never beyond


def test_no_tenant_rate_in_the_policy_paces_nothing():
    bucket = TenantBucket(None, None)
    assert all(bucket.take(0.0) == 0.0 for _ in range(1000))
