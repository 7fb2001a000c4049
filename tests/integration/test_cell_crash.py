"""SIGKILL cells at seeded random points during a stream of intents: the stack converges.

Every accepted intent ends in exactly one terminal record, every EXECUTED one in exactly one
ledger row (applied once, whatever the redeliveries), within a bounded wait after the last kill.
"""

from __future__ import annotations

import random
import time
from collections import Counter

import pytest

from exoarmur import natsio
from exoarmur_cli.faults import ProcessFaults

pytestmark = pytest.mark.integration

SEED = 20240611
INTENTS = 200
CONVERGE_S = 30.0  # > the consumer's ack_wait, after which an intent held by a dead cell comes back


def test_sigkilled_cells_converge_to_one_record_and_one_effect_per_intent(exo):
    async def ack_wait(js):
        return (await js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER)).config.ack_wait

    assert exo.nats(ack_wait) < CONVERGE_S / 2
    rng = random.Random(SEED)
    peers = [exo.peer(t, i) for t in range(len(exo.tenants)) for i in range(2)]
    kills = rng.randint(4, 6)
    kill_at = sorted(rng.sample(range(10, INTENTS - 10), kills))
    victims = [f"cell-{k % 2}" for k in range(kills)]  # cell-0, cell-1, cell-0, ...
    restart_after = [rng.randint(0, 8) for _ in range(kills)]  # intents sent while it is down

    exo.faults(latency_ms=20, jitter_ms=30, seed=SEED)  # effects take a while: kills land mid-flight
    accepted: dict[str, object] = {}
    down: list[tuple[str, int]] = []  # (cell, index at which to start it again)
    starts_before = {name: exo.stack.children[name].starts for name in ("cell-0", "cell-1")}
    try:
        for index in range(INTENTS):
            for name, at in list(down):
                if index >= at:
                    exo.stack.start_component(name)
                    down.remove((name, at))
            if index in kill_at:
                k = kill_at.index(index)
                time.sleep(rng.uniform(0, 0.05))
                ProcessFaults(exo.stack).kill(victims[k])
                down.append((victims[k], index + restart_after[k]))
            peer = rng.choice(peers)
            intent = exo.intent(peer, key=f"crash-{index:03d}", parameters={"n": index})
            response = exo.submit(peer, intent)
            assert response.status_code == 202, response.text
            assert response.json()["duplicate"] is False
            accepted[intent["idempotency_key"]] = peer
        for name, _ in down:
            exo.stack.start_component(name)
    finally:
        exo.faults()
    last_kill = time.monotonic()
    for name in ("cell-0", "cell-1"):
        assert exo.stack.children[name].alive()
        assert exo.stack.children[name].starts - starts_before[name] == victims.count(name)

    tenants = sorted({p.tenant_id for p in accepted.values()})
    expected = {(p.tenant_id, key) for key, p in accepted.items()}
    records: list[dict] = []
    while True:
        records = [r for t in tenants for r in exo.audit(t) if r["idempotency_key"].startswith("crash-")]
        if {(r["tenant_id"], r["idempotency_key"]) for r in records} >= expected:
            break
        assert time.monotonic() - last_kill < CONVERGE_S, (
            f"{len(expected) - len(records)} intents without a terminal record "
            f"{CONVERGE_S}s after the last kill")
        time.sleep(0.2)

    per_key = Counter((r["tenant_id"], r["idempotency_key"]) for r in records)
    assert set(per_key) == expected
    assert max(per_key.values()) == 1, [k for k, n in per_key.items() if n > 1]
    outcomes = Counter((r["outcome"], r["reason_code"]) for r in records)
    assert outcomes == {("EXECUTED", "OK"): INTENTS}, outcomes  # nothing was refused or faulted

    ledger = {k: row for k, row in exo.ledger().items() if k.split(":", 1)[1].startswith("crash-")}
    executed = {f"{r['tenant_id']}:{r['idempotency_key']}": r for r in records if r["outcome"] == "EXECUTED"}
    assert set(ledger) == set(executed)
    for key, record in executed.items():
        assert record["receipt"]["receipt_id"] == ledger[key]["receipt_id"]
        assert record["receipt"]["first_applied_at_ms"] == ledger[key]["first_applied_at_ms"]

    # Every key answers TERMINAL with that same one record.
    for key, peer in accepted.items():
        response = exo.status(peer, key)
        assert response.status_code == 200 and response.json()["state"] == "TERMINAL"
        assert response.json()["record"]["idempotency_key"] == key
    converged_s = time.monotonic() - last_kill
    redelivered = sum(row["calls"] > 1 for row in ledger.values())
    # The kills did land mid-intent: some effects were applied by a cell that died before
    # recording them, and the redelivery replayed the receipt instead of acting again.
    assert redelivered >= 1
    print(f"kills={list(zip(kill_at, victims))} converged in {converged_s:.1f}s, "
          f"effector re-called for {redelivered} keys (replayed, not re-applied)")
