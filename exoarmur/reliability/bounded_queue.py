"""Explicit bounds on everything that could grow, and a queue that refuses rather than drops.

Why: an unbounded buffer turns overload into memory exhaustion and unbounded latency; a
silently dropping one turns it into lost intents. Every bound here has a unit and a stated
behaviour at the limit, and ``BoundedQueue`` answers a full queue with ``QueueFull`` (reason
``QUEUE_FULL``) so the caller can refuse the request visibly.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from types import MappingProxyType
from typing import Generic, TypeVar

from exoarmur.errors import QueueFull

T = TypeVar("T")


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
)

BOUNDS: Mapping[str, BoundPolicy] = MappingProxyType({b.name: b for b in _BOUNDS})


class BoundedQueue(Generic[T]):
    """A FIFO of at most ``maxsize`` items for one event loop.

    ``put_nowait`` on a full queue raises ``QueueFull`` and counts the refusal; nothing already
    queued is ever evicted. ``high_watermark`` is the deepest the queue has been.
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:  # asyncio.Queue reads 0 as "unbounded": never allow that here
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._queue: asyncio.Queue[T] = asyncio.Queue(maxsize)
        self._high_watermark = 0
        self.refused = 0

    @classmethod
    def for_bound(cls, bound: BoundPolicy) -> BoundedQueue[T]:
        """A queue sized by a ``BOUNDS`` row, e.g. ``BOUNDS["pending_intents"]``."""
        return cls(bound.limit)

    def put_nowait(self, item: T) -> None:
        """Enqueue ``item`` or raise ``QueueFull``; never blocks, never drops."""
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.refused += 1
            raise QueueFull(f"queue is full at {self.maxsize} items") from None
        self._high_watermark = max(self._high_watermark, self._queue.qsize())

    async def get(self) -> T:
        """The oldest item, waiting until there is one."""
        return await self._queue.get()

    def get_nowait(self) -> T:
        """The oldest item; raises ``asyncio.QueueEmpty`` if there is none."""
        return self._queue.get_nowait()

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    @property
    def high_watermark(self) -> int:
        return self._high_watermark

    def full(self) -> bool:
        return self._queue.full()

    def empty(self) -> bool:
        return self._queue.empty()


def policy_table() -> list[dict]:
    """JSON-able rows of ``BOUNDS``."""
    return [asdict(b) for b in BOUNDS.values()]
