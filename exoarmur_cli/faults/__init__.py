"""Faults have one home: every fault a scenario injects, each recorded as a nemesis event.

- ``process``  SIGKILL / restart / pause / resume of the embedded stack's processes
- ``effector`` the effector's run-time fault settings (latency, errors, lost responses, hang, down)
- ``network``  ``Toxics`` on a ``FaultProxy`` (``proxy``) between two components
- ``routes``   a cluster's routes through fault proxies: one server cut off from the others

``Faults`` is what a scenario holds. A fault this stack cannot give raises ``FaultError`` with
why (the stack adapter says so); the scenario that asked is then NOT RUN and its gates are
INCOMPLETE, never green.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from exoarmur_cli.faults.effector import EffectorFaults
from exoarmur_cli.faults.network import NetworkFaults
from exoarmur_cli.faults.process import ProcessFaults
from exoarmur_cli.faults.proxy import FaultProxy, ProxyStats, Toxics
from exoarmur_cli.faults.routes import RouteFaults
from exoarmur_cli.history import History

__all__ = ["EffectorFaults", "FaultProxy", "FaultTarget", "Faults", "NetworkFaults", "ProcessFaults", "ProxyStats",
           "RouteFaults", "Toxics"]


class FaultTarget(Protocol):
    """What a stack offers for faulting (``stacks.Stack`` implements it)."""

    def process_faults(self, what: str, history: History) -> ProcessFaults: ...

    def effector_link_faults(self, history: History) -> NetworkFaults: ...

    def route_faults(self, history: History) -> RouteFaults: ...


@dataclass(frozen=True)
class Faults:
    stack: FaultTarget
    history: History
    effector: EffectorFaults

    def processes(self, what: str) -> ProcessFaults:
        """Process control over the stack, to do ``what``; FaultError if the stack gives none."""
        return self.stack.process_faults(what, self.history)

    def effector_link(self) -> NetworkFaults:
        """The network between the cells and the effector; FaultError if no proxy sits on it."""
        return self.stack.effector_link_faults(self.history)

    def routes(self) -> RouteFaults:
        """The routes between a cluster's servers; FaultError if no proxy sits on them."""
        return self.stack.route_faults(self.history)
