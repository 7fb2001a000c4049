"""Judging: from what a run recorded to measurements and gate verdicts. Pure.

The one judging path, below both ``run`` (which judges a run as it ends) and ``verify``
(which re-judges a stored bundle with the gate files embedded in it), so a re-derived verdict
has no second implementation. It imports neither of them.
"""

from __future__ import annotations

from collections.abc import Iterable

from exoarmur_cli import checkers, gates
from exoarmur_cli.recorded import Recorded


def judge(data: Recorded, all_gates: dict[int, gates.Gate], gate_ids: Iterable[int],
          measured: checkers.Measurements | None = None) -> tuple[list[gates.GateResult], dict, dict]:
    """Measure what was recorded and judge each gate in ``gate_ids``: (results, metrics, evidence).
    ``measured``: the checkers' measurements of this same ``data``, when the caller has them."""
    metrics, evidence = measure(data, measured)
    scenarios_run = data.scenarios_run()
    results = [gates.evaluate_gate(all_gates[g], metrics, scenarios_run) for g in sorted(gate_ids)]
    return results, metrics, evidence


def measure(data: Recorded, measured: checkers.Measurements | None = None) -> tuple[dict, dict]:
    """Every metric gate criteria may name: the checkers' plus the expected coverage counts."""
    measured = measured if measured is not None else checkers.measure(data)
    metrics, evidence = dict(measured.metrics), measured.evidence
    owners = data.run.node_owners
    metrics["nodes_expected"] = len(owners)
    metrics["tenants_expected"] = len(set(owners.values()))
    metrics["peers_expected"] = data.run.stack.get("peers")
    return metrics, evidence
