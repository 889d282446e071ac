"""The local engine's gate at fire time (issue 9; SEEDS S1-04 concurrency caps, S1-14
TASK_LOCKED): before a firing is delivered, is its task (or its tenant) already running as many
executions as it may?

"Running" is every call this engine has under way and not yet recorded, plus every execution
stored as pending or processing (awaiting its callback). With one engine (always the case on
SQLite) that is exact. Several engines on PostgreSQL each see their own calls under way and
every stored execution, so two engines may start one occurrence each in the same instant.

Verdicts:
- `run`: deliver it;
- `skip`: record the occurrence as `skipped` with error code TASK_LOCKED, target not called
  (overlap `skip` or `allow` with `max_concurrency` reached);
- `wait`: leave it in the outbox and look again shortly: the one occurrence a `buffer_one` task
  may keep waiting, or any firing while its tenant is at the tenant cap.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.handler import MalformedEvent, parse_invocation
from service.adapters.db.models import Execution
from service.application.recorder import Outcome, Recorder
from service.domain import control
from service.domain import executions as states
from service.domain.clock import Clock, utc_now

RUN, SKIP, WAIT = "run", "skip", "wait"


class ConcurrencyGate:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        recorder: Recorder,
        *,
        tenant_cap: int | None = None,
        clock: Clock = utc_now,
    ) -> None:
        self.sessions = sessions
        self.recorder = recorder
        self.tenant_cap = tenant_cap
        self.clock = clock
        self._lock = threading.Lock()
        self._calls: dict[str, tuple[str, str]] = {}  # firing id -> (task id, tenant id)
        self._tasks: Counter[str] = Counter()
        self._tenants: Counter[str] = Counter()
        self._waiting: dict[str, str] = {}  # task id -> the firing a buffer_one task holds back

    def admit(self, firing_id: str, event: Mapping[str, Any]) -> str:
        """Decide one firing; a `run` counts as under way until `done(firing_id)`."""
        task_id, tenant_id = event.get("task_id"), event.get("tenant_id")
        if not isinstance(task_id, str) or not isinstance(tenant_id, str):
            return RUN  # the proxy reports the malformed event
        overlap = str(event.get("overlap") or control.ALLOW)
        limit_value = event.get("max_concurrency")
        limit = control.concurrency_limit(
            overlap, limit_value if type(limit_value) is int else None
        )
        if limit is None and self.tenant_cap is None:
            return self._start(firing_id, task_id, tenant_id)
        with self._lock:  # one decision at a time, so two firings cannot both take a last slot
            if self.tenant_cap is not None:
                tenant_running = self._tenants[tenant_id] + self._stored(tenant_id=tenant_id)
                if tenant_running >= self.tenant_cap:
                    return WAIT
            if limit is not None:
                running = self._tasks[task_id] + self._stored(task_id=task_id)
                if running >= limit:
                    if overlap != control.BUFFER_ONE:
                        return SKIP
                    if self._waiting.setdefault(task_id, firing_id) != firing_id:
                        return SKIP  # one occurrence waits already
                    return WAIT
            if self._waiting.get(task_id) == firing_id:
                del self._waiting[task_id]
            return self._start(firing_id, task_id, tenant_id, locked=True)

    def _start(self, firing_id: str, task_id: str, tenant_id: str, *, locked: bool = False) -> str:
        if not locked:
            with self._lock:
                return self._start(firing_id, task_id, tenant_id, locked=True)
        self._calls[firing_id] = (task_id, tenant_id)
        self._tasks[task_id] += 1
        self._tenants[tenant_id] += 1
        return RUN

    @property
    def under_way(self) -> int:
        """Calls this engine has started and not yet seen recorded."""
        with self._lock:
            return len(self._calls)

    def done(self, firing_id: str) -> None:
        """The firing's outcome is recorded (or its delivery failed): no longer under way here."""
        with self._lock:
            owner = self._calls.pop(firing_id, None)
            if owner is None:
                return
            self._tasks[owner[0]] -= 1
            self._tenants[owner[1]] -= 1
            for counter, key in ((self._tasks, owner[0]), (self._tenants, owner[1])):
                if counter[key] <= 0:
                    del counter[key]

    def _stored(self, *, task_id: str | None = None, tenant_id: str | None = None) -> int:
        query = (
            select(func.count()).select_from(Execution).where(Execution.status.in_(states.RUNNING))
        )
        if task_id is not None:
            query = query.where(Execution.task_id == task_id)
        if tenant_id is not None:
            query = query.where(Execution.tenant_id == tenant_id)
        with self.sessions() as session:
            return int(session.scalar(query) or 0)

    def record_skip(self, event: Mapping[str, Any]) -> None:
        """Record the occurrence as skipped with TASK_LOCKED (idempotent per occurrence key)."""
        try:
            invocation = parse_invocation(dict(event))
        except MalformedEvent:
            return
        now: datetime = self.clock()
        self.recorder.record_outcome(
            Outcome(
                task_id=invocation.task_id,
                tenant_id=invocation.tenant_id,
                scheduled_time=states.parse_utc(invocation.scheduled_time.replace("Z", "+00:00")),
                attempt=invocation.attempt,
                status=states.SKIPPED,
                started_at=now,
                error_kind=control.TASK_LOCKED,
                error="the task was still running its previous execution (overlap policy)",
                schedule_arn=invocation.schedule_arn,
                delivery_attempt=invocation.delivery_attempt,
            )
        )
