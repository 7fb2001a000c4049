"""Where a closed loop's CPU goes: per-process CPU time (user + system) over the window, per intent.

The machine is shared, so the window also records what the machine gave us: the share of CPU
time the hypervisor stole, and the cores' worth of CPU spent by processes that are not ours."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class SystemTimes:
    """The whole machine's CPU seconds since boot, summed over its cores."""

    busy_s: float
    steal_s: float
    total_s: float


def system_times() -> SystemTimes:
    t = psutil.cpu_times()
    busy = t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)
    steal = getattr(t, "steal", 0.0)
    return SystemTimes(busy_s=busy, steal_s=steal, total_s=busy + steal + t.idle + getattr(t, "iowait", 0.0))


def process_cpu_s(processes: Mapping[str, psutil.Process]) -> dict[str, float]:
    """User + system CPU seconds of each process so far (a process that is gone counts as 0)."""
    found = {}
    for name, proc in processes.items():
        try:
            times = proc.cpu_times()
            found[name] = times.user + times.system
        except psutil.Error:
            found[name] = 0.0
    return found


def per_intent_ms(before: Mapping[str, float], after: Mapping[str, float], completed: int) -> dict[str, float]:
    """CPU milliseconds per completed intent for each process sampled at both ends of the window."""
    if completed <= 0:
        return {}
    return {name: max(after[name] - before[name], 0.0) * 1000 / completed for name in after if name in before}


def steal_pct(before: SystemTimes, after: SystemTimes) -> float:
    total = after.total_s - before.total_s
    return 100 * (after.steal_s - before.steal_s) / total if total > 0 else 0.0


def others_cores(before: SystemTimes, after: SystemTimes, ours_s: float, window_s: float) -> float:
    """Cores' worth of CPU the machine spent on work that is not ours during the window."""
    if window_s <= 0:
        return 0.0
    return max((after.busy_s - before.busy_s) - ours_s, 0.0) / window_s


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
