"""The fault proxies' own process: ``python -m exoarmur_cli.faults.proxy_server``.

A cluster's replication (every JetStream write, three times, and Raft's heartbeats) flows through
the route proxies, and every effector call through the cells -> effector proxy and its wiretap. In
the harness's process they competed for its one interpreter lock with what the harness measures
by its own clock (the wiretap's timestamps, its watches), so a loaded stack made the harness's
clock late; here they have an interpreter of their own, and the wiretap stamps each request and
answer as it passes.

It speaks JSON lines: the first line on stdin is the spec (``host``, ``seed``, and any of
``hops``: [{``name``, ``listen_port``, ``upstream_port``}] with ``advertise_port``, the routes;
``links``: [{``name``, ``upstream_port``, ``wiretap``: a file or null}], each listening on a free
port), answered ``{"ok": true, "ports": {link name: port}}``; then one command per line
(``{"op": "set", "down": {hop name: bool}}``, ``{"op": "toxics", "name": N, "toxics": {...}}``,
``{"op": "stats"}``, ``{"op": "stop"}``); each gets one line on stdout, ``{"ok": true, ...}`` or
``{"error": "..."}``. End of stdin (the harness stopped, however it stopped) closes every proxy
and ends the process.
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import asdict
from pathlib import Path

import orjson

from exoarmur_cli.faults.proxy import FaultProxy, Toxics
from exoarmur_cli.faults.wiretap import Wiretap

DOWN = Toxics(down=True)
DOOR = "route advertise (silent)"


class SilentDoor:
    """The address every server advertises for its routes: it accepts and then says nothing, so a
    server that heard of another through a third never reaches it directly (every route goes
    through its proxy), and does not dial again at once. A door that closed what it accepted was
    dialled ~39 times a second by three idle servers, each dial a route set up and torn down."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.accepted = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._hold, self.host, self.port)

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self._writers.add(writer)
        try:
            while await reader.read(65536):  # read and drop whatever it sends, until it gives up
                pass
        except ConnectionError:
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    @property
    def held(self) -> int:
        return len(self._writers)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()


class ProxyServer:
    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.proxies: dict[str, FaultProxy] = {}
        self.links: set[str] = set()  # the proxies that are links, not route hops
        self.door: SilentDoor | None = None

    async def start(self) -> dict[str, int]:
        """Listen as the spec says; the port each link took."""
        host = self.spec["host"]
        for i, link in enumerate(self.spec.get("links", [])):
            wiretap = Wiretap(Path(link["wiretap"])) if link.get("wiretap") else None
            proxy = FaultProxy(host, link["upstream_port"], listen_host=host, seed=self.spec.get("seed", 0) + i,
                               name=link["name"], wiretap=wiretap)
            self.proxies[link["name"]] = proxy
            self.links.add(link["name"])
            await self._listen(proxy, link["name"], host, 0)
        for i, hop in enumerate(self.spec.get("hops", [])):
            proxy = FaultProxy(host, hop["upstream_port"], listen_host=host, listen_port=hop["listen_port"],
                               seed=self.spec.get("seed", 0) + i, name=hop["name"])
            await self._listen(proxy, hop["name"], host, hop["listen_port"])
            self.proxies[hop["name"]] = proxy
        if (port := self.spec.get("advertise_port")) is not None:
            self.door = SilentDoor(host, port)
            await self._listen(self.door, DOOR, host, port)
        return {name: self.proxies[name].port for name in self.links}

    @staticmethod
    async def _listen(listener: FaultProxy | SilentDoor, name: str, host: str, port: int) -> None:
        try:
            await listener.start()
        except OSError as exc:
            raise RuntimeError(f"{name}: cannot listen on {host}:{port}: {exc.strerror}") from None

    async def stop(self) -> None:
        listeners = [*self.proxies.values(), *([self.door] if self.door else [])]
        await asyncio.gather(*(listener.stop() for listener in listeners), return_exceptions=True)
        for proxy in self.proxies.values():
            if proxy.wiretap is not None:
                proxy.wiretap.close()

    def handle(self, command: dict) -> dict:
        op = command.get("op")
        if op == "set":
            unknown = [name for name in command["down"] if name not in self.proxies or name in self.links]
            if unknown:
                return {"error": f"no route proxy named {unknown[0]!r}"}
            for name, down in command["down"].items():
                self.proxies[name].set_toxics(DOWN if down else Toxics())
            return {"ok": True}
        if op == "toxics":
            if command.get("name") not in self.links:
                return {"error": f"no link proxy named {command.get('name')!r}"}
            try:
                toxics = Toxics(**command["toxics"])
            except (TypeError, ValueError) as exc:
                return {"error": f"bad toxics: {exc}"}
            self.proxies[command["name"]].set_toxics(toxics)
            return {"ok": True}
        if op == "stats":
            stats = {name: {**asdict(proxy.stats), "down": proxy.toxics.down} for name, proxy in self.proxies.items()}
            if self.door is not None:
                stats[DOOR] = {"connections": self.door.accepted, "active": self.door.held, "down": True}
            return {"ok": True, "stats": stats}
        return {"error": f"unknown op {op!r}"}


def _reply(message: dict) -> None:
    sys.stdout.buffer.write(orjson.dumps(message) + b"\n")
    sys.stdout.buffer.flush()


async def main() -> None:
    loop = asyncio.get_running_loop()
    stdin = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(stdin), sys.stdin)
    server = ProxyServer(orjson.loads(await stdin.readline()))
    try:
        ports = await server.start()
    except RuntimeError as exc:
        await server.stop()
        _reply({"error": str(exc)})
        return
    _reply({"ok": True, "ports": ports})
    try:
        while line := await stdin.readline():  # b"" at end of stdin: the harness is gone
            command = orjson.loads(line)
            if command.get("op") == "stop":
                break
            _reply(server.handle(command))
    finally:
        await server.stop()
    _reply({"ok": True})


if __name__ == "__main__":
    asyncio.run(main())
