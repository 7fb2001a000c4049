"""The effector as a real process: concurrency, SIGKILL and restart, a hang, SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import http.client
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from exoarmur.contracts import EFFECTOR_KEEP_ALIVE_S
from exoarmur.stackconfig import free_port

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
BODY = {"tenant_id": "t1", "node_id": "n1", "action": "block_ip", "parameters": {"ip": "10.0.0.1"}}
TOKENS = {"cell": "cell-token-for-this-test", "harness": "harness-token-for-this-test"}
CELL = {"Authorization": f"Bearer {TOKENS['cell']}"}
HARNESS = {"Authorization": f"Bearer {TOKENS['harness']}"}


def start(port: int, ledger: Path) -> subprocess.Popen:
    tokens = ledger.parent / "effector-tokens.json"
    tokens.write_text(json.dumps(TOKENS))
    proc = subprocess.Popen(
        [sys.executable, "-m", "exoarmur.effector", "--port", str(port),
         "--ledger", str(ledger), "--seed", "1", "--tokens", str(tokens)],
        cwd=REPO, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 10.0
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"effector exited {proc.returncode}: {proc.stderr.read().decode()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=0.5).json() == {"ok": True}:
                return proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    kill(proc)
    raise RuntimeError("effector did not come up within 10 s")


def kill(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    proc.wait(timeout=10)
    if proc.stderr is not None:
        proc.stderr.close()


@contextmanager
def effector(port: int, ledger: Path) -> Iterator[subprocess.Popen]:
    proc = start(port, ledger)
    try:
        yield proc
    finally:
        kill(proc)


async def post_concurrently(base: str, key: str, n: int) -> list[dict]:
    async with httpx.AsyncClient(base_url=base, timeout=10.0) as client:
        resps = await asyncio.gather(*(
            client.post("/v1/effects", json=BODY, headers={"Idempotency-Key": key, **CELL})
            for _ in range(n)
        ))
    assert all(r.status_code == 200 for r in resps), [r.text for r in resps]
    return [r.json() for r in resps]


def test_concurrent_calls_apply_once_and_survive_sigkill(tmp_path):
    ledger = tmp_path / "ledger.db"
    port = free_port()
    base = f"http://127.0.0.1:{port}"

    with effector(port, ledger) as proc:
        receipts = asyncio.run(post_concurrently(base, "k-conc", 20))
        assert len({r["receipt_id"] for r in receipts}) == 1
        assert sorted(r["calls"] for r in receipts) == list(range(1, 21))
        assert sum(not r["replayed"] for r in receipts) == 1
        rows = httpx.get(f"{base}/v1/ledger", headers=HARNESS).json()
        assert len(rows) == 1 and rows[0]["calls"] == 20
        stats = httpx.get(f"{base}/v1/stats", headers=HARNESS).json()
        assert stats == {"requests": 20, "applied": 1, "replayed": 19, "faulted": 0, "late": 0}

        os.killpg(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with effector(port, ledger):
        rows = httpx.get(f"{base}/v1/ledger", headers=HARNESS).json()
        assert len(rows) == 1 and rows[0]["calls"] == 20
        resp = httpx.post(f"{base}/v1/effects", json=BODY, headers={"Idempotency-Key": "k-conc", **CELL})
        assert resp.status_code == 200
        receipt = resp.json()
        assert (receipt["calls"], receipt["replayed"]) == (21, True)
        assert receipt["receipt_id"] == receipts[0]["receipt_id"]


def test_hang_times_out_the_caller_and_sigterm_still_stops(tmp_path):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with effector(port, tmp_path / "ledger.db") as proc:
        assert httpx.put(f"{base}/v1/faults", json={"hang": True}, headers=HARNESS).status_code == 200
        with pytest.raises(httpx.TimeoutException):
            httpx.post(f"{base}/v1/effects", json=BODY,
                       headers={"Idempotency-Key": "k-hang", **CELL}, timeout=0.3)
        assert httpx.get(f"{base}/v1/ledger", headers=HARNESS).json() == []
        assert httpx.get(f"{base}/v1/stats", headers=HARNESS).json()["faulted"] == 1

        # The hang ended with the caller's deadline, so SIGTERM has nothing left to cancel.
        # uvicorn re-raises the captured signal once it has shut down cleanly.
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=10) in (0, -signal.SIGTERM)
        assert b"Traceback" not in proc.stderr.read()


def test_an_idle_connection_its_callers_may_reuse_stays_open(tmp_path):
    """The effector must never close an idle connection its callers may still reuse (they drop
    theirs after EFFECTOR_KEEP_ALIVE_S / 2): one idle past uvicorn's default 5 s, which it used
    to have, still carries the next request."""
    port = free_port()
    idle_s = 6.0
    assert idle_s < EFFECTOR_KEEP_ALIVE_S / 2  # a caller may reuse it after this long
    with effector(port, tmp_path / "ledger.db"):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", "/healthz")
            assert conn.getresponse().read() == b'{"ok":true}'
            first = conn.sock
            time.sleep(idle_s)
            conn.request("GET", "/healthz")
            answer = conn.getresponse()  # RemoteDisconnected, had the server closed it meanwhile
            assert (answer.status, answer.read(), conn.sock) == (200, b'{"ok":true}', first)
        finally:
            conn.close()
