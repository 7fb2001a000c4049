"""Child processes the harness starts: each in its own process group, reaped on every exit.

Only PIDs this module started are ever signalled; a PID is checked against the create time
recorded at spawn before it is signalled, so a recycled PID is never hit.
"""

from __future__ import annotations

import atexit
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

_LIVE: dict[int, "Child"] = {}


@dataclass
class Child:
    name: str
    argv: list[str]
    log_path: Path
    popen: subprocess.Popen | None = None
    create_time: float = 0.0
    starts: int = field(default=0)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen else None

    def start(self, env: dict[str, str] | None = None) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True, env={**os.environ, **(env or {})},
        )
        log.close()
        self.create_time = psutil.Process(self.popen.pid).create_time()
        self.starts += 1
        _LIVE[self.popen.pid] = self

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 8) -> str:
        """The last lines of this child's log, for an error message."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError as exc:
            return f"(log unreadable: {exc.strerror})"

    def signal(self, sig: int) -> None:
        """Signal this child's process group (children of ours included)."""
        if not self.alive():
            return
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self, timeout_s: float = 5.0) -> int | None:
        """SIGTERM, then SIGKILL once the grace period is over; always reaps."""
        self.request_stop()
        return self.finish_stop(timeout_s)

    def request_stop(self) -> None:
        """SIGTERM without waiting, so several children can shut down at once."""
        if self.alive():
            self.signal(signal.SIGCONT)  # a paused child cannot act on SIGTERM
            self.signal(signal.SIGTERM)

    def finish_stop(self, timeout_s: float = 5.0) -> int | None:
        if self.popen is None:
            return None
        try:
            self.popen.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
        return self._reap()

    def kill(self) -> int | None:
        if self.popen is None:
            return None
        self.signal(signal.SIGKILL)
        return self._reap()

    def _reap(self) -> int | None:
        try:
            code = self.popen.wait(10)
        except subprocess.TimeoutExpired:
            code = None
        _LIVE.pop(self.popen.pid, None)
        return code


def reap_all() -> None:
    """Kill every child still alive. Registered at exit; also called on Ctrl-C and errors."""
    for child in list(_LIVE.values()):
        child.kill()


atexit.register(reap_all)


def pid_is_ours(pid: int, create_time: float) -> bool:
    """True when ``pid`` is still the process we started (not a recycled PID)."""
    try:
        return abs(psutil.Process(pid).create_time() - create_time) < 0.01
    except psutil.Error:
        return False


def terminate_recorded(pid: int, create_time: float, timeout_s: float = 5.0, *, group: bool = True) -> bool:
    """Stop a process recorded by an earlier ``stack up``: only if it is still that process."""
    if not pid_is_ours(pid, create_time):
        return False
    send = os.killpg if group else os.kill
    for sig in (signal.SIGCONT, signal.SIGTERM):
        try:
            send(pid, sig)
        except ProcessLookupError:
            return True
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if not pid_is_ours(pid, create_time) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.Error:
            return True
        time.sleep(0.05)
    try:
        send(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    return True
