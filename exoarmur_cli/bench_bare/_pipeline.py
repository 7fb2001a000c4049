"""``BarePipeline``: start the bare api, effector and cells beside a running stack, on its NATS.

Each is a ``procs.Child`` (its own process group, reaped at exit, on Ctrl-C and on error), with a
free port of its own and its log beside the stack's (``logs/bare-*.log``)."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import aiohttp

from exoarmur import natsio
from exoarmur.stackconfig import StackConfig, free_port
from exoarmur_cli.bench_bare import _wire
from exoarmur_cli.errors import StackError
from exoarmur_cli.procs import Child

READY_TIMEOUT_S = 30.0


class BarePipeline:
    """The bare processes, named like the stack's (``api``, ``effector``, ``cell-N``) so their
    figures sit side by side; ``url`` is where the bare api takes intents."""

    def __init__(self, config: StackConfig, cells: int | None = None) -> None:
        self.config = config
        self.api_port, self.effector_port = free_port(config.host), free_port(config.host)
        self.url = f"http://{config.host}:{self.api_port}"
        self.effector_url = f"http://{config.host}:{self.effector_port}"
        logs = Path(config.stack_dir) / "logs"
        base = [sys.executable, "-m", "exoarmur_cli.bench_bare"]
        where = ["--config", str(config.stack_dir)]
        self.children = {
            "api": Child("bare-api", base + ["api", *where, "--port", str(self.api_port)], logs / "bare-api.log"),
            "effector": Child("bare-effector", base + ["effector", *where, "--port", str(self.effector_port)],
                              logs / "bare-effector.log"),
        }
        for i in range(config.cells if cells is None else cells):
            self.children[f"cell-{i}"] = Child(f"bare-cell-{i}", base + ["cell", *where, "--id", str(i),
                                                                         "--effector-url", self.effector_url],
                                               logs / f"bare-cell-{i}.log")

    def pids(self) -> dict[str, int]:
        return {name: child.pid for name, child in self.children.items()}

    async def start(self) -> None:
        """Empty streams and the consumer, then every process, ready to take intents."""
        try:
            await self._with_js(lambda js: _wire.provision(js, self.config.nats_replicas))
            for child in self.children.values():
                child.start()
            await self._wait_ready()
        except BaseException:
            await self.stop()
            raise

    async def stop(self) -> None:
        """Stop every process (SIGTERM, then SIGKILL after the grace), then delete the streams."""
        for child in self.children.values():
            child.request_stop()
        await asyncio.to_thread(lambda: [child.finish_stop() for child in self.children.values()])
        try:
            await self._with_js(_wire.remove)
        except Exception:  # NATS gone: the stack's directory, and its store, goes with it
            pass

    async def _with_js(self, work) -> None:
        nc = await natsio.connect_as(self.config, _wire.ROLE, "exoarmur-bench-bare-provision")
        try:
            await work(nc.jetstream())
        finally:
            await nc.close()

    async def _wait_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        pending = {"api": f"{self.url}/healthz", "effector": f"{self.effector_url}/healthz"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as http:
            while pending and time.monotonic() < deadline:
                for name, url in list(pending.items()):
                    try:
                        async with http.get(url) as response:
                            if response.status == 200:
                                pending.pop(name)
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        pass
                self._check_alive()
                if pending:
                    await asyncio.sleep(0.05)
        if pending:
            raise StackError(f"bare pipeline not ready within {READY_TIMEOUT_S:.0f}s: {', '.join(pending)}")
        await self._wait_cells_bound(deadline)

    async def _wait_cells_bound(self, deadline: float) -> None:
        """Ready when every bare cell has bound its pull subscription (it shows as a waiting pull)."""
        cells = sum(1 for name in self.children if name.startswith("cell"))
        nc = await natsio.connect_as(self.config, _wire.ROLE, "exoarmur-bench-bare-ready")
        try:
            js = nc.jetstream()
            while time.monotonic() < deadline:
                self._check_alive()
                info = await js.consumer_info(_wire.STREAM, _wire.CONSUMER)
                if (info.num_waiting or 0) >= cells:
                    return
                await asyncio.sleep(0.05)
        finally:
            await nc.close()
        raise StackError(f"bare cells did not start pulling within {READY_TIMEOUT_S:.0f}s")

    def _check_alive(self) -> None:
        for name, child in self.children.items():
            if not child.alive():
                raise StackError(f"bare {name} exited with {child.popen.returncode}; see {child.log_path}")
