"""The embedded local engine: fires the `local` backend's schedules with EventBridge Scheduler's
semantics, in the API process (`make run`) or on its own (`timebridge engine`).

Two steps, both driven by the database, so a restart (or a `kill -9`) loses nothing:

1. Claim: schedules whose `next_fire_at` has come are moved to their following fire time, and
   each occurrence taken off becomes a row in the `local_firings` outbox, in one transaction.
   The flexible window is drawn here (the row's `due_at`). After downtime, occurrences within
   the grace window are still fired, once each; older ones are reported as missed (an alert),
   not fired. A one-time schedule with ActionAfterCompletion=DELETE is deleted once taken.
2. Dispatch: due outbox rows are leased and handed to a worker pool that fills in the context
   attributes, runs the proxy handler and the recorder (the same code as on AWS), and deletes
   the row. A crash after the call but before the delete redelivers the same occurrence with
   the same `webhook-id`, which is what EventBridge's at-least-once delivery allows.

With `LocalDelivery` (the app's and `timebridge engine`'s set-up) the calls are made from one
asyncio loop instead of a thread each (`LocalDelivery.call_async`: the proxy's own steps, so the
guard, signatures and timeouts are the same), at most `workers` at once, and outcomes are
recorded in batches by one thread. With a `lookahead`, schedules due within it are claimed and
their rows leased that much early, and each call waits in memory for its due time: a burst of
occurrences due in one second costs no database work at that second but the sends and the
recording. What does not depend on the time of the call is worked out as the rows are leased
(`_call_for`: the event, and the proxy's plan for it); the call, its fire-time checks, timestamp
and signature happen at the due time. `_event` is the one place a leased firing becomes the
event to send.

On PostgreSQL several engines share the work: claims and leases take rows with
`FOR UPDATE SKIP LOCKED`. On SQLite one engine per database file holds an exclusive file lock;
another one refuses to start.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import queue
import random
import threading
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import LocalFiring, LocalSchedule
from service.application.recorder import MalformedRecord, outcome_from_record
from service.domain.clock import Clock, utc_now
from service.domain.executions import format_scheduled_time
from service.domain.provisioning import task_id_for
from service.domain.schedules import AwsExpression, RateExpression, parse_aws_expression
from service.domain.schedules.evaluate import fire_times, rate_fire_times
from service.domain.tasks import fill_context

logger = logging.getLogger("timebridge.engine")

MAX_CATCH_UP_STEPS = 1000  # occurrences walked one by one before jumping over a long gap
# How early the app's engine claims and leases what is due (calls still wait for their time):
# enough to claim a burst of 10,000 occurrences before their second comes.
ENGINE_LOOKAHEAD = timedelta(seconds=10)
# Seconds recording may wait while a burst is being sent. A thread busy recording would hold
# the interpreter for whole switch intervals between the loop's socket calls.
RECORDING_HELD_BACK = 30.0
# Firings due together are checked against the outbox (withdrawn?) this many at a time, so the
# first calls of a burst start after one small query rather than one for the whole burst.
WITHDRAWAL_CHECK_CHUNK = 256
WITHDRAWAL_CHECKS_AHEAD = 4  # chunks being checked at once (on the loop's executor threads)


class Deliverer(Protocol):
    def deliver(self, event: dict[str, Any]) -> Any: ...


class MissedSink(Protocol):
    def record_missed(
        self, task_id: str, first: datetime, last: datetime, count: int, *, complete: bool
    ) -> None: ...


class _Call:
    """A leased firing waiting on the sending loop, with what could be worked out before its
    due time: the event to send (None: made at call time, where a failure is handled) and
    the delivery's plan for it (see proxy_lambda.handler.plan_delivery). `leased_with` is how
    many rows its lease took under the same token."""

    __slots__ = ("event", "firing", "leased_with", "plan")

    def __init__(
        self, firing: LocalFiring, event: dict[str, Any] | None, plan: Any, leased_with: int
    ) -> None:
        self.firing = firing
        self.event = event
        self.plan = plan
        self.leased_with = leased_with


class EngineLocked(RuntimeError):
    """Another engine already fires this SQLite database."""


@dataclass
class EngineStats:
    claimed: int = 0
    fired: int = 0
    missed: int = 0
    delivered: int = 0
    failed_deliveries: int = 0
    withdrawn: int = 0  # claimed early, then its schedule changed: not sent
    lapsed: int = 0  # waited for a slot past its lease: left to its next lease


@functools.lru_cache(maxsize=4096)
def _parsed(expression: str) -> AwsExpression:
    return parse_aws_expression(expression)


def following_fire(row: LocalSchedule, after: datetime) -> datetime | None:
    """The schedule's next fire strictly after `after` (its previous fire, or a point in a gap).
    A rate() keeps its phase: it counts from its start date, or from its current fire."""
    parsed = _parsed(row.expression)
    if isinstance(parsed, RateExpression):
        anchor = row.start_at or row.next_fire_at or after
        upcoming = rate_fire_times(
            parsed.interval, after=after, count=1, start=anchor, end=row.end_at
        )
    else:
        upcoming = fire_times(
            parsed,
            row.expression_timezone,
            after=after,
            count=1,
            start=row.start_at,
            end=row.end_at,
        )
    return upcoming[0] if upcoming else None


class LocalEngine:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        delivery: Deliverer,
        *,
        clock: Clock = utc_now,
        missed: MissedSink | None = None,
        grace: timedelta = timedelta(minutes=5),
        workers: int = 32,
        batch: int = 500,
        max_wait: float = 1.0,
        lease: timedelta = timedelta(seconds=150),
        rng: random.Random | None = None,
        lock_path: Path | None = None,
        lookahead: timedelta = timedelta(0),
        max_outstanding: int = 10_000,
    ) -> None:
        self.sessions = sessions
        self.delivery = delivery
        self.clock = clock
        self.missed = missed
        self.grace = grace
        self.workers = workers
        self.batch = batch
        self.max_wait = max_wait
        # Longer than a default delivery (30 s timeout, redirects). A delivery that outlives
        # it may be made again by another engine: the same occurrence, which receivers and the
        # recorder already treat as a duplicate.
        self.lease = lease
        self.rng = rng or random.Random()
        self.lock_path = lock_path
        # Claim and lease this much early (asynchronous delivery only; each call still waits
        # for its due time). A schedule changed meanwhile withdraws its early claims (see
        # LocalSchedulerBackend), and only rows still in the outbox are sent.
        self.lookahead = lookahead
        # Leased and not yet recorded, at most (asynchronous delivery): bounds memory.
        self.max_outstanding = max_outstanding
        self.stats = EngineStats()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._slots = threading.BoundedSemaphore(workers)
        self._in_flight = 0
        self._in_flight_lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        # Outcomes to record (a SimpleQueue: a put costs the sending loop less than a Queue's).
        self._records: queue.SimpleQueue[tuple[LocalFiring, dict[str, Any]] | None] | None = None
        self._recording: threading.Thread | None = None
        self.recorder: Any = None
        # Issue 9: decides at fire time whether a firing runs, is skipped (TASK_LOCKED) or
        # waits (service.application.control.ConcurrencyGate); None admits everything.
        self.gate: Any = None
        # Issue 9: reads a task's dependency gate (DEPENDENCY_FAILED or None) at fire time.
        self.dependency_gate: Callable[[str], str | None] | None = None
        self._send_loop: asyncio.AbstractEventLoop | None = None
        self._sending: threading.Thread | None = None
        self._waiting: set[asyncio.Task[None]] = set()
        # Firings waiting on the sending loop for their time, by due instant (10 ms steps):
        # one timer per instant hands them out in priority order.
        self._due: dict[datetime, list[_Call]] = {}
        self._due_timers: dict[datetime, asyncio.TimerHandle] = {}
        self._sender: Any = None
        # Calls due and waiting for one of the `workers` senders, in the order they are made.
        self._ready: deque[_Call] = deque()
        self._senders: set[asyncio.Task[None]] = set()
        self._unchecked = 0  # due, handed out, and not yet checked against the outbox
        bind = sessions.kw["bind"]
        self._postgres = bind.dialect.name == "postgresql"

    # --- life cycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread. Raises EngineLocked when another engine holds the
        SQLite database."""
        self._acquire_lock()
        if self._lock_file is not None:
            self._release_leases()
        if hasattr(self.delivery, "call_async") and hasattr(self.delivery, "recorder"):
            self._start_sending()
        else:
            self._pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="tb-fire")
        if hasattr(self.delivery, "call") and hasattr(self.delivery, "recorder"):
            self.recorder = self.delivery.recorder
            self._records = queue.SimpleQueue()
            self._recording = threading.Thread(
                target=self._record_loop, name="tb-record", daemon=True
            )
            self._recording.start()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="tb-engine", daemon=True)
        self._thread.start()
        logger.info("local engine started (%d workers)", self.workers)

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._stop_sending(timeout)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=False)
            self._pool = None
        if self._records is not None and self._recording is not None:
            self._records.put(None)
            self._recording.join(timeout)
            self._records = None
        self._release_lock()

    def wake(self) -> None:
        """Look again now (a schedule was created or changed)."""
        self._wake.set()

    def run_forever(self) -> None:
        """`timebridge engine`: run in this thread until interrupted."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(1.0)
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def _acquire_lock(self) -> None:
        if self.lock_path is None:
            return
        import fcntl

        self.lock_path.parent.mkdir(parents=True, exist_ok=True)
        handle = self.lock_path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise EngineLocked(
                f"another engine fires this database (lock {self.lock_path} is held)"
            ) from None
        self._lock_file = handle

    def _release_leases(self) -> None:
        """Holding the only lock on this database, no other engine is delivering: leases left
        behind were a dead process's, and their rows are due again at once."""
        with self.sessions() as session:
            session.execute(
                update(LocalFiring)
                .where(LocalFiring.lease_until.is_not(None))
                .values(lease_until=None, lease_token=None)
            )
            session.commit()

    def _release_lock(self) -> None:
        if self._lock_file is not None:
            self._lock_file.close()  # closing drops the flock
            self._lock_file = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.claim_due()
                self.dispatch_due()
                # Every worker busy: what is due waits for one to be released (which wakes
                # this loop), instead of spinning on the database meanwhile.
                busy = self._in_flight >= self._capacity()
                wait = self.max_wait if busy else self._seconds_to_next()
            except Exception:
                logger.exception("engine pass failed; trying again shortly")
                wait = self.max_wait
            if wait > 0:
                self._wake.wait(wait)
            self._wake.clear()

    def _seconds_to_next(self) -> float:
        now = self.clock() + self._lead()
        with self.sessions() as session:
            next_schedule = session.scalar(
                select(func.min(LocalSchedule.next_fire_at)).where(LocalSchedule.enabled)
            )
            # Rows being delivered count from when their lease runs out, not from their due
            # time (which has passed): else the loop would spin while they are in flight.
            next_firing = session.scalar(
                select(func.min(LocalFiring.due_at)).where(LocalFiring.lease_until.is_(None))
            )
            next_expiry = session.scalar(select(func.min(LocalFiring.lease_until)))
        soonest = [t for t in (next_schedule, next_firing, next_expiry) if t is not None]
        if not soonest:
            return self.max_wait
        return max(0.0, min(self.max_wait, (min(soonest) - now).total_seconds()))

    def _lead(self) -> timedelta:
        """How early rows are claimed and leased: only when calls can wait for their time."""
        return self.lookahead if self._send_loop is not None else timedelta(0)

    def _capacity(self) -> int:
        """Firings leased and not yet recorded, at most."""
        return (
            max(self.workers, self.max_outstanding) if self._send_loop is not None else self.workers
        )

    # --- step 1: claim -------------------------------------------------------------------------

    def claim_due(self) -> int:
        """Take every occurrence that has come off its schedule into the outbox."""
        total = 0
        while not self._stop.is_set():
            taken = self._claim_batch(self.clock(), self._lead())
            total += taken
            if taken < self.batch:
                break
        return total

    def _claim_batch(self, now: datetime, lead: timedelta = timedelta(0)) -> int:
        query = (
            select(LocalSchedule)
            .where(LocalSchedule.enabled, LocalSchedule.next_fire_at <= now + lead)
            .order_by(LocalSchedule.next_fire_at, LocalSchedule.priority.desc())
            .limit(self.batch)
        )
        if self._postgres:
            query = query.with_for_update(skip_locked=True)
        missed_reports: list[tuple[str, datetime, datetime, int, bool]] = []
        with self.sessions() as session:
            rows = list(session.scalars(query))
            firings: list[dict[str, Any]] = []
            for row in rows:
                report = self._take(session, row, now, lead, firings)
                if report is not None:
                    missed_reports.append(report)
            if firings:
                session.execute(insert(LocalFiring), firings)
            try:
                session.commit()
            except IntegrityError:
                # Another engine took the same occurrence first (possible only without row
                # locks): its claim stands, and ours is dropped whole.
                session.rollback()
                return 0
        self.stats.claimed += len(rows)
        for task_id, first, last, count, complete in missed_reports:
            self._report_missed(task_id, first, last, count, complete)
        return len(rows)

    def _take(
        self,
        session: Session,
        row: LocalSchedule,
        now: datetime,
        lead: timedelta,
        firings: list[dict[str, Any]],
    ) -> tuple[str, datetime, datetime, int, bool] | None:
        """Move one schedule past `now`, writing an outbox row per occurrence to fire.

        The move is a compare-and-set on the fire time this engine read: if another engine
        moved the schedule first (possible on SQLite, where reads take no row lock), this one
        fires nothing, so no occurrence is taken twice."""
        read = row.next_fire_at
        assert read is not None
        horizon = now - self.grace
        instant: datetime | None = read
        taken: list[datetime] = []
        missed_first: datetime | None = None
        missed_last: datetime | None = None
        missed_count = 0
        steps = 0
        while instant is not None and instant <= now + lead:
            if instant >= horizon:
                taken.append(instant)
            else:
                missed_first = missed_first or instant
                missed_last = instant
                missed_count += 1
            steps += 1
            if instant < horizon and steps >= MAX_CATCH_UP_STEPS:
                # A long gap: jump to the first occurrence inside the grace window.
                instant = following_fire(row, horizon - timedelta(microseconds=1))
                missed_count = -1  # not counted to the end
                continue
            instant = following_fire(row, instant)
        if instant is None and row.delete_after_completion:
            moved = session.connection().execute(
                _REMOVE_IF_UNMOVED, {"b_name": row.name, "b_read": read}
            )
        else:
            moved = session.connection().execute(
                _MOVE_IF_UNMOVED,
                {"b_name": row.name, "b_read": read, "b_next": instant, "b_now": now},
            )
        if getattr(moved, "rowcount", 0) != 1:
            return None  # another engine took these occurrences
        for occurrence in taken:
            firings.append(self._firing(row, occurrence, now))
        self.stats.missed += max(missed_count, 0)
        owner = task_id_for(row.name)
        if missed_first is None or missed_last is None or owner is None:
            return None
        return owner, missed_first, missed_last, missed_count, missed_count >= 0

    def _firing(self, row: LocalSchedule, instant: datetime, now: datetime) -> dict[str, Any]:
        """The outbox row of one occurrence taken off `row` (inserted with the claim)."""
        window = row.flexible_window_minutes or 0
        jitter = timedelta(seconds=self.rng.uniform(0, window * 60)) if window else timedelta()
        self.stats.fired += 1
        return {
            "id": str(uuid.uuid4()),
            "schedule_name": row.name,
            "schedule_arn": row.arn,
            "scheduled_time": instant,
            "due_at": instant + jitter,
            "input": row.input,
            "deliveries": 0,
            "lease_until": None,
            "lease_token": None,
            "created_at": now,
            "priority": row.priority,
        }

    def _report_missed(
        self, task_id: str, first: datetime, last: datetime, count: int, complete: bool
    ) -> None:
        logger.warning(
            "task %s: %s occurrences from %s to %s were missed while no engine ran",
            task_id,
            count if complete else "many",
            format_scheduled_time(first),
            format_scheduled_time(last),
        )
        if self.missed is not None:
            try:
                self.missed.record_missed(task_id, first, last, count, complete=complete)
            except Exception:
                logger.exception("recording missed occurrences of task %s failed", task_id)

    # --- step 2: dispatch ----------------------------------------------------------------------

    def dispatch_due(self) -> int:
        """Lease due outbox rows (as many as there are free workers) and deliver them."""
        started = 0
        while not self._stop.is_set():
            free = self._capacity() - self._in_flight
            if free <= 0:
                break
            wanted = min(free, self.batch)
            leased = self._lease(self.clock(), wanted, self._lead())
            if self._send_loop is None:
                for firing in leased:
                    self._submit(firing)
            elif leased:
                self._submit_async(leased)
            started += len(leased)
            if len(leased) < wanted:
                break
        return started

    def _lease(
        self, now: datetime, limit: int, lead: timedelta = timedelta(0)
    ) -> list[LocalFiring]:
        """Take up to `limit` due rows. The lease is a compare-and-set with a fresh token, so
        two engines can never both hold a row (PostgreSQL also skips rows another engine is
        leasing right now instead of waiting for them)."""
        free = or_(LocalFiring.lease_until.is_(None), LocalFiring.lease_until < now)
        candidates = (
            select(LocalFiring.id)
            .where(LocalFiring.due_at <= now + lead, free)
            .order_by(LocalFiring.due_at, LocalFiring.priority.desc())
            .limit(limit)
        )
        if self._postgres:
            candidates = candidates.with_for_update(skip_locked=True)
        token = str(uuid.uuid4())
        with self.sessions() as session:
            ids = list(session.scalars(candidates))
            if not ids:
                return []
            session.execute(
                update(LocalFiring)
                .where(LocalFiring.id.in_(ids), free)
                .values(
                    lease_until=now + self.lease,
                    lease_token=token,
                    deliveries=LocalFiring.deliveries + 1,
                )
                .execution_options(synchronize_session=False)
            )
            session.commit()
            return list(
                session.scalars(
                    select(LocalFiring)
                    .where(LocalFiring.lease_token == token)
                    .order_by(LocalFiring.due_at, LocalFiring.priority.desc())
                )
            )

    def _submit_async(self, firings: list[LocalFiring]) -> None:
        """Hand leased firings to the sending loop (one wake-up of the loop for them all)."""
        loop = self._send_loop
        assert loop is not None
        with self._in_flight_lock:
            self._in_flight += len(firings)
        leased_with = Counter(firing.lease_token for firing in firings)
        calls = [self._call_for(firing, leased_with[firing.lease_token]) for firing in firings]
        loop.call_soon_threadsafe(self._spawn_all, calls)

    def _submit(self, firing: LocalFiring) -> None:
        with self._in_flight_lock:
            self._in_flight += 1
        if self._pool is None:  # driven by hand (tests, `run_once`): deliver inline
            self._deliver(firing)
            return
        self._pool.submit(self._deliver, firing)

    def _prepare(self, firing: LocalFiring) -> dict[str, Any]:
        """A leased firing made into the event to send, with its fire-time dependency check
        (the asynchronous path does the same in two steps, the database read off its loop)."""
        event = self._event(firing)
        if self._needs_dependencies(event):
            self._gate_dependencies(event)
        return event

    def _event(self, firing: LocalFiring) -> dict[str, Any]:
        event: dict[str, Any] = json.loads(
            fill_context(
                firing.input,
                schedule_arn=firing.schedule_arn,
                scheduled_time=format_scheduled_time(firing.scheduled_time),
                execution_id=firing.id,
                attempt_number=firing.deliveries,
            )
        )
        return event

    def _needs_dependencies(self, event: dict[str, Any]) -> bool:
        return bool(event.get("dependent")) and self.dependency_gate is not None

    def _gate_dependencies(self, event: dict[str, Any]) -> None:
        """Exact locally: the dependencies' latest executions are read as the firing leaves."""
        assert self.dependency_gate is not None
        event.pop("gate", None)
        gate = self.dependency_gate(str(event.get("task_id")))
        if gate is not None:
            event["gate"] = gate

    def _deliver(self, firing: LocalFiring) -> None:
        batching = self._records is not None
        try:
            event = self._prepare(firing)
            if self.gate is not None and not self._admitted(firing, event):
                return  # skipped and recorded, or back in the outbox to wait
            if batching:
                # The call here; recording (and clearing the outbox row) in batches by the
                # recording thread, one transaction for many deliveries.
                outcome = self.delivery.call(event)  # type: ignore[attr-defined]
                assert self._records is not None
                self._records.put((firing, outcome))
                return  # released once recorded
            self.delivery.deliver(event)
        except Exception:
            # The lease runs out and the row is delivered again, with the same occurrence.
            self.stats.failed_deliveries += 1
            logger.exception("delivery of %s failed; it will be retried", firing.id)
        else:
            self._clear([firing])
            self.stats.delivered += 1
        if self.gate is not None:
            self.gate.done(firing.id)
        self._release(1)

    def _admitted(self, firing: LocalFiring, event: dict[str, Any]) -> bool:
        """The gate's verdict (issue 9). A skipped occurrence is recorded and leaves the outbox;
        a waiting one stays there, due again in a second. Releases the worker unless admitted;
        a failure to record the verdict is logged (the row stays leased and comes back when the
        lease runs out), never raised, so the worker is released exactly once."""
        verdict = self.gate.admit(firing.id, event)
        if verdict == "run":
            return True
        try:
            if verdict == "skip":
                self.gate.record_skip(event)
                self._clear([firing])
            else:
                with self.sessions() as session:
                    session.execute(
                        update(LocalFiring)
                        .where(LocalFiring.id == firing.id)
                        .values(due_at=self.clock() + timedelta(seconds=1), lease_until=None)
                    )
                    session.commit()
        except Exception:
            logger.exception(
                "the %s verdict for %s was not stored; it comes back", verdict, firing.id
            )
        finally:
            self._release(1)
        return False

    # --- asynchronous sending ------------------------------------------------------------------

    def _start_sending(self) -> None:
        """One thread running an asyncio loop that makes the calls, `workers` at a time."""
        from service.adapters.async_http import AsyncSender

        loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._send_loop = loop

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._sender = AsyncSender()
            # The loop's executor (withdrawal checks, name lookups) with a thread started now,
            # not at the first due instant.
            loop.run_in_executor(None, time.sleep, 0)
            ready.set()
            loop.run_forever()

        self._sending = threading.Thread(target=run, name="tb-send", daemon=True)
        self._sending.start()
        ready.wait()

    def _stop_sending(self, timeout: float) -> None:
        """Calls under way finish; firings still waiting for their time are let go (their
        rows stay leased, and are delivered after the lease, or at the next start on SQLite)."""
        loop, self._send_loop = self._send_loop, None
        if loop is None or self._sending is None:
            return

        async def wind_down() -> None:
            for timer in self._due_timers.values():
                timer.cancel()
            self._due_timers.clear()
            for group in self._due.values():
                self._release(len(group))
            self._due.clear()
            self._release(len(self._ready))  # the senders stop after the call they are making
            self._ready.clear()
            for waiting in list(self._waiting):
                waiting.cancel()
            current = asyncio.current_task()
            running = [t for t in asyncio.all_tasks() if t is not current]
            if running:
                await asyncio.wait(running, timeout=timeout)
            await self._sender.close()

        asyncio.run_coroutine_threadsafe(wind_down(), loop).result(timeout + 5)
        loop.call_soon_threadsafe(loop.stop)
        self._sending.join(timeout)
        loop.close()
        self._sending = None

    def _call_for(self, firing: LocalFiring, leased_with: int) -> _Call:
        """What can be made of a leased firing before its due time (off the sending loop)."""
        try:
            event: dict[str, Any] | None = self._event(firing)
        except Exception:
            # Made again, and its failure handled, at call time.
            return _Call(firing, None, None, leased_with)
        plan = None
        planner = getattr(self.delivery, "plan", None)
        if planner is not None and event is not None:
            try:
                plan = planner(event)
            except Exception:
                logger.exception(
                    "planning the call of %s failed; it is made at call time", firing.id
                )
        return _Call(firing, event, plan, leased_with)

    def _spawn_all(self, calls: list[_Call]) -> None:
        """Park leased firings until their due instants (rounded up to 10 ms, so firings due
        together share one timer and one check)."""
        loop = asyncio.get_running_loop()
        for call in calls:
            due = _due_step(call.firing.due_at)
            group = self._due.get(due)
            if group is None:
                group = self._due[due] = []
                delay = max(0.0, (due - self.clock()).total_seconds())
                self._due_timers[due] = loop.call_later(delay, self._hand_out, due)
            group.append(call)

    def _hand_out(self, due: datetime) -> None:
        """The firings due at one instant go to the senders, higher priority first (lease
        order otherwise; calls already waiting for a sender go first)."""
        self._due_timers.pop(due, None)
        group = sorted(self._due.pop(due, []), key=lambda c: -(c.firing.priority or 0))
        task = asyncio.get_running_loop().create_task(self._start_group(group))
        self._waiting.add(task)
        task.add_done_callback(self._waiting.discard)

    async def _start_group(self, group: list[_Call]) -> None:
        """Claimed early, a firing may since have been withdrawn: its schedule was updated,
        paused or deleted (the local backend then removes the outbox rows of occurrences not
        yet due, and an update claims them again). Only rows still in the outbox are sent.

        First one query counts the rows each lease token still holds: a lease whose rows
        are all there (the usual case) needs no other check. The rest are checked row by row,
        a chunk at a time, a few chunks ahead of the senders; each chunk's calls start as
        soon as it is checked."""
        loop = asyncio.get_running_loop()
        self._unchecked += len(group)
        expected = {call.firing.lease_token: call.leased_with for call in group}
        try:
            held = await loop.run_in_executor(None, self._rows_per_lease, list(expected))
        except BaseException as exc:
            self._let_go_unchecked(len(group), exc)
            return
        intact = {token for token, count in expected.items() if held.get(token) == count}
        unsure = [call for call in group if call.firing.lease_token not in intact]
        if len(unsure) < len(group):
            self._unchecked -= len(group) - len(unsure)
            self._ready.extend(call for call in group if call.firing.lease_token in intact)
            self._start_senders(loop)
        chunks = deque(
            unsure[start : start + WITHDRAWAL_CHECK_CHUNK]
            for start in range(0, len(unsure), WITHDRAWAL_CHECK_CHUNK)
        )
        checking: deque[tuple[list[_Call], asyncio.Future[set[str]]]] = deque()
        while chunks or checking:
            while chunks and len(checking) < WITHDRAWAL_CHECKS_AHEAD:
                chunk = chunks.popleft()
                ids = [call.firing.id for call in chunk]
                checking.append((chunk, loop.run_in_executor(None, self._still_queued, ids)))
            chunk, check = checking[0]
            try:
                kept = await check
            except BaseException as exc:
                for _, other in checking:
                    other.cancel()
                left = sum(len(c) for c, _ in checking) + sum(len(c) for c in chunks)
                self._let_go_unchecked(left, exc)
                return
            checking.popleft()
            self._unchecked -= len(chunk)
            for call in chunk:
                if call.firing.id not in kept:
                    self.stats.withdrawn += 1
                    self._release(1)
                    continue
                self._ready.append(call)
            self._start_senders(loop)

    def _let_go_unchecked(self, count: int, exc: BaseException) -> None:
        """The check of `count` due firings failed: they stay leased in the outbox and are
        sent once their lease runs out. Re-raises a cancellation (the engine stops)."""
        self._unchecked -= count
        self._release(count)
        if not isinstance(exc, Exception):
            raise exc
        logger.error("checking %d firings failed; they will be retried", count, exc_info=exc)

    def _start_senders(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._ready and len(self._senders) < self.workers:
            self._senders.add(loop.create_task(self._sender_task()))

    def _rows_per_lease(self, tokens: list[str | None]) -> dict[str | None, int]:
        with self.sessions() as session:
            rows = session.execute(
                select(LocalFiring.lease_token, func.count())
                .where(LocalFiring.lease_token.in_([t for t in tokens if t is not None]))
                .group_by(LocalFiring.lease_token)
            )
            return {token: count for token, count in rows}

    def _backlog(self) -> int:
        """Calls that are due and wait for a sender (read from other threads too)."""
        return len(self._ready) + self._unchecked

    def _still_queued(self, ids: list[str]) -> set[str]:
        with self.sessions() as session:
            return set(session.scalars(select(LocalFiring.id).where(LocalFiring.id.in_(ids))))

    async def _sender_task(self) -> None:
        """One of the `workers` senders: makes the waiting calls, one at a time, in order.
        It leaves the set of senders as it finds nothing more to do (in the same step, so a
        call queued just after is never left without a sender)."""
        try:
            while self._ready:
                await self._send(self._ready.popleft())
        finally:
            self._senders.discard(asyncio.current_task())

    async def _send(self, call: _Call) -> None:
        """Call the firing's target (after the fire-time checks), hand the outcome to the
        recording thread. A failure leaves the row leased: delivered again once the lease
        runs out."""
        firing = call.firing
        try:
            if self._lease_lapsed(firing):
                self._release(1)
                return
            event = call.event if call.event is not None else self._event(firing)
            if self._needs_dependencies(event):  # a database read: off the loop
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(None, self._gate_dependencies, event)
            if self.gate is not None and not await self._admitted_async(firing, event):
                return  # skipped and recorded, or back in the outbox to wait
            outcome = await self.delivery.call_async(  # type: ignore[attr-defined]
                event, self._sender, call.plan
            )
        except asyncio.CancelledError:
            self._gate_done(firing)
            self._release(1)
            raise
        except Exception:
            self.stats.failed_deliveries += 1
            logger.exception("delivery of %s failed; it will be retried", firing.id)
            self._gate_done(firing)
            self._release(1)
            return
        assert self._records is not None
        self._records.put((firing, outcome))  # released once recorded

    async def _admitted_async(self, firing: LocalFiring, event: dict[str, Any]) -> bool:
        """The gate's verdict off the loop when it may read or write the database (a limit
        or a tenant cap applies); the common case (no limit) is decided in place."""
        limited = event.get("overlap") not in (None, "allow") or event.get("max_concurrency")
        if not limited and self.gate.tenant_cap is None:
            return self._admitted(firing, event)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, self._admitted, firing, event)

    def _lease_lapsed(self, firing: LocalFiring) -> bool:
        """A firing that waited for a slot past its lease is not sent: the row may be leased
        again (by this engine or another) and is sent once, by that lease."""
        if firing.lease_until is None or self.clock() < firing.lease_until:
            return False
        self.stats.lapsed += 1
        logger.warning("firing %s waited past its lease; it is sent by its next lease", firing.id)
        return True

    def _gate_done(self, firing: LocalFiring) -> None:
        if self.gate is not None:
            self.gate.done(firing.id)

    def _release(self, count: int) -> None:
        with self._in_flight_lock:
            self._in_flight -= count
        self._wake.set()

    def _clear(self, firings: list[LocalFiring], session: Session | None = None) -> None:
        """Remove delivered rows from the outbox."""
        statement = delete(LocalFiring).where(LocalFiring.id.in_([f.id for f in firings]))
        if session is not None:
            session.execute(statement)
            return
        with self.sessions() as own:
            own.execute(statement)
            own.commit()

    def _record_loop(self) -> None:
        """Record delivered outcomes in batches: one transaction per batch for the executions
        and the outbox rows they clear, instead of two per delivery."""
        assert self._records is not None
        while True:
            first = self._records.get()
            if first is None:
                return
            batch = [first]
            # While calls wait for a free slot (a burst), recording waits (bounded in time
            # and count): the sends get the interpreter, and bigger batches cost less per outcome.
            # Until recorded, an outcome's outbox row stays: a crash meanwhile redelivers it.
            held = time.monotonic() + RECORDING_HELD_BACK
            while (
                self._backlog() > self.workers
                and time.monotonic() < held
                and self._records.qsize() < self.max_outstanding
                and not self._stop.is_set()
            ):
                time.sleep(0.05)
            pressed = self._backlog() > 0 or self._records.qsize() > self.batch
            deadline = time.monotonic() + 0.02
            limit = self.batch * 4 if pressed else self.batch
            while len(batch) < limit:
                try:
                    item = self._records.get(timeout=max(0.0, deadline - time.monotonic()))
                except queue.Empty:
                    break
                if item is None:
                    self._records.put(None)  # stop after this batch
                    break
                batch.append(item)
            self._record_batch(batch)

    def _record_batch(self, batch: list[tuple[LocalFiring, dict[str, Any]]]) -> None:
        try:
            try:
                self._record_together(batch)
            except MalformedRecord:
                for item in batch:  # find the bad one; the others are recorded on their own
                    self._record_together([item])
            self.stats.delivered += len(batch)
        except Exception:
            # Left leased: delivered again when the lease runs out (same occurrences).
            self.stats.failed_deliveries += len(batch)
            logger.exception("recording %d outcomes failed; they will be redelivered", len(batch))
        finally:
            if self.gate is not None:
                for firing, _ in batch:
                    self.gate.done(firing.id)
            self._release(len(batch))

    def _record_together(self, batch: list[tuple[LocalFiring, dict[str, Any]]]) -> None:
        firings = [firing for firing, _ in batch]
        outcomes = []
        for firing, record in batch:
            try:
                outcomes.append(outcome_from_record(record))
            except MalformedRecord as exc:
                logger.error("outcome of %s not recorded: %s", firing.id, exc)
        try:
            self.recorder.record_outcomes(
                outcomes, also=lambda session: self._clear(firings, session)
            )
        except MalformedRecord as exc:
            if len(batch) > 1:
                raise
            logger.error("outcome of %s not recorded: %s", firings[0].id, exc)
            self._clear(firings)  # nothing to record it against: locally there is no DLQ

    # --- driving by hand -----------------------------------------------------------------------

    def run_once(self) -> EngineStats:
        """One claim and one dispatch pass, delivering inline (tests and tools)."""
        self.claim_due()
        while self.dispatch_due():
            pass
        return self.stats


# The claim's compare-and-set, one row at a time (each row's own count tells whether another
# engine moved it first). Built once: a statement made per row costs more than running it.
_UNMOVED = (LocalSchedule.name == bindparam("b_name")) & (
    LocalSchedule.next_fire_at == bindparam("b_read")
)
_MOVE_IF_UNMOVED = (
    update(LocalSchedule)
    .where(_UNMOVED)
    .values(next_fire_at=bindparam("b_next"), last_fired_at=bindparam("b_now"))
)
_REMOVE_IF_UNMOVED = delete(LocalSchedule).where(_UNMOVED)


def _due_step(when: datetime) -> datetime:
    """`when` rounded up to the next 10 ms."""
    step = 10_000
    extra = when.microsecond % step
    return when + timedelta(microseconds=step - extra) if extra else when


def sqlite_lock_path(database_url: str) -> Path | None:
    """The lock file beside a SQLite database file (None for PostgreSQL or in-memory)."""
    if not database_url.startswith("sqlite") or "///" not in database_url:
        return None
    database = database_url.split("///", 1)[1]
    if not database or database == ":memory:":
        return None
    return Path(database + ".engine-lock")
