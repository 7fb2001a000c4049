"""replay-verify on a small hand-built bundle: a clean one verifies, each tampering is named.

The bundle is built the way a run builds one (Bundle.create → raw/ → judging.judge → finalize), from
hand-written sealed records, so every check has real input and each test takes milliseconds.
"""

from __future__ import annotations

import re
from pathlib import Path

import orjson
import pytest
from builders import NODE_OWNERS, T0_WALL_MS, Hist, approval, audit_row, intent, intent_row, record, snapshot
from typer.testing import CliRunner

from exoarmur.contracts import AuditRecordV1, Outcome, ReasonCode
from exoarmur_cli import main as cli
from exoarmur_cli.verify import live as verify_live
from exoarmur_cli.bundle import FINAL, PASS_FAIL, Bundle, BundleError, file_digests, root_digest
from exoarmur_cli.gates import load_gate_text, overall
from exoarmur_cli.history import OK
from exoarmur_cli.recorded import AUDIT, HISTORY, INTENTS, RUN_PARAMS, load, write_jsonl
from exoarmur_cli.judging import judge
from exoarmur_cli.stack import StackError
from exoarmur_cli.verify import expected_pass_fail, resolve, same_value, verify

REPO = Path(__file__).resolve().parents[2]
G3 = "raw/gates/g3_replay_equivalence.toml"
AUDIT_PATH = f"raw/{AUDIT}"


def _cases() -> list[tuple]:
    ok, glob, ten, blind = (intent(f"replay-0000{i}") for i in range(1, 5))
    a2_ok, a2_bad, a2_denied = (intent(f"replay-0001{i}", action_class="A2") for i in range(3))
    failed = intent("replay-00020")
    return [
        (ok, snapshot(ok), {}),
        (glob, snapshot(glob, global_switch=True, global_revision=3), {}),
        (ten, snapshot(ten, tenant_switch=True), {}),
        (blind, snapshot(blind, readable=False), {}),
        (a2_ok, snapshot(a2_ok, approval=approval(a2_ok)), {}),
        (a2_bad, snapshot(a2_bad, approval=approval(a2_bad, intent_hash="0" * 64)), {}),
        (a2_denied, snapshot(a2_denied, approval=approval(a2_denied, status="DENIED")), {}),
        (failed, snapshot(failed), {"outcome": Outcome.FAILED, "reason_code": ReasonCode.RETRY_EXHAUSTED}),
    ]


def build_bundle(out: Path) -> Path:
    bundle = Bundle.create(out)
    gate = load_gate_text("g3_replay_equivalence.toml", (REPO / "gates" / "g3_replay_equivalence.toml").read_text())
    bundle.write_text(G3, gate.source_text)
    cases = _cases()
    write_jsonl(bundle.raw_dir / AUDIT, [audit_row(record(i, s, **o), seq=n) for n, (i, s, o) in enumerate(cases, 1)])
    write_jsonl(bundle.raw_dir / INTENTS, [intent_row(i, seq=n) for n, (i, _, _) in enumerate(cases, 1)])
    hist = Hist()
    for the_intent, _, _ in cases:
        hist.submit(the_intent.idempotency_key, scenario="replay")
    hist.add(OK, "scenario_done", scenario="replay")
    (bundle.raw_dir / HISTORY).write_bytes(b"".join(e.to_json() + b"\n" for e in hist.events))
    bundle.write_json(f"raw/{RUN_PARAMS}", {"t0_wall_ms": T0_WALL_MS, "node_owners": NODE_OWNERS,
                                            "stack": {"tenants": 2, "peers": 2, "nodes": 2}})
    bundle.write_text("00_reliability_surface.md", "# Reliability surface\n\nhand-built for a unit test\n")
    bundle.write_json("09_load_test_results.json", {"offered": 8, "note": "hand-built"})
    results, _, _ = judge(load(bundle.raw_dir), {3: gate}, [3])
    bundle.finalize({"seed": 0}, results, overall(results), [])
    return bundle.path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return build_bundle(tmp_path / "artifacts")


def rehash(path: Path) -> None:
    """What a careful forger does after an edit: re-hash every file into 13 and rewrite PASS_FAIL."""
    final = orjson.loads((path / FINAL).read_bytes())
    final["files"] = file_digests(path)
    final["root_digest"] = root_digest(final["files"])
    (path / FINAL).write_bytes(orjson.dumps(final, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
    (path / PASS_FAIL).write_text(expected_pass_fail(final))


def edit_audit_row(path: Path, index: int, reseal: bool, **fields) -> str:
    rows = [orjson.loads(line) for line in (path / AUDIT_PATH).read_bytes().splitlines()]
    rows[index]["record"].update(fields)
    if reseal:
        rows[index]["record"] = AuditRecordV1.model_validate(rows[index]["record"]).sealed().model_dump(mode="json")
    write_jsonl(path / AUDIT_PATH, rows)
    return f"{rows[index]['record']['tenant_id']}:{rows[index]['record']['idempotency_key']}"


def flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


def checks(report) -> dict:
    return {c.name: c for c in report.checks}


def texts(check) -> str:
    return "\n".join(p["text"] for p in check.problems)


def test_a_clean_bundle_verifies(bundle: Path) -> None:
    report = verify(bundle)
    found = checks(report)
    assert report.valid, "\n".join(report.lines())
    assert list(found) == ["integrity", "decisions", "verdicts", "report"]
    assert found["integrity"].counts["audit_seals_ok"] == 8 and found["integrity"].counts["files"] == 7
    assert found["decisions"].counts["replayed"] == 8
    g3 = load_gate_text("g3_replay_equivalence.toml", (REPO / "gates" / "g3_replay_equivalence.toml").read_text())
    assert found["verdicts"].counts["criteria"] == len(g3.criteria)
    assert report.recorded_status == "RED"  # a red run verifies: replay-verify checks evidence, not gates
    assert report.lines()[-1].startswith("VERIFIED")


@pytest.mark.parametrize("name", ["00_reliability_surface.md", "09_load_test_results.json", "raw/history.jsonl",
                                  AUDIT_PATH])
def test_a_flipped_byte_is_named(bundle: Path, name: str) -> None:
    flip_byte(bundle / name)
    integrity = checks(verify(bundle))["integrity"]
    assert not integrity.valid
    assert f"changed: {name}" in texts(integrity)


def test_added_removed_and_truncated_files_are_named(bundle: Path) -> None:
    (bundle / "raw" / "extra.log").write_text("slipped in\n")
    (bundle / "09_load_test_results.json").unlink()
    lines = (bundle / AUDIT_PATH).read_bytes().splitlines(keepends=True)
    (bundle / AUDIT_PATH).write_bytes(b"".join(lines[:3] + lines[4:]))
    report = verify(bundle)
    problems = texts(checks(report)["integrity"])
    assert "not recorded: raw/extra.log" in problems
    assert "missing: 09_load_test_results.json" in problems
    assert f"changed: {AUDIT_PATH}" in problems
    assert "decisions_replayed" in texts(checks(report)["verdicts"])  # 8 recorded, 7 re-derived


def test_an_edited_reason_code_fails_its_seal_even_when_rehashed(bundle: Path) -> None:
    key = edit_audit_row(bundle, 1, reseal=False, reason_code="KILL_SWITCH_TENANT")
    rehash(bundle)
    found = checks(verify(bundle))
    integrity = found["integrity"]
    assert [p["kind"] for p in integrity.problems] == ["seal"]
    assert f"{AUDIT_PATH} seq 2 (" in texts(integrity)
    assert key in texts(found["decisions"])  # and the decision replay names the intent
    assert "audit_seal_failures" in texts(found["verdicts"])


def test_a_resealed_edit_is_caught_by_decision_replay(bundle: Path) -> None:
    key = edit_audit_row(bundle, 1, reseal=True, reason_code="KILL_SWITCH_TENANT")
    rehash(bundle)
    found = checks(verify(bundle))
    assert found["integrity"].valid  # every digest and seal is consistent: the forgery is careful
    [mismatch] = found["decisions"].problems
    assert mismatch["intent"] == key
    assert mismatch["recorded"]["reason_code"] == "KILL_SWITCH_TENANT"
    assert mismatch["replayed"]["reason_code"] == "KILL_SWITCH_GLOBAL"
    assert "decision_mismatches == 0" in texts(found["verdicts"])


def test_an_edited_gate_threshold_is_caught_by_verdict_replay(bundle: Path) -> None:
    gate = bundle / G3
    written = re.search(r"decisions_replayed >= \d+", gate.read_text())[0]  # the threshold the run used
    gate.write_text(gate.read_text().replace(written, "decisions_replayed >= 1"))
    rehash(bundle)
    found = checks(verify(bundle))
    assert found["integrity"].valid and found["decisions"].valid
    [difference] = [p for p in found["verdicts"].problems if p["kind"] == "criterion"]
    assert difference["recorded"] == {"expr": written, "value": 8.0, "verdict": "fail"}
    assert difference["rederived"] == {"expr": "decisions_replayed >= 1", "value": 8.0, "verdict": "pass"}


def test_an_edited_verdict_in_13_is_caught_by_verdict_replay(bundle: Path) -> None:
    final = orjson.loads((bundle / FINAL).read_bytes())
    for criterion in final["gates"][0]["criteria"]:
        criterion["passed"] = True
    final["gates"][0]["verdict"] = final["status"] = "GREEN"
    (bundle / FINAL).write_bytes(orjson.dumps(final))
    (bundle / PASS_FAIL).write_text(expected_pass_fail(final))  # 13 and PASS_FAIL agree: only replay sees it
    found = checks(verify(bundle))
    assert found["integrity"].valid
    problems = texts(found["verdicts"])
    assert "G3 verdict: recorded GREEN, re-derived RED" in problems and "status: recorded GREEN" in problems


def test_an_edited_pass_fail_is_named(bundle: Path) -> None:
    path = bundle / PASS_FAIL
    path.write_text(path.read_text().replace("FINAL: RED", "FINAL: GREEN"))
    integrity = checks(verify(bundle))["integrity"]
    assert not integrity.valid and "PASS_FAIL.txt line" in texts(integrity)


def test_unreadable_raw_data_fails_the_verdicts_instead_of_crashing(bundle: Path) -> None:
    with open(bundle / "raw" / "history.jsonl", "ab") as handle:
        handle.write(b'{"truncated": \n')
    rehash(bundle)
    verdicts = checks(verify(bundle))["verdicts"]
    assert not verdicts.valid and "cannot re-derive verdicts" in verdicts.summary


def test_what_is_not_a_bundle_raises_bundle_error(tmp_path: Path, bundle: Path) -> None:
    with pytest.raises(BundleError):
        verify(tmp_path / "nothing-here")
    with pytest.raises(BundleError):
        verify(bundle / "raw")
    with pytest.raises(BundleError):
        resolve("latest", tmp_path / "empty")
    assert resolve("latest", bundle.parent) == bundle


def test_numbers_compare_with_a_tiny_relative_tolerance() -> None:
    assert same_value(0.1 + 0.2, 0.3) and same_value(None, None) and same_value(3, 3.0)
    assert not same_value(1.0, 1.000001) and not same_value(None, 0.0)


def test_live_plan_replays_only_decision_determined_paths(bundle: Path) -> None:
    rows = [orjson.loads(line) for line in (bundle / AUDIT_PATH).read_bytes().splitlines()]
    intents = [orjson.loads(line) for line in (bundle / f"raw/{INTENTS}").read_bytes().splitlines()]
    plan = verify_live.plan(rows, intents, limit=5)
    assert [i.record.reason_code.value for i in plan.items] == [
        "OK", "KILL_SWITCH_GLOBAL", "KILL_SWITCH_TENANT", "OK", "APPROVAL_MISMATCH"]
    assert plan.skipped == {"FAILED: depends on injected effector faults": 1, "over --live-limit": 1,
                            "SAFETY_STATE_UNAVAILABLE: depends on an injected safety-store fault": 1}
    # switches change only between batches: ok | global on | tenant on | the rest
    assert [[i.record.reason_code.value for i in b] for b in plan.batches()] == [
        ["OK"], ["KILL_SWITCH_GLOBAL"], ["KILL_SWITCH_TENANT"], ["OK", "APPROVAL_MISMATCH"]]


def test_cli_exit_codes(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    clean = runner.invoke(cli.app, ["replay-verify", str(bundle), "--json"])
    assert clean.exit_code == 0 and orjson.loads(clean.stdout)["valid"] is True
    assert runner.invoke(cli.app, ["replay-verify", str(tmp_path / "nope")]).exit_code == 2

    def no_stack(*_args, **_kwargs):
        raise StackError("no nats-server here")

    monkeypatch.setattr(verify_live, "start_stack", no_stack)
    assert runner.invoke(cli.app, ["replay-verify", "latest", "--out", str(bundle.parent), "--live"]).exit_code == 3
    flip_byte(bundle / "00_reliability_surface.md")
    tampered = runner.invoke(cli.app, ["replay-verify", str(bundle)])
    assert tampered.exit_code == 1
    assert "FAIL  integrity" in tampered.stdout and "changed: 00_reliability_surface.md" in tampered.stdout


def test_an_incomplete_bundle_is_checked_and_a_run_in_progress_is_not_a_bundle(tmp_path: Path) -> None:
    in_progress = Bundle.create(tmp_path)  # PASS_FAIL says INCOMPLETE, there is no 13 yet
    with pytest.raises(BundleError):
        verify(in_progress.path)
    in_progress.write_json(f"raw/{RUN_PARAMS}", {"seed": 0})
    in_progress.mark_incomplete("interrupted (Ctrl-C)", 130, {"seed": 0})
    report = verify(in_progress.path)
    assert report.valid and report.recorded_status == "INCOMPLETE", "\n".join(report.lines())
    (in_progress.path / PASS_FAIL).write_text("FINAL: GREEN\n")
    assert not checks(verify(in_progress.path))["integrity"].valid
