"""index.html: built from a bundle alone, self-contained, every gate and plot on it, a missing
series said aloud; its digest lives in 13 beside (not under) the root digest, and replay-verify
catches an edited page, while a rebuilt page never re-seals edited evidence."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import orjson
import pytest
from builders import NODE_OWNERS, T0_WALL_MS, Hist, audit_row, breaker_row, intent, intent_row, record, snapshot
from typer.testing import CliRunner

from exoarmur_cli import main as cli
from exoarmur_cli.bundle import FINAL, PASS_FAIL, Bundle, file_digests, read_final, record_report
from exoarmur_cli.gates import load_gate_text, overall
from exoarmur_cli.history import OK
from exoarmur_cli.html_report import REPORT, build_html, report_problems
from exoarmur_cli.recorded import AUDIT, EVENTS, HISTORY, INTENTS, RUN_PARAMS, SAMPLES, load, write_jsonl
from exoarmur_cli.run import judge
from exoarmur_cli.verify import verify

REPO = Path(__file__).resolve().parents[2]
PLOTS = ("plot-timeline", "plot-latency", "plot-admission", "plot-pending", "plot-rss", "plot-breaker",
         "plot-killswitch", "plot-locust")


def _history() -> Hist:
    h = Hist()
    h.submit("replay-00001", time_ms=1_000)
    h.add("invoke", "killswitch", "operator", "replay", engaged=True, scope="global", invoked_wall_ms=T0_WALL_MS + 1_090)
    h.add(OK, "killswitch", "operator", "replay", engaged=True, scope="global", acked_wall_ms=T0_WALL_MS + 1_100,
          revision=1)
    h.add("invoke", "killswitch", "operator", "replay", engaged=False, scope="global",
          invoked_wall_ms=T0_WALL_MS + 1_400)
    h.nemesis("kill", "replay", target="cell-0", signal="SIGKILL", time_ms=1_500)
    h.nemesis("start", "replay", target="cell-0", time_ms=1_900)
    h.submit("replay-00002", answer="fail", status=429, reason="RATE_LIMITED_TENANT", time_ms=2_000)
    h.add(OK, "scenario_done", scenario="replay", time_ms=2_500)
    return h


def build(out: Path, *, samples: bool = True) -> Path:
    """A finished bundle as a run leaves it (create → raw/ → judge → finalize), gate 3 only."""
    bundle = Bundle.create(out)
    gate = load_gate_text("g3_replay_equivalence.toml", (REPO / "gates" / "g3_replay_equivalence.toml").read_text())
    bundle.write_text(f"raw/gates/{gate.source_name}", gate.source_text)
    the_intent = intent("replay-00001")
    write_jsonl(bundle.raw_dir / AUDIT, [audit_row(record(the_intent, snapshot(the_intent, T0_WALL_MS + 1_200)))])
    write_jsonl(bundle.raw_dir / INTENTS, [intent_row(the_intent)])
    (bundle.raw_dir / HISTORY).write_bytes(b"".join(e.to_json() + b"\n" for e in _history().events))
    write_jsonl(bundle.raw_dir / EVENTS, [breaker_row("cell-0", "CLOSED", "OPEN", T0_WALL_MS + 1_600)])
    if samples:
        write_jsonl(bundle.raw_dir / SAMPLES, [
            {"time_ms": t, "kind": kind, "process": proc, "value": v}
            for t in (500.0, 1_500.0, 2_500.0)
            for kind, proc, v in (("rss_mb", "api", 60.5), ("rss_mb", "cell-0", 50.0), ("pending", "nats", 3))])
    with open(bundle.raw_dir / "locust_stats_history.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["Timestamp", "Name", "Requests/s", "Failures/s"])
        writer.writeheader()
        writer.writerow({"Timestamp": T0_WALL_MS // 1000 + 2, "Name": "Aggregated", "Requests/s": "12.5",
                         "Failures/s": "0.5"})
    bundle.write_json(f"raw/{RUN_PARAMS}", {"t0_wall_ms": T0_WALL_MS, "node_owners": NODE_OWNERS,
                                            "policy": {"pending_bound": 300}, "stack": {"peers": 2}})
    results, _, _ = judge(load(bundle.raw_dir), {3: gate}, [3])
    bundle.finalize({"seed": 7, "profile": "quick", "versions": {"python": "3.11"},
                     "stack": {"jetstream_sync_interval": "always", "overrides": {"pending_intents": 300}}},
                    results, overall(results), [])
    return bundle.path


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build(tmp_path_factory.mktemp("artifacts"))


def _state(html: str, plot_id: str) -> str:
    match = re.search(rf'<figure class="plot" id="{plot_id}" data-state="(\w+)"', html)
    assert match, f"{plot_id} is not on the page"
    return match[1]


def test_finalize_writes_the_report_and_records_its_digest_outside_the_root(built: Path) -> None:
    final = read_final(built)
    html = (built / REPORT).read_text()
    assert final["report"]["file"] == REPORT and final["report"]["root_digest"] == final["root_digest"]
    assert REPORT not in final["files"] and REPORT not in file_digests(built)
    assert f'<meta name="exoarmur-root-digest" content="{final["root_digest"]}">' in html
    verdict = final["gates"][0]["verdict"]  # RED: a hand-built bundle replays too few decisions for G3
    assert f'id="gate-G3" data-verdict="{verdict}"' in html and 'id="crit-G3-0"' in html
    assert 'id="evidence-G3"' in html and 'id="metadata"' in html
    for plot_id in PLOTS:
        assert _state(html, plot_id) == "drawn", plot_id
    assert report_problems(built, final) == []
    assert verify(built).valid


def test_the_page_is_self_contained(built: Path) -> None:
    html = (built / REPORT).read_text()
    assert "<script" not in html and "<link" not in html and "@import" not in html
    assert not re.search(r'(?:src|href|xlink:href)\s*=\s*"(?:https?:)?//', html)
    assert "<img" not in html  # figures are inline SVG
    assert html.count("<svg") >= len(PLOTS)


def test_a_series_missing_from_raw_is_said_on_the_page_not_drawn_empty(tmp_path: Path) -> None:
    html = (build(tmp_path, samples=False) / REPORT).read_text()
    for plot_id in ("plot-pending", "plot-rss"):
        assert _state(html, plot_id) == "missing"
    assert "NOT DRAWN — no data: raw/samples.jsonl has none to plot" in html
    assert _state(html, "plot-timeline") == "drawn"


def test_the_same_bundle_gives_the_same_page(built: Path) -> None:
    assert build_html(built, "x") == build_html(built, "x")


def test_an_edited_page_fails_replay_verify_even_with_its_digest_updated(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(built, tmp_path / built.name))
    page = copy / REPORT
    final = read_final(copy)
    verdict = final["gates"][0]["verdict"]
    forged = "GREEN" if verdict != "GREEN" else "RED"
    page.write_text(page.read_text().replace(f'id="gate-G3" data-verdict="{verdict}"',
                                             f'id="gate-G3" data-verdict="{forged}"'))
    problems = report_problems(copy, final)
    assert any(p.startswith("changed: index.html") for p in problems)
    import hashlib

    record_report(copy, {**final["report"], "sha256": hashlib.sha256(page.read_bytes()).hexdigest()})
    problems = report_problems(copy, read_final(copy))
    assert problems == [f"index.html shows G3 as {sorted([forged, verdict])}; 13 says {verdict}"]
    report = verify(copy)
    assert not report.valid and not {c.name: c for c in report.checks}["report"].valid


def test_a_missing_report_is_named_with_the_command_that_builds_it(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(built, tmp_path / built.name))
    (copy / REPORT).unlink()
    assert report_problems(copy, read_final(copy))[0].startswith("missing: index.html")
    final = read_final(copy)
    del final["report"]
    (copy / FINAL).write_bytes(orjson.dumps(final))
    assert "exoarmur report" in report_problems(copy, read_final(copy))[0]


def test_report_command_rebuilds_without_resealing_edited_evidence(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(built, tmp_path / "artifacts" / built.name))
    before = read_final(copy)
    pass_fail = (copy / PASS_FAIL).read_text()
    (copy / REPORT).unlink()
    history = copy / "raw" / HISTORY
    history.write_bytes(history.read_bytes() + b"\n")  # an edit to the evidence
    result = CliRunner().invoke(cli.app, ["report", "latest", "--out", str(tmp_path / "artifacts")])
    assert result.exit_code == 0, result.output
    after = read_final(copy)
    assert (after["files"], after["root_digest"]) == (before["files"], before["root_digest"])
    assert (copy / PASS_FAIL).read_text() == pass_fail
    html = (copy / REPORT).read_text()
    assert 'id="integrity"' in html and "changed: raw/history.jsonl" in html  # the page says so
    checks = {c.name: c for c in verify(copy).checks}
    assert checks["report"].valid and not checks["integrity"].valid  # still fails replay-verify


def test_report_command_on_something_that_is_not_a_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli.app, ["report", str(tmp_path)])
    assert result.exit_code == 2


def test_an_incomplete_bundle_gets_a_report_that_says_why(tmp_path: Path) -> None:
    bundle = Bundle.create(tmp_path)
    bundle.mark_incomplete("nats-server did not start within 10 s", 3, {"seed": 1})
    html = (bundle.path / REPORT).read_text()
    assert 'id="incomplete"' in html and "nats-server did not start within 10 s" in html
    assert 'id="gates-missing"' in html
    assert all(_state(html, p) == "missing" for p in PLOTS)
    assert report_problems(bundle.path, read_final(bundle.path)) == []


def test_malformed_raw_data_is_said_on_the_page_never_a_crash(built: Path, tmp_path: Path) -> None:
    import shutil

    copy = Path(shutil.copytree(built, tmp_path / built.name))
    write_jsonl(copy / "raw" / EVENTS, [{"subject": "exo.events.breaker.cell-0", "data": {"cell_id": "cell-0"}}])
    html = build_html(copy)
    assert _state(html, "plot-breaker") == "missing"
    assert "NOT DRAWN — could not be drawn from raw/: KeyError" in html
    assert _state(html, "plot-timeline") == "drawn" and 'id="integrity"' in html


def test_a_forged_visible_value_is_caught_even_with_the_data_attributes_intact(built: Path, tmp_path: Path) -> None:
    import hashlib
    import shutil

    copy = Path(shutil.copytree(built, tmp_path / built.name))
    page = copy / REPORT
    html = page.read_text()
    row = re.search(r'<tr class="criterion" id="crit-G3-0".*?</tr>', html, re.DOTALL)[0]
    measured = re.search(r'<td class="num (?:pass|fail)">([^<]*)</td>', row)
    forged_row = row.replace(measured[0], measured[0].replace(f">{measured[1]}<", ">99999<"))
    page.write_text(html.replace(row, forged_row))
    record_report(copy, {**read_final(copy)["report"], "sha256": hashlib.sha256(page.read_bytes()).hexdigest()})
    (problem,) = report_problems(copy, read_final(copy))
    assert problem.startswith("index.html G3 criterion 1: reads (") and "'99999'" in problem
