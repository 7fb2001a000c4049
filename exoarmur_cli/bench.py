"""``exoarmur bench``: the stack's speed and memory figures, measured in one run on one server.

(a) pipelined durable JetStream publishes/s — the machine's ceiling;
(b) end-to-end intents/s through api → cell → effector → terminal record;
(c) p50/p99 submit-to-terminal latency at half of (b), open loop;
(d) peak RSS of api and cells under 3× (b), with the refusals that kept them bounded;
(e) the bare pipeline's intents/s: the same hops and processes with none of the safety work
    (``bench_bare``), measured as (b) is — so (b)/(e) is what the safety work costs. (b) and (e)
    alternate, ``CLOSED_LOOP_PAIRS`` times, beside each other on the same server(s), and the pair
    with the median ratio is the one reported: the machine's drift and noise fall on both sides;
(f) the admission this machine holds: open-loop p99 at rising shares of (b), the highest rate held
    within the latency bound, and the limits ``exoarmur.sizing`` sizes from it;
and, for (b) and (e), each process's CPU milliseconds per intent over the closed-loop window, and
over an open-loop window at half of (b) for both pipelines (c and e'), where nothing is batched:
the regime (c)'s p99 is measured in.
Figures are ratios within one run: the machine is shared and noisy.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field, replace

import psutil
import uvloop

from exoarmur import natsio, sizing
from exoarmur.contracts import canonical_json
from exoarmur.stackconfig import StackConfig
from exoarmur_cli import bench_cpu
from exoarmur_cli.bench_bare import RECORDS_WATCH, BarePipeline, record_subject
from exoarmur_cli.bench_drive import (
    LADDER_STEP_S, TerminalWatch, admission_ladder, audit_subject, intent_bodies, open_loop, open_loop_latency, session, submit,
    wait_arrivals,
)
from exoarmur_cli.stack import LocalStack

TARGETS = {"b_over_a_min": 0.25, "b_over_bare_min": 0.6, "p99_ms_max": 50.0, "peak_rss_mb_max": 200.0}
CLIENT = "client"  # the bench process itself, in the CPU figures


@dataclass
class Figures:
    publish_per_s: float = 0.0
    intents_per_s: float = 0.0
    half_load_per_s: float = 0.0
    p50_ms: float = 0.0
    p99_ms: float = 0.0
    half_load_completed: int = 0
    overload_offered_per_s: float = 0.0
    overload_accepted: int = 0
    overload_refused: dict[str, int] = field(default_factory=dict)
    peak_rss_mb: dict[str, float] = field(default_factory=dict)
    bare_intents_per_s: float = 0.0
    # (b)/(bare) of each alternating pair of closed loops, in the order measured (the figures above
    # are the median pair's)
    b_over_bare_pairs: list[float] = field(default_factory=list)
    nats_servers: int = 1  # 1, or the JetStream cluster's size (every stream then has that many replicas)
    # On a cluster: the ceiling (a) of one nats-server with R1 streams on this machine, measured
    # in the same bench just before the cluster starts, so (b) can be read against both.
    single_server_publish_per_s: float | None = None
    # CPU ms per intent over each closed-loop window, by process: api, cell-N, effector, nats, client
    # (for the bare pipeline, its api, cells and effector under the same names).
    cpu_ms_per_intent: dict[str, float] = field(default_factory=dict)
    bare_cpu_ms_per_intent: dict[str, float] = field(default_factory=dict)
    # The same, over the open-loop window at half of (b): ExoArmur's (c), and the bare pipeline
    # driven at that rate too (e'), with its p50/p99 there.
    open_loop_cpu_ms_per_intent: dict[str, float] = field(default_factory=dict)
    bare_open_loop_cpu_ms_per_intent: dict[str, float] = field(default_factory=dict)
    bare_open_loop_p50_ms: float | None = None
    bare_open_loop_p99_ms: float | None = None
    # What the machine gave us: cpu_model, cores, and per window steal_pct_* and others_cores_*.
    machine: dict[str, float | int | str] = field(default_factory=dict)
    # (f) open-loop steps at rising rates (rate_per_s, accepted, refused, completed, p50_ms, p99_ms)
    admission_ladder: list[dict] = field(default_factory=list)

    def held_per_s(self) -> float | None:
        """The highest rate the stack held within ``sizing.SIZING.held_p99_ms``."""
        return sizing.held_rate(self.admission_ladder)

    def sized_limits(self) -> dict[str, int] | None:
        held = self.held_per_s()
        return sizing.size_admission(held) if held else None

    def ceiling_ratios(self) -> dict[str, float]:
        """(b) as a share of each ceiling measured: this stack's, and on a cluster one server's."""
        ceilings = {"(a)": self.publish_per_s, "(a, one server)": self.single_server_publish_per_s}
        return {name: self.intents_per_s / value for name, value in ceilings.items() if value}

    def b_over_bare(self) -> float:
        return self.intents_per_s / self.bare_intents_per_s if self.bare_intents_per_s else 0.0

    def verdicts(self) -> dict[str, bool]:
        ratio = self.intents_per_s / self.publish_per_s if self.publish_per_s else 0.0
        bare = self.b_over_bare()
        return {
            f"(b)/(a) = {ratio:.3f} >= {TARGETS['b_over_a_min']}": ratio >= TARGETS["b_over_a_min"],
            f"(b)/(bare) = {bare:.3f} >= {TARGETS['b_over_bare_min']}": bare >= TARGETS["b_over_bare_min"],
            f"p99 at half load = {self.p99_ms:.1f} ms <= {TARGETS['p99_ms_max']}": 0 < self.p99_ms <= TARGETS["p99_ms_max"],
            **{
                f"peak RSS {name} = {mb:.0f} MB <= {TARGETS['peak_rss_mb_max']:.0f}": 0 < mb <= TARGETS["peak_rss_mb_max"]
                for name, mb in self.peak_rss_mb.items()
            },
        }


def figures_json(figures: Figures) -> dict:
    """What ``bench --json`` prints and ``bench --save`` writes: every figure with its unit in its
    name, the targets, and each target's verdict."""
    verdicts = figures.verdicts()
    return {"figures": asdict(figures), "ceiling_ratios": figures.ceiling_ratios(), "targets": dict(TARGETS),
            "admission": {"held_per_s": figures.held_per_s(), "sized_limits": figures.sized_limits(),
                          "sizing": sizing.sizing_table()},
            "verdicts": [{"target": line, "met": met} for line, met in verdicts.items()],
            "all_met": all(verdicts.values())}


def admission_lines(figures: Figures) -> list[str]:
    """(f): each ladder step, the held rate, and the limits sized from it (``exoarmur.sizing``)."""
    bound = sizing.SIZING.held_p99_ms
    lines = [f"(f) admission held within p99 {bound:.0f} ms (open loop, {LADDER_STEP_S:.0f} s a step):"]
    for step in figures.admission_ladder:
        p99 = "none completed" if step["p99_ms"] is None else f"p99 {step['p99_ms']:.1f} ms"
        lines.append(f"    {step['rate_per_s']:7.1f}/s: {p99}, {step['completed']}/{step['accepted']} completed,"
                     f" {step['refused']} refused")
    held, sized = figures.held_per_s(), figures.sized_limits()
    lines.append(f"    held: {'none' if held is None else f'{held:,.1f}/s'}"
                 + (f"; sized limits (stack up --size-from): {sized}" if sized else ""))
    return lines


def cpu_table(figures: Figures) -> list[str]:
    """CPU ms per intent, ExoArmur beside bare, closed loop and open loop at half of (b), one line
    per process and their total."""
    tables = (figures.cpu_ms_per_intent, figures.bare_cpu_ms_per_intent,
              figures.open_loop_cpu_ms_per_intent, figures.bare_open_loop_cpu_ms_per_intent)
    names = list(dict.fromkeys(name for table in tables for name in table))

    def cell(table: dict[str, float], name: str) -> str:
        return f"{table[name]:9.3f}" if name in table else f"{'-':>9}"

    lines = [f"    {'':<14}{'closed loop':>18}{f'open, {figures.half_load_per_s:,.0f}/s':>18}",
             f"    {'CPU ms/intent':<14}" + f"{'ExoArmur':>9}{'bare':>9}" * 2]
    lines += [f"    {name:<14}" + "".join(cell(table, name) for table in tables) for name in names]
    totals = [{"total": sum(table.values())} for table in tables]
    lines.append(f"    {'total':<14}" + "".join(cell(total, "total") for total in totals))
    return lines


@dataclass(frozen=True)
class Pipeline:
    """Where a closed loop submits (``url``/v1/intents), where each intent's record lands, and the
    processes whose CPU it is charged (by name)."""

    url: str
    record_subject: Callable[[dict], str]
    processes: dict[str, psutil.Process]
    bystanders: dict[str, psutil.Process] = field(default_factory=dict)  # ours, idle: charged to no intent


@dataclass(frozen=True)
class ClosedLoop:
    intents_per_s: float
    completed: int
    window_s: float
    cpu_ms_per_intent: dict[str, float]
    steal_pct: float
    others_cores: float


async def measure_publish_ceiling(nc, messages: int = 20000, window: int = 512, replicas: int = 1) -> float:
    js = nc.jetstream()
    from nats.js import api as js_api

    await js.add_stream(js_api.StreamConfig(name="BENCH", subjects=["bench.ceiling.>"], num_replicas=replicas,
                                            storage=js_api.StorageType.FILE))
    payload = canonical_json({"pad": "x" * 300})
    began = time.perf_counter()
    pending: list[asyncio.Future] = []
    for i in range(messages):
        pending.append(await js.publish_async(f"bench.ceiling.{i % 10}", payload))
        if len(pending) >= window:
            await asyncio.wait_for(asyncio.gather(*pending), 30)
            pending.clear()
    await asyncio.wait_for(asyncio.gather(*pending), 30)
    elapsed = time.perf_counter() - began
    await js.delete_stream("BENCH")
    return messages / elapsed


async def measure_closed_loop(pipeline: Pipeline, watch: TerminalWatch, bodies, count: int,
                              concurrency: int = 128) -> ClosedLoop:
    """(b), and (e): as fast as the pipeline goes; the clock stops when the last record lands.
    Each process's CPU time is read at both ends of that window."""
    subjects: list[str] = []
    queue = [next(bodies) for _ in range(count)]
    cpu_before, system_before = bench_cpu.process_cpu_s(pipeline.processes), bench_cpu.system_times()
    idle_before = sum(bench_cpu.process_cpu_s(pipeline.bystanders).values())
    began = time.perf_counter()
    async with session(pipeline.url, concurrency) as client:

        async def worker(chunk) -> None:
            for token, key, body in chunk:
                if await submit(client, token, body) == 202:
                    subjects.append(pipeline.record_subject(body))

        await asyncio.gather(*(worker(queue[i::concurrency]) for i in range(concurrency)))
    await wait_arrivals(watch, subjects, timeout_s=60)
    ended = time.perf_counter()
    cpu_after, system_after = bench_cpu.process_cpu_s(pipeline.processes), bench_cpu.system_times()
    idle_s = sum(bench_cpu.process_cpu_s(pipeline.bystanders).values()) - idle_before
    done = [watch.arrived[s] for s in subjects if s in watch.arrived]
    ours_s = sum(cpu_after.values()) - sum(cpu_before.values()) + idle_s
    return ClosedLoop(intents_per_s=len(done) / (max(done) - began) if done else 0.0, completed=len(done),
                      window_s=ended - began,
                      cpu_ms_per_intent=bench_cpu.per_intent_ms(cpu_before, cpu_after, len(done)),
                      steal_pct=bench_cpu.steal_pct(system_before, system_after),
                      others_cores=bench_cpu.others_cores(system_before, system_after, ours_s, ended - began))


CLOSED_LOOP_INTENTS = 6000
HALF_LOAD_S = 6.0


async def measure_open_loop(pipeline: Pipeline, watch: TerminalWatch, bodies,
                            rate_per_s: float) -> tuple[dict, dict[str, float]]:
    """(c), and (e') for the bare pipeline: open loop at ``rate_per_s`` for HALF_LOAD_S, timed as
    ``open_loop_latency`` does, and each process's CPU ms per completed intent over it (the drain
    of the last ones included)."""
    before = bench_cpu.process_cpu_s(pipeline.processes)
    step = await open_loop_latency(pipeline.url, watch, bodies, rate_per_s, HALF_LOAD_S, pipeline.record_subject)
    return step, bench_cpu.per_intent_ms(before, bench_cpu.process_cpu_s(pipeline.processes), step["completed"])


CLOSED_LOOP_PAIRS = 3  # (b), then (e), this many times: an odd count, so the median is a pair measured


@asynccontextmanager
async def bare_beside(stack: LocalStack, nats: dict[str, psutil.Process],
                      client: psutil.Process) -> AsyncIterator[tuple[Pipeline, TerminalWatch]]:
    """(e)'s pipeline beside the stack, on its nats-server(s), and a watch of its records. The
    stack's own processes idle while it is measured: ours, so not counted in ``others_cores``, but
    charged to no intent. Its processes are gone when the block ends."""
    pipeline = BarePipeline(stack.config)
    await pipeline.start()
    nc = await natsio.connect_as(stack.config, "provisioner", "exoarmur-bench-bare")
    try:
        watch = TerminalWatch(RECORDS_WATCH)
        await watch.start(nc)
        processes = {name: psutil.Process(pid) for name, pid in pipeline.pids().items()}
        idle = {name: psutil.Process(child.pid) for name, child in stack.children.items() if name not in nats}
        yield Pipeline(pipeline.url, record_subject, {**processes, **nats, CLIENT: client}, idle), watch
    finally:
        await nc.close()
        await pipeline.stop()


def pair_ratio(pair: tuple[ClosedLoop, ClosedLoop]) -> float:
    """(b)/(bare) of one pair of closed loops; 0 when the bare one completed nothing (a miss)."""
    b, bare = pair
    return b.intents_per_s / bare.intents_per_s if bare.intents_per_s else 0.0


def median_pair(pairs: list[tuple[ClosedLoop, ClosedLoop]]) -> tuple[ClosedLoop, ClosedLoop]:
    """The pair whose (b)/(bare) is the median of all the pairs' (the lower middle of an even count)."""
    return sorted(pairs, key=pair_ratio)[(len(pairs) - 1) // 2]


def machine(loop_b: ClosedLoop, loop_bare: ClosedLoop) -> dict[str, float | int | str]:
    return {"cpu_model": bench_cpu.cpu_model(), "cores": bench_cpu.cores(),
            "steal_pct_b": round(loop_b.steal_pct, 2), "steal_pct_bare": round(loop_bare.steal_pct, 2),
            "others_cores_b": round(loop_b.others_cores, 3), "others_cores_bare": round(loop_bare.others_cores, 3)}


async def run_bench(stack: LocalStack) -> Figures:
    config = stack.config
    figures = Figures()
    # The raw ceiling on a scratch stream (the provisioner's ``bench.>``), then as the harness.
    figures.nats_servers = len(config.nats_component_names())
    figures.publish_per_s = await publish_ceiling(config)
    nc = await natsio.connect_as(config, "harness", "exoarmur-bench")
    try:
        watch = TerminalWatch()
        await watch.start(nc)
        bodies = intent_bodies(config)
        nats = {name: psutil.Process(stack.children[name].pid) for name in config.nats_component_names()}
        client = psutil.Process()
        exo = Pipeline(config.api_url, audit_subject,
                       {**{name: psutil.Process(child.pid) for name, child in stack.children.items()},
                        CLIENT: client})
        await measure_closed_loop(exo, watch, bodies, 300)  # warm-up: connections, caches
        async with bare_beside(stack, nats, client) as (bare, bare_watch):
            # The bare pipeline's own processes idle while (b) is measured, as the stack's do for (e).
            ours = {proc.pid for proc in exo.processes.values()}
            exo = replace(exo, bystanders={f"bare {name}": proc for name, proc in bare.processes.items()
                                           if proc.pid not in ours})
            await measure_closed_loop(bare, bare_watch, bodies, 300)  # warm-up, as for (b)
            pairs = []
            for _ in range(CLOSED_LOOP_PAIRS):
                pairs.append((await measure_closed_loop(exo, watch, bodies, CLOSED_LOOP_INTENTS),
                              await measure_closed_loop(bare, bare_watch, bodies, CLOSED_LOOP_INTENTS)))
            figures.b_over_bare_pairs = [round(pair_ratio(pair), 3) for pair in pairs]
            loop_b, loop_bare = median_pair(pairs)
            figures.intents_per_s, figures.cpu_ms_per_intent = loop_b.intents_per_s, loop_b.cpu_ms_per_intent
            figures.half_load_per_s = figures.intents_per_s / 2
            figures.bare_intents_per_s, figures.bare_cpu_ms_per_intent = (loop_bare.intents_per_s,
                                                                          loop_bare.cpu_ms_per_intent)
            bare_open, figures.bare_open_loop_cpu_ms_per_intent = await measure_open_loop(
                bare, bare_watch, bodies, figures.half_load_per_s)
            figures.bare_open_loop_p50_ms, figures.bare_open_loop_p99_ms = bare_open["p50_ms"], bare_open["p99_ms"]
        figures.machine = machine(loop_b, loop_bare)

        half, figures.open_loop_cpu_ms_per_intent = await measure_open_loop(exo, watch, bodies, figures.half_load_per_s)
        figures.half_load_completed, figures.p50_ms, figures.p99_ms = half["completed"], half["p50_ms"], half["p99_ms"]
        figures.admission_ladder = await admission_ladder(config, watch, bodies, figures.intents_per_s)

        figures.overload_offered_per_s = figures.intents_per_s * 3
        processes = {name: psutil.Process(child.pid) for name, child in stack.children.items()
                     if name == "api" or name.startswith("cell")}
        peaks = {name: 0 for name in processes}
        stop = asyncio.Event()

        async def sample() -> None:
            while not stop.is_set():
                for name, proc in processes.items():
                    try:
                        peaks[name] = max(peaks[name], proc.memory_info().rss)
                    except psutil.Error:
                        pass
                await asyncio.sleep(0.1)

        def record_over(body, sent, status) -> None:
            if status == 202:
                figures.overload_accepted += 1
            else:
                figures.overload_refused[str(-status)] = figures.overload_refused.get(str(-status), 0) + 1

        sampler = asyncio.create_task(sample())
        await open_loop(config.api_url, bodies, figures.overload_offered_per_s, 5.0, record_over)
        await asyncio.sleep(2.0)  # the backlog drains; memory must not keep growing
        stop.set()
        await sampler
        figures.peak_rss_mb = {name: rss / 2**20 for name, rss in peaks.items()}
    finally:
        await nc.close()
    return figures


async def publish_ceiling(config: StackConfig) -> float:
    """(a): pipelined durable publishes/s to a scratch stream (the provisioner's ``bench.>``) with as
    many replicas as the stack's own streams."""
    admin = await natsio.connect_as(config, "provisioner", "exoarmur-bench-ceiling")
    try:
        return await measure_publish_ceiling(admin, replicas=config.nats_replicas)
    finally:
        await admin.close()


def single_server_ceiling() -> float:
    """(a) of one nats-server on this machine, started for this alone and stopped after."""
    single = LocalStack.create(tenants=1, nodes_per_tenant=1, peers_per_tenant=1)
    try:
        single.start_component("nats")
        return uvloop.run(publish_ceiling(single.config))
    finally:
        single.stop()


def bench(nats_cluster: int = 1) -> Figures:
    """Every figure on a fresh embedded stack; ``nats_cluster`` > 1 runs it on a JetStream cluster of
    that many servers, after measuring one server's ceiling for comparison."""
    single = single_server_ceiling() if nats_cluster > 1 else None
    stack = LocalStack.create(nats_cluster=nats_cluster)
    with stack:
        figures = uvloop.run(run_bench(stack))
    figures.single_server_publish_per_s = single
    return figures
