"""The policy the harness declares (each gate file's ``[declared]`` table), and the stack's live
numbers in the same names, so the two can be compared.

The harness owns the numbers it judges against: retry attempts and backoff, deadlines, breaker
thresholds, admission rates and bursts, the pending bound. The embedded stack is started with the
ones a stack config can override; the rest must already be what the stack's own tables say. A
stack whose live table differs from what a gate declares (it raised its own retry limit, say)
fails that gate's ``policy_drift_g<N> == 0`` — the threshold never moves with the stack.

Names: ``retry_<policy>_<attempts|base_s|cap_s>``, ``timeout_<CATEGORY>_s``,
``breaker_<field>`` (the effector breaker's table row), ``rate_<tenant|global>_<per_s|burst>``,
``pending_intents``, ``approval_wait_ms``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# What a stack config's ``overrides`` can set: the run gives its embedded stack these.
OVERRIDABLE = ("rate_tenant_per_s", "rate_tenant_burst", "rate_global_per_s", "rate_global_burst",
               "pending_intents", "approval_wait_ms")


class DeclaredConflict(ValueError):
    """Two gate files declare different values for one name."""


def merged(declared_by_gate: Mapping[int, Mapping[str, float]]) -> dict[str, float]:
    """One table from every gate's; a name two gates declare differently is a DeclaredConflict."""
    out: dict[str, float] = {}
    for gate_id, table in sorted(declared_by_gate.items()):
        for name, value in table.items():
            if name in out and out[name] != value:
                raise DeclaredConflict(f"gate {gate_id} declares {name} = {value}, another gate {out[name]}")
            out[name] = value
    return out


def stack_overrides(declared: Mapping[str, float]) -> dict[str, float]:
    return {name: declared[name] for name in OVERRIDABLE if name in declared}


def capped_admission(sized: Mapping[str, float], declared: Mapping[str, float]) -> tuple[dict[str, float], list[str]]:
    """Admission numbers sized from a measured capacity, each no higher than the one declared (the
    declared numbers are the load the scenarios were written to offer: a roomier machine keeps them,
    a smaller one is sized down), and the names kept as declared because the sizing was higher."""
    applied = {name: min(value, declared.get(name, value)) for name, value in sized.items()}
    return applied, sorted(name for name in sized if applied[name] < sized[name])


def live_values(tables: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, float]:
    """The stack's numbers (its policy tables, then its config's overrides) under declared names."""
    values: dict[str, float] = {}
    for row in tables.get("retry", []):
        for part in ("attempts", "base_s", "cap_s"):
            if part in row:
                values[f"retry_{row['name']}_{part}"] = row[part]
    for row in tables.get("timeouts", []):
        values[f"timeout_{row['category']}_s"] = row["deadline_s"]
    for row in tables.get("breakers", []):
        if row.get("name") == "effector":
            values.update({f"breaker_{k}": v for k, v in row.items() if isinstance(v, (int, float))})
    for row in tables.get("rate_limits", []):
        values[f"rate_{row['name']}_per_s"] = row["rate_per_s"]
        values[f"rate_{row['name']}_burst"] = row["burst"]
    for row in tables.get("bounds", []):
        values[row["name"]] = row["limit"]
    values.update({name: overrides[name] for name in OVERRIDABLE if name in overrides})
    return values


def drift(declared: Mapping[str, float], live: Mapping[str, float]) -> list[dict]:
    """Every declared name whose live value differs (or that the stack does not have)."""
    return [{"name": name, "declared": value, "live": live.get(name)} for name, value in sorted(declared.items())
            if live.get(name) is None or float(live[name]) != float(value)]


def declared_tables(tables: Mapping[str, Any], declared: Mapping[str, float]) -> dict[str, Any]:
    """The policy tables with every declared number in place of the stack's: what checkers judge by."""
    out = {kind: [dict(row) for row in rows] for kind, rows in tables.items()}
    for row in out.get("retry", []):
        for part in ("attempts", "base_s", "cap_s"):
            row[part] = declared.get(f"retry_{row['name']}_{part}", row.get(part))
    for row in out.get("timeouts", []):
        row["deadline_s"] = declared.get(f"timeout_{row['category']}_s", row["deadline_s"])
    for row in out.get("breakers", []):
        if row.get("name") == "effector":
            row.update({k: declared[f"breaker_{k}"] for k in list(row) if f"breaker_{k}" in declared})
    for row in out.get("rate_limits", []):
        row["rate_per_s"] = declared.get(f"rate_{row['name']}_per_s", row["rate_per_s"])
        row["burst"] = declared.get(f"rate_{row['name']}_burst", row["burst"])
    for row in out.get("bounds", []):
        row["limit"] = declared.get(row["name"], row["limit"])
    return out
