"""Scenarios for gates 3, 5 and 6: decision paths, kill switches and approvals, tenancy.

Submissions carry an ``expect:`` tag with the outcome the safety contract demands, written
before the fact; the expectations checker compares it with the recorded outcome.
"""

from __future__ import annotations

import asyncio

from exoarmur import natsio
from exoarmur_cli.scenarios import access
from exoarmur_cli.scenarios.base import Context


async def replay(ctx: Context) -> None:
    """Drive one intent down every decision path, so replay is checked on each of them."""
    t = ctx.config.tenants
    plain = [ctx.body(t[0]) for _ in range(ctx.params["per_path"])]
    subs = await ctx.submit_all(plain, tag="expect:EXECUTED/OK")
    await ctx.client.set_switch(True, tenant_id=t[1])
    subs += await ctx.submit_all([ctx.body(t[1]) for _ in range(ctx.params["per_path"])],
                                 tag="expect:DENIED/KILL_SWITCH_TENANT")
    await ctx.settle(subs)
    await ctx.client.set_switch(False, tenant_id=t[1])
    await ctx.client.set_switch(True)
    subs += await ctx.submit_all([ctx.body(t[2]) for _ in range(ctx.params["per_path"])],
                                 tag="expect:DENIED/KILL_SWITCH_GLOBAL")
    await ctx.settle(subs)
    await ctx.client.set_switch(False)
    subs += await _approval_paths(ctx, t[3], ctx.params["per_path"])
    for _ in range(ctx.params["per_path"]):  # no approval ever comes: expires after the wait
        peer, body = ctx.body(t[3], action_class="A2")
        subs.append(await ctx.client.submit(peer, body, tag="expect:EXPIRED/APPROVAL_EXPIRED"))
    await ctx.settle(subs, timeout_s=ctx.policy["approval_wait_s"] + 15)


async def _approval_paths(ctx: Context, tenant: str, count: int) -> list:
    """A2/A3 intents whose approvals arrive after submission: approved, denied, mismatched."""
    plans = [("APPROVED", None, "expect:EXECUTED/OK", "A2"), ("APPROVED", None, "expect:EXECUTED/OK", "A3"),
             ("DENIED", None, "expect:DENIED/APPROVAL_DENIED", "A2"),
             ("APPROVED", "0" * 64, "expect:DENIED/APPROVAL_MISMATCH", "A2")]
    subs = []
    for status, wrong_hash, tag, action_class in plans:
        for _ in range(count):
            peer, body = ctx.body(tenant, action_class=action_class)
            sub = await ctx.client.submit(peer, body, tag=tag)
            subs.append(sub)
            if sub.accepted:
                await ctx.client.approve(body, status, hash_override=wrong_hash)
    return subs


async def killswitch(ctx: Context) -> None:
    t = ctx.config.tenants
    # 1. Global switch toggled under a steady flow: measure how soon decisions reflect it.
    flow = asyncio.create_task(ctx.submit_at_rate(lambda: ctx.body(t[4]), ctx.params["flow_rate_per_s"],
                                                  ctx.params["cycles"] * 0.6 + 0.4))
    await asyncio.sleep(0.2)
    for _ in range(ctx.params["cycles"]):
        await ctx.client.set_switch(True)
        await asyncio.sleep(0.3)
        await ctx.client.set_switch(False)
        await asyncio.sleep(0.3)
    subs = await flow
    # 2. A tenant switch stops that tenant only.
    await ctx.client.set_switch(True, tenant_id=t[5])
    subs += await ctx.submit_all([ctx.body(t[5]) for _ in range(ctx.params["per_check"])],
                                 tag="expect:DENIED/KILL_SWITCH_TENANT")
    subs += await ctx.submit_all([ctx.body(t[6]) for _ in range(ctx.params["per_check"])], tag="expect:EXECUTED/OK")
    await ctx.settle(subs)
    await ctx.client.set_switch(False, tenant_id=t[5])
    # 3. Unreadable safety state fails closed: the global switch's value is corrupted in NATS, by
    # the harness's fault-injection user (``nemesis``: the only one besides the api allowed to).
    nemesis = await natsio.connect_as(ctx.config, "nemesis", "exoarmur-nemesis", ctx.nats_url or None)
    try:
        kv = await nemesis.jetstream().key_value("safety")
        ctx.nemesis("corrupt_safety_state", key="global", begin=True, nats_user="nemesis")
        await kv.put("global", b"\x00 not json")
    finally:
        await nemesis.close()
    subs += await ctx.submit_all([ctx.body(t[6]) for _ in range(ctx.params["per_check"])],
                                 tag="expect:DENIED/SAFETY_STATE_UNAVAILABLE")
    await ctx.settle(subs)
    await ctx.client.set_switch(False)  # an operator repairs the state through the api
    ctx.nemesis("corrupt_safety_state", key="global", begin=False)
    # 4. A2/A3 need an approval bound to the intent's hash; unapproved ones expire.
    subs += await _approval_paths(ctx, t[7], 1)
    for _ in range(ctx.params["per_check"]):
        peer, body = ctx.body(t[7], action_class="A2")
        subs.append(await ctx.client.submit(peer, body, tag="expect:EXPIRED/APPROVAL_EXPIRED"))
    await ctx.settle(subs, timeout_s=ctx.policy["approval_wait_s"] + 15)


async def tenancy(ctx: Context) -> None:
    t = ctx.config.tenants
    own, other = t[0], t[1]
    peer = ctx.peers_of(own)[0]
    # 0. Access control: outsiders and every wrong role try the bus and the effector; each audit
    # forgery is followed by the real intent it tried to pre-empt.
    ahead = await access.probe_bus(ctx)
    await access.probe_effector(ctx)
    forged_ahead = await ctx.submit_all(ahead, tag="access:after_forgery")
    # 1. Cross-tenant attempts: every one must be refused and leave nothing behind.
    _, body = ctx.body(own)
    cross = []
    cross.append(await ctx.client.submit(peer, {**body, "tenant_id": other}, tag="cross_tenant"))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, {**body, "node_id": ctx.nodes_of(other)[0]}, tag="cross_tenant"))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, {**body, "peer_id": ctx.peers_of(other)[0]}, tag="cross_tenant"))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, body, token=ctx.config.peers[ctx.peers_of(other)[0]].token,
                                         tag="cross_tenant"))
    await ctx.client.read_audit(peer, tenant_id=other)
    await ctx.client.read_audit(peer)
    # Malformed and unauthenticated input is refused with a reason code, never a 500.
    await ctx.client.submit(peer, body, raw=b"{not json", tag="bad_input")
    await ctx.client.submit(peer, {**body, "surprise": 1}, tag="bad_input")
    await ctx.client.submit(peer, {**body, "parameters": {"blob": "x" * 5000}}, tag="bad_input")
    await ctx.client.submit(peer, body, token="wrong-token", tag="bad_input")
    await ctx.client.submit(peer, {**body, "node_id": "node-9999"}, tag="bad_input")
    # 2. A noisy tenant is limited while quiet tenants keep their latency.
    quiet = t[2:5]
    quiet_rate = ctx.params["quiet_rate_per_s"]

    def quiet_body():
        return ctx.body(ctx.rng.choice(quiet))

    baseline = await ctx.submit_at_rate(quiet_body, quiet_rate, ctx.params["phase_s"], tag="quiet:baseline")
    noisy_rate = ctx.policy["rate_tenant_per_s"] * ctx.params["noisy_over_limit"]
    ctx.nemesis("noisy_tenant", tenant=t[8], rate_per_s=noisy_rate)
    noisy = asyncio.create_task(ctx.submit_at_rate(lambda: ctx.body(t[8]), noisy_rate, ctx.params["phase_s"],
                                                   tag="noisy"))
    under = await ctx.submit_at_rate(quiet_body, quiet_rate, ctx.params["phase_s"], tag="quiet:noise")
    await ctx.settle(baseline + under + await noisy + cross + forged_ahead)
    await ctx.client.read_audit(ctx.peers_of(t[8])[0])
