"""The harness's client of the stack: every call it makes is recorded in the history.

It uses only public surfaces: the api over HTTP (as a peer or the operator), the effector's
ledger, and NATS subjects (to watch terminal records arrive). Faults are ``faults``'.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp
import orjson
from nats.js.errors import NotFoundError

from exoarmur import natsio
from exoarmur.contracts import IntentV1, key_digest
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.history import FAIL, INFO, INVOKE, OK, Expect, History, Tag, tag_text, wall_ms
from exoarmur_cli.read_surface import Probe, tenants_mentioned

REQUEST_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Submitted:
    key: str
    tenant_id: str
    status: int  # 0 when no answer came (unknown outcome)
    reason_code: str | None
    duplicate: bool
    stream_seq: int = 0  # where the api said the intent is in the INTENTS stream (accepted only)

    @property
    def accepted(self) -> bool:
        return self.status == 202


def intent_body(config: StackConfig, peer_id: str, node_id: str, key: str, *, action_class: str = "A1",
                action: str = "isolate_host", tenant_id: str | None = None, parameters: dict | None = None) -> dict:
    peer = config.peers[peer_id]
    return {
        "intent_id": key[:64] if len(key) <= 64 else key_digest("i", key), "tenant_id": tenant_id or peer.tenant_id,
        "peer_id": peer_id, "node_id": node_id, "action": action, "action_class": action_class,
        "idempotency_key": key, "parameters": parameters or {}, "correlation_id": key,
    }


def _query_string(query: dict) -> str:
    return ("?" + urlencode(query)) if query else ""


def intent_hash(body: dict) -> str:
    return IntentV1.model_validate(body).intent_hash()


class StackClient:
    def __init__(self, config: StackConfig, history: History, api_url: str | None = None,
                 effector_url: str | None = None) -> None:
        self.config = config
        self.history = history
        self.api_url = api_url or config.api_url
        self.effector_url = effector_url or config.effector_url
        self.session: aiohttp.ClientSession | None = None
        self._calls: set[asyncio.Task] = set()  # tasks with a request of this client in flight

    async def __aenter__(self) -> "StackClient":
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=256), timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S))
        return self

    async def __aexit__(self, *exc) -> None:
        await self._cancel_calls()
        await self.session.close()

    async def _cancel_calls(self) -> None:
        """Cancel and await the other tasks' requests still in flight (an interrupted or crashed
        scenario's flows), so none of them runs on, or fails against, a closed session."""
        current = asyncio.current_task()
        pending = [task for task in self._calls if task is not current and not task.done()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    async def _call(self, method: str, url: str, token: str | None, body: Any = None,
                    raw: bytes | None = None) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if raw is not None:
            headers["Content-Type"] = "application/json"
        data = raw if raw is not None else (orjson.dumps(body) if body is not None else None)
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.session is None or self.session.closed:
            raise asyncio.CancelledError  # the client is closed: the run is ending, not failing
        task = asyncio.current_task()
        self._calls.add(task)
        try:
            async with self.session.request(method, url, data=data, headers=headers) as response:
                content = await response.read()
                try:
                    return response.status, orjson.loads(content) if content else None
                except orjson.JSONDecodeError:
                    return response.status, {"raw": content[:200].decode(errors="replace")}
        finally:
            self._calls.discard(task)

    # --- peers -----------------------------------------------------------------------------

    async def submit(self, peer_id: str, body: dict, *, token: str | None = None, raw: bytes | None = None,
                     tag: Tag | Expect = Tag.NONE, probe: str | None = None) -> Submitted:
        """Submit as ``peer_id`` (or with an explicit token) and record invoke + completion.

        ``probe`` names the path a submission exercises (e.g. an approval path), for checkers
        that judge each path on its own."""
        token = self.config.peers[peer_id].token if token is None else token
        ident = {"key": body.get("idempotency_key"), "tenant_id": body.get("tenant_id"), "peer_id": peer_id,
                 "node_id": body.get("node_id"), "action_class": body.get("action_class"), "tag": tag_text(tag)}
        if probe is not None:
            ident["probe"] = probe
        self.history.append(INVOKE, "submit", peer_id, ident)
        try:
            status, answer = await self._call("POST", f"{self.api_url}/v1/intents", token, body, raw)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            kind = FAIL if isinstance(exc, aiohttp.ClientConnectorError) else INFO  # refused = never sent
            self.history.append(kind, "submit", peer_id, {**ident, "status": 0, "error": type(exc).__name__})
            return Submitted(ident["key"], ident["tenant_id"], 0, None, False)
        if status == 202:
            self.history.append(OK, "submit", peer_id, {**ident, "status": 202, "duplicate": answer["duplicate"],
                                                       "seq": answer["stream_seq"]})
            return Submitted(ident["key"], ident["tenant_id"], 202, None, answer["duplicate"], answer["stream_seq"])
        reason = (answer or {}).get("reason_code")
        self.history.append(FAIL, "submit", peer_id, {**ident, "status": status, "reason_code": reason})
        return Submitted(ident["key"], ident["tenant_id"], status, reason, False)

    async def openapi_document(self) -> tuple[int, Any]:
        """The api's OpenAPI document, as it serves it (no token: the document is public)."""
        try:
            return await self._call("GET", f"{self.api_url}/openapi.json", None)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError):
            return 0, None

    async def read_probe(self, peer_id: str, probe: Probe, target_tenant: str | None,
                         markers: tuple[str, ...] = ()) -> int:
        """Ask a read surface, as ``peer_id``, for data that may be another tenant's; record what the
        answer held: every tenant a 2xx body names (``read_surface.tenants_mentioned``) and which of
        ``markers`` (identifiers that exist only in another tenant) it contains."""
        caller = self.config.peers[peer_id]
        value = {"method": "GET", "path": probe.path, "url_path": probe.url_path, "query": probe.query,
                 "target": probe.target, "target_tenant": target_tenant, "edge": probe.edge,
                 "caller_tenant": caller.tenant_id}
        self.history.append(INVOKE, "read_probe", peer_id, value)
        try:
            status, answer = await self._call("GET", self.api_url + probe.url_path + _query_string(probe.query),
                                              caller.token)
        except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
            self.history.append(INFO, "read_probe", peer_id, {**value, "status": 0, "error": type(exc).__name__})
            return 0
        if 200 <= status < 300:
            text = orjson.dumps(answer).decode()
            records = answer.get("records") if isinstance(answer, dict) else None
            self.history.append(OK, "read_probe", peer_id, {
                **value, "status": status, "tenants_in_body": sorted(tenants_mentioned(answer, self.config.tenants)),
                "markers_seen": [m for m in markers if m in text],
                "items": len(records) if isinstance(records, list) else int(answer is not None)})
        else:
            reason = answer.get("reason_code") if isinstance(answer, dict) else None
            self.history.append(FAIL, "read_probe", peer_id, {**value, "status": status, "reason_code": reason})
        return status

    # --- operator --------------------------------------------------------------------------

    async def set_switch(self, engaged: bool, tenant_id: str | None = None) -> dict:
        path = "/v1/killswitches/global" if tenant_id is None else f"/v1/killswitches/tenants/{tenant_id}"
        value = {"scope": tenant_id or "global", "engaged": engaged}
        self.history.append(INVOKE, "killswitch", "operator", {**value, "invoked_wall_ms": wall_ms()})
        status, answer = await self._call("PUT", self.api_url + path, self.config.operator_token, {"engaged": engaged})
        acked_wall_ms = wall_ms()
        kind = OK if status == 200 else FAIL
        self.history.append(kind, "killswitch", "operator", {**value, "status": status, "acked_wall_ms": acked_wall_ms,
                                                             "revision": (answer or {}).get("revision")})
        if status != 200:
            raise RuntimeError(f"kill switch PUT answered {status}: {answer}")
        return answer

    async def approve(self, body: dict, status: str, *, hash_override: str | None = None, ttl_s: float = 300) -> None:
        """Grant (or deny) an approval as the operator. The history keeps exactly what was granted:
        tenant, key, hash, status, and the window its expiry must fall in (invoke + ttl .. ack + ttl),
        which is what the approval oracle judges executions against."""
        payload = {"tenant_id": body["tenant_id"], "idempotency_key": body["idempotency_key"],
                   "intent_hash": hash_override or intent_hash(body), "status": status, "ttl_s": ttl_s}
        granted = {"key": body["idempotency_key"], "tenant_id": body["tenant_id"], "status": status,
                   "intent_hash": payload["intent_hash"], "matching_hash": hash_override is None, "ttl_s": ttl_s}
        self.history.append(INVOKE, "approval", "operator", {**granted, "invoked_wall_ms": wall_ms()})
        code, answer = await self._call("POST", f"{self.api_url}/v1/approvals", self.config.operator_token, payload)
        self.history.append(OK if code == 200 else FAIL, "approval", "operator",
                            {**granted, "status_code": code, "acked_wall_ms": wall_ms(),
                             "reason_code": None if code == 200 else (answer or {}).get("reason_code")})

    async def operator_probe(self, method: str, path: str, token: str | None, body: dict, *, as_whom: str) -> int:
        """Call an operator-only endpoint with a token that is not the operator's; record the answer."""
        value = {"method": method, "path": path, "as": as_whom}
        self.history.append(INVOKE, "operator_probe", as_whom, value)
        code, answer = await self._call(method, self.api_url + path, token, body)
        self.history.append(OK if 200 <= code < 300 else FAIL, "operator_probe", as_whom,
                            {**value, "status": code, "reason_code": (answer or {}).get("reason_code")})
        return code

    @property
    def effector_auth(self) -> dict[str, str]:
        """The harness's credential at the effector (faults and ledger are its routes)."""
        return {"Authorization": f"Bearer {self.config.effector_tokens['harness']}"}

    async def effector_ledger(self) -> list[dict]:
        async with self.session.get(f"{self.effector_url}/v1/ledger", headers=self.effector_auth) as response:
            return await response.json()


class AuditWatch:
    """Collects terminal records as the cells publish them (a core NATS subscription)."""

    def __init__(self) -> None:
        self.records: dict[str, dict] = {}  # audit subject -> record
        self.arrived_wall_ms: dict[str, int] = {}
        self._changed = asyncio.Event()

    async def start(self, nc) -> None:
        async def on_msg(msg) -> None:
            if msg.subject not in self.records:
                self.records[msg.subject] = orjson.loads(msg.data)
                self.arrived_wall_ms[msg.subject] = wall_ms()
                self._changed.set()

        await nc.subscribe("exo.audit.>", cb=on_msg)

    @staticmethod
    def subject(tenant_id: str, key: str) -> str:
        return f"exo.audit.{tenant_id}.{key_digest(tenant_id, key)}"

    def record(self, tenant_id: str, key: str) -> dict | None:
        return self.records.get(self.subject(tenant_id, key))

    async def forget_unstored(self, js, pairs: list[tuple[str, str]], leader_only: bool = False) -> int:
        """Drop the records seen on the wire that the AUDIT stream does not hold: published, but
        lost with their server before they were stored (their intent is redelivered and recorded
        again). Returns how many were dropped; a record whose read fails is kept (not judged here).
        ``leader_only``: as for ``backfill``."""
        dropped = 0
        for tenant_id, key in pairs:
            subject = self.subject(tenant_id, key)
            if subject not in self.records:
                continue
            try:
                await asyncio.wait_for(natsio.last_message(js, "AUDIT", subject, leader_only), 1.0)
            except NotFoundError:
                del self.records[subject]
                self.arrived_wall_ms.pop(subject, None)
                dropped += 1
            except Exception:
                continue
        return dropped

    async def backfill(self, js, pairs: list[tuple[str, str]], leader_only: bool = False) -> None:
        """Read records the subscription missed (published while NATS was restarting);
        ``leader_only``: from the stream's leader, which no replica lagging behind can answer for
        (``natsio.last_message``)."""
        for tenant_id, key in pairs:
            subject = self.subject(tenant_id, key)
            if subject in self.records:
                continue
            try:
                msg = await asyncio.wait_for(natsio.last_message(js, "AUDIT", subject, leader_only), 1.0)
            except Exception:
                continue
            self.records[subject] = orjson.loads(msg.data)
            self.arrived_wall_ms.setdefault(subject, wall_ms())

    async def wait_for(self, pairs: list[tuple[str, str]], timeout_s: float, js=None) -> list[tuple[str, str]]:
        """Wait until every (tenant, key) has a terminal record; return the ones still missing."""
        deadline = time.monotonic() + timeout_s
        missing = [p for p in pairs if self.subject(*p) not in self.records]
        next_backfill = time.monotonic() + 1.0
        while missing and time.monotonic() < deadline:
            if js is not None and time.monotonic() >= next_backfill:
                await self.backfill(js, missing[:200])
                next_backfill = time.monotonic() + 1.0
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), min(0.25, max(0.01, deadline - time.monotonic())))
            except asyncio.TimeoutError:
                pass
            missing = [p for p in missing if self.subject(*p) not in self.records]
        return missing
