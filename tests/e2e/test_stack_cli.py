"""The ``exoarmur`` CLI as a user runs it: stack up / status / down, Ctrl-C, and config errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import orjson
import pytest

from exoarmur_cli.procs import pid_is_ours

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
UP_TIMEOUT_S = 60.0
EXIT_STACK, EXIT_USAGE, EXIT_INTERRUPTED = 3, 2, 130


def exoarmur(*args: str) -> list[str]:
    script = Path(sys.executable).parent / "exoarmur"
    if script.exists():
        return [str(script), *args]
    return [sys.executable, "-m", "exoarmur_cli.main", *args]


def run(argv: list[str], timeout_s: float = 60.0) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


class StackUp:
    """``exoarmur stack up --dir D`` in its own session; killed with its recorded children on exit."""

    def __init__(self, stack_dir: Path, *extra: str) -> None:
        self.dir = stack_dir
        self.extra = extra
        self.out = stack_dir.parent / f"{stack_dir.name}-up.out"
        self.pids: dict[str, dict] = {}
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> "StackUp":
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(
                exoarmur("stack", "up", "--dir", str(self.dir), "--seed", "3", *self.extra), cwd=REPO,
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            )
        deadline = time.monotonic() + UP_TIMEOUT_S
        while "ready" not in self.output():
            assert self.proc.poll() is None, f"stack up exited {self.proc.returncode}:\n{self.output()}"
            assert time.monotonic() < deadline, f"stack up not ready in {UP_TIMEOUT_S}s:\n{self.output()}"
            time.sleep(0.05)
        self.pids = orjson.loads((self.dir / "pids.json").read_bytes())
        assert {"supervisor", "nats", "api", "effector", "cell-0", "cell-1"} <= set(self.pids)
        assert self.pids["supervisor"]["pid"] == self.proc.pid
        return self

    def output(self) -> str:
        return self.out.read_text(errors="replace")

    def alive(self) -> list[str]:
        return [name for name, rec in self.pids.items()
                if name != "supervisor" and pid_is_ours(rec["pid"], rec["create_time"])]

    def __exit__(self, *exc) -> None:  # whatever the test did, nothing of ours stays up
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        for name in self.alive():
            try:
                os.killpg(self.pids[name]["pid"], signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_stack_up_status_down(tmp_path):
    stack_dir = tmp_path / "stack"
    stack_dir.mkdir()
    (stack_dir / "capacity_source.json").write_text("{}")  # an earlier stack's, in the same folder
    with StackUp(stack_dir, "--no-measure-capacity") as up:  # the gates' declared limits
        assert "limits from the gates' declared policy" in up.output() and "sized" not in up.output()
        assert not (stack_dir / "capacity_source.json").exists()
        assert not set(up.pids) - {"supervisor", "nats", "api", "effector", "cell-0", "cell-1"}
        assert not [n for n in up.pids if n != "supervisor" and n not in up.alive()]
        assert "operator token:" in up.output()

        status = run(exoarmur("stack", "status", "--dir", str(stack_dir)))
        assert status.returncode == 0, status.stdout + status.stderr
        assert "api ready: True" in status.stdout
        as_json = run(exoarmur("stack", "status", "--dir", str(stack_dir), "--json"))
        assert as_json.returncode == 0, as_json.stdout + as_json.stderr
        found = json.loads(as_json.stdout)
        assert found["up"] is True and found["api_ready"] is True and found["recorded"] is True
        assert set(found["components"]) == set(up.pids) - {"supervisor"}
        assert all(c["up"] and c["pid"] == up.pids[n]["pid"] for n, c in found["components"].items())

        down = run(exoarmur("stack", "down", "--dir", str(stack_dir)))
        assert down.returncode == 0, down.stdout + down.stderr
        up.proc.wait(15)  # down waited for the supervisor, which stopped its children in order
        assert up.alive() == []
        assert not (stack_dir / "pids.json").exists()
        assert "Traceback" not in up.output()

        after = run(exoarmur("stack", "status", "--dir", str(stack_dir)))
        assert after.returncode == EXIT_STACK
        after_json = run(exoarmur("stack", "status", "--dir", str(stack_dir), "--json"))
        assert after_json.returncode == EXIT_STACK
        assert json.loads(after_json.stdout) == {"dir": str(stack_dir), "recorded": False, "components": {},
                                                 "api_ready": False, "up": False}


def test_sigint_stops_the_stack_and_exits_130(tmp_path):
    # Also: a stack sized from a bench file runs the limits the sizing rule gives for its held rate.
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 240.0}}))
    with StackUp(tmp_path / "stack", "--size-from", str(bench_file)) as up:
        assert up.alive()
        overrides = json.loads((tmp_path / "stack" / "stack.json").read_text())["overrides"]
        sized = {"rate_global_per_s": 120, "rate_global_burst": 240, "rate_tenant_per_s": 40,
                 "rate_tenant_burst": 80, "pending_intents": 240}
        assert {name: overrides[name] for name in sized} == sized
        assert overrides["approval_wait_ms"] == 2000  # what gate 5 declares: kept, not sized
        assert "held 240.0/s" in up.output() and "as the gates declare" not in up.output()
        # one account of the limits: the sized ones, then only the declared ones not sized
        assert not [line for line in up.output().splitlines() if line.startswith("limits from the gates'")]
        assert "other limits from the gates' declared policy: {'approval_wait_ms': 2000" in up.output()
        # what it was sized from, for a run against it to size its gates from (run-gates --stack-config)
        assert (tmp_path / "stack" / "capacity_source.json").read_bytes() == bench_file.read_bytes()
        os.killpg(up.proc.pid, signal.SIGINT)  # Ctrl-C: the terminal signals the process group
        assert up.proc.wait(30) == EXIT_INTERRUPTED
        assert up.alive() == []
        assert "stack stopped" in up.output()
        assert "Traceback" not in up.output()


def test_by_default_the_stack_is_sized_from_this_machines_kept_capacity_never_above_the_gates(tmp_path, monkeypatch):
    """A measurement kept from earlier today (held 3,000/s) sizes every admission number above the
    gates' declared ones, so each stays as declared; the measurement goes with the stack."""
    import time as clock

    from exoarmur_cli import capacity_probe

    monkeypatch.setenv("EXOARMUR_CACHE_DIR", str(tmp_path / "cache"))
    kept = capacity_probe.cache_file(1)
    kept.parent.mkdir(parents=True)
    kept.write_text(json.dumps({"admission": {"held_per_s": 3000.0}, "probe": {"measured_at_s": clock.time()}}))
    with StackUp(tmp_path / "stack") as up:
        overrides = json.loads((tmp_path / "stack" / "stack.json").read_text())["overrides"]
        assert {name: overrides[name] for name in ("rate_global_per_s", "rate_tenant_per_s", "pending_intents")} == {
            "rate_global_per_s": 150, "rate_tenant_per_s": 50, "pending_intents": 300}  # as gates 6 and 8 declare
        said = " ".join(up.output().split())
        assert "measured earlier" in said and "held 3,000.0/s" in said and "as the gates declare" in said, said
        assert "measuring this machine's capacity" not in said
        assert (tmp_path / "stack" / "capacity_source.json").read_bytes() == kept.read_bytes()


@pytest.mark.parametrize("content, says", [
    (None, "No such file"), ("{not json", "--size-from"), ('{"figures": {}}', "no admission section"),
    ('{"admission": {"held_per_s": null}}', "held no rate"),
])
def test_a_bad_size_from_file_exits_2_and_starts_nothing(tmp_path, content, says):
    bench_file = tmp_path / "bench.json"
    if content is not None:
        bench_file.write_text(content)
    result = run(exoarmur("stack", "up", "--dir", str(tmp_path / "stack"), "--size-from", str(bench_file)))
    assert result.returncode == EXIT_USAGE, result.stdout + result.stderr
    said = " ".join((result.stdout + result.stderr).split())  # the console folds long lines
    assert "CONFIG_INVALID" in said and says in said, said
    assert "Traceback" not in said
    assert not (tmp_path / "stack" / "pids.json").exists()


def test_a_capacity_both_measured_and_read_from_a_file_exits_2(tmp_path):
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 240.0}}))
    result = run(exoarmur("stack", "up", "--dir", str(tmp_path / "stack"), "--size-from", str(bench_file),
                          "--measure-capacity"))
    assert result.returncode == EXIT_USAGE and "give one of them" in result.stderr, result.stdout + result.stderr
    assert not (tmp_path / "stack" / "pids.json").exists()


def test_status_of_an_empty_dir_exits_3(tmp_path):
    status = run(exoarmur("stack", "status", "--dir", str(tmp_path)))
    assert status.returncode == EXIT_STACK, status.stdout + status.stderr


def test_a_component_with_a_missing_config_exits_2_without_a_traceback():
    result = run([sys.executable, "-m", "exoarmur", "api", "--config", "/nonexistent"])
    assert result.returncode == EXIT_USAGE
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "CONFIG_INVALID" in lines[0], result.stderr
    assert "Traceback" not in result.stderr + result.stdout
