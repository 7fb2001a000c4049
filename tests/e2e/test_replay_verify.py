"""``exoarmur replay-verify`` as a cold reviewer runs it, on a bundle a real run just wrote.

One quick gate-3 run per module (a few seconds); each test tampers with its own copy.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from exoarmur.contracts import AuditRecordV1
from exoarmur_cli.bundle import FINAL, PASS_FAIL, file_digests, root_digest
from exoarmur_cli.verify import expected_pass_fail

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
AUDIT = "raw/audit_export.jsonl"
EXIT_OK, EXIT_DIFFERS, EXIT_USAGE = 0, 1, 2


def exoarmur(*args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "exoarmur"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "exoarmur_cli.main"]
    return subprocess.run(argv + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def recorded_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    run = exoarmur("run-gates", "--no-measure-capacity",
                   "--profile", "quick", "--gate", "3", "--out", str(out), timeout_s=180)
    assert run.returncode in (0, 1), run.stderr[-2000:]  # green or red: either way a finished bundle
    return out / "reality_run_001"


@pytest.fixture
def bundle(recorded_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(recorded_bundle, tmp_path / "reality_run_001"))


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def rehash(path: Path) -> None:
    """A careful forger: every file re-hashed into 13 (and the root), PASS_FAIL rewritten to match."""
    final = orjson.loads((path / FINAL).read_bytes())
    final["files"] = file_digests(path)
    final["root_digest"] = root_digest(final["files"])
    (path / FINAL).write_bytes(orjson.dumps(final, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (path / PASS_FAIL).write_text(expected_pass_fail(final))


def audit_rows(path: Path) -> list[dict]:
    return [orjson.loads(line) for line in (path / AUDIT).read_bytes().splitlines()]


def write_rows(path: Path, rows: list[dict]) -> None:
    (path / AUDIT).write_bytes(b"".join(orjson.dumps(r, option=orjson.OPT_SORT_KEYS) + b"\n" for r in rows))


def test_a_fresh_bundle_verifies(bundle: Path) -> None:
    done = exoarmur("replay-verify", str(bundle))
    assert done.returncode == EXIT_OK, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[1:5]] == ["PASS  integrity", "PASS  decisions", "PASS  verdicts",
                                                           "PASS  report"]
    assert re.search(r"PASS  integrity: \d+ files, root digest ok, PASS_FAIL.txt ok, \d+ audit seals ok", done.stdout)


def test_json_report_and_latest(bundle: Path) -> None:
    done = exoarmur("replay-verify", "latest", "--out", str(bundle.parent), "--json")
    assert done.returncode == EXIT_OK, done.stderr
    report = orjson.loads(done.stdout)
    assert report["bundle"] == str(bundle) and report["valid"] is True and report["exit_code"] == 0
    assert [c["name"] for c in report["checks"]] == ["integrity", "decisions", "verdicts", "report"]
    assert report["checks"][1]["counts"]["replayed"] == len(audit_rows(bundle)) > 0


@pytest.mark.parametrize("name", ["00_reliability_surface.md", "09_load_test_results.json", "raw/history.jsonl",
                                  AUDIT])
def test_a_flipped_byte_is_named(bundle: Path, name: str) -> None:
    flip_byte(bundle / name)
    done = exoarmur("replay-verify", str(bundle))
    assert done.returncode == EXIT_DIFFERS
    assert "FAIL  integrity" in done.stdout and f"changed: {name}" in done.stdout


def test_a_deleted_audit_line_an_added_and_a_removed_file_are_named(bundle: Path) -> None:
    lines = (bundle / AUDIT).read_bytes().splitlines(keepends=True)
    (bundle / AUDIT).write_bytes(b"".join(lines[:1] + lines[2:]))
    (bundle / "raw" / "notes.txt").write_text("added after the run\n")
    (bundle / "03_retry_design.md").unlink()
    done = exoarmur("replay-verify", str(bundle))
    assert done.returncode == EXIT_DIFFERS
    for named in (f"changed: {AUDIT}", "not recorded: raw/notes.txt", "missing: 03_retry_design.md"):
        assert named in done.stdout
    assert "FAIL  verdicts" in done.stdout and "decisions_replayed" in done.stdout  # one decision fewer


def test_an_edited_reason_code_is_caught_even_when_the_bundle_is_rehashed(bundle: Path) -> None:
    rows = audit_rows(bundle)
    index = next(i for i, r in enumerate(rows) if r["record"]["reason_code"] == "KILL_SWITCH_GLOBAL")
    rows[index]["record"]["reason_code"] = "KILL_SWITCH_TENANT"
    write_rows(bundle, rows)
    rehash(bundle)
    done = exoarmur("replay-verify", str(bundle), "--json")
    assert done.returncode == EXIT_DIFFERS
    checks = {c["name"]: c for c in orjson.loads(done.stdout)["checks"]}
    assert [p["kind"] for p in checks["integrity"]["problems"]] == ["seal"]  # digests all agree: only the seal
    key = f"{rows[index]['record']['tenant_id']}:{rows[index]['record']['idempotency_key']}"
    [mismatch] = checks["decisions"]["problems"]
    assert mismatch["intent"] == key and mismatch["replayed"]["reason_code"] == "KILL_SWITCH_GLOBAL"

    # and re-sealing the record too leaves the decision replay (and the verdicts) to catch it
    rows[index]["record"] = AuditRecordV1.model_validate(rows[index]["record"]).sealed().model_dump(mode="json")
    write_rows(bundle, rows)
    rehash(bundle)
    done = exoarmur("replay-verify", str(bundle))
    assert done.returncode == EXIT_DIFFERS
    assert "PASS  integrity" in done.stdout and "FAIL  decisions: " in done.stdout
    assert f"{key}: recorded DENIED/KILL_SWITCH_TENANT" in done.stdout and "decision_mismatches == 0" in done.stdout


def test_an_edited_embedded_gate_threshold_is_caught(bundle: Path) -> None:
    [gate] = (bundle / "raw" / "gates").glob("g3_*.toml")
    written = re.search(r"decisions_replayed >= \d+", gate.read_text())[0]
    gate.write_text(gate.read_text().replace(written, "decisions_replayed >= 100000"))
    rehash(bundle)
    done = exoarmur("replay-verify", str(bundle))
    assert done.returncode == EXIT_DIFFERS
    assert "PASS  integrity" in done.stdout and "FAIL  verdicts" in done.stdout
    assert re.search(rf"G3 `{written}`: recorded \d+ \((pass|fail)\); re-derived `decisions_replayed >= 100000` = \d+ "
                     r"\(fail\)", done.stdout), done.stdout


def test_a_path_that_is_not_a_bundle_exits_2_with_one_line(tmp_path: Path) -> None:
    for path in (tmp_path / "missing", tmp_path):
        done = exoarmur("replay-verify", str(path))
        assert done.returncode == EXIT_USAGE
        assert "CONFIG_INVALID" in done.stderr and "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_live_resubmission_reproduces_every_outcome(bundle: Path) -> None:
    done = exoarmur("replay-verify", str(bundle), "--live", "--live-limit", "30", "--json")
    assert done.returncode == EXIT_OK, done.stdout[-3000:] + done.stderr[-2000:]
    checks = orjson.loads(done.stdout)["checks"]
    assert [c["name"] for c in checks] == ["integrity", "decisions", "verdicts", "report", "live"]
    live = checks[-1]
    assert live["valid"]
    counts = live["counts"]
    assert 0 < counts["compared"] <= 30 and counts["differences"] == 0
    assert counts["compared"] + counts["skipped"] == len(audit_rows(bundle))  # each skip counted with its reason


def test_a_run_with_a_nondeterministic_decision_fails_decision_replay(tmp_path: Path) -> None:
    """The decision read the wall clock instead of its recorded input: the bundle's integrity holds,
    but replaying the recorded inputs does not give the recorded decisions."""
    out = tmp_path / "artifacts"
    run = exoarmur("run-gates", "--no-measure-capacity", "--profile", "quick", "--gate", "3", "--out", str(out),
                   "--inject-defect", "nondeterministic-decision", timeout_s=180)
    assert run.returncode == 1, run.stderr[-2000:]
    verify = exoarmur("replay-verify", str(out / "reality_run_001"))
    assert verify.returncode == EXIT_DIFFERS, verify.stdout
    assert re.search(r"PASS\s+integrity", verify.stdout), verify.stdout
    assert re.search(r"FAIL\s+decisions: \d+ replayed, [1-9]\d* mismatch", verify.stdout), verify.stdout
