"""Gates 5-8: the stack runs the policy the harness declared (``[declared]`` in each gate file).

The live tables and the stack's overrides are recorded evidence (raw/run_params.json); a
declared number the stack does not run is drift, and drift fails the gate that declared it.
"""

from __future__ import annotations

from exoarmur_cli.declared import drift, live_values
from exoarmur_cli.recorded import Recorded


def policy_drift(rec: Recorded) -> tuple[dict, dict]:
    declared_by_gate = rec.params.get("declared", {})
    tables = rec.params.get("policy_tables")
    if not tables:
        return {}, {"note": "no live policy tables recorded: drift cannot be measured"}
    live = live_values(tables, rec.params.get("overrides", {}))
    metrics, evidence = {}, {}
    for gate_id, table in declared_by_gate.items():
        found = drift(table, live)
        metrics[f"policy_drift_g{gate_id}"] = len(found)
        metrics[f"policy_declared_g{gate_id}"] = len(table)
        evidence[f"g{gate_id}"] = found
    return metrics, evidence
