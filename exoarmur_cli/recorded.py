"""What a run recorded, as checkers see it: plain data loaded from a bundle's ``raw/``.

Checkers never see live services, only this. ``replay-verify`` loads the same files the
same way, which is why a verdict can be re-derived from a bundle alone.

raw/ files (one JSON object per line unless noted):
- history.jsonl          Event (see history.py): client operations, faults, observations
- load-history.jsonl     Events of the Locust process (scenario "load"), same schema
- audit_export.jsonl     {"seq", "subject", "record": AuditRecordV1}  — the AUDIT stream
- intents_export.jsonl   {"seq", "subject", "msg_id", "timestamp_ms", "intent": IntentV1}
- events_export.jsonl    {"seq", "subject", "data": {...}} — breaker transitions, refusal counters
- effector_ledger.jsonl  the effector's ledger rows
- kv_export.jsonl        {"bucket", "seq", "subject", "operation", "data"} — every value put in the
                         safety and approvals buckets (data as text, even when it is not JSON)
- samples.jsonl          {"time_ms", "kind", "process", "value"} — RSS, pending depth, ...
- effector_wire.jsonl    {"event", "conn", "key", "wall_ms", ...} — cells -> effector HTTP as the proxy saw it
- kv_safety_export.jsonl {"seq", "subject", "timestamp_ms", "operation", "data_b64", "kept_per_key"} —
                         the safety KV bucket's retained history (stream KV_safety)
- kv_approvals_export.jsonl  the same for the approvals bucket (stream KV_approvals)
- run_params.json        (one object) seed, profile, policy tables, scenario parameters, stack view
- capacity_source.json   when the admission numbers were sized (measured by default on an embedded
                         stack, --capacity-from, or an external stack's own capacity_source.json):
                         the bench document they were sized from, as read (run_params.json's "capacity")
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import orjson

from exoarmur_cli.history import Event, read_events
from exoarmur_cli.rundata import RunParams

HISTORY = "history.jsonl"
LOAD_HISTORY = "load-history.jsonl"  # written by the Locust process: same Event schema
AUDIT = "audit_export.jsonl"
INTENTS = "intents_export.jsonl"
EVENTS = "events_export.jsonl"
LEDGER = "effector_ledger.jsonl"
KV = "kv_export.jsonl"
SAMPLES = "samples.jsonl"
WIRE = "effector_wire.jsonl"
RUN_PARAMS = "run_params.json"
CAPACITY_SOURCE = "capacity_source.json"
KV_SAFETY = "kv_safety_export.jsonl"
KV_APPROVALS = "kv_approvals_export.jsonl"


@dataclass(frozen=True)
class Recorded:
    history: list[Event] = field(default_factory=list)
    audit: list[dict[str, Any]] = field(default_factory=list)
    intents: list[dict[str, Any]] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    ledger: list[dict[str, Any]] = field(default_factory=list)
    kv: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    wire: list[dict[str, Any]] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)  # raw/run_params.json as read
    # None: the bundle has no KV export (an older run), which is not the same as an empty bucket.
    kv_safety: list[dict[str, Any]] | None = None
    kv_approvals: list[dict[str, Any]] | None = None

    @cached_property
    def run(self) -> RunParams:
        """raw/run_params.json as its frozen type (parts it lacks load empty or None)."""
        return RunParams.from_json(self.params)

    def scenario_events(self, scenario: str) -> list[Event]:
        return [e for e in self.history if e.scenario == scenario]

    def scenarios_run(self) -> set[str]:
        """Scenarios whose driver finished (it appends a final ``scenario_done`` event)."""
        return {e.scenario for e in self.history if e.f == "scenario_done" and e.type == "ok"}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    with open(path, "rb") as handle:
        return [orjson.loads(line) for line in handle if line.strip()]


def write_jsonl(path: Path, rows) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as handle:
        for row in rows:
            handle.write(orjson.dumps(row, option=orjson.OPT_SORT_KEYS) + b"\n")


def _merged_history(raw_dir: Path) -> list[Event]:
    events: list[Event] = []
    for name in (HISTORY, LOAD_HISTORY):
        if (raw_dir / name).exists():
            events.extend(read_events(raw_dir / name))
    return sorted(events, key=lambda e: e.time_ms)


def load(raw_dir: Path) -> Recorded:
    raw_dir = Path(raw_dir)
    params_path = raw_dir / RUN_PARAMS
    return Recorded(
        history=_merged_history(raw_dir),
        audit=read_jsonl(raw_dir / AUDIT),
        intents=read_jsonl(raw_dir / INTENTS),
        events=read_jsonl(raw_dir / EVENTS),
        ledger=read_jsonl(raw_dir / LEDGER),
        kv=read_jsonl(raw_dir / KV),
        samples=read_jsonl(raw_dir / SAMPLES),
        wire=read_jsonl(raw_dir / WIRE),
        params=orjson.loads(params_path.read_bytes()) if params_path.exists() else {},
        kv_safety=read_jsonl(raw_dir / KV_SAFETY) if (raw_dir / KV_SAFETY).exists() else None,
        kv_approvals=read_jsonl(raw_dir / KV_APPROVALS) if (raw_dir / KV_APPROVALS).exists() else None,
    )
