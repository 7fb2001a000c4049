"""FreshReads: askers in one loop turn share a read; nobody joins a read already sent."""

import asyncio

import pytest

from exoarmur.cell.fresh_reads import FreshReads


class Store:
    """A value that changes, and a reader that records when each read was taken."""

    def __init__(self) -> None:
        self.value = 0
        self.reads = 0

    async def read(self):
        self.reads += 1
        taken = self.value
        await asyncio.sleep(0.01)  # in flight for a while, as a direct get is
        return str(taken).encode(), taken


def test_askers_in_one_turn_share_one_read():
    async def main():
        store, reads = Store(), FreshReads()
        answers = await asyncio.gather(*(reads.read("k", store.read) for _ in range(16)))
        assert store.reads == 1 and reads.sent == 1 and reads.asked == 16
        assert set(answers) == {(b"0", 0)}

    asyncio.run(main())


def test_a_read_already_sent_is_not_joined_so_a_later_write_is_seen():
    async def main():
        store, reads = Store(), FreshReads()
        first = reads.read("k", store.read)
        while store.reads == 0:  # the loop turns until the first read has gone out
            await asyncio.sleep(0)
        store.value = 1  # acknowledged after the first read was sent, before the second asker asked
        second = reads.read("k", store.read)
        assert await first == (b"0", 0)
        assert await second == (b"1", 1)  # a read of its own, sent after it asked
        assert store.reads == 2

    asyncio.run(main())


def test_keys_are_read_apart():
    async def main():
        store, reads = Store(), FreshReads()
        await asyncio.gather(reads.read("a", store.read), reads.read("b", store.read), reads.read("a", store.read))
        assert store.reads == 2

    asyncio.run(main())


def test_a_failed_read_fails_every_asker():
    async def main():
        reads = FreshReads()

        async def unreadable():
            raise TimeoutError("nats away")

        results = await asyncio.gather(*(reads.read("k", unreadable) for _ in range(3)), return_exceptions=True)
        assert all(isinstance(r, TimeoutError) for r in results)

    asyncio.run(main())


def test_one_asker_cancelled_leaves_the_others_their_answer():
    async def main():
        store, reads = Store(), FreshReads()
        cancelled = asyncio.ensure_future(reads.read("k", store.read))
        kept = asyncio.ensure_future(reads.read("k", store.read))
        await asyncio.sleep(0.001)
        cancelled.cancel()
        assert await kept == (b"0", 0)
        with pytest.raises(asyncio.CancelledError):
            await cancelled

    asyncio.run(main())
