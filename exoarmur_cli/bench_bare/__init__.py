"""The bare pipeline: ExoArmur's hops with none of its safety work — the yardstick for (b).

Same libraries, same process layout, same nats-server, same durability:

    client ──HTTP──▶ bare api ──durable publish──▶ BENCH_BARE ──pull──▶ bare cell(s)
                 (FastAPI+uvicorn,                                     │ POST (aiohttp)
                  the api's settings)                                  ▼
                                       bare effector (FastAPI+uvicorn, the effector's settings)
                                                                       │
          client ◀──subscribe── BENCH_BARE_RECORDS ◀──durable publish──┘ then ack

What it leaves out is what ExoArmur adds: authentication, validation, admission (rate limits,
pending bound), ``Nats-Msg-Id`` de-duplication, the safety snapshot and decision, the breaker,
retries and deadlines, the effector's ledger, the sealed audit record and its one-per-subject
stream. Each process is ``python -m exoarmur_cli.bench_bare <role>``, started by ``BarePipeline``.

- ``_wire``     subjects, streams, the consumer, and provisioning them
- ``_api``      the bare api process
- ``_effector`` the no-op effector process
- ``_cell``     the bare cell process
- ``_pipeline`` ``BarePipeline``: start, supervise and stop the three roles
"""

from exoarmur_cli.bench_bare._pipeline import BarePipeline
from exoarmur_cli.bench_bare._wire import RECORDS_WATCH, record_subject

__all__ = ["BarePipeline", "RECORDS_WATCH", "record_subject"]
