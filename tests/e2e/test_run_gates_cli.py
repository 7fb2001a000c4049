"""``exoarmur run-gates`` as a user runs it: a subprocess, its exit code, its stdout/stderr, its bundle.

Every run gets its own ``--out`` and its own TMPDIR under the test's tmp path, so the embedded
stacks a run starts (``tempfile.mkdtemp``) live there too: "no process of ours survives" is then
checked both as "no new child of this test" and as "no process whose command line names the
test's tmp path". One green quick run (gates 3 and 4) is shared by the module.
"""

from __future__ import annotations

import hashlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import orjson
import psutil
import pytest

from exoarmur import stackconfig
from exoarmur_cli.bundle import FILES, FINAL, PASS_FAIL
from exoarmur_cli.procs import pid_is_ours

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
EXIT_OK, EXIT_RED, EXIT_USAGE, EXIT_STACK, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
RUN_TIMEOUT_S = 150.0
UP_TIMEOUT_S = 60.0
GRACE_S = 10.0  # how long a stopped process may take to disappear
STACK_LINE = re.compile(r"starting the embedded stack in (\S+)")


# --- running the CLI ---------------------------------------------------------------------------


def exoarmur(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "exoarmur"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "exoarmur_cli.main"]
    return argv + [str(a) for a in args]


def env_for(tmp: Path, columns: int = 400) -> dict[str, str]:
    """TMPDIR inside the test's tmp path (the run's stacks land there); COLUMNS wide enough that
    rich never folds a progress line we parse (usage tests pin it to a narrow terminal instead)."""
    tmpdir = tmp / "tmp"
    tmpdir.mkdir(parents=True, exist_ok=True)
    return {**os.environ, "TMPDIR": str(tmpdir), "COLUMNS": str(columns)}


def run(tmp: Path, *args: str, columns: int = 400, timeout_s: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
    return subprocess.run(exoarmur(*args), cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL, env=env_for(tmp, columns))


def spawn(tmp: Path, log: Path, *args: str) -> subprocess.Popen:
    """Started in its own session, as a terminal would run it (Ctrl-C goes to its whole group)."""
    with open(log, "wb") as out:
        return subprocess.Popen(exoarmur(*args), cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True, env=env_for(tmp))


def wait_for(predicate, timeout_s: float, what: str, proc: subprocess.Popen | None = None, log: Path | None = None):
    deadline = time.monotonic() + timeout_s
    while not (value := predicate()):
        detail = log.read_text(errors="replace")[-3000:] if log and log.exists() else ""
        assert proc is None or proc.poll() is None, f"exited {proc.returncode} before {what}:\n{detail}"
        assert time.monotonic() < deadline, f"no {what} within {timeout_s:.0f}s:\n{detail}"
        time.sleep(0.05)
    return value


def stop_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(10)


# --- processes left behind ---------------------------------------------------------------------


def _alive(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _key(proc: psutil.Process) -> tuple[int, float]:
    try:
        return proc.pid, proc.create_time()
    except psutil.Error:
        return proc.pid, 0.0


def descendants() -> dict[tuple[int, float], psutil.Process]:
    return {_key(p): p for p in psutil.Process().children(recursive=True)}


def mentioning(text: str) -> list[psutil.Process]:
    """Live processes (not this one) whose command line contains ``text``."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if proc.pid != os.getpid() and text in " ".join(proc.info["cmdline"] or ()) and _alive(proc):
                found.append(proc)
        except psutil.Error:
            pass
    return found


def leftovers(before: set[tuple[int, float]], marks: tuple[str, ...],
              watched: list[psutil.Process] = ()) -> list[psutil.Process]:
    """Processes of ours still alive after GRACE_S: new children, named marks, or watched ones."""
    deadline = time.monotonic() + GRACE_S
    while True:
        left = {_key(p): p for k, p in descendants().items() if k not in before and _alive(p)}
        left.update({_key(p): p for mark in marks for p in mentioning(mark)})
        left.update({_key(p): p for p in watched if _alive(p)})
        if not left or time.monotonic() > deadline:
            return list(left.values())
        time.sleep(0.1)


def cmdline(proc: psutil.Process) -> str:
    try:
        return " ".join(proc.cmdline())
    except psutil.Error:
        return "(gone)"


def describe(procs: list[psutil.Process]) -> list[str]:
    return [f"{proc.pid}: {cmdline(proc)}" for proc in procs]


def assert_nothing_left(before: set[tuple[int, float]], *marks: str, watched: list[psutil.Process] = ()) -> None:
    """Fail naming each survivor, after killing it (by pid: they are ours) so none outlives the test."""
    left = leftovers(before, marks, watched)
    names = describe(left)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            pass
    assert not left, f"processes left behind: {names}"


@pytest.fixture
def nothing_left(tmp_path: Path) -> Iterator[None]:
    before = set(descendants())
    yield
    assert_nothing_left(before, f"{tmp_path}{os.sep}")


# --- reading a bundle --------------------------------------------------------------------------


def sha256_of_every_file(bundle: Path) -> dict[str, str]:
    """Computed here, independently of exoarmur_cli.bundle: every file but the two verdict files and
    the report (a view of the evidence whose own digest 13 keeps under "report", outside the root)."""
    return {p.relative_to(bundle).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(bundle.rglob("*")) if p.is_file() and p.name not in (FINAL, PASS_FAIL)
            and p.relative_to(bundle).as_posix() != "index.html"}


def root_of(digests: dict[str, str]) -> str:
    """The README's root digest: sha256 over the sorted sha256sum lines."""
    return hashlib.sha256("".join(sorted(f"{sha}  {path}\n" for path, sha in digests.items())).encode()).hexdigest()


def gate_lines(pass_fail: str) -> dict[int, str]:
    found = re.findall(r"^G(\d+) .*?(GREEN|RED|INCOMPLETE)$", pass_fail, re.MULTILINE)
    return {int(g): verdict for g, verdict in found}


def criteria_of(gate_id: int) -> list[str]:
    [path] = (REPO / "gates").glob(f"g{gate_id}_*.toml")
    return [c["expr"] for c in tomllib.loads(path.read_text())["criteria"]]


def no_traceback(done: subprocess.CompletedProcess | str) -> None:
    text = done if isinstance(done, str) else done.stdout + done.stderr
    assert "Traceback" not in text, text[-3000:]


def closed_port() -> int:
    with socket.socket() as sock:  # bound then released: nothing listens there
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- 1. a green run ----------------------------------------------------------------------------


class Green:
    def __init__(self, out: Path, first: subprocess.CompletedProcess, second: subprocess.CompletedProcess,
                 junit: Path) -> None:
        self.out, self.first, self.second, self.junit = out, first, second, junit
        self.bundle = out / "reality_run_001"


@pytest.fixture(scope="module")
def green(tmp_path_factory: pytest.TempPathFactory) -> Green:
    tmp = tmp_path_factory.mktemp("green")
    out, junit = tmp / "out", tmp / "gates.xml"
    before = set(descendants())
    first = run(tmp, "run-gates", "--no-measure-capacity", "--profile", "quick", "--gate", "3", "--gate", "4", "--json",
                "--junit-xml", junit, "--out", out)
    assert first.returncode == EXIT_OK, first.stdout[-3000:] + first.stderr[-3000:]
    second = run(tmp, "run-gates", "--no-measure-capacity", "--profile", "quick", "--gate", "3", "--out", out)
    assert_nothing_left(before, f"{tmp}{os.sep}")
    return Green(out, first, second, junit)


def test_green_run_exits_0_and_prints_json_for_both_gates(green: Green) -> None:
    no_traceback(green.first)
    result = orjson.loads(green.first.stdout)  # stdout is the JSON alone; progress goes to stderr
    assert result["overall"] == "GREEN"
    assert Path(result["bundle"]) == green.bundle
    assert [g["gate_id"] for g in result["gates"]] == [3, 4]
    assert {g["verdict"] for g in result["gates"]} == {"GREEN"}
    for gate in result["gates"]:
        assert [c["expr"] for c in gate["criteria"]] == criteria_of(gate["gate_id"])
        assert all(c["passed"] for c in gate["criteria"]) and gate["scenarios_missing"] == []
    assert set(result["durations_s"]) == {"replay", "deployment"}
    assert re.fullmatch(r"[0-9a-f]{64}", result["root_digest"])


def test_green_bundle_holds_exactly_its_files_each_hashed_into_13(green: Green) -> None:
    bundle = green.bundle
    assert sorted(os.listdir(bundle)) == sorted([*FILES, "raw", "index.html"])
    assert (bundle / "raw").is_dir() and (bundle / "raw" / "history.jsonl").is_file()

    pass_fail = (bundle / PASS_FAIL).read_text()
    assert gate_lines(pass_fail) == {3: "GREEN", 4: "GREEN"}, pass_fail
    assert len(re.findall(r"^G\d+ ", pass_fail, re.MULTILINE)) == 2, pass_fail  # one line per selected gate
    assert "FINAL: GREEN" in pass_fail.splitlines() and "INCOMPLETE" not in pass_fail
    [root] = re.findall(r"^ROOT DIGEST: ([0-9a-f]{64})$", pass_fail, re.MULTILINE)

    final = orjson.loads((bundle / FINAL).read_bytes())
    digests = sha256_of_every_file(bundle)
    assert final["files"] == digests  # every file, raw/ included, and nothing else
    assert any(name.startswith("raw/") for name in digests)
    assert final["status"] == "GREEN"
    assert root == final["root_digest"] == root_of(digests) == orjson.loads(green.first.stdout)["root_digest"]
    assert final["report"]["sha256"] == hashlib.sha256((bundle / "index.html").read_bytes()).hexdigest()


def test_junit_xml_has_one_passing_testcase_per_criterion(green: Green) -> None:
    suites = ET.parse(green.junit).getroot()
    cases = suites.findall(".//testcase")
    assert suites.get("failures") == "0" and suites.get("errors") == "0"
    assert not suites.findall(".//failure") and not suites.findall(".//skipped")
    by_gate = {(case.get("classname"), case.get("name")) for case in cases}
    expected = {(f"G{g}_{slug}", expr) for g, slug in ((3, "replay_equivalence"), (4, "minimal_deployment"))
                for expr in criteria_of(g)}
    assert len(cases) == len(expected) and by_gate == expected
    assert suites.get("tests") == str(len(expected))


def test_a_second_run_in_the_same_out_lands_in_reality_run_002(green: Green) -> None:
    assert green.second.returncode == EXIT_OK, green.second.stderr[-3000:]
    assert f"bundle: {green.out / 'reality_run_002'}" in green.second.stderr
    assert sorted(p.name for p in green.out.iterdir()) == ["reality_run_001", "reality_run_002"]
    second = (green.out / "reality_run_002" / PASS_FAIL).read_text()
    assert gate_lines(second) == {3: "GREEN"} and "FINAL: GREEN" in second
    assert gate_lines((green.bundle / PASS_FAIL).read_text()) == {3: "GREEN", 4: "GREEN"}  # the first is untouched


# --- 2. usage errors ---------------------------------------------------------------------------


@pytest.mark.parametrize("args, says", [
    (["--profile", "medium"], "--profile must be quick or full"),
    (["--gate", "9"], "no gate 9"),
    (["--inject-defect", "no-such-thing"], "unknown defect 'no-such-thing'"),
    (["--nats-url", "nats://127.0.0.1:4222"], "needs both --nats-url and --api-url"),
    (["--load-workers", "3"], "the embedded stack's 500 peers: 500 users (one per peer) do not divide evenly among 3 Locust workers"),
    (["--load-workers", "2", "--load-remote-workers", "1"], "do not divide evenly among 3 Locust workers"),
    (["--load-remote-workers", "1", "--load-master", "host:port"], "--load-master must be HOST or HOST:PORT"),
    (["--measure-capacity", "--capacity-from", "bench.json"], "give one of them"),
    (["--measure-capacity", "--nats-url", "nats://127.0.0.1:4222", "--api-url", "http://127.0.0.1:8080"],
     "size an external one with --capacity-from"),
], ids=["profile", "gate", "defect", "half-external", "load-workers", "remote-workers", "load-master",
        "measure-and-file", "measure-external"])
def test_usage_errors_exit_2_with_one_line(tmp_path: Path, nothing_left, args: list[str], says: str) -> None:
    out = tmp_path / "out"
    done = run(tmp_path, "run-gates", *args, "--out", out, columns=80, timeout_s=60)  # a narrow terminal
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr  # never folded over lines, whatever the terminal width
    assert lines[0].startswith("error CONFIG_INVALID: ") and says in lines[0], lines[0]
    assert done.stdout == ""
    assert not out.exists()  # refused before any bundle: a typo leaves no reality_run_NNN behind


# --- 3. an external stack that is not there ----------------------------------------------------


def test_unreachable_external_stack_exits_3_and_marks_the_bundle_incomplete(tmp_path: Path, nothing_left) -> None:
    config = stackconfig.generate(tmp_path / "stackcfg", tenants=2, nodes_per_tenant=2, peers_per_tenant=2)
    out = tmp_path / "out"
    done = run(tmp_path, "run-gates", "--no-measure-capacity", "--profile", "quick", "--gate", "3",
               "--nats-url", f"nats://127.0.0.1:{closed_port()}", "--api-url", f"http://127.0.0.1:{closed_port()}",
               "--stack-config", Path(config.stack_dir) / "stack.json", "--out", out, columns=80, timeout_s=60)
    assert done.returncode == EXIT_STACK, done.stdout + done.stderr
    no_traceback(done)
    errors = [line for line in done.stderr.splitlines() if line.startswith("error ")]
    assert len(errors) == 1 and errors[0].startswith("error STACK_UNAVAILABLE: "), done.stderr
    assert "starting the embedded stack" not in done.stderr  # it never fell back to a stack of its own

    bundle = out / "reality_run_001"
    pass_fail = (bundle / PASS_FAIL).read_text()
    assert pass_fail.startswith("INCOMPLETE") and "STACK_UNAVAILABLE" in pass_fail.splitlines()[0], pass_fail
    assert "FINAL: INCOMPLETE" in pass_fail.splitlines() and "GREEN" not in pass_fail
    assert "EXIT CODE: 3" in pass_fail.splitlines()
    final = orjson.loads((bundle / FINAL).read_bytes())
    assert final["status"] == "INCOMPLETE" and final["exit_code"] == EXIT_STACK and final["gates"] == []
    assert final["files"] == sha256_of_every_file(bundle)  # whatever evidence exists is still hashed


# --- 4. an external stack that is there, but gives no process control ---------------------------


def test_external_stack_runs_what_it_can_and_is_never_green(tmp_path: Path, nothing_left) -> None:
    stack_dir, up_log, out = tmp_path / "stack", tmp_path / "stack-up.out", tmp_path / "out"
    bench_file = tmp_path / "bench.json"  # a roomy machine: every limit stays as the gates declare
    bench_file.write_text(orjson.dumps({"admission": {"held_per_s": 3000.0}}).decode())
    up = spawn(tmp_path, up_log, "stack", "up", "--dir", stack_dir, "--size-from", bench_file)
    try:
        wait_for(lambda: "ready in" in up_log.read_text(errors="replace"), UP_TIMEOUT_S, "'ready in'", up, up_log)
        config = stackconfig.load(stack_dir)
        done = run(tmp_path, "run-gates", "--profile", "quick", "--gate", "3", "--gate", "4", "--json",
                   "--nats-url", config.nats_url, "--api-url", config.api_url, "--stack-config", stack_dir,
                   "--out", out)
        assert done.returncode == EXIT_STACK, done.stdout[-3000:] + done.stderr[-3000:]  # INCOMPLETE: never 0
        no_traceback(done)
        assert "starting the embedded stack" not in done.stderr
        # the gates are sized from what the stack was sized from, which it keeps beside its config
        assert "the gates are sized the same way" in done.stderr, done.stderr
        raw = out / "reality_run_001" / "raw"
        assert (raw / "capacity_source.json").read_bytes() == bench_file.read_bytes()
        assert orjson.loads((raw / "run_params.json").read_bytes())["capacity"]["file"] == "capacity_source.json"
        assert re.search(r"scenario deployment NOT RUN: needs process control", done.stderr), done.stderr

        result = orjson.loads(done.stdout)
        assert result["overall"] == "INCOMPLETE"
        verdicts = {g["gate_id"]: g for g in result["gates"]}
        assert verdicts[3]["verdict"] == "GREEN"  # replay needs no process control
        assert verdicts[4]["verdict"] == "INCOMPLETE" and verdicts[4]["scenarios_missing"] == ["deployment"]

        pass_fail = (out / "reality_run_001" / PASS_FAIL).read_text()
        assert gate_lines(pass_fail) == {3: "GREEN", 4: "INCOMPLETE"}, pass_fail
        assert "  - scenario not run: deployment" in pass_fail.splitlines()
        assert "FINAL: INCOMPLETE" in pass_fail.splitlines() and "FINAL: GREEN" not in pass_fail
        final = orjson.loads((out / "reality_run_001" / FINAL).read_bytes())
        assert final["status"] == "INCOMPLETE" and final["run"]["external_stack"] is True
        # The bundle says that access control was on and for whom, never a secret.
        assert final["run"]["stack"]["auth"]["nats_users"] == sorted(stackconfig.NATS_ROLES)
        secrets = [config.operator_token, *config.nats_passwords.values(), *config.effector_tokens.values(),
                   *(peer.token for peer in config.peers.values())]
        for path in (out / "reality_run_001").rglob("*"):
            if path.is_file():
                content = path.read_bytes()
                assert not any(secret.encode() in content for secret in secrets), path

        # the external stack was left as it was found: all still up
        pids = orjson.loads((stack_dir / "pids.json").read_bytes())
        assert all(pid_is_ours(rec["pid"], rec["create_time"]) for rec in pids.values()), pids
    finally:
        down = run(tmp_path, "stack", "down", "--dir", stack_dir, timeout_s=60)
        try:
            up.wait(20)
        finally:
            stop_group(up)
    assert down.returncode == 0, down.stdout + down.stderr
    no_traceback(up_log.read_text(errors="replace"))


# --- 5. Ctrl-C -----------------------------------------------------------------------------------


def test_sigint_exits_130_marks_the_bundle_incomplete_and_leaves_no_process(tmp_path: Path, nothing_left) -> None:
    out, log = tmp_path / "out", tmp_path / "run-gates.out"
    bundle = out / "reality_run_001"
    proc = spawn(tmp_path, log, "run-gates", "--no-measure-capacity", "--profile", "quick", "--out", out)
    try:
        wait_for(lambda: (bundle / "raw" / "history.jsonl").exists(), 60, "raw/history.jsonl", proc, log)
        stack_dir = wait_for(lambda: STACK_LINE.search(log.read_text(errors="replace")), 60,
                             "'starting the embedded stack in'", proc, log)[1]
        time.sleep(3)  # well into the run: stack up, a scenario under way
        assert proc.poll() is None, log.read_text(errors="replace")[-3000:]
        ours = list(psutil.Process(proc.pid).children(recursive=True))
        assert any(stack_dir in cmdline(p) for p in ours)  # its stack is up
        assert (bundle / PASS_FAIL).read_text().startswith("INCOMPLETE")  # and it says so while running

        began = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the whole process group
        code = proc.wait(30)
        took = time.monotonic() - began
    finally:
        stop_group(proc)
    text = log.read_text(errors="replace")
    assert code == EXIT_INTERRUPTED, text[-3000:]
    assert took < 30
    no_traceback(text)
    assert f"interrupted: bundle {bundle} marked INCOMPLETE" in text

    pass_fail = (bundle / PASS_FAIL).read_text()
    assert pass_fail.startswith("INCOMPLETE: interrupted"), pass_fail
    assert "FINAL: INCOMPLETE" in pass_fail.splitlines() and "EXIT CODE: 130" in pass_fail.splitlines()
    final = orjson.loads((bundle / FINAL).read_bytes())
    assert final["status"] == "INCOMPLETE" and final["exit_code"] == EXIT_INTERRUPTED

    # nothing of that run survives: not its nats-server, api, cells, effector, nor a nested `stack up`,
    # nor its stack's temp dir; the components' logs are kept in the bundle
    assert_nothing_left(set(), stack_dir, watched=ours)
    assert not Path(stack_dir).exists() and not list((tmp_path / "tmp").glob("exoarmur-run-*"))
    assert (bundle / "raw" / "logs" / "api.log").is_file()


# --- 6. an injected defect -----------------------------------------------------------------------


def test_an_injected_defect_turns_g6_red_and_is_named(tmp_path: Path, nothing_left) -> None:
    out = tmp_path / "out"
    done = run(tmp_path, "run-gates", "--no-measure-capacity",
               "--profile", "quick", "--gate", "6", "--inject-defect", "tenant-leak",
               "--json", "--out", out)
    assert done.returncode == EXIT_RED, done.stdout[-3000:] + done.stderr[-3000:]
    no_traceback(done)
    assert "DEFECTS INJECTED: tenant-leak" in done.stderr
    stack_dir = STACK_LINE.search(done.stderr)[1]

    result = orjson.loads(done.stdout)
    assert result["overall"] == "RED" and [g["verdict"] for g in result["gates"]] == ["RED"]
    failed = [c["expr"] for c in result["gates"][0]["criteria"] if not c["passed"]]
    assert "cross_tenant_reads_leaked == 0" in failed  # the leak itself, measured
    judged = {c["expr"]: c for c in result["gates"][0]["criteria"]}
    # every read surface the live OpenAPI document declared was probed: the leak is not for want of probes
    assert judged["cross_tenant_read_endpoints_unprobed == 0"]["passed"]
    assert judged["cross_tenant_read_endpoints_probed >= 2"]["value"] >= 2

    bundle = out / "reality_run_001"
    pass_fail = (bundle / PASS_FAIL).read_text()
    assert gate_lines(pass_fail) == {6: "RED"}, pass_fail
    assert "NOT A CLEAN RUN" in pass_fail.splitlines() and "DEFECTS INJECTED: tenant-leak" in pass_fail.splitlines()
    assert "FINAL: RED" in pass_fail.splitlines()
    assert orjson.loads((bundle / FINAL).read_bytes())["defects_injected"] == ["tenant-leak"]
    assert_nothing_left(set(), stack_dir)


# --- 7. the user's own gate and scenario files ---------------------------------------------------


def copied(tmp: Path, kind: str) -> Path:
    """A copy of the shipped ``gates/`` or ``scenarios/`` folder, for a test to edit."""
    target = tmp / f"my-{kind}"
    target.mkdir()
    for path in (REPO / kind).glob("*.toml"):
        (target / path.name).write_text(path.read_text())
    return target


def assert_refused(tmp: Path, done: subprocess.CompletedProcess, *says: str) -> None:
    """Exit 2, one CONFIG_INVALID line naming what is wrong, no traceback, and no bundle."""
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    no_traceback(done)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error CONFIG_INVALID: "), done.stderr
    assert all(part in lines[0] for part in says), lines[0]
    assert not (tmp / "out").exists()


def test_a_misspelt_scenario_key_is_refused_before_a_bundle(tmp_path: Path, nothing_left) -> None:
    scenarios = copied(tmp_path, "scenarios")
    text = (scenarios / "deployment.toml").read_text()
    (scenarios / "deployment.toml").write_text(text.replace("ready_timeout_s =", "ready_timeuot_s ="))
    done = run(tmp_path, "run-gates", "--no-measure-capacity",
               "--gate", "4", "--profile", "quick", "--scenarios-dir", scenarios,
               "--out", tmp_path / "out", columns=80, timeout_s=60)
    assert_refused(tmp_path, done, "deployment.toml", "[quick]", "missing ['ready_timeout_s']",
                   "unknown ['ready_timeuot_s']")


def test_a_gate_file_with_a_bad_criterion_is_refused_before_a_bundle(tmp_path: Path, nothing_left) -> None:
    gates = copied(tmp_path, "gates")
    [g4] = gates.glob("g4_*.toml")
    g4.write_text(g4.read_text().replace('expr = "cold_start_ready_s < 20"', 'expr = "cold_start_ready_s << 20"'))
    done = run(tmp_path, "run-gates", "--no-measure-capacity",
               "--gate", "4", "--profile", "quick", "--gates-dir", gates,
               "--out", tmp_path / "out", columns=80, timeout_s=60)
    assert_refused(tmp_path, done, "g4_minimal_deployment.toml criteria[0]", "'cold_start_ready_s << 20'",
                   "is not '<metric> <op> <number>'")


@pytest.mark.parametrize("option, says", [("--gates-dir", "gates directory not found"),
                                          ("--scenarios-dir", "scenarios directory not found")])
def test_a_missing_directory_is_refused_before_a_bundle(tmp_path: Path, nothing_left, option: str, says: str) -> None:
    missing = tmp_path / "no-such-folder"
    done = run(tmp_path, "run-gates", "--no-measure-capacity", "--gate", "4", "--profile", "quick", option, missing,
               "--out", tmp_path / "out", columns=80, timeout_s=60)
    assert_refused(tmp_path, done, str(missing), says)


def test_own_thresholds_are_the_ones_judged_and_kept_in_the_bundle(tmp_path: Path, nothing_left) -> None:
    gates = copied(tmp_path, "gates")
    for other in gates.glob("*.toml"):
        if not other.name.startswith("g4_"):
            other.unlink()
    [g4] = gates.glob("g4_*.toml")
    g4.write_text(g4.read_text().replace('expr = "cold_start_ready_s < 20"', 'expr = "cold_start_ready_s < 0.001"'))
    out = tmp_path / "out"
    done = run(tmp_path, "run-gates", "--no-measure-capacity",
               "--profile", "quick", "--gates-dir", gates, "--json", "--out", out)
    assert done.returncode == EXIT_RED, done.stdout[-3000:] + done.stderr[-3000:]
    no_traceback(done)
    [gate] = orjson.loads(done.stdout)["gates"]
    assert gate["gate_id"] == 4 and gate["verdict"] == "RED"
    assert [c["expr"] for c in gate["criteria"] if not c["passed"]] == ["cold_start_ready_s < 0.001"]
    kept = out / "reality_run_001" / "raw" / "gates"
    assert [p.name for p in kept.iterdir()] == [g4.name] and (kept / g4.name).read_text() == g4.read_text()


# --- 8. interrupted from outside: SIGINT or SIGTERM to the harness alone -----------------------------


@pytest.mark.parametrize("sig, during", [(signal.SIGINT, "load"), (signal.SIGTERM, "backpressure")],
                         ids=["sigint-during-load", "sigterm-during-backpressure"])
def test_a_signal_to_the_harness_alone_ends_the_run_quietly(tmp_path: Path, nothing_left, sig: int,
                                                            during: str) -> None:
    """Only the harness is signalled (not its group, as a supervisor or `kill` would): it must stop
    every task and every process it started itself, mark the bundle INCOMPLETE and exit 130, with no
    traceback and no "Task exception was never retrieved" from tasks outliving the history."""
    out, log = tmp_path / "out", tmp_path / "run-gates.out"
    bundle = out / "reality_run_001"
    proc = spawn(tmp_path, log, "run-gates", "--no-measure-capacity", "--gate", "8", "--profile", "quick", "--out", out)
    try:
        wait_for(lambda: f"scenario {during} ..." in log.read_text(errors="replace"), 90,
                 f"'scenario {during} ...'", proc, log)
        time.sleep(2)  # under way: submissions in flight (and Locust running, for load)
        started = list(psutil.Process(proc.pid).children(recursive=True))
        assert started, "the run had started no process"
        os.kill(proc.pid, sig)
        code = proc.wait(60)
    finally:
        stop_group(proc)
    text = log.read_text(errors="replace")
    assert code == EXIT_INTERRUPTED, text[-3000:]
    for noise in ("Traceback", "Task exception", "Exception ignored", "write to closed file"):
        assert noise not in text, text[-3000:]
    assert f"interrupted: bundle {bundle} marked INCOMPLETE" in text
    pass_fail = (bundle / PASS_FAIL).read_text()
    assert pass_fail.startswith("INCOMPLETE: interrupted") and "EXIT CODE: 130" in pass_fail.splitlines()
    assert_nothing_left(set(), f"{tmp_path}{os.sep}", watched=started)


def test_a_load_worker_without_a_stack_config_exits_2_with_a_reason(tmp_path: Path) -> None:
    done = run(tmp_path, "load-worker", "--master-host", "127.0.0.1", "--master-port", "5557",
               "--stack-config", tmp_path / "nowhere", timeout_s=60)
    assert done.returncode == EXIT_USAGE, done.stdout + done.stderr
    no_traceback(done)
    assert done.stderr.startswith("error CONFIG_INVALID: cannot read stack config"), done.stderr


# --- 8. the self-test, two defect runs at a time ---------------------------------------------------


def test_sigint_stops_a_two_at_a_time_self_test_and_starts_no_further_run(tmp_path: Path, nothing_left) -> None:
    """Every worker gets the Ctrl-C too, and the pool has already handed each its next run: that
    run must not start a fresh stack (it did, before the workers shared a stop flag)."""
    out, log = tmp_path / "out", tmp_path / "self-test.out"
    proc = spawn(tmp_path, log, "self-test", "--no-measure-capacity", "--defect", "tenant-leak", "--defect",
                 "no-breaker", "--defect", "killswitch-ignored", "--clean-runs", "0", "--jobs", "2", "--out", out)
    try:
        wait_for(lambda: len(list(out.glob("reality_run_*/raw/history.jsonl"))) == 2, UP_TIMEOUT_S,
                 "two defect runs under way", proc, log)
        time.sleep(2)
        began = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(30)
        took = time.monotonic() - began
    finally:
        stop_group(proc)
    text = log.read_text(errors="replace")
    assert code == EXIT_INTERRUPTED and took < 30, text[-3000:]
    no_traceback(text)
    bundles = sorted(out.glob("reality_run_*"))
    assert len(bundles) == 2, bundles  # the third defect never started
    for bundle in bundles:
        assert (bundle / PASS_FAIL).read_text().startswith("INCOMPLETE"), bundle
    assert not list((tmp_path / "tmp").glob("exoarmur-run-*"))  # both stacks' temp dirs went


def test_retry_intents_a_breaker_refused_unattempted_are_replaced(tmp_path: Path, nothing_left) -> None:
    # Every call fails, so each cell's breaker opens after its first five calls; the intents are sent
    # one at a time, so most reach a cell after that and are refused unattempted. (Sent four at a time
    # with three calls in five failing, all 24 were in flight before either breaker opened, once in
    # CI.) The refused intents show no retry, so the scenario sends as many again once the breakers
    # have closed, up to its last round.
    scenarios, gates = copied(tmp_path, "scenarios"), copied(tmp_path, "gates")
    retry = (scenarios / "retry.toml").read_text()
    retry = retry.replace("error_rate = 0.1", "error_rate = 1.0").replace("intents = 60", "intents = 24")
    retry = retry.replace("concurrency = 4", "concurrency = 1")
    (scenarios / "retry.toml").write_text(retry.replace("max_rounds = 3", "max_rounds = 4"))
    [g7] = gates.glob("g7_*.toml")  # only the retry scenario: this test reads its history, not the verdict
    g7.write_text(re.sub(r"(?m)^scenarios = .*$", 'scenarios = ["retry"]', g7.read_text()))
    run(tmp_path, "run-gates", "--no-measure-capacity",
        "--gate", "7", "--profile", "quick", "--seed", "3", "--scenarios-dir", scenarios,
        "--gates-dir", gates, "--out", tmp_path / "out", timeout_s=120)
    history = (tmp_path / "out" / "reality_run_001" / "raw" / "history.jsonl").read_bytes().splitlines()
    rounds = [row["value"] for row in map(orjson.loads, history) if row["f"] == "retry_round"]
    assert rounds and rounds[0]["submitted"] == 24 and rounds[0]["refused_breaker_open"] > 0, rounds
    for before, after in zip(rounds, rounds[1:]):  # each round replaces exactly what the last lost
        assert after["submitted"] == before["refused_breaker_open"] + before["refused_at_door"], rounds
    assert rounds[-1]["refused_breaker_open"] == 0 or len(rounds) == 4, rounds


def test_measured_capacity_sizes_the_run_and_is_kept_for_the_next(tmp_path: Path, nothing_left) -> None:
    env = {**env_for(tmp_path), "EXOARMUR_CACHE_DIR": str(tmp_path / "cache" / "exoarmur")}

    def gate_4() -> subprocess.CompletedProcess:
        return subprocess.run(exoarmur("run-gates", "--gate", "4", "--profile", "quick",  # measured by default
                                       "--out", str(tmp_path / "out")),
                              cwd=REPO, capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, env=env)

    first = gate_4()
    assert first.returncode == 0, first.stdout + first.stderr
    [kept] = (tmp_path / "cache" / "exoarmur").glob("capacity-n1-*.json")
    measured = orjson.loads(kept.read_bytes())
    held = measured["admission"]["held_per_s"]
    assert held > 0 and measured["figures"]["admission_ladder"] and "measuring this machine's capacity" in first.stderr
    second = gate_4()
    for bundle in ("reality_run_001", "reality_run_002"):
        raw = tmp_path / "out" / bundle / "raw"
        capacity = orjson.loads((raw / "run_params.json").read_bytes())["capacity"]
        assert capacity["file"] == kept.name and capacity["held_per_s"] == held
        assert (raw / "capacity_source.json").read_bytes() == kept.read_bytes()  # the evidence, as read
    assert second.returncode == 0 and "measured earlier" in second.stderr, second.stderr
    assert "measuring this machine's capacity" not in second.stderr
