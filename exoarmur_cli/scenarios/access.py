"""Access control, tried from outside and from every wrong role (part of the tenancy scenario).

Each attempt is one ``access_attempt`` event: who (``identity``), on which surface (``nats`` or
``effector``), what (``action``), whether the server refused it and how (``refusal``: the
server's own words, an authorization or permissions violation, or the effector's status and
reason code), and the ``marker`` its payload carries so the exports can show it did not land.
Attempts are recorded, never judged here: ``checkers/access.py`` judges them with the exports.

A NATS publish is refused when the server answers it with a permissions violation naming its
subject (it does so before the PONG of the flush that follows). Nothing else counts as refused.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import aiohttp
import nats
import orjson

from exoarmur import natsio
from exoarmur.contracts import key_digest
from exoarmur.natsauth import inbox_prefix
from exoarmur_cli.history import INFO
from exoarmur_cli.scenarios.base import Context

CONNECT_TIMEOUT_S = 3.0
FLUSH_TIMEOUT_S = 2.0
# What each NATS role may not do (its own job is absent from its row). The outsider rows run only
# if the server let the outsider connect at all.
WRONG_ROLE_ACTIONS: dict[str, tuple[str, ...]] = {
    "api": ("audit_forgery", "consumer_pull", "consumer_ack", "stream_create"),
    "cell": ("switch_write", "approval_put", "intent_publish", "stream_create"),
    "harness": ("switch_write", "approval_put", "intent_publish", "audit_forgery", "consumer_pull",
                "consumer_ack", "stream_create"),
    "nemesis": ("approval_put", "intent_publish", "audit_forgery", "consumer_pull", "consumer_ack",
                "stream_create"),
}
OUTSIDER_ACTIONS = WRONG_ROLE_ACTIONS["harness"]


class _Probe:
    """One NATS connection of an identity, with the server's asynchronous errors collected."""

    def __init__(self, identity: str) -> None:
        self.identity = identity
        self.errors: list[str] = []
        self.nc = None

    async def _on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def connect(self, url: str, user: str | None, password: str | None) -> str | None:
        """None if connected; else the server's refusal (or the error that stood for it)."""
        auth: dict[str, Any] = {}
        if user is not None:
            auth = {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}
        try:
            self.nc = await asyncio.wait_for(
                nats.connect(url.split(","), name=f"access-probe-{self.identity}", connect_timeout=2, allow_reconnect=False,
                             max_reconnect_attempts=0, error_cb=self._on_error, **auth),
                CONNECT_TIMEOUT_S)
        except Exception as exc:  # refused (or not answered): either way not connected
            return f"{type(exc).__name__}: {exc}"
        return None

    async def publish(self, subject: str, payload: bytes, reply: str = "") -> str | None:
        """None if the server took the publish; else its permissions violation for ``subject``."""
        before = len(self.errors)
        await self.nc.publish(subject, payload, reply=reply)
        try:
            await self.nc.flush(timeout=FLUSH_TIMEOUT_S)
        except Exception as exc:
            self.errors.append(f"flush: {type(exc).__name__}")
        await asyncio.sleep(0.02)
        # The client lower-cases the server's error line, subject included.
        found = [e for e in self.errors[before:] if "permissions violation" in e.lower() and subject.lower() in e.lower()]
        return found[0] if found else None

    async def close(self) -> None:
        if self.nc is not None and not self.nc.is_closed:
            await self.nc.close()


def _record(ctx: Context, surface: str, identity: str, action: str, refusal: str | None, **value: Any) -> None:
    ctx.history.append(INFO, "access_attempt", identity, {
        "surface": surface, "identity": identity, "action": action, "refused": refusal is not None,
        "refusal": refusal, "wall_ms": int(time.time() * 1000), **value})


def _marker() -> str:
    return "forged-" + uuid.uuid4().hex[:12]


async def _forge(ctx: Context, probe: _Probe, action: str, real: list[tuple[str, dict]]) -> None:
    """One forgery as ``probe``'s identity, recorded; audit forgeries queue their real intent."""
    t = ctx.config.tenants
    marker = _marker()
    tenant = t[0]
    value: dict[str, Any] = {"marker": marker}
    if action == "switch_write":  # releasing a switch without the operator token
        subject = f"$KV.{natsio.SAFETY_BUCKET}.{natsio.GLOBAL_SWITCH_KEY}"
        payload = orjson.dumps({"engaged": False, "reason": marker, "set_by": "operator"})
    elif action == "approval_put":
        subject = f"$KV.{natsio.APPROVALS_BUCKET}.{natsio.approval_key(tenant, key_digest(tenant, marker))}"
        payload = orjson.dumps({"tenant_id": tenant, "idempotency_key": marker, "intent_hash": "0" * 64,
                                "status": "APPROVED", "expires_at_ms": 2**40})
    elif action == "intent_publish":  # skipping admission: no token, no rate limit, no tenant check
        peer, body = ctx.body(tenant)
        body = {**body, "idempotency_key": marker, "intent_id": marker, "correlation_id": marker}
        subject = natsio.intent_subject(tenant, key_digest(tenant, marker))
        payload = orjson.dumps(body)
    elif action == "audit_forgery":  # a record ahead of the real intent, which is submitted next
        peer, body = ctx.body(tenant)
        key = body["idempotency_key"]
        subject = natsio.audit_subject(tenant, key_digest(tenant, key))
        payload = orjson.dumps({"tenant_id": tenant, "idempotency_key": key, "intent_id": body["intent_id"],
                                "node_id": body["node_id"], "action": body["action"],
                                "action_class": body["action_class"], "outcome": "DENIED",
                                "reason_code": "KILL_SWITCH_GLOBAL", "forged": marker})
        value.update(ahead_of={"tenant_id": tenant, "key": key})
        real.append((peer, body))
    elif action == "consumer_pull":  # taking the cells' next intent
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{natsio.INTENTS_STREAM}.{natsio.CELLS_CONSUMER}"
        payload = orjson.dumps({"batch": 1, "no_wait": True})
    elif action == "consumer_ack":  # acknowledging the cells' intent for them
        stamp = time.time_ns()
        subject = f"$JS.ACK.{natsio.INTENTS_STREAM}.{natsio.CELLS_CONSUMER}.1.1.1.{stamp}.0"
        payload = b""
    elif action == "stream_create":
        subject = f"$JS.API.STREAM.CREATE.{marker.upper().replace('-', '_')}"
        payload = orjson.dumps({"name": marker.upper().replace("-", "_"), "subjects": [f"{marker}.>"]})
    else:
        raise ValueError(f"unknown forgery {action}")
    reply = f"{inbox_prefix(probe.identity)}.{uuid.uuid4().hex}" if action == "consumer_pull" else ""
    refusal = await probe.publish(subject, payload, reply=reply)
    _record(ctx, "nats", probe.identity, action, refusal, subject=subject, **value)


async def probe_bus(ctx: Context) -> list[tuple[str, dict]]:
    """Outsiders (no credentials, a wrong password) and every role outside its job, on NATS.

    Returns the real intents that must be submitted after the audit forgeries ahead of them."""
    url = ctx.nats_url or ctx.config.nats_url
    real: list[tuple[str, dict]] = []
    outsiders = {"outsider-anonymous": (None, None), "outsider-wrong-password": ("api", "not-the-password")}
    identities = {**outsiders, **{role: ctx.config.nats_credentials(role) for role in WRONG_ROLE_ACTIONS}}
    for identity, (user, password) in identities.items():
        probe = _Probe(identity)
        refusal = await probe.connect(url, user, password)
        if identity in outsiders:
            _record(ctx, "nats", identity, "connect", refusal, user=user)
        elif refusal is not None:  # a role that cannot connect proves nothing about its permissions
            ctx.observe("access_probe_unconnected", identity=identity, error=refusal)
        try:
            if refusal is None:
                for action in WRONG_ROLE_ACTIONS.get(identity, OUTSIDER_ACTIONS):
                    await _forge(ctx, probe, action, real)
        finally:
            await probe.close()
    return real


# --- the effector: every route without, with a wrong, and with another caller's credential -----

EFFECTOR_ATTEMPTS: tuple[tuple[str, str, str], ...] = (
    # (action, identity, credential holder: None = no header, "wrong" = an unknown token)
    ("effect_apply", "no-credential", "none"), ("effect_apply", "wrong-credential", "wrong"),
    ("effect_apply", "harness-credential", "harness"),
    ("effect_read", "no-credential", "none"), ("effect_read", "harness-credential", "harness"),
    ("faults_set", "no-credential", "none"), ("faults_set", "wrong-credential", "wrong"),
    ("faults_set", "cell-credential", "cell"),
    ("ledger_read", "no-credential", "none"), ("ledger_read", "cell-credential", "cell"),
)


async def probe_effector(ctx: Context) -> None:
    session: aiohttp.ClientSession = ctx.client.session
    base = ctx.client.effector_url
    harness = ctx.client.effector_auth
    for action, identity, holder in EFFECTOR_ATTEMPTS:
        marker = _marker()
        headers = {} if holder == "none" else {
            "Authorization": "Bearer " + ("eff-wrong-" + uuid.uuid4().hex if holder == "wrong"
                                          else ctx.config.effector_tokens[holder])}
        before = await _faults(session, base, harness) if action == "faults_set" else None
        tenant = ctx.config.tenants[0]
        key = f"{tenant}:{marker}"
        status, reason = await _effector_call(session, base, action, tenant, key, headers)
        value: dict[str, Any] = {"marker": marker, "effect_key": key, "status": status, "reason_code": reason}
        if action == "faults_set":
            after = await _faults(session, base, harness)
            value["faults_changed"] = before != after
            if before != after and before is not None:  # put back what the forgery changed
                async with session.put(f"{base}/v1/faults", json=before, headers=harness) as response:
                    await response.read()
        refused = status in (401, 403)
        _record(ctx, "effector", identity, action, f"{status} {reason}" if refused else None, **value)


async def _effector_call(session, base: str, action: str, tenant: str, key: str,
                         headers: dict) -> tuple[int, str | None]:
    if action == "effect_apply":
        request = session.post(f"{base}/v1/effects", headers={**headers, "Idempotency-Key": key},
                               json={"intent_ref": key, "tenant_id": tenant, "node_id": "node-0000",
                                     "action": "isolate_host", "parameters": {}})
    elif action == "effect_read":
        request = session.get(f"{base}/v1/effects/{key}", headers=headers)
    elif action == "faults_set":
        request = session.put(f"{base}/v1/faults", headers=headers, json={"seed": int(key[-8:], 16)})
    else:
        request = session.get(f"{base}/v1/ledger", headers=headers)
    try:
        async with request as response:
            content = await response.read()
            try:
                answer = orjson.loads(content) if content else None
            except orjson.JSONDecodeError:
                answer = None
            reason = answer.get("reason_code") if isinstance(answer, dict) else None
            return response.status, reason
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        return 0, type(exc).__name__


async def _faults(session, base: str, harness: dict) -> dict | None:
    async with session.get(f"{base}/v1/faults", headers=harness) as response:
        return await response.json() if response.status == 200 else None

