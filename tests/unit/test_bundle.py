"""The bundle: numbered, INCOMPLETE until finalized, every file hashed, defects said loudly."""

from __future__ import annotations

import threading
from pathlib import Path

import orjson
import pytest

from exoarmur_cli.bundle import (
    FILES,
    FINAL,
    PASS_FAIL,
    Bundle,
    BundleError,
    file_digests,
    latest_bundle,
    read_final,
    root_digest,
    verify_digests,
)
from exoarmur_cli.gates import Verdict, evaluate_gate, load_gate_text, result_from_json

GATE = load_gate_text(
    "g7_failure_survival.toml",
    'id = 7\nslug = "failure_survival"\nname = "Failure survival & crash consistency"\n'
    'scenarios = ["chaos"]\nsummary = "s"\n[[criteria]]\nexpr = "duplicate_effects == 0"\nwhy = "w"\n'
    '[[criteria]]\nexpr = "lost == 0"\nwhy = "w"\n',
)
GATE1 = load_gate_text(
    "g1_durable.toml",
    'id = 1\nslug = "durable"\nname = "Durable persistence"\nscenarios = ["persistence"]\n'
    'summary = "s"\n[[criteria]]\nexpr = "acked_intents_lost == 0"\nwhy = "w"\n',
)


def test_files_is_the_documented_layout() -> None:
    assert FILES[0] == "00_reliability_surface.md" and FILES[-2:] == (FINAL, PASS_FAIL)
    assert len(FILES) == 15 and [f[:2] for f in FILES[:14]] == [f"{n:02d}" for n in range(14)]


def test_create_numbers_bundles_and_marks_them_incomplete(tmp_path: Path) -> None:
    first, second = Bundle.create(tmp_path), Bundle.create(tmp_path)
    assert (first.path.name, second.path.name) == ("reality_run_001", "reality_run_002")
    text = (first.path / PASS_FAIL).read_text()
    assert "INCOMPLETE: run in progress" in text and "GREEN" not in text
    assert first.raw_dir.is_dir() and first.raw_dir == first.path / "raw"
    assert latest_bundle(tmp_path) == second.path


def test_create_takes_the_number_after_the_highest(tmp_path: Path) -> None:
    (tmp_path / "reality_run_007").mkdir()
    (tmp_path / "reality_run_003").mkdir()
    (tmp_path / "reality_run_x").mkdir()
    assert Bundle.create(tmp_path).path.name == "reality_run_008"


def test_numbers_grow_past_three_digits(tmp_path: Path) -> None:
    (tmp_path / "reality_run_999").mkdir()
    assert Bundle.create(tmp_path).path.name == "reality_run_1000"
    assert latest_bundle(tmp_path).name == "reality_run_1000"


def test_concurrent_creates_never_share_a_directory(tmp_path: Path) -> None:
    paths: list[Path] = []
    threads = [threading.Thread(target=lambda: paths.append(Bundle.create(tmp_path).path)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(paths)) == 8


def test_latest_bundle_is_none_without_bundles(tmp_path: Path) -> None:
    assert latest_bundle(tmp_path) is None and latest_bundle(tmp_path / "absent") is None


def test_writes_are_confined_to_the_layout(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.write_json("09_load_test_results.json", {"b": 1, "a": [1, 2]})
    text = (bundle.path / "09_load_test_results.json").read_text()
    assert text.index('"a"') < text.index('"b"') and '\n  "a"' in text  # sorted, indented
    bundle.write_text("raw/logs/cell-1.log", "hello")
    assert (bundle.raw_dir / "logs" / "cell-1.log").read_text() == "hello"
    for name in ("notes.txt", PASS_FAIL, FINAL, "raw/../x", "../escape.md"):
        with pytest.raises(BundleError):
            bundle.write_text(name, "x")


def test_digests_cover_every_file_but_the_verdict_files(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.write_text("00_reliability_surface.md", "surface")
    bundle.write_text("raw/history.jsonl", "{}\n")
    bundle.write_text("raw/locust/stats.csv", "a,b\n")
    digests = file_digests(bundle.path)
    assert set(digests) == {"00_reliability_surface.md", "raw/history.jsonl", "raw/locust/stats.csv"}


def test_flipping_one_byte_changes_the_file_and_root_digest(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.write_text("raw/history.jsonl", '{"index": 0}\n')
    bundle.write_text("01_timeout_design.md", "deadline 2 s")
    before = file_digests(bundle.path)
    target = bundle.raw_dir / "history.jsonl"
    data = bytearray(target.read_bytes())
    data[3] ^= 0x01
    target.write_bytes(bytes(data))
    after = file_digests(bundle.path)
    assert after["raw/history.jsonl"] != before["raw/history.jsonl"]
    assert after["01_timeout_design.md"] == before["01_timeout_design.md"]
    assert root_digest(after) != root_digest(before)


def test_root_digest_is_stable_for_the_same_content(tmp_path: Path) -> None:
    roots = []
    for run in ("a", "b"):
        bundle = Bundle.create(tmp_path / run)
        bundle.write_text("raw/z.txt", "z")
        bundle.write_text("00_reliability_surface.md", "s")
        roots.append(root_digest(file_digests(bundle.path)))
    assert roots[0] == roots[1]
    assert root_digest({"b": "2", "a": "1"}) == root_digest({"a": "1", "b": "2"})
    assert root_digest({"a": "1"}) != root_digest({"a": "2"})


def _results():
    green = evaluate_gate(GATE1, {"acked_intents_lost": 0}, {"persistence"})
    red = evaluate_gate(GATE, {"duplicate_effects": 2}, {"chaos"})
    return [red, green]


def test_finalize_writes_13_and_pass_fail_consistently(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    written = ["00_reliability_surface.md", "02_timeout_test_outputs.txt", "09_load_test_results.json"]
    for name in written:
        bundle.write_text(name, name)
    bundle.write_text("raw/history.jsonl", "{}\n")
    results = _results()
    root = bundle.finalize({"seed": 42, "profile": "quick"}, results, Verdict.RED, [])
    final = read_final(bundle.path)
    assert final["format"] == "exoarmur-bundle/1" and final["status"] == "RED"
    assert final["run"] == {"seed": 42, "profile": "quick"} and final["root_digest"] == root
    assert set(final["files"]) == set(written) | {"raw/history.jsonl"}
    assert [result_from_json(g) for g in final["gates"]] == results
    assert final["gates"][0]["criteria"][0]["value"] == 2.0
    assert verify_digests(bundle.path, final) == []
    lines = (bundle.path / PASS_FAIL).read_text().splitlines()
    assert lines[0] == f"G1 {'Durable persistence':<32} GREEN"
    assert lines[1] == "G7 Failure survival & crash consistency RED"
    assert lines[2:4] == ["  - duplicate_effects == 0 (measured 2)", "  - lost == 0 (measured missing)"]
    assert lines[-2:] == ["FINAL: RED", f"ROOT DIGEST: {root}"]
    assert "NOT A CLEAN RUN" not in lines


def test_finalize_says_loudly_when_a_defect_was_injected(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.finalize({}, _results(), Verdict.RED, ["duplicate_effect", "skip_fsync"])
    lines = (bundle.path / PASS_FAIL).read_text().splitlines()
    assert "DEFECTS INJECTED: duplicate_effect, skip_fsync" in lines and "NOT A CLEAN RUN" in lines
    assert lines.index("NOT A CLEAN RUN") < lines.index("FINAL: RED")
    assert read_final(bundle.path)["defects_injected"] == ["duplicate_effect", "skip_fsync"]


def test_finalize_never_reports_better_than_the_results(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.finalize({}, _results(), Verdict.GREEN, [])
    assert read_final(bundle.path)["status"] == "RED"
    empty = Bundle.create(tmp_path)
    empty.finalize({}, [], Verdict.GREEN, [])
    assert "FINAL: INCOMPLETE" in (empty.path / PASS_FAIL).read_text()


def test_tampering_after_finalize_is_detected(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.write_text("raw/history.jsonl", "{}\n")
    bundle.finalize({}, _results(), Verdict.RED, [])
    (bundle.raw_dir / "history.jsonl").write_text("{} \n")
    (bundle.raw_dir / "extra.jsonl").write_text("")
    problems = verify_digests(bundle.path, read_final(bundle.path))
    assert "changed: raw/history.jsonl" in problems and "not recorded: raw/extra.jsonl" in problems


def test_mark_incomplete_keeps_the_evidence_and_the_reason(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.write_text("raw/history.jsonl", "{}\n")
    root = bundle.mark_incomplete("nats-server did not start within 10 s", 3)
    text = (bundle.path / PASS_FAIL).read_text()
    assert "INCOMPLETE: nats-server did not start within 10 s" in text and "EXIT CODE: 3" in text
    assert "FINAL: INCOMPLETE" in text and f"ROOT DIGEST: {root}" in text and "GREEN" not in text
    final = orjson.loads((bundle.path / FINAL).read_bytes())
    assert final["status"] == "INCOMPLETE" and final["exit_code"] == 3
    assert set(final["files"]) == {"raw/history.jsonl"} and final["root_digest"] == root


def test_read_final_explains_what_is_not_a_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="not a directory"):
        read_final(tmp_path / "nope")
    in_progress = Bundle.create(tmp_path)
    with pytest.raises(BundleError, match="never finished"):
        read_final(in_progress.path)
    (in_progress.path / FINAL).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_final(in_progress.path)
    (in_progress.path / FINAL).write_text('{"format": "other"}')
    with pytest.raises(BundleError, match="exoarmur-bundle/1"):
        read_final(in_progress.path)
