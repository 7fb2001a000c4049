"""A cell: pulls intents, decides, executes at most once, writes exactly one terminal record.

- ``worker``    the pull loop and the handling of one intent (the order that makes it safe to kill)
- ``safety``    the safety snapshot it decides on, and the decision it records
- ``effects``   the effector caller: deadlines, bounded retries, the circuit breaker, reconciliation
- ``delivery``  when an intent is acknowledged, and what a redelivery means
"""

from exoarmur.cell.effects import EffectorCaller, EffectorFault, EffectorRejected, Execution
from exoarmur.cell.worker import Cell, run_cell

__all__ = ["Cell", "EffectorCaller", "EffectorFault", "EffectorRejected", "Execution", "run_cell"]
