"""Faults have one home and record themselves the same way; an external stack says which it
cannot give (the scenario that asks is NOT RUN), and the CLI maps the harness's errors."""

from __future__ import annotations

import orjson
import pytest

from exoarmur import stackconfig
from exoarmur.errors import ExoError
from exoarmur_cli import main as cli
from exoarmur_cli.errors import ConfigError, EvidenceError, FaultError, HarnessError, ScenarioNotRun, StackError
from exoarmur_cli.faults import FaultProxy, Faults, NetworkFaults, Toxics, nemesis
from exoarmur_cli.history import History
from exoarmur_cli.stacks import EmbeddedStack, ExternalStack, open_stack


def events(history: History) -> list[dict]:
    history.flush()
    return [orjson.loads(line) for line in history.path.read_bytes().splitlines()]


def test_a_fault_is_one_nemesis_info_event_with_its_wall_time(tmp_path) -> None:
    history = History(tmp_path / "history.jsonl")
    nemesis.record(history, "kill", target="cell-0", signal="SIGKILL")
    nemesis.record(None, "kill", target="cell-1")  # no history: nothing recorded, no error
    [event] = events(history)
    assert (event["type"], event["f"], event["process"]) == ("info", "kill", "nemesis")
    assert event["value"]["target"] == "cell-0" and event["value"]["wall_ms"] > 1.7e12


def test_network_faults_record_the_window_around_the_toxics(tmp_path) -> None:
    history = History(tmp_path / "history.jsonl")
    proxy = FaultProxy("127.0.0.1", 1, name="cells->effector")
    link = NetworkFaults(proxy, history)
    link.set(Toxics(latency_ms=200, jitter_ms=100))
    assert proxy.toxics == Toxics(latency_ms=200, jitter_ms=100)
    link.clear()
    assert proxy.toxics == Toxics()
    began, ended = events(history)
    assert began["f"] == "proxy_toxics" and began["value"]["target"] == "cells->effector"
    assert began["value"]["latency_ms"] == 200 and "reset_peer_rate" not in began["value"]  # only what is on
    assert ended["f"] == "proxy_clear" and ended["value"]["wall_ms"] >= began["value"]["wall_ms"]


def test_an_external_stack_gives_no_process_or_network_faults_and_says_so(tmp_path) -> None:
    stackconfig.generate(tmp_path, tenants=2, nodes_per_tenant=1, peers_per_tenant=1)
    stack = ExternalStack(nats_url="nats://127.0.0.1:1", api_url="http://127.0.0.1:1", stack_config=tmp_path)
    history = History(tmp_path / "history.jsonl")
    faults = Faults(stack, history, effector=None)
    with pytest.raises(FaultError, match="needs process control to pause the cells; an external stack gives none"):
        faults.processes("pause the cells")
    with pytest.raises(FaultError, match="no fault proxy"):
        faults.effector_link()
    assert stack.sampled_pids() == {} and stack.logs_dir is None and stack.monitor_url is None
    assert events(history) == []


def test_an_external_stack_needs_its_stack_config() -> None:
    with pytest.raises(ConfigError, match="--stack-config"):
        open_stack(nats_url="nats://x:1", api_url="http://x:1", stack_config=None, seed=0, overrides={}, defects=[])
    embedded = open_stack(nats_url=None, api_url=None, stack_config=None, seed=0, overrides={}, defects=[])
    assert isinstance(embedded, EmbeddedStack) and not embedded.external


@pytest.mark.parametrize(("error", "code"), [
    (StackError("x"), cli.EXIT_STACK), (FaultError("x"), cli.EXIT_STACK), (ScenarioNotRun("x"), cli.EXIT_STACK),
    (ConfigError("x"), cli.EXIT_USAGE), (EvidenceError("x"), cli.EXIT_USAGE),
    (stackconfig.ConfigError("x"), cli.EXIT_USAGE), (ExoError("x"), cli.EXIT_USAGE),
])
def test_the_cli_maps_harness_and_stack_errors_to_exit_codes(error, code) -> None:
    assert cli.exit_code_for(error) == code
    assert isinstance(error, cli.KNOWN_ERRORS)


def test_the_harness_errors_have_their_own_root() -> None:
    for error in (StackError, FaultError, ScenarioNotRun, ConfigError, EvidenceError):
        assert issubclass(error, HarnessError) and not issubclass(error, ExoError)
