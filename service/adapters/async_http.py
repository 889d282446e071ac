"""Sending the proxy's requests from an asyncio loop: the local engine's sender.

The proxy handler stays synchronous and small (standard library + urllib3, see
proxy_lambda.transport); its `delivery_steps` yields each `OutgoingRequest` after the guard has
checked it and the signature is made. `AsyncSender` sends such a request and answers a
`TargetResponse`, or raises the same `DeliveryError` kinds as `Urllib3Sender`, so a burst of
firings needs no thread per call: many requests wait on one loop.

Like `Urllib3Sender` it dials only the request's checked addresses, in order, sends the
original name as Host and as TLS SNI (the certificate is checked against that name), never
follows redirects (the handler does, each hop guarded), bounds connecting by the request's
timeout and each wait for response bytes by it too (one timer, every `SWEEP_SECONDS`, ends the
waits that are overdue), keeps at most `body_limit` bytes of a body
(a longer one is cut and its connection dropped), and keeps connections open between calls,
keyed by scheme, address, port and TLS name. HTTP/1.1 only.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import OrderedDict

from proxy_lambda.transport import (
    KEPT_RESPONSE_HEADERS,
    DeliveryError,
    OutgoingRequest,
    TargetResponse,
    request_bytes,
)

MAX_HEAD_BYTES = 64 * 1024
# How often overdue waits are ended: a timeout takes effect up to this much after its time.
SWEEP_SECONDS = 0.05
BODYLESS_STATUSES = frozenset({204, 304})
_Key = tuple[str, str, int, str]


class _Broken(Exception):
    """The response cannot be read (a protocol_error)."""


class _Connection(asyncio.Protocol):
    """One connection to a target: bytes arrive in `buffer`, and a waiting exchange is woken
    when more come or the connection ends. A protocol rather than streams: one future per wait
    and no reader/writer pair, which counts when a burst makes thousands of calls a second."""

    __slots__ = ("_waiter", "buffer", "busy", "deadline", "ended", "error", "transport")

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.ended = False  # the peer closed its side, or the connection is gone
        self.error: Exception | None = None  # why the connection was lost, if not cleanly
        self.busy = False  # an exchange is under way
        self.deadline = 0.0  # loop time by which the awaited bytes must have come
        self._waiter: asyncio.Future[bool] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self.busy:  # nothing was asked: a broken or hostile server
            self.ended = True
            assert self.transport is not None
            self.transport.close()
            return
        self.buffer += data
        self._wake()

    def eof_received(self) -> bool:
        self.ended = True
        self._wake()
        return False  # close our side too

    def connection_lost(self, exc: Exception | None) -> None:
        self.ended = True
        self.error = exc
        self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(True)

    async def more(self, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Wait until more bytes arrive or the connection ends; False once `deadline` (loop
        time) has passed (the sender's sweep says so, see `AsyncSender._sweep`)."""
        waiter: asyncio.Future[bool] = loop.create_future()
        self._waiter = waiter
        self.deadline = deadline
        try:
            return await waiter
        finally:
            self._waiter = None

    def expire(self, now: float) -> None:
        """End the wait in progress when its deadline has passed."""
        waiter = self._waiter
        if waiter is not None and now >= self.deadline and not waiter.done():
            self._waiter = None
            waiter.set_result(False)

    def usable(self) -> bool:
        return (
            not self.ended
            and not self.buffer  # nothing may arrive unasked
            and self.transport is not None
            and not self.transport.is_closing()
        )

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


class AsyncSender:
    """`await sender.send(request)`; `await sender.close()` when done. Use it on one loop.

    `ca_certs` replaces the system trust store (tests use it). At most `max_idle` open
    connections are kept per origin and `max_origins` origins (the oldest dropped beyond)."""

    def __init__(
        self, *, ca_certs: str | None = None, max_idle: int = 256, max_origins: int = 64
    ) -> None:
        self._ca_certs = ca_certs
        self._tls: ssl.SSLContext | None = None
        self._max_idle = max_idle
        self._max_origins = max_origins
        self._idle: OrderedDict[_Key, list[_Connection]] = OrderedDict()
        # Exchanges under way, and the one timer that ends the overdue ones: a timer per
        # wait (made and cancelled thousands of times a second in a burst) costs more.
        self._busy: set[_Connection] = set()
        self._sweeping: asyncio.TimerHandle | None = None

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        now = loop.time()
        for connection in list(self._busy):
            connection.expire(now)
        self._sweeping = loop.call_later(SWEEP_SECONDS, self._sweep, loop) if self._busy else None

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_certs)
        return self._tls

    async def send(self, request: OutgoingRequest) -> TargetResponse:
        """Send one request; raises DeliveryError (see proxy_lambda.transport)."""
        loop = asyncio.get_running_loop()
        failure: DeliveryError | None = None
        deadline = loop.time() + request.timeout
        for address in request.addresses:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            key = (request.scheme, address, request.port, request.host)
            connection = self._take(key)
            if connection is None:
                try:
                    connection = await self._connect(loop, request, address, remaining)
                except DeliveryError as exc:
                    if exc.kind == "tls_error":
                        raise
                    failure = exc  # nothing was sent: the next address may answer
                    continue
            return await self._exchange(loop, connection, key, request)
        raise failure or DeliveryError(
            "connection_error", f"no address to connect to {request.host}"
        )

    async def close(self) -> None:
        if self._sweeping is not None:
            self._sweeping.cancel()
            self._sweeping = None
        for connections in self._idle.values():
            for connection in connections:
                connection.close()
        self._idle.clear()

    def _take(self, key: _Key) -> _Connection | None:
        connections = self._idle.get(key)
        while connections:
            connection = connections.pop()
            if connection.usable():
                return connection
            connection.close()  # the server closed it while it was idle
        return None

    def _keep(self, key: _Key, connection: _Connection) -> None:
        connections = self._idle.get(key)
        if connections is None:
            if len(self._idle) >= self._max_origins:
                _, dropped = self._idle.popitem(last=False)
                for old in dropped:
                    old.close()
            connections = self._idle[key] = []
        if len(connections) >= self._max_idle:
            connection.close()
            return
        connections.append(connection)

    async def _connect(
        self,
        loop: asyncio.AbstractEventLoop,
        request: OutgoingRequest,
        address: str,
        remaining: float,
    ) -> _Connection:
        where = f"{request.host}:{request.port}"
        tls = request.scheme == "https"
        try:
            _, connection = await asyncio.wait_for(
                loop.create_connection(
                    _Connection,
                    address,
                    request.port,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=request.host if tls else None,
                ),
                remaining,
            )
        except TimeoutError:
            raise DeliveryError(
                "connect_timeout", f"could not connect to {where} within {request.timeout:g} s"
            ) from None
        except ssl.SSLError as exc:
            raise DeliveryError("tls_error", f"TLS with {request.host} failed: {exc}") from None
        except ConnectionRefusedError:
            raise DeliveryError("connection_refused", f"{where} refused the connection") from None
        except OSError as exc:
            raise DeliveryError(
                "connection_error", f"could not connect to {where}: {exc.strerror or exc}"
            ) from None
        return connection

    async def _exchange(
        self,
        loop: asyncio.AbstractEventLoop,
        connection: _Connection,
        key: _Key,
        request: OutgoingRequest,
    ) -> TargetResponse:
        assert connection.transport is not None
        connection.busy = True
        self._busy.add(connection)
        if self._sweeping is None:
            self._sweeping = loop.call_later(SWEEP_SECONDS, self._sweep, loop)
        connection.transport.write(
            request.wire if request.wire is not None else request_bytes(request)
        )
        reader = _ResponseReader(request, request.body_limit)
        deadline = loop.time() + request.timeout
        try:
            while True:
                had_head = reader.head_done
                arrived = connection.buffer or connection.ended
                if arrived and reader.feed(connection.buffer, connection.ended):
                    if reader.until_close and connection.error is not None:
                        raise _Broken(_lost(connection.error))  # reset, not closed
                    break
                if reader.head_done and not had_head:
                    deadline = loop.time() + request.timeout  # the body has its own timeout
                if connection.ended:
                    raise _Broken(_lost(connection.error))
                if not await connection.more(loop, deadline):
                    connection.close()
                    if reader.head_done:
                        message = f"the response body did not arrive within {request.timeout:g} s"
                    else:
                        message = f"no response within {request.timeout:g} s"
                    raise DeliveryError("timeout", message)
        except _Broken as exc:
            connection.close()
            if isinstance(connection.error, ssl.SSLError):
                raise DeliveryError(
                    "tls_error", f"TLS with {request.host} failed: {connection.error}"
                ) from None
            detail = str(exc) if not reader.head_done else f"reading the response failed: {exc}"
            raise DeliveryError("protocol_error", detail) from None
        except DeliveryError:
            connection.close()
            raise
        finally:
            connection.busy = False
            self._busy.discard(connection)
        body = bytes(reader.body)
        truncated = len(body) > request.body_limit
        if reader.complete and reader.keep_alive and not truncated and not connection.buffer:
            self._keep(key, connection)
        else:
            connection.close()  # the rest of a long body is not worth reading
        return TargetResponse(
            status=reader.status,
            headers={
                name: reader.headers[name]
                for name in KEPT_RESPONSE_HEADERS
                if name in reader.headers
            },
            body=body[: request.body_limit],
            truncated=truncated,
        )


def _lost(error: Exception | None) -> str:
    if error is None:
        return "the connection closed before the response was complete"
    return str(error) or type(error).__name__


class _ResponseReader:
    """Reads one response from a connection's buffer as it fills (taking what it uses out of
    it): the head (1xx responses skipped), then the body by Content-Length, chunks, or up to
    the close; at most `limit` + 1 body bytes are kept, and reading stops there."""

    __slots__ = (
        "_bodyless_request",
        "_chunk_state",
        "_left",
        "_limit",
        "_mode",
        "body",
        "complete",
        "head_done",
        "headers",
        "keep_alive",
        "status",
    )

    def __init__(self, request: OutgoingRequest, limit: int) -> None:
        self._bodyless_request = request.method == "HEAD"
        self._limit = limit
        self.head_done = False
        self.status = 0
        self.headers: dict[str, str] = {}
        self.keep_alive = False
        self.body = bytearray()
        self.complete = False  # the whole body was read
        self._mode = ""  # "length", "chunked" or "close"
        self._left = 0  # body bytes still to come ("length"), or of the current chunk
        self._chunk_state = "size"  # "size", "data", "crlf" or "trailers"

    @property
    def until_close(self) -> bool:
        """The body is delimited by the end of the connection."""
        return self._mode == "close"

    def feed(self, buffer: bytearray, ended: bool) -> bool:
        """Take what it can from `buffer`; True once the response is read (or cut)."""
        if not self.head_done and not self._read_head(buffer):
            return False
        if self._mode == "length":
            return self._read_length(buffer)
        if self._mode == "chunked":
            return self._read_chunks(buffer)
        if self._mode == "close":
            self._take_body(buffer, len(buffer))
            if len(self.body) > self._limit:
                return True
            return ended  # the body ends with the connection (never reused)
        self.complete = True  # no body
        return True

    def _read_head(self, buffer: bytearray) -> bool:
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(buffer) > MAX_HEAD_BYTES:
                    raise _Broken("the response head is too long")
                return False
            if end > MAX_HEAD_BYTES:
                raise _Broken("the response head is too long")
            text = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + 4]
            status_line, _, rest = text.partition("\r\n")
            version, _, tail = status_line.partition(" ")
            code = tail[:3]
            if not version.startswith("HTTP/1.") or not (code.isdigit() and code.isascii()):
                raise _Broken(f"not an HTTP/1.x response: {status_line[:64]!r}")
            headers: dict[str, str] = {}
            for line in rest.split("\r\n"):
                if not line:
                    continue
                name, colon, value = line.partition(":")
                if not colon:
                    raise _Broken("a response header has no colon")
                name = name.strip().lower()
                value = value.strip()
                headers[name] = f"{headers[name]}, {value}" if name in headers else value
            status = int(code)
            if 100 <= status < 200:
                continue  # informational: the real response follows
            connection = headers.get("connection", "").lower()
            self.keep_alive = "close" not in connection and (
                version == "HTTP/1.1" or "keep-alive" in connection
            )
            self.status, self.headers, self.head_done = status, headers, True
            self._choose_body()
            return True

    def _choose_body(self) -> None:
        if self._bodyless_request or self.status in BODYLESS_STATUSES:
            self._mode = ""
        elif "chunked" in self.headers.get("transfer-encoding", "").lower():
            self._mode = "chunked"
        elif (length_text := self.headers.get("content-length")) is not None:
            try:
                length = int(length_text)
            except ValueError:
                raise _Broken(f"invalid Content-Length {length_text[:32]!r}") from None
            if length < 0:
                raise _Broken("negative Content-Length")
            self._mode, self._left = "length", length
        else:
            self._mode = "close"

    def _take_body(self, buffer: bytearray, count: int) -> int:
        """Move up to `count` bytes from `buffer` to the body, never past `limit` + 1."""
        room = self._limit + 1 - len(self.body)
        taken = min(count, len(buffer), max(room, 0))
        self.body += buffer[:taken]
        del buffer[:taken]
        return taken

    def _read_length(self, buffer: bytearray) -> bool:
        self._left -= self._take_body(buffer, self._left)
        if self._left == 0:
            self.complete = True
            return True
        return len(self.body) > self._limit  # cut: the rest is not read

    def _read_chunks(self, buffer: bytearray) -> bool:
        while True:
            if self._chunk_state in ("size", "trailers"):
                end = buffer.find(b"\r\n")
                if end < 0:
                    if len(buffer) > MAX_HEAD_BYTES:
                        raise _Broken("a chunk header is too long")
                    return False
                line = bytes(buffer[:end])
                del buffer[: end + 2]
                if self._chunk_state == "trailers":
                    if not line:
                        self.complete = True
                        return True
                    continue
                try:
                    size = int(line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise _Broken("invalid chunk size") from None
                if size == 0:
                    self._chunk_state = "trailers"
                    continue
                self._left, self._chunk_state = size, "data"
            elif self._chunk_state == "data":
                self._left -= self._take_body(buffer, self._left)
                if len(self.body) > self._limit:
                    return True  # cut
                if self._left:
                    return False
                self._chunk_state = "crlf"
            else:  # the CRLF after a chunk's data
                if len(buffer) < 2:
                    return False
                del buffer[:2]
                self._chunk_state = "size"
