"""What the report is built from: a bundle's 13 and its raw/, read once, and nothing else.

The verdicts shown are the ones 13 records (the ones ``replay-verify`` re-derives and checks);
every plot and every piece of evidence is re-computed from raw/ with the same checkers a run
uses, each checker run on its own so a criterion can be linked to the checker and the raw files
its measurement came from. A bundle whose files no longer match 13's digests still gets a
report, with that fact at its top.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from exoarmur_cli import checkers, gates, recorded
from exoarmur_cli.evidence import RAW, BundleError, read_final, verify_digests
from exoarmur_cli.environment import ENVIRONMENT

LOCUST_HISTORY = "locust_stats_history.csv"
LOCUST_STATS = "locust_stats.csv"
LOCUST_HTML = "locust_report.html"

# Which raw/ files each checker reads, and where on the page its evidence is drawn.
CHECKER_SOURCES: dict[str, tuple[str, ...]] = {
    "exactly_once": (recorded.HISTORY, recorded.AUDIT, recorded.LEDGER),
    "expectations": (recorded.HISTORY, recorded.AUDIT),
    "refusals": (recorded.HISTORY, recorded.EVENTS),
    "persistence": (recorded.HISTORY, recorded.INTENTS, recorded.AUDIT),
    "restarts": (recorded.HISTORY,),
    "cold_start": (recorded.HISTORY,),
    "decision_replay": (recorded.AUDIT, recorded.INTENTS),
    "killswitch": (recorded.HISTORY, recorded.AUDIT),
    "tenancy": (recorded.HISTORY, recorded.AUDIT, recorded.LEDGER, recorded.RUN_PARAMS),
    "timeouts": (recorded.HISTORY, recorded.AUDIT, recorded.INTENTS, recorded.RUN_PARAMS),
    "retries": (recorded.AUDIT, recorded.RUN_PARAMS),
    "breaker": (recorded.EVENTS, recorded.HISTORY, recorded.AUDIT),
    "chaos": (recorded.HISTORY,),
    "backpressure": (recorded.HISTORY, recorded.SAMPLES, recorded.RUN_PARAMS),
    "load": (recorded.LOAD_HISTORY, recorded.HISTORY, recorded.AUDIT),
    "resources": (recorded.SAMPLES, recorded.RUN_PARAMS),
}
CHECKER_PLOTS: dict[str, str] = {
    "killswitch": "plot-killswitch", "tenancy": "plot-latency", "refusals": "plot-admission",
    "breaker": "plot-breaker", "chaos": "plot-timeline", "restarts": "plot-timeline",
    "persistence": "plot-timeline", "backpressure": "plot-pending", "load": "plot-locust",
    "resources": "plot-rss", "timeouts": "plot-latency", "retries": "plot-admission",
    "exactly_once": "plot-admission",
}


@dataclass(frozen=True)
class BundleData:
    """One bundle, loaded: 13, raw/ as checkers see it, Locust's CSVs, what each checker found."""

    path: Path
    final: dict[str, Any]
    data: recorded.Recorded
    results: tuple[gates.GateResult, ...]
    metrics: dict[str, Any]
    evidence: dict[str, Any]
    metric_checker: dict[str, str]
    locust_history: tuple[dict[str, str], ...]
    locust_stats: tuple[dict[str, str], ...]
    gate_files: dict[int, gates.Gate] = field(default_factory=dict)
    integrity: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()  # what could not be read, said on the page
    environment: dict[str, Any] = field(default_factory=dict)  # raw/environment.json, {} if absent

    @property
    def raw(self) -> Path:
        return self.path / RAW

    @property
    def t0_wall_ms(self) -> float | None:
        value = self.data.params.get("t0_wall_ms", self.final.get("run", {}).get("started_wall_ms"))
        return float(value) if isinstance(value, (int, float)) else None

    def has_raw(self, name: str) -> bool:
        return (self.raw / name).is_file()


def read_csv(path: Path) -> tuple[dict[str, str], ...]:
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            return tuple(csv.DictReader(handle))
    except (OSError, UnicodeDecodeError, csv.Error):
        return ()


def _gate_files(raw: Path) -> tuple[dict[int, gates.Gate], list[str]]:
    found: dict[int, gates.Gate] = {}
    problems: list[str] = []
    for path in sorted((raw / "gates").glob("*.toml")):
        try:
            gate = gates.load_gate_text(path.name, path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, gates.GateFileError) as exc:
            problems.append(f"raw/gates/{path.name}: {exc}")
            continue
        found[gate.id] = gate
    return found, problems


def _environment(raw: Path) -> dict[str, Any]:
    try:
        found = orjson.loads((raw / ENVIRONMENT).read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return {}
    return found if isinstance(found, dict) else {}


def _load_recorded(raw: Path) -> tuple[recorded.Recorded, list[str]]:
    try:
        return recorded.load(raw), []
    except Exception as exc:  # a damaged raw/ still gets a page that says so
        return recorded.Recorded(), [f"raw/ could not be read as a run's record: {type(exc).__name__}: {exc}"]


# raw/ as read and what the checkers measured in it, when a run that just judged it has them
Measured = tuple[recorded.Recorded, checkers.Measurements]


def load_bundle(path: Path, measured: Measured | None = None) -> BundleData:
    """Read a bundle for the report. Raises BundleError if ``path`` is not a bundle at all.
    ``measured``: raw/ already read and measured (by the run that wrote it, the moment before)."""
    path = Path(path)
    final = read_final(path)
    data, problems = (measured[0], []) if measured else _load_recorded(path / RAW)
    try:
        results = tuple(gates.result_from_json(g) for g in final.get("gates", []))
    except gates.GateFileError as exc:
        raise BundleError(f"{path}: 13's gates cannot be read: {exc}") from exc
    metrics, evidence, source = measured[1] if measured else checkers.measure(data)
    gate_files, gate_problems = _gate_files(path / RAW)
    return BundleData(
        path=path, final=final, data=data, results=results, metrics=metrics, evidence=evidence,
        metric_checker=source, locust_history=read_csv(path / RAW / LOCUST_HISTORY),
        locust_stats=read_csv(path / RAW / LOCUST_STATS), gate_files=gate_files,
        integrity=tuple(verify_digests(path, final)), problems=tuple(problems + gate_problems),
        environment=_environment(path / RAW),
    )
