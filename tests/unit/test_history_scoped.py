"""A scenario that runs beside others (``scenarios.BESIDE``) writes to the one history through a
``ScopedHistory``: its events carry its own name, whatever scenario the history is on."""

from exoarmur_cli.history import OK, History, ScopedHistory, read_events
from exoarmur_cli.scenarios import BESIDE, BESIDE_UNTIL, ORDER


def test_scoped_events_carry_their_scenario(tmp_path):
    history = History(tmp_path / "history.jsonl")
    beside = ScopedHistory(history, "power_loss")
    history.scenario = "persistence"
    history.append(OK, "submit", "peer-1", {"key": "persistence-00001"})
    beside.append(OK, "scenario_done", "harness")
    history.append(OK, "scenario_done", "harness")
    history.close()
    events = list(read_events(tmp_path / "history.jsonl"))
    assert [(e.index, e.scenario, e.f) for e in events] == [
        (0, "persistence", "submit"), (1, "power_loss", "scenario_done"), (2, "persistence", "scenario_done")]


def test_beside_scenarios_are_known_and_joined_before_the_latency_judged_ones():
    assert set(BESIDE) <= set(ORDER) and BESIDE_UNTIL in ORDER and BESIDE_UNTIL not in BESIDE
