"""The harness's handle on one LazyFS mount: start, power loss, stop — and clean-up of leftovers.

``LazyMount`` runs the file system as its own process (its own process group, reaped at exit
like every child of the harness) and talks to it over its control socket. It is unmounted on
every exit path: ``stop()``, an ``atexit`` hook for mounts still up, and ``clean_stale_mounts``
for a mount whose daemon died with a crashed run (found in /proc/mounts by its fsname).
"""

from __future__ import annotations

import atexit
import errno
import os
import shutil
import socket
import subprocess
import sys
import time
from enum import Enum
from pathlib import Path

import orjson

from exoarmur.contracts import ReasonCode
from exoarmur.errors import ExoError
from exoarmur_cli.procs import Child

FSNAME = "exoarmur-lazyfs"
MOUNT_TIMEOUT_S = 10.0
CONTROL_TIMEOUT_S = 10.0
_MOUNTED: dict[str, "LazyMount"] = {}


class LazyFSReason(str, Enum):
    NO_DEV_FUSE = "NO_DEV_FUSE"
    NO_FUSERMOUNT = "NO_FUSERMOUNT"
    NO_LIBFUSE = "NO_LIBFUSE"
    MOUNT_FAILED = "MOUNT_FAILED"
    CONTROL_FAILED = "CONTROL_FAILED"


class LazyFSUnavailable(ExoError):
    """A lazy file system could not be mounted or controlled here; ``reason`` says why.
    A scenario that needs one is then not run (its gate INCOMPLETE, never green)."""

    reason_code = ReasonCode.STACK_UNAVAILABLE

    def __init__(self, reason: LazyFSReason, detail: str) -> None:
        super().__init__(f"{reason.value}: {detail}")
        self.reason = reason


def unavailable_reason() -> LazyFSUnavailable | None:
    """Why FUSE cannot be used on this machine, or None when it can (checked, not assumed)."""
    if not os.path.exists("/dev/fuse"):
        return LazyFSUnavailable(LazyFSReason.NO_DEV_FUSE, "/dev/fuse does not exist (a container without FUSE?)")
    if shutil.which("fusermount3") is None:
        return LazyFSUnavailable(LazyFSReason.NO_FUSERMOUNT, "fusermount3 not found: install Debian's fuse3")
    # A session of its own: a Ctrl-C of the run must not end the probe and read as "no libfuse".
    probe = subprocess.run([sys.executable, "-c", "import mfusepy"], capture_output=True, text=True, timeout=30,
                           start_new_session=True)
    if probe.returncode != 0:
        last = (probe.stderr.strip().splitlines() or ["import failed"])[-1]
        return LazyFSUnavailable(LazyFSReason.NO_LIBFUSE, f"mfusepy cannot load libfuse3: {last}")
    return None


def _mount_table() -> list[tuple[str, str, str]]:
    """(source, mountpoint, fstype) of every mount, with /proc/mounts' octal escapes decoded."""
    rows = []
    with open("/proc/mounts") as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 3:
                rows.append(tuple(p.encode().decode("unicode_escape") for p in parts[:3]))
    return rows


def is_mounted(path: str | Path) -> bool:
    target = os.path.realpath(path)
    return any(point == target for _, point, _ in _mount_table())


def unmount(path: str | Path) -> bool:
    """Unmount (lazily if busy); True when it is no longer mounted."""
    for args in (["-u"], ["-u", "-z"]):
        if not is_mounted(path):
            return True
        subprocess.run(["fusermount3", *args, str(path)], capture_output=True, timeout=30)
    return not is_mounted(path)


def clean_stale_mounts() -> list[str]:
    """Unmount every LazyFS mount whose daemon is gone (a crashed run's); returns their paths."""
    cleaned = []
    for source, point, _ in _mount_table():
        if source != FSNAME or point in _MOUNTED:
            continue
        try:
            os.stat(point)
            continue  # answered: its daemon is alive (another run's), not ours to touch
        except OSError as exc:
            if exc.errno not in (errno.ENOTCONN, errno.ECONNABORTED, errno.EIO):
                continue
        if unmount(point):
            cleaned.append(point)
    return cleaned


class LazyMount:
    def __init__(self, mountpoint: Path, backing: Path, control: Path, log_path: Path) -> None:
        self.mountpoint = Path(os.path.realpath(mountpoint))
        self.backing = Path(backing)
        self.control = Path(control)
        argv = [sys.executable, "-m", "exoarmur_cli.faults.lazyfs", str(self.mountpoint), str(self.backing),
                "--control", str(self.control)]
        self.child = Child(f"lazyfs-{self.mountpoint.name}", argv, Path(log_path))

    def start(self, timeout_s: float = MOUNT_TIMEOUT_S) -> None:
        self.spawn()
        self.wait_mounted(timeout_s)

    def spawn(self) -> None:
        """Start the file system's process (``wait_mounted`` waits for the mount): several disks
        spawned first and waited for after come up together."""
        if is_mounted(self.mountpoint):
            raise LazyFSUnavailable(LazyFSReason.MOUNT_FAILED, f"{self.mountpoint} is already a mount point")
        self.mountpoint.mkdir(parents=True, exist_ok=True)
        self.child.start()
        _MOUNTED[str(self.mountpoint)] = self

    def wait_mounted(self, timeout_s: float = MOUNT_TIMEOUT_S) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if not self.child.alive():
                break
            if is_mounted(self.mountpoint) and self.control.exists():
                return
            time.sleep(0.05)
        self.stop()
        tail = self.child.log_path.read_text(errors="replace")[-400:] if self.child.log_path.exists() else ""
        raise LazyFSUnavailable(LazyFSReason.MOUNT_FAILED, f"{self.mountpoint} not mounted within {timeout_s:.0f}s: "
                                                          f"{tail.strip() or 'no output'}")

    def command(self, name: str) -> dict:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(CONTROL_TIMEOUT_S)
                conn.connect(str(self.control))
                conn.sendall(name.encode() + b"\n")
                return orjson.loads(conn.makefile("rb").readline())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise LazyFSUnavailable(LazyFSReason.CONTROL_FAILED, f"{name} on {self.mountpoint}: {exc}") from None

    def power_loss(self) -> dict:
        """Discard every write not yet synced; the answer says how much was lost."""
        return self.command("power-loss")

    def stats(self) -> dict:
        return self.command("stats")

    def stop(self) -> bool:
        """SIGTERM (libfuse unmounts and syncs), then make sure it is unmounted; True if it is."""
        self.child.stop()
        gone = unmount(self.mountpoint)
        _MOUNTED.pop(str(self.mountpoint), None)
        return gone


def _unmount_all() -> None:
    for mount in list(_MOUNTED.values()):
        mount.stop()


atexit.register(_unmount_all)
