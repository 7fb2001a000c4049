"""The bare pipeline's subjects, streams and consumer (all under the provisioner's ``bench.>``)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js import api as js_api
from nats.js.errors import NotFoundError

from exoarmur.contracts import key_digest
from exoarmur.reliability.timeouts import TimeoutCategory, deadline_s

STREAM = "BENCH_BARE"  # the provisioner may ack ``$JS.ACK.BENCH_BARE.>`` (exoarmur.natsauth)
RECORDS_STREAM = "BENCH_BARE_RECORDS"
CONSUMER = "bare"
INTENTS = "bench.bare.intents"
RECORDS = "bench.bare.records"
RECORDS_WATCH = f"{RECORDS}.>"
ROLE = "provisioner"  # the one NATS user allowed on ``bench.>``


def intent_subject(body: dict) -> str:
    return f"{INTENTS}.{key_digest(body['tenant_id'], body['idempotency_key'])}"


def record_subject(body: dict) -> str:
    """Where the record of the intent ``body`` lands: what the bench's watch waits for."""
    return f"{RECORDS}.{key_digest(body['tenant_id'], body['idempotency_key'])}"


def record_subject_of(intent_subject_: str) -> str:
    return f"{RECORDS}.{intent_subject_.rsplit('.', 1)[1]}"


async def provision(js: JetStreamContext, replicas: int = 1) -> None:
    """File streams (the server's ``sync_interval: always``: an ack is on disk, as for ExoArmur's),
    with as many replicas as ExoArmur's on the same servers, and a pull consumer with the cells'
    ack policy. Starts from empty every time."""
    await remove(js)
    for name, subject in ((STREAM, INTENTS), (RECORDS_STREAM, RECORDS)):
        await js.add_stream(js_api.StreamConfig(name=name, subjects=[f"{subject}.>"], num_replicas=replicas,
                                                storage=js_api.StorageType.FILE))
    await js.add_consumer(STREAM, js_api.ConsumerConfig(
        durable_name=CONSUMER, ack_policy=js_api.AckPolicy.EXPLICIT,
        ack_wait=deadline_s(TimeoutCategory.EXECUTION_INTENT) + 1.0, max_ack_pending=-1,
        deliver_policy=js_api.DeliverPolicy.ALL))


async def remove(js: JetStreamContext) -> None:
    for name in (STREAM, RECORDS_STREAM):
        try:
            await js.delete_stream(name)
        except NotFoundError:
            pass
