"""ExoArmur: an execution-safety substrate on NATS JetStream (the system under test).

Processes (each ``python -m exoarmur <name>``): ``nats``, ``api``, ``cell``, ``effector``.
Wire contracts live in :mod:`exoarmur.contracts`; the pure safety decision in
:mod:`exoarmur.decision`; the numbers (timeouts, retries, limits) in :mod:`exoarmur.reliability`.
This package never imports the harness (``exoarmur_cli``).
"""

__version__ = "0.1.0"
