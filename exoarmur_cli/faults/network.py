"""Network faults: ``Toxics`` on a proxy placed between two components (the cells and the
effector), each change recorded as a nemesis event (``proxy_toxics``/``proxy_clear``).

The stack's cells -> effector proxy is a ``LinkProxy``: a ``FaultProxy`` with its wiretap, run in
the fault proxies' own process (``proxy_server``, which says why) and set over its control channel.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Protocol

from exoarmur_cli.faults.nemesis import record
from exoarmur_cli.faults.proxy import Toxics
from exoarmur_cli.faults.proxy_process import ProxyProcess
from exoarmur_cli.history import History


class ToxicLink(Protocol):
    """A proxy whose toxics can be set (``FaultProxy`` in process, ``LinkProxy`` in its own)."""

    name: str

    def set_toxics(self, toxics: Toxics) -> None: ...

    def clear(self) -> None: ...


class LinkProxy:
    """A ``FaultProxy`` from ``host``:(a free port) to ``host``:``upstream_port`` in a process of its
    own, its wiretap (when ``wiretap_path`` is given) writing there as requests and answers pass."""

    def __init__(self, host: str, upstream_port: int, *, seed: int = 0, name: str = "proxy",
                 wiretap_path: Path | None = None, log_path: Path | None = None) -> None:
        self.host, self.upstream_port, self.seed, self.name = host, upstream_port, seed, name
        self.wiretap_path = wiretap_path
        self.port: int | None = None
        self._toxics = Toxics()
        self._process = ProxyProcess(f"the {name} proxy's process", log_path)

    def start(self) -> None:
        answer = self._process.start({"host": self.host, "seed": self.seed, "links": [
            {"name": self.name, "upstream_port": self.upstream_port,
             "wiretap": str(self.wiretap_path) if self.wiretap_path is not None else None}]})
        self.port = answer["ports"][self.name]

    def stop(self) -> None:
        """Close the proxy, its connections and its wiretap, and reap the process (idempotent)."""
        self._process.stop()

    def url(self, scheme: str = "http") -> str:
        if self.port is None:
            raise RuntimeError(f"{self.name} is not started")
        return f"{scheme}://{self.host}:{self.port}"

    @property
    def toxics(self) -> Toxics:
        return self._toxics

    def set_toxics(self, toxics: Toxics) -> None:
        """Applied when this returns (the process answers once it has set them)."""
        self._process.request({"op": "toxics", "name": self.name, "toxics": asdict(toxics)})
        self._toxics = toxics

    def clear(self) -> None:
        self.set_toxics(Toxics())


class NetworkFaults:
    def __init__(self, proxy: ToxicLink, history: History | None = None) -> None:
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
