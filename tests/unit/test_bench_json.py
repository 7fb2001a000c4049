"""``bench --json`` / ``--save``: the figures, the targets and each verdict, as JSON."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from exoarmur_cli import bench, main
from exoarmur_cli.bench import Figures, figures_json

FIGURES = Figures(publish_per_s=2000.0, intents_per_s=400.0, half_load_per_s=200.0, p50_ms=8.0, p99_ms=61.5,
                  half_load_completed=3000, overload_offered_per_s=1200.0, overload_accepted=900,
                  overload_refused={"429": 300}, peak_rss_mb={"api": 90.0, "cell-0": 250.0})


def test_figures_json_carries_every_figure_and_each_target_verdict() -> None:
    found = figures_json(FIGURES)
    assert found["figures"]["intents_per_s"] == 400.0 and found["figures"]["peak_rss_mb"] == {"api": 90.0,
                                                                                             "cell-0": 250.0}
    assert found["targets"] == bench.TARGETS
    met = {v["target"]: v["met"] for v in found["verdicts"]}
    assert met == FIGURES.verdicts() and found["all_met"] is False
    assert met["p99 at half load = 61.5 ms <= 50.0"] is False and met["peak RSS api = 90 MB <= 200"] is True


def test_bench_json_prints_and_saves_the_same_document(tmp_path: Path, monkeypatch) -> None:
    # The measurement itself needs a live stack (`exoarmur bench` by hand); this checks the CLI's output only.
    monkeypatch.setattr(bench, "bench", lambda: FIGURES)
    saved = tmp_path / "bench.json"
    result = CliRunner().invoke(main.app, ["bench", "--json", "--save", str(saved)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == orjson.loads(saved.read_bytes()) == figures_json(FIGURES)
