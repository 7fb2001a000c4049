"""The page's figures, each from the raw/ files it names, or a visible note of what is missing."""

from __future__ import annotations

from exoarmur_cli import recorded
from exoarmur_cli.display import fmt_measured
from exoarmur_cli.html_report import _plots as plots
from exoarmur_cli.html_report import _series as series
from exoarmur_cli.html_report._model import LOCUST_HISTORY, BundleData
from exoarmur_cli.html_report._parallel import draw_all
from exoarmur_cli.html_report._plots import Plot, Timeline

SWITCH_MARGIN_S = 1.0
RSS_METRIC = "peak_rss_mb_max"
PROPAGATION_METRIC = "killswitch_propagation_p99_ms"


def timeline_of(bundle: BundleData) -> Timeline:
    history = bundle.data.history
    spans = series.scenario_spans(history)
    durations = bundle.final.get("run", {}).get("durations_s") or {}
    # A scenario that records only at its end (deployment) began its recorded duration earlier.
    spans = [series.Span(s.name, min(s.start_s, s.end_s - float(durations.get(s.name, 0) or 0)), s.end_s, s.finished)
             for s in spans]
    return Timeline(series.run_end_s(history, bundle.data.samples), tuple(spans),
                    tuple(series.fault_intervals(history)))


def criterion_threshold(bundle: BundleData, metric: str) -> tuple[float | None, str]:
    """The bound a gate criterion puts on ``metric`` (from 13), and its expression."""
    for result in bundle.results:
        for c in result.criteria:
            if c.metric == metric:
                return c.threshold, f"G{result.gate_id}: {c.expr}"
    return None, ""


def _missing(*names: str) -> str:
    return "no data: " + ", ".join(f"raw/{n}" for n in names) + " has none to plot"


def all_plots(bundle: BundleData, timeline: Timeline) -> list[Plot]:
    with_timeline = {"plot-timeline": timeline_plot, "plot-latency": latency_plot, "plot-admission": admission_plot,
                     "plot-pending": pending_plot, "plot-rss": rss_plot, "plot-breaker": breaker_plot}
    jobs = [lambda plot_id=plot_id, make=make: guarded(plot_id, lambda: make(bundle, timeline))
            for plot_id, make in with_timeline.items()]
    jobs.insert(6, lambda: guarded("plot-killswitch", lambda: killswitch_plot(bundle)))
    jobs.append(lambda: guarded("plot-locust", lambda: locust_plot(bundle, timeline)))
    return draw_all(jobs)


def guarded(plot_id: str, make) -> Plot:
    """A figure whose raw data cannot be read is shown as not drawn, with why: never a crash."""
    try:
        return make()
    except Exception as exc:  # malformed raw data: the page says so instead of failing to exist
        return Plot(plot_id, plot_id.removeprefix("plot-"), "", (), missing=f"could not be drawn from raw/: "
                    f"{type(exc).__name__}: {exc}")


def timeline_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    return plots.drawn(
        "plot-timeline", "Run timeline: scenarios and every injected fault (G7 chaos fault timeline)",
        "One row per fault target; hatched bars had no recorded end and are drawn to their scenario's end.",
        (recorded.HISTORY,), lambda: plots.timeline_figure(timeline) if timeline.spans else None,
        _missing(recorded.HISTORY))


def latency_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    data = series.latency_by_scenario(bundle.data.history)
    return plots.drawn(
        "plot-latency", "Submission latency p50 / p99 per scenario",
        "From each submit to its answer (accepted or refused), per 1 s of invocations; log scale.",
        (recorded.HISTORY, recorded.LOAD_HISTORY), lambda: plots.latency_figure(timeline, data) if data else None,
        _missing(recorded.HISTORY, recorded.LOAD_HISTORY))


def admission_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    axis, counts = series.admission_rates(bundle.data.history)
    return plots.drawn(
        "plot-admission", "Accepted vs refused per second, by reason code",
        "Every submission's answer, counted in the second it came; 'no answer' is an unknown outcome "
        "(timeout, connection lost).",
        (recorded.HISTORY, recorded.LOAD_HISTORY),
        lambda: plots.rates_figure(timeline, axis, counts) if counts else None,
        _missing(recorded.HISTORY, recorded.LOAD_HISTORY))


def pending_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    data = series.sample_series(bundle.data.samples, "pending")
    bound = bundle.data.params.get("policy", {}).get("pending_bound")
    label = f"pending bound {fmt_measured(bound)}" if bound is not None else ""
    caption = ("Messages pending or unacknowledged on the cells' consumer, sampled every 0.2 s, against the "
               "stack's pending bound." + ("" if bound is not None else " NO BOUND RECORDED in run_params.json."))
    return plots.drawn(
        "plot-pending", "Pending depth against its bound", caption, (recorded.SAMPLES, recorded.RUN_PARAMS),
        lambda: plots.bounded_figure(timeline, data, bound, label, "pending messages") if data else None,
        _missing(recorded.SAMPLES) + " (kind 'pending')")


def rss_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    data = series.sample_series(bundle.data.samples, "rss_mb")
    bound, expr = criterion_threshold(bundle, RSS_METRIC)
    caption = ("Resident memory of the api and every cell, sampled every 0.2 s"
               + (f", against the bound of {expr}." if bound is not None else "; NO BOUND: no gate criterion on "
                  f"{RSS_METRIC} in 13."))
    return plots.drawn(
        "plot-rss", "RSS of every process against its bound", caption, (recorded.SAMPLES,),
        lambda: plots.bounded_figure(timeline, data, bound, f"bound {expr}", "RSS MB") if data else None,
        _missing(recorded.SAMPLES) + " (kind 'rss_mb')")


def breaker_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    t0 = bundle.t0_wall_ms
    cells = sorted({str(r["record"].get("cell_id")) for r in bundle.data.audit if r.get("record", {}).get("cell_id")})
    have = bundle.has_raw(recorded.EVENTS) and t0 is not None
    steps = series.breaker_steps(bundle.data.events, t0 or 0, cells) if have else {}
    return plots.drawn(
        "plot-breaker", "Circuit breaker state per cell",
        "Every audited transition (exo.events.breaker.*); each cell starts CLOSED. Lines are offset "
        "slightly so overlapping cells stay visible.", (recorded.EVENTS, recorded.AUDIT),
        lambda: plots.breaker_figure(timeline, steps) if steps else None,
        _missing(recorded.EVENTS) + " (no breaker events and no cells in the audit export)" if have
        else "no data: raw/events_export.jsonl or the run's t0 (run_params.json) is missing")


def killswitch_plot(bundle: BundleData) -> Plot:
    t0 = bundle.t0_wall_ms
    windows = series.switch_windows(bundle.data.history, t0) if t0 is not None else []
    if windows:
        start, end = windows[0].start_s - SWITCH_MARGIN_S, windows[-1].end_s + SWITCH_MARGIN_S
        decisions = series.decisions_between(bundle.data.audit, t0, start, end)
    return plots.drawn(
        "plot-killswitch", "Kill switches: engaged intervals and the decisions around them",
        "Red: the global switch engaged (from the api's acknowledgement to its release); pink: a tenant's "
        "switch. Each dot is a decision at its snapshot time: no green dot may sit inside an engaged interval.",
        (recorded.HISTORY, recorded.AUDIT),
        lambda: plots.killswitch_figure(windows, decisions, start, end) if windows else None,
        "no data: raw/history.jsonl records no kill-switch engagement (or the run's t0 is missing)")


def locust_plot(bundle: BundleData, timeline: Timeline) -> Plot:
    t0 = bundle.t0_wall_ms
    times, rps, fps = series.locust_rates(bundle.locust_history, t0) if t0 is not None else ([], [], [])
    load_events = [e for e in bundle.data.history if e.scenario == "load"]
    axis, counts = series.admission_rates(load_events)
    failed = [sum(v[i] for k, v in counts.items() if k != "accepted") for i in range(len(axis))]
    answered = (axis, [a + f for a, f in zip(counts.get("accepted", [0] * len(axis)), failed)], failed)
    return plots.drawn(
        "plot-locust", "Locust: requests/s and failures/s",
        "Solid: Locust's own rolling rates (locust_stats_history.csv, 'Aggregated' rows, whole-second "
        "timestamps). Dotted: the same requests counted per second from the answers Locust's users recorded "
        "(load-history.jsonl), as a cross-check.",
        (LOCUST_HISTORY, recorded.LOAD_HISTORY),
        lambda: plots.locust_figure(timeline, times, rps, fps, answered) if times else None,
        _missing(LOCUST_HISTORY))


def propagation_plot(bundle: BundleData) -> Plot:
    values = (bundle.evidence.get("killswitch") or {}).get("propagation_ms") or []
    bound, expr = criterion_threshold(bundle, PROPAGATION_METRIC)
    p99 = bundle.metrics.get(PROPAGATION_METRIC)
    return plots.drawn(
        "plot-propagation", "G5: kill-switch propagation",
        "Per global engagement: from the api's acknowledgement to the first decision that reflects it.",
        (recorded.HISTORY, recorded.AUDIT),
        lambda: plots.histogram_figure(values, bound, f"bound {expr}", "propagation ms", p99,
                                       "measured p99") if values else None,
        "no data: no global kill-switch cycle was observed in raw/history.jsonl and raw/audit_export.jsonl")
