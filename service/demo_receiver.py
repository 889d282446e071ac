"""`timebridge demo-receiver`: a small HTTP receiver for trying Timebridge on a laptop.

It prints each request it gets, checks its Standard Webhooks signature with the signing secret,
and, when the request carries `Timebridge-Callback-Url`, answers 202 and reports the work done
through the callback a moment later, the way a long-running internal service would.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from proxy_lambda.signing import verify_webhook

Printer = Callable[[str], None]


class DemoReceiver(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(
        self,
        port: int,
        keys: Sequence[bytes],
        *,
        callback_after: float = 1.0,
        fail_every: int = 0,
        echo: Printer = print,
    ) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.keys = tuple(keys)
        self.callback_after = callback_after
        self.fail_every = fail_every
        self.echo = echo
        self.count = 0
        self.lock = threading.Lock()

    def report(self, url: str, status: str, output: dict[str, Any]) -> None:
        body = json.dumps({"status": status, "output": output}).encode()
        request = urllib.request.Request(
            url, data=body, method="PUT", headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                self.echo(f"  callback {status} -> {response.status}")
        except OSError as exc:
            self.echo(f"  callback {status} failed: {exc}")


class _Handler(BaseHTTPRequestHandler):
    server: DemoReceiver
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        server = self.server
        with server.lock:
            server.count += 1
            number = server.count
        if server.keys:
            valid = verify_webhook(server.keys, headers, body, now=time.time())
            signature = "valid" if valid else "INVALID"
        else:
            signature = "not checked (no signing secret)"
        server.echo(
            f"#{number} {self.command} {self.path}  task {headers.get('timebridge-task-id')}  "
            f"scheduled {headers.get('timebridge-scheduled-time')}  "
            f"attempt {headers.get('timebridge-attempt')}  signature {signature}"
        )
        if body:
            server.echo(f"  body {body[:200].decode('utf-8', 'replace')}")
        failing = server.fail_every and number % server.fail_every == 0
        callback = headers.get("timebridge-callback-url")
        status = 503 if failing else 202 if callback else 200
        payload = b'{"accepted":true}'
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)
        if callback and not failing:
            timer = threading.Timer(
                server.callback_after,
                server.report,
                args=(callback, "success", {"received": number}),
            )
            timer.daemon = True
            timer.start()

    do_GET = do_PUT = do_PATCH = do_DELETE = do_POST
