"""What crossed the wire to the effector, seen by the harness's own proxy, not told by the cells.

The cells say how many attempts they made (a record's ``attempts``); the gates must not take
their word for it. Every cell -> effector byte passes through the harness's ``FaultProxy``, so
it can watch the HTTP/1.1 exchanges itself: each request's arrival (method, path,
Idempotency-Key, the deadline it carries), each response's status, and requests whose connection closed unanswered (an
attempt abandoned at its deadline). The parser is incremental and small: HTTP/1.1 without
pipelining, bodies sized by Content-Length (what aiohttp sends and uvicorn answers).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import orjson

from exoarmur.contracts import DEADLINE_HEADER

HEAD_END = b"\r\n\r\n"
MAX_HEAD_BYTES = 64 * 1024  # a head this long is not HTTP we understand: stop parsing this stream


@dataclass
class _Stream:
    """One direction of one connection: bytes not yet parsed, and body bytes still to skip."""

    buffer: bytearray = field(default_factory=bytearray)
    skip: int = 0
    broken: bool = False

    def feed(self, chunk: bytes) -> list[tuple[str, dict[str, str]]]:
        """Complete heads in ``chunk``: (start line, lower-cased headers) each."""
        if self.broken:
            return []
        self.buffer += chunk
        heads = []
        while True:
            if self.skip:
                taken = min(self.skip, len(self.buffer))
                del self.buffer[:taken]
                self.skip -= taken
                if self.skip:
                    return heads
            end = self.buffer.find(HEAD_END)
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    self.broken = True
                return heads
            lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
            del self.buffer[:end + len(HEAD_END)]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            try:
                self.skip = int(headers.get("content-length", "0"))
            except ValueError:
                self.broken = True
                return heads
            heads.append((lines[0], headers))


class Wiretap:
    """Appends one JSON line per request, response and unanswered close, as they happen."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file: BinaryIO = open(path, "ab")
        self._conns: dict[int, tuple[_Stream, _Stream, list[str | None]]] = {}
        self._next_id = 0

    def open_conn(self) -> int:
        self._next_id += 1
        self._conns[self._next_id] = (_Stream(), _Stream(), [])
        return self._next_id

    def upstream(self, conn: int, chunk: bytes) -> None:
        up, _, pending = self._conns[conn]
        for start, headers in up.feed(chunk):
            method, _, rest = start.partition(" ")
            key = headers.get("idempotency-key")
            pending.append(key)
            self._write({"event": "request", "conn": conn, "method": method, "path": rest.rsplit(" ", 1)[0],
                         "key": key, "deadline_ms": _int_or_none(headers.get(DEADLINE_HEADER.lower()))})

    def downstream(self, conn: int, chunk: bytes) -> None:
        _, down, pending = self._conns[conn]
        for start, _ in down.feed(chunk):
            parts = start.split(" ")
            status = int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else 0
            self._write({"event": "response", "conn": conn, "status": status,
                         "key": pending.pop(0) if pending else None})

    def close_conn(self, conn: int) -> None:
        _, _, pending = self._conns.pop(conn, (None, None, []))
        for key in pending:
            self._write({"event": "unanswered", "conn": conn, "key": key})

    def close(self) -> None:
        for conn in list(self._conns):
            self.close_conn(conn)
        self._file.close()

    def _write(self, row: dict) -> None:
        row["wall_ms"] = time.time() * 1000
        self._file.write(orjson.dumps(row) + b"\n")
        self._file.flush()


def _int_or_none(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None
