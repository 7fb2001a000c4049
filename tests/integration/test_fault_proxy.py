"""``FaultProxy`` over real sockets on 127.0.0.1: each toxic does to a client what it says.

The upstream is a small TCP echo server. Timings assert lower bounds (a toxic cannot make
traffic faster) and only generous upper bounds, so a busy machine does not fail them.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator

import pytest

from exoarmur_cli.faults import FaultProxy, ProxyStats, Toxics

pytestmark = pytest.mark.integration

WAIT_S = 2.0  # upper bound for anything that should happen "at once"


class EchoServer:
    """Echoes every byte back; counts what it received so tests can see what got through."""

    def __init__(self) -> None:
        self.received = 0
        self.server: asyncio.Server | None = None

    async def start(self) -> int:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self.server.sockets[0].getsockname()[1]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                self.received += len(data)
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    server.port = await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def proxy(echo: EchoServer) -> AsyncIterator[FaultProxy]:
    fault_proxy = FaultProxy("127.0.0.1", echo.port, seed=1, name="test-proxy")
    await fault_proxy.start()
    yield fault_proxy
    await fault_proxy.stop()


async def connect(proxy: FaultProxy):
    return await asyncio.open_connection("127.0.0.1", proxy.port)


async def read_exactly(reader: asyncio.StreamReader, size: int) -> bytes:
    return await asyncio.wait_for(reader.readexactly(size), WAIT_S)


async def outcome(proxy: FaultProxy) -> str:
    """One connection's fate: "echo", "eof" or "reset"."""
    reader, writer = await connect(proxy)
    try:
        writer.write(b"ping")
        await writer.drain()
        data = await asyncio.wait_for(reader.read(4), WAIT_S)
        return "echo" if data else "eof"
    except ConnectionResetError:
        return "reset"
    finally:
        writer.close()


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True if the connection ends (EOF or reset) within WAIT_S."""
    try:
        return await asyncio.wait_for(reader.read(1), WAIT_S) == b""
    except ConnectionResetError:
        return True


async def test_without_toxics_bytes_pass_both_ways(proxy: FaultProxy, echo: EchoServer):
    reader, writer = await connect(proxy)
    payload = bytes(range(256)) * 1024  # 256 KiB: several chunks each way
    writer.write(payload)
    await writer.drain()
    assert await read_exactly(reader, len(payload)) == payload
    assert proxy.stats.active == 1
    writer.write_eof()  # a half-close travels to the upstream, whose close travels back
    assert await asyncio.wait_for(reader.read(), WAIT_S) == b""
    writer.close()
    assert echo.received == len(payload)
    stats = proxy.stats
    assert (stats.connections, stats.bytes_up, stats.bytes_down) == (1, len(payload), len(payload))
    assert proxy.url() == f"http://127.0.0.1:{proxy.port}"


async def test_latency_delays_each_direction(proxy: FaultProxy):
    proxy.set_toxics(Toxics(latency_ms=100))
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(b"ping")
    assert await read_exactly(reader, 4) == b"ping"
    elapsed_s = time.monotonic() - started
    writer.close()
    assert 0.2 - 0.005 <= elapsed_s < 0.2 + WAIT_S  # 100 ms up + 100 ms down


async def test_reset_peer_resets_the_client_and_forwards_nothing(proxy, echo):
    proxy.set_toxics(Toxics(reset_peer_rate=1.0))
    assert await outcome(proxy) in {"reset", "eof"}
    assert proxy.stats.resets == 1
    assert echo.received == 0


async def test_reset_is_a_tcp_rst(proxy: FaultProxy):
    proxy.set_toxics(Toxics(reset_peer_rate=1.0))
    reader, writer = await connect(proxy)
    writer.write(b"ping")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(reader.read(4), WAIT_S)
    writer.close()


async def test_timeout_hangs_until_cleared(proxy: FaultProxy, echo: EchoServer):
    proxy.set_toxics(Toxics(timeout=True))
    reader, writer = await connect(proxy)
    writer.write(b"ping")
    with pytest.raises(asyncio.TimeoutError):
        await asyncio.wait_for(reader.read(4), 0.3)
    assert not reader.at_eof()
    assert (proxy.stats.active, proxy.stats.hung, echo.received) == (1, 1, 0)

    proxy.clear()
    assert await closed_by_peer(reader)  # what it swallowed is lost: the hung one is closed
    writer.close()
    assert await outcome(proxy) == "echo"


async def test_down_refuses_new_connections_and_cuts_existing(proxy: FaultProxy):
    reader, writer = await connect(proxy)
    writer.write(b"ping")
    assert await read_exactly(reader, 4) == b"ping"

    proxy.set_toxics(Toxics(down=True))
    assert await closed_by_peer(reader)
    writer.close()
    assert await outcome(proxy) in {"eof", "reset"}
    assert proxy.stats.refused == 1
    assert proxy.stats.active == 0

    proxy.clear()
    assert await outcome(proxy) == "echo"


async def test_bandwidth_throttles_a_transfer(proxy: FaultProxy):
    proxy.set_toxics(Toxics(bandwidth_kbps=1280))  # 160,000 bytes/s
    payload = b"x" * 65536
    reader, writer = await connect(proxy)
    started = time.monotonic()
    writer.write(payload)
    assert await asyncio.wait_for(reader.readexactly(len(payload)), 10) == payload
    elapsed_s = time.monotonic() - started
    writer.close()
    assert 65536 / 160_000 - 0.005 <= elapsed_s < 5.0


async def test_same_seed_gives_the_same_reset_decisions(echo: EchoServer):
    async def decisions(seed: int) -> tuple[list[str], ProxyStats]:
        fault_proxy = FaultProxy("127.0.0.1", echo.port, seed=seed)
        await fault_proxy.start()
        try:
            fault_proxy.set_toxics(Toxics(reset_peer_rate=0.5))
            return [await outcome(fault_proxy) for _ in range(20)], fault_proxy.stats
        finally:
            await fault_proxy.stop()

    first, first_stats = await decisions(seed=42)
    again, _ = await decisions(seed=42)
    assert first == again
    assert "echo" in first and len(set(first)) >= 2  # rate 0.5 over 20: both fates occur
    assert first_stats.resets == sum(fate != "echo" for fate in first)


async def test_unreachable_upstream_closes_the_client():
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        dead_port = probe.getsockname()[1]
    fault_proxy = FaultProxy("127.0.0.1", dead_port)
    await fault_proxy.start()
    try:
        assert await outcome(fault_proxy) in {"eof", "reset"}
        assert fault_proxy.stats.upstream_failed == 1
    finally:
        await fault_proxy.stop()


async def test_stop_closes_connections_and_leaves_no_task(echo: EchoServer):
    fault_proxy = FaultProxy("127.0.0.1", echo.port, name="stopped-proxy")
    await fault_proxy.start()
    fault_proxy.set_toxics(Toxics(latency_ms=400))
    slow_reader, slow_writer = await connect(fault_proxy)
    slow_writer.write(b"ping")  # sleeping in the latency toxic when stop() comes
    await asyncio.sleep(0.05)
    fault_proxy.set_toxics(Toxics(timeout=True))
    hung_reader, hung_writer = await connect(fault_proxy)
    hung_writer.write(b"ping")
    await asyncio.sleep(0.05)
    assert fault_proxy.stats.active == 2
    port = fault_proxy.port

    await fault_proxy.stop()
    leftovers = [t for t in asyncio.all_tasks() if t.get_name().startswith("stopped-proxy")]
    assert leftovers == []
    assert fault_proxy.stats.active == 0
    for reader, writer in ((slow_reader, slow_writer), (hung_reader, hung_writer)):
        assert await closed_by_peer(reader)
        writer.close()
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)


def test_toxics_reject_nonsense():
    for bad in (dict(latency_ms=-1), dict(reset_peer_rate=1.5), dict(bandwidth_kbps=0)):
        with pytest.raises(ValueError):
            Toxics(**bad)
