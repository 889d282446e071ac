"""The adaptive limiter (issue 4, seed 004): slots by priority, a rate that rises only while
calls keep up with it, and tickets that follow a rate change."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from service.application.pacing import AdaptiveLimiter


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.001)


def test_a_free_slot_goes_to_the_oldest_batch_not_the_first_to_ask() -> None:
    limiter = AdaptiveLimiter(initial_rate=1e6, max_in_flight=1)
    limiter.acquire(priority=0.0)  # the only slot is taken
    order: list[str] = []

    def call(name: str, priority: float) -> None:
        limiter.acquire(priority)
        order.append(name)
        limiter.release(throttled=False)

    younger = threading.Thread(target=call, args=("younger batch", 20.0))
    younger.start()
    wait_until(lambda: len(limiter._slot_queue) == 1, "the younger batch to queue")
    older = threading.Thread(target=call, args=("older batch", 10.0))
    older.start()
    wait_until(lambda: len(limiter._slot_queue) == 2, "the older batch to queue")
    limiter.release(throttled=False)
    younger.join(10)
    older.join(10)
    assert order == ["older batch", "younger batch"]


def test_slots_bound_the_calls_in_flight() -> None:
    limiter = AdaptiveLimiter(initial_rate=1e6, max_in_flight=2)
    limiter.acquire()
    limiter.acquire()
    third = threading.Thread(target=limiter.acquire)
    third.start()
    wait_until(lambda: len(limiter._slot_queue) == 1, "the third call to queue")
    assert third.is_alive()
    limiter.release(throttled=False)
    third.join(10)
    assert not third.is_alive()


def test_the_ramp_doubles_while_calls_keep_up_with_it() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(initial_rate=100, clock=clock)
    for _ in range(6):  # every 60 ms, as many successes as the rate allows
        for _ in range(int(limiter.rate * 0.06)):
            limiter.release(throttled=False)
        clock.now += 0.06
        limiter.release(throttled=False)
    assert limiter.rate >= 100 * 2**5


def test_the_rate_is_not_raised_on_paper_when_our_own_process_holds_calls_back() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(initial_rate=1000, clock=clock)
    for _ in range(20):  # one second in which 20 calls get through, at a rate of 1,000/s
        clock.now += 0.05
        limiter.release(throttled=False)
    assert limiter.rate == 1000
    # The same after the first throttle, when the rate probes upward.
    limiter.release(throttled=True)
    probed = limiter.rate
    for _ in range(20):
        clock.now += 0.1
        limiter.release(throttled=False)
    assert limiter.rate == probed


def test_a_throttle_cuts_the_rate_to_what_got_through() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(initial_rate=1000, clock=clock)
    limiter.ceiling = 1000.0  # past the ramp
    for _ in range(500):  # 1,000/s got through over the last half second
        clock.now += 0.001
        limiter.release(throttled=False)
    before = limiter.rate
    limiter.release(throttled=True)
    limiter.release(throttled=True)  # the same burst of throttles: one cut only
    assert limiter.throttles == 2
    assert limiter.rate == pytest.approx(0.97 * min(before, 1000.0), rel=0.01)


def test_tickets_already_handed_out_follow_a_rate_change() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(initial_rate=10, clock=clock)
    start = clock.now
    # Ten tickets at 10/s: the tenth leaves 0.9 s from now.
    assert limiter._departure(9) == pytest.approx(start + 0.9)
    clock.now += 0.1  # ticket 1 is due now
    limiter._set_rate(100, clock.now)
    # From here tickets leave 10 ms apart, in the same order.
    assert limiter._departure(1) == pytest.approx(clock.now)
    assert limiter._departure(9) == pytest.approx(clock.now + 0.08)


def test_an_idle_spell_earns_at_most_the_catch_up_credit() -> None:
    from service.application.pacing import CATCH_UP_SECONDS

    clock = ManualClock()
    limiter = AdaptiveLimiter(initial_rate=1000, max_in_flight=1000, clock=clock)
    clock.now += 60  # a minute with no calls
    for _ in range(int(CATCH_UP_SECONDS * 1000)):  # these leave at once, without waiting
        limiter.acquire()
    assert limiter._departure(limiter._issued) > clock.now - 0.0011
