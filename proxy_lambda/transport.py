"""Sending one HTTP request to addresses the guard already checked.

`Sender` is the seam: anything that takes an `OutgoingRequest` and returns a `TargetResponse`
or raises `DeliveryError`. `Urllib3Sender` is the real one. It connects to the request's
addresses only, in order, never resolving the host again, and sends the original name as Host
and as TLS SNI (the certificate is checked against that name). It does not follow redirects:
the handler does, so that every hop goes through the guard. The request's timeout bounds
connecting (over all addresses) and each wait for response bytes. Connections stay open between
warm invocations, keyed by address, port and name.

DeliveryError kinds: connection_refused, connect_timeout, connection_error (connecting failed
otherwise), tls_error, timeout (no response in time), protocol_error (the response was broken).
"""

from __future__ import annotations

import http.client
import time
from typing import NamedTuple, Protocol

import urllib3
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)


class OutgoingRequest(NamedTuple):
    method: str
    scheme: str
    host: str  # the name for SNI and the certificate check
    port: int
    addresses: tuple[str, ...]  # checked by the guard; nothing else may be dialled
    target: str  # path and query
    headers: dict[str, str]  # includes Host
    body: bytes | None
    timeout: float
    body_limit: int
    # The request as `request_bytes` writes it, made ahead (see `head_template`); None: not.
    wire: bytes | None = None


# A request head with some header values left out: its bytes, and between them the names of the
# headers whose values go there (see `head_template`).
HeadTemplate = tuple[bytes | str, ...]


def request_bytes(request: OutgoingRequest) -> bytes:
    """The request as HTTP/1.1 writes it (an asynchronous sender writes these bytes)."""
    head = _head(request)
    return head + request.body if request.body else head


def _head(request: OutgoingRequest) -> bytes:
    parts = [f"{request.method} {request.target} HTTP/1.1\r\n"]
    parts.extend([f"{name}: {value}\r\n" for name, value in request.headers.items()])
    if "accept-encoding" not in map(str.lower, request.headers):
        parts.append("Accept-Encoding: identity\r\n")
    if request.body is not None:
        parts.append(f"Content-Length: {len(request.body)}\r\n")
    elif request.method in ("POST", "PUT", "PATCH"):
        parts.append("Content-Length: 0\r\n")
    parts.append("\r\n")
    return "".join(parts).encode("latin-1")


def head_template(request: OutgoingRequest, names: tuple[str, ...]) -> HeadTemplate | None:
    """`request`'s head with the values of the headers `names` (those it has) left to fill
    in: `fill_head` with the same headers but for those values gives the same bytes as
    `request_bytes`. None when the head cannot be cut up (a marker is already in it)."""
    marked = dict(request.headers)
    markers: list[tuple[str, str]] = []
    for name in names:
        if name in marked:
            marker = f"\x00{len(markers)}\x00"
            marked[name] = marker
            markers.append((marker, name))
    head = _head(request._replace(headers=marked))
    found: list[tuple[int, bytes, str]] = []
    for marker, name in markers:
        encoded = marker.encode("latin-1")
        if head.count(encoded) != 1:
            return None
        found.append((head.index(encoded), encoded, name))
    pieces: list[bytes | str] = []
    at = 0
    for index, encoded, name in sorted(found):
        pieces.extend((head[at:index], name))
        at = index + len(encoded)
    pieces.append(head[at:])
    return tuple(pieces)


def fill_head(template: HeadTemplate, headers: dict[str, str], body: bytes | None) -> bytes:
    """The request's bytes from its head's template, the left-out values taken from
    `headers`, and its body."""
    head = b"".join(
        piece if isinstance(piece, bytes) else headers[piece].encode("latin-1")
        for piece in template
    )
    return head + body if body else head


# The response headers the outcome keeps: what the recorder needs for retries and redirects.
KEPT_RESPONSE_HEADERS = ("content-type", "retry-after", "location")


class TargetResponse(NamedTuple):
    status: int
    headers: dict[str, str]  # KEPT_RESPONSE_HEADERS that were present, lower-case names
    body: bytes  # at most the request's body_limit bytes
    truncated: bool


class DeliveryError(Exception):
    """The request did not produce a complete response; `kind` says how it failed."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class Sender(Protocol):
    def __call__(self, request: OutgoingRequest, /) -> TargetResponse: ...


class Urllib3Sender:
    """The production sender. `ca_certs` replaces the system trust store (tests use it).

    One connection pool per (scheme, address, port, TLS name), the oldest closed beyond
    `max_pools`: a warm Lambda calling the same targets reuses their connections.
    """

    def __init__(self, *, ca_certs: str | None = None, max_pools: int = 16) -> None:
        self._ca_certs = ca_certs
        self._max_pools = max_pools
        self._pools: dict[tuple[str, str, int, str], HTTPConnectionPool] = {}

    def _pool(self, scheme: str, address: str, port: int, host: str) -> HTTPConnectionPool:
        key = (scheme, address, port, host if scheme == "https" else "")
        pool = self._pools.get(key)
        if pool is None:
            if len(self._pools) >= self._max_pools:
                self._pools.pop(next(iter(self._pools))).close()
            if scheme == "https":
                pool = HTTPSConnectionPool(
                    address, port, maxsize=1, server_hostname=host, ca_certs=self._ca_certs
                )
            else:
                pool = HTTPConnectionPool(address, port, maxsize=1)
            self._pools[key] = pool
        return pool

    def __call__(self, request: OutgoingRequest, /) -> TargetResponse:
        failure = DeliveryError("connection_error", f"no address to connect to {request.host}")
        deadline = time.monotonic() + request.timeout
        for address in request.addresses:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            pool = self._pool(request.scheme, address, request.port, request.host)
            try:
                response = pool.urlopen(
                    request.method,
                    request.target,
                    body=request.body,
                    headers=request.headers,
                    retries=False,
                    redirect=False,
                    assert_same_host=False,
                    timeout=urllib3.Timeout(connect=remaining, read=remaining),
                    preload_content=False,
                    release_conn=False,
                )
            except (NewConnectionError, ConnectTimeoutError) as exc:
                # Connecting failed before anything was sent: the next address may answer.
                failure = _connect_failure(exc, request)
                continue
            except ReadTimeoutError:
                raise DeliveryError(
                    "timeout", f"no response within {request.timeout:g} s"
                ) from None
            except SSLError as exc:
                raise DeliveryError("tls_error", f"TLS with {request.host} failed: {exc}") from None
            except ProtocolError as exc:
                raise DeliveryError("protocol_error", _reason(exc)) from None
            except (HTTPError, OSError, http.client.HTTPException) as exc:
                raise DeliveryError("connection_error", _reason(exc)) from None
            return _read(response, request)
        raise failure


def _read(response: urllib3.BaseHTTPResponse, request: OutgoingRequest) -> TargetResponse:
    complete = False
    try:
        body = response.read(request.body_limit + 1)
        truncated = len(body) > request.body_limit
        complete = not truncated
        return TargetResponse(
            status=response.status,
            headers={
                name: value
                for name in KEPT_RESPONSE_HEADERS
                if (value := response.headers.get(name)) is not None
            },
            body=body[: request.body_limit],
            truncated=truncated,
        )
    except ReadTimeoutError:
        raise DeliveryError(
            "timeout", f"the response body did not arrive within {request.timeout:g} s"
        ) from None
    except (HTTPError, OSError, http.client.HTTPException) as exc:
        raise DeliveryError(
            "protocol_error", f"reading the response failed: {_reason(exc)}"
        ) from None
    finally:
        if not complete:
            # The rest of a long body is not worth reading: drop the connection instead.
            response.close()
        response.release_conn()


def _connect_failure(exc: Exception, request: OutgoingRequest) -> DeliveryError:
    where = f"{request.host}:{request.port}"
    if isinstance(exc, NewConnectionError):
        if isinstance(exc.__cause__ or exc.__context__, ConnectionRefusedError) or (
            "refused" in str(exc).lower()
        ):
            return DeliveryError("connection_refused", f"{where} refused the connection")
        return DeliveryError("connection_error", f"could not connect to {where}: {_reason(exc)}")
    return DeliveryError(
        "connect_timeout", f"could not connect to {where} within {request.timeout:g} s"
    )


def _reason(exc: BaseException) -> str:
    # urllib3 messages start with the connection's repr; the last clause is the useful part.
    text = str(exc) or type(exc).__name__
    return text.rpartition(": ")[2] if ": " in text else text
