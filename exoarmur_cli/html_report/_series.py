"""What the report plots, extracted from recorded data: pure functions, no I/O, no plotting.

Every time is in seconds since the run began, on the history's monotonic clock. Wall-clock
times (audit records, breaker events, Locust's CSV) are put on that axis with the run's recorded
``t0_wall_ms``. An injected fault is an ``Interval`` from the nemesis event that began it to the
event that ended it; a fault whose end was never recorded runs to the end of its scenario and
says so (``open_end``), so nothing is drawn shorter than it may have lasted.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from exoarmur_cli.checkers.common import quantile, submissions
from exoarmur_cli.history import FAIL, OK, Event

FAULT_PROCESSES = ("nemesis", "observer")
BREAKER_LEVEL = {"CLOSED": 0, "HALF_OPEN": 1, "OPEN": 2}
MAX_REASONS = 6  # refusal reasons plotted one by one; the rest are summed as "other"
_EFFECTOR_META = {"applied", "wall_ms", "seed"}


@dataclass(frozen=True)
class Interval:
    """A span on the run's time axis: an injected fault, or an engaged kill switch."""

    start_s: float
    end_s: float
    kind: str
    label: str
    scenario: str = ""
    open_end: bool = False  # no end was recorded: drawn to the end of its scenario


@dataclass(frozen=True)
class Span:
    """A scenario's time on the run's axis; ``finished`` only when its driver said so."""

    name: str
    start_s: float
    end_s: float
    finished: bool


def wall_to_run_s(wall_ms: float, t0_wall_ms: float) -> float:
    return (wall_ms - t0_wall_ms) / 1000


def scenario_spans(history: Sequence[Event]) -> list[Span]:
    """Each scenario from its first to its last event, in the order they ran."""
    first: dict[str, float] = {}
    last: dict[str, float] = {}
    finished: set[str] = set()
    for event in history:
        if event.scenario in ("-", ""):
            continue
        first.setdefault(event.scenario, event.time_ms)
        last[event.scenario] = max(last.get(event.scenario, 0.0), event.time_ms)
        if event.f == "scenario_done" and event.type == OK:
            finished.add(event.scenario)
    return sorted((Span(n, first[n] / 1000, last[n] / 1000, n in finished) for n in first),
                  key=lambda s: s.start_s)


def run_end_s(history: Sequence[Event], samples: Sequence[Mapping[str, Any]]) -> float:
    times = [e.time_ms for e in history] + [s["time_ms"] for s in samples if "time_ms" in s]
    return max(times) / 1000 if times else 0.0


# --- faults ---------------------------------------------------------------------------------


def _fault_start(event: Event) -> tuple[tuple[str, str], str, str] | None:
    """(slot, kind, label) if this event begins a fault, else None."""
    v, f = event.value, event.f
    target = str(v.get("target", ""))
    if f == "restart_nats":
        return ("nats", "nats"), "NATS restart", f"NATS restart ({v.get('mode', '?')})"
    if f == "kill":
        return ("proc", target), "process killed", f"{v.get('signal', 'kill')} {target}"
    if f == "pause":
        return ("pause", target), "process paused", f"SIGSTOP {target}"
    if f == "proxy_toxics":
        what = ", ".join(f"{k}={val}" for k, val in sorted(v.items()) if k not in ("target", "wall_ms"))
        return ("proxy", target), "network fault", f"{target}: {what}"
    if f == "effector_faults" and set(v) - _EFFECTOR_META:
        what = ", ".join(f"{k}={val}" for k, val in sorted(v.items()) if k not in _EFFECTOR_META)
        return ("effector", "effector"), "effector fault", f"effector {what}"
    if f == "corrupt_safety_state" and v.get("begin"):
        return ("safety", str(v.get("key"))), "safety state unreadable", f"safety state '{v.get('key')}' unreadable"
    if f == "noisy_tenant":
        return ("noisy", str(v.get("tenant"))), "noisy tenant", f"noisy {v.get('tenant')} at {v.get('rate_per_s')}/s"
    return None


def _fault_end(event: Event) -> list[tuple[str, str]]:
    """The slots this event closes."""
    v, f = event.value, event.f
    target = str(v.get("target", ""))
    ends = {"api_ready_after_restart": [("nats", "nats")], "start": [("proc", target)],
            "resume": [("pause", target)], "proxy_clear": [("proxy", target)],
            "effector_recovered": [("effector", "effector")]}
    if f == "effector_faults":  # any new setting replaces (ends) the previous one
        return [("effector", "effector")]
    if f == "corrupt_safety_state" and not v.get("begin"):
        return [("safety", str(v.get("key")))]
    return ends.get(f, [])


def fault_intervals(history: Iterable[Event]) -> list[Interval]:
    """Every fault the nemesis injected, from its start event to the event that ended it."""
    open_: dict[tuple[str, str], tuple[Event, str, str]] = {}
    done: list[Interval] = []
    scenario_end: dict[str, float] = {}
    for event in history:
        scenario_end[event.scenario] = event.time_ms
        if event.process not in FAULT_PROCESSES:
            continue
        for slot in _fault_end(event):
            if slot in open_:
                began, kind, label = open_.pop(slot)
                done.append(Interval(began.time_ms / 1000, event.time_ms / 1000, kind, label, began.scenario))
        started = _fault_start(event)
        if started is not None:
            slot, kind, label = started
            open_[slot] = (event, kind, label)
    for began, kind, label in open_.values():
        end_ms = scenario_end.get(began.scenario, began.time_ms)
        done.append(Interval(began.time_ms / 1000, end_ms / 1000, kind, label, began.scenario, open_end=True))
    return sorted(done, key=lambda i: (i.start_s, i.label))


# --- client-side series ---------------------------------------------------------------------


def _bin(time_s: float, bin_s: float) -> float:
    return (time_s // bin_s) * bin_s


def latency_by_scenario(history: Sequence[Event], bin_s: float = 1.0) -> dict[str, list[tuple[float, float, float, int]]]:
    """Per scenario: (bin start s, p50 ms, p99 ms, answers) of submission latency (invoke → answer)."""
    buckets: dict[str, dict[float, list[float]]] = defaultdict(lambda: defaultdict(list))
    for sub in submissions(history):
        if sub.done is None or sub.done.type not in (OK, FAIL):
            continue
        buckets[sub.invoke.scenario][_bin(sub.invoke.time_ms / 1000, bin_s)].append(
            sub.done.time_ms - sub.invoke.time_ms)
    return {scenario: [(t, quantile(v, 0.5), quantile(v, 0.99), len(v)) for t, v in sorted(bins.items())]
            for scenario, bins in buckets.items()}


def admission_rates(history: Sequence[Event], bin_s: float = 1.0) -> tuple[list[float], dict[str, list[float]]]:
    """Submissions answered per second, by answer: accepted, refused per reason code, no answer."""
    counts: dict[str, Counter] = defaultdict(Counter)
    for sub in submissions(history):
        if sub.accepted:
            label = "accepted"
        elif sub.refused and sub.reason:
            label = f"refused {sub.reason}"
        elif sub.refused:
            label = "refused without reason"
        else:
            label = "no answer"
        at = sub.done.time_ms if sub.done is not None else sub.invoke.time_ms
        counts[label][_bin(at / 1000, bin_s)] += 1
    if not counts:
        return [], {}
    refusals = sorted((k for k in counts if k.startswith("refused ")), key=lambda k: -sum(counts[k].values()))
    for extra in refusals[MAX_REASONS:]:
        counts["refused (other reasons)"].update(counts.pop(extra))
    bins = sorted({t for c in counts.values() for t in c})
    start, end = bins[0], bins[-1]
    axis = [start + i * bin_s for i in range(int(round((end - start) / bin_s)) + 1)]
    return axis, {label: [c.get(t, 0) / bin_s for t in axis] for label, c in sorted(counts.items(), key=_label_order)}


def _label_order(item: tuple[str, Counter]) -> tuple[int, str]:
    label = item[0]
    return (0 if label == "accepted" else 2 if label == "no answer" else 1, label)


# --- samples, events, Locust ----------------------------------------------------------------


def sample_series(samples: Iterable[Mapping[str, Any]], kind: str) -> dict[str, tuple[list[float], list[float]]]:
    """Per process: (times s, values) of one sampled kind ("pending", "rss_mb")."""
    series: dict[str, tuple[list[float], list[float]]] = {}
    for row in samples:
        if row.get("kind") != kind or row.get("value") is None:
            continue
        times, values = series.setdefault(str(row.get("process")), ([], []))
        times.append(row["time_ms"] / 1000)
        values.append(row["value"])
    return dict(sorted(series.items()))


def breaker_steps(events: Iterable[Mapping[str, Any]], t0_wall_ms: float,
                  cells: Iterable[str] = ()) -> dict[str, list[tuple[float, str]]]:
    """Per cell: (time s, state) from CLOSED at the run's start through every recorded transition."""
    steps: dict[str, list[tuple[float, str]]] = {cell: [(0.0, "CLOSED")] for cell in cells}
    rows = [r["data"] for r in events if str(r.get("subject", "")).startswith("exo.events.breaker.")]
    for t in sorted(rows, key=lambda d: d["at_ms"]):
        steps.setdefault(t["cell_id"], [(0.0, "CLOSED")]).append((wall_to_run_s(t["at_ms"], t0_wall_ms), t["to"]))
    return dict(sorted(steps.items()))


def switch_windows(history: Iterable[Event], t0_wall_ms: float) -> list[Interval]:
    """Each kill switch's engaged interval, per scope: from the api's acknowledgement of the
    engagement to the request that released it (the window the G5 checker judges)."""
    engaged: dict[str, tuple[float, str]] = {}
    windows: list[Interval] = []
    for e in history:
        if e.f != "killswitch":
            continue
        scope = str(e.value.get("scope"))
        if e.type == OK and e.value.get("engaged"):
            engaged[scope] = (wall_to_run_s(e.value["acked_wall_ms"], t0_wall_ms), e.scenario)
        elif e.type == "invoke" and not e.value.get("engaged") and scope in engaged:
            start, scenario = engaged.pop(scope)
            end = wall_to_run_s(e.value["invoked_wall_ms"], t0_wall_ms)
            windows.append(Interval(start, end, "global" if scope == "global" else "tenant", scope, scenario))
    for scope, (start, scenario) in engaged.items():
        windows.append(Interval(start, start, "global" if scope == "global" else "tenant", scope, scenario, True))
    return sorted(windows, key=lambda w: w.start_s)


def decisions_between(audit: Iterable[Mapping[str, Any]], t0_wall_ms: float, start_s: float,
                      end_s: float) -> list[tuple[float, str, str, str]]:
    """(decision time s, tenant, outcome, reason) of every audit record decided in [start, end]."""
    out = []
    for row in audit:
        record = row.get("record", {})
        now_ms = record.get("snapshot", {}).get("now_ms")
        if now_ms is None:
            continue
        t = wall_to_run_s(now_ms, t0_wall_ms)
        if start_s <= t <= end_s:
            out.append((t, record.get("tenant_id", "?"), record.get("outcome", "?"), record.get("reason_code", "?")))
    return sorted(out)


def locust_rates(rows: Iterable[Mapping[str, str]], t0_wall_ms: float) -> tuple[list[float], list[float], list[float]]:
    """(times s, requests/s, failures/s) of Locust's "Aggregated" rows in locust_stats_history.csv."""
    times, rps, fps = [], [], []
    for row in rows:
        if row.get("Name") != "Aggregated":
            continue
        try:
            at, req, fail = float(row["Timestamp"]) * 1000, float(row["Requests/s"]), float(row["Failures/s"])
        except (KeyError, TypeError, ValueError):
            continue
        times.append(wall_to_run_s(at, t0_wall_ms))
        rps.append(req)
        fps.append(fail)
    return times, rps, fps
