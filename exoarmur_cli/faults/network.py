"""Network faults: ``Toxics`` on a ``FaultProxy`` placed between two components (e.g. the cells
and the effector), each change recorded as a nemesis event (``proxy_toxics``/``proxy_clear``)."""

from __future__ import annotations

from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.faults.proxy import FaultProxy, Toxics
from exoarmur_cli.history import History


class NetworkFaults:
    def __init__(self, proxy: FaultProxy, history: History | None = None) -> None:
        self.proxy = proxy
        self.history = history

    @property
    def target(self) -> str:
        return self.proxy.name

    def set(self, toxics: Toxics) -> None:
        record(self.history, "proxy_toxics", target=self.target, **{k: v for k, v in vars(toxics).items() if v})
        self.proxy.set_toxics(toxics)

    def clear(self) -> None:
        self.proxy.clear()
        record(self.history, "proxy_clear", target=self.target)
