"""The publisher seam: how an admitted intent is made durable on the INTENTS stream.

Production publishes with ``Nats-Msg-Id`` = tenant:idempotency key, so a resubmission inside
the duplicate window is the same intent (JetStream answers ``duplicate``, no second message).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import PubAck

from exoarmur import natsio
from exoarmur.contracts import IntentV1
from exoarmur.defects import Defect
from exoarmur.reliability.timeouts import TimeoutCategory, with_deadline
from exoarmur.seams import Alternatives


def msg_id_header(intent: IntentV1) -> dict[str, str] | None:
    return {"Nats-Msg-Id": natsio.msg_id(intent.tenant_id, intent.idempotency_key)}


def no_msg_id(_intent: IntentV1) -> dict[str, str] | None:
    """Defect ``no-idempotency`` (api side): no ``Nats-Msg-Id``, so every resubmission is a new intent."""
    return None


@dataclass(frozen=True)
class Publisher:
    headers: Callable[[IntentV1], dict[str, str] | None] = msg_id_header

    async def publish(self, js: JetStreamContext, intent: IntentV1) -> PubAck:
        """Publish within the NATS_PUBLISH deadline; returns the stream's acknowledgement."""
        return await with_deadline(
            TimeoutCategory.NATS_PUBLISH,
            js.publish(natsio.intent_subject(intent.tenant_id, intent.digest()), intent.canonical(),
                       headers=self.headers(intent)),
        )


PUBLISHER_DEFECTS: Alternatives = {Defect.NO_IDEMPOTENCY: {"headers": no_msg_id}}
