"""Transport limits of the predictor's HTTP server, enforced while the bytes arrive.

KServe serves its FastAPI app with uvicorn, which by itself takes a body of any size, any number and size
of headers, and keeps a connection that sent half a request (or nothing) open for ever. :class:`LimitedProtocol`
is uvicorn's ``HttpToolsProtocol`` (the one KServe's uvicorn picks) with these limits (:mod:`predictor.settings`):

========================  =====================================================================  ======
setting                   refused when                                                           answer
========================  =====================================================================  ======
``max_body_bytes``        the Content-Length is above it (before the body is read), or a         413
                          chunked body grows past it
``max_inflight_body_bytes``  the bodies of the requests in flight, this one's included, would     503
                          be more (before the body is read; one request is always admitted;
                          ``Retry-After``); :mod:`predictor.admission`
``max_header_bytes``      request line and headers together are longer                           431
``max_header_count``      more header fields                                                     431
``read_timeout_seconds``  a request is not received whole this long after its first byte         408
``idle_timeout_seconds``  no request in progress and nothing received this long (uvicorn's       closed
                          keep-alive timeout, here also armed when the connection opens)
========================  =====================================================================  ======

A refusal answers ``{"error": "<message naming the setting>"}`` with ``Connection: close``, counts
``visionops_requests_total{code, reason}`` and logs one line. The server then reads and drops what the
client still sends for up to :data:`LINGER_SECONDS` (a client still writing its body then reads the
answer instead of a connection reset) and closes. The app never sees a refused request; a chunked
body refused midway ends the app's request as a client disconnect.
"""

from __future__ import annotations

import asyncio
import http
import json
import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from predictor import metrics
from predictor.admission import RETRY_AFTER_SECONDS, InflightBudget
from predictor.settings import ServingSettings

LINGER_SECONDS = 2.0
HEADER_OVERHEAD = 4  # ": " and CRLF of each header line

log = logging.getLogger("kserve.visionops.transport")


def refusal_response(status: int, message: str, default_headers: Sequence[tuple[bytes, bytes]] = ()) -> bytes:
    """The raw HTTP/1.1 answer of a refusal: a JSON ``{"error": message}`` body and ``Connection: close`` (and
    ``Retry-After`` on a 503: busy, not broken)."""
    body = json.dumps({"error": message}).encode()
    lines = [f"HTTP/1.1 {status} {http.HTTPStatus(status).phrase}".encode()]
    lines += [name + b": " + value for name, value in default_headers]
    if status == 503:
        lines.append(b"retry-after: " + str(RETRY_AFTER_SECONDS).encode())
    lines += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(), b"connection: close"]
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


class LimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits of the module docstring (one instance per connection)."""

    def __init__(self, *args: Any, limits: ServingSettings, budget: InflightBudget | None = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.budget = budget or InflightBudget(limits.max_inflight_body_bytes or limits.max_body_bytes)
        self._admitted: deque[int] = deque()  # body bytes taken from the budget, per request not yet answered
        self._refused = False
        self._in_head = False  # between a request's first byte and the end of its headers
        self._head_bytes = 0  # request line + headers of the request being received, as parsed
        self._raw_head_bytes = 0  # bytes received while a head is incomplete (catches one endless header line)
        self._header_count = 0
        self._body_bytes = 0
        self._read_timer: asyncio.TimerHandle | None = None

    # -- connection --------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # uvicorn arms its keep-alive (idle) timer only after a response: a connection that never sends a
        # request would be held for ever
        self.timeout_keep_alive_task = self.loop.call_later(self.timeout_keep_alive, self.timeout_keep_alive_handler)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_read_timer()
        while self._admitted:
            self.budget.give_back(self._admitted.popleft())
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # lingering after a refusal: read and drop
        if self._read_timer is None:
            self._read_timer = self.loop.call_later(self.limits.read_timeout_seconds, self._read_timed_out)
        was_in_head = self._in_head
        super().data_received(data)
        if self._in_head and not self._refused:  # a head still incomplete: count what it may hold
            self._raw_head_bytes = self._raw_head_bytes + len(data) if was_in_head else len(data)
            if self._raw_head_bytes > self.limits.max_header_bytes:
                self._refuse_head_size()

    def eof_received(self) -> bool | None:
        if self._refused:
            self.transport.close()  # the client has sent everything: no need to linger
        return super().eof_received()

    # -- parser callbacks --------------------------------------------------------------------------

    def on_message_begin(self) -> None:
        if self._refused:
            return
        self._head_bytes = self._header_count = self._body_bytes = self._raw_head_bytes = 0
        self._in_head = True
        super().on_message_begin()

    def on_url(self, url: bytes) -> None:
        if self._refused:
            return
        self._head_bytes += len(url)
        if self._head_bytes > self.limits.max_header_bytes:
            self._refuse_head_size()
            return
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._refused:
            return
        self._header_count += 1
        self._head_bytes += len(name) + len(value) + HEADER_OVERHEAD
        if self._header_count > self.limits.max_header_count:
            self._refuse(431, "too_many_headers", f"the request has more than {self.limits.max_header_count} "
                                                  f"header fields (max_header_count)")
        elif self._head_bytes > self.limits.max_header_bytes:
            self._refuse_head_size()
        else:
            super().on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        length = next((value for name, value in self.headers if name == b"content-length"), None)
        if length is not None and int(length) > self.limits.max_body_bytes:  # the parser has checked the number
            self._refuse_body_size(f"the request body is {int(length)} bytes")
            return
        chunked = any(name == b"transfer-encoding" and b"chunked" in value.lower() for name, value in self.headers)
        size = self.limits.max_body_bytes if chunked else int(length or 0)  # a chunked body may grow to the limit
        if not self.budget.take(size):
            self._refuse(503, "busy", f"the server holds {self.budget.held} bytes of request bodies in flight; with "
                                      f"this one's {size} that is more than {self.budget.capacity} "
                                      f"(max_inflight_body_bytes): retry in {RETRY_AFTER_SECONDS} s")
            return
        self._admitted.append(size)
        self._in_head = False
        super().on_headers_complete()

    def on_response_complete(self) -> None:
        if self._admitted:  # the oldest request of the connection has its answer: its body may go
            self.budget.give_back(self._admitted.popleft())
        super().on_response_complete()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        self._body_bytes += len(body)
        if self._body_bytes > self.limits.max_body_bytes:
            self._refuse_body_size("the chunked request body grew")
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._cancel_read_timer()
        super().on_message_complete()

    # -- refusals ----------------------------------------------------------------------------------

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to bytes that are not HTTP (its parser's error), counted like the other refusals."""
        metrics.record_request(400, "bad_http")
        super().send_400_response(msg)

    def _cancel_read_timer(self) -> None:
        if self._read_timer is not None:
            self._read_timer.cancel()
            self._read_timer = None

    def _read_timed_out(self) -> None:
        self._read_timer = None
        if self.pipeline:  # a queued request waits for the one before it: not the client's delay
            self._read_timer = self.loop.call_later(self.limits.read_timeout_seconds, self._read_timed_out)
            return
        self._refuse(408, "read_timeout", f"the request was not received whole within "
                                          f"{self.limits.read_timeout_seconds:g} s (read_timeout_seconds)")

    def _refuse_head_size(self) -> None:
        self._refuse(431, "headers_too_large", f"the request line and headers are longer than "
                                               f"{self.limits.max_header_bytes} bytes (max_header_bytes)")

    def _refuse_body_size(self, what: str) -> None:
        self._refuse(413, "body_too_large", f"{what}, over the limit of {self.limits.max_body_bytes} bytes "
                                            f"(max_body_bytes)")

    def _refuse(self, status: int, reason: str, message: str) -> None:
        """Answer ``status`` unless a response has begun, stop parsing, linger, then close."""
        if self._refused or self.transport.is_closing():
            return
        self._refused = True
        self._cancel_read_timer()
        metrics.record_request(status, reason)
        client = "{}:{}".format(*self.client) if self.client else "unknown client"
        log.warning("%s: %d %s: %s", client, status, reason, message)
        cycle = self.cycle  # in a head: the previous request's; in a body: this request's, the app running
        if cycle is not None and (cycle.response_started if not self._in_head else not cycle.response_complete):
            # the app has answered this request already (e.g. a 404 before reading the body), or a pipelined
            # request's refusal would cut into the previous answer: no room for an answer, close
            self.transport.close()
            return
        if cycle is not None and not self._in_head:
            cycle.disconnected = True  # the app's next receive() says the client is gone
            cycle.message_event.set()
        self.flow.resume_reading()
        self.transport.write(refusal_response(status, message, self.server_state.default_headers))
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
