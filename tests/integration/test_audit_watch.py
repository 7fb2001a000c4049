"""The harness's record watch against a real stack: a record seen on the wire counts only once the
AUDIT stream holds it, when the caller asks for stored records (power loss)."""

from __future__ import annotations

import pytest

from exoarmur_cli.client import AuditWatch

pytestmark = pytest.mark.integration


def test_a_record_seen_on_the_wire_but_not_stored_is_forgotten(exo):
    peer = exo.peer()
    stored = exo.run_one(peer)
    pairs = [(peer.tenant_id, stored["idempotency_key"]), (peer.tenant_id, "never-stored")]

    async def work(js):
        watch = AuditWatch()
        for tenant_id, key in pairs:  # as if both had been seen on the core subscription
            watch.records[watch.subject(tenant_id, key)] = {"idempotency_key": key}
        dropped = await watch.forget_unstored(js, pairs)
        return dropped, watch.record(*pairs[0]), watch.record(*pairs[1])

    dropped, kept, forgotten = exo.nats(work)
    assert dropped == 1
    assert kept is not None and forgotten is None
