"""Scenarios for gates 3, 5 and 6: decision paths, kill switches and approvals, tenancy.

Submissions carry an ``expect:`` tag with the outcome the safety contract demands, written
before the fact; the expectations checker compares it with the recorded outcome.
"""

from __future__ import annotations

import asyncio
import time

from exoarmur import natsio
from exoarmur.contracts import Outcome, ReasonCode
from exoarmur_cli.client import intent_body, intent_hash
from exoarmur_cli.history import EXECUTED_OK, Expect, Tag
from exoarmur_cli.scenarios import access, read_probes
from exoarmur_cli.scenarios.base import Context
from exoarmur_cli.scenarios.params import KillswitchParams, ReplayParams, TenancyParams, as_


async def replay(ctx: Context) -> None:
    """Drive one intent down every decision path, so replay is checked on each of them."""
    p = as_(ctx.params, ReplayParams)
    t = ctx.config.tenants
    plain = [ctx.body(t[0]) for _ in range(p.per_path)]
    subs = await ctx.submit_all(plain, tag=EXECUTED_OK)
    await ctx.client.set_switch(True, tenant_id=t[1])
    # Approved A2 intents too: no approval outranks a kill switch.
    approved = [ctx.body(t[1], action_class="A2") for _ in range(p.per_path)]
    for _, body in approved:
        await ctx.client.approve(body, "APPROVED")
    subs += await ctx.submit_all([ctx.body(t[1]) for _ in range(p.per_path)] + approved,
                                 tag=Expect(Outcome.DENIED, ReasonCode.KILL_SWITCH_TENANT))
    await ctx.settle(subs)
    await ctx.client.set_switch(False, tenant_id=t[1])
    await ctx.client.set_switch(True)
    subs += await ctx.submit_all([ctx.body(t[2]) for _ in range(p.per_path)],
                                 tag=Expect(Outcome.DENIED, ReasonCode.KILL_SWITCH_GLOBAL))
    await ctx.settle(subs)
    await ctx.client.set_switch(False)
    subs += await _approval_paths(ctx, t[3], p.per_path, unapproved=p.per_path)
    await ctx.settle(subs, timeout_s=ctx.policy.approval_wait_s + 15)


# Every path an A2/A3 intent can take through approval, with the outcome the contract demands.
# The approval oracle (checkers/approvals.py) judges each path by its probe name, so a self-test
# "caught" names the path that broke.
APPROVAL_PATHS = {
    "approved": EXECUTED_OK,
    "denied": Expect(Outcome.DENIED, ReasonCode.APPROVAL_DENIED),
    "wrong_hash": Expect(Outcome.DENIED, ReasonCode.APPROVAL_MISMATCH),
    "changed_params": Expect(Outcome.DENIED, ReasonCode.APPROVAL_MISMATCH),
    "other_tenant": Expect(Outcome.EXPIRED, ReasonCode.APPROVAL_EXPIRED),
    "expired_ttl": Expect(Outcome.EXPIRED, ReasonCode.APPROVAL_EXPIRED),
    "late_grant": Expect(Outcome.EXPIRED, ReasonCode.APPROVAL_EXPIRED),
    "none": Expect(Outcome.EXPIRED, ReasonCode.APPROVAL_EXPIRED),  # no approval ever comes: expires after the wait
}
SHORT_TTL_S = 0.2  # an approval that has run out before its intent is submitted
# A late grant comes this long after its intent's approval wait ran out (counted from the 202, so
# surely after): a pending intent is decided again every APPROVAL_POLL_S (0.25 s), so most late
# grants are there when its expiry is decided, and the decision must still be EXPIRED.
LATE_GRANT_AFTER_S = 0.03
# At least this many late grants a run. Each lands some 40-60 ms into a 250 ms poll, so about 4 in
# 5 should be seen by the decision (18 of 18 were, in two gate-5 runs): none seen, ~1e-4.
MIN_LATE_GRANTS = 6


async def _approval_paths(ctx: Context, tenant: str, count: int, *, unapproved: int) -> list:
    """A2/A3 intents down every approval path (``count`` each, ``unapproved`` that never get one);
    most approvals arrive after submission."""
    other = next(t for t in ctx.config.tenants if t != tenant)
    subs = []
    expired = [ctx.body(tenant, action_class="A2") for _ in range(count)]
    for _, body in expired:  # granted first, with a TTL that runs out before the intent arrives
        await ctx.client.approve(body, "APPROVED", ttl_s=SHORT_TTL_S)
    await asyncio.sleep(SHORT_TTL_S * 2)
    for peer, body in expired:
        await ctx.within_tenant_rate(tenant)
        subs.append(await ctx.client.submit(peer, body, tag=APPROVAL_PATHS["expired_ttl"], probe="expired_ttl"))
    late_grants = []
    for path, action_class in (("approved", "A2"), ("approved", "A3"), ("denied", "A2"), ("wrong_hash", "A2"),
                               ("changed_params", "A2"), ("other_tenant", "A2"), ("late_grant", "A2")):
        for _ in range(max(count, MIN_LATE_GRANTS) if path == "late_grant" else count):
            peer, body = ctx.body(tenant, action_class=action_class)
            await ctx.within_tenant_rate(tenant)
            sub = await ctx.client.submit(peer, body, tag=APPROVAL_PATHS[path], probe=path)
            subs.append(sub)
            if sub.accepted and path == "late_grant":
                late_grants.append(asyncio.create_task(_grant_late(ctx, body, time.monotonic())))
            elif sub.accepted:
                await _grant(ctx, path, body, other)
    for _ in range(unapproved):
        peer, body = ctx.body(tenant, action_class="A2")
        await ctx.within_tenant_rate(tenant)
        subs.append(await ctx.client.submit(peer, body, tag=APPROVAL_PATHS["none"], probe="none"))
    await asyncio.gather(*late_grants)
    return subs


async def _grant_late(ctx: Context, body: dict, accepted_at: float) -> None:
    """APPROVED, bound to the intent's hash, with a long TTL: valid in every way but its timing,
    granted once the intent's approval wait has run out."""
    await asyncio.sleep(max(0.0, accepted_at + ctx.policy.approval_wait_s + LATE_GRANT_AFTER_S - time.monotonic()))
    await ctx.client.approve(body, "APPROVED")


async def _grant(ctx: Context, path: str, body: dict, other_tenant: str) -> None:
    if path == "denied":
        await ctx.client.approve(body, "DENIED")
    elif path == "wrong_hash":
        await ctx.client.approve(body, "APPROVED", hash_override="0" * 64)
    elif path == "changed_params":  # same key, the hash of an intent with other parameters
        await ctx.client.approve({**body, "parameters": {**body["parameters"], "changed": True}}, "APPROVED")
    elif path == "other_tenant":  # the right key and hash, granted under another tenant
        await ctx.client.approve({**body, "tenant_id": other_tenant}, "APPROVED", hash_override=intent_hash(body))
    else:
        await ctx.client.approve(body, "APPROVED")


async def killswitch(ctx: Context) -> None:
    p = as_(ctx.params, KillswitchParams)
    t = ctx.config.tenants
    # 1. Global switch toggled under a steady flow: measure how soon decisions reflect it.
    engaged_s, released_s = p.engaged_s, p.released_s
    flow = asyncio.create_task(ctx.submit_at_rate(lambda: ctx.body(t[4]), p.flow_rate_per_s,
                                                  p.cycles * (engaged_s + released_s) + 0.4))
    await asyncio.sleep(0.2)
    probes = []
    for _ in range(p.cycles):
        await ctx.client.set_switch(True)
        probing = asyncio.create_task(_probes_after_ack(ctx, t[3], p.probes_after_ack))
        await asyncio.sleep(engaged_s)
        probes += await probing
        await ctx.client.set_switch(False)
        await asyncio.sleep(released_s)
    subs = await flow + probes
    # 4. (beside 2.) A2/A3 need an approval bound to the intent's hash; unapproved ones expire.
    # On a tenant of their own, no global switch moves while they wait out the approval wait;
    # they are all decided before 3. makes the safety state unreadable.
    approvals = asyncio.create_task(_approval_paths(ctx, t[7], 1, unapproved=p.per_check))
    try:
        # 2. Tenant switches under flow: two tenants submit throughout and already have decisions
        # when their switch is engaged (a cached switch would show), and it is released under flow.
        subs += await _tenant_switches_under_flow(ctx, [t[5], t[6]], engaged_s, released_s)
        # A tenant switch stops that tenant only.
        await ctx.client.set_switch(True, tenant_id=t[5])
        subs += await ctx.submit_all([ctx.body(t[5]) for _ in range(p.per_check)],
                                     tag=Expect(Outcome.DENIED, ReasonCode.KILL_SWITCH_TENANT))
        subs += await ctx.submit_all([ctx.body(t[6]) for _ in range(p.per_check)], tag=EXECUTED_OK)
        await ctx.settle(subs)
        await ctx.client.set_switch(False, tenant_id=t[5])
        approved = await approvals
    finally:
        approvals.cancel()  # a no-op once done; else the scenario failed: its sends end with it
    await ctx.settle(approved, timeout_s=ctx.policy.approval_wait_s + 15)
    subs += approved
    # 3. Unreadable safety state fails closed: the global switch's value is corrupted in NATS, by
    # the harness's fault-injection user (``nemesis``: the only one besides the api allowed to).
    nemesis = await natsio.connect_as(ctx.config, "nemesis", "exoarmur-nemesis", ctx.nats_url or None)
    try:
        kv = await nemesis.jetstream().key_value("safety")
        await kv.put("global", b"\x00 not json")
        # recorded once the corrupt write is acked
        ctx.nemesis("corrupt_safety_state", key="global", begin=True, nats_user="nemesis")
    finally:
        await nemesis.close()
    subs += await ctx.submit_all([ctx.body(t[6]) for _ in range(p.per_check)],
                                 tag=Expect(Outcome.DENIED, ReasonCode.SAFETY_STATE_UNAVAILABLE))
    await ctx.settle(subs)
    await ctx.client.set_switch(False)  # an operator repairs the state through the api
    ctx.nemesis("corrupt_safety_state", key="global", begin=False)
    # 5. Only the operator writes switches and approvals: every other kind of caller is refused.
    await _operator_probes(ctx, t[8], t[9])


async def _probes_after_ack(ctx: Context, tenant: str, count: int) -> list:
    """Intents sent one after another from the moment the engage is acknowledged: the first
    decision that reflects the switch is then one of theirs (or an earlier flow intent's), not
    the next flow intent's, however sparse the flow (a flow scaled to a small admission leaves
    ~1/rate between intents, which would be measured as propagation)."""
    subs = []
    for _ in range(count):
        await ctx.within_tenant_rate(tenant)
        subs.append(await ctx.client.submit(*ctx.body(tenant), tag=Expect(Outcome.DENIED, ReasonCode.KILL_SWITCH_GLOBAL),
                                            probe="after_ack"))
    return subs


async def _tenant_switches_under_flow(ctx: Context, tenants: list[str], engaged_s: float, released_s: float) -> list:
    lead_s = 0.3
    duration_s = lead_s + len(tenants) * (engaged_s + released_s) + 0.2
    flows = [asyncio.create_task(ctx.submit_at_rate(lambda tenant=tenant: ctx.body(tenant),
                                                    as_(ctx.params, KillswitchParams).flow_rate_per_s, duration_s)) for tenant in tenants]
    await asyncio.sleep(lead_s)
    for tenant in tenants:
        await ctx.client.set_switch(True, tenant_id=tenant)
        await asyncio.sleep(engaged_s)
        await ctx.client.set_switch(False, tenant_id=tenant)
        await asyncio.sleep(released_s)
    return [sub for flow in flows for sub in await flow]


async def _global_flood(ctx: Context, p: TenancyParams, tenant: str) -> None:
    """One tenant floods alone at ``global_flood_over`` times the global rate, long enough that a
    global bucket charged for refused submissions too would run dry; only its own bucket may
    refuse it (``checkers.admission.global_refusals`` judges every global refusal)."""
    rate, burst = ctx.policy.rate_global_per_s, ctx.policy.rate_global_burst
    duration_s = burst / rate / (p.global_flood_over - 1) + p.global_flood_margin_s
    ctx.nemesis("global_flood", tenant=tenant, rate_per_s=rate * p.global_flood_over, duration_s=round(duration_s, 3))
    flood = await ctx.submit_at_rate(lambda: ctx.body(tenant), rate * p.global_flood_over, duration_s,
                                     tag=Tag.GLOBAL_FLOOD)
    await ctx.settle(flood)


async def _kv_last_seqs(ctx: Context) -> dict[str, int]:
    """The last sequence of each safety bucket's stream: any write moves it."""
    return {bucket: (await ctx.js.stream_info(f"KV_{bucket}")).state.last_seq for bucket in ("safety", "approvals")}


async def _operator_probes(ctx: Context, own: str, other: str) -> None:
    peer, body = ctx.body(own, action_class="A2")
    callers = {"peer-own-tenant": ctx.config.peers[peer].token,
               "peer-other-tenant": ctx.config.peers[ctx.peers_of(other)[0]].token,
               "no-token": None, "wrong-token": "not-a-token"}
    approval = {"tenant_id": own, "idempotency_key": body["idempotency_key"], "intent_hash": intent_hash(body),
                "status": "APPROVED", "ttl_s": 300}
    targets = [("PUT", "/v1/killswitches/global", {"engaged": True}),
               ("PUT", f"/v1/killswitches/tenants/{own}", {"engaged": True}),
               ("PUT", f"/v1/killswitches/tenants/{other}", {"engaged": True}),
               ("POST", "/v1/approvals", approval)]
    before = await _kv_last_seqs(ctx)
    for as_whom, token in callers.items():
        for method, path, payload in targets:
            await ctx.client.operator_probe(method, path, token, payload, as_whom=as_whom)
    ctx.observe("safety_kv_writes", before=before, after=await _kv_last_seqs(ctx))


async def tenancy(ctx: Context) -> None:
    p = as_(ctx.params, TenancyParams)
    t = ctx.config.tenants
    own, other = t[0], t[1]
    peer = ctx.peers_of(own)[0]
    # 0. Access control: outsiders and every wrong role try the bus and the effector; each audit
    # forgery is followed by the real intent it tried to pre-empt.
    ahead = await access.probe_bus(ctx)
    await access.probe_effector(ctx)
    forged_ahead = await ctx.submit_all(ahead, tag=Tag.ACCESS_AFTER_FORGERY)
    # 1. Cross-tenant attempts: every one must be refused and leave nothing behind.
    _, body = ctx.body(own)
    cross = []
    cross.append(await ctx.client.submit(peer, {**body, "tenant_id": other}, tag=Tag.CROSS_TENANT))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, {**body, "node_id": ctx.nodes_of(other)[0]}, tag=Tag.CROSS_TENANT))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, {**body, "peer_id": ctx.peers_of(other)[0]}, tag=Tag.CROSS_TENANT))
    _, body = ctx.body(own)
    cross.append(await ctx.client.submit(peer, body, token=ctx.config.peers[ctx.peers_of(other)[0]].token,
                                         tag=Tag.CROSS_TENANT))
    # One idempotency key in two tenants is two intents: each is accepted as new and executed (a
    # dedupe keyed on the key alone would take the second for a duplicate of the first).
    shared_key, same_key = ctx.key(), []
    for tenant in (own, other):
        sharer, node = ctx.peers_of(tenant)[0], ctx.nodes_of(tenant)[0]
        same_key.append(await ctx.client.submit(sharer, intent_body(ctx.config, sharer, node, shared_key),
                                                tag=Tag.SAME_KEY_OTHER_TENANT))
    # Malformed and unauthenticated input is refused with a reason code, never a 500.
    await ctx.client.submit(peer, body, raw=b"{not json", tag=Tag.BAD_INPUT)
    await ctx.client.submit(peer, {**body, "surprise": 1}, tag=Tag.BAD_INPUT)
    await ctx.client.submit(peer, {**body, "parameters": {"blob": "x" * 5000}}, tag=Tag.BAD_INPUT)
    await ctx.client.submit(peer, body, token="wrong-token", tag=Tag.BAD_INPUT)
    await ctx.client.submit(peer, {**body, "node_id": "node-9999"}, tag=Tag.BAD_INPUT)
    # 2. A noisy tenant is limited while quiet tenants keep their latency.
    quiet = t[2:5]
    quiet_rate = p.quiet_rate_per_s

    def quiet_body():
        return ctx.body(ctx.rng.choice(quiet))

    # One intent of the noisy tenant first: its bucket then refills through the quiet baseline, and
    # its flood must find no more than the burst in it (a refill not capped at the burst would).
    noisy_first = [await ctx.client.submit(*ctx.body(t[8]), tag=EXECUTED_OK)]
    baseline = await ctx.submit_at_rate(quiet_body, quiet_rate, p.phase_s, tag=Tag.QUIET_BASELINE)
    noisy_rate = ctx.policy.rate_tenant_per_s * p.noisy_over_limit
    ctx.nemesis("noisy_tenant", tenant=t[8], rate_per_s=noisy_rate)
    noisy = asyncio.create_task(ctx.submit_at_rate(lambda: ctx.body(t[8]), noisy_rate, p.phase_s,
                                                   tag=Tag.NOISY))
    under = await ctx.submit_at_rate(quiet_body, quiet_rate, p.phase_s, tag=Tag.QUIET_NOISE)
    await ctx.settle(baseline + under + await noisy + noisy_first + cross + same_key + forged_ahead)
    await _global_flood(ctx, p, t[9])
    # 3. Reads: every read surface of the api's OpenAPI document, asked by a peer of one tenant for
    # another's data, once every tenant above has records.
    await read_probes.probe_read_surface(ctx, own, other)
