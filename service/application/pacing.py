"""Pacing calls to a quota we do not know: the scheduler's requests per second."""

from __future__ import annotations

import threading
import time
from collections import deque

# Calls held up this long (a stalled thread, a busy interpreter) may still go out at once: 50
# calls at 1,000/s, a burst a quota's bucket usually allows; beyond it a throttle only costs a
# retry. With 20 ms the batch bench reached 0.89-0.96 of an emulated quota (mean 0.93, 7 runs),
# with 50 ms 0.94-0.98 (mean 0.96, 8 runs).
CATCH_UP_SECONDS = 0.05


class AdaptiveLimiter:
    """Paces calls to the scheduler near its quota without knowing it.

    Calls are spaced at 1/rate (at most `max_in_flight` at once). The rate starts low and
    doubles every 50 ms until the first throttle. On a throttle (counted once per 100 ms)
    the quota is estimated from what got through in the last half second (but never below 90%
    of the current rate: a window where our own process stalled, or the ramp-up, says little
    about the quota, and a rate above the quota loses nothing but a retry while one below it
    loses quota), and the rate drops to 97% of that; it then probes upward with steps that
    double while nothing is throttled (0.5%, 1%, 2% ... up to 5% per 100 ms)."""

    def __init__(
        self, initial_rate: float = 200.0, minimum_rate: float = 1.0, max_in_flight: int = 64
    ) -> None:
        self.rate = initial_rate
        self.minimum_rate = minimum_rate
        self.maximum = max_in_flight
        self.ceiling: float | None = None
        self.throttles = 0
        self._lock = threading.Lock()
        self._gate = threading.Lock()
        self._slots = threading.BoundedSemaphore(max_in_flight)
        self._successes: deque[float] = deque()
        self._next = time.monotonic()
        self._adjusted = self._next
        self._cut = 0.0
        self._step = 0.005

    def acquire(self) -> None:
        self._slots.acquire()
        # One caller at a time waits for the next slot; the others sleep on the gate, so a
        # crowd of waiting threads costs no CPU.
        with self._gate:
            while True:
                with self._lock:
                    now = time.monotonic()
                    if now >= self._next:
                        # Up to CATCH_UP_SECONDS of credit: calls delayed by thread wake-ups
                        # or by the interpreter's other threads catch up instead of being lost.
                        self._next = max(self._next, now - CATCH_UP_SECONDS) + 1.0 / self.rate
                        return
                    wait = self._next - now
                # Slots are not reserved ahead: the waiting call sees a rate change at once.
                time.sleep(min(wait, 0.005))

    def release(self, *, throttled: bool) -> None:
        self._slots.release()
        with self._lock:
            now = time.monotonic()
            while self._successes and self._successes[0] < now - 0.5:
                self._successes.popleft()
            if throttled:
                self.throttles += 1
                if now - self._cut > 0.1:  # one cut per burst of throttles
                    got_through = 2.0 * len(self._successes)  # per second, last 0.5 s
                    estimate = min(self.rate, max(got_through, 0.9 * self.rate))
                    self.ceiling = max(self.minimum_rate, estimate)
                    self.rate = max(self.minimum_rate, estimate * 0.97)
                    self._cut = self._adjusted = now
                    self._step = 0.005
                return
            self._successes.append(now)
            if now - self._adjusted < (0.1 if self.ceiling is not None else 0.05):
                return
            self._adjusted = now
            if self.ceiling is None:
                self.rate = min(self.rate * 2.0, 1e6)
            else:
                self.rate *= 1 + self._step
                self._step = min(0.05, self._step * 2)
