"""Schemathesis, a client nobody here wrote, against the live embedded stack's api.

Property-based requests generated from ``/openapi.json`` (bodies, path and query parameters, every
route including the hot submit path), sent with a valid peer token (peer routes) or the operator
token (operator routes); Schemathesis's checks: no 5xx, every status code and content type
documented, every response body conforming to its documented schema. The example budget per
route is ``EXOARMUR_FUZZ_EXAMPLES`` (20 in CI; raise it for a long run).
"""

from __future__ import annotations

import os
import time

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("EXOARMUR_FUZZ_EXAMPLES", "20"))
OPERATOR_ROUTES = ("/v1/killswitches", "/v1/approvals")


def fuzz(operation, token: str, sent: list[int]) -> None:
    @given(case=operation.as_strategy())
    @settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    def one(case) -> None:
        sent[0] += 1
        case.call_and_validate(headers={"Authorization": f"Bearer {token}"})

    one()


def test_every_route_answers_as_documented(stack) -> None:
    config = stack.config
    schema = schemathesis.openapi.from_url(f"{config.api_url}/openapi.json", wait_for_schema=20)
    peer = next(iter(config.peers.values()))
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/v1/intents", "/v1/audit", "/v1/approvals"}
    sent, began = [0], time.monotonic()
    for operation in operations:
        token = config.operator_token if operation.path.startswith(OPERATOR_ROUTES) else peer.token
        fuzz(operation, token, sent)
    print(f"schemathesis: {sent[0]} requests over {len(operations)} operations "
          f"in {time.monotonic() - began:.1f}s ({EXAMPLES} examples each)")
