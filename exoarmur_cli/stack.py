"""Stack control: bring up, supervise and tear down the embedded ExoArmur stack.

``LocalStack`` spawns each component as ``python -m exoarmur <name>`` in its own process group
with its own log, and can start any one of them again — NATS included, on the same store
directory. Faulting its processes (SIGKILL, restart, pause) is ``faults.process``.
"""

from __future__ import annotations

import asyncio
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import orjson
import psutil

from exoarmur import natsio, stackconfig
from exoarmur.errors import ExoError
from exoarmur.natsio import wait_for_port
from exoarmur.seams import injected
from exoarmur.stackconfig import StackConfig
from exoarmur_cli import topology
from exoarmur_cli.errors import StackError
from exoarmur_cli.procs import Child

READY_TIMEOUT_S = 30.0
PROVISION_TIMEOUT_S = 60.0  # a restarted cluster recovers its streams first
PIDS_FILE = "pids.json"


class LocalStack:
    def __init__(self, config: StackConfig, proxies: dict[str, str] | None = None, *, temporary: bool = False,
                 abandoned: threading.Event | None = None) -> None:
        self.config = config
        self.temporary = temporary  # its directory was made for it: removed when it stops
        self.dir = Path(config.stack_dir)
        self.proxies = proxies or {}  # component -> extra argv (e.g. --effector-url through a proxy)
        self.children: dict[str, Child] = {}
        self.cluster_formed_s: float | None = None  # how long the last (re)start of a cluster took to form
        # Set from another thread while ``start`` runs (a Ctrl-C cancels the task awaiting it, never
        # the thread): ``start`` stops what it started and raises at its next step.
        self._abandoned = abandoned or threading.Event()
        for name in self.component_names():
            self.children[name] = Child(name, self._argv(name), self.dir / "logs" / f"{name}.log")

    @classmethod
    def create(cls, stack_dir: Path | None = None, **generate_kwargs) -> "LocalStack":
        temporary = stack_dir is None
        stack_dir = Path(stack_dir or tempfile.mkdtemp(prefix="exoarmur-stack-"))
        return cls(stackconfig.generate(stack_dir, **generate_kwargs), temporary=temporary)

    def component_names(self) -> list[str]:
        return self.config.nats_component_names() + ["effector", "api"] + [f"cell-{i}" for i in range(self.config.cells)]

    def members(self, name: str) -> list[str]:
        """The processes a component name stands for: ``nats`` is every nats-server of a cluster."""
        if name == "nats":
            return self.config.nats_component_names()
        return [name]

    def _argv(self, name: str) -> list[str]:
        component, _, index = name.partition("-")
        argv = [sys.executable, "-m", "exoarmur", component, "--config", str(self.dir)]
        if index:
            argv += ["--id", index]
        return argv + list(self.proxies.get(component, []))

    def set_route(self, component: str, extra_argv: list[str]) -> None:
        """Route a component through a fault proxy from its next (re)start on."""
        self.proxies[component] = extra_argv
        for name, child in self.children.items():
            if name == component or name.startswith(component + "-"):
                child.argv = self._argv(name)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Start every component and wait until ready; returns seconds to ready."""
        began = time.monotonic()
        try:
            for name in ["nats", "effector", "api"] + [f"cell-{i}" for i in range(self.config.cells)]:
                self._go_on()
                self.start_component(name)
            self.wait_ready(timeout_s)
        except BaseException:
            self.stop()
            raise
        self.write_pids()
        return time.monotonic() - began

    def _go_on(self) -> None:
        if self._abandoned.is_set():
            raise StackError("the stack's start was abandoned (interrupted)")

    def start_component(self, name: str) -> None:
        """Start ``name`` (``nats``: every nats-server); NATS is provisioned on every (re)start, a
        cluster once it has formed (``topology.wait_formed``)."""
        names = self.members(name)
        for member in names:
            self.children[member].start()
        if name == "nats" or name in self.config.nats_component_names():
            for member in names:
                self._wait_port(self._client_port(member), member)
            self.cluster_formed_s = topology.wait_formed(self.config)
            self.provision()

    def _client_port(self, name: str) -> int:
        if self.config.nats_cluster is None:
            return self.config.nats_port
        return next(n.client_port for n in self.config.nats_cluster.nodes if n.name == name)

    def provision(self, timeout_s: float = PROVISION_TIMEOUT_S) -> None:
        """Create or update streams, the cells' consumer and buckets as the ``provisioner`` user, the
        one role allowed to (``python -m exoarmur provision`` does the same for docker-compose); on
        every (re)start of NATS. In a thread of its own, so it works whether or not the caller runs
        an event loop, and without a second interpreter's start-up on the cold-start path."""
        failures: list[BaseException] = []

        async def once() -> None:
            nc = await natsio.connect_as(self.config, "provisioner", "exoarmur-provision")
            try:
                await self._provision_streams(nc, timeout_s / 2)
                if self.config.nats_cluster is not None:
                    await topology.wait_stream_leaders(nc.jetstream(timeout=1.0), timeout_s / 2)
            finally:
                await nc.close()

        def work() -> None:
            try:
                asyncio.run(asyncio.wait_for(once(), timeout_s))
            except BaseException as exc:  # reported below, in the caller's thread
                failures.append(exc)

        worker = threading.Thread(target=work, name="exoarmur-provision", daemon=True)
        worker.start()
        worker.join(timeout_s + 5)
        if worker.is_alive():
            raise StackError(f"provisioning did not finish within {timeout_s:.0f}s")
        if failures:
            raise StackError(f"provisioning failed: {type(failures[0]).__name__}: {failures[0]}")

    async def _provision_streams(self, nc, timeout_s: float) -> None:
        """One provisioning; on a cluster just (re)started, streams still recovering make a create
        miss its deadline, so it is tried again until ``timeout_s`` is spent."""
        began = time.monotonic()
        while True:
            try:
                return await natsio.provision(nc.jetstream(), natsio.storage(injected(self.config.defects)),
                                              replicas=self.config.nats_replicas)
            except ExoError:
                if self.config.nats_cluster is None or time.monotonic() - began > timeout_s:
                    raise
                await asyncio.sleep(0.5)

    def _wait_port(self, port: int, name: str, timeout_s: float = 10.0) -> None:
        """Until ``name`` accepts on ``port``; a child that exited is reported at once, with the last
        lines of its log, so the reason (a port taken, a bad config) is in the error itself."""
        child = self.children[name]
        deadline = time.monotonic() + timeout_s
        while not wait_for_port(self.config.host, port, 0.5):
            self._go_on()
            if not child.alive() or time.monotonic() > deadline:
                state = "exited" if not child.alive() else f"did not open port {port} within {timeout_s:.0f}s"
                raise StackError(f"{name} {state}; {child.log_path} ends:\n{child.log_tail()}")

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        checks = {"api": f"{self.config.api_url}/readyz", "effector": f"{self.config.effector_url}/healthz"}
        pending = dict(checks)
        with httpx.Client(timeout=1.0) as client:
            while pending and time.monotonic() < deadline:
                for name, url in list(pending.items()):
                    if not self.children[name].alive():
                        raise StackError(f"{name} exited with {self.children[name].popen.returncode}; see {self.children[name].log_path}")
                    try:
                        if client.get(url).status_code == 200:
                            pending.pop(name)
                    except httpx.HTTPError:
                        pass
                if pending:
                    self._go_on()
                    time.sleep(0.05)
        if pending:
            raise StackError(f"not ready within {timeout_s:.0f}s: {', '.join(pending)}")
        for name, child in self.children.items():
            if name.startswith("cell") and not child.alive():
                raise StackError(f"{name} exited with {child.popen.returncode}; see {child.log_path}")

    def stop(self) -> None:
        # Everything that talks to NATS stops together (each drains its own work), NATS last.
        servers = self.members("nats")
        clients = [child for name, child in self.children.items() if name not in servers]
        for child in clients:
            child.request_stop()
        for child in clients:
            child.finish_stop()
        for name in servers:
            self.children[name].request_stop()
        for name in servers:
            self.children[name].finish_stop()
        (self.dir / PIDS_FILE).unlink(missing_ok=True)
        if self.temporary:
            shutil.rmtree(self.dir, ignore_errors=True)

    # --- for `stack status` / `stack down` in another process --------------------------------

    def write_pids(self) -> None:
        me = psutil.Process()
        pids = {"supervisor": {"pid": me.pid, "create_time": me.create_time()}}
        pids.update({name: {"pid": c.pid, "create_time": c.create_time} for name, c in self.children.items() if c.alive()})
        (self.dir / PIDS_FILE).write_bytes(orjson.dumps(pids))

    def __enter__(self) -> "LocalStack":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def read_pids(stack_dir: Path) -> dict[str, dict]:
    path = Path(stack_dir) / PIDS_FILE
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}


__all__ = ["LocalStack", "StackError", "read_pids"]
