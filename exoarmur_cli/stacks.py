"""The stack a run drives, behind one protocol: the embedded one, or an external one (a cluster
later). ``run`` never asks which it has; it asks the stack.

- ``EmbeddedStack`` generates a config, places a fault proxy with its wiretap between the cells
  and the effector (and, on a cluster, one on each direction of each route between its servers:
  ``faults.routes``), each set in a process of its own (``faults.proxy_server``), and starts a
  ``LocalStack``; every fault is available.
- ``ExternalStack`` is a stack someone else runs (``--nats-url``/``--api-url`` and its
  ``stack.json``): no process control and no proxy, and asking for either says so
  (``FaultError``), so the scenarios that need them are NOT RUN.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from exoarmur import stackconfig
from exoarmur.stackconfig import StackConfig
from exoarmur_cli.errors import ConfigError, FaultError
from exoarmur_cli.faults import NetworkFaults, ProcessFaults
from exoarmur_cli.faults.network import LinkProxy
from exoarmur_cli.faults.routes import RouteFaults, RouteProxies, route_pairs, with_route_proxies
from exoarmur_cli.history import History
from exoarmur_cli.stack import LocalStack

SAMPLED = ("api", "cell", "effector", "nats")  # the processes whose memory a run samples: every one


class Stack(Protocol):
    config: StackConfig
    external: bool
    nats_url: str
    api_url: str
    ready_s: float | None  # seconds from start to ready; None when the harness did not start it
    monitor_url: str | None  # nats-server monitoring, when the harness may read it
    logs_dir: Path | None  # component logs, when the harness wrote them

    async def up(self, progress: Callable[[str], None]) -> None: ...

    async def down(self) -> None: ...

    def discard(self) -> None: ...

    def sampled_pids(self) -> dict[str, int]: ...

    def nats_pids(self) -> dict[str, int | None]: ...

    def process_faults(self, what: str, history: History) -> ProcessFaults: ...

    def effector_link_faults(self, history: History) -> NetworkFaults: ...

    def route_faults(self, history: History) -> RouteFaults: ...


def _routed_through_proxies(config: StackConfig) -> StackConfig:
    """``config`` with its cluster's routes through proxy ports (``faults.routes``), saved; the
    ports are free now and none is one of the config's own (not bound yet either)."""
    taken = {config.api_port, config.effector_port, config.nats_port, config.nats_monitor_port}
    for node in config.nats_cluster.nodes:
        taken |= {node.client_port, node.monitor_port, node.route_port}
    for _attempt in range(20):
        ports = stackconfig.free_ports(len(route_pairs(config)) + 1, config.host)
        if not taken.intersection(ports):
            break
    else:
        raise ConfigError("no free ports for the route proxies apart from the stack's own")
    routed = with_route_proxies(config, ports)
    stackconfig.save(routed)
    return routed


class EmbeddedStack:
    external = False

    def __init__(self, *, seed: int, overrides: dict, defects: list[str], wiretap_path: Path | None = None,
                 nats_cluster: int = 1, scale: int = 1, cells: int = stackconfig.DEFAULT_CELLS) -> None:
        self.seed, self.overrides, self.defects, self.cells = seed, overrides, defects, cells
        self.nats_cluster = nats_cluster  # 1: one nats-server; N: a JetStream cluster of N
        self.scale = scale  # K times the seed's tenants, each with its 100 nodes and 50 peers
        self.wiretap_path = wiretap_path  # where the proxy logs the cells -> effector HTTP it sees
        self.ready_s: float | None = None
        self.local: LocalStack | None = None
        self.proxy: LinkProxy | None = None
        self.routes: RouteProxies | None = None  # on a cluster: a proxy on each direction of each route
        self.config: StackConfig | None = None
        self.stack_dir: Path | None = None  # its temp dir, from the start of ``up`` until ``discard``
        self._abandoned = threading.Event()  # set when ``up`` is cancelled: its thread starts nothing more

    async def up(self, progress: Callable[[str], None]) -> None:
        stack_dir = self.stack_dir = Path(tempfile.mkdtemp(prefix="exoarmur-run-"))
        progress(f"starting the embedded stack in {stack_dir}")
        starting = asyncio.ensure_future(asyncio.to_thread(self._start, stack_dir))
        try:
            self.ready_s = await asyncio.shield(starting)
        except BaseException:
            # Cancelled (Ctrl-C) or failed. A cancel does not stop the thread, so it is told to give
            # up and waited for: else it could start a proxy or a component after ``down``, in a
            # directory ``discard`` has removed.
            self._abandoned.set()
            await asyncio.gather(starting, return_exceptions=True)  # its error, if any, is the abandoning
            await self.down()
            raise

    def _start(self, stack_dir: Path) -> float:
        """The proxies, then the stack; seconds until the stack was ready. In a thread of its own."""
        config = stackconfig.generate(stack_dir, seed=self.seed, overrides=self.overrides, defects=self.defects,
                                      nats_cluster=self.nats_cluster, tenants=stackconfig.DEFAULT_TENANTS * self.scale,
                                      cells=self.cells)
        if config.nats_cluster is not None:
            config = _routed_through_proxies(config)
        self.config = config
        logs = Path(config.stack_dir) / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        self.proxy = LinkProxy(config.host, config.effector_port, seed=self.seed, name="cells->effector",
                               wiretap_path=self.wiretap_path, log_path=logs / "effector_proxy.log")
        self.proxy.start()
        if config.nats_cluster is not None:  # before the servers: the cluster forms through them
            self.routes = RouteProxies(config, seed=self.seed, log_path=logs / "route_proxies.log")
            self.routes.start()
        self.local = LocalStack(config, proxies={"cell": ["--effector-url", self.proxy.url()]},
                                abandoned=self._abandoned)
        return self.local.start()  # stops what it started if it fails or is abandoned

    @property
    def nats_url(self) -> str:
        return self.config.nats_url

    @property
    def api_url(self) -> str:
        return self.config.api_url

    @property
    def monitor_url(self) -> str:
        return self.config.monitor_url

    @property
    def logs_dir(self) -> Path:
        return Path(self.config.stack_dir) / "logs"

    async def down(self) -> None:
        if self.local is not None:
            await asyncio.to_thread(self.local.stop)
        if self.proxy is not None:  # its wiretap's last rows are written as it stops
            await asyncio.to_thread(self.proxy.stop)
        if self.routes is not None:  # after the servers, which dial them until they stop
            await asyncio.to_thread(self.routes.stop)

    def discard(self) -> None:
        """The store, config and logs go (a run has copied the logs into its bundle by now)."""
        if self.stack_dir is not None:
            shutil.rmtree(self.stack_dir, ignore_errors=True)
            self.stack_dir = None

    def sampled_pids(self) -> dict[str, int]:
        return {name: child.pid for name, child in self.local.children.items()
                if name.startswith(SAMPLED) and child.alive()}

    def nats_pids(self) -> dict[str, int | None]:
        """Each nats-server's pid now (None when it is not running)."""
        return {name: (child.pid if child.alive() else None) for name, child in self.local.children.items()
                if name in self.config.nats_component_names()}

    def process_faults(self, what: str, history: History) -> ProcessFaults:
        return ProcessFaults(self.local, history)

    def effector_link_faults(self, history: History) -> NetworkFaults:
        return NetworkFaults(self.proxy, history)

    def route_faults(self, history: History) -> RouteFaults:
        if self.routes is None:
            raise FaultError("no fault proxy sits on the routes between nats-servers (a single server)")
        return RouteFaults(self.routes, history)


class ExternalStack:
    external = True
    ready_s = None
    monitor_url = None
    logs_dir = None

    def __init__(self, *, nats_url: str, api_url: str, stack_config: Path | None) -> None:
        if stack_config is None:
            raise ConfigError("an external stack needs --stack-config (its stack.json: tokens, nodes)")
        self.nats_url, self.api_url = nats_url, api_url
        self.config = stackconfig.load(stack_config)

    async def up(self, progress: Callable[[str], None]) -> None:
        """Someone else runs it: nothing to start."""

    async def down(self) -> None:
        """Someone else runs it: nothing to stop."""

    def discard(self) -> None:
        """Nothing of it is the harness's to remove."""

    def sampled_pids(self) -> dict[str, int]:
        return {}

    def nats_pids(self) -> dict[str, int | None]:
        return {}

    def process_faults(self, what: str, history: History) -> ProcessFaults:
        raise FaultError(f"needs process control to {what}; an external stack gives none")

    def effector_link_faults(self, history: History) -> NetworkFaults:
        raise FaultError("no fault proxy sits between the cells and the effector")

    def route_faults(self, history: History) -> RouteFaults:
        raise FaultError("no fault proxy sits on the routes between an external stack's nats-servers")


def open_stack(*, nats_url: str | None, api_url: str | None, stack_config: Path | None, seed: int,
               overrides: dict, defects: list[str], wiretap_path: Path | None = None,
               nats_cluster: int = 1, scale: int = 1) -> Stack:
    """The stack the options name (not yet up): external when an api url is given."""
    if api_url is not None:
        return ExternalStack(nats_url=nats_url or "", api_url=api_url, stack_config=stack_config)
    return EmbeddedStack(seed=seed, overrides=overrides, defects=defects, wiretap_path=wiretap_path,
                         nats_cluster=nats_cluster, scale=scale)

