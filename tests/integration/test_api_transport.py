"""Malformed transport against the live api: oversized heads, heads and bodies that never finish,
and hundreds of connections opened and held, while a normal peer keeps submitting."""

from __future__ import annotations

import asyncio
import time

import httpx
import orjson
import pytest

from exoarmur.api.transport import HEAD_MAX_BYTES, HEAD_TIMEOUT_S

pytestmark = pytest.mark.integration

HELD = 300  # silent connections: opened, never a byte
SLOW = 100  # slowloris heads: one header byte every 0.5 s


async def exchange(host: str, port: int, data: bytes, wait_s: float) -> tuple[bytes, float]:
    began = time.monotonic()
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(data)
    await writer.drain()
    try:
        answer = await asyncio.wait_for(reader.read(), wait_s)  # read() to EOF: the server closed it
    finally:
        writer.close()
    return answer, time.monotonic() - began


def status_and_reason(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), orjson.loads(body)["reason_code"]


def test_an_oversized_head_is_refused_431_with_a_reason(stack) -> None:
    cfg = stack.config
    big = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (HEAD_MAX_BYTES * 4) + b"\r\n\r\n"
    answer, _ = asyncio.run(exchange(cfg.host, cfg.api_port, big, 5))
    assert status_and_reason(answer) == (431, "INVALID_INTENT")


def test_a_head_or_body_that_never_finishes_is_cut_off_at_the_deadline(stack) -> None:
    cfg = stack.config
    peer = next(iter(cfg.peers.values()))
    head_only = b"GET /healthz HTTP/1.1\r\nHost: x\r\n"
    answer, took = asyncio.run(exchange(cfg.host, cfg.api_port, head_only, HEAD_TIMEOUT_S + 5))
    assert status_and_reason(answer) == (408, "TIMEOUT_API_REQUEST") and took < HEAD_TIMEOUT_S + 2
    body_short = (f"POST /v1/intents HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {peer.token}\r\n"
                  f"Content-Type: application/json\r\nContent-Length: 500\r\n\r\n{{").encode()
    answer, took = asyncio.run(exchange(cfg.host, cfg.api_port, body_short, 15))
    assert status_and_reason(answer) == (408, "TIMEOUT_API_REQUEST") and took < 10


async def normal_peer(cfg, n: int, tag: str) -> list[float]:
    peer = next(iter(cfg.peers.values()))
    node = next(node for node, owner in cfg.nodes.items() if owner == peer.tenant_id)
    latencies = []
    async with httpx.AsyncClient(base_url=cfg.api_url, timeout=10) as client:
        for i in range(n):
            key = f"transport-{tag}-{i}-{time.monotonic_ns()}"
            body = {"intent_id": key[:64], "tenant_id": peer.tenant_id, "peer_id": peer.peer_id, "node_id": node,
                    "action": "block_ip", "action_class": "A0", "idempotency_key": key, "parameters": {}}
            began = time.monotonic()
            response = await client.post("/v1/intents", json=body, headers={"Authorization": f"Bearer {peer.token}"})
            latencies.append(time.monotonic() - began)
            assert response.status_code in (202, 429), response.text
            await asyncio.sleep(0.02)
    return latencies


def p99_ms(values: list[float]) -> float:
    return sorted(values)[min(len(values) - 1, int(len(values) * 0.99))] * 1000


async def attack_while_serving(cfg) -> tuple[float, float, int]:
    baseline = await normal_peer(cfg, 60, "base")
    held = [await asyncio.open_connection(cfg.host, cfg.api_port) for _ in range(HELD)]

    async def slowloris() -> bytes:
        reader, writer = await asyncio.open_connection(cfg.host, cfg.api_port)
        try:
            for byte in b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"z" * 100:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(0.5)
            return b""
        except (ConnectionError, OSError):
            return b"closed"
        finally:
            writer.close()

    slow = [asyncio.create_task(slowloris()) for _ in range(SLOW)]
    under = await normal_peer(cfg, 120, "attack")
    answers = await asyncio.gather(*(asyncio.wait_for(r.read(), HEAD_TIMEOUT_S + 10) for r, _ in held))
    for _, writer in held:
        writer.close()
    for task in slow:
        task.cancel()
    cut_off = sum(1 for a in answers if a.startswith(b"HTTP/1.1 408"))
    return p99_ms(baseline), p99_ms(under), cut_off


def test_held_and_slow_connections_do_not_stop_a_normal_peer(stack) -> None:
    base_p99, attack_p99, cut_off = asyncio.run(attack_while_serving(stack.config))
    print(f"normal peer p99: {base_p99:.1f} ms alone, {attack_p99:.1f} ms beside {HELD} held and {SLOW} "
          f"slowloris connections; {cut_off}/{HELD} held connections answered 408 and closed")
    assert cut_off == HELD  # every silent connection was answered and closed at the head deadline
    assert attack_p99 < max(1000.0, 10 * base_p99)
