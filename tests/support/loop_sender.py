"""`AsyncSender` behind the synchronous `Sender` seam, so the proxy's tests run against both
senders: each send is awaited on a loop of its own in a background thread."""

from __future__ import annotations

import asyncio
import threading

from proxy_lambda.transport import OutgoingRequest, TargetResponse
from service.adapters.async_http import AsyncSender


class LoopSender:
    def __init__(self, *, ca_certs: str | None = None) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()
        self.sender = AsyncSender(ca_certs=ca_certs)

    def __call__(self, request: OutgoingRequest, /) -> TargetResponse:
        return asyncio.run_coroutine_threadsafe(self.sender.send(request), self._loop).result()

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.sender.close(), self._loop).result()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()
