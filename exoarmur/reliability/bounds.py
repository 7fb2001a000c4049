"""Explicit bounds on everything that could grow, each with a unit and its behaviour at the limit.

Why: an unbounded buffer turns overload into memory exhaustion and unbounded latency; a
silently dropping one turns it into lost intents. The stack reads each number from here
(``StackConfig.bound``): the api refuses past ``pending_intents`` with ``QUEUE_FULL``, a cell
stops fetching at ``cell_inflight`` messages in flight, and so on, row by row.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType


@dataclass(frozen=True)
class BoundPolicy:
    """A limit, the unit it counts in, and what happens when it is reached."""

    name: str
    limit: int
    unit: str
    on_full: str

    def __post_init__(self) -> None:
        if self.limit < 1:
            raise ValueError(f"{self.name}: limit must be >= 1")


# The single source of the numbers.
_BOUNDS: tuple[BoundPolicy, ...] = (
    BoundPolicy("pending_intents", 2000, "intents", "refuse with QUEUE_FULL"),
    BoundPolicy("cell_inflight", 64, "messages", "stop fetching until acked"),
    BoundPolicy("audit_list_page", 500, "records", "truncate with next cursor"),
    BoundPolicy("refusal_flush_interval_ms", 500, "ms", "counters flushed at least this often"),
    BoundPolicy("approval_wait_ms", 30000, "ms", "A2/A3 intent without approval expires"),
    BoundPolicy("http_body_bytes", 16384, "bytes", "refuse with INVALID_INTENT"),
    # Cells and the effector read the same host clock; this is the skew allowed between their
    # reads of it. A cell that lost sight of an effector call waits until the call's deadline
    # plus this before asking whether it was applied: past it, the effector refuses the call.
    BoundPolicy("effect_deadline_skew_ms", 100, "ms",
                "an unanswered effector call is final (applied or never) this long after its deadline"),
)

BOUNDS: Mapping[str, BoundPolicy] = MappingProxyType({b.name: b for b in _BOUNDS})


def policy_table() -> list[dict]:
    """JSON-able rows of ``BOUNDS``."""
    return [asdict(b) for b in BOUNDS.values()]
