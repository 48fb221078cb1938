"""HTTP POST on the live server's one port, beside websockets' GET and WebSocket handshake.

websockets (13 and later) parses only requests without a body, so a POST such as
WebRTC's ``POST /offer`` never reaches ``process_request``. :func:`post_connection`
makes the connection class that ``serve(create_connection=...)`` takes: it reads
a connection's first bytes, and when the request is a POST to one of ``routes``
it reads the body (``Content-Length``, at most :data:`MAX_POST_BYTES`), awaits
the route and writes its answer, then closes; every other request goes to
websockets unchanged. One request per POST connection (``Connection: close``); like a
WebSocket handshake, it must be answered within websockets' ``open_timeout`` (10 s),
after which websockets drops the connection.
"""
from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from http import HTTPStatus

log = logging.getLogger(__name__)

#: Largest POST body read (bytes); an SDP offer is a few kB.
MAX_POST_BYTES = 1 << 16
#: Longest HTTP head read before the request is refused (bytes).
MAX_HEAD_BYTES = 1 << 14

#: A route: the request body -> (status, content type, body).
Route = Callable[[bytes], Awaitable[tuple[int, str, bytes]]]


def post_connection(routes: Mapping[str, Route]):
    """A websockets connection class (a ``ServerConnection``) that also answers POST
    requests to ``routes``."""
    from websockets.asyncio.server import ServerConnection

    class PostConnection(ServerConnection):
        _sniffing = True
        _head = b""

        def data_received(self, data: bytes) -> None:
            if not self._sniffing:
                super().data_received(data)
                return
            self._head += data
            if not self._head.startswith(b"POST "[:len(self._head)]):
                self._sniffing = False                  # GET or anything else: websockets' own
                data, self._head = self._head, b""
                super().data_received(data)
            elif b"\r\n\r\n" in self._head or len(self._head) > MAX_HEAD_BYTES:
                self._sniffing = False
                self.transport.pause_reading()
                self._post = asyncio.get_running_loop().create_task(_answer(self, routes))

    return PostConnection


async def _answer(connection, routes: Mapping[str, Route]) -> None:
    """Read the POST body, run its route, write the answer and close."""
    transport = connection.transport
    try:
        status, kind, body = await _route(connection, routes)
    except Exception as exc:  # noqa: BLE001 - one failed request, never the server
        log.exception("POST failed")
        status, kind, body = 500, "text/plain; charset=utf-8", f"the request failed: {exc}\n".encode()
    reason = HTTPStatus(status).phrase
    head = (f"HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n"
            "Cache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
    if not transport.is_closing():
        transport.write(head + body)
        transport.close()


async def _route(connection, routes: Mapping[str, Route]) -> tuple[int, str, bytes]:
    text = "text/plain; charset=utf-8"
    head, _, body = connection._head.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(head) > MAX_HEAD_BYTES or len(parts) != 3:
        return 400, text, b"a malformed request head\n"
    path = parts[1].split("?", 1)[0]
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    route = routes.get(path)
    if route is None:
        return 404, text, f"no POST {path} here: POST {', '.join(routes)}\n".encode()
    try:
        length = int(headers.get("content-length", ""))
    except ValueError:
        return 411, text, b"send a Content-Length header\n"
    if not 0 <= length <= MAX_POST_BYTES:
        return 413, text, f"a body of {length} bytes: at most {MAX_POST_BYTES}\n".encode()
    body = await _read(connection, body, length)
    return await route(body)


async def _read(connection, body: bytes, length: int) -> bytes:
    """The rest of the body: the bytes after the head, then what arrives until ``length``."""
    if len(body) >= length:
        return body[:length]
    got = asyncio.get_running_loop().create_future()
    chunks = [body]

    def more(data: bytes) -> None:
        chunks.append(data)
        if sum(map(len, chunks)) >= length and not got.done():
            got.set_result(None)

    connection.data_received = more                     # this connection is never a WebSocket now
    connection.transport.resume_reading()
    await asyncio.wait_for(got, 10)
    return b"".join(chunks)[:length]
