"""Sending the proxy's requests from an asyncio loop: the local engine's sender.

The proxy handler stays synchronous and small (standard library + urllib3, see
proxy_lambda.transport); its `delivery_steps` yields each `OutgoingRequest` after the guard has
checked it and the signature is made. `AsyncSender` sends such a request and answers a
`TargetResponse`, or raises the same `DeliveryError` kinds as `Urllib3Sender`, so a burst of
firings needs no thread per call: many requests wait on one loop.

Like `Urllib3Sender` it dials only the request's checked addresses, in order, sends the
original name as Host and as TLS SNI (the certificate is checked against that name), never
follows redirects (the handler does, each hop guarded), bounds connecting by the request's
timeout and each wait for response bytes by it too, keeps at most `body_limit` bytes of a body
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
)

MAX_HEAD_BYTES = 64 * 1024
BODYLESS_STATUSES = frozenset({204, 304})
_Key = tuple[str, str, int, str]


class _Connection:
    __slots__ = ("reader", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    def usable(self) -> bool:
        return not self.writer.is_closing() and not self.reader.at_eof()

    def close(self) -> None:
        self.writer.close()


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

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = ssl.create_default_context(cafile=self._ca_certs)
        return self._tls

    async def send(self, request: OutgoingRequest) -> TargetResponse:
        """Send one request; raises DeliveryError (see proxy_lambda.transport)."""
        loop = asyncio.get_running_loop()
        failure = DeliveryError("connection_error", f"no address to connect to {request.host}")
        deadline = loop.time() + request.timeout
        for address in request.addresses:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            key = (request.scheme, address, request.port, request.host)
            connection = self._take(key)
            if connection is None:
                try:
                    connection = await self._connect(request, address, remaining)
                except DeliveryError as exc:
                    if exc.kind == "tls_error":
                        raise
                    failure = exc  # nothing was sent: the next address may answer
                    continue
            return await self._exchange(connection, key, request)
        raise failure

    async def close(self) -> None:
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
        self, request: OutgoingRequest, address: str, remaining: float
    ) -> _Connection:
        where = f"{request.host}:{request.port}"
        tls = request.scheme == "https"
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(
                    address,
                    request.port,
                    ssl=self._tls_context() if tls else None,
                    server_hostname=request.host if tls else None,
                    limit=MAX_HEAD_BYTES,
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
        return _Connection(reader, writer)

    async def _exchange(
        self, connection: _Connection, key: _Key, request: OutgoingRequest
    ) -> TargetResponse:
        connection.writer.write(_request_bytes(request))
        try:
            async with asyncio.timeout(request.timeout):
                await connection.writer.drain()
                status, headers, keep_alive = await _read_head(connection.reader)
        except TimeoutError:
            connection.close()
            raise DeliveryError("timeout", f"no response within {request.timeout:g} s") from None
        except ssl.SSLError as exc:
            connection.close()
            raise DeliveryError("tls_error", f"TLS with {request.host} failed: {exc}") from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
            connection.close()
            raise DeliveryError("protocol_error", _broken(exc)) from None
        except DeliveryError:
            connection.close()
            raise
        try:
            async with asyncio.timeout(request.timeout):
                body, complete = await _read_body(
                    connection.reader, request, status, headers, request.body_limit
                )
        except TimeoutError:
            connection.close()
            raise DeliveryError(
                "timeout", f"the response body did not arrive within {request.timeout:g} s"
            ) from None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            connection.close()
            raise DeliveryError(
                "protocol_error", f"reading the response failed: {_broken(exc)}"
            ) from None
        truncated = len(body) > request.body_limit
        if complete and keep_alive and not truncated:
            self._keep(key, connection)
        else:
            connection.close()  # the rest of a long body is not worth reading
        return TargetResponse(
            status=status,
            headers={name: headers[name] for name in KEPT_RESPONSE_HEADERS if name in headers},
            body=body[: request.body_limit],
            truncated=truncated,
        )


def _request_bytes(request: OutgoingRequest) -> bytes:
    lines = [f"{request.method} {request.target} HTTP/1.1"]
    names = set()
    for name, value in request.headers.items():
        lines.append(f"{name}: {value}")
        names.add(name.lower())
    if "accept-encoding" not in names:
        lines.append("Accept-Encoding: identity")
    if request.body is not None:
        lines.append(f"Content-Length: {len(request.body)}")
    elif request.method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: 0")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head + request.body if request.body else head


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bool]:
    """Status, headers (lower-case names; repeated ones joined) and whether the connection
    may be used again. Informational (1xx) responses are skipped."""
    while True:
        raw = await reader.readuntil(b"\r\n\r\n")
        text = raw.decode("latin-1")
        status_line, _, rest = text.partition("\r\n")
        version, _, tail = status_line.partition(" ")
        code = tail[:3]
        if not version.startswith("HTTP/1.") or not (code.isdigit() and code.isascii()):
            raise DeliveryError("protocol_error", f"not an HTTP/1.x response: {status_line[:64]!r}")
        headers: dict[str, str] = {}
        for line in rest.split("\r\n"):
            if not line:
                continue
            name, colon, value = line.partition(":")
            if not colon:
                raise DeliveryError("protocol_error", "a response header has no colon")
            name = name.strip().lower()
            value = value.strip()
            headers[name] = f"{headers[name]}, {value}" if name in headers else value
        status = int(code)
        if 100 <= status < 200:
            continue
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (
            version == "HTTP/1.1" or "keep-alive" in connection
        )
        return status, headers, keep_alive


async def _read_body(
    reader: asyncio.StreamReader,
    request: OutgoingRequest,
    status: int,
    headers: dict[str, str],
    limit: int,
) -> tuple[bytes, bool]:
    """Up to `limit` + 1 bytes of the body, and whether the whole body was read."""
    if request.method == "HEAD" or status in BODYLESS_STATUSES:
        return b"", True
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return await _read_chunked(reader, limit)
    length_text = headers.get("content-length")
    if length_text is not None:
        length = int(length_text)  # ValueError: a broken response
        if length < 0:
            raise ValueError("negative Content-Length")
        if length > limit:
            return await reader.readexactly(limit + 1), False
        return await reader.readexactly(length), True
    body = bytearray()
    while len(body) <= limit:
        piece = await reader.read(limit + 1 - len(body))
        if not piece:
            return bytes(body), False  # delimited by the close: never reused
        body += piece
    return bytes(body), False


async def _read_chunked(reader: asyncio.StreamReader, limit: int) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        size_line = await reader.readuntil(b"\r\n")
        size = int(size_line.split(b";", 1)[0].strip(), 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":
                pass  # trailers
            return bytes(body), True
        if len(body) + size > limit:
            body += await reader.readexactly(limit + 1 - len(body))
            return bytes(body), False
        body += await reader.readexactly(size)
        await reader.readexactly(2)


def _broken(exc: BaseException) -> str:
    if isinstance(exc, asyncio.IncompleteReadError):
        return "the connection closed before the response was complete"
    if isinstance(exc, asyncio.LimitOverrunError):
        return "the response head is too long"
    return str(exc) or type(exc).__name__
