"""Checkers: pure functions from recorded data to named measurements plus evidence.

Each checker returns ``(metrics, evidence)``. ``measure`` composes them into one flat table of
measurements that gate criteria refer to by name, and says which checker measured each. A checker
that raises yields no metrics (its criteria then fail as missing) and its error as evidence: an
exception never passes.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

from exoarmur_cli.checkers import (
    access, admission, approvals, capacity, durability, faults, integrity, kv_revisions, node_faults, oracle, policy,
    power_loss, reads, safety, wire,
)
from exoarmur_cli.recorded import Recorded

Checker = Callable[[Recorded], tuple[dict, dict]]

CHECKERS: dict[str, Checker] = {
    "exactly_once": integrity.exactly_once,
    "effect_fences": integrity.effect_fences,
    "policy_drift": policy.policy_drift,
    "expectations": integrity.expectations,
    "refusals": integrity.refusals,
    "persistence": durability.persistence,
    "node_faults": node_faults.node_faults,
    "power_loss": power_loss.power_loss,
    "restarts": durability.restarts,
    "cold_start": durability.cold_start,
    "decision_replay": safety.decision_replay,
    "decision_oracle": oracle.decision_oracle,
    "snapshot_revisions": kv_revisions.snapshot_revisions,
    "killswitch": safety.killswitch,
    "approvals": approvals.approvals,
    "operator_door": approvals.operator_door,
    "tenancy": safety.tenancy,
    "access": access.access,
    "read_isolation": reads.read_isolation,
    "timeouts": faults.timeouts,
    "retries": faults.retries,
    "breaker": faults.breaker,
    "chaos": faults.chaos,
    "wire": wire.wire,
    "backpressure": capacity.backpressure,
    "load": capacity.load,
    "admitted_rates": admission.admitted_rates,
    "global_refusals": admission.global_refusals,
    "resources": capacity.resources,
}


class Measurements(NamedTuple):
    metrics: dict[str, float | int | None]
    evidence: dict[str, dict]  # checker -> what it shows
    source: dict[str, str]  # metric -> the checker that measured it (the report links them)


def measure(recorded: Recorded) -> Measurements:
    metrics: dict[str, float | int | None] = {}
    evidence: dict[str, dict] = {}
    source: dict[str, str] = {}
    for name, checker in CHECKERS.items():
        try:
            found, shown = checker(recorded)
        except Exception as exc:  # unknown, never true
            evidence[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        metrics.update(found)
        evidence[name] = shown
        source.update(dict.fromkeys(found, name))
    return Measurements(metrics, evidence, source)
