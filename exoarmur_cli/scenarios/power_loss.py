"""Scenario for gate 1: power loss under the stores — does an acknowledgement mean "on disk"?

SIGKILL alone cannot tell: a killed process loses nothing it handed to the kernel. So this
scenario brings up a stack of its own whose two stores sit on lazy file systems
(``faults.lazyfs``): the JetStream store dir (the "nats host's disk") and the effector's ledger
dir (the "effector host's disk"). Under a steady flow of intents it powers off the nats host,
the effector host, or both: SIGKILL the process(es), then discard every write not yet fsynced.
Then power comes back: the processes restart on what was synced.

It records, for each power loss, what was acknowledged just before (the AUDIT stream's
records and the effector's ledger rows, read back through their public surfaces), how many
unsynced bytes the power loss dropped, how the stores restarted, and what was stored right
after; at the end, every intent the api acknowledged and everything stored. Checkers judge.
"""

from __future__ import annotations

import asyncio
import hashlib
import shutil
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from exoarmur import natsio, stackconfig
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.client import AuditWatch, StackClient
from exoarmur_cli.export import read_stream
from exoarmur_cli.faults.lazyfs import (
    LazyFSUnavailable, LazyMount, clean_stale_mounts, unavailable_reason,
)
from exoarmur_cli.history import History
from exoarmur_cli.scenarios.base import Context, ScenarioNotRun
from exoarmur_cli.scenarios.params import PowerLossParams, as_
from exoarmur_cli.stack import LocalStack, StackError

TARGETS = ("nats", "effector", "both")  # which host loses power, in turn
HOSTS = {"nats": ["nats"], "effector": ["effector"], "both": ["nats", "effector"]}
CLIENT_HISTORY = "power_loss_history.jsonl"  # this stack's client operations (evidence only)
PROBLEM_MARKS = ("[ERR]", "[FTL]", "corrupt")
CANARY = ".power-loss-canary"  # at a disk's root, outside every store's own directory
CANARY_BYTES = 4096


@dataclass
class Machine:
    """The power-loss stack: its own processes, its stores on lazy disks."""

    dir: Path
    config: StackConfig
    stack: LocalStack
    disks: dict[str, LazyMount]

    def power_off(self, target: str) -> dict[str, dict]:
        """SIGKILL the target's processes, then drop their disks' unsynced writes.

        A canary (``CANARY_BYTES`` written, never synced) goes onto each disk first: with stores
        that fsync before every ack there may be nothing else unsynced at that instant, and the
        canary's disappearance is what shows that this power loss really discarded writes."""
        for name in HOSTS[target]:
            (self.disks[name].mountpoint / CANARY).write_bytes(b"\xa5" * CANARY_BYTES)
        for name in HOSTS[target]:
            self.stack.children[name].kill()  # SIGKILL and reap: nothing of it can write any more
        return {name: self.disks[name].power_loss() for name in HOSTS[target]}

    def canaries_left(self, target: str) -> dict[str, bool]:
        return {name: (self.disks[name].mountpoint / CANARY).exists() for name in HOSTS[target]}

    def power_on(self, target: str, timeout_s: float) -> dict:
        log = self.stack.children["nats"].log_path
        log_offset = log.stat().st_size if log.exists() else 0
        result: dict = {"started": {}, "ready": False}
        began = time.monotonic()
        for name in HOSTS[target]:
            try:
                self.stack.start_component(name)
                result["started"][name] = True
            except StackError as exc:
                result["started"][name] = False
                result["start_error"] = str(exc)
        try:
            self.stack.wait_ready(timeout_s)
            result["ready"] = True
        except StackError as exc:
            result["ready_error"] = str(exc)
        result["ready_s"] = round(time.monotonic() - began, 3)
        text = log.read_bytes()[log_offset:].decode(errors="replace") if log.exists() else ""
        result["nats_log_problems"] = [line[:300] for line in text.splitlines()
                                       if any(mark.lower() in line.lower() for mark in PROBLEM_MARKS)][:20]
        return result

    def shut_down(self, raw_dir: Path) -> None:
        try:
            self.stack.stop()
        finally:
            for disk in self.disks.values():
                disk.stop()
            logs = self.dir / "logs"
            if logs.exists():
                shutil.copytree(logs, raw_dir / "power_loss_logs", dirs_exist_ok=True)
            shutil.rmtree(self.dir, ignore_errors=True)


def _bring_up(ctx: Context) -> Machine:
    root = Path(tempfile.mkdtemp(prefix="exoarmur-pl-"))
    config = stackconfig.generate(root, seed=ctx.rng.randint(0, 2**31), overrides=dict(ctx.config.overrides),
                                  defects=list(ctx.config.defects))
    config = StackConfig.model_validate({**config.model_dump(), "ledger_dir": str(root / "ledger")})
    stackconfig.save(config)
    disks = {
        "nats": LazyMount(root / "jetstream", root / "disk" / "jetstream", root / "nats-disk.sock",
                          root / "logs" / "lazyfs-nats.log"),
        "effector": LazyMount(root / "ledger", root / "disk" / "ledger", root / "effector-disk.sock",
                              root / "logs" / "lazyfs-effector.log"),
    }
    stack = LocalStack(config)
    machine = Machine(root, config, stack, disks)
    try:
        for disk in disks.values():  # both disks' processes start together...
            disk.spawn()
        for disk in disks.values():  # ...and are then waited for
            disk.wait_mounted()
        stack.start()
    except BaseException:
        machine.shut_down(ctx.raw_dir)
        raise
    return machine


async def power_loss(ctx: Context) -> None:
    ctx.require_local("power off nats-server and the effector")
    problem = await asyncio.to_thread(unavailable_reason)
    if problem is not None:
        raise ScenarioNotRun(f"lazy file system unavailable: {problem}")
    cleaned = await asyncio.to_thread(clean_stale_mounts)
    if cleaned:
        ctx.observe("stale_mounts_cleaned", paths=cleaned)
    try:
        machine = await asyncio.to_thread(_bring_up, ctx)
    except LazyFSUnavailable as exc:
        raise ScenarioNotRun(f"lazy file system unavailable: {exc}") from None
    ctx.observe("power_loss_stack", stack=machine.config.public_view(),
                disks={name: str(disk.mountpoint) for name, disk in machine.disks.items()})
    history = History(ctx.raw_dir / CLIENT_HISTORY)
    history.scenario = ctx.name
    nc = None
    try:
        nc = await natsio.connect_as(machine.config, "harness", "exoarmur-harness-power-loss")
        watch = AuditWatch()
        await watch.start(nc)
        async with StackClient(machine.config, history) as client:
            sub = replace(ctx, config=machine.config, client=client, watch=watch, nc=nc, js=nc.jetstream())
            await _drive(sub, machine)
    finally:
        if nc is not None:
            try:
                await nc.close()
            except Exception:
                pass
        history.close()
        machine.shut_down(ctx.raw_dir)  # not in a thread: an interrupt must not cut the clean-up short


async def _drive(sub: Context, machine: Machine) -> None:
    tenants = sub.config.tenants
    p = as_(sub.params, PowerLossParams)
    round_s = float(p.round_s)
    accepted = []
    for round_ in range(p.power_losses):
        target = TARGETS[round_ % len(TARGETS)]
        # The flow runs into the power loss and through the restart, and ends once what is stored
        # after it has been read: the next round's flow shows the restarted stack taking work (and
        # after the last round, the settle shows every accepted intent reaching its record).
        restored_and_read = asyncio.Event()
        flow = asyncio.create_task(sub.submit_at_rate(
            lambda: sub.body(sub.rng.choice(tenants)), p.rate_per_s, round_s, until=restored_and_read))
        await asyncio.sleep(round_s * sub.rng.uniform(0.4, 0.6))
        sub.observe("acknowledged_before", round=round_, **await _stored(sub, intents=False))
        dropped = await asyncio.to_thread(machine.power_off, target)
        sub.nemesis("power_loss", round=round_, target=target, dropped=dropped)
        restored = await asyncio.to_thread(machine.power_on, target, float(p.restart_timeout_s))
        restored["streams_missing"] = await _streams_missing(sub)
        restored["api_ready"] = await sub.wait_api_ready()
        restored["canary_survived"] = await asyncio.to_thread(machine.canaries_left, target)
        sub.observe("power_restored", round=round_, target=target, **restored)
        sub.observe("stored_after", round=round_, **await _stored(sub, intents=False))
        restored_and_read.set()
        accepted.extend(s for s in await flow if s.accepted)
    sub.observe("acked_intents", pairs=[[s.tenant_id, s.key] for s in accepted])
    await sub.settle(accepted, stored=True)
    sub.observe("stored_final", **await _stored(sub, intents=True))


async def _streams_missing(sub: Context) -> list[str]:
    missing = []
    for stream in (natsio.INTENTS_STREAM, natsio.AUDIT_STREAM, natsio.EVENTS_STREAM):
        try:
            await asyncio.wait_for(sub.js.stream_info(stream), 5.0)
        except Exception:
            missing.append(stream)
    return missing


async def _stored(sub: Context, *, intents: bool) -> dict:
    """What the stores hold now, read through their public surfaces: AUDIT subjects with the
    sha256 of each record, the ledger's effect keys, the effector keys of EXECUTED records and,
    with ``intents``, the (tenant, key) pairs of INTENTS. An unreachable store reads as ``None``."""
    out: dict = {}
    try:
        rows = await asyncio.wait_for(read_stream(sub.js, natsio.AUDIT_STREAM), 30)
        out["audit"] = {r["subject"]: hashlib.sha256(r["data"]).hexdigest() for r in rows}
        records = [orjson.loads(r["data"]) for r in rows]
        out["executed_effect_keys"] = sorted({rec["receipt"]["idempotency_key"] for rec in records
                                              if rec.get("outcome") == "EXECUTED" and rec.get("receipt")})
    except Exception as exc:
        out["audit"], out["executed_effect_keys"], out["audit_error"] = None, None, type(exc).__name__
    try:
        out["ledger"] = sorted(row["idempotency_key"] for row in await sub.client.effector_ledger())
    except Exception as exc:
        out["ledger"], out["ledger_error"] = None, type(exc).__name__
    if intents:
        try:
            rows = await asyncio.wait_for(read_stream(sub.js, natsio.INTENTS_STREAM), 30)
            intents_ = [orjson.loads(r["data"]) for r in rows]
            out["intents"] = sorted({(i["tenant_id"], i["idempotency_key"]) for i in intents_})
        except Exception as exc:
            out["intents"], out["intents_error"] = None, type(exc).__name__
    return out
