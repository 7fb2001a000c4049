"""Fresh safety reads, shared: one direct get answers every intent that asked before it was sent.

A kill switch must be read after the intent asking for it was received: anything acknowledged
before that (a switch engaged, then the intent submitted) is then in the answer. A cell pulls
intents in batches and starts them together, so up to a batch of them ask for the same global
switch in one turn of the event loop. ``FreshReads`` sends one read per key per turn and gives its
answer to everyone who asked before it went out. Nobody joins a read already sent: its answer
could predate the asker. A read that fails fails for all of its askers (each then fails closed).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable

Value = tuple[bytes | None, int]
Reader = Callable[[], Awaitable[Value]]

_by_context: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


class FreshReads:
    """Per key, the read not yet sent (a future every asker awaits), sent on the next loop turn."""

    def __init__(self) -> None:
        self.leader_only = False  # read from the stream leader (a replicated bucket): set by the cell
        self._unsent: dict[str, tuple[asyncio.Future, Reader]] = {}
        self.sent = 0  # reads sent, for tests and profiles
        self.asked = 0  # reads asked for

    def read(self, key: str, reader: Reader) -> Awaitable[Value]:
        """The value of ``key`` from a read sent after this call; ``reader`` performs it (the
        first asker's reader is the one sent: every asker of a key reads it the same way)."""
        self.asked += 1
        pending = self._unsent.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = (loop.create_future(), reader)
            self._unsent[key] = pending
            loop.call_soon(self._send, key)
        # Shielded: an asker cancelled by its own deadline must not cancel the others' read.
        return asyncio.shield(pending[0])

    def _send(self, key: str) -> None:
        future, reader = self._unsent.pop(key)
        self.sent += 1
        task = asyncio.ensure_future(reader())
        task.add_done_callback(lambda done: _settle(future, done))


def _settle(future: asyncio.Future, done: asyncio.Future) -> None:
    if future.cancelled():
        return
    if done.cancelled():
        future.cancel()
    elif done.exception() is not None:
        future.set_exception(done.exception())
    else:
        future.set_result(done.result())


def shared_by(context: object) -> FreshReads:
    """The one ``FreshReads`` of a connection (a cell's JetStream context)."""
    reads = _by_context.get(context)
    if reads is None:
        reads = _by_context[context] = FreshReads()
    return reads
