"""Pacing calls to a quota we do not know: the scheduler's requests per second."""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable

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
    double while nothing is throttled (0.5%, 1%, 2% ... up to 5% per 100 ms). The rate rises
    only while the calls that get through keep up with it (doubling: half of it; probing:
    80% of it): when our own process is what holds the calls back, a rate raised on paper far
    above the quota would come down only slowly and send a storm of throttled calls.

    Each call takes a numbered ticket; ticket k leaves at `anchor + (k - anchor_ticket) / rate`
    and its thread sleeps until then. No call waits for another thread to hand it its turn:
    under a busy interpreter every hand-over costs a wait for the GIL (up to its 5 ms switch
    interval), and a chain of them paced a whole batch below the quota. A rate change moves
    the anchor to now, so tickets already handed out leave at the new rate; on a rise the
    sleeping threads are woken to see it.

    The `max_in_flight` slots go to waiting callers by priority (lower first, then in order
    of arrival): a batch passes the time it started, so the oldest batch runs at the full rate
    and a younger one fills in around it. Batches sent side by side then finish one after
    another rather than all at once, and a starting batch, whose rows are still being
    prepared, never leaves the quota idle while an older one has calls ready."""

    def __init__(
        self,
        initial_rate: float = 200.0,
        minimum_rate: float = 1.0,
        max_in_flight: int = 64,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock
        self.rate = initial_rate
        self.minimum_rate = minimum_rate
        self.maximum = max_in_flight
        self.ceiling: float | None = None
        self.throttles = 0
        self._lock = threading.Lock()
        self._turns = threading.Condition(self._lock)
        self._free_slots = max_in_flight
        self._slot_queue: list[tuple[float, int, threading.Lock]] = []
        self._arrivals = itertools.count()
        self._successes: deque[float] = deque()
        self._issued = 0  # tickets handed out
        self._anchor = clock()  # when ticket `_anchor_ticket` leaves
        self._anchor_ticket = 0.0
        self._adjusted = self._anchor
        self._cut = 0.0
        self._step = 0.005
        self._first: float | None = None  # when the first call got through

    def _departure(self, ticket: int) -> float:
        return self._anchor + (ticket - self._anchor_ticket) / self.rate

    def _set_rate(self, rate: float, now: float) -> None:
        # Tickets not yet due keep their order and leave at the new spacing from now on.
        self._anchor_ticket += (now - self._anchor) * self.rate
        self._anchor = now
        self.rate = rate

    def _take_slot(self, priority: float) -> None:
        with self._lock:
            if self._free_slots and not self._slot_queue:
                self._free_slots -= 1
                return
            handed = threading.Lock()
            handed.acquire()
            heapq.heappush(self._slot_queue, (priority, next(self._arrivals), handed))
        handed.acquire()  # released by _give_slot: the slot is ours

    def _give_slot(self) -> None:  # with self._lock held
        if self._slot_queue:
            heapq.heappop(self._slot_queue)[2].release()
        else:
            self._free_slots += 1

    def acquire(self, priority: float | None = None) -> None:
        """Wait for a slot and for this call's turn. `priority`: lower goes first (default:
        now, so plain callers are served in order of arrival)."""
        self._take_slot(self.clock() if priority is None else priority)
        with self._turns:
            ticket = self._issued
            self._issued += 1
            now = self.clock()
            if self._departure(ticket) < now - CATCH_UP_SECONDS:
                # Up to CATCH_UP_SECONDS of credit: calls delayed by thread wake-ups or by the
                # interpreter's other threads catch up instead of being lost; an idle spell
                # earns no more than that.
                self._anchor, self._anchor_ticket = now - CATCH_UP_SECONDS, float(ticket)
            while (wait := self._departure(ticket) - now) > 0:
                self._turns.wait(wait)
                now = self.clock()

    def release(self, *, throttled: bool) -> None:
        with self._turns:
            self._give_slot()
            now = self.clock()
            while self._successes and self._successes[0] < now - 0.5:
                self._successes.popleft()
            if throttled:
                self.throttles += 1
                if now - self._cut > 0.1:  # one cut per burst of throttles
                    got_through = 2.0 * len(self._successes)  # per second, last 0.5 s
                    estimate = min(self.rate, max(got_through, 0.9 * self.rate))
                    self.ceiling = max(self.minimum_rate, estimate)
                    self._set_rate(max(self.minimum_rate, estimate * 0.97), now)
                    self._cut = self._adjusted = now
                    self._step = 0.005
                return
            self._successes.append(now)
            if self._first is None:
                self._first = now
            if now - self._adjusted < (0.1 if self.ceiling is not None else 0.05):
                return
            self._adjusted = now
            if self.ceiling is None:
                # While doubling, what got through in the last 100 ms.
                span = max(0.05, min(0.1, now - self._first))
                recent = 0
                for stamp in reversed(self._successes):
                    if stamp < now - span:
                        break
                    recent += 1
                if self.rate <= 2.0 * recent / span:
                    self._set_rate(min(self.rate * 2.0, 1e6), now)
                    self._turns.notify_all()
            elif self.rate <= 1.25 * len(self._successes) / max(0.05, min(0.5, now - self._first)):
                # A small step: threads already asleep see it when they wake.
                self._set_rate(self.rate * (1 + self._step), now)
                self._step = min(0.05, self._step * 2)
