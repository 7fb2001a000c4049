"""One quantile definition (nearest rank) for the checkers and bench."""

from __future__ import annotations

import pytest

from exoarmur_cli import bench_drive
from exoarmur_cli.checkers import common
from exoarmur_cli.stats import p99, quantile


def test_nearest_rank() -> None:
    values = list(range(1, 101))  # 1..100
    assert quantile(values, 0.99) == 99.0  # rank ceil(99) = 99
    assert quantile(values, 0.5) == 50.0
    assert quantile(values, 1.0) == 100.0 and quantile(values, 0.0) == 1.0
    assert p99([5.0]) == 5.0 and quantile([3, 1, 2], 0.5) == 2.0  # unsorted input


@pytest.mark.parametrize("empty", [[], ()])
def test_nothing_to_rank_is_a_missing_measurement(empty) -> None:
    assert quantile(empty, 0.99) is None


def test_checkers_and_bench_use_the_same_definition() -> None:
    assert common.quantile is quantile
    assert bench_drive.quantile is quantile
