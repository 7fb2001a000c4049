"""The harness's end of a proxy server process (``proxy_server``): start it with a spec, send it
one command at a time, stop and reap it. One JSON line out, one line back."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

import orjson

from exoarmur_cli.errors import StackError

CONTROL_TIMEOUT_S = 10.0  # starting, stopping or setting toxics in the proxies' process


class ProxyProcess:
    def __init__(self, what: str, log_path: Path | None = None) -> None:
        self.what = what  # how errors name it ("the route proxies' process")
        self.log_path = log_path  # the process's stderr (None: discarded)
        self._process: subprocess.Popen | None = None
        self._lock = threading.Lock()  # one command and its answer at a time

    @property
    def running(self) -> bool:
        return self._process is not None

    def start(self, spec: dict) -> dict:
        """Start the process and have it listen as ``spec`` says; its answer (the ports it took)."""
        if self._process is not None:
            raise RuntimeError(f"{self.what} already started")
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        try:
            # A process group of its own: a Ctrl-C meant for the harness does not cut its links.
            self._process = subprocess.Popen([sys.executable, "-m", "exoarmur_cli.faults.proxy_server"],
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                             process_group=0)
        finally:
            if log is not subprocess.DEVNULL:
                log.close()
        try:
            return self.request(spec)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Close every proxy and its connections, and reap the process (idempotent)."""
        process, self._process = self._process, None
        if process is None:
            return
        try:
            if process.poll() is None:
                self._send(process, {"op": "stop"})
                process.wait(CONTROL_TIMEOUT_S)
        except (OSError, StackError, subprocess.TimeoutExpired):
            _kill_group(process)
        finally:
            for pipe in (process.stdin, process.stdout):
                pipe.close()

    def request(self, message: dict) -> dict:
        if self._process is None:
            raise RuntimeError(f"{self.what} is not started")
        return self._send(self._process, message)

    def _send(self, process: subprocess.Popen, message: dict) -> dict:
        """One line out, one line back within CONTROL_TIMEOUT_S; StackError names what went wrong."""
        with self._lock:
            try:
                process.stdin.write(orjson.dumps(message) + b"\n")
                process.stdin.flush()
            except OSError:
                raise StackError(f"{self.what} (pid {process.pid}) is gone "
                                 f"(exit code {process.poll()})") from None
            ready, _, _ = select.select([process.stdout], [], [], CONTROL_TIMEOUT_S)
            line = process.stdout.readline() if ready else b""
        if not line:
            raise StackError(f"{self.what} (pid {process.pid}) did not answer within "
                             f"{CONTROL_TIMEOUT_S:g} s (exit code {process.poll()})")
        answer = orjson.loads(line)
        if "error" in answer:
            raise StackError(f"{self.what}: {answer['error']}")
        return answer


def _kill_group(process: subprocess.Popen) -> None:
    try:
        os.killpg(process.pid, signal.SIGKILL)  # its own group (process_group=0): only what we started
    except ProcessLookupError:
        pass
    process.wait(CONTROL_TIMEOUT_S)
