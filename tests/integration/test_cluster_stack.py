"""The whole stack on a 3-node NATS cluster (``--nats-cluster 3``): the server leading INTENTS is
SIGKILLed while intents flow through the api; every intent the api accepted (202) reaches exactly
one terminal record. Real processes, no mocks."""

from __future__ import annotations

import threading
import time
from collections import Counter

import pytest

from exoarmur import natsio

pytestmark = pytest.mark.integration

INTENTS = 60
KILL_AFTER = 20  # accepted intents before the leader dies
AFTER_KILL = 20  # accepted intents after it
RECOVER_WITHIN_S = 60.0  # the api accepts again within this after the kill
TERMINAL_WITHIN_S = 60.0  # an intent a cell held when its server died comes back after the ack_wait


def test_intents_survive_a_killed_intents_leader(make_stack):
    with make_stack(nats_cluster=3, cells=2, seed=3) as exo:
        async def leader(js):
            return (await js.stream_info(natsio.INTENTS_STREAM)).cluster.leader

        def leader_now() -> str:
            """Asked again while the server asked is the dead one or the stream has no leader yet."""
            for _ in range(20):
                try:
                    return exo.nats(leader)
                except Exception:
                    time.sleep(0.5)
            raise AssertionError("no server answers for the INTENTS stream")

        old_leader = leader_now()
        accepted, refused, reasons = [], Counter(), Counter()
        killer, killed_at, first_refusal, back_at = None, None, None, None
        i = 0
        # Until KILL_AFTER are accepted, kill the leader; then on until AFTER_KILL more are accepted.
        while len(accepted) < KILL_AFTER + AFTER_KILL:
            assert killed_at is None or time.monotonic() - killed_at < RECOVER_WITHIN_S, "the api never recovered"
            peer = exo.peer(i % len(exo.tenants), i % 2)
            intent = exo.intent(peer, key=exo.unique("cl"))
            i += 1
            response = exo.submit(peer, intent, timeout=15.0)
            if response.status_code == 202:
                accepted.append((peer, intent["idempotency_key"]))
                if first_refusal is not None and back_at is None:
                    back_at = time.monotonic()
            else:  # a refusal is an answer, not a loss; the intent is not the stack's to finish
                refused[response.status_code] += 1
                reasons[response.json().get("reason_code", "?")] += 1
                first_refusal = first_refusal or time.monotonic()
                time.sleep(0.05)
            if len(accepted) == KILL_AFTER and killer is None:
                killer = threading.Thread(target=exo.stack.children[old_leader].kill)
                killed_at = time.monotonic()
                killer.start()
        killer.join()
        refusing_s = None if first_refusal is None else back_at - first_refusal

        began = time.monotonic()
        for peer, key in accepted:
            exo.wait_terminal(peer, key, timeout_s=max(1.0, TERMINAL_WITHIN_S - (time.monotonic() - began)))
        new_leader = leader_now()
        audit = [r for t in exo.tenants for r in exo.audit(t)]
        records = Counter(r["idempotency_key"] for r in audit)
        keys = [key for _, key in accepted]
        print(f"\ncluster stack: {old_leader} (INTENTS leader) SIGKILLed after {KILL_AFTER} accepted; "
              f"accepted {len(accepted)}, refused {dict(refused)} {dict(reasons)}, "
              f"refusing for {refusing_s if refusing_s is None else round(refusing_s, 2)} s; now led by {new_leader}; "
              f"all terminal {time.monotonic() - began:.1f}s after the last submit")
        assert new_leader != old_leader
        assert {key: records[key] for key in keys if records[key] != 1} == {}
        # The cells read the switches from each bucket's leader (natsio.last_message) and decided:
        # a cell that may not ask the leader would have denied them all (SAFETY_STATE_UNAVAILABLE).
        # While a bucket elects a new leader its reads fail, and those intents are denied so, as
        # they must be (fail closed): how many depends on the election (21 of 40 in one CI run).
        outcomes = Counter((r["outcome"], r["reason_code"]) for r in audit if r["idempotency_key"] in keys)
        assert outcomes[("EXECUTED", "OK")] >= 1, outcomes
        assert set(outcomes) <= {("EXECUTED", "OK"), ("DENIED", "SAFETY_STATE_UNAVAILABLE")}, outcomes
