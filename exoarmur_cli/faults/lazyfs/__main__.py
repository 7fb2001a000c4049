"""``python -m exoarmur_cli.faults.lazyfs MOUNT BACKING --control SOCKET``: serve one LazyFS.

Runs in the foreground until SIGTERM/SIGINT (libfuse then unmounts cleanly; a clean unmount
syncs every file). The control socket takes one command per connection, answered with one
JSON line: ``power-loss`` (discard everything unsynced, report what was lost) or ``stats``.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import threading

import orjson


def serve_control(path: str, fs) -> None:
    """Answer control commands on a Unix socket (a daemon thread; dies with the process)."""
    if os.path.exists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(4)

    def loop() -> None:
        while True:
            conn, _ = server.accept()
            with conn:
                command = conn.makefile("rb").readline().strip().decode(errors="replace")
                if command == "power-loss":
                    answer = fs.power_loss()
                elif command == "stats":
                    answer = fs.stats()
                else:
                    answer = {"error": f"unknown command {command!r}; known: power-loss, stats"}
                conn.sendall(orjson.dumps(answer) + b"\n")

    threading.Thread(target=loop, name="lazyfs-control", daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m exoarmur_cli.faults.lazyfs", description=__doc__)
    parser.add_argument("mountpoint")
    parser.add_argument("backing", help="directory that holds what has been made durable")
    parser.add_argument("--control", required=True, help="path of the control Unix socket")
    args = parser.parse_args(argv)
    try:
        import mfusepy

        from exoarmur_cli.faults.lazyfs.fs import LazyFS
    except (ImportError, OSError) as exc:  # mfusepy raises EnvironmentError without libfuse
        print(f"lazyfs: NO_LIBFUSE: {exc}", file=sys.stderr)
        return 3
    os.makedirs(args.backing, exist_ok=True)
    os.makedirs(args.mountpoint, exist_ok=True)
    fs = LazyFS(args.backing)
    serve_control(args.control, fs)
    try:
        mfusepy.FUSE(fs, args.mountpoint, foreground=True, fsname="exoarmur-lazyfs", subtype="lazyfs",
                     attr_timeout=0, entry_timeout=0, negative_timeout=0)
    except RuntimeError as exc:  # libfuse's exit status: expected after a signal once mounted
        if not fs.mounted:
            print(f"lazyfs: MOUNT_FAILED: libfuse exit status {exc}", file=sys.stderr)
            return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
