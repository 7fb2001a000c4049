"""Admission sized from a measured held rate, by the one rule in exoarmur/sizing.py."""

import pytest

from exoarmur.sizing import held_from_bench, held_rate, size_admission
from exoarmur_cli.bench_drive import next_ladder_rate


def step(rate, p99, accepted=100, completed=None, refused=0):
    return {"rate_per_s": rate, "p99_ms": p99, "accepted": accepted,
            "completed": accepted if completed is None else completed, "refused": refused}


def test_the_held_rate_is_the_highest_step_before_the_first_that_failed():
    ladder = [step(100, 20), step(150, 40), step(200, 140), step(250, 30)]  # 250's luck does not count
    assert held_rate(ladder) == 150


@pytest.mark.parametrize("failing", [
    step(150, None, completed=0),  # nothing completed: no p99
    step(150, 40, completed=99),   # an accepted intent never reached its record
    step(150, 40, refused=1),      # the stack refused some: not held
    step(150, 100.1),              # over the bound
])
def test_a_step_is_held_only_if_all_it_accepted_completed_in_time_and_nothing_was_refused(failing):
    assert held_rate([step(100, 20), failing]) == 100


def test_no_held_rate_when_even_the_lowest_step_failed():
    assert held_rate([step(100, 300)]) is None and held_rate([]) is None


def test_this_machines_declared_numbers_are_what_the_rule_gives_for_300_per_s():
    # The gates declare global 150/s, tenant 50/s (burst 100) and 300 pending for a 2-core machine;
    # the rule reproduces them from a held rate of 300/s (global burst: 2 s, where g8 declares 400).
    assert size_admission(300) == {"rate_global_per_s": 150, "rate_global_burst": 300, "rate_tenant_per_s": 50,
                                   "rate_tenant_burst": 100, "pending_intents": 300}


def test_limits_never_fall_below_one():
    assert min(size_admission(0.5).values()) >= 1
    with pytest.raises(ValueError):
        size_admission(0)


@pytest.mark.parametrize("document, says", [
    ({}, "no admission section"),
    ([], "no admission section"),
    ({"admission": {"held_per_s": None}}, "held no rate"),
    ({"admission": {"held_per_s": True}}, "held no rate"),
    ({"admission": {"held_per_s": -3}}, "held no rate"),
])
def test_a_bench_file_without_a_held_rate_is_refused_with_the_reason(document, says):
    with pytest.raises(ValueError, match=says):
        held_from_bench(document)


def test_a_bench_file_gives_its_held_rate():
    assert held_from_bench({"admission": {"held_per_s": 312.5}}) == 312.5


def ladder_run(closed_loop_per_s: float, holds) -> list[float]:
    """The rates (f) tries against a machine that holds exactly the rates ``holds`` says it does."""
    ladder: list[dict] = []
    while (rate := next_ladder_rate(ladder, closed_loop_per_s)) is not None:
        ladder.append(step(rate, 50 if holds(rate) else 200))
    return [s["rate_per_s"] for s in ladder]


def test_the_ladder_rises_by_shares_of_b_and_then_halves_the_gap_below_the_first_that_failed_twice():
    rates = ladder_run(300, lambda rate: rate <= 80)  # holds 0.27 of (b): between the 0.15 and 0.3 shares
    assert rates == [45, 90, 67.5, 78.8]
    assert held_rate([step(r, 50 if r <= 80 else 200) for r in rates]) == 78.8  # not 45


def test_a_failed_bisection_lowers_the_top_of_the_gap():
    assert ladder_run(300, lambda rate: rate <= 60) == [45, 90, 67.5, 56.2]


def test_no_bisection_when_the_first_share_fails_and_none_when_every_share_holds():
    assert ladder_run(300, lambda rate: False) == [45]
    assert ladder_run(300, lambda rate: True) == [45, 90, 135, 180, 225, 270]
