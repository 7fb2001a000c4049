"""The cells -> effector proxy in its own process: it forwards, its wiretap (written there) sees
each request and answer, its toxics apply when set returns, and stop leaves no process."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson
import psutil
import pytest

from exoarmur_cli.errors import StackError
from exoarmur_cli.faults.network import LinkProxy
from exoarmur_cli.faults.proxy import Toxics

pytestmark = pytest.mark.integration


class _Ok(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *_args) -> None:
        pass


@pytest.fixture
def upstream():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Ok)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _post(url: str, key: str) -> int:
    request = urllib.request.Request(f"{url}/v1/effects", data=b"{}", method="POST",
                                     headers={"Idempotency-Key": key, "Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=5) as response:
        return response.status


def test_the_link_forwards_taps_and_takes_its_toxics_in_its_own_process(upstream, tmp_path):
    wire = tmp_path / "wire.jsonl"
    proxy = LinkProxy("127.0.0.1", upstream, seed=3, name="cells->effector", wiretap_path=wire,
                      log_path=tmp_path / "proxy.log")
    proxy.start()
    pid = proxy._process._process.pid
    try:
        assert psutil.Process(pid).pid != psutil.Process().pid  # not the harness's process
        assert _post(proxy.url(), "k-1") == 200
        proxy.set_toxics(Toxics(down=True))  # applied once set returns
        with pytest.raises((urllib.error.URLError, ConnectionError)):
            _post(proxy.url(), "k-2")
        proxy.clear()
        assert _post(proxy.url(), "k-3") == 200
        with pytest.raises(StackError, match="no link proxy named"):
            proxy._process.request({"op": "toxics", "name": "elsewhere", "toxics": {}})
        with pytest.raises(StackError, match="bad toxics"):
            proxy._process.request({"op": "toxics", "name": proxy.name, "toxics": {"latency_ms": -1}})
    finally:
        proxy.stop()
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    rows = [orjson.loads(line) for line in wire.read_bytes().splitlines()]
    seen = {(row["event"], row["key"]) for row in rows}
    assert {("request", "k-1"), ("response", "k-1"), ("request", "k-3"), ("response", "k-3")} <= seen
    assert all(row["wall_ms"] > 0 for row in rows)
