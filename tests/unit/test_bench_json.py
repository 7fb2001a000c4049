"""``bench --json`` / ``--save``: the figures, the targets and each verdict, as JSON."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from exoarmur_cli import bench, bench_cpu, main
from exoarmur_cli.bench import Figures, cpu_table, figures_json
from exoarmur_cli.bench_cpu import SystemTimes

FIGURES = Figures(publish_per_s=2000.0, intents_per_s=400.0, half_load_per_s=200.0, p50_ms=8.0, p99_ms=61.5,
                  half_load_completed=3000, overload_offered_per_s=1200.0, overload_accepted=900,
                  overload_refused={"429": 300}, peak_rss_mb={"api": 90.0, "cell-0": 250.0},
                  bare_intents_per_s=800.0,
                  cpu_ms_per_intent={"api": 0.7, "cell-0": 1.0, "effector": 0.5, "nats": 0.9, "client": 0.6},
                  bare_cpu_ms_per_intent={"api": 0.4, "cell-0": 0.4, "effector": 0.2, "nats": 0.7, "client": 0.6},
                  machine={"cpu_model": "AMD EPYC", "cores": 2, "steal_pct_b": 3.9, "steal_pct_bare": 4.6,
                           "others_cores_b": 1.0, "others_cores_bare": 1.0})


def test_figures_json_carries_every_figure_and_each_target_verdict() -> None:
    found = figures_json(FIGURES)
    assert found["figures"]["intents_per_s"] == 400.0 and found["figures"]["peak_rss_mb"] == {"api": 90.0,
                                                                                             "cell-0": 250.0}
    assert found["targets"] == bench.TARGETS
    met = {v["target"]: v["met"] for v in found["verdicts"]}
    assert met == FIGURES.verdicts() and found["all_met"] is False
    assert met["p99 at half load = 61.5 ms <= 50.0"] is False and met["peak RSS api = 90 MB <= 200"] is True
    assert met["(b)/(bare) = 0.500 >= 0.6"] is False  # 400 / 800
    assert found["figures"]["bare_cpu_ms_per_intent"]["nats"] == 0.7 and found["figures"]["machine"]["cores"] == 2
    assert found["targets"]["b_over_bare_min"] == 0.6


def test_b_over_bare_is_met_at_the_target_and_missed_without_a_bare_figure() -> None:
    def met(figures: Figures) -> bool:
        return next(ok for line, ok in figures.verdicts().items() if line.startswith("(b)/(bare)"))

    assert met(Figures(intents_per_s=480.0, bare_intents_per_s=800.0)) is True  # 0.6 exactly
    assert met(Figures(intents_per_s=479.0, bare_intents_per_s=800.0)) is False
    assert met(Figures(intents_per_s=400.0)) is False  # no bare measurement is a miss, never a pass


def test_cpu_table_puts_each_process_beside_its_bare_counterpart_with_totals() -> None:
    lines = cpu_table(Figures(cpu_ms_per_intent={"api": 0.75, "cell-0": 1.0, "nats": 0.5},
                              bare_cpu_ms_per_intent={"api": 0.25, "nats": 0.5, "client": 0.5},
                              half_load_per_s=225.0,
                              open_loop_cpu_ms_per_intent={"api": 1.5, "cell-0": 2.0, "nats": 1.0},
                              bare_open_loop_cpu_ms_per_intent={"api": 1.0, "nats": 1.0, "client": 1.0}))
    assert "closed loop" in lines[0] and "open, 225/s" in lines[0]
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert rows == {"api": ["0.750", "0.250", "1.500", "1.000"], "cell-0": ["1.000", "-", "2.000", "-"],
                    "nats": ["0.500", "0.500", "1.000", "1.000"], "client": ["-", "0.500", "-", "1.000"],
                    "total": ["2.250", "1.250", "4.500", "3.000"]}


def test_cpu_per_intent_is_the_window_s_cpu_delta_over_the_intents_completed() -> None:
    before = {"api": 10.0, "nats": 4.0, "gone": 1.0}
    after = {"api": 12.0, "nats": 5.0, "new": 3.0}
    assert bench_cpu.per_intent_ms(before, after, 1000) == {"api": 2.0, "nats": 1.0}
    assert bench_cpu.per_intent_ms(before, after, 0) == {}
    assert bench_cpu.per_intent_ms({"api": 5.0}, {"api": 4.0}, 10) == {"api": 0.0}  # a restarted process


def test_steal_and_the_machine_s_other_work_over_a_window() -> None:
    before, after = SystemTimes(busy_s=100.0, steal_s=10.0, total_s=200.0), SystemTimes(120.0, 11.0, 220.0)
    assert bench_cpu.steal_pct(before, after) == 5.0
    assert bench_cpu.others_cores(before, after, ours_s=12.0, window_s=10.0) == 0.8  # (20 - 12) / 10
    assert bench_cpu.others_cores(before, after, ours_s=25.0, window_s=10.0) == 0.0
    assert bench_cpu.steal_pct(before, before) == 0.0 and bench_cpu.others_cores(before, after, 0.0, 0.0) == 0.0


def test_bench_json_prints_and_saves_the_same_document(tmp_path: Path, monkeypatch) -> None:
    # The measurement itself needs a live stack (`exoarmur bench` by hand); this checks the CLI's output only.
    monkeypatch.setattr(bench, "bench", lambda nats_cluster=1: FIGURES)
    saved = tmp_path / "bench.json"
    result = CliRunner().invoke(main.app, ["bench", "--json", "--save", str(saved)])
    assert result.exit_code == 0, result.output
    assert orjson.loads(result.stdout) == orjson.loads(saved.read_bytes()) == figures_json(FIGURES)


def test_on_a_cluster_b_is_read_against_both_ceilings() -> None:
    from dataclasses import replace

    single = figures_json(FIGURES)
    assert single["ceiling_ratios"] == {"(a)": 0.2}  # 400 / 2000; no second ceiling on one server
    clustered = figures_json(replace(FIGURES, nats_servers=3, publish_per_s=800.0, single_server_publish_per_s=2000.0))
    assert clustered["ceiling_ratios"] == {"(a)": 0.5, "(a, one server)": 0.2}
    assert clustered["figures"]["nats_servers"] == 3


def test_the_reported_pair_is_the_one_with_the_median_ratio() -> None:
    from exoarmur_cli.bench import ClosedLoop, median_pair, pair_ratio

    def loop(rate: float) -> ClosedLoop:
        return ClosedLoop(intents_per_s=rate, completed=6000, window_s=6.0, cpu_ms_per_intent={}, steal_pct=0.0,
                          others_cores=0.0)

    pairs = [(loop(900.0), loop(1500.0)), (loop(1000.0), loop(1600.0)), (loop(950.0), loop(1900.0))]
    assert [round(pair_ratio(p), 3) for p in pairs] == [0.6, 0.625, 0.5]
    assert median_pair(pairs) is pairs[0]  # 0.5 < 0.6 < 0.625: neither the best nor the worst pair
    assert median_pair(pairs[:2]) is pairs[0]  # an even count: the lower middle, never the better one
    assert pair_ratio((loop(900.0), loop(0.0))) == 0.0  # no bare figure is a miss, never a pass
