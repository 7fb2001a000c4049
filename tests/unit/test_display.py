"""Measured numbers are shown rounded to what the measurement supports, never hidden or invented."""

from __future__ import annotations

import pytest

from exoarmur_cli.display import fmt_measured


@pytest.mark.parametrize(("value", "shown"), [
    (224.7507316, "224.8"),      # a latency in ms: four significant digits
    (0.8522988867, "0.8523"),    # a ratio
    (92.94736258, "92.95"),      # a rate
    (0.00012345678, "0.0001235"),
    (-3.14159, "-3.142"),
    (1600.0, "1600"),            # integers exact, without '.0'
    (0, "0"),
    (12345.678, "12346"),        # from 1,000 up: a whole number, never 1.235e+04
    (2.5, "2.5"),                # no trailing zeros
    (None, "missing"),           # a missing measurement says so
    (float("nan"), "NaN"),
    (float("inf"), "inf"),
    (True, "true"),
    ("QUEUE_FULL", "QUEUE_FULL"),
])
def test_fmt_measured(value, shown: str) -> None:
    assert fmt_measured(value) == shown
