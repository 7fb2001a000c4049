"""run-gates --capacity-from: the gates' admission numbers sized from a bench file's held rate."""

import json

import pytest

from exoarmur.sizing import size_admission
from exoarmur_cli.errors import ConfigError
from exoarmur_cli.run import RunOptions, prepare


def test_without_a_file_the_gates_declare_their_own_numbers():
    plan = prepare(RunOptions(profile="quick", gates=(8,)))
    assert plan.capacity is None
    assert plan.all_gates[8].declared["rate_global_per_s"] == plan.declared["rate_global_per_s"] == 150


def test_every_admission_number_a_gate_declares_is_sized_and_the_rest_stay(tmp_path):
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 200.0}}))
    before = prepare(RunOptions(profile="quick"))
    plan = prepare(RunOptions(profile="quick", capacity_from=bench_file))
    sized = size_admission(200.0)
    assert plan.capacity == {"file": "bench.json", "held_per_s": 200.0, "rule": plan.capacity["rule"], "sized": sized,
                             "applied": sized, "kept_as_declared": [],
                             "scenario_rate_factor": round(sized["rate_global_per_s"] / 150, 4)}
    for gid, gate in plan.all_gates.items():
        for name, value in gate.declared.items():
            assert value == sized.get(name, before.all_gates[gid].declared[name]), (gid, name)
    assert plan.all_gates[6].declared["rate_tenant_per_s"] == sized["rate_tenant_per_s"] == 33
    assert plan.all_gates[8].declared["pending_intents"] == sized["pending_intents"] == 200
    assert plan.declared["timeout_KV_GET_s"] == before.declared["timeout_KV_GET_s"]  # not admission: as declared


@pytest.mark.parametrize("content, says", [(None, "No such file"), ("[1", "not JSON"),
                                           ('{"admission": {"held_per_s": 0}}', "held no rate")])
def test_a_bad_capacity_file_is_a_config_error_before_anything_starts(tmp_path, content, says):
    bench_file = tmp_path / "bench.json"
    if content is not None:
        bench_file.write_text(content)
    with pytest.raises(ConfigError, match=says):
        prepare(RunOptions(profile="quick", capacity_from=bench_file))


def test_scenario_rates_scale_as_the_admission_did_and_their_durations_stretch(tmp_path):
    """Held 60/s: global 30/s against the files' 150/s, so every fixed rate a scenario offers is a
    fifth, and each rate-carrying duration five times as long: the same number of intents."""
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 60.0}}))
    before = prepare(RunOptions(profile="quick"))
    plan = prepare(RunOptions(profile="quick", capacity_from=bench_file))
    assert plan.capacity["scenario_rate_factor"] == 0.2
    tenancy, was = plan.params["tenancy"], before.params["tenancy"]
    assert tenancy.quiet_rate_per_s == was.quiet_rate_per_s * 0.2 and tenancy.phase_s == was.phase_s * 5
    assert tenancy.quiet_rate_per_s * tenancy.phase_s == pytest.approx(was.quiet_rate_per_s * was.phase_s)
    assert tenancy.noisy_over_limit == was.noisy_over_limit  # relative to the sized tenant rate already
    assert plan.params["chaos"].rate_per_s == pytest.approx(before.params["chaos"].rate_per_s * 0.2)
    assert plan.params["persistence"].intents == before.params["persistence"].intents  # counts stay
    assert plan.params["load"] == before.params["load"]  # its rates come from the sized policy


def test_a_roomier_machine_is_offered_no_more_than_the_files_say(tmp_path):
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 3000.0}}))
    before = prepare(RunOptions(profile="quick"))
    plan = prepare(RunOptions(profile="quick", capacity_from=bench_file))
    assert plan.capacity["scenario_rate_factor"] == 1.0
    assert plan.params == before.params
    # the rule sizes every admission number above the files' (a global 1,500/s): each stays as declared
    assert plan.capacity["sized"]["rate_global_per_s"] == 1500
    assert plan.capacity["kept_as_declared"] == sorted(plan.capacity["sized"])
    assert plan.all_gates == before.all_gates and plan.declared == before.declared


def test_each_admission_number_is_the_smaller_of_the_sized_and_the_declared(tmp_path):
    """Held 350/s: a global 175/s and tenant 58/s are above the files' 150 and 50, but the global
    burst of 350 is under their 400: the run gets 150/s, 50/s and a burst of 350."""
    bench_file = tmp_path / "bench.json"
    bench_file.write_text(json.dumps({"admission": {"held_per_s": 350.0}}))
    plan = prepare(RunOptions(profile="quick", capacity_from=bench_file))
    assert plan.capacity["applied"] == {"rate_global_per_s": 150, "rate_global_burst": 350, "rate_tenant_per_s": 50,
                                        "rate_tenant_burst": 100, "pending_intents": 300}
    assert plan.capacity["kept_as_declared"] == ["pending_intents", "rate_global_per_s", "rate_tenant_burst",
                                                 "rate_tenant_per_s"]
    assert plan.declared["rate_global_burst"] == 350 and plan.declared["rate_global_per_s"] == 150
    assert plan.capacity["scenario_rate_factor"] == 1.0


def test_every_scaled_parameter_is_one_its_scenario_has():
    from exoarmur_cli.scenarios.params import PARAMS, RATE_SCALED

    for name, (rates, durations) in RATE_SCALED.items():
        fields = PARAMS[name].model_fields
        assert rates and all(key in fields for key in rates + durations), name
