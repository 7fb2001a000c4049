"""The delivery seam: when a cell acknowledges an intent, and what a redelivery means.

Production acks only after the intent's terminal record is durable (its publish acked), and
treats a redelivery (``num_delivered > 1``, a cell died mid-way) as possibly done already: it
looks for the record first. Every delivery of an intent acts under the intent's one key.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from exoarmur.cell.effects import no_deadline
from exoarmur.defects import Defect
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.seams import Alternatives


async def ack(msg) -> None:
    await msg.ack()


async def hold(_msg) -> None:
    """Leave the message unacked for now."""


def may_be_done(msg) -> bool:
    """A redelivery may follow a cell that died after recording: look for the record first."""
    return msg.metadata.num_delivered > 1


def never_done(_msg) -> bool:
    """Defect ``no-idempotency`` (cell side): a redelivery is handled as if it were new."""
    return False


def intent_key(_msg) -> str:
    """The suffix to the intent's effector key: none, every delivery acts under the one key."""
    return ""


def per_delivery_key(msg) -> str:
    """Defect ``no-idempotency`` (cell side): every delivery acts under its own effector key."""
    return f"#{msg.metadata.sequence.stream}.{msg.metadata.num_delivered}"


@dataclass(frozen=True)
class Delivery:
    on_receive: Callable[[Any], Awaitable[None]] = hold
    on_recorded: Callable[[Any], Awaitable[None]] = ack
    is_redelivery: Callable[[Any], bool] = may_be_done
    effect_key_suffix: Callable[[Any], str] = intent_key
    within: Callable[[TimeoutCategory, Awaitable[Any]], Awaitable[Any]] = with_deadline  # the whole intent


DELIVERY_DEFECTS: Alternatives = {
    # Defect ``ack-before-durable``: acked on receipt, before the outcome is durable.
    Defect.ACK_BEFORE_DURABLE: {"on_receive": ack, "on_recorded": hold},
    Defect.NO_IDEMPOTENCY: {"is_redelivery": never_done, "effect_key_suffix": per_delivery_key},
    Defect.NO_TIMEOUT: {"within": no_deadline},
}
