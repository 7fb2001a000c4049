"""The stack's JetStream layout and the one way every process connects to NATS.

Subjects carry the tenant and a digest of the idempotency key, so "the record of this
intent" is one subject: the AUDIT stream keeps at most one message per subject and refuses
a second (``discard_new_per_subject``), which makes "exactly one terminal record per
intent" a property the server enforces, not one the cells must remember. The JOURNAL stream
holds, the same way, the one EXECUTE decision a cell made for an intent before calling the
effector, so a redelivery reuses it instead of deciding afresh over an applied effect.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterable
from dataclasses import dataclass

import nats
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import BadRequestError

from exoarmur.contracts import ReasonCode
from exoarmur.defects import Defect
from exoarmur.errors import ExoError
from exoarmur.natsauth import inbox_prefix
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s, with_deadline
from exoarmur.seams import Alternatives, choose
from exoarmur.stackconfig import StackConfig

INTENTS_STREAM = "INTENTS"
AUDIT_STREAM = "AUDIT"
EVENTS_STREAM = "EVENTS"
JOURNAL_STREAM = "JOURNAL"
CELLS_CONSUMER = "cells"
SAFETY_BUCKET = "safety"
APPROVALS_BUCKET = "approvals"
DUPLICATE_WINDOW_S = 600.0  # longer than any run: a resubmission inside it is one intent
GLOBAL_SWITCH_KEY = "global"


def intent_subject(tenant_id: str, digest: str) -> str:
    return f"exo.intents.{tenant_id}.{digest}"


def audit_subject(tenant_id: str, digest: str) -> str:
    return f"exo.audit.{tenant_id}.{digest}"


def journal_subject(tenant_id: str, digest: str) -> str:
    return f"exo.journal.{tenant_id}.{digest}"


def tenant_switch_key(tenant_id: str) -> str:
    return f"tenant.{tenant_id}"


def approval_key(tenant_id: str, digest: str) -> str:
    return f"{tenant_id}.{digest}"


def msg_id(tenant_id: str, idempotency_key: str) -> str:
    return f"{tenant_id}:{idempotency_key}"


class StackUnavailable(ExoError):
    """NATS could not be reached within its connect deadline."""

    reason_code = ReasonCode.STACK_UNAVAILABLE


def wait_for_port(host: str, port: int, timeout_s: float) -> bool:
    """Poll until something accepts on host:port; nats.connect would otherwise back off 2 s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.05)
    return False


async def _quiet(_exc: Exception) -> None:
    """Connection errors are expected during faults; the caller sees their effects, not logs."""


def _host_port(url: str) -> tuple[str, int]:
    host, _, port = url.split("://", 1)[-1].rpartition(":")
    return host, int(port)


def _any_port_open(servers: list[str], timeout_s: float) -> bool:
    """Poll until one of ``servers`` accepts: a cluster is reachable once any of its nodes is."""
    deadline = time.monotonic() + timeout_s
    while True:
        for url in servers:
            try:
                with socket.create_connection(_host_port(url), timeout=0.2):
                    return True
            except OSError:
                pass
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


# A server that stops answering (SIGSTOPped, wedged) while its TCP connection stays open is left
# for another after about PING_INTERVAL_S x (MAX_OUTSTANDING_PINGS + 1) = 6 s. nats-py's defaults
# (120 s, 2) kept the api writing to a stopped cluster node for the whole of its 12 s pause.
PING_INTERVAL_S = 2.0
MAX_OUTSTANDING_PINGS = 2


async def connect(url: str, name: str, *, credentials: tuple[str, str] | None = None,
                  wait_s: float | None = None) -> Client:
    """Connect as ``credentials`` (user, password), whose replies come to that user's own inbox.

    ``url`` may name several servers, comma-separated (a cluster's nodes): the client connects to
    one and fails over to the others. Without credentials the server refuses the connection
    (there is no anonymous access)."""
    servers = [part.strip() for part in url.split(",") if part.strip()]
    wait = deadline_s(TimeoutCategory.NATS_CONNECT) if wait_s is None else wait_s
    ready = await asyncio.to_thread(_any_port_open, servers, wait)
    if not ready:
        raise StackUnavailable(f"NATS at {url} did not accept connections within {wait:.1f}s")
    auth = {}
    if credentials is not None:
        user, password = credentials
        auth = {"user": user, "password": password, "inbox_prefix": inbox_prefix(user)}
    try:
        return await with_deadline(
            TimeoutCategory.NATS_CONNECT,
            nats.connect(
                servers,
                name=name,
                connect_timeout=1,
                reconnect_time_wait=0.1,
                max_reconnect_attempts=-1,  # services ride out NATS restarts
                ping_interval=PING_INTERVAL_S,
                max_outstanding_pings=MAX_OUTSTANDING_PINGS,
                error_cb=_quiet,
                **auth,
            ),
        )
    except (OSError, nats.errors.Error) as exc:
        raise StackUnavailable(f"cannot connect to NATS at {url}: {exc}") from None


async def connect_as(config: StackConfig, role: str, name: str, url: str | None = None) -> Client:
    """Connect as one of the stack's NATS roles (``natsauth.ROLES``), with its password from the config."""
    return await connect(url or config.nats_url, name, credentials=config.nats_credentials(role))


def stream_configs(storage: js_api.StorageType = js_api.StorageType.FILE,
                   replicas: int = 1) -> list[js_api.StreamConfig]:
    """Every stream of the stack; ``replicas`` > 1 on a cluster (each message on that many servers)."""
    configs = [
        js_api.StreamConfig(
            name=INTENTS_STREAM,
            subjects=["exo.intents.>"],
            storage=storage,
            retention=js_api.RetentionPolicy.LIMITS,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True,
        ),
        js_api.StreamConfig(
            name=AUDIT_STREAM,
            subjects=["exo.audit.>"],
            storage=storage,
            max_msgs_per_subject=1,
            discard=js_api.DiscardPolicy.NEW,
            discard_new_per_subject=True,
            duplicate_window=DUPLICATE_WINDOW_S,
            allow_direct=True,
        ),
        # The cells' decision journal: the last decision per intent. Writers say which
        # entry they replace (Nats-Expected-Last-Subject-Sequence), so the first of two racing wins.
        js_api.StreamConfig(
            name=JOURNAL_STREAM,
            subjects=["exo.journal.>"],
            storage=storage,
            max_msgs_per_subject=1,
            allow_direct=True,
        ),
        js_api.StreamConfig(
            name=EVENTS_STREAM,
            subjects=["exo.events.>"],
            storage=storage,
            duplicate_window=DUPLICATE_WINDOW_S,
        ),
    ]
    for config in configs:
        config.num_replicas = replicas
    return configs


# --- the storage seam: where streams and buckets keep their messages ----------------------------

@dataclass(frozen=True)
class Storage:
    kind: js_api.StorageType = js_api.StorageType.FILE  # with sync_interval: always, an ack is on disk


STORAGE_DEFECTS: Alternatives = {
    # Defect ``memory-storage``: streams and buckets in memory, so nothing survives a restart.
    Defect.MEMORY_STORAGE: {"kind": js_api.StorageType.MEMORY},
}


def storage(defects: Iterable[Defect] = ()) -> Storage:
    return choose(Storage(), STORAGE_DEFECTS, defects)


async def provision(js: JetStreamContext, where: Storage = Storage(), *, replicas: int = 1) -> None:
    """Create or update every stream, consumer and bucket (each on ``replicas`` servers). Safe to
    run on every start. The consumer takes its stream's replica count."""
    for config in stream_configs(where.kind, replicas):
        await with_deadline(TimeoutCategory.NATS_STREAM_CREATE, _add_or_update(js, config))
    await with_deadline(
        TimeoutCategory.NATS_STREAM_CREATE,
        js.add_consumer(
            INTENTS_STREAM,
            js_api.ConsumerConfig(
                durable_name=CELLS_CONSUMER,
                ack_policy=js_api.AckPolicy.EXPLICIT,
                # Redelivery of an intent whose cell died comes this long after its delivery.
                # Safe to keep short: every step a cell takes is idempotent.
                ack_wait=deadline_s(TimeoutCategory.EXECUTION_INTENT) + 1.0,
                max_ack_pending=-1,
                deliver_policy=js_api.DeliverPolicy.ALL,
            ),
        ),
    )
    for bucket in (SAFETY_BUCKET, APPROVALS_BUCKET):
        await with_deadline(
            TimeoutCategory.KV_CREATE,
            js.create_key_value(
                js_api.KeyValueConfig(bucket=bucket, history=5, storage=where.kind, direct=True,
                                     replicas=replicas)
            ),
        )


async def _add_or_update(js: JetStreamContext, config: js_api.StreamConfig) -> None:
    try:
        await js.add_stream(config)
    except BadRequestError:  # exists with another config: bring it to this one
        await js.update_stream(config)


def last_message(js: JetStreamContext, stream: str, subject: str, leader_only: bool):
    """The last message on ``subject``. A direct get may be answered by any replica, and a
    follower that has not applied the latest write answers with the value before it (NATS
    promises no read-after-write for direct gets: nats-server#6557). So on a replicated stream a
    read a decision rests on (a kill switch, an approval, a journaled decision) asks the stream
    leader (``$JS.API.STREAM.MSG.GET``): ``leader_only``."""
    return js.get_msg(stream, subject=subject, direct=not leader_only)


class KeyUnreadable(ExoError):
    """A KV key could not be read: the bucket is gone, NATS is away, or the read timed out.

    Distinct from a key that does not exist, which is a definite answer."""

    reason_code = ReasonCode.SAFETY_STATE_UNAVAILABLE


async def read_key(js: JetStreamContext, bucket: str, key: str, category: TimeoutCategory, *,
                   leader_only: bool = False) -> tuple[bytes | None, int]:
    """(value, revision) of a KV key; (None, 0) when it is absent or deleted.

    Read with a get rather than ``KeyValue.get`` because that maps *any* 404 — including a
    missing bucket — to "key not found", which would fail open. ``leader_only``: see
    ``last_message``."""
    try:
        msg = await with_deadline(category, last_message(js, f"KV_{bucket}", f"$KV.{bucket}.{key}", leader_only))
    except BadRequestError as exc:
        raise KeyUnreadable(f"{bucket}/{key}: {exc}") from None
    except nats.js.errors.NotFoundError:
        return None, 0
    except (nats.errors.Error, ExoError, asyncio.TimeoutError) as exc:
        raise KeyUnreadable(f"{bucket}/{key}: {type(exc).__name__}") from None
    operation = (msg.headers or {}).get("KV-Operation")
    if operation in ("DEL", "PURGE"):
        return None, msg.seq
    return msg.data, msg.seq
