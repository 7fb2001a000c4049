"""Shared fixtures and helpers for the integration and end-to-end tests.

Integration tests run against a real ``LocalStack`` (embedded nats-server, api, cells and
effector as separate processes): nothing is mocked. Each test module that asks for ``stack``
gets its own running stack, stopped in teardown whatever happens; a test that needs a stack
with other settings uses the ``make_stack`` fixture as a context manager. Tests reach helpers
through the ``exo`` fixture (an ``Exo``), never by importing this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import nats
import pytest
from nats.js.errors import NotFoundError

from exoarmur import natsio
from exoarmur.contracts import TERMINAL_OUTCOMES, IntentV1, key_digest
from exoarmur.stackconfig import Peer
from exoarmur_cli.procs import reap_all
from exoarmur_cli.stack import LocalStack

T = TypeVar("T")

POLL_S = 0.02
TERMINAL_STATES = {o.value for o in TERMINAL_OUTCOMES}
# A stack small enough to start fast, big enough for several tenants, peers and nodes.
SMALL_STACK = dict(tenants=3, nodes_per_tenant=2, peers_per_tenant=2)


@contextmanager
def running_stack(stack_dir: Path, **generate_kwargs: Any) -> Iterator[LocalStack]:
    """A started stack in ``stack_dir``; always stopped (and its children reaped) on exit."""
    stack = LocalStack.create(stack_dir, **{**SMALL_STACK, **generate_kwargs})
    try:
        stack.start()  # stops what it started if it cannot become ready
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    with running_stack(tmp_path_factory.mktemp("stack"), cells=2, seed=7) as running:
        yield running


@pytest.fixture(scope="module")
def exo(stack: LocalStack) -> Iterator["Exo"]:
    client = Exo(stack)
    try:
        yield client
    finally:
        client.close()


@pytest.fixture
def make_stack(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """``with make_stack(overrides={...}) as exo:`` — a stack of its own, with other settings."""

    @contextmanager
    def make(**generate_kwargs: Any) -> Iterator[Exo]:
        with running_stack(tmp_path_factory.mktemp("stack"), **generate_kwargs) as running:
            client = Exo(running)
            try:
                yield client
            finally:
                client.close()

    return make


@pytest.fixture(scope="session", autouse=True)
def _a_cache_of_the_tests_own(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """No test reads or writes the user's ``~/.cache/exoarmur``: a capacity measured while tests
    load the machine would size the user's next runs down (run-gates measures by default), and a
    kept one would let a test skip the measuring it means to check. Subprocesses inherit it; other
    tools' caches (pip's) stay where they are."""
    import os

    before = os.environ.get("EXOARMUR_CACHE_DIR")
    os.environ["EXOARMUR_CACHE_DIR"] = str(tmp_path_factory.mktemp("exoarmur-cache"))
    yield
    if before is None:
        os.environ.pop("EXOARMUR_CACHE_DIR", None)
    else:
        os.environ["EXOARMUR_CACHE_DIR"] = before


@pytest.fixture(scope="session", autouse=True)
def _no_children_left_behind() -> Iterator[None]:
    yield
    reap_all()  # belt and braces: every stack is stopped by its fixture already


class Exo:
    """A thin client for one live stack: peers, nodes, intents, waits and NATS peeks."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack = stack
        self.cfg = stack.config
        self.api = httpx.Client(base_url=self.cfg.api_url, timeout=10.0)
        # The harness's credential: faults, ledger and stats are its routes at the effector.
        self.effector = httpx.Client(base_url=self.cfg.effector_url, timeout=10.0,
                                     headers={"authorization": f"Bearer {self.cfg.effector_tokens['harness']}"})

    @staticmethod
    def unique(prefix: str) -> str:
        return f"{prefix}-{uuid.uuid4().hex[:10]}"

    @staticmethod
    def sha256(data: bytes) -> str:
        return hashlib.sha256(data).hexdigest()

    def close(self) -> None:
        self.api.close()
        self.effector.close()

    # --- identities ---------------------------------------------------------------------

    @property
    def tenants(self) -> list[str]:
        return list(self.cfg.tenants)

    def peers(self, tenant_id: str) -> list[Peer]:
        return [p for p in self.cfg.peers.values() if p.tenant_id == tenant_id]

    def peer(self, tenant_index: int = 0, index: int = 0) -> Peer:
        return self.peers(self.tenants[tenant_index])[index]

    def node(self, tenant_id: str, index: int = 0) -> str:
        return sorted(n for n, t in self.cfg.nodes.items() if t == tenant_id)[index]

    @staticmethod
    def auth(token: str | Peer) -> dict[str, str]:
        return {"authorization": f"Bearer {token.token if isinstance(token, Peer) else token}"}

    @property
    def operator(self) -> dict[str, str]:
        return self.auth(self.cfg.operator_token)

    # --- intents ------------------------------------------------------------------------

    def intent(self, peer: Peer, key: str | None = None, *, action_class: str = "A1",
               action: str = "block_ip", node_id: str | None = None, **fields: Any) -> dict:
        key = key or self.unique("k")
        body = dict(
            intent_id=self.unique("i"), tenant_id=peer.tenant_id, peer_id=peer.peer_id,
            node_id=node_id or self.node(peer.tenant_id), action=action, action_class=action_class,
            idempotency_key=key, parameters={"ip": "10.0.0.1"},
        )
        body.update(fields)
        return body

    @staticmethod
    def intent_hash(intent: dict) -> str:
        return IntentV1.model_validate(intent).intent_hash()

    def submit(self, peer: Peer | str, body: Any, **kwargs: Any) -> httpx.Response:
        if isinstance(body, (bytes, str)):
            return self.api.post("/v1/intents", content=body, headers={**self.auth(peer), "content-type": "application/json"}, **kwargs)
        return self.api.post("/v1/intents", json=body, headers=self.auth(peer), **kwargs)

    def accept(self, peer: Peer, intent: dict) -> dict:
        response = self.submit(peer, intent)
        assert response.status_code == 202, response.text
        return response.json()

    def status(self, peer: Peer, key: str) -> httpx.Response:
        return self.api.get(f"/v1/intents/{key}", headers=self.auth(peer))

    def wait_terminal(self, peer: Peer, key: str, timeout_s: float = 15.0) -> dict:
        """Poll GET /v1/intents/{key} until its terminal record exists; return the record."""
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            response = self.status(peer, key)
            last = (response.status_code, response.text[:300])
            if response.status_code == 200 and response.json()["state"] == "TERMINAL":
                record = response.json()["record"]
                assert record["outcome"] in TERMINAL_STATES, record
                return record
            time.sleep(POLL_S)
        raise AssertionError(f"intent {key} has no terminal record after {timeout_s}s; last: {last}")

    def run_one(self, peer: Peer, timeout_s: float = 15.0, **intent_fields: Any) -> dict:
        intent = self.intent(peer, **intent_fields)
        self.accept(peer, intent)
        return self.wait_terminal(peer, intent["idempotency_key"], timeout_s)

    def audit(self, tenant_id: str, token: str | Peer | None = None) -> list[dict]:
        """Every audit record of a tenant, all pages (operator token unless one is given)."""
        headers = self.operator if token is None else self.auth(token)
        records: list[dict] = []
        after = 0
        while True:
            response = self.api.get("/v1/audit", params={"tenant_id": tenant_id, "after_seq": after, "limit": 500},
                                    headers=headers)
            assert response.status_code == 200, response.text
            page = response.json()
            records += page["records"]
            if not page["records"]:
                return records
            after = page["next_after_seq"]

    def ledger(self) -> dict[str, dict]:
        """The effector ledger by idempotency key ("tenant:key")."""
        response = self.effector.get("/v1/ledger")
        assert response.status_code == 200, response.text
        rows = response.json()
        by_key = {row["idempotency_key"]: row for row in rows}
        assert len(by_key) == len(rows), "the ledger holds two rows for one key"
        return by_key

    def faults(self, **settings: Any) -> None:
        response = self.effector.put("/v1/faults", json=settings)
        assert response.status_code == 200, response.text

    def wait_ready(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                if self.api.get("/readyz", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError(f"api not ready within {timeout_s}s")

    # --- straight to NATS ----------------------------------------------------------------

    def nats(self, work: Callable[[Any], Awaitable[T]], role: str = "harness") -> T:
        """Run ``work(js)`` on a fresh NATS connection of its own, as the stack's user ``role``
        (the read-only ``harness`` unless a test injects a fault as ``nemesis`` or ``provisioner``)."""

        async def main() -> T:
            user, password = self.cfg.nats_credentials(role)
            nc = await nats.connect(self.cfg.nats_servers, connect_timeout=2, max_reconnect_attempts=0, user=user,
                                    password=password, inbox_prefix=natsio.inbox_prefix(user))
            try:
                return await work(nc.jetstream())
            finally:
                await nc.close()

        return asyncio.run(main())

    def intent_subject(self, tenant_id: str, key: str) -> str:
        return natsio.intent_subject(tenant_id, key_digest(tenant_id, key))

    def stream_subject_counts(self, stream: str, subject_filter: str) -> dict[str, int]:
        async def work(js):
            info = await js.stream_info(stream, subjects_filter=subject_filter)
            return dict(info.state.subjects or {})

        return self.nats(work)

    def stream_messages(self, stream: str, subject_filter: str) -> list[tuple[str, bytes]]:
        """(subject, data) of every message in ``stream`` matching the filter, in order."""

        async def work(js):
            out, seq = [], 0
            while True:
                try:
                    msg = await js.get_msg(stream, seq=seq + 1, next=True, subject=subject_filter)
                except NotFoundError:
                    return out
                out.append((msg.subject, msg.data or b""))
                seq = msg.seq

        return self.nats(work)

    def audit_raw(self, tenant_id: str, key: str) -> bytes | None:
        subject = natsio.audit_subject(tenant_id, key_digest(tenant_id, key))

        async def work(js):
            try:
                return (await js.get_last_msg(natsio.AUDIT_STREAM, subject)).data
            except NotFoundError:
                return None

        return self.nats(work)
