"""A cluster's routes through fault proxies, so that a server can be cut off from the others.

NATS keeps one route (a pool of connections) per pair of servers, dialled by either side, and a
server learns of the others from the ones it is routed to. A cut holds only if every connection
of the pair passes through a proxy, whichever side dialled it: ``with_route_proxies`` gives each
node, per other node, a port of its own (``NatsNode.route_via``, which its server config then
lists as its routes), and ``RouteProxies`` listens on each of those ports and forwards to the
other node's route port: one proxy per direction of each pair. ``isolate(server)`` sets the
``down`` toxic on every proxy to or from ``server`` (its route connections are cut at once, new
ones closed as they come: ``FaultProxy.set_toxics``); ``heal(server)`` clears them.

The proxies run on an event loop in a thread of their own from before the servers start (the
cluster forms through them) until after they stop: replication (Raft heartbeats every second)
never waits for the harness's own loop, a checker or a scenario's synchronous step.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass

from exoarmur.stackconfig import StackConfig
from exoarmur_cli.errors import StackError
from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.faults.proxy import FaultProxy, Toxics
from exoarmur_cli.history import History

CONTROL_TIMEOUT_S = 10.0  # starting, stopping or setting toxics on the proxies' loop


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
    advertises, where nothing is accepted (``NatsCluster.route_advertise_port``); ``ValueError``
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
    """The route proxies of one stack, on their own event loop thread (see the module's doc)."""

    def __init__(self, config: StackConfig, *, seed: int = 0) -> None:
        self.host = config.host
        self.hops = route_hops(config)
        self.advertise_port = config.nats_cluster.route_advertise_port if config.nats_cluster else None
        self._closed_door: FaultProxy | None = None  # at the advertised address: closes what it accepts
        self.seed = seed
        self.isolated: set[str] = set()
        self._proxies: dict[RouteHop, FaultProxy] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Listen on every hop's port (the servers are not up yet: nothing is forwarded until they are)."""
        if self._thread is not None:
            raise RuntimeError("route proxies already started")
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="exoarmur-route-proxies", daemon=True)
        self._thread.start()
        try:
            self._call(self._start_all())
        except BaseException:
            self.stop()
            raise

    async def _start_all(self) -> None:
        for i, hop in enumerate(self.hops):
            proxy = FaultProxy(self.host, hop.upstream_port, listen_host=self.host, listen_port=hop.listen_port,
                               seed=self.seed + i, name=hop.name)
            await self._listen(proxy, hop.listen_port)
            self._proxies[hop] = proxy
        if self.advertise_port is not None:
            # Down from the start, never forwarding: its upstream is only a placeholder.
            door = FaultProxy(self.host, self.advertise_port, listen_host=self.host, listen_port=self.advertise_port,
                              name="route advertise (closed)")
            door.set_toxics(Toxics(down=True))
            await self._listen(door, self.advertise_port)
            self._closed_door = door

    @staticmethod
    async def _listen(proxy: FaultProxy, port: int) -> None:
        try:
            await proxy.start()
        except OSError as exc:
            raise StackError(f"{proxy.name}: cannot listen on {proxy.listen_host}:{port}: {exc.strerror}") from None

    def stop(self) -> None:
        """Close every proxy and its connections, then the loop and its thread (idempotent)."""
        loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self._stop_all(), loop).result(CONTROL_TIMEOUT_S)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(CONTROL_TIMEOUT_S)
            if not thread.is_alive():
                loop.close()
            self._proxies.clear()

    async def _stop_all(self) -> None:
        proxies = [*self._proxies.values(), *([self._closed_door] if self._closed_door else [])]
        await asyncio.gather(*(proxy.stop() for proxy in proxies), return_exceptions=True)
        self._closed_door = None

    def _call(self, coro):
        if self._loop is None:
            coro.close()
            raise RuntimeError("route proxies are not started")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(CONTROL_TIMEOUT_S)

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
        return self._set(server, Toxics(down=True), isolated=True)

    def heal(self, server: str) -> list[str]:
        """Clear the toxics on every hop of ``server`` (the servers dial again within a second)."""
        return self._set(server, Toxics(), isolated=False)

    def _set(self, server: str, toxics: Toxics, *, isolated: bool) -> list[str]:
        hops = self.hops_of(server)

        async def apply() -> None:
            for hop in hops:
                # A hop also belonging to a server still isolated stays down.
                other = hop.target if hop.source == server else hop.source
                self._proxies[hop].set_toxics(toxics if isolated or other not in self.isolated else Toxics(down=True))

        self._call(apply())
        (self.isolated.add if isolated else self.isolated.discard)(server)
        return [hop.name for hop in hops]

    def stats(self) -> dict[str, dict]:
        """Per hop, its proxy's counters (connections, active, refused, bytes each way)."""
        if self._loop is None:
            return {}

        async def read() -> dict[str, dict]:
            stats = {hop.name: asdict(proxy.stats) for hop, proxy in self._proxies.items()}
            if self._closed_door is not None:
                stats[self._closed_door.name] = asdict(self._closed_door.stats)
            return stats

        return self._call(read())


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
