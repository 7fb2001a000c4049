"""The report's figures: matplotlib ``Figure`` objects rendered to inline SVG.

No pyplot and no GUI backend: a bare ``Figure`` saved as SVG, with text drawn as paths
(``svg.fonttype = path``), so the page needs no font and no network, and a fixed hash salt and
no date, so the same data gives the same bytes. Every time-series shares the run's time axis,
shades each injected fault as an interval (colour by kind) and marks scenario boundaries.
A figure whose data is missing is not drawn: ``Plot.missing`` says why, and the page shows it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from exoarmur_cli.html_report._series import BREAKER_LEVEL, Interval, Span

WIDTH_IN = 12.5
FAULT_ALPHA = 0.22
FAULT_COLOURS = {
    "NATS restart": "#d62728", "process killed": "#9467bd", "process paused": "#8c564b",
    "network fault": "#e377c2", "effector fault": "#ff7f0e", "safety state unreadable": "#17becf",
    "noisy tenant": "#bcbd22",
}
SWITCH_COLOURS = {"global": "#d62728", "tenant": "#ff9896"}
_RC = {"svg.fonttype": "path", "svg.hashsalt": "exoarmur-report", "font.size": 9, "axes.titlesize": 10,
       "axes.grid": True, "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False}
_SVG_START = re.compile(r"<svg\b")


@dataclass(frozen=True)
class Plot:
    """One figure of the page: inline SVG, or the reason it could not be drawn."""

    id: str
    title: str
    caption: str
    sources: tuple[str, ...]
    svg: str | None = None
    missing: str | None = None


@dataclass(frozen=True)
class Timeline:
    """The run's shared time axis: its end, its scenarios and its faults."""

    end_s: float
    spans: tuple[Span, ...]
    faults: tuple[Interval, ...]


def fault_colour(kind: str) -> str:
    return FAULT_COLOURS.get(kind, "#7f7f7f")


def to_svg(fig: Figure) -> str:
    """The figure as an ``<svg>`` element (no XML prolog), deterministic for the same figure."""
    buffer = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buffer, format="svg", metadata={"Date": None}, bbox_inches="tight")
    text = buffer.getvalue()
    match = _SVG_START.search(text)
    return text[match.start():] if match else text


def new_figure(height_in: float = 3.2) -> tuple[Figure, object]:
    with matplotlib.rc_context(_RC):
        fig = Figure(figsize=(WIDTH_IN, height_in), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
    return fig, ax


def shade(ax, timeline: Timeline, label_scenarios: bool = True) -> list[Patch]:
    """Shade every fault, mark every scenario boundary; the legend handles of the kinds drawn."""
    kinds: dict[str, Patch] = {}
    for fault in timeline.faults:
        ax.axvspan(fault.start_s, fault.end_s, color=fault_colour(fault.kind), alpha=FAULT_ALPHA, lw=0, zorder=0)
        kinds.setdefault(fault.kind, Patch(color=fault_colour(fault.kind), alpha=0.5, label=fault.kind))
    for span in timeline.spans:
        ax.axvline(span.start_s, color="#999999", lw=0.6, ls=":", zorder=0)
    if label_scenarios:
        top = ax.secondary_xaxis("top")
        top.set_xticks([(s.start_s + s.end_s) / 2 for s in timeline.spans],
                       labels=[s.name for s in timeline.spans], rotation=30, ha="left", fontsize=7)
        top.tick_params(length=0)
    ax.set_xlim(0, max(timeline.end_s, 1.0))
    ax.set_xlabel("seconds since the run began")
    return list(kinds.values())


def finish(fig: Figure, ax, fault_handles: list[Patch], ylabel: str) -> str:
    ax.set_ylabel(ylabel)
    handles, _ = ax.get_legend_handles_labels()
    everything = handles + fault_handles
    if everything:
        ax.legend(handles=everything, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    return to_svg(fig)


def drawn(plot_id: str, title: str, caption: str, sources: Sequence[str], draw: Callable[[], str | None],
          missing: str) -> Plot:
    """Run ``draw``; None from it means there was no data, and the plot says ``missing``."""
    svg = draw()
    return Plot(plot_id, title, caption, tuple(sources), svg=svg, missing=None if svg else missing)


# --- individual figures ---------------------------------------------------------------------


def timeline_figure(timeline: Timeline) -> str:
    """Gantt of the run: a row of scenarios, then one row per fault target."""
    labels = sorted({f.label.split(":")[0] if f.kind == "network fault" else _target(f) for f in timeline.faults})
    rows = ["scenarios"] + labels
    fig, ax = new_figure(0.9 + 0.32 * len(rows))
    for n, span in enumerate(timeline.spans):
        colour = "#c7d7ea" if n % 2 == 0 else "#9fb9d9"
        ax.broken_barh([(span.start_s, max(span.end_s - span.start_s, 0.05))], (-0.4, 0.8), color=colour)
        ax.text((span.start_s + span.end_s) / 2, 0, span.name, ha="center", va="center", fontsize=6.5,
                rotation=90 if span.end_s - span.start_s < 3 else 0)
    for fault in timeline.faults:
        row = rows.index(fault.label.split(":")[0] if fault.kind == "network fault" else _target(fault))
        ax.broken_barh([(fault.start_s, max(fault.end_s - fault.start_s, 0.05))], (row - 0.35, 0.7),
                       color=fault_colour(fault.kind), alpha=0.85, hatch="//" if fault.open_end else None)
    ax.set_yticks(range(len(rows)), labels=rows)
    ax.invert_yaxis()
    ax.set_xlim(0, max(timeline.end_s, 1.0))
    ax.set_xlabel("seconds since the run began")
    handles = [Patch(color=fault_colour(k), label=k) for k in dict.fromkeys(f.kind for f in timeline.faults)]
    if any(f.open_end for f in timeline.faults):
        handles.append(Patch(facecolor="white", edgecolor="black", hatch="//", label="end not recorded"))
    return finish(fig, ax, handles, "")


def _target(fault: Interval) -> str:
    if fault.kind == "NATS restart":
        return "nats"
    if fault.kind == "effector fault":
        return "effector"
    if fault.kind in ("process killed", "process paused"):
        return fault.label.split()[-1]
    return fault.kind


def latency_figure(timeline: Timeline, series: Mapping[str, list[tuple[float, float, float, int]]]) -> str:
    fig, ax = new_figure(3.6)
    handles = shade(ax, timeline)
    colours = matplotlib.colormaps["tab20"]
    for n, (scenario, rows) in enumerate(sorted(series.items(), key=lambda kv: kv[1][0][0])):
        colour = colours(n % 20)
        t = [r[0] + 0.5 for r in rows]
        ax.plot(t, [r[2] for r in rows], "-", color=colour, lw=1.4, marker=".", ms=3, label=scenario)
        ax.plot(t, [r[1] for r in rows], "--", color=colour, lw=0.9)
    ax.plot([], [], "-", color="black", lw=1.4, label="p99 (solid)")
    ax.plot([], [], "--", color="black", lw=0.9, label="p50 (dashed)")
    ax.set_yscale("log")
    return finish(fig, ax, handles, "latency ms (log)")


def rates_figure(timeline: Timeline, axis: list[float], counts: Mapping[str, list[float]]) -> str:
    fig, ax = new_figure(3.6)
    handles = shade(ax, timeline)
    colours = {"accepted": "#2ca02c", "no answer": "#000000", "refused without reason": "#7f7f7f"}
    palette = iter(["#d62728", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#1f77b4"])
    for label, values in counts.items():
        colour = colours.get(label) or next(palette, "#333333")
        ax.step([t + 0.5 for t in axis], values, where="mid", color=colour, lw=1.2 if label == "accepted" else 1.0,
                label=label)
    ax.set_yscale("symlog", linthresh=10)
    return finish(fig, ax, handles, "answers per second")


def bounded_figure(timeline: Timeline, series: Mapping[str, tuple[list[float], list[float]]], bound: float | None,
                   bound_label: str, ylabel: str) -> str:
    fig, ax = new_figure(3.0)
    handles = shade(ax, timeline)
    for name, (times, values) in series.items():
        ax.plot(times, values, lw=1.1, label=name)
    if bound is not None:
        ax.axhline(bound, color="#d62728", lw=1.2, ls="--", label=bound_label)
    ax.set_ylim(bottom=0)
    return finish(fig, ax, handles, ylabel)


def breaker_figure(timeline: Timeline, steps: Mapping[str, list[tuple[float, str]]]) -> str:
    fig, ax = new_figure(2.6)
    handles = shade(ax, timeline)
    offset = 0.08
    for n, (cell, points) in enumerate(steps.items()):
        times = [p[0] for p in points] + [timeline.end_s]
        levels = [BREAKER_LEVEL.get(p[1], 0) + n * offset for p in points]
        ax.step(times, levels + levels[-1:], where="post", lw=1.4, label=cell)
    ax.set_yticks(list(BREAKER_LEVEL.values()), labels=list(BREAKER_LEVEL))
    ax.set_ylim(-0.3, 2.3 + offset * len(steps))
    return finish(fig, ax, handles, "breaker state")


def killswitch_figure(windows: Sequence[Interval], decisions: Sequence[tuple[float, str, str, str]],
                      start_s: float, end_s: float) -> str:
    tenants = sorted({d[1] for d in decisions} | {w.label for w in windows if w.kind == "tenant"})
    fig, ax = new_figure(0.9 + 0.22 * max(len(tenants), 4))
    for w in windows:
        if w.kind == "global":
            ax.axvspan(w.start_s, w.end_s, color=SWITCH_COLOURS["global"], alpha=0.18, lw=0, zorder=0)
        elif w.label in tenants:
            row = tenants.index(w.label)
            ax.broken_barh([(w.start_s, w.end_s - w.start_s)], (row - 0.45, 0.9), color=SWITCH_COLOURS["tenant"],
                           alpha=0.6, zorder=0)
    # Executions just above each tenant's line, denials just below, so neither hides the other.
    styles = {"EXECUTED": ("o", "#2ca02c", 0.2), "DENIED": ("x", "#d62728", -0.2), "FAILED": ("s", "#7f7f7f", 0.0)}
    for outcome, (marker, colour, dy) in styles.items():
        points = [(d[0], tenants.index(d[1]) + dy) for d in decisions if d[2] == outcome]
        if points:
            ax.scatter([p[0] for p in points], [p[1] for p in points], marker=marker, s=10, color=colour,
                       lw=0.8, label=outcome, zorder=2)
    others = [(d[0], tenants.index(d[1])) for d in decisions if d[2] not in styles]
    if others:
        ax.scatter([p[0] for p in others], [p[1] for p in others], marker=".", s=8, color="#1f77b4", label="other")
    ax.set_yticks(range(len(tenants)), labels=tenants, fontsize=7)
    ax.set_xlim(start_s, end_s)
    ax.set_xlabel("seconds since the run began (zoomed to the kill-switch cycles)")
    handles = [Patch(color=SWITCH_COLOURS["global"], alpha=0.3, label="global switch engaged"),
               Patch(color=SWITCH_COLOURS["tenant"], alpha=0.6, label="tenant switch engaged")]
    return finish(fig, ax, handles, "decisions by tenant")


def locust_figure(timeline: Timeline, times: list[float], rps: list[float], fps: list[float],
                  answered: tuple[list[float], list[float], list[float]] | None = None) -> str:
    fig, ax = new_figure(3.0)
    handles = shade(ax, timeline)
    ax.plot(times, rps, "-", color="#1f77b4", marker=".", lw=1.3, label="requests/s (Locust)")
    ax.plot(times, fps, "-", color="#d62728", marker=".", lw=1.3, label="failures/s (Locust)")
    if answered and answered[0]:
        axis, ok, failed = answered
        ax.step([t + 0.5 for t in axis], ok, where="mid", color="#1f77b4", ls=":", lw=1,
                label="answered/s (load-history)")
        ax.step([t + 0.5 for t in axis], failed, where="mid", color="#d62728", ls=":", lw=1,
                label="failed/s (load-history)")
    ax.set_ylim(bottom=0)
    return finish(fig, ax, handles, "per second")


def histogram_figure(values: Sequence[float], threshold: float | None, threshold_label: str, xlabel: str,
                     marker: float | None = None, marker_label: str = "") -> str:
    fig, ax = new_figure(2.6)
    ax.hist(values, bins=min(max(len(values), 5), 40), color="#1f77b4", alpha=0.8, label=f"{len(values)} cycles")
    if threshold is not None:
        ax.axvline(threshold, color="#d62728", ls="--", lw=1.2, label=threshold_label)
    if marker is not None:
        ax.axvline(marker, color="#2ca02c", lw=1.2, label=marker_label)
    ax.set_xlabel(xlabel)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    return finish(fig, ax, [], "count")
