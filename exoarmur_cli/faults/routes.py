"""A cluster's routes through fault proxies, so that a server can be cut off from the others.

NATS keeps one route (a pool of connections) per pair of servers, dialled by either side, and a
server learns of the others from the ones it is routed to. A cut holds only if every connection
of the pair passes through a proxy, whichever side dialled it: ``with_route_proxies`` gives each
node, per other node, a port of its own (``NatsNode.route_via``, which its server config then
lists as its routes), and ``RouteProxies`` listens on each of those ports and forwards to the
other node's route port: one proxy per direction of each pair. ``isolate(server)`` sets the
``down`` toxic on every proxy to or from ``server`` (its route connections are cut at once, new
ones closed as they come: ``FaultProxy.set_toxics``); ``heal(server)`` clears them.

The proxies run in a process of their own (``proxy_server``) from before the servers start (the
cluster forms through them) until after they stop: replication (Raft heartbeats every second)
never waits for the harness, and the harness's clock never waits for replication.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from exoarmur.stackconfig import StackConfig
from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.faults.proxy_process import ProxyProcess
from exoarmur_cli.history import History


@dataclass(frozen=True)
class RouteHop:
    """One direction of one pair: ``source`` dials ``listen_port``, forwarded to ``target``'s route port."""

    source: str
    target: str
    listen_port: int
    upstream_port: int

    @property
    def name(self) -> str:
        return f"route {self.source}->{self.target}"


def route_pairs(config: StackConfig) -> list[tuple[str, str]]:
    """(source, target) for each direction of each pair of the cluster's nodes, in the nodes' order."""
    names = config.nats_component_names() if config.nats_cluster is not None else []
    return [(source, target) for source in names for target in names if target != source]


def with_route_proxies(config: StackConfig, ports: list[int]) -> StackConfig:
    """``config`` with each node routed through its own proxy port per other node, taken from
    ``ports`` in ``route_pairs`` order, and the last of ``ports`` as the address every server
    advertises, where nothing is ever answered (``NatsCluster.route_advertise_port``); ``ValueError``
    unless there are exactly that many, distinct."""
    pairs = route_pairs(config)
    if not pairs or len(ports) != len(pairs) + 1 or len(set(ports)) != len(ports):
        raise ValueError(f"a cluster and {len(pairs) + 1} distinct ports are needed for the route proxies, "
                         f"not {ports}")
    via: dict[str, dict[str, int]] = {}
    for (source, target), port in zip(pairs, ports):
        via.setdefault(source, {})[target] = port
    nodes = [node.model_copy(update={"route_via": via[node.name]}) for node in config.nats_cluster.nodes]
    cluster = config.nats_cluster.model_copy(update={"nodes": nodes, "route_advertise_port": ports[-1]})
    return StackConfig.model_validate({**config.model_dump(), "nats_cluster": cluster.model_dump()})


def route_hops(config: StackConfig) -> list[RouteHop]:
    """The proxies a config's ``route_via`` calls for (none when its nodes route directly)."""
    if config.nats_cluster is None:
        return []
    route_ports = {node.name: node.route_port for node in config.nats_cluster.nodes}
    return [RouteHop(node.name, target, port, route_ports[target])
            for node in config.nats_cluster.nodes for target, port in (node.route_via or {}).items()]


class RouteProxies:
    """The route proxies of one stack, in a process of their own (``proxy_server``, which says why)."""

    def __init__(self, config: StackConfig, *, seed: int = 0, log_path: Path | None = None) -> None:
        self.host = config.host
        self.hops = route_hops(config)
        self.advertise_port = config.nats_cluster.route_advertise_port if config.nats_cluster else None
        self.seed = seed
        self.isolated: set[str] = set()
        self._process = ProxyProcess("the route proxies' process", log_path)

    def start(self) -> None:
        """Listen on every hop's port (the servers are not up yet: nothing is forwarded until they are)."""
        self._process.start({"host": self.host, "seed": self.seed, "advertise_port": self.advertise_port,
                             "hops": [{"name": hop.name, "listen_port": hop.listen_port,
                                       "upstream_port": hop.upstream_port} for hop in self.hops]})

    def stop(self) -> None:
        """Close every proxy and its connections, and reap the process (idempotent)."""
        self._process.stop()

    def hops_of(self, server: str) -> list[RouteHop]:
        """Every hop to or from ``server``; ``ValueError`` when it has none (not a routed node)."""
        hops = [hop for hop in self.hops if server in (hop.source, hop.target)]
        if not hops:
            raise ValueError(f"no route proxies for {server!r}; routed nodes are "
                             f"{sorted({hop.source for hop in self.hops})}")
        return hops

    def isolate(self, server: str) -> list[str]:
        """Cut ``server`` off from every other (its hops go ``down``); returns the hops cut. When this
        returns, its route connections are closed and any new one is closed as it comes."""
        return self._set(server, isolated=True)

    def heal(self, server: str) -> list[str]:
        """Clear the toxics on every hop of ``server`` (the servers dial again within a second)."""
        return self._set(server, isolated=False)

    def _set(self, server: str, *, isolated: bool) -> list[str]:
        hops = self.hops_of(server)
        # A hop also belonging to a server still isolated stays down.
        down = {hop.name: isolated or (hop.target if hop.source == server else hop.source) in self.isolated
                for hop in hops}
        self._process.request({"op": "set", "down": down})
        (self.isolated.add if isolated else self.isolated.discard)(server)
        return [hop.name for hop in hops]

    def stats(self) -> dict[str, dict]:
        """Per hop, its proxy's counters (connections, active, refused, bytes each way) and whether
        it is ``down``."""
        if not self._process.running:
            return {}
        return self._process.request({"op": "stats"})["stats"]


class RouteFaults:
    """The route faults a scenario applies, each recorded as a nemesis event (``route_cut`` before
    the cut, ``route_heal`` after the heal)."""

    def __init__(self, proxies: RouteProxies, history: History | None = None) -> None:
        self.proxies = proxies
        self.history = history

    def isolate(self, server: str) -> list[str]:
        record(self.history, "route_cut", target=server, hops=[hop.name for hop in self.proxies.hops_of(server)])
        return self.proxies.isolate(server)

    def heal(self, server: str) -> list[str]:
        hops = self.proxies.heal(server)
        record(self.history, "route_heal", target=server, hops=hops)
        return hops
