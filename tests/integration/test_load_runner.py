"""The load driver against a real stack: Locust in its own process, one user per peer; and the
same run in Locust's distributed mode (a master, one worker it starts and one worker started
apart, as on another host, by ``exoarmur load-worker`` from another folder with only a copy of
stack.json), which must be indistinguishable in what it records.

Two short phases (150/s, then 600/s) with the full default stack (10 tenants x 50 peers x
100 nodes): every peer and node is exercised, every invoke has exactly one completion, the
first phase's achieved rate follows its target, Locust's CSVs are parsed, and no Locust
process is left behind. The harness process itself never imports locust.
"""

from __future__ import annotations

import collections
import concurrent.futures
import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from exoarmur import stackconfig
from exoarmur.contracts import ReasonCode
from exoarmur_cli.history import FAIL, INFO, INVOKE, OK, read_events
from exoarmur_cli.load import LoadPhase, LoadResult, run_load
from exoarmur_cli.load.runner import LoadLayout
from exoarmur_cli.stack import LocalStack

pytestmark = pytest.mark.integration

PHASES = [LoadPhase("sustained", 3.0, 150.0), LoadPhase("overload", 3.0, 600.0)]
USERS = 500
REASONS = {r.value for r in ReasonCode}


@pytest.fixture(scope="module")
def full_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    stack = LocalStack.create(tmp_path_factory.mktemp("load-stack"), seed=11)  # 10 x 50 peers x 100 nodes
    try:
        stack.start()
        yield stack
    finally:
        stack.stop()


# Distributed mode with workers started by the master and one started apart; the quick run's load
# scenario (CI's last step) drives master + 2 local workers end to end.
@pytest.fixture(scope="module", params=[(0, 0), (1, 1)], ids=["one-process", "master+1-worker+1-remote"])
def load_run(full_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory,
             request: pytest.FixtureRequest) -> tuple[LoadResult, Path]:
    workers, remote = request.param
    out_dir = tmp_path_factory.mktemp("load-out")
    run = functools.partial(run_load, full_stack.dir, out_dir, PHASES, t0_wall_ms=int(time.time() * 1000), seed=5,
                            key_prefix=out_dir.name, users=USERS)
    if not remote:
        result = run(layout=LoadLayout(workers=workers))
    else:
        result = _with_a_remote_worker(run, workers, full_stack, tmp_path_factory.mktemp("elsewhere"))
    assert result.workers == workers + remote
    return result, out_dir


def _with_a_remote_worker(run, workers: int, full_stack: LocalStack, elsewhere: Path) -> LoadResult:
    """``run`` with ``workers`` here, waiting for one remote worker, which is started as a user would
    on another host."""
    shutil.copy(full_stack.dir / "stack.json", elsewhere / "stack.json")
    port = stackconfig.free_port()
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        running = pool.submit(run, layout=LoadLayout(workers=workers, remote_workers=1, master_port=port))
        worker = subprocess.Popen([Path(sys.executable).with_name("exoarmur"), "load-worker", "--master-host",
                                   "127.0.0.1", "--master-port", str(port), "--stack-config", "."], cwd=elsewhere,
                                  stdout=subprocess.PIPE, stderr=subprocess.STDOUT, process_group=0)
        try:
            result = running.result(timeout=180)
            output, _ = worker.communicate(timeout=30)  # it ends with the run
        finally:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait()
    assert worker.returncode == 0, output.decode(errors="replace")[-3000:]
    return result


def test_workers_histories_are_merged_into_one(load_run: tuple[LoadResult, Path]) -> None:
    result, out_dir = load_run
    assert [p.name for p in out_dir.glob("load-history*.jsonl")] == [result.history_path.name]


def test_workers_must_share_the_users_evenly(full_stack: LocalStack, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="divide evenly"):
        run_load(full_stack.dir, tmp_path, PHASES, t0_wall_ms=0, seed=1, key_prefix="x", users=USERS,
                 layout=LoadLayout(workers=3))


def test_harness_never_imports_locust() -> None:
    assert "locust" not in sys.modules
    assert "gevent" not in sys.modules


def test_locust_ran_to_completion_and_left_nothing_behind(load_run: tuple[LoadResult, Path]) -> None:
    result, out_dir = load_run
    log = result.log_path.read_text(errors="replace")
    assert result.exit_code == 0 and not result.timed_out, log[-3000:]
    assert result.duration_s < sum(p.duration_s for p in PHASES) + 30
    try:  # reaped: the pid is gone (or already someone else's)
        assert str(out_dir) not in " ".join(psutil.Process(result.pid).cmdline())
    except psutil.NoSuchProcess:
        pass
    survivors = []  # the workers here are in the master's process group
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            in_group = os.getpgid(proc.info["pid"]) == result.pid
        except ProcessLookupError:
            continue
        if in_group or str(out_dir) in " ".join(proc.info["cmdline"] or []):
            survivors.append((proc.info["pid"], proc.info["cmdline"]))
    assert not survivors
    assert "Traceback" not in log, log[-3000:]


def test_every_peer_and_node_is_exercised_on_its_own_tenant(load_run: tuple[LoadResult, Path], full_stack: LocalStack) -> None:
    result, out_dir = load_run
    cfg = full_stack.config
    invokes = [e for e in read_events(result.history_path) if e.type == INVOKE]
    assert {e.value["peer_id"] for e in invokes} == set(cfg.peers)
    assert {e.value["node_id"] for e in invokes} == set(cfg.nodes)
    nodes_by_peer = collections.defaultdict(set)
    for e in invokes:
        peer = cfg.peers[e.value["peer_id"]]
        assert e.process == peer.peer_id and e.f == "submit" and e.scenario == "load"
        assert e.value["tenant_id"] == peer.tenant_id == cfg.nodes[e.value["node_id"]]
        assert e.value["action_class"] == "A1"
        assert e.value["key"].startswith(f"{out_dir.name}-{peer.peer_id}-")
        nodes_by_peer[peer.peer_id].add(e.value["node_id"])
    # peer j of its tenant alternates between the tenant's nodes 2j and 2j+1
    for tenant in cfg.tenants:
        peers = sorted(p for p, peer in cfg.peers.items() if peer.tenant_id == tenant)
        nodes = sorted(n for n, t in cfg.nodes.items() if t == tenant)
        for j, peer_id in enumerate(peers):
            assert nodes_by_peer[peer_id] == {nodes[2 * j], nodes[2 * j + 1]}


def test_every_invoke_has_exactly_one_completion(load_run: tuple[LoadResult, Path]) -> None:
    result, _ = load_run
    events = list(read_events(result.history_path))
    assert [e.index for e in events] == list(range(len(events)))
    invokes = {}
    completions: dict[str, list] = collections.defaultdict(list)
    for e in events:
        assert e.time_ms > 0
        if e.type == INVOKE:
            assert e.value["key"] not in invokes, "an idempotency key was sent twice"
            invokes[e.value["key"]] = e
        else:
            assert e.type in (OK, FAIL, INFO), e
            assert e.value["key"] in invokes, f"completion before (or without) its invoke: {e}"
            completions[e.value["key"]].append(e)
    assert set(completions) == set(invokes)
    for key, done in completions.items():
        assert len(done) == 1, done
        (end,) = done
        start = invokes[key]
        assert end.process == start.process and end.value["phase"] == start.value["phase"]
        assert end.value["node_id"] == start.value["node_id"] and end.value["tenant_id"] == start.value["tenant_id"]
        if end.type == OK:
            assert end.value["status"] == 202 and isinstance(end.value["duplicate"], bool)
            assert end.value["duplicate"] is False and end.value["seq"] > 0
        elif end.type == FAIL:
            assert end.value["reason_code"] in REASONS and end.value["status"] >= 400
        else:
            assert end.value["error"] != "interrupted before an answer", "a request was cut off at the end of the run"


def test_first_phase_follows_its_target_rate(load_run: tuple[LoadResult, Path]) -> None:
    result, _ = load_run
    by_phase = collections.Counter(e.value["phase"] for e in read_events(result.history_path) if e.type == INVOKE)
    first = PHASES[0]
    achieved = by_phase[first.name] / first.duration_s
    assert 0.5 * first.rate_per_s <= achieved <= 1.5 * first.rate_per_s, (achieved, by_phase)
    assert by_phase[PHASES[1].name] / PHASES[1].duration_s > achieved  # the second phase pushes harder


def test_locust_csvs_are_parsed_per_phase_and_reason(load_run: tuple[LoadResult, Path]) -> None:
    result, out_dir = load_run
    events = list(read_events(result.history_path))
    rows = {row["Name"]: row for row in result.stats_rows}
    assert {"submit[sustained]", "submit[overload]", "Aggregated"} <= set(rows)
    for phase in PHASES:
        invokes = sum(1 for e in events if e.type == INVOKE and e.value["phase"] == phase.name)
        assert int(rows[f"submit[{phase.name}]"]["Request Count"]) == invokes
    not_ok = collections.Counter(
        (e.value["phase"], e.value["reason_code"] if e.type == FAIL else None) for e in events if e.type in (FAIL, INFO)
    )
    assert int(rows["Aggregated"]["Failure Count"]) == sum(not_ok.values())
    for row in result.failures_rows:
        assert row["Name"].startswith("submit[")
        assert row["reason"] in REASONS or row["reason"].startswith("NO_ANSWER"), row
    refusals = collections.Counter()
    for row in result.failures_rows:
        if row["reason"] in REASONS:
            refusals[(row["Name"][len("submit["):-1], row["reason"])] += int(row["Occurrences"])
    assert refusals == collections.Counter({k: v for k, v in not_ok.items() if k[1] is not None})
    assert (out_dir / "locust_stats_history.csv").exists()
    html = (out_dir / "locust_report.html").read_text()  # Locust's own report, kept beside its CSVs
    assert "submit[" in html and "<html" in html.lower()
