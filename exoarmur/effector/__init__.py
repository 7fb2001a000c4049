"""The effector: the external dependency ExoArmur cells act upon (isolate a host, block an IP...).

A small FastAPI app over a durable SQLite ledger. ``POST /v1/effects`` applies an effect at most
once per ``Idempotency-Key``: the first call records it, every later call with the same key only
increments ``calls`` and returns the same receipt with ``replayed: true``. The insert-or-increment
is one SQLite statement in one transaction (WAL, ``synchronous=FULL``), so neither concurrent
calls nor a crash can apply an effect twice.

Faults (latency, jitter, error rate, hang, down) are set at run time with ``PUT /v1/faults`` and
act on ``/v1/effects`` only, before the ledger write. Run it as a process with
``python -m exoarmur.effector --port P --ledger L --seed S``.

- ``ledger``  the SQLite ledger and its group commit
- ``faults``  the injected faults and their seeded draws
- ``app``     the state object, the handlers, ``create_app``, ``run_effector``
"""

from exoarmur.effector.app import EffectorState, create_app, main, run_effector
from exoarmur.effector.faults import FaultSettings, fault_delay_s, fault_errors
from exoarmur.effector.ledger import EffectRequest, GroupCommit, Ledger, receipt_id_for

__all__ = [
    "EffectRequest", "EffectorState", "FaultSettings", "GroupCommit", "Ledger", "create_app",
    "fault_delay_s", "fault_errors", "main", "receipt_id_for", "run_effector",
]
