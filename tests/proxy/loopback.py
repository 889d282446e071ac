"""A real HTTP target on 127.0.0.1 for the proxy's tests and benchmark.

Routes: `/status/<code>` answers that status; `/sleep/<seconds>` waits first; `/big/<n>` answers
n bytes; `/redirect?to=<url>&code=<3xx>` redirects; `/loop` redirects to itself; `/reset` aborts
the connection; `/retry-after` answers 503 with Retry-After: 120; anything else answers 200
with a small JSON body. Every request is kept in `received`. Run as
`python -m tests.proxy.loopback` to serve in its own process: it prints the port and serves
until stdin closes.
"""

from __future__ import annotations

import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, NamedTuple
from urllib.parse import parse_qs, urlsplit


class ReceivedRequest(NamedTuple):
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes


class TargetServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog is 5: a burst of concurrent connects (the engine's
    # asyncio sender opens one per call in flight) would overflow it and wait for SYN
    # retransmits, which no real server's backlog (uvicorn 2048, nginx 511) makes happen.
    request_queue_size = 128

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), TargetHandler)
        self.received: list[ReceivedRequest] = []
        self.server_names: list[str | None] = []  # SNI seen by the TLS listener

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that timed out has gone away; the late write failing is expected.
        pass

    def use_tls(self, certfile: str, keyfile: str) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(certfile, keyfile)

        def remember(sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, _: Any) -> None:
            self.server_names.append(name)

        context.sni_callback = remember
        self.socket = context.wrap_socket(self.socket, server_side=True)

    def start(self) -> TargetServer:
        threading.Thread(target=self.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class TargetHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real targets
    # One write per response, sent at once: headers and body in separate small writes would
    # wait on the client's delayed ACK (Nagle), 40 ms a call, which real servers do not do.
    wbufsize = -1
    disable_nagle_algorithm = True
    server: TargetServer

    def do_GET(self) -> None:
        self._serve()

    do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        self.server.received.append(ReceivedRequest(self.command, self.path, headers, body))
        parts = urlsplit(self.path)
        query = {name: values[-1] for name, values in parse_qs(parts.query).items()}
        route, _, argument = parts.path.strip("/").partition("/")
        extra: dict[str, str] = {}
        status, payload = 200, b'{"ok":true}'
        if route == "status":
            status, payload = int(argument), f"status {argument}".encode()
        elif route == "sleep":
            time.sleep(float(argument))
        elif route == "big":
            payload = b"x" * int(argument)
        elif route == "redirect":
            status = int(query.get("code", "302"))
            extra["Location"] = query["to"]
            payload = b""
        elif route == "loop":
            status, payload = 302, b""
            extra["Location"] = "/loop"
        elif route == "reset":
            # Abort the connection: SO_LINGER 0 makes close() send a TCP RST.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True
            self.connection.close()
            return
        elif route == "retry-after":
            status, payload = 503, b"busy"
            extra["Retry-After"] = "120"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for name, value in extra.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)


def main() -> None:
    server = TargetServer().start()
    print(server.port, flush=True)
    sys.stdin.read()  # serve until the parent closes the pipe
    server.stop()


if __name__ == "__main__":
    main()
