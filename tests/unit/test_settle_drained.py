"""When a settle may stop waiting: the cells' consumer holds nothing more to deliver (``drained``),
judged from its info as nats-server reports it."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from nats.js.api import ConsumerConfig, ConsumerInfo, SequenceInfo

from exoarmur_cli.scenarios.base import drained


def info(pending: int | None, ack_pending: int | None, acked_through: int | None = 40) -> ConsumerInfo:
    floor = None if acked_through is None else SequenceInfo(consumer_seq=acked_through, stream_seq=acked_through)
    return ConsumerInfo(name="cells", stream_name="INTENTS", config=ConsumerConfig(),
                        created=datetime.now(timezone.utc), ack_floor=floor,
                        num_pending=pending, num_ack_pending=ack_pending)


@pytest.mark.parametrize("replicated", [False, True])
def test_nothing_pending_and_nothing_unacked_is_drained(replicated):
    assert drained(info(0, 0, acked_through=40), replicated, last_seq=40)


@pytest.mark.parametrize("pending, ack_pending", [(1, 0), (0, 1), (3, 2), (None, 0), (0, None)])
def test_anything_undelivered_unacked_or_unknown_is_not(pending, ack_pending):
    assert not drained(info(pending, ack_pending), False, last_seq=0)
    assert not drained(info(pending, ack_pending), True, last_seq=0)


def test_on_a_cluster_the_acks_must_reach_the_last_submission():
    """A member still setting up its copy answers with every count at zero: its ack floor gives it away."""
    assert not drained(info(0, 0, acked_through=0), True, last_seq=40)
    assert not drained(info(0, 0, acked_through=None), True, last_seq=40)
    assert drained(info(0, 0, acked_through=41), True, last_seq=40)


def test_a_single_server_is_taken_at_its_word():
    """A stream that lost its tail (memory storage, a power loss) restarts its sequences below the
    submissions': its drained consumer is still drained, and the missing records are lost."""
    assert drained(info(0, 0, acked_through=3), False, last_seq=40)
