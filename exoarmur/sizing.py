"""Admission limits sized from a measured capacity, by one written rule.

``exoarmur bench`` measures the highest open-loop rate at which this machine's stack keeps its
submit-to-terminal p99 under ``HELD_P99_MS`` (the *held* rate). ``size_admission`` turns that into
the limits a stack config's ``overrides`` can set; ``exoarmur stack up --size-from`` applies them.
Each share below is a row of this one table, and the reason is beside it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import orjson


@dataclass(frozen=True)
class AdmissionSizing:
    # A rate is held when its open-loop p99 stays under this: a tenth of the quiet tenants'
    # latency bound in gate 6 (1,000 ms), so admission sized from it leaves that bound a wide margin.
    held_p99_ms: float = 100.0
    # The global rate, as a share of the held rate. The other half is the load generators' and the
    # harness's: on one machine they share its cores with the stack (Locust alone took ~1 core).
    global_share: float = 0.5
    # A tenant's rate, as a share of the global one: a noisy tenant flooding at 3x its limit is
    # refused down to its rate, so three tenants at their limit still fit under the global rate.
    tenant_share: float = 1 / 3
    # Bursts and the pending bound, in seconds of their rate.
    tenant_burst_s: float = 2.0
    global_burst_s: float = 2.0
    pending_s: float = 2.0


SIZING = AdmissionSizing()


def size_admission(held_per_s: float, sizing: AdmissionSizing = SIZING) -> dict[str, int]:
    """The admission overrides (``exoarmur_cli.declared.OVERRIDABLE`` names) for a held rate."""
    if not held_per_s > 0:
        raise ValueError(f"a held rate must be positive, not {held_per_s}")
    global_rate = max(1, round(held_per_s * sizing.global_share))
    tenant_rate = max(1, round(global_rate * sizing.tenant_share))
    return {
        "rate_global_per_s": global_rate,
        "rate_global_burst": max(1, round(global_rate * sizing.global_burst_s)),
        "rate_tenant_per_s": tenant_rate,
        "rate_tenant_burst": max(1, round(tenant_rate * sizing.tenant_burst_s)),
        "pending_intents": max(1, round(global_rate * sizing.pending_s)),
    }


def held_rate(ladder: list[dict], sizing: AdmissionSizing = SIZING) -> float | None:
    """The highest rate of a measured ladder that was held: p99 under the bound, every accepted
    intent completed, none refused. Rates above the first that failed do not count (a lucky step
    past a failing one is noise, not capacity). None when even the lowest failed."""
    held = None
    for step in sorted(ladder, key=lambda s: s["rate_per_s"]):
        ok = (step.get("p99_ms") is not None and step["p99_ms"] <= sizing.held_p99_ms
              and step["completed"] == step["accepted"] > 0 and not step["refused"])
        if not ok:
            break
        held = step["rate_per_s"]
    return held


def held_from_bench(document: object) -> float:
    """The held rate a ``bench --save`` file recorded; ValueError saying what is wrong with it."""
    admission = document.get("admission") if isinstance(document, dict) else None
    held = admission.get("held_per_s") if isinstance(admission, dict) else None
    if admission is None:
        raise ValueError("not a bench --save file of this version (no admission section)")
    if not isinstance(held, (int, float)) or isinstance(held, bool) or not held > 0:
        raise ValueError(f"the bench held no rate within p99 {SIZING.held_p99_ms:.0f} ms (held_per_s: {held})")
    return float(held)


def held_from_file(path: Path) -> float:
    """``held_from_bench`` of a ``bench --save`` file; ValueError saying what is wrong with it."""
    try:
        return held_from_bench(orjson.loads(Path(path).read_bytes()))
    except OSError as exc:
        raise ValueError(exc.strerror or str(exc)) from None
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"not JSON: {exc}") from None


def sizing_table(sizing: AdmissionSizing = SIZING) -> dict[str, float]:
    return asdict(sizing)
