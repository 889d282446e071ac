"""Per-tenant limits: a request rate (token bucket, per process) and a cap on active tasks.

The rate limit lives in each process's memory: with N API processes (or warm Lambda
containers) a tenant may reach N times the rate. It guards the service from one noisy tenant;
the HTTP API's own throttling (infra) bounds the whole deployment.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable

from service.domain.errors import RateLimited
from service.metrics import Metrics


class TenantRateLimiter:
    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics
        self.rate = per_minute / 60.0
        self.burst = float(per_minute)
        self.clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # tenant -> (tokens, stamp)
        self._lock = threading.Lock()

    def check(self, tenant_id: str) -> None:
        """Take one request from the tenant's bucket; RateLimited (with Retry-After) if empty."""
        now = self.clock()
        with self._lock:
            tokens, stamp = self._buckets.get(tenant_id, (self.burst, now))
            tokens = min(self.burst, tokens + (now - stamp) * self.rate)
            if tokens < 1.0:
                self._buckets[tenant_id] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                if self.metrics is not None:
                    self.metrics.count("timebridge_rate_limited_total")
                raise RateLimited(
                    f"this tenant is over its limit of {int(self.burst)} requests a minute",
                    retry_after=max(1, wait),
                )
            self._buckets[tenant_id] = (tokens - 1.0, now)
