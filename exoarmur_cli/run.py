"""``exoarmur run-gates``: prepare once → bring up → drive → export → judge → finalize.

Running and judging are separate: drivers only record (raw/), checkers only read what was
recorded, and the verdict is written last. Every file lands in the bundle as the run goes, so
a crash or Ctrl-C leaves a bundle marked INCOMPLETE, never a green one.

1. prepare   gates, scenario files and the live policy tables, read once (``Plan``); the gate
             and scenario files go into raw/ as they were.
2. bring up  the stack (``stacks``: embedded, or an external one); the run parameters (policy
             view, overrides, scenario parameters, stack view) go into raw/run_params.json.
3. drive     each selected scenario (``drive``): workload and faults, all recorded.
4. export    the streams, the effector's ledger and the logs into raw/.
5. judge     ``judging.judge`` on what raw/ holds — the one path replay-verify uses too.
6. finalize  the numbered reports, 13 and PASS_FAIL.txt.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import orjson

from exoarmur import sizing, stackconfig
from exoarmur_cli import checkers, declared, definitions, environment, gates, recorded, report
from exoarmur_cli.bundle import DESIGN_TOPICS, Bundle, numbered
from exoarmur_cli.drive import Driver
from exoarmur_cli.errors import ConfigError
from exoarmur_cli.history import History, wall_ms
from exoarmur_cli.judging import judge
from exoarmur_cli.load.runner import LoadLayout
from exoarmur_cli.rundata import Policy, RunMeta, RunParams, live_policy_tables, refusal_flush_s, versions
from exoarmur_cli.scenarios import ORDER, ScenarioParams, load_scenario
from exoarmur_cli.scenarios.params import rate_scaled
from exoarmur_cli.stacks import Stack, open_stack
from exoarmur_cli.tasks import cancel_outstanding


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
    gates_dir: Path | None = None  # None: the gate files this installation ships (``definitions``)
    scenarios_dir: Path | None = None  # None: the scenario files it ships
    nats_cluster: int = 1  # the embedded stack's nats-servers: 1, or a JetStream cluster of that many
    load: LoadLayout = LoadLayout()  # where Locust's master and workers run
    scale: int = 1  # the embedded stack has K x the seed's 10 tenants (1,000 nodes, 500 peers at K=1)
    # Only these of the selected gates' scenarios (the self-test's per-defect runs); () all. A gate
    # with a scenario left out is INCOMPLETE, never GREEN.
    scenarios: tuple[str, ...] = ()
    # A ``bench --save`` file: the gates' admission numbers are sized from the rate it held
    # (``exoarmur.sizing``) instead of read from their ``[declared]`` tables. None: as declared.
    capacity_from: Path | None = None
    # False: the bundle gets no index.html (13 then records none; `exoarmur report` builds it
    # later). For runs nobody opens: the pytest self-test's, whose bundles are deleted with it.
    html_report: bool = True


@dataclass
class RunOutcome:
    bundle: Path
    results: list = field(default_factory=list)
    overall: gates.Verdict = gates.Verdict.INCOMPLETE
    durations_s: dict[str, float] = field(default_factory=dict)
    root_digest: str = ""
    metrics: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """Everything a run reads before the stack starts, read once."""

    all_gates: dict[int, gates.Gate]
    gate_ids: tuple[int, ...]  # the gates judged: those selected, or all
    scenarios: tuple[str, ...]  # in the order they run
    params: dict[str, ScenarioParams]  # scenario -> its parameters for the profile
    texts: dict[str, str]  # scenario -> its TOML text, as embedded
    expected_s: dict[str, float]  # scenario -> how long it takes at this profile (its file says)
    tables: dict  # the live policy tables
    declared: dict[str, float]  # the policy every gate file declares (``[declared]``), merged
    capacity: dict | None = None  # with ``capacity_from``: the held rate, the rule and what it sized


def selected_scenarios(all_gates: dict[int, gates.Gate], chosen: tuple[int, ...]) -> list[str]:
    wanted = {s for gid in (chosen or all_gates) for s in all_gates[gid].scenarios}
    return [name for name in ORDER if name in wanted]


def load_gates(options: RunOptions) -> dict[int, gates.Gate]:
    """The gate files, with every selected gate among them (ConfigError names an unknown one)."""
    all_gates = gates.load_gates(definitions.gates_dir(options.gates_dir))
    unknown = [g for g in options.gates if g not in all_gates]
    if unknown:
        raise ConfigError(f"no gate {unknown[0]}; gates are {sorted(all_gates)}")
    return all_gates


def prepare(options: RunOptions, all_gates: dict[int, gates.Gate] | None = None) -> Plan:
    """Read and check every gate file and every scenario file the run needs (for its profile),
    before anything starts: a bad one is a ConfigError naming the file, the key and the problem."""
    all_gates = all_gates if all_gates is not None else load_gates(options)
    chosen = options.gates or tuple(all_gates)
    for gid in chosen:
        if unknown := [s for s in all_gates[gid].scenarios if s not in ORDER]:
            raise ConfigError(f"{all_gates[gid].source_name}: scenarios: no scenario named {unknown[0]!r}; "
                              f"scenarios are {', '.join(ORDER)}")
    names = selected_scenarios(all_gates, options.gates)
    if options.scenarios:
        if unknown := [s for s in options.scenarios if s not in names]:
            raise ConfigError(f"scenario {unknown[0]!r} is not one of the selected gates' ({', '.join(names)})")
        names = [name for name in names if name in options.scenarios]
    where = definitions.scenarios_dir(options.scenarios_dir)
    loaded = {name: load_scenario(where, name, options.profile) for name in names}
    params = {n: f.params for n, f in loaded.items()}
    capacity = None
    if options.capacity_from is not None:
        all_gates, capacity = sized_gates(all_gates, options.capacity_from)
        params = {n: rate_scaled(n, p, capacity["scenario_rate_factor"]) for n, p in params.items()}
    try:
        policy = declared.merged({gid: gate.declared for gid, gate in all_gates.items()})
    except declared.DeclaredConflict as exc:
        raise ConfigError(f"gate files: {exc}") from None
    return Plan(all_gates, tuple(chosen), tuple(names), params,
                {n: f.text for n, f in loaded.items()}, {n: f.expected_s for n, f in loaded.items()},
                live_policy_tables(), policy, capacity)


RATE_GLOBAL = "rate_global_per_s"  # the declared admission rate the scenarios' rates are relative to


def sized_gates(all_gates: dict[int, gates.Gate], bench_file: Path) -> tuple[dict[int, gates.Gate], dict]:
    """Every gate with its declared admission numbers sized from the rate ``bench_file`` held, and
    the record of it (for run_params). A file that held no rate is a ConfigError naming why.

    A sized number is never above the one its gate file declares (``declared.capped_admission``):
    the scenarios' rates only ever scale down (``rate_scaled``)."""
    try:
        held = sizing.held_from_file(bench_file)
    except ValueError as exc:
        raise ConfigError(f"--capacity-from {bench_file}: {exc}") from None
    sized = sizing.size_admission(held)
    try:
        written = declared.merged({gid: gate.declared for gid, gate in all_gates.items()})
    except declared.DeclaredConflict as exc:
        raise ConfigError(f"gate files: {exc}") from None
    # only what the gate files declare reaches the run's stack (``declared.stack_overrides``)
    applied, kept = declared.capped_admission({n: v for n, v in sized.items() if n in written}, written)
    resized = {gid: replace(gate, declared={name: applied.get(name, value) for name, value in gate.declared.items()})
               for gid, gate in all_gates.items()}
    # the scenarios' rates scale as the global admission did (scenarios.params.RATE_SCALED), never up
    factor = applied[RATE_GLOBAL] / written[RATE_GLOBAL] if RATE_GLOBAL in written else 1.0
    return resized, {"file": bench_file.name, "held_per_s": held, "rule": sizing.sizing_table(), "sized": sized,
                     "applied": applied, "kept_as_declared": kept,
                     "scenario_rate_factor": round(factor, 4)}


def _keep_logs(stack: Stack, into: Path) -> None:
    logs = stack.logs_dir if stack.config is not None else None  # None: it never got as far as a config
    if logs is not None and logs.exists() and not into.exists():
        shutil.copytree(logs, into, dirs_exist_ok=True)


class Run:
    """One run of the gates. ``progress`` receives one line per step (the CLI shows them);
    ``plan``, when the caller has prepared it already (to refuse bad files before a bundle
    exists), is not read again."""

    def __init__(self, options: RunOptions, progress: Callable[[str], None], plan: Plan | None = None) -> None:
        self.options = options
        self.progress = progress
        self._plan = plan
        self.bundle = Bundle.create(options.out)
        self.bundle.write_json(f"raw/{environment.ENVIRONMENT}", environment.record())
        self.outcome = RunOutcome(self.bundle.path)
        self._meta = RunMeta(seed=options.seed, profile=options.profile, defects_injected=tuple(options.defects))

    @property
    def meta(self) -> dict:
        """What 13 records about the run so far (an interrupted run's bundle keeps it too)."""
        return self._meta.to_json()

    async def execute(self) -> RunOutcome:
        options = self.options
        plan = self._plan if self._plan is not None else prepare(options)
        self._write_inputs(plan)
        history = History(self.bundle.raw_dir / recorded.HISTORY)
        t0_wall_ms = wall_ms() - int(history.now_ms())
        stack = open_stack(nats_url=options.nats_url, api_url=options.api_url, stack_config=options.stack_config,
                           seed=options.seed, overrides=declared.stack_overrides(plan.declared),
                           defects=list(options.defects), nats_cluster=options.nats_cluster, scale=options.scale,
                           wiretap_path=self.bundle.raw_dir / recorded.WIRE)
        try:
            await stack.up(self.progress)
            # Judged by the numbers the gates declare; the stack's own (tables, overrides) are evidence.
            policy = Policy.from_tables(declared.declared_tables(plan.tables, plan.declared),
                                        {**stack.config.overrides, **declared.stack_overrides(plan.declared)})
            self._write_run_params(plan, stack, policy, t0_wall_ms)
            driver = Driver(stack, history, self.bundle.raw_dir, self.progress, load=self._load_layout(stack))
            try:
                exported = await driver.drive_and_export(
                    list(plan.scenarios), plan.params, policy, options.seed, t0_wall_ms, refusal_flush_s(plan.tables))
                self._meta = replace(self._meta, exported=exported)
            except BaseException:  # interrupted or crashed: no driver task may outlive the history
                await cancel_outstanding()
                raise
            finally:
                self.outcome.durations_s = driver.durations_s
                history.close()
                await stack.down()
        except BaseException:
            # Not exported: the components' logs are the only account of what an unfinished run did.
            _keep_logs(stack, self.bundle.raw_dir / "logs")
            raise
        finally:
            stack.discard()  # its store and config go, finished or not (its logs are in raw/ by now)
        self._judge_and_finalize(plan)
        return self.outcome

    def _load_layout(self, stack: Stack) -> LoadLayout:
        """The run's load layout, its master's port fixed now and said, when workers elsewhere dial it."""
        layout = self.options.load
        if layout.remote_workers:
            layout = replace(layout, master_port=layout.master_port or stackconfig.free_port())
            self.progress(f"the load scenario will wait for {layout.remote_workers} remote Locust worker(s): on each "
                          f"host, with a copy of {stack.config.stack_dir}/stack.json in DIR, run "
                          f"`{layout.worker_command('DIR')}`")
        return layout

    def _write_inputs(self, plan: Plan) -> None:
        """The gate and scenario files, as read."""
        for gate in plan.all_gates.values():
            self.bundle.write_text(f"raw/gates/{gate.source_name}", gate.source_text)
        for name, text in plan.texts.items():
            self.bundle.write_text(f"raw/scenarios/{name}.toml", text)
        if self.options.capacity_from is not None:  # what the admission numbers were sized from
            self.bundle.write_text(f"raw/{recorded.CAPACITY_SOURCE}", Path(self.options.capacity_from).read_text())

    def _write_run_params(self, plan: Plan, stack: Stack, policy: Policy, t0_wall_ms: int) -> None:
        """raw/run_params.json and the run's metadata, then the design documents (00, 01, 03, 05, 07)."""
        self._meta = replace(self._meta, started_wall_ms=t0_wall_ms,
                             stack_ready_s=None if stack.ready_s is None else round(stack.ready_s, 3),
                             versions=versions(), stack=stack.config.public_view(), external_stack=stack.external,
                             scenarios=plan.scenarios, gates_selected=plan.gate_ids)
        params = {name: p.to_json() for name, p in plan.params.items()}
        run_params = RunParams(t0_wall_ms=t0_wall_ms, seed=self.options.seed, profile=self.options.profile,
                               policy_tables=plan.tables,
                               overrides=dict(stack.config.overrides),  # an external stack's: as its stack.json says
                               policy=policy, scenario_params=params, node_owners=dict(stack.config.nodes),
                               peer_tenants={p.peer_id: p.tenant_id for p in stack.config.peers.values()},
                               declared={str(g.id): dict(g.declared) for g in plan.all_gates.values() if g.declared},
                               capacity=plan.capacity, stack=stack.config.public_view())
        self.bundle.write_json(f"raw/{recorded.RUN_PARAMS}", run_params.to_json())
        self.bundle.write_text(numbered("surface", "design"), report.reliability_surface_md(plan.tables))
        for topic in DESIGN_TOPICS:
            self.bundle.write_text(numbered(topic, "design"),
                                   report.design_md(topic, plan.tables, params, plan.all_gates))

    def _judge_and_finalize(self, plan: Plan) -> None:
        self.progress("judging")
        data = recorded.load(self.bundle.raw_dir)
        measured = checkers.measure(data)  # once: the verdicts and the report are both made from it
        results, metrics, evidence = judge(data, plan.all_gates, plan.gate_ids, measured)
        for topic in DESIGN_TOPICS:
            self.bundle.write_text(numbered(topic, "test_outputs"),
                                   report.test_outputs_txt(topic, results, plan.all_gates))
        stats = next((e.value.get("stats", []) for e in data.history if e.f == "load_done"), [])
        load_json, load_md = report.load_results(metrics, stats, results)
        self.bundle.write_json(numbered("load", "json"), load_json)
        self.bundle.write_text(numbered("load", "md"), load_md)
        chaos_json, chaos_md = report.chaos_results(metrics, evidence.get("chaos", {}).get("faults", []), results)
        self.bundle.write_json(numbered("chaos", "json"), chaos_json)
        self.bundle.write_text(numbered("chaos", "md"), chaos_md)
        overall = gates.overall(results)
        # Evidence is for humans: made JSON-safe (tuple keys, ints as keys) before it is stored.
        self._meta = replace(self._meta, durations_s=self.outcome.durations_s, evidence=orjson.loads(
            orjson.dumps(evidence, option=orjson.OPT_NON_STR_KEYS, default=str)))
        self.outcome.root_digest = self.bundle.finalize(self.meta, results, overall, list(self.options.defects),
                                                       measured=(data, measured), report=self.options.html_report)
        self.outcome.results, self.outcome.overall, self.outcome.metrics = results, overall, metrics
