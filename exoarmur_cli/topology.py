"""The NATS topology of a stack: which servers there are, how each stream is replicated, and
which server leads it.

``wait_formed`` is the bounded wait after a cluster's servers start: every server routed to every
other and agreeing on a JetStream meta leader, read from each server's monitoring port (``/routez``,
``/jsz``). ``snapshot`` is what a run records in ``raw/nats_topology.json``, at its start and end.
"""

from __future__ import annotations

import asyncio
import time

import httpx

from exoarmur import natsio
from exoarmur.contracts import ReasonCode
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.errors import StackError

FORM_TIMEOUT_S = 30.0
TOPOLOGY = "nats_topology.json"  # under raw/
STREAMS = (natsio.INTENTS_STREAM, natsio.AUDIT_STREAM, natsio.EVENTS_STREAM, natsio.JOURNAL_STREAM,
           f"KV_{natsio.SAFETY_BUCKET}", f"KV_{natsio.APPROVALS_BUCKET}")


def _cluster_state(config: StackConfig, client: httpx.Client) -> dict[str, dict]:
    """Per node: routes it has, the meta leader it sees (or why it could not be read)."""
    state = {}
    for node in config.nats_cluster.nodes:
        base = f"http://{config.host}:{node.monitor_port}"
        try:
            routes = client.get(f"{base}/routez").json().get("num_routes", 0)
            meta = client.get(f"{base}/jsz").json().get("meta_cluster") or {}
            state[node.name] = {"routes": routes, "meta_leader": meta.get("leader") or ""}
        except (httpx.HTTPError, ValueError) as exc:
            state[node.name] = {"error": type(exc).__name__}
    return state


def wait_formed(config: StackConfig, timeout_s: float = FORM_TIMEOUT_S) -> float:
    """Wait until every node routes to every other and all see the same meta leader; returns the
    seconds it took. ``StackError`` (``NATS_CLUSTER_UNFORMED``) with each node's state if not."""
    if config.nats_cluster is None:
        return 0.0
    began = time.monotonic()
    want_routes = len(config.nats_cluster.nodes) - 1
    state: dict[str, dict] = {}
    with httpx.Client(timeout=1.0) as client:
        while time.monotonic() - began < timeout_s:
            state = _cluster_state(config, client)
            leaders = {s.get("meta_leader") for s in state.values()}
            if (all(s.get("routes", 0) >= want_routes for s in state.values())
                    and len(leaders) == 1 and "" not in leaders and None not in leaders):
                return time.monotonic() - began
            time.sleep(0.1)
    raise StackError(f"the NATS cluster did not form within {timeout_s:.0f}s: {state}",
                     ReasonCode.NATS_CLUSTER_UNFORMED)


async def stream_leaders(js, streams: tuple[str, ...] = STREAMS) -> dict[str, dict]:
    """Per stream: its replica count, the server leading it and its replicas (name, current, lag).
    A stream whose info cannot be read says why instead."""
    out = {}
    for name in streams:
        try:
            info = await js.stream_info(name)
        except Exception as exc:  # recorded, never fatal: the topology is evidence, not a gate
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        cluster = info.cluster
        out[name] = {
            "num_replicas": info.config.num_replicas or 1,
            "leader": cluster.leader if cluster else None,
            "replicas": [{"name": r.name, "current": r.current, "lag": r.lag}
                         for r in (cluster.replicas or [])] if cluster else [],
            "messages": info.state.messages,
        }
    return out


async def _consumer_leader(js) -> dict:
    try:
        info = await js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER)
    except Exception as exc:  # no leader yet, or the server asked is away: asked again
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"leader": info.cluster.leader if info.cluster else None}


async def wait_stream_leaders(js, timeout_s: float = FORM_TIMEOUT_S, streams: tuple[str, ...] = STREAMS) -> float:
    """After a cluster's (re)start and provisioning: wait until every stream (and the cells'
    consumer) has a leader (a meta
    leader alone still answers "no responders" for a stream that has none yet); returns seconds.
    ``StackError`` (``NATS_CLUSTER_UNFORMED``) naming the leaderless streams if not."""
    began = time.monotonic()
    leaders: dict[str, dict] = {}
    while time.monotonic() - began < timeout_s:
        leaders = await stream_leaders(js, streams)
        leaders["consumer INTENTS/cells"] = await _consumer_leader(js)
        if all(v.get("leader") for v in leaders.values()):
            return time.monotonic() - began
        await asyncio.sleep(0.1)
    missing = {k: v.get("error", "no leader") for k, v in leaders.items() if not v.get("leader")}
    raise StackError(f"streams without a leader after {timeout_s:.0f}s: {missing}", ReasonCode.NATS_CLUSTER_UNFORMED)


def servers(config: StackConfig, pids: dict[str, int | None]) -> list[dict]:
    """The stack's nats-servers: name (its ``server_name``, which stream leaders are reported by),
    component, client/monitor/route ports and pid (None when not running)."""
    if config.nats_cluster is None:
        return [{"name": f"exoarmur_{config.nats_port}", "component": "nats", "client_port": config.nats_port, "monitor_port": config.nats_monitor_port,
                 "route_port": None, "pid": pids.get("nats")}]
    return [{"name": n.name, "component": n.name, "client_port": n.client_port, "monitor_port": n.monitor_port,
             "route_port": n.route_port, "pid": pids.get(n.name)} for n in config.nats_cluster.nodes]
