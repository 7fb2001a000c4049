"""Scenario drivers, by name, and their parameters from ``scenarios/<name>.toml``.

The TOML file is what a reviewer reads: what the scenario does, its faults, and its sizes per
profile. The driver reads its numbers from there, never from constants of its own.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Awaitable, Callable

from exoarmur_cli.scenarios import capacity, durability, failures, power_loss, safety
from exoarmur_cli.scenarios.base import Context, ScenarioNotRun
from exoarmur_cli.scenarios.params import ScenarioFileError, ScenarioParams, parse

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

__all__ = ["DRIVERS", "ORDER", "Context", "ScenarioNotRun", "ScenarioFileError", "ScenarioParams", "load_scenario"]


def load_scenario(scenarios_dir: Path, name: str, profile: str) -> tuple[ScenarioParams, str]:
    """(parameters for ``profile``, the file's text) — the text goes into the bundle."""
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
    return parse(name, {**data.get("common", {}), **data[profile]}, f"scenario file {path} [{profile}]"), text
