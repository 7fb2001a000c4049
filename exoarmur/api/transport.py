"""The api's HTTP connections, with the bounds uvicorn leaves open.

uvicorn (httptools) waits forever for a request head that never completes and buffers headers of
any size. ``BoundedHttp`` adds both bounds per connection: a request's head must be complete within
``HEAD_TIMEOUT_S`` of its first byte (or of the connection), else 408 TIMEOUT_API_REQUEST; its
request line and headers may total ``HEAD_MAX_BYTES``, else 431 INVALID_INTENT. Either way the
answer carries a reason code and the connection is closed, so a slow or oversized client holds
one socket for a bounded time and never a worker. A body that trickles is bounded where it is
read (``http.read_json``: the API_REQUEST deadline).
"""

from __future__ import annotations

import asyncio

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from exoarmur.contracts import ReasonCode

HEAD_TIMEOUT_S = 5.0
# How long an idle keep-alive connection stays open. uvicorn's 5 s default races a client that
# reuses its connection after ~5 s: under overload the loop runs the idle timer before it reads
# the request already waiting on the socket, and the client sees the connection closed with no
# answer (measured: 4 Locust requests in one quick run's overload phase). A load run is shorter.
KEEP_ALIVE_S = 30.0
HEAD_MAX_BYTES = 16 * 1024
REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


class BoundedHttp(HttpToolsProtocol):
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_bytes = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._arm_head_timer()

    def _arm_head_timer(self) -> None:
        if self._head_timer is None:
            self._head_timer = self.loop.call_later(HEAD_TIMEOUT_S, self._head_too_slow)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count(len(url))
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count(len(name) + len(value) + 4)
        if not self._refused:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._disarm_head_timer()
        if not self._refused:
            super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if not self._refused:
            super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        super().connection_lost(exc)

    def _count(self, size: int) -> None:
        self._head_bytes += size
        if self._head_bytes > HEAD_MAX_BYTES and not self._refused:
            self._refuse(431, ReasonCode.INVALID_INTENT, f"request head over {HEAD_MAX_BYTES} bytes")

    def _head_too_slow(self) -> None:
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:  # waiting for a head, not serving one
            self._refuse(408, ReasonCode.TIMEOUT_API_REQUEST, f"request head not complete within {HEAD_TIMEOUT_S}s")

    def _refuse(self, status: int, reason: ReasonCode, detail: str) -> None:
        self._refused = True
        self._disarm_head_timer()
        body = orjson.dumps({"reason_code": reason.value, "detail": detail})
        head = (b"HTTP/1.1 %d %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                b"connection: close\r\n\r\n" % (status, REASONS[status], len(body)))
        if not self.transport.is_closing():
            self.transport.write(head + body)
            self.transport.close()
