"""The ``exoarmur`` command: parse, build a config, call the library, map the result to an exit code.

Exit codes: 0 all green · 1 a gate red · 2 usage/config error · 3 stack unavailable · 130 interrupted.
The ``stack`` commands are in ``stack_commands``; what all commands share in ``cli_common``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import orjson
import typer
from rich.markup import escape

from exoarmur_cli import definitions
from exoarmur_cli.cli_common import (
    EXIT_INTERRUPTED, EXIT_OK, EXIT_RED, EXIT_STACK, EXIT_USAGE, GATES_DIR_HELP, KNOWN_ERRORS, PROFILE_METAVAR,
    SCENARIOS_DIR_HELP, console, exit_code_for, fail, kept_as_declared_said, measured_capacity, usage_error,
)
from exoarmur_cli.errors import StackError
from exoarmur_cli.procs import reap_all
from exoarmur_cli.stack_commands import stack_app

app = typer.Typer(add_completion=False, no_args_is_help=True, help="ExoArmur reality-run harness.")
app.add_typer(stack_app, name="stack")


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import version

        print(f"exoarmur {version('exoarmur')}")
        raise typer.Exit(EXIT_OK)


@app.callback()
def _options(version: bool = typer.Option(False, "--version", is_eager=True, callback=_print_version,
                                          help="print the installed exoarmur version and exit")) -> None:
    """ExoArmur reality-run harness."""


@app.command("policy")
def policy(as_json: bool = typer.Option(False, "--json", help="print the tables as JSON on stdout")) -> None:
    """Print every policy table (timeouts, retries, limits, breakers, bounds)."""
    from exoarmur.__main__ import main as component_main

    raise typer.Exit(component_main(["policy"] + (["--json"] if as_json else [])))


@app.command("bench")
def bench_command(
    as_json: bool = typer.Option(False, "--json", help="print the figures, targets and verdicts as JSON"),
    save: Path = typer.Option(None, "--save", help="also write that JSON to this file"),
    nats_cluster: int = typer.Option(1, "--nats-cluster", min=1, max=5,
                                     help="on a JetStream cluster of N (RN streams); also measures one server's "
                                          "ceiling, for comparison"),
) -> None:
    """Measure publish ceiling, end-to-end throughput, latency at half load, RSS under 3× overload,
    the bare pipeline's throughput, and CPU ms per intent for each process."""
    from exoarmur_cli.bench import admission_lines, bench, cpu_table, figures_json

    try:
        figures = bench(nats_cluster)
    except KNOWN_ERRORS as exc:
        fail(exc, exit_code_for(exc))
    document = orjson.dumps(figures_json(figures), option=orjson.OPT_INDENT_2).decode()
    if save is not None:
        try:
            save.write_text(document + "\n")
        except OSError as exc:
            usage_error(f"--save {save}: {exc.strerror or exc}")
    if as_json:
        print(document)
        return
    print(f"(a) pipelined durable JetStream publishes/s : {figures.publish_per_s:,.0f}"
          + (f"  (R{figures.nats_servers} on {figures.nats_servers} servers)" if figures.nats_servers > 1 else ""))
    if figures.single_server_publish_per_s:
        print(f"    one server, R1, same machine            : {figures.single_server_publish_per_s:,.0f}")
    print(f"(b) end-to-end intents/s                    : {figures.intents_per_s:,.0f}"
          + "".join(f"  ((b)/{name} {ratio:.3f})" for name, ratio in figures.ceiling_ratios().items()))
    print(f"(c) at {figures.half_load_per_s:,.0f}/s ({figures.half_load_completed} intents): p50 {figures.p50_ms:.1f} ms, p99 {figures.p99_ms:.1f} ms")
    print(f"(d) at {figures.overload_offered_per_s:,.0f}/s offered: {figures.overload_accepted} accepted, refused by status {figures.overload_refused}")
    for name, mb in figures.peak_rss_mb.items():
        print(f"    peak RSS {name}: {mb:.0f} MB")
    print(f"(e) bare pipeline intents/s                 : {figures.bare_intents_per_s:,.0f}  ((b)/(bare) {figures.b_over_bare():.3f},"
          f" the median of {', '.join(f'{r:.3f}' for r in figures.b_over_bare_pairs)})")
    if figures.bare_open_loop_p99_ms is not None:
        print(f"(e') bare at {figures.half_load_per_s:,.0f}/s, open loop    : p50 {figures.bare_open_loop_p50_ms:.1f} ms, "
              f"p99 {figures.bare_open_loop_p99_ms:.1f} ms")
    for line in cpu_table(figures):
        print(line)
    print("    machine: " + ", ".join(f"{k} {v}" for k, v in figures.machine.items()))
    for line in admission_lines(figures):
        print(line)
    for line, ok in figures.verdicts().items():
        print(f"  {'MET ' if ok else 'MISS'} {line}")


def step_summary(bundle: Path) -> None:
    """Append the run's markdown summary to $GITHUB_STEP_SUMMARY when CI sets it (else nothing)."""
    from exoarmur_cli.bundle import BundleError, read_final
    from exoarmur_cli.ci_summary import ENV_VAR, append_step_summary, summary_md

    try:
        append_step_summary(summary_md(read_final(bundle), bundle))
    except (BundleError, OSError) as exc:  # the summary is a courtesy: it never changes the run's outcome
        console.print(f"[yellow]warning[/yellow] ${ENV_VAR} not written: {exc}", soft_wrap=True)


@app.command("run-gates")
def run_gates_command(
    gate: list[int] = typer.Option([], "--gate", help="run only this gate's scenarios (repeatable)"),
    profile: str = typer.Option("full", "--profile", metavar=PROFILE_METAVAR,
                                help="scenario sizes: quick (~85 s) or full (~3 min)"),
    seed: int = typer.Option(0, "--seed", help="seed of every random choice the run makes"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="bundles land in OUT/reality_run_NNN"),
    nats_url: str = typer.Option(None, "--nats-url", help="external stack: its NATS"),
    api_url: str = typer.Option(None, "--api-url", help="external stack: its api"),
    stack_config: Path = typer.Option(None, "--stack-config", help="external stack: its stack.json (tokens)"),
    junit: Path = typer.Option(None, "--junit-xml", help="also write the criteria as JUnit XML"),
    as_json: bool = typer.Option(False, "--json", help="print the result as JSON on stdout"),
    nats_cluster: int = typer.Option(1, "--nats-cluster", min=1, max=5,
                                     help="embedded stack: 1 nats-server, or a JetStream cluster of N (RN streams)"),
    load_workers: int = typer.Option(None, "--load-workers", min=0, max=64, show_default="one per CPU",
                                     help="Locust's distributed mode: a master and N workers (0: one Locust "
                                          "process); N must divide the stack's peers evenly"),
    load_remote_workers: int = typer.Option(0, "--load-remote-workers", min=0, max=256,
                                            help="also wait for N Locust workers started on other hosts with "
                                                 "`exoarmur load-worker` (the run prints the command)"),
    load_master: str = typer.Option("127.0.0.1", "--load-master", metavar="HOST[:PORT]",
                                    help="where the Locust master listens for remote workers (default port: a free one)"),
    scale: int = typer.Option(1, "--scale", min=1, max=20,
                              help="embedded stack: K times the seed's tenants, nodes and peers (K=1: 10, 1,000, 500)"),
    inject_defect: list[str] = typer.Option([], "--inject-defect",
                                            help="run against a stack with this deliberate defect (repeatable)"),
    gates_dir: Path = typer.Option(None, "--gates-dir", help=GATES_DIR_HELP),
    scenarios_dir: Path = typer.Option(None, "--scenarios-dir", help=SCENARIOS_DIR_HELP),
    capacity_from: Path = typer.Option(None, "--capacity-from",
                                       help="size the gates' admission numbers from the rate a `bench --save` "
                                            "file held (exoarmur/sizing.py), instead of their [declared] tables"),
    measure_capacity: bool = typer.Option(None, "--measure-capacity/--no-measure-capacity",
                                          help="size them from this machine's capacity, measured first on a stack "
                                               "of the run's shape (kept for a day in ~/.cache/exoarmur), never "
                                               "above their [declared] tables; default: on for an embedded stack"),
) -> None:
    """Start the stack, run every scenario, judge gates 1-8, write the evidence bundle."""
    from exoarmur_cli.run import RunOptions

    options = RunOptions(gates=tuple(gate), profile=profile, seed=seed, out=out, nats_url=nats_url,
                         api_url=api_url, stack_config=stack_config, defects=tuple(inject_defect),
                         gates_dir=gates_dir, scenarios_dir=scenarios_dir, nats_cluster=nats_cluster,
                         load=_load_layout(load_workers, load_remote_workers, load_master), scale=scale,
                         capacity_from=capacity_from)
    measure = _capacity_to_measure(options, measure_capacity)
    options = _with_the_stacks_capacity(options, measure_capacity)
    plan = _checked_run_inputs(options)  # every usage mistake first, not after a minute's measuring
    if measure:
        options = _with_measured_capacity(options)
        plan = _checked_run_inputs(options)
    if plan.capacity is not None:
        capacity = plan.capacity
        console.print(f"admission sized from {options.capacity_from} (held {capacity['held_per_s']:,.1f}/s): "
                      f"{capacity['applied']}{kept_as_declared_said(capacity['kept_as_declared'])}; "
                      f"scenario rates x{capacity['scenario_rate_factor']}", soft_wrap=True)
    if inject_defect:
        console.print(f"[bold red]DEFECTS INJECTED: {', '.join(inject_defect)} — this is not a clean run[/bold red]")
    began = time.monotonic()
    outcome = _execute_run(options, plan, began)
    _show_outcome(outcome, began, junit, as_json)


def _load_layout(workers: int | None, remote_workers: int, master: str):
    from exoarmur_cli.load.runner import LoadLayout

    host, _, port = master.partition(":")
    if not host or (port and not (port.isdigit() and 0 < int(port) < 65536)):
        usage_error(f"--load-master must be HOST or HOST:PORT, not {master!r}")
    return LoadLayout(workers, remote_workers, host, int(port or 0))


def _capacity_to_measure(options, measure: bool | None) -> bool:
    """Whether to size the run from this machine's measured capacity (``--measure-capacity``): by
    default on an embedded stack, so a machine that holds less than the gate files' rates is offered
    what it holds (never more than the files say). The measurement is of a clean stack, so a defect
    run is sized as a clean one would be."""
    embedded = options.api_url is None and options.nats_url is None
    if measure is None:
        return embedded and options.capacity_from is None
    if measure and options.capacity_from is not None:
        usage_error("--measure-capacity measures what --capacity-from reads from a file: give one of them")
    if measure and not embedded:
        usage_error("--measure-capacity measures an embedded stack; size an external one with --capacity-from")
    return measure


def _with_the_stacks_capacity(options, measure: bool | None):
    """Against an external stack that `stack up` sized (its directory holds what it was sized
    from), the gates are sized from the same document, unless --capacity-from names another or
    --no-measure-capacity asks for the declared numbers: its limits are then the ones they judge
    by, not drift."""
    from dataclasses import replace

    from exoarmur_cli.recorded import CAPACITY_SOURCE

    external = options.api_url is not None
    if not external or options.stack_config is None or options.capacity_from is not None or measure is False:
        return options
    stack_dir = options.stack_config if options.stack_config.is_dir() else options.stack_config.parent
    source = stack_dir / CAPACITY_SOURCE
    if not source.is_file():
        return options
    console.print(f"the stack's limits were sized from {source}: the gates are sized the same way", soft_wrap=True)
    return replace(options, capacity_from=source)


def _with_measured_capacity(options):
    """The options with ``capacity_from`` this machine's measured capacity file (kept, or measured
    now); unchanged when the measurement held no rate (the declared numbers then apply)."""
    from dataclasses import replace

    path = measured_capacity(options.nats_cluster, scale=options.scale)
    return options if path is None else replace(options, capacity_from=path)


def _checked_run_inputs(options):
    """Every usage mistake exits 2 here, before a bundle is created: the options, and every gate
    and scenario file the run needs, read and checked once. Returns the run's plan."""
    from exoarmur.defects import parse as parse_defects
    from exoarmur.stackconfig import DEFAULT_PEERS_PER_TENANT, DEFAULT_TENANTS
    from exoarmur_cli import gates
    from exoarmur_cli.run import prepare
    
    if options.profile not in definitions.PROFILES:
        usage_error(f"--profile must be {' or '.join(definitions.PROFILES)}, not {options.profile!r}")
    if (options.nats_url is None) != (options.api_url is None):
        usage_error("an external stack needs both --nats-url and --api-url")
    if options.api_url is not None and options.nats_cluster != 1:
        usage_error("--nats-cluster starts an embedded cluster; an external stack is what it is")
    if options.api_url is not None and options.scale != 1:
        usage_error("--scale sizes the embedded stack; an external stack is what it is")
    peers = DEFAULT_TENANTS * DEFAULT_PEERS_PER_TENANT * options.scale
    if options.api_url is None:
        try:
            options.load.for_users(peers, os.cpu_count())
        except ValueError as exc:
            usage_error(f"--load-workers plus --load-remote-workers, on the embedded stack's {peers} peers: {exc}")
    try:
        parse_defects(list(options.defects))
    except ValueError as exc:
        usage_error(f"{exc}")
    if options.defects and options.api_url is not None:
        usage_error("defects are injected into the embedded stack only")
    try:  # an unknown gate, a bad gate or scenario file: refused before a bundle is created
        all_gates = gates.load_gates(definitions.gates_dir(options.gates_dir))
        if unknown := [g for g in options.gates if g not in all_gates]:
            usage_error(f"no gate {unknown[0]}; gates are {sorted(all_gates)}")
        return prepare(options, all_gates)
    except KNOWN_ERRORS as exc:
        fail(exc, EXIT_USAGE)


# Defect runs side by side: a subset run mostly waits on its scenarios' observing windows (the CPUs
# were 87-97 % idle through the one-at-a-time self-test on 2 cores), so two at a time nearly halve it.
SELF_TEST_JOBS = 2
# One clean quick run by default, started first and beside the defect runs: a false red on a loaded
# machine shows there. Counting how rare a false red is takes many (--clean-runs N): gate 5's old
# clock tie went red once in fourteen clean runs, which five runs miss 69 % of the time ((13/14)^5).
CLEAN_RUNS = 1
HARNESS_CRASH = "harness_crash.txt"  # under raw/: the traceback of a crash of the harness itself


def _execute_run(options, plan, began: float):
    """The run, with every way it can end short mapped to an exit code and an INCOMPLETE bundle:
    Ctrl-C and SIGTERM end it quietly (130), a known error says why (2 or 3), and a crash of the
    harness itself says so in one sentence (3), its traceback kept in raw/harness_crash.txt."""
    import asyncio
    import traceback

    from exoarmur_cli.progress import open_progress
    from exoarmur_cli.run import Run

    async def until_done_or_terminated():
        # Ctrl-C and SIGTERM cancel the run (``tasks.Interrupt``), so its own cleanup runs in order
        # instead of an exception at an arbitrary line.
        from exoarmur_cli.tasks import INTERRUPT

        loop, run_task = asyncio.get_running_loop(), asyncio.current_task()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, INTERRUPT.fire, run_task)
        return await run.execute()

    with open_progress(console, plan.scenarios, plan.expected_s, began) as progress:
        run = Run(options, progress, plan)
        try:
            return asyncio.run(until_done_or_terminated())
        except (KeyboardInterrupt, asyncio.CancelledError):
            _incomplete(run, "interrupted (Ctrl-C or SIGTERM)", EXIT_INTERRUPTED)
            console.print(f"interrupted: bundle {run.bundle.path} marked INCOMPLETE")
            raise typer.Exit(EXIT_INTERRUPTED)
        except KNOWN_ERRORS as exc:
            code = exit_code_for(exc)
            _incomplete(run, f"{exc.reason_code.value}: {exc}", code)
            fail(exc, code)
        except Exception as exc:
            crash = f"raw/{HARNESS_CRASH}"
            run.bundle.write_text(crash, traceback.format_exc())
            _incomplete(run, f"harness crashed: {type(exc).__name__}: {exc}", EXIT_STACK)
            console.print(f"[red]error[/red] INTERNAL_ERROR: the harness itself crashed ({type(exc).__name__}: "
                          f"{escape(str(exc))}); bundle {run.bundle.path} marked INCOMPLETE, traceback in {crash}",
                          soft_wrap=True, highlight=False)
            raise typer.Exit(EXIT_STACK)


def _incomplete(run, reason: str, code: int) -> None:
    """Reap, seal the bundle INCOMPLETE (with its page), and write the CI summary."""
    reap_all()
    run.bundle.mark_incomplete(reason, code, run.meta)
    step_summary(run.bundle.path)


def _show_outcome(outcome, began: float, junit: Path | None, as_json: bool) -> None:
    """The summary (and JUnit XML, JSON when asked); exits 0 green, 1 red, 3 incomplete."""
    from exoarmur_cli import report
    from exoarmur_cli.gates import Verdict, results_to_json

    report.render_summary(console, outcome.results, outcome.durations_s, outcome.overall, outcome.bundle)
    step_summary(outcome.bundle)
    console.print(f"total {time.monotonic() - began:.1f}s")
    if junit is not None:
        junit.write_text(report.junit_xml(outcome.results))
    if as_json:
        print(orjson.dumps({"bundle": str(outcome.bundle), "overall": outcome.overall.value,
                            "root_digest": outcome.root_digest, "durations_s": outcome.durations_s,
                            "gates": results_to_json(outcome.results)}, option=orjson.OPT_INDENT_2).decode())
    if outcome.overall is Verdict.GREEN:
        raise typer.Exit(EXIT_OK)
    raise typer.Exit(EXIT_RED if outcome.overall is Verdict.RED else EXIT_STACK)


@app.command("replay-verify")
def replay_verify_command(
    bundle: str = typer.Argument("latest", help="a reality_run_NNN directory, or 'latest' under --out"),
    live: bool = typer.Option(False, "--live", help="also re-submit recorded intents to a fresh embedded stack"),
    live_limit: int = typer.Option(200, "--live-limit", min=1, help="--live: the first N replayable records"),
    as_json: bool = typer.Option(False, "--json", help="print the report as JSON on stdout"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="where 'latest' looks for bundles"),
) -> None:
    """Check a bundle alone: file digests and audit seals, every decision, every verdict (and --live).

    Exit 0 every check holds · 1 a difference (listed) · 2 not a bundle · 3 --live found no stack.
    """
    from exoarmur_cli.bundle import BundleError
    from exoarmur_cli.verify import resolve, verify

    try:
        report = verify(resolve(bundle, out), live=live, live_limit=live_limit,
                        progress=lambda line: console.print(f"[dim]{line}[/dim]", highlight=False))
    except (BundleError, StackError) as exc:
        reap_all()
        console.print(f"[red]error[/red] {exc.reason_code.value}: {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE if isinstance(exc, BundleError) else EXIT_STACK)
    if as_json:
        print(orjson.dumps({**report.to_json(), "exit_code": EXIT_OK if report.valid else EXIT_RED},
                           option=orjson.OPT_INDENT_2).decode())
    else:
        print("\n".join(report.lines()))
    raise typer.Exit(EXIT_OK if report.valid else EXIT_RED)


@app.command("report")
def report_command(
    bundle: str = typer.Argument("latest", help="a reality_run_NNN directory, or 'latest' under --out"),
    open_: bool = typer.Option(False, "--open", help="open index.html in the default browser afterwards"),
    out: Path = typer.Option(Path("artifacts"), "--out", help="where 'latest' looks for bundles"),
) -> None:
    """Rebuild a bundle's index.html from its raw/ and 13 alone (an old bundle gets a report too).

    The page's sha256 is recorded in 13 under 'report'; the root digest and every evidence digest
    stay as the run wrote them, so replay-verify still fails on any edited evidence.
    Exit 0 written · 2 not a bundle.
    """
    from exoarmur_cli.bundle import BundleError
    from exoarmur_cli.html_report import REPORT, write_report
    from exoarmur_cli.verify import resolve

    try:
        path = resolve(bundle, out)
        entry = write_report(path, "exoarmur report")
    except BundleError as exc:
        console.print(f"[red]error[/red] {exc.reason_code.value}: {exc}", soft_wrap=True, highlight=False)
        raise typer.Exit(EXIT_USAGE)
    target = (path / REPORT).resolve()
    print(f"{target}  sha256 {entry['sha256']}")
    if open_:
        import webbrowser

        webbrowser.open(target.as_uri())


@app.command("load-worker")
def load_worker_command(
    master_host: str = typer.Option(..., "--master-host", help="the host of the run's Locust master"),
    master_port: int = typer.Option(..., "--master-port", min=1, max=65535, help="its port (run-gates prints it)"),
    stack_dir: Path = typer.Option(..., "--stack-config", help="a folder with the stack's stack.json"),
) -> None:
    """One Locust worker, on this host, for a run-gates started with --load-remote-workers elsewhere.

    The master sends the run's plan and takes back what this worker recorded; the worker ends when
    the run's load does. Exit: Locust's own, 2 no readable stack.json, 130 interrupted."""
    from exoarmur_cli.load.runner import run_worker

    try:
        code = run_worker(stack_dir, master_host, master_port)
    except KNOWN_ERRORS as exc:
        fail(exc, exit_code_for(exc))
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED)
    raise typer.Exit(code)


@app.command("self-test")
def self_test_command(
    defect: list[str] = typer.Option([], "--defect", help="only these defects (default: all)"),
    clean_runs: int = typer.Option(CLEAN_RUNS, "--clean-runs", min=0,
                                   help="quick clean runs, beside the defect runs, that must all be green"),
    seed: int = typer.Option(0, "--seed", help="the first seed; defects run on seed, seed+1, ..."),
    seeds: int = typer.Option(1, "--seeds", min=1, help="seeds each defect runs on; caught only if caught on every one"),
    jobs: int = typer.Option(SELF_TEST_JOBS, "--jobs", min=1,
                             help="runs at a time (defect and clean alike), each on its own stack"),
    out: Path = typer.Option(Path("artifacts/self-test"), "--out", help="the runs' bundles land here"),
    as_json: bool = typer.Option(False, "--json", help="also print the full matrix as JSON on stdout"),
    junit: Path = typer.Option(None, "--junit-xml", help="also write one testcase per defect × seed and clean run"),
    gates_dir: Path = typer.Option(None, "--gates-dir", help=GATES_DIR_HELP),
    scenarios_dir: Path = typer.Option(None, "--scenarios-dir", help=SCENARIOS_DIR_HELP),
    measure_capacity: bool = typer.Option(True, "--measure-capacity/--no-measure-capacity",
                                          help="size every run from this machine's measured capacity, as "
                                               "run-gates does by default; off: the gate files' numbers"),
) -> None:
    """Show every gate can go red: each defect must turn its gate RED; clean runs must stay GREEN."""
    from rich.table import Table

    from exoarmur.defects import parse as parse_defects
    from exoarmur_cli.selftest import EXPECTED, RunInputs, self_test
    from exoarmur_cli.selftest_report import junit_xml, matrix_rows, to_json

    try:
        chosen = parse_defects(defect) if defect else list(EXPECTED)
    except ValueError as exc:
        usage_error(f"{exc}")
    inputs = RunInputs(gates_dir, scenarios_dir)
    _checked_run_inputs(inputs.options(seed, out))
    began = time.monotonic()
    # measured once, of a clean stack: every defect run is sized as a clean run is
    if measure_capacity and (capacity_from := measured_capacity(1)) is not None:
        inputs = RunInputs(gates_dir, scenarios_dir, capacity_from)
        _checked_run_inputs(inputs.options(seed, out))
        console.print(f"every run sized from {capacity_from}", soft_wrap=True)
    try:
        result = self_test(out, chosen, clean_runs, seed,
                           lambda line: console.print(f"[dim]{time.monotonic() - began:6.1f}s[/dim] {line}"),
                           seeds=seeds, inputs=inputs, jobs=jobs)
    except KeyboardInterrupt:
        reap_all()
        raise typer.Exit(EXIT_INTERRUPTED)
    except KNOWN_ERRORS as exc:
        reap_all()
        fail(exc, exit_code_for(exc))
    table = Table("defect", *[f"G{g}" for g in range(1, 9)], "expected criterion", "seeds caught", "result",
                  title="Defect × gate (self-test)")
    for row in matrix_rows(result):
        table.add_row(*row)
    console.print(table)
    for n, run in enumerate(result.clean_runs, 1):
        console.print(f"clean run {n}: {run.overall}  {run.bundle}")
    if junit is not None:
        junit.write_text(junit_xml(result))
    if as_json:
        print(orjson.dumps(to_json(result), option=orjson.OPT_INDENT_2).decode())
    console.print(f"self-test {'PASSED' if result.ok else 'FAILED'} in {time.monotonic() - began:.0f}s")
    raise typer.Exit(EXIT_OK if result.ok else EXIT_RED)


def main() -> None:  # pragma: no cover - console entry
    app()


if __name__ == "__main__":
    sys.exit(app())
