"""A TCP proxy that injects network faults between two components of a running stack.

Process faults (SIGKILL, restart) are easy to inject; the network ones that real deployments
suffer -- slow links, resets, black holes, a peer that disappears -- need something on the
wire. ``FaultProxy`` sits between a client and its upstream (cells -> effector HTTP, a client ->
nats-server) and applies ``Toxics``, named after Toxiproxy's so that the vocabulary is familiar.

Properties the harness relies on:

* Reproducible: every random choice comes from ``random.Random(seed)``. Per-connection choices
  are drawn in accept order; each direction of a connection gets its own generator seeded from
  that stream, so concurrent traffic cannot reorder the draws of another connection.
* Bounded: chunks of at most 64 KiB, and a chunk is drained before the next is read, so a slow
  side pushes back on the fast one instead of filling memory.
* Clean: every task it creates is tracked and cancelled by ``stop()``; connection errors are
  counted in ``stats``, never logged, since they are the very faults being injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
import struct
from dataclasses import dataclass, field, fields

from exoarmur_cli.faults.wiretap import Wiretap

CHUNK_BYTES = 64 * 1024
THROTTLE_SLICE_S = 0.05  # bandwidth is enforced in slices this long, so the flow stays smooth


@dataclass(frozen=True)
class Toxics:
    """The faults applied to traffic; all off by default. Units are in the names.

    ``timeout`` and ``down`` are Toxiproxy's ``timeout`` (with timeout=0: hold forever) and a
    disabled proxy. ``bandwidth_kbps`` is kilobits per second (1 kbps = 125 bytes/s).
    """

    latency_ms: float = 0.0  # added to each chunk forwarded, each direction
    jitter_ms: float = 0.0  # + uniform(0, jitter_ms), drawn from the seeded RNG
    reset_peer_rate: float = 0.0  # per new connection: RST the client after its first chunk
    timeout: bool = False  # forward nothing and hold connections open until cleared
    bandwidth_kbps: float | None = None  # throttle each direction
    down: bool = False  # close new connections at once, cut existing ones

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("latency_ms and jitter_ms must be >= 0")
        if not 0.0 <= self.reset_peer_rate <= 1.0:
            raise ValueError("reset_peer_rate must be within [0, 1]")
        if self.bandwidth_kbps is not None and self.bandwidth_kbps <= 0:
            raise ValueError("bandwidth_kbps must be > 0 (None means unlimited)")


@dataclass(frozen=True)
class ProxyStats:
    """A snapshot of the proxy's counters; ``active`` is a gauge, the rest only grow."""

    connections: int = 0  # client connections accepted
    active: int = 0  # connections currently proxied to the upstream
    resets: int = 0  # connections reset by the reset_peer toxic
    refused: int = 0  # connections closed at once because the proxy was down
    upstream_failed: int = 0  # connections closed because the upstream could not be reached
    bytes_up: int = 0  # bytes forwarded client -> upstream
    bytes_down: int = 0  # bytes forwarded upstream -> client
    hung: int = 0  # connections that swallowed data under the timeout toxic


@dataclass(eq=False)
class _Conn:
    """One proxied connection: its writers and pipe tasks, so that it can be cut from outside."""

    client: asyncio.StreamWriter
    reset: bool
    rng_up: random.Random
    rng_down: random.Random
    upstream: asyncio.StreamWriter | None = None
    pipes: list[asyncio.Task] = field(default_factory=list)
    hung: bool = False
    cut: bool = False
    tap_id: int = 0  # this connection in the wiretap, when one is attached

    def abort(self, *, rst: bool = False) -> None:
        """Drop both sides now (RST to the client if ``rst``) and stop forwarding."""
        self.cut = True
        if rst:
            with contextlib.suppress(OSError, AttributeError):
                sock = self.client.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        for writer in (self.client, self.upstream):
            if writer is not None:
                writer.transport.abort()
        for task in self.pipes:
            if task is not asyncio.current_task():
                task.cancel()


class FaultProxy:
    """Listens on ``listen_host:listen_port`` and forwards to the upstream through ``Toxics``."""

    def __init__(self, upstream_host: str, upstream_port: int, *, listen_host: str = "127.0.0.1",
                 listen_port: int = 0, seed: int = 0, name: str = "proxy", wiretap: Wiretap | None = None) -> None:
        self.upstream_host, self.upstream_port = upstream_host, upstream_port
        self.wiretap = wiretap  # sees every forwarded byte (HTTP exchanges), before any toxic
        self.listen_host, self.name = listen_host, name
        self._listen_port = listen_port
        self._rng = random.Random(seed)
        self._toxics = Toxics()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task] = set()
        self._conns: set[_Conn] = set()
        self._counts = {f.name: 0 for f in fields(ProxyStats) if f.name != "active"}

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        """Bind the listener; with ``listen_port=0`` the OS picks a free port (see ``port``)."""
        if self._server is not None:
            raise RuntimeError(f"{self.name} already started")
        # A plain callback (not a coroutine) so that asyncio creates no untracked task.
        self._server = await asyncio.start_server(
            self._accept, self.listen_host, self._listen_port, limit=CHUNK_BYTES)

    async def stop(self) -> None:
        """Close the listener and every connection, and wait for all of the proxy's tasks."""
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self._conns):
            conn.abort()
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if server is not None:
            await server.wait_closed()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._server.sockets[0].getsockname()[1]

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://{self.listen_host}:{self.port}"

    # -- control -----------------------------------------------------------------------------

    @property
    def toxics(self) -> Toxics:
        return self._toxics

    def set_toxics(self, toxics: Toxics) -> None:
        """Apply ``toxics`` to the next chunk and connection.

        ``down`` also cuts the existing connections. Leaving ``timeout`` closes the hung
        connections: the data they swallowed is lost, so resuming would corrupt their stream;
        closing is what a real timeout ends with, and it makes clients reconnect cleanly.
        """
        self._toxics = toxics
        for conn in list(self._conns):
            if toxics.down or (conn.hung and not toxics.timeout):
                conn.abort()

    def clear(self) -> None:
        """Remove every toxic (hung connections are closed, see ``set_toxics``)."""
        self.set_toxics(Toxics())

    @property
    def stats(self) -> ProxyStats:
        active = sum(1 for conn in self._conns if conn.upstream is not None)
        return ProxyStats(active=active, **self._counts)

    # -- forwarding --------------------------------------------------------------------------

    def _spawn(self, coro, what: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name=f"{self.name}:{what}")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # Draw per-connection choices here, in accept order, whatever the toxics: the same seed
        # then gives the same decisions to the n-th connection in every run.
        reset_draw = self._rng.random()
        conn = _Conn(writer, reset_draw < self._toxics.reset_peer_rate,
                     random.Random(self._rng.getrandbits(64)),
                     random.Random(self._rng.getrandbits(64)))
        self._counts["connections"] += 1
        self._spawn(self._serve(conn, reader), "conn")

    async def _serve(self, conn: _Conn, client_reader: asyncio.StreamReader) -> None:
        """Connect to the upstream and pump both directions until both end or the conn is cut."""
        self._conns.add(conn)
        if self.wiretap is not None:
            conn.tap_id = self.wiretap.open_conn()
        try:
            if self._toxics.down:
                self._counts["refused"] += 1
                return
            try:
                up_reader, conn.upstream = await asyncio.open_connection(
                    self.upstream_host, self.upstream_port, limit=CHUNK_BYTES)
            except OSError:
                self._counts["upstream_failed"] += 1
                return
            if conn.cut:  # went down while we were connecting
                return
            conn.pipes = [self._spawn(self._pipe(conn, client_reader, conn.upstream, True), "up"),
                          self._spawn(self._pipe(conn, up_reader, conn.client, False), "down")]
            await asyncio.gather(*conn.pipes, return_exceptions=True)
        finally:
            self._conns.discard(conn)
            if self.wiretap is not None:
                self.wiretap.close_conn(conn.tap_id)
            for writer in (conn.client, conn.upstream):
                if writer is not None:
                    writer.close()  # flushes what is buffered; a no-op after abort()
                    with contextlib.suppress(Exception, asyncio.CancelledError):
                        await writer.wait_closed()

    async def _pipe(self, conn: _Conn, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter, upstream: bool) -> None:
        """Forward one direction chunk by chunk; EOF is passed on as a half-close."""
        counter, rng = ("bytes_up", conn.rng_up) if upstream else ("bytes_down", conn.rng_down)
        first = True
        try:
            while chunk := await reader.read(CHUNK_BYTES):
                if self.wiretap is not None:  # what the caller sent / what came back, faults or not
                    (self.wiretap.upstream if upstream else self.wiretap.downstream)(conn.tap_id, chunk)
                toxics = self._toxics
                if toxics.timeout:  # swallow it; set_toxics closes us when the toxic goes
                    if not conn.hung:
                        conn.hung = True
                        self._counts["hung"] += 1
                    continue
                if upstream and first and conn.reset:
                    self._counts["resets"] += 1
                    conn.abort(rst=True)
                    return
                first = False
                delay_s = toxics.latency_ms / 1000
                if toxics.jitter_ms:
                    delay_s += rng.uniform(0.0, toxics.jitter_ms) / 1000
                if delay_s:
                    await asyncio.sleep(delay_s)
                await self._write(writer, chunk, toxics.bandwidth_kbps, counter)
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            conn.abort()  # one side broke: the other cannot be served either

    async def _write(self, writer: asyncio.StreamWriter, chunk: bytes,
                     bandwidth_kbps: float | None, counter: str) -> None:
        """Write ``chunk``, paced to ``bandwidth_kbps`` if set; drain so nothing piles up."""
        if bandwidth_kbps is None:
            slices = [chunk]
        else:
            bytes_per_s = bandwidth_kbps * 125
            step = max(1, int(bytes_per_s * THROTTLE_SLICE_S))
            slices = [chunk[i:i + step] for i in range(0, len(chunk), step)]
        for piece in slices:
            if bandwidth_kbps is not None:
                await asyncio.sleep(len(piece) / (bandwidth_kbps * 125))
            writer.write(piece)
            await writer.drain()
            self._counts[counter] += len(piece)
