"""``exoarmur stack up|down|status``: the embedded stack, for poking at by hand."""

from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import httpx
import orjson
import typer

from exoarmur.stackconfig import DEFAULT_CELLS
from exoarmur_cli.cli_common import (
    DEFAULT_STACK_DIR, EXIT_INTERRUPTED, EXIT_STACK, GATES_DIR_HELP, KNOWN_ERRORS, console, exit_code_for, fail,
    kept_as_declared_said, measured_capacity, usage_error,
)
from exoarmur_cli.errors import HarnessError
from exoarmur_cli.procs import pid_is_ours, reap_all, terminate_recorded

stack_app = typer.Typer(add_completion=False, no_args_is_help=True, help="The embedded stack, for poking at by hand.")


def _declared_overrides(gates_dir: Path | None) -> dict[str, float]:
    """The admission limits and bounds the gate files declare, so a stack brought up by hand is one
    the gates judge as they judge their own (``[declared]``; see exoarmur_cli/declared.py)."""
    from exoarmur_cli import declared, definitions
    from exoarmur_cli.gates import load_gates

    try:
        found = declared.stack_overrides(declared.merged(
            {gid: gate.declared for gid, gate in load_gates(definitions.gates_dir(gates_dir)).items()}))
    except (HarnessError, declared.DeclaredConflict) as exc:
        console.print(f"[yellow]no declared policy ({exc}): the product's own limits apply[/yellow]")
        return {}
    return found


def _sized_overrides(bench_file: Path, declared: dict[str, float]) -> dict[str, float]:
    """Admission sized from a bench file's held rate as run-gates sizes it (never above the gates'
    declared numbers), said aloud with what stayed as declared."""
    from exoarmur import sizing
    from exoarmur_cli.declared import capped_admission

    try:
        held = sizing.held_from_file(bench_file)
    except ValueError as exc:
        usage_error(f"--size-from {bench_file}: {exc}")
    applied, kept = capped_admission(sizing.size_admission(held), declared)
    console.print(f"limits sized from {bench_file} (held {held:,.1f}/s within p99 "
                  f"{sizing.SIZING.held_p99_ms:.0f} ms): {applied}{kept_as_declared_said(kept)}", soft_wrap=True)
    return applied


@stack_app.command("up")
def stack_up(
    stack_dir: Path = typer.Option(DEFAULT_STACK_DIR, "--dir", help="where the stack keeps config, store and logs"),
    cells: int = typer.Option(DEFAULT_CELLS, min=1, max=16, help="how many cell processes"),
    seed: int = typer.Option(0, help="seed of the effector's fault RNG"),
    nats_cluster: int = typer.Option(1, "--nats-cluster", min=1, max=5,
                                     help="nats-servers: 1 (one server) or a JetStream cluster of N with RN streams"),
    inject_defect: list[str] = typer.Option([], "--inject-defect",
                                            help="start with this deliberate defect (repeatable; for self-test)"),
    gates_dir: Path = typer.Option(None, "--gates-dir", help=GATES_DIR_HELP),
    size_from: Path = typer.Option(None, "--size-from", help="size admission from the rate a `bench --save` "
                                                                 "file held (exoarmur/sizing.py), never above the "
                                                                 "gates' declared numbers"),
    measure_capacity: bool = typer.Option(None, "--measure-capacity/--no-measure-capacity",
                                          help="size admission from this machine's capacity, measured first (kept "
                                               "for a day in ~/.cache/exoarmur), as run-gates does; default: on "
                                               "unless --size-from; off: the gates' declared numbers"),
) -> None:
    """Start NATS, effector, api and cells; print URLs and tokens; stay up until Ctrl-C."""
    from exoarmur.defects import parse as parse_defects
    from exoarmur_cli.recorded import CAPACITY_SOURCE
    from exoarmur_cli.stack import LocalStack, read_pids

    stack_dir = stack_dir.resolve()
    if read_pids(stack_dir):
        usage_error(f"a stack is already recorded in {stack_dir}; run `exoarmur stack down --dir {stack_dir}`")
    try:
        parse_defects(inject_defect)
    except ValueError as exc:
        usage_error(str(exc))
    if inject_defect:
        console.print(f"[bold red]DEFECTS INJECTED: {', '.join(inject_defect)} — not a real stack[/bold red]")
    if size_from is not None and measure_capacity:
        usage_error("--measure-capacity measures what --size-from reads from a file: give one of them")
    overrides = _declared_overrides(gates_dir)
    if size_from is None and measure_capacity is not False:
        size_from = measured_capacity(nats_cluster, cells=cells)  # None: it held no rate (said), the declared numbers apply
    if size_from is not None:  # admission sized; every other declared number (approval wait) kept
        sized = _sized_overrides(size_from, overrides)
        if rest := {name: value for name, value in overrides.items() if name not in sized}:
            console.print(f"other limits from the gates' declared policy: {rest}")
        overrides = {**overrides, **sized}
    elif overrides:
        console.print(f"limits from the gates' declared policy: {overrides}")
    stack = LocalStack.create(stack_dir, cells=cells, seed=seed, defects=inject_defect, overrides=overrides,
                              nats_cluster=nats_cluster)
    _keep_capacity_source(size_from, stack.dir / CAPACITY_SOURCE)
    stopping = False

    def on_term(_sig, _frame):
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        ready_s = stack.start()
        cfg = stack.config
        print(f"ExoArmur stack ready in {ready_s:.2f}s", flush=True)
        for key, value in cfg.public_view().items():
            print(f"  {key}: {value}")
        print(f"  config (tokens and NATS passwords, mode 0600): {cfg.path}")
        print(f"  operator token: {cfg.operator_token}")
        first = next(iter(cfg.peers.values()))
        print(f"  example peer: {first.peer_id} ({first.tenant_id}) token {first.token}")
        print("Ctrl-C to stop.", flush=True)
        while True:
            time.sleep(0.5)
            dead = [n for n, c in stack.children.items() if not c.alive()]
            if dead and len(dead) == len(stack.children):
                raise KeyboardInterrupt
            if dead:
                console.print(f"[yellow]exited:[/yellow] {', '.join(dead)} (see {stack.dir / 'logs'})")
                stack.children = {n: c for n, c in stack.children.items() if n not in dead}
                stack.write_pids()
    except KeyboardInterrupt:
        stopping = True
    except KNOWN_ERRORS as exc:
        stack.stop()
        fail(exc, exit_code_for(exc))
    finally:
        stack.stop()
        reap_all()
    if stopping:
        print("stack stopped", flush=True)
        raise typer.Exit(EXIT_INTERRUPTED)


def _keep_capacity_source(size_from: Path | None, kept: Path) -> None:
    """What the stack's limits were sized from, beside its config, for a run against it to size its
    gates from (``run-gates --stack-config``); none from an earlier stack in the same folder stays."""
    if size_from is None:
        kept.unlink(missing_ok=True)
        return
    if not (kept.exists() and kept.samefile(size_from)):
        shutil.copyfile(size_from, kept)
    console.print(f"a run against this stack (`run-gates --stack-config {kept.parent}`) sizes its gates from the "
                  f"same capacity ({kept})", soft_wrap=True)


@stack_app.command("down")
def stack_down(stack_dir: Path = typer.Option(DEFAULT_STACK_DIR, "--dir", help="the stack's folder, as given to `stack up`")) -> None:
    """Stop the stack recorded in --dir (only the PIDs it started)."""
    from exoarmur_cli.stack import PIDS_FILE, read_pids

    pids = read_pids(stack_dir)
    if not pids:
        print(f"no stack recorded in {stack_dir}")
        return
    supervisor = pids.pop("supervisor", None)
    running = {name: pid_is_ours(rec["pid"], rec["create_time"]) for name, rec in pids.items()}
    if supervisor:  # the `stack up` process stops its own children in order
        terminate_recorded(supervisor["pid"], supervisor["create_time"], timeout_s=15, group=False)
    for name, rec in reversed(list(pids.items())):
        terminate_recorded(rec["pid"], rec["create_time"])
        print(f"{name}: {'stopped' if running[name] else 'was not running'} (pid {rec['pid']})")
    (stack_dir / PIDS_FILE).unlink(missing_ok=True)


@stack_app.command("status")
def stack_status(
    stack_dir: Path = typer.Option(DEFAULT_STACK_DIR, "--dir", help="the stack's folder, as given to `stack up`"),
    as_json: bool = typer.Option(False, "--json", help="print the status as JSON on stdout"),
) -> None:
    """Show each recorded component and whether the api is ready. Exit 3 when not up."""
    from exoarmur import stackconfig
    from exoarmur_cli.stack import read_pids

    pids = read_pids(stack_dir)
    pids.pop("supervisor", None)
    components = {name: {"pid": rec["pid"], "up": pid_is_ours(rec["pid"], rec["create_time"])}
                  for name, rec in pids.items()}
    ready = False
    if pids:
        try:
            cfg = stackconfig.load(stack_dir)
            ready = httpx.get(f"{cfg.api_url}/readyz", timeout=2).status_code == 200
        except (*KNOWN_ERRORS, httpx.HTTPError):
            ready = False
    up = bool(pids) and ready and all(c["up"] for c in components.values())
    if as_json:
        print(orjson.dumps({"dir": str(stack_dir), "recorded": bool(pids), "components": components,
                            "api_ready": ready, "up": up}, option=orjson.OPT_INDENT_2).decode())
    elif not pids:
        print(f"no stack recorded in {stack_dir}")
    else:
        for name, component in components.items():
            print(f"{name:10s} pid {component['pid']:>7}  {'up' if component['up'] else 'DOWN'}")
        print(f"api ready: {ready}")
    if not up:
        raise typer.Exit(EXIT_STACK)
