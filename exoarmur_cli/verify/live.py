"""``replay-verify --live``: the recorded intents, re-submitted to a fresh embedded stack.

The stack is generated with the recorded identity layout (tenant-NN, peer-NNN, node-NNNN come
out the same; only the tokens differ). Before each intent the recorded safety state is set
through the operator API — kill switches from the record's snapshot, the recorded approval
(status and intent hash) — and the intent is submitted as its recorded peer; the fresh stack's
terminal record must carry the recorded outcome and reason code.

Only paths the decision alone determines are replayed live (see ``LIVE_PATHS``). The rest are
skipped and counted with why: FAILED depends on injected effector faults, EXPIRED on the wall
clock, SAFETY_STATE_UNAVAILABLE on an injected safety-store fault; other denials are refused
at admission by a live api before any cell sees them. Intents with the same switch settings
are submitted together (a batch); the switches change only between batches.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
from pydantic import ValidationError

from exoarmur import natsio
from exoarmur.contracts import APPROVAL_REQUIRED_CLASSES, AuditRecordV1, Outcome, ReasonCode
from exoarmur.errors import ExoError
from exoarmur.stackconfig import StackConfig
from exoarmur_cli import recorded
from exoarmur_cli.bundle import RAW
from exoarmur_cli.client import AuditWatch
from exoarmur_cli.errors import HarnessError, StackError
from exoarmur_cli.stack import LocalStack
from exoarmur_cli.verify.checks import Check

LIVE_PATHS = frozenset({
    (Outcome.EXECUTED, ReasonCode.OK),
    (Outcome.DENIED, ReasonCode.KILL_SWITCH_GLOBAL),
    (Outcome.DENIED, ReasonCode.KILL_SWITCH_TENANT),
    (Outcome.DENIED, ReasonCode.APPROVAL_DENIED),
    (Outcome.DENIED, ReasonCode.APPROVAL_MISMATCH),
})
TERMINAL_TIMEOUT_S = 30.0
ADMISSION_RETRY_S = 10.0  # a 429/503 is the fresh stack's admission, not an outcome: try again
SUBMIT_CONCURRENCY = 32
APPROVAL_TTL_S = 600.0


@dataclass(frozen=True)
class LiveItem:
    seq: int  # the record's AUDIT stream sequence
    record: AuditRecordV1
    intent: dict[str, Any]

    @property
    def needs(self) -> dict[str, bool]:
        """The switch settings this record's decision saw (scope "global" or a tenant id)."""
        snap = self.record.snapshot
        if snap.global_switch:
            return {"global": True}
        return {"global": False, self.record.tenant_id: snap.tenant_switch}

    @property
    def pair(self) -> tuple[str, str]:
        return self.record.tenant_id, self.record.idempotency_key


@dataclass(frozen=True)
class LivePlan:
    items: tuple[LiveItem, ...]
    skipped: dict[str, int]

    def batches(self) -> list[list[LiveItem]]:
        """Consecutive items whose switch settings agree, in record order."""
        out: list[list[LiveItem]] = []
        settings: dict[str, bool] = {}
        for item in self.items:
            if not out or any(settings.get(k, v) != v for k, v in item.needs.items()):
                out.append([])
                settings = {}
            out[-1].append(item)
            settings.update(item.needs)
        return out


def skip_reason(record: AuditRecordV1) -> str | None:
    """Why a record's outcome cannot be reproduced by re-submission alone; None if it can."""
    if record.outcome is Outcome.FAILED:
        return "FAILED: depends on injected effector faults"
    if record.outcome is Outcome.EXPIRED:
        return "EXPIRED: depends on the wall clock"
    if record.reason_code is ReasonCode.SAFETY_STATE_UNAVAILABLE:
        return "SAFETY_STATE_UNAVAILABLE: depends on an injected safety-store fault"
    if (record.outcome, record.reason_code) not in LIVE_PATHS:
        return f"{record.reason_code.value}: refused at admission by a live api"
    return None


def plan(audit_rows: list[dict], intent_rows: list[dict], limit: int) -> LivePlan:
    """The first ``limit`` replayable records by AUDIT stream sequence, and what was skipped."""
    intents: dict[tuple[str, str], dict] = {}
    for row in sorted(intent_rows, key=lambda r: r.get("seq", 0)):
        intent = row.get("intent") or {}
        intents.setdefault((intent.get("tenant_id"), intent.get("idempotency_key")), intent)
    items: list[LiveItem] = []
    skipped: Counter[str] = Counter()
    for row in sorted(audit_rows, key=lambda r: r.get("seq", 0)):
        try:
            record = AuditRecordV1.model_validate(row["record"])
        except (ValidationError, KeyError, TypeError):
            skipped["unreadable record"] += 1
            continue
        reason = skip_reason(record)
        intent = intents.get((record.tenant_id, record.idempotency_key))
        if reason is None and intent is None:
            reason = "no recorded intent"
        if reason is None and len(items) >= limit:
            reason = "over --live-limit"
        if reason is not None:
            skipped[reason] += 1
            continue
        items.append(LiveItem(int(row.get("seq", 0)), record, intent))
    return LivePlan(tuple(items), dict(sorted(skipped.items())))


def check_live(bundle: Path, audit_rows: list[dict], intent_rows: list[dict], limit: int,
               progress: Callable[[str], None]) -> Check:
    """Re-submit the plan to a fresh stack. Raises StackError if no stack can be started."""
    live = plan(audit_rows, intent_rows, limit)
    params_path = bundle / RAW / recorded.RUN_PARAMS
    try:
        params = orjson.loads(params_path.read_bytes())
    except (OSError, orjson.JSONDecodeError) as exc:
        text = f"cannot read {RAW}/{recorded.RUN_PARAMS}: {type(exc).__name__}"
        return Check("live", False, text, {}, ({"kind": "error", "text": text},))
    if not live.items:
        text = "no replayable intent recorded, nothing re-submitted"
        return Check("live", not audit_rows, text, {"compared": 0, "skipped": sum(live.skipped.values())})
    stack = start_stack(params, progress)
    keep = True  # the fresh stack's logs are kept unless every intent compared equal
    try:
        equal, problems = 0, identity_problems(stack.config, params, live)
        if not problems:
            batches = live.batches()
            progress(f"live: re-submitting {len(live.items)} intents in {len(batches)} batches")
            equal, problems = asyncio.run(_replay(stack.config, batches))
        keep = bool(problems)
    finally:
        stack.stop()
        if not keep:
            shutil.rmtree(stack.dir, ignore_errors=True)
    skipped = sum(live.skipped.values())
    why = "; ".join(f"{reason} {n}" for reason, n in live.skipped.items())
    summary = (f"{len(live.items)} intents re-submitted to a fresh stack, {equal} equal, "
               f"{len(problems)} differences; {skipped} skipped" + (f" ({why})" if why else ""))
    if keep:
        summary += f"; stack logs kept in {stack.dir / 'logs'}"
    counts = {"compared": len(live.items), "equal": equal, "differences": len(problems), "skipped": skipped,
              "skipped_by_reason": dict(live.skipped)}
    return Check("live", not problems and equal == len(live.items), summary, counts, tuple(problems))


def start_stack(params: dict, progress: Callable[[str], None]) -> LocalStack:
    """A fresh embedded stack with the recorded identity layout and the product's own limits."""
    view = params.get("stack", {})
    tenants = int(view.get("tenants", 10))
    stack_dir = Path(tempfile.mkdtemp(prefix="exoarmur-verify-"))
    progress(f"live: starting a fresh embedded stack in {stack_dir}")
    try:
        stack = LocalStack.create(stack_dir, tenants=tenants, nodes_per_tenant=int(view.get("nodes", 1000)) // tenants,
                                  peers_per_tenant=int(view.get("peers", 500)) // tenants,
                                  seed=int(params.get("seed", 0)))
        stack.start()
    except StackError:
        raise
    except (ExoError, HarnessError, OSError, ValueError, ZeroDivisionError) as exc:
        raise StackError(f"cannot start a fresh stack: {type(exc).__name__}: {exc}") from exc
    return stack


def identity_problems(config: StackConfig, params: dict, live: LivePlan) -> list[dict]:
    """The fresh stack must own each recorded node, and know each recorded peer, as the run did."""
    problems = []
    for node, tenant in params.get("node_owners", {}).items():
        if config.nodes.get(node) != tenant:
            problems.append({"kind": "identity", "text": f"{node} belongs to {tenant} in the run, "
                                                         f"to {config.nodes.get(node)} in a fresh stack"})
    for item in live.items:
        peer = config.peers.get(item.intent.get("peer_id"))
        if peer is None or peer.tenant_id != item.record.tenant_id:
            problems.append({"kind": "identity", "intent": ":".join(item.pair),
                             "text": f"{':'.join(item.pair)}: peer {item.intent.get('peer_id')} is not a peer of "
                                     f"{item.record.tenant_id} in a fresh stack"})
    return problems[:50]


async def _replay(config: StackConfig, batches: list[list[LiveItem]]) -> tuple[int, list[dict]]:
    """(how many terminal records equal the recorded ones, every difference)."""
    try:
        nc = await natsio.connect_as(config, "harness", "exoarmur-replay-verify")
    except (ExoError, HarnessError, OSError) as exc:
        raise StackError(f"the fresh stack's NATS is unreachable: {type(exc).__name__}: {exc}") from exc
    equal, problems = 0, []
    try:
        watch = AuditWatch()
        await watch.start(nc)
        async with httpx.AsyncClient(base_url=config.api_url, timeout=10.0) as http:
            fresh = _FreshStack(config, http, nc.jetstream(), watch)
            for batch in batches:
                got_equal, got_problems = await fresh.replay(batch)
                equal, problems = equal + got_equal, problems + got_problems
    except (httpx.HTTPError, ExoError, HarnessError, OSError) as exc:
        problems.append({"kind": "error", "text": f"live replay stopped: {type(exc).__name__}: {exc}"})
    finally:
        await nc.close()
    return equal, problems


class _FreshStack:
    """The fresh stack as the operator and the recorded peers see it, one batch at a time."""

    def __init__(self, config: StackConfig, http: httpx.AsyncClient, js, watch: AuditWatch) -> None:
        self.config, self.http, self.js, self.watch = config, http, js, watch
        self.operator = {"Authorization": f"Bearer {config.operator_token}"}
        self.switches: dict[str, bool] = {}  # as set so far; a fresh stack starts with all disengaged
        self.gate = asyncio.Semaphore(SUBMIT_CONCURRENCY)

    async def replay(self, batch: list[LiveItem]) -> tuple[int, list[dict]]:
        await self._set_switches(batch)
        await self._set_approvals(batch)
        answers = await asyncio.gather(*(self._submit(item) for item in batch))
        problems = [_problem(item, None, f"refused at admission: {status} {answer}")
                    for item, (status, answer) in zip(batch, answers) if status != 202]
        accepted = [item for item, (status, _) in zip(batch, answers) if status == 202]
        missing = set(await self.watch.wait_for([i.pair for i in accepted], TERMINAL_TIMEOUT_S, self.js))
        equal = 0
        for item in accepted:
            got = None if item.pair in missing else self.watch.record(*item.pair)
            if got is None:
                problems.append(_problem(item, None, f"no terminal record within {TERMINAL_TIMEOUT_S:.0f}s"))
            elif (got["outcome"], got["reason_code"]) != (item.record.outcome.value, item.record.reason_code.value):
                problems.append(_problem(item, got))
            else:
                equal += 1
        return equal, problems

    async def _set_switches(self, batch: list[LiveItem]) -> None:
        for scope, engaged in {k: v for item in batch for k, v in item.needs.items()}.items():
            if self.switches.get(scope, False) != engaged:
                path = "/v1/killswitches/global" if scope == "global" else f"/v1/killswitches/tenants/{scope}"
                await self._operator("PUT", path, {"engaged": engaged})
                self.switches[scope] = engaged

    async def _set_approvals(self, batch: list[LiveItem]) -> None:
        for item in batch:
            approval = item.record.snapshot.approval
            if approval is not None and item.record.action_class in APPROVAL_REQUIRED_CLASSES:
                await self._operator("POST", "/v1/approvals", {
                    "tenant_id": approval.tenant_id, "idempotency_key": approval.idempotency_key,
                    "intent_hash": approval.intent_hash, "status": approval.status.value, "ttl_s": APPROVAL_TTL_S})

    async def _operator(self, method: str, path: str, body: dict) -> None:
        response = await self.http.request(method, path, json=body, headers=self.operator)
        if response.status_code != 200:
            raise StackError(f"{method} {path} answered {response.status_code}: {response.text[:200]}")

    async def _submit(self, item: LiveItem) -> tuple[int, Any]:
        """Submit as the recorded peer: (status, reason code or body). 429/503 are retried."""
        headers = {"Authorization": f"Bearer {self.config.peers[item.intent['peer_id']].token}"}
        deadline = time.monotonic() + ADMISSION_RETRY_S
        async with self.gate:
            while True:
                response = await self.http.post("/v1/intents", json=item.intent, headers=headers)
                if response.status_code not in (429, 503) or time.monotonic() > deadline:
                    answer = response.json() if response.content else None
                    return response.status_code, answer.get("reason_code") if isinstance(answer, dict) else answer
                await asyncio.sleep(0.1)


def _problem(item: LiveItem, got: dict | None, why: str = "") -> dict:
    key = ":".join(item.pair)
    want = f"{item.record.outcome.value}/{item.record.reason_code.value}"
    live = None if got is None else f"{got['outcome']}/{got['reason_code']}"
    return {"kind": "live", "intent": key, "seq": item.seq, "recorded": want, "live": live or why,
            "text": f"{key} (audit seq {item.seq}): recorded {want}, live {live or why}"}
