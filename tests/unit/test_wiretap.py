"""The proxy's wiretap: HTTP/1.1 exchanges parsed from arbitrary chunking, unanswered requests kept."""

from __future__ import annotations

import orjson

from exoarmur_cli.faults.wiretap import Wiretap


def request(key: str, body: bytes = b'{"a": 1}', deadline: bytes | None = None) -> bytes:
    extra = b"" if deadline is None else b"\r\nExo-Deadline-Ms: " + deadline
    return (b"POST /v1/effects HTTP/1.1\r\nHost: x\r\nIdempotency-Key: " + key.encode() + extra
            + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def response(status: int, body: bytes = b'{"ok": true}') -> bytes:
    return (f"HTTP/1.1 {status} X\r\ncontent-length: {len(body)}\r\n\r\n").encode() + body


def rows(path) -> list[dict]:
    return [{k: v for k, v in orjson.loads(line).items() if k != "wall_ms"} for line in path.read_bytes().splitlines()]


def test_requests_and_responses_in_any_chunking(tmp_path):
    tap = Wiretap(tmp_path / "wire.jsonl")
    conn = tap.open_conn()
    stream = request("t1:k1", deadline=b"1700000000500") + request("t1:k2", b"x" * 100)
    for i in range(0, len(stream), 7):  # split mid-header and mid-body
        tap.upstream(conn, stream[i:i + 7])
    back = response(200) + response(503)
    tap.downstream(conn, back[:10])
    tap.downstream(conn, back[10:])
    tap.close()
    assert rows(tmp_path / "wire.jsonl") == [
        {"event": "request", "conn": 1, "method": "POST", "path": "/v1/effects", "key": "t1:k1",
         "deadline_ms": 1700000000500},
        {"event": "request", "conn": 1, "method": "POST", "path": "/v1/effects", "key": "t1:k2", "deadline_ms": None},
        {"event": "response", "conn": 1, "status": 200, "key": "t1:k1"},
        {"event": "response", "conn": 1, "status": 503, "key": "t1:k2"},
    ]


def test_a_request_whose_connection_closes_unanswered(tmp_path):
    tap = Wiretap(tmp_path / "wire.jsonl")
    conn = tap.open_conn()
    tap.upstream(conn, request("t1:k1"))
    tap.close_conn(conn)
    tap.close()
    assert rows(tmp_path / "wire.jsonl")[-1] == {"event": "unanswered", "conn": 1, "key": "t1:k1"}


def test_garbage_stops_parsing_that_stream_only(tmp_path):
    tap = Wiretap(tmp_path / "wire.jsonl")
    bad, good = tap.open_conn(), tap.open_conn()
    tap.upstream(bad, b"POST / HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    tap.upstream(good, request("t1:k9"))
    tap.close()
    assert [r["key"] for r in rows(tmp_path / "wire.jsonl") if r["event"] == "request"] == ["t1:k9"]
