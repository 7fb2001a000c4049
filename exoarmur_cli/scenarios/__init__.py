"""Scenario drivers, by name, and their parameters from ``scenarios/<name>.toml``.

The TOML file is what a reviewer reads: what the scenario does, its faults, and its sizes per
profile. The driver reads its numbers from there, never from constants of its own.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable

from exoarmur_cli.scenarios import capacity, durability, failures, power_loss, safety
from exoarmur_cli.scenarios.base import Context, ScenarioNotRun
from exoarmur_cli.scenarios.params import ScenarioFileError, ScenarioParams, expected_s, parse

DRIVERS: dict[str, Callable[[Context], Awaitable[None]]] = {
    "deployment": durability.deployment,
    "persistence": durability.persistence,
    "power_loss": power_loss.power_loss,
    "restart": durability.restart,
    "replay": safety.replay,
    "killswitch": safety.killswitch,
    "tenancy": safety.tenancy,
    "timeout": failures.timeout,
    "retry": failures.retry,
    "breaker": failures.breaker,
    "backpressure": capacity.backpressure,
    "chaos": failures.chaos,
    "load": capacity.load,
}
ORDER = list(DRIVERS)  # the order they run in: cheap and foundational first, load last
# Scenarios that bring up a stack of their own and never touch the run's stack: they run beside
# the scenarios on the run's stack instead of before them...
BESIDE = ("deployment", "power_loss")
# ...but only until this one: from it on, criteria judge latencies (switch propagation, quiet
# tenants' p99, hang resolution, load), so every later scenario runs with the machine to itself.
BESIDE_UNTIL = "killswitch"

__all__ = ["BESIDE", "BESIDE_UNTIL", "DRIVERS", "ORDER", "Context", "ScenarioFile", "ScenarioNotRun", "ScenarioFileError", "ScenarioParams",
           "load_scenario"]


@dataclass(frozen=True)
class ScenarioFile:
    """One scenario file read for one profile."""

    params: ScenarioParams  # what the driver runs with
    text: str  # the file as read: it goes into the bundle
    expected_s: float  # how long it takes at this profile (measured; the progress display sums these)


def load_scenario(scenarios_dir: Path, name: str, profile: str) -> ScenarioFile:
    """``name``'s file in ``scenarios_dir``, for ``profile``; ScenarioFileError names file, key and problem."""
    if not Path(scenarios_dir).is_dir():
        raise ScenarioFileError(f"{scenarios_dir}: scenarios directory not found")
    path = Path(scenarios_dir) / f"{name}.toml"
    try:
        text = path.read_text()
        data = tomllib.loads(text)
    except OSError as exc:
        raise ScenarioFileError(f"cannot read scenario file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioFileError(f"scenario file {path} is not valid TOML: {exc}") from None
    if data.get("name") != name:
        raise ScenarioFileError(f"scenario file {path} must say name = \"{name}\"")
    if profile not in data:
        raise ScenarioFileError(f"scenario file {path} has no [{profile}] table")
    where = f"scenario file {path} [{profile}]"
    table = {**data.get("common", {}), **data[profile]}
    expected = expected_s(table, where)
    return ScenarioFile(parse(name, table, where), text, expected)
