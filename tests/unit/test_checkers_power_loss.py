"""power_loss checker: what was acknowledged before each power loss is there after it.

Hand-made observations in the shapes ``scenarios/power_loss.py`` records; each test breaks one
thing and shows the metric that must go red.
"""

from __future__ import annotations

import copy

from builders import Hist, recorded

from exoarmur.contracts import key_digest
from exoarmur_cli.checkers.power_loss import power_loss

S = "power_loss"
PAIRS = [("t1", f"power_loss-{n:05d}") for n in range(1, 4)]
AUDIT = {f"exo.audit.{t}.{key_digest(t, k)}": f"sha-{k}" for t, k in PAIRS}
LEDGER = [f"eff-{k}" for _, k in PAIRS]


def dropped(host: str, stack_bytes: int = 0) -> dict:
    files = [{"path": "/.power-loss-canary", "bytes": 4096, "pages": 1, "size_change": True}]
    if stack_bytes:
        files.append({"path": "/effector-ledger.db-wal", "bytes": stack_bytes, "pages": 1, "size_change": False})
    return {host: {"bytes_dropped": 4096 + stack_bytes, "files_dropped": len(files), "creates_dropped": 1,
                   "files": files, "creates": ["/.power-loss-canary"]}}


def restored(round_: int, target: str, **overrides) -> dict:
    value = {"round": round_, "target": target, "started": {target: True}, "ready": True, "api_ready": True,
             "streams_missing": [], "nats_log_problems": [], "canary_survived": {target: False}}
    return {**value, **overrides}


def stored(**overrides) -> dict:
    return {"audit": dict(AUDIT), "ledger": list(LEDGER), "executed_effect_keys": list(LEDGER), **overrides}


def scenario(rounds: int = 3) -> dict:
    """Observations of a clean run, as plain values a test can break before building the history."""
    targets = ["nats", "effector", "both"]
    return {
        "before": [{"round": r, **stored()} for r in range(rounds)],
        "loss": [{"round": r, "target": targets[r % 3], "dropped": dropped(targets[r % 3] if r % 3 < 2 else "nats")}
                 for r in range(rounds)],
        "restored": [restored(r, targets[r % 3]) for r in range(rounds)],
        "after": [{"round": r, **stored()} for r in range(rounds)],
        "acked": [list(p) for p in PAIRS],
        "final": {**stored(), "intents": [list(p) for p in PAIRS]},
    }


def judge(obs: dict) -> tuple[dict, dict]:
    hist = Hist()
    for r in range(len(obs["loss"])):
        hist.observe("acknowledged_before", S, **obs["before"][r])
        hist.nemesis("power_loss", S, **obs["loss"][r])
        hist.observe("power_restored", S, **obs["restored"][r])
        hist.observe("stored_after", S, **obs["after"][r])
    hist.observe("acked_intents", S, pairs=obs["acked"])
    if obs["final"] is not None:
        hist.observe("stored_final", S, **obs["final"])
    return power_loss(recorded(hist))


def test_clean_run_is_all_zero():
    metrics, evidence = judge(scenario())
    assert metrics == {
        "power_losses": 3, "power_losses_without_dropped_bytes": 0, "power_loss_unsynced_bytes_dropped_min": 4096,
        "power_loss_canaries_survived": 0, "power_loss_acked_intents": 3, "power_loss_acked_intents_lost": 0,
        "power_loss_intents_without_terminal": 0, "power_loss_records_compared": 3, "power_loss_acked_records_lost": 0,
        "power_loss_effects_compared": 3, "power_loss_acked_effects_lost": 0, "power_loss_restart_failures": 0,
        "power_loss_store_errors": 0,
    }
    assert [p["stack_bytes_dropped"] for p in evidence["per_power_loss"]] == [{"nats": 0}, {"effector": 0}, {"nats": 0}]


def test_no_power_loss_recorded_measures_nothing():
    metrics, evidence = power_loss(recorded(Hist()))
    assert metrics == {} and "no power loss" in evidence["note"]


def test_acked_intent_missing_at_the_end_is_lost():
    obs = scenario()
    obs["final"]["intents"] = obs["final"]["intents"][1:]
    metrics, evidence = judge(obs)
    assert metrics["power_loss_acked_intents_lost"] == 1
    assert evidence["lost_intents"] == [PAIRS[0]]


def test_record_lost_right_after_a_restart_counts_even_if_it_comes_back_later():
    obs = scenario()
    subject = next(iter(AUDIT))
    del obs["after"][1]["audit"][subject]  # redelivery re-created it before the end
    metrics, evidence = judge(obs)
    assert metrics["power_loss_acked_records_lost"] == 1
    assert evidence["lost_records"] == [{"round": 1, "subject": subject, "then": "missing",
                                         "intent": f"{PAIRS[0][0]}:{PAIRS[0][1]}"}]


def test_record_changed_is_lost():
    obs = scenario()
    subject = next(iter(AUDIT))
    obs["final"]["audit"][subject] = "sha-other"
    metrics, _ = judge(obs)
    assert metrics["power_loss_acked_records_lost"] == 1  # one record, though every round had seen it


def test_effect_missing_from_the_ledger_after_a_restart_is_lost():
    obs = scenario()
    obs["after"][1]["ledger"] = LEDGER[1:]
    metrics, evidence = judge(obs)
    assert metrics["power_loss_acked_effects_lost"] == 1
    assert evidence["lost_effects"] == [{"round": 1, "effect_key": LEDGER[0]}]


def test_executed_record_without_its_effect_counts_as_a_lost_effect():
    obs = scenario()
    obs["before"] = [{**b, "ledger": []} for b in obs["before"]]  # nothing read before the power went
    obs["final"]["ledger"] = LEDGER[:2]
    metrics, evidence = judge(obs)
    assert metrics["power_loss_acked_effects_lost"] == 1
    assert evidence["executed_without_effect"] == [LEDGER[2]]


def test_acked_intent_without_terminal_record():
    obs = scenario()
    obs["final"]["audit"] = dict(list(AUDIT.items())[1:])
    metrics, _ = judge(obs)
    assert metrics["power_loss_intents_without_terminal"] == 1


def test_a_power_loss_that_dropped_nothing_and_a_surviving_canary():
    obs = scenario()
    obs["loss"][2]["dropped"] = {"nats": {"bytes_dropped": 0, "files_dropped": 0, "creates_dropped": 0,
                                          "files": [], "creates": []}}
    obs["restored"][2]["canary_survived"] = {"both": True}
    metrics, _ = judge(obs)
    assert metrics["power_losses_without_dropped_bytes"] == 1
    assert metrics["power_loss_unsynced_bytes_dropped_min"] == 0
    assert metrics["power_loss_canaries_survived"] == 1


def test_failed_restart_and_store_errors():
    obs = scenario()
    obs["restored"][0] = restored(0, "nats", ready=False, nats_log_problems=["[ERR] corrupt block"])
    obs["restored"][1] = restored(1, "effector", streams_missing=["AUDIT"])
    metrics, evidence = judge(obs)
    assert metrics["power_loss_restart_failures"] == 2
    assert metrics["power_loss_store_errors"] == 1
    assert evidence["store_errors"] == ["[ERR] corrupt block"]


def test_missing_final_read_leaves_the_end_state_unmeasured():
    obs = scenario()
    obs["final"] = None
    metrics, _ = judge(obs)
    for name in ("power_loss_acked_intents_lost", "power_loss_intents_without_terminal", "power_loss_acked_effects_lost"):
        assert metrics[name] is None


def test_stack_bytes_exclude_the_canary():
    obs = scenario()
    obs["loss"][1]["dropped"] = dropped("effector", stack_bytes=32776)
    _, evidence = judge(copy.deepcopy(obs))
    assert evidence["per_power_loss"][1]["stack_bytes_dropped"] == {"effector": 32776}
    assert evidence["per_power_loss"][1]["unsynced_bytes_dropped"] == {"effector": 32776 + 4096}
