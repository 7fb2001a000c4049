"""Each scenario's parameters as a frozen pydantic model (strict, ``extra="forbid"``), read from its
TOML file (``common`` plus the profile's table) and checked there: a missing, unknown or
non-numeric parameter is a ``ScenarioFileError`` naming the file, table and key before anything
runs. ``to_json`` gives back the table as read, which is what raw/run_params.json records."""

from __future__ import annotations

from typing import Any, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from exoarmur_cli.errors import ConfigError

Number = int | float
P = TypeVar("P", bound="ScenarioParams")


class ScenarioFileError(ConfigError):
    """A scenario file is unreadable, not TOML, misnamed, or its parameters are not the scenario's."""


class ScenarioParams(BaseModel):
    # strict: 2.5 is no integer and "5" no number; a TOML integer is a number.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    def to_json(self) -> dict[str, Any]:
        return self.model_dump()


class DeploymentParams(ScenarioParams):
    ready_timeout_s: Number


class PersistenceParams(ScenarioParams):
    intents: int
    rate_during_restart: Number
    per_check: int  # submitted after the hard restart while the global switch should still hold
    # On a cluster only (--nats-cluster N): each cycle applies these node faults in this order.
    node_faults: list[Literal["kill_leader", "kill_follower", "pause_leader", "partition_leader"]]
    node_fault_cycles: int
    node_pause_s: Number  # a paused leader stays stopped at least this long (past the election timeout)
    node_partition_s: Number  # a partitioned leader stays cut off at least this long (likewise)


class PowerLossParams(ScenarioParams):
    power_losses: int
    rate_per_s: Number
    round_s: Number
    restart_timeout_s: Number


class RestartParams(ScenarioParams):
    rate_per_s: Number
    effector_latency_ms: Number
    duration_s: Number
    rounds: int


class ReplayParams(ScenarioParams):
    per_path: int


class KillswitchParams(ScenarioParams):
    flow_rate_per_s: Number
    cycles: int
    per_check: int
    engaged_s: Number  # each engagement is held this long under flow (longer than the effect bound)
    released_s: Number
    switch_effect_bound_ms: Number  # no effect may land this long after a switch's ack while engaged
    probes_after_ack: int  # intents sent one after another from each global engage's ack


class TenancyParams(ScenarioParams):
    quiet_rate_per_s: Number
    phase_s: Number
    noisy_over_limit: Number
    global_flood_over: Number
    global_flood_margin_s: Number


class TimeoutParams(ScenarioParams):
    hang_intents: int
    slow_intents: int
    slow_latency_ms: Number
    slow_jitter_ms: Number
    late_intents: int
    late_hold_s: Number
    rejected_intents: int
    late_latency_ms: Number
    late_jitter_ms: Number


class RetryParams(ScenarioParams):
    error_rate: Number
    lose_response_rate: Number
    intents: int
    concurrency: int
    max_rounds: int  # rounds to replace intents a breaker opened by chance refused unattempted


class BreakerParams(ScenarioParams):
    history_rate_per_s: Number
    history_beyond_window_s: Number
    max_intents_to_open: int
    intents_while_open: int
    intents_after: int


class BackpressureParams(ScenarioParams):
    rate_per_s: Number
    over_bound: Number


class ChaosParams(ScenarioParams):
    duration_s: Number
    rate_per_s: Number
    duplicate_ratio: Number
    latency_ms: Number
    reset_rate: Number


class LoadParams(ScenarioParams):
    sustained_s: Number
    sustained_fraction: Number
    overload_s: Number
    overload_factor: Number


PARAMS: dict[str, type[ScenarioParams]] = {
    "deployment": DeploymentParams, "persistence": PersistenceParams, "power_loss": PowerLossParams,
    "restart": RestartParams,
    "replay": ReplayParams, "killswitch": KillswitchParams, "tenancy": TenancyParams,
    "timeout": TimeoutParams, "retry": RetryParams, "breaker": BreakerParams,
    "backpressure": BackpressureParams, "chaos": ChaosParams, "load": LoadParams,
}


# A run whose admission is sized from a measured capacity (run-gates --capacity-from) offers every
# scenario's fixed rates scaled as its admission was: a rate above the sized limits would be refused
# and judged as the stack's failure. The durations that carry a rate stretch as much, so each
# scenario still submits as many intents as its criteria count on. scenario -> (rates, durations).
# Rates taken from the live policy (load, the noisy tenant) are sized already; counts stay as they are.
RATE_SCALED: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "persistence": (("rate_during_restart",), ()),
    "power_loss": (("rate_per_s",), ("round_s",)),
    "restart": (("rate_per_s",), ("duration_s",)),
    "killswitch": (("flow_rate_per_s",), ("engaged_s", "released_s")),
    "tenancy": (("quiet_rate_per_s",), ("phase_s",)),
    "backpressure": (("rate_per_s",), ()),
    "chaos": (("rate_per_s",), ("duration_s",)),
}


def rate_scaled(name: str, params: P, factor: float) -> P:
    """``params`` with its offered rates times ``factor`` and its rate-carrying durations divided by
    it; unchanged at a factor of 1 or more (a roomier machine is not offered more than the files say)."""
    if not 0 < factor:
        raise ValueError(f"a rate factor must be positive, not {factor}")
    rates, durations = RATE_SCALED.get(name, ((), ()))
    if factor >= 1 or not rates:
        return params
    changes = {key: round(getattr(params, key) * factor, 3) for key in rates}
    changes.update({key: round(getattr(params, key) / factor, 3) for key in durations})
    return params.model_copy(update=changes)


def parse(name: str, table: Mapping[str, Any], where: str) -> ScenarioParams:
    """``table`` (common + profile) as ``name``'s parameters; ScenarioFileError says what is wrong."""
    kind = PARAMS.get(name)
    if kind is None:
        raise ScenarioFileError(f"{where}: no scenario named {name!r}")
    try:
        return kind.model_validate(dict(table))
    except ValidationError as exc:
        raise ScenarioFileError(f"{where}: {_why(exc)}") from None


def _why(exc: ValidationError) -> str:
    """pydantic's errors as one line: the missing and unknown keys, then each wrong value."""
    errors = exc.errors()
    missing = sorted(str(e["loc"][0]) for e in errors if e["type"] == "missing")
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] == "extra_forbidden")
    parts = [f"parameters missing {missing or '-'}, unknown {unknown or '-'}"] if missing or unknown else []
    wrong: dict[str, tuple[Any, bool]] = {}  # key -> (value, an integer was wanted)
    for e in errors:
        if e["type"] not in ("missing", "extra_forbidden"):
            # A number field (int | float) fails once per member, its loc naming the member.
            whole = len(e["loc"]) == 1 and e["type"].startswith("int")
            if e["type"] in ("literal_error", "list_type"):  # a list parameter (node_faults): pydantic says what
                parts.append(f"{e['loc'][0]} holds {e['input']!r}: {e['msg']}")
                continue
            wrong[str(e["loc"][0])] = (e["input"], whole)
    parts += [f"{key} = {value!r} is not {'an integer' if whole else 'a number'}"
              for key, (value, whole) in wrong.items()]
    return "; ".join(parts)

EXPECTED = "expected_s"  # each profile table's expected duration: for the progress display only


def expected_s(table: dict[str, Any], where: str) -> float:
    """Take ``expected_s`` (how long the scenario takes at this profile, in seconds) out of
    ``table``; it is no parameter of the driver, only what the progress display sums."""
    if EXPECTED not in table:
        raise ScenarioFileError(f"{where}: missing {EXPECTED} (the measured duration, in seconds)")
    value = table.pop(EXPECTED)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ScenarioFileError(f"{where}: {EXPECTED} = {value!r} is not a positive number of seconds")
    return float(value)


def as_(params: ScenarioParams, kind: type[P]) -> P:
    """``params`` narrowed to ``kind`` (a driver's own parameters)."""
    if not isinstance(params, kind):
        raise TypeError(f"expected {kind.__name__}, got {type(params).__name__}")
    return params
