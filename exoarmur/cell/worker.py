"""A cell: pulls intents, decides, executes at most once, writes exactly one terminal record.

The order is what makes a cell safe to kill at any instant:

1. a terminal record already exists for this intent → ack and stop (a redelivery);
2. a redelivery whose decision was journaled reuses it and its snapshot (an EXECUTE's effect may
   be applied already: deciding afresh could record DENIED over it); otherwise read the safety
   state fresh (unreadable → fail closed) and ``decide`` — pure;
3. journal the decision, whatever it is (first writer wins: two deliveries of one intent, even
   one a failed-over consumer forgot it had made, never record one decision while applying
   another; a delivery that lost the race records a journaled refusal, and leaves a journaled
   EXECUTE to the delivery that journaled it until that one's calls are fenced off, coming back
   then as a redelivery), and only if it is EXECUTE call the effector with the intent's
   idempotency key (it applies at most once, so a retry or a redelivery re-reads the first
   receipt instead of acting again; each call carries a deadline past which the effector
   refuses it);
4. publish the sealed audit record to its own subject, which the AUDIT stream accepts once;
5. ack only after that publish is acknowledged (``sync_interval: always``: on disk).

The seams (``safety``, ``effects``, ``delivery``) are chosen once,
when the cell starts; this loop only calls them.
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from dataclasses import dataclass

import aiohttp
import orjson
import uvloop
from nats.js.errors import APIError, NotFoundError
from pydantic import ValidationError

from exoarmur import natsio
from exoarmur.cell.delivery import DELIVERY_DEFECTS, Delivery
from exoarmur.cell.fresh_reads import shared_by
from exoarmur.cell.effects import EFFECTOR_CALL_DEFECTS, EffectorCalls, EffectorCaller, EffectUnknown, Execution
from exoarmur.cell.safety import SAFETY_DEFECTS, Safety
from exoarmur.clock import now_ms
from exoarmur.contracts import (
    AuditRecordV1,
    EFFECTOR_KEEP_ALIVE_S,
    Decision,
    DecisionJournalV1,
    IntentV1,
    Outcome,
    ReasonCode,
    SafetySnapshot,
    audit_id_for,
)
from exoarmur.reliability.breaker import Transition
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s, with_deadline
from exoarmur.seams import choose, injected
from exoarmur.stackconfig import StackConfig

APPROVAL_POLL_S = 0.25  # how often a pending A2/A3 intent re-checks for its approval
# A redelivered intent whose effect cannot be confirmed (effector unreachable) is retried this
# often, this many deliveries in all, before FAILED is recorded as "not known to be applied".
UNKNOWN_EFFECT_RETRY_S = 1.0
UNKNOWN_EFFECT_MAX_DELIVERIES = 6
# JetStream error codes meaning "this subject already holds its one record".
ALREADY_RECORDED = {10071, 10077}


@dataclass(frozen=True)
class Journaled:
    """A decision journaled before its effect, the fence of its calls, and its stream sequence."""

    decision: Decision
    snapshot: SafetySnapshot
    not_after_ms: int
    seq: int
    mine: bool = False  # journaled by this delivery (it won the race to journal)
    failed: ReasonCode | None = None  # closed as FAILED by the delivery that journaled it

    @property
    def settled(self) -> bool:
        """Nothing is to be called for it: a refusal, or an EXECUTE closed as failed."""
        return not self.decision.execute or self.failed is not None


class Cell:
    def __init__(self, config: StackConfig, cell_id: str, nats_url: str | None, effector_url: str | None) -> None:
        self.config = config
        self.cell_id = cell_id
        self.nats_url = nats_url or config.nats_url
        self.effector_url = effector_url or config.effector_url
        defects = injected(config.defects)
        self.safety = choose(Safety(), SAFETY_DEFECTS, defects)
        self.delivery = choose(Delivery(), DELIVERY_DEFECTS, defects)
        self.effector = EffectorCaller(choose(EffectorCalls(), EFFECTOR_CALL_DEFECTS, defects),
                                       random.Random(f"{config.seed}:{cell_id}"), self._on_transition,
                                       config.nodes, config.bound("effect_deadline_skew_ms"))
        self.max_inflight = config.bound("cell_inflight")
        self.inflight = asyncio.Semaphore(self.max_inflight)
        self.approval_wait_ms = config.bound("approval_wait_ms")
        # On a replicated stream only the leader's answer is the latest (natsio.last_message).
        self.leader_reads = config.nats_replicas > 1
        self.tasks: set[asyncio.Task] = set()
        self.stopping = asyncio.Event()
        self.nc = None
        self.js = None

    # --- lifecycle -------------------------------------------------------------------------

    async def run(self) -> None:
        # As the cells' NATS user; streams, consumer and buckets were provisioned before it started.
        self.nc = await natsio.connect_as(self.config, "cell", self.cell_id, self.nats_url)
        self.js = self.nc.jetstream()
        shared_by(self.js).leader_only = self.leader_reads
        self.effector.http = aiohttp.ClientSession(
            base_url=self.effector_url, connector=aiohttp.TCPConnector(
                limit=self.config.bound("cell_inflight"), keepalive_timeout=EFFECTOR_KEEP_ALIVE_S / 2),
            headers={"Authorization": f"Bearer {self.config.effector_tokens['cell']}"})
        sub = await self.js.pull_subscribe_bind(natsio.CELLS_CONSUMER, stream=natsio.INTENTS_STREAM)
        await self._announce_start()
        try:
            while not self.stopping.is_set():
                await self.inflight.acquire()
                self.inflight.release()
                try:
                    await self._pull(sub)
                except (asyncio.TimeoutError, Exception):  # nothing to do, or NATS away: poll again
                    await asyncio.sleep(0.05 if not self.nc.is_connected else 0)
        finally:
            await self._stop(sub)

    async def _stop(self, sub) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=deadline_s(TimeoutCategory.EXECUTION_INTENT))
        await self.effector.http.close()
        # Unsubscribe the pull subscription before draining: nats-py's fetch takes messages
        # off its queue without task_done(), so draining it would wait out drain_timeout (30 s)
        # and SIGTERM would end in the supervisor's SIGKILL instead of a clean exit.
        try:
            await sub.unsubscribe()
        except Exception:
            pass
        await self.nc.drain()

    async def _pull(self, sub) -> None:
        await self.delivery.pull(sub, lambda: self.max_inflight - len(self.tasks), self._start)

    async def _start(self, msg) -> None:
        await self.inflight.acquire()
        task = asyncio.create_task(self._guarded(msg))
        self.tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task) -> None:
        self.tasks.discard(task)
        self.inflight.release()

    async def _guarded(self, msg) -> None:
        try:
            await self.delivery.within(TimeoutCategory.EXECUTION_INTENT, self.handle(msg))
        except Exception:  # unacked: JetStream redelivers it, and the steps above converge
            pass

    # --- one intent ------------------------------------------------------------------------

    async def handle(self, msg) -> None:
        # The end of this delivery's budget (``_guarded``): no effector call may outlive it.
        not_after_ms = now_ms() + int(deadline_s(TimeoutCategory.EXECUTION_INTENT) * 1000)
        try:
            intent = IntentV1.model_validate_json(msg.data)
        except ValidationError:
            await msg.term()  # the api validated it; a bad message here can never succeed
            return
        await self.delivery.on_receive(msg)
        digest = intent.digest()
        subject = natsio.audit_subject(intent.tenant_id, digest)
        # On a first delivery the check is skipped: the audit subject accepts one record and the
        # effector one application per key, so a rare resubmission after the duplicate window
        # still converges; redeliveries (a crash mid-way) are where the check saves work.
        redelivered = self.delivery.is_redelivery(msg)
        if redelivered and await self._already_recorded(subject):
            await msg.ack()
            return
        intent_hash = intent.intent_hash()
        journal = natsio.journal_subject(intent.tenant_id, digest)
        decided = await self._decide(msg, intent, intent_hash, digest, redelivered, not_after_ms)
        if decided is None:
            return  # asked to come back later (pending approval, or an earlier call still in flight)
        decision, snapshot = decided.decision, decided.snapshot
        execution = Execution(decision.outcome, decision.reason_code, None, 0)
        if decided.failed is not None:  # an earlier delivery's calls failed and it said so: the same
            execution = Execution(Outcome.FAILED, decided.failed, None, 0)
        elif decision.execute:
            try:
                execution = await self.effector.execute(intent, self.delivery.effect_key_suffix(msg),
                                                        redelivered=redelivered, not_after_ms=not_after_ms)
            except EffectUnknown as unknown:
                if msg.metadata.num_delivered < UNKNOWN_EFFECT_MAX_DELIVERIES:
                    await msg.nak(delay=UNKNOWN_EFFECT_RETRY_S)  # ask again later: never record a guess
                    return
                execution = unknown.failed  # the effector stayed unreachable: FAILED, "not known applied"
            if execution.outcome is Outcome.FAILED and not await self._close_failed(journal, decided, execution):
                return  # past this delivery's fence another one took the intent over: it records
        record = AuditRecordV1(
            audit_id=audit_id_for(intent.tenant_id, intent.idempotency_key),
            tenant_id=intent.tenant_id, intent_id=intent.intent_id,
            idempotency_key=intent.idempotency_key, intent_hash=intent_hash,
            node_id=intent.node_id, action=intent.action, action_class=intent.action_class,
            outcome=execution.outcome, reason_code=execution.reason_code, decision=decision, snapshot=snapshot,
            breaker_state=execution.breaker_state or self.effector.breaker.state(time.monotonic()).value,
            attempts=execution.attempts, receipt=execution.receipt,
            cell_id=self.cell_id, decided_at_ms=snapshot.now_ms,
        )
        await self._record(subject, record.audit_id, record.sealed_canonical())
        # The outcome is durable (its publish was acked): a lost ack only means a redelivery,
        # which finds the record and acks again — so no need to wait for this one.
        await self.delivery.on_recorded(msg)

    async def _already_recorded(self, subject: str) -> bool:
        try:
            await with_deadline(TimeoutCategory.KV_GET, natsio.last_message(
                self.js, natsio.AUDIT_STREAM, subject, self.leader_reads))
            return True
        except NotFoundError:
            return False

    async def _decide(self, msg, intent: IntentV1, intent_hash: str, digest: str, redelivered: bool,
                      not_after_ms: int) -> Journaled | None:
        """The decision this delivery acts on: a settled journaled one (a refusal, a failure), a
        journaled EXECUTE whose effect is applied, else a fresh one, journaled before it is acted
        on. None: the message was nak'd."""
        journal = natsio.journal_subject(intent.tenant_id, digest)
        journaled = await self._journaled(journal) if redelivered else None
        if journaled is not None and journaled.settled:
            return journaled  # nothing was called for, or nothing more will be: it stands
        if journaled is not None:  # an earlier delivery decided EXECUTE, and may have applied it
            wait_ms = journaled.not_after_ms + self.effector.skew_ms - now_ms()
            if wait_ms > 0:  # its calls may still land: ask once the effector refuses them
                await msg.nak(delay=wait_ms / 1000)
                return None
            applied = await self.effector.applied(intent, self.delivery.effect_key_suffix(msg))
            if applied is None:  # the effector cannot say: never decide over an effect that may be there
                await msg.nak(delay=UNKNOWN_EFFECT_RETRY_S)
                return None
            if applied:
                return journaled
            # Not applied, and past its fence never will be: that decision is stale (a switch may
            # have been engaged since), so decide afresh and replace it.
        submitted_at_ms = int(msg.metadata.timestamp.timestamp() * 1000)
        base = dict(node_tenant=self.config.nodes.get(intent.node_id), submitted_at_ms=submitted_at_ms,
                    approval_wait_ms=self.approval_wait_ms)
        decision, snapshot = self.safety.decide(intent, await self.safety.snapshot(self.js, intent, base))
        if decision.outcome is Outcome.PENDING_APPROVAL:
            await self._announce_pending(intent, intent_hash, digest)
            await msg.nak(delay=APPROVAL_POLL_S)
            return None
        # Durable before it is acted on or recorded: any other delivery must find it, or lose to it.
        entry = DecisionJournalV1(tenant_id=intent.tenant_id, idempotency_key=intent.idempotency_key,
                                  intent_hash=intent_hash, decision=decision, snapshot=snapshot,
                                  cell_id=self.cell_id, not_after_ms=not_after_ms)
        journaled = await self._journal(journal, entry, replacing=journaled.seq if journaled else 0)
        if not journaled.settled and not journaled.mine:
            # Another delivery is acting on it: were this one to call too, the other could record
            # FAILED (its breaker open, the effector saying "not applied") while this call lands.
            await msg.nak(delay=max(0, journaled.not_after_ms + self.effector.skew_ms - now_ms()) / 1000)
            return None
        return journaled

    async def _journaled(self, subject: str) -> Journaled | None:
        """The journaled decision, or None if none was ever journaled. An unreadable
        journal raises: the intent stays unacked and comes back (never decide afresh over an
        effect that may be applied)."""
        try:
            msg = await with_deadline(TimeoutCategory.KV_GET, natsio.last_message(
                self.js, natsio.JOURNAL_STREAM, subject, self.leader_reads))
        except NotFoundError:
            return None
        entry = DecisionJournalV1.model_validate_json(msg.data)
        return Journaled(entry.decision, entry.snapshot, entry.not_after_ms, msg.seq, failed=entry.failed)

    async def _journal(self, subject: str, entry: DecisionJournalV1, replacing: int) -> Journaled:
        """Journal this decision before acting on it, in place of the entry at sequence
        ``replacing`` (0: none). If another delivery wrote first, its entry is the decision,
        whatever this one says (not ``mine``: its calls are fenced by its own deadline)."""
        try:
            ack = await with_deadline(
                TimeoutCategory.NATS_PUBLISH,
                self.js.publish(subject, entry.canonical(),
                                headers={"Nats-Expected-Last-Subject-Sequence": str(replacing)}),
            )
        except APIError as exc:
            if exc.err_code not in ALREADY_RECORDED:
                raise  # not durable: no effect may follow; the intent stays unacked and comes back
            journaled = await self._journaled(subject)
            if journaled is None:  # refused as taken, yet absent: let a redelivery sort it out
                raise
            return journaled
        return Journaled(entry.decision, entry.snapshot, entry.not_after_ms, ack.seq, mine=True)

    async def _close_failed(self, journal: str, decided: Journaled, execution: Execution) -> bool:
        """Close the journaled EXECUTE this delivery acted on as failed, before recording FAILED:
        a slow delivery may still be at work past its fence, when another may decide afresh and
        call; whichever writes the journal first wins. False: another delivery replaced the entry
        first (this one must record nothing)."""
        entry = DecisionJournalV1.model_validate_json(
            (await with_deadline(TimeoutCategory.KV_GET, natsio.last_message(
                self.js, natsio.JOURNAL_STREAM, journal, self.leader_reads))).data)
        closed = entry.model_copy(update={"failed": execution.reason_code})
        try:
            await with_deadline(TimeoutCategory.NATS_PUBLISH, self.js.publish(
                journal, closed.canonical(), headers={"Nats-Expected-Last-Subject-Sequence": str(decided.seq)}))
        except APIError as exc:
            if exc.err_code not in ALREADY_RECORDED:
                raise  # not durable: no record may follow; the intent stays unacked and comes back
            return False
        return True

    async def _record(self, subject: str, audit_id: str, sealed: bytes) -> None:
        try:
            await with_deadline(
                TimeoutCategory.NATS_PUBLISH,
                self.js.publish(
                    subject, sealed,
                    headers={"Nats-Msg-Id": audit_id, "Nats-Expected-Last-Subject-Sequence": "0"},
                ),
            )
        except APIError as exc:
            if exc.err_code not in ALREADY_RECORDED:
                raise  # not durable: leave the message unacked so it is redelivered

    async def _announce_pending(self, intent: IntentV1, intent_hash: str, digest: str) -> None:
        event = {"tenant_id": intent.tenant_id, "idempotency_key": intent.idempotency_key,
                 "intent_hash": intent_hash, "outcome": Outcome.PENDING_APPROVAL.value}
        try:
            await self.js.publish(f"exo.events.pending.{intent.tenant_id}", orjson.dumps(event),
                                  headers={"Nats-Msg-Id": f"pending:{digest}"})
        except Exception:
            pass  # informational: the intent's state does not depend on it

    async def _announce_start(self) -> None:
        """A (re)started cell's breaker begins CLOSED: say so, or the last transition an earlier
        run of this cell published (OPEN, say) would stand as its state."""
        event = {"cell_id": self.cell_id, "breaker": "effector", "from": "START", "to": "CLOSED", "at_ms": now_ms(),
                 "reason": "cell started", "failures_in_window": 0, "calls_in_window": 0}
        try:
            await with_deadline(TimeoutCategory.NATS_PUBLISH,
                                self.js.publish(f"exo.events.breaker.{self.cell_id}", orjson.dumps(event)))
        except Exception:
            pass  # informational, like every transition event

    def _on_transition(self, transition: Transition) -> None:
        event = {"cell_id": self.cell_id, "breaker": transition.breaker, "from": transition.from_state.value,
                 "to": transition.to_state.value, "at_ms": now_ms(), "reason": transition.reason,
                 "failures_in_window": transition.failures_in_window, "calls_in_window": transition.calls_in_window}
        if self.js is not None:
            task = asyncio.get_running_loop().create_task(
                self.js.publish(f"exo.events.breaker.{self.cell_id}", orjson.dumps(event)))
            task.add_done_callback(lambda t: t.exception())  # audited best-effort; never crashes a cell


def run_cell(config: StackConfig, cell_id: str, nats_url: str | None = None, effector_url: str | None = None) -> None:
    async def main() -> None:
        cell = Cell(config, cell_id, nats_url, effector_url)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, cell.stopping.set)
        await cell.run()

    uvloop.run(main())
