"""Run the load driver: Locust in a subprocess of its own, never imported here.

Importing locust monkey-patches the importing process with gevent (and would starve the
harness's asyncio), so ``run_load`` starts ``python -m locust -f locustfile.py --headless`` in
its own process group, with a hard deadline, and always reaps it. With ``workers`` > 0 it is
Locust's own distributed mode: a master (the load shape, the CSVs, the HTML report) and that many
``--worker`` processes in the master's process group, each running a share of the users; the
master sends each worker the run's plan as it connects and keeps the history each sends back, one
file per worker, merged into one when they are done. With ``remote_workers`` the master also waits
for that many workers started elsewhere (``exoarmur load-worker --master-host H --master-port P
--stack-config DIR`` on another host, with a copy of the stack's ``stack.json``): they need nothing
else, and their histories come back the same way. What the run leaves behind:

    <out_dir>/load-history.jsonl   invoke + ok/fail/info events per request (history.Event)
    <out_dir>/locust_stats.csv     per request name (submit[<phase>]) and Aggregated
    <out_dir>/locust_failures.csv  refusals grouped by reason code, per phase
    <out_dir>/locust_stats_history.csv, locust_exceptions.csv, locust.log
    <out_dir>/locust_report.html   Locust's own HTML report (--html)
"""

from __future__ import annotations

import csv
import os
import re
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

import orjson

from exoarmur import stackconfig

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
DEADLINE_SLACK_S = 30.0  # spawn, drain and CSV writing on top of the phases
TERM_GRACE_S = 5.0  # after SIGTERM (Locust writes its CSVs on it), before SIGKILL
STOP_POLL_S = 0.1  # how often the wait for Locust looks at its stop event
HISTORY_FILE = "load-history.jsonl"
LOCUST_HTML = "locust_report.html"
_CATCH_RESPONSE = re.compile(r"^CatchResponseError\('(.*)'\)$")


@dataclass(frozen=True)
class LoadPhase:
    name: str
    duration_s: float
    rate_per_s: float  # target total intents per second, all users together


@dataclass(frozen=True)
class LoadResult:
    exit_code: int | None  # Locust's; None when it had to be killed and could not be reaped
    duration_s: float
    history_path: Path
    stats_rows: list[dict]  # locust_stats.csv: one row per request name, then "Aggregated"
    failures_rows: list[dict]  # locust_failures.csv, plus "reason": the unwrapped failure name
    log_path: Path
    pid: int = 0
    timed_out: bool = False
    workers: int = 0  # Locust workers beside the master, here and elsewhere (0: one process)


@dataclass(frozen=True)
class LoadLayout:
    """Where a run's Locust processes are: its master here, workers here and elsewhere."""

    workers: int | None = None  # workers here, beside the master (0: one process; None: one per CPU)
    remote_workers: int = 0  # workers started on other hosts with ``exoarmur load-worker``
    master_host: str = "127.0.0.1"  # the master's address, which remote workers dial
    master_port: int = 0  # its port (0: a free one, chosen as the run starts)

    @property
    def all_workers(self) -> int:
        """Every worker, here and elsewhere (0: Locust in one process)."""
        return (self.workers or 0) + self.remote_workers

    def for_users(self, users: int, cpus: int | None) -> LoadLayout:
        """This layout with its workers here counted (None: ``workers_for`` the machine's CPUs),
        checked: every worker runs whole users, and each user is one peer, so all the workers
        together must divide ``users`` evenly. ValueError saying why not."""
        workers = workers_for(users, cpus) if self.workers is None else self.workers
        if workers < 0 or self.remote_workers < 0:
            raise ValueError(f"worker counts cannot be negative ({workers} here, {self.remote_workers} elsewhere)")
        counted = replace(self, workers=workers)
        if counted.all_workers and users % counted.all_workers:
            raise ValueError(f"{users} users (one per peer) do not divide evenly among "
                             f"{counted.all_workers} Locust workers")
        return counted

    def worker_command(self, stack_dir: str | Path) -> str:
        """What to run on each other host (with a copy of ``stack_dir``'s stack.json there)."""
        return (f"exoarmur load-worker --master-host {self.master_host} --master-port {self.master_port} "
                f"--stack-config {stack_dir}")


WORKERS_CONNECT_S = 30.0  # the master's wait for its workers before it gives up
REMOTE_WORKERS_CONNECT_S = 300.0  # ...when some are started by hand on other hosts


def locust_argv(api_url: str, out_dir: Path, users: int, *, workers: int = 0, master_port: int = 0,
                master_host: str = "127.0.0.1", connect_s: float = WORKERS_CONNECT_S) -> list[str]:
    """The single Locust process, or with ``workers`` (all of them, wherever they run) the master
    that waits for them."""
    argv = [
        sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
        "--host", api_url, "--users", str(users), "--spawn-rate", str(users),
        "--csv", str(out_dir / "locust"), "--csv-full-history", "--only-summary",
        "--html", str(out_dir / LOCUST_HTML),  # Locust's own report, kept beside its CSVs
        "--loglevel", "WARNING", "--exit-code-on-error", "0",
    ]
    if workers:
        argv += ["--master", "--master-bind-host", master_host, "--master-bind-port", str(master_port),
                 "--expect-workers", str(workers), "--expect-workers-max-wait", str(int(connect_s))]
    return argv


def workers_for(users: int, cpus: int | None) -> int:
    """What the machine has: one worker per CPU, at most, and a count that shares ``users``
    evenly (each user is one peer); 0 (one process) on a machine with one CPU."""
    cpus = cpus or 1
    if cpus < 2:
        return 0
    return max(n for n in range(1, min(cpus, users) + 1) if users % n == 0)


def worker_argv(api_url: str, master_port: int, master_host: str = "127.0.0.1") -> list[str]:
    return [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker", "--host", api_url,
            "--master-host", master_host, "--master-port", str(master_port), "--loglevel", "WARNING"]


def worker_env(stack_dir: str | Path) -> dict[str, str]:
    """All a worker reads from its environment: the rest of the plan comes from its master."""
    return {**os.environ, "EXO_STACK_CONFIG": str(stack_dir), "PYTHONUNBUFFERED": "1"}


def worker_history(history_path: Path, index: int) -> Path:
    return history_path.with_name(f"{history_path.stem}.worker{index}{history_path.suffix}")


def _locust_env(stack_dir: str, history_path: Path, phases: list[LoadPhase], *, t0_wall_ms: int, seed: int,
                key_prefix: str, users: int, workers: int) -> dict[str, str]:
    """What a Locust process reads from its environment (see ``locustfile``)."""
    return {
        **os.environ,
        "EXO_STACK_CONFIG": str(stack_dir),
        "EXO_LOAD_HISTORY": str(history_path),
        "EXO_LOAD_USERS": str(users),
        "EXO_LOAD_WORKERS": str(workers),
        "EXO_RUN_T0_WALL_MS": str(int(t0_wall_ms)),
        "EXO_LOAD_PHASES": orjson.dumps([
            {"name": p.name, "duration_s": p.duration_s, "rate_per_s": p.rate_per_s} for p in phases
        ]).decode(),
        "EXO_SEED": str(seed),
        "EXO_KEY_PREFIX": key_prefix,
        "PYTHONUNBUFFERED": "1",
    }


def run_load(
    stack_dir: Path,
    out_dir: Path,
    phases: list[LoadPhase],
    *,
    t0_wall_ms: int,
    seed: int,
    key_prefix: str,
    users: int = 500,
    layout: LoadLayout = LoadLayout(workers=0),
    timeout_s: float | None = None,
    history_path: Path | None = None,
    stop: threading.Event | None = None,
) -> LoadResult:
    """Drive the phases against the stack in ``stack_dir``; block until Locust is done (or
    ``stop`` is set: the run is ending, Locust is stopped and reaped now). ``layout``: no workers,
    one Locust process; else a master and ``layout.workers`` workers here, and
    ``layout.remote_workers`` more started elsewhere that connect to the master at its host and
    port (0: a free port). ValueError when the workers do not share ``users`` evenly
    (``LoadLayout.for_users``)."""
    if not phases:
        raise ValueError("run_load needs at least one phase")
    config = stackconfig.load(Path(stack_dir))
    if not 1 <= users <= len(config.peers):
        raise ValueError(f"users must be 1..{len(config.peers)} (one user per peer), not {users}")
    layout = layout.for_users(users, os.cpu_count())
    workers, remote_workers, all_workers = layout.workers, layout.remote_workers, layout.all_workers
    master_host = layout.master_host
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    history_path = Path(history_path) if history_path else out_dir / HISTORY_FILE
    log_path = out_dir / "locust.log"
    deadline_s = timeout_s if timeout_s is not None else sum(p.duration_s for p in phases) + DEADLINE_SLACK_S
    connect_s = REMOTE_WORKERS_CONNECT_S if remote_workers else WORKERS_CONNECT_S
    deadline_s += connect_s if all_workers else 0.0
    env = _locust_env(config.stack_dir, history_path, phases, t0_wall_ms=t0_wall_ms, seed=seed,
                      key_prefix=key_prefix, users=users, workers=all_workers)
    master_port = (layout.master_port or stackconfig.free_port()) if all_workers else 0
    began = time.monotonic()
    timed_out = False
    exit_code: int | None = None
    with open(log_path, "ab") as log:
        # process_group=0: a group of its own, which the workers join, so one killpg stops them all
        popen = subprocess.Popen(
            locust_argv(config.api_url, out_dir, users, workers=all_workers, master_port=master_port,
                        master_host=master_host, connect_s=connect_s),
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env, process_group=0,
        )
        worker_procs = [subprocess.Popen(
            worker_argv(config.api_url, master_port, master_host), stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, env=worker_env(config.stack_dir), process_group=popen.pid)
            for _ in range(workers)]
    try:
        while popen.poll() is None and not (stop is not None and stop.is_set()):
            if time.monotonic() - began > deadline_s:
                timed_out = True
                break
            time.sleep(STOP_POLL_S)
    finally:  # on the deadline, an error or Ctrl-C alike: stop and reap what we started
        if popen.poll() is None:
            exit_code = _stop(popen)
        else:
            exit_code = popen.returncode
        for worker in worker_procs:  # told to quit by the master; stopped with the group if not
            if _reap(worker, TERM_GRACE_S) is None:
                _stop(popen, worker)
    if all_workers:
        merge_histories([worker_history(history_path, i) for i in range(all_workers)], history_path)
    return LoadResult(
        exit_code=exit_code,
        duration_s=time.monotonic() - began,
        history_path=history_path,
        stats_rows=read_csv(out_dir / "locust_stats.csv"),
        failures_rows=[_with_reason(row) for row in read_csv(out_dir / "locust_failures.csv")],
        log_path=log_path,
        pid=popen.pid,
        timed_out=timed_out,
        workers=all_workers,
    )


def run_worker(stack_dir: Path, master_host: str, master_port: int) -> int:
    """One Locust worker of a run whose master is elsewhere (``exoarmur load-worker``): it needs the
    stack's stack.json in ``stack_dir`` (peers, tokens, nodes) and the master's address, nothing
    else. Blocks until the master ends the run; a Ctrl-C stops the worker and reaps it. Returns
    Locust's exit code. ConfigError when ``stack_dir`` holds no readable stack config."""
    config = stackconfig.load(Path(stack_dir))
    popen = subprocess.Popen(worker_argv(config.api_url, master_port, master_host), env=worker_env(stack_dir),
                             stdin=subprocess.DEVNULL, process_group=0)
    try:
        return popen.wait()
    finally:
        if popen.poll() is None:
            _stop(popen)


def merge_histories(parts: list[Path], into: Path) -> None:
    """The workers' histories as one, in time order (stable: a worker's own order is kept), numbered
    afresh; the parts are removed once merged."""
    events = []
    for part in parts:
        if part.exists():
            with open(part, "rb") as handle:
                events += [orjson.loads(line) for line in handle if line.strip()]
    events.sort(key=lambda event: event["time_ms"])
    with open(into, "ab") as handle:
        for index, event in enumerate(events):
            handle.write(orjson.dumps({**event, "index": index}, option=orjson.OPT_SORT_KEYS) + b"\n")
    for part in parts:
        part.unlink(missing_ok=True)


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)  # the group Popen created for this child (start_new_session)
    except ProcessLookupError:
        pass


def _reap(popen: subprocess.Popen, timeout_s: float) -> int | None:
    try:
        return popen.wait(timeout_s)
    except subprocess.TimeoutExpired:
        return None


def _stop(group_leader: subprocess.Popen, child: subprocess.Popen | None = None) -> int | None:
    """SIGTERM the leader's process group (Locust then writes its CSVs), SIGKILL after a grace;
    returns the exit code of ``child`` (default: the leader)."""
    child = child or group_leader
    _signal_group(group_leader.pid, signal.SIGTERM)
    if (code := _reap(child, TERM_GRACE_S)) is not None:
        return code
    _signal_group(group_leader.pid, signal.SIGKILL)
    return _reap(child, 10)


def read_csv(path: Path) -> list[dict]:
    try:
        with open(path, newline="") as handle:
            return list(csv.DictReader(handle))
    except OSError:
        return []


def _with_reason(row: dict) -> dict:
    error = row.get("Error", "")
    match = _CATCH_RESPONSE.match(error)
    return {**row, "reason": match.group(1) if match else error}
