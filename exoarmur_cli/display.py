"""How a measured number is shown to a person: rounded to what the measurement supports.

The bundle's JSON keeps every value exactly as measured (replay-verify compares those); the
markdown files and the HTML report show them rounded. Latencies come from millisecond clocks and
rates from counts over windows of seconds, so more than four significant digits is noise:
``224.7507316`` is shown as ``224.8``, ``0.8522988867`` as ``0.8523``. Integers stay exact, and
so does any value of 1,000 or more (rounded to a whole number, never to ``1.235e+04``).
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "missing"
SIGNIFICANT = 4


def fmt_measured(value: Any) -> str:
    """A measurement for people: 'missing' for None, integers exact, otherwise 4 significant digits
    (whole numbers from 1,000 up); NaN and infinities are named, never hidden."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    if abs(value) >= 1000:
        return str(round(value))
    digits = SIGNIFICANT - 1 - math.floor(math.log10(abs(value)))
    text = f"{round(value, digits):.{max(digits, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
