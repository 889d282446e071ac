"""Task use cases: create, read, list, update, pause, resume, cancel, batch.

The database is the truth and the scheduler backend is made to match it:
- create is two-phase: the row is committed as `provisioning`, the schedule is created with a
  ClientToken, the row becomes `scheduled` with its ARN. A failed backend call removes the row
  again (nothing claims a schedule); a crash in between leaves a row the reconciler finishes.
  With the `local` backend, whose schedules live in this database, the row and the schedule are
  written in one transaction instead: the same outcome with nothing in between.
- update, pause, resume and cancel change the row and the schedule inside one transaction that
  holds the row: a backend failure rolls the row back, and a crash after the backend call but
  before the commit leaves drift that the reconciler repairs toward the row. The row's changes
  are flushed only at commit, after the backend call, so on SQLite the local backend (same file)
  is never blocked by our own write lock.
"""

from __future__ import annotations

import functools
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, case, delete, func, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import AuditEvent, Execution, IdempotencyRecord, Task
from service.adapters.db.session import insert_rows, insert_values
from service.application.pacing import AdaptiveLimiter
from service.application.paging import is_uuid, newest_first
from service.domain import control, targets, triggers
from service.domain import tasks as rules
from service.domain.clock import Clock, utc_now
from service.domain.errors import Conflict, InvalidRequest, InvalidSchedule, NotFound
from service.domain.provisioning import (
    ScheduleDefinition,
    SchedulerBackend,
    ScheduleTarget,
    client_token_for,
    retry_schedule_name,
    schedule_name_for,
)
from service.domain.schedules import CompiledSchedule, compile_schedule
from service.domain.schedules.compiler import NOW_INDEPENDENT_KINDS, ONE_TIME_KINDS
from service.tracing import traced_task_action

_TICK = timedelta(microseconds=1)
VIEW_FIRES = 5  # next fire times a task view shows
CAP_RECOUNT = 10.0  # seconds between counts of a tenant's active tasks
TASK_FIELDS = {
    "name",
    "schedule",
    "target",
    "retry",
    "callback",
    "metadata",
    "depends_on",
    *control.CONTROL_FIELDS,
}

# Provisioning's last step, built once (it runs for every create): the schedule's ARN, and
# `live` as status only if the row is still `provisioning` (the reconciler may have been first).
MARK_PROVISIONED = (
    update(Task)
    .where(Task.id == bindparam("task_id"))
    .values(
        schedule_arn=bindparam("arn"),
        updated_at=bindparam("now"),
        status=case((Task.status == rules.PROVISIONING, bindparam("live")), else_=Task.status),
    )
)


class _RowRefused(Exception):
    """The database refused the new task's rows (its Idempotency-Key taken meanwhile)."""


@dataclass(frozen=True)
class TaskPage:
    items: list[dict[str, Any]]
    next_cursor: str | None


def definition_for(
    task: Task, *, input_text: str | None = None, new_name: bool = False
) -> ScheduleDefinition:
    """The schedule a task row wants, from the row alone (the reconciler compares with it).
    `input_text`: the task's Input as `proxy_input` built it, when the caller has it already;
    `new_name`: see ScheduleDefinition."""
    assert task.aws_expression is not None
    direct: ScheduleTarget | None = None
    if targets.is_direct(task.target):
        # Delivered by the scheduler itself: the Input is the rendered payload.
        direct, input_text = targets.direct_schedule(
            task.target, task_id=task.id, task_name=task.name
        )
    elif input_text is None:
        input_text = proxy_input(task)
    return ScheduleDefinition(
        name=task.schedule_name,
        expression=task.aws_expression,
        expression_timezone=task.expression_timezone,
        input=input_text,
        target=direct,
        # A schedule held by the recorder (the task at its concurrency limit) stays DISABLED.
        enabled=task.enabled and task.held_since is None,
        start=task.start_at if task.mode == "native" else None,
        end=task.end_at if task.mode == "native" else None,
        flexible_window_minutes=task.flexible_window_minutes,
        delete_after_completion=task.kind in ("immediate", "once", "delay"),
        description=f"Timebridge task {task.id} ({task.name})"[:512],
        new_name=new_name,
    )


def proxy_input(task: Task) -> str:
    """The Input of the task's own schedule (not a direct target's): InvalidRequest when too
    large."""
    return input_for(
        task, control=control_of(task), gate=task.dependency_gate, dependent=bool(task.depends_on)
    )


def input_for(
    task: Task, *, attempt: int = 1, scheduled_time: str | None = None, **extra: Any
) -> str:
    """The proxy's Input for one of the task's occurrences (`scheduled_time` pins it for a
    retry or a manual run; `extra`: control, gate, dependent, see rules.schedule_input)."""
    return rules.schedule_input(
        task_id=task.id,
        tenant_id=task.tenant_id,
        target=task.target,
        callback=task.callback,
        attempt=attempt,
        scheduled_time=scheduled_time,
        task_name=task.name,
        timezone=task.timezone,
        **extra,
    )


def control_of(task: Task) -> dict[str, Any]:
    """The task's execution-control fields (issue 9), with defaults for rows made before them."""
    return {
        "overlap": task.overlap or control.ALLOW,
        "max_concurrency": task.max_concurrency,
        "priority": task.priority or 0,
        "window": task.window,
        "outside_window": task.outside_window or control.SKIP,
    }


def _window_compiles(task: Task) -> bool:
    """Whether the task's window is stated exactly by its native cron expression."""
    if task.outside_window == control.DEFER or task.window is None:
        return False
    schedule_json = json.dumps(task.schedule, sort_keys=True, default=str)
    base = _compiled(schedule_json, task.created_at).aws_expression
    if base is None:
        return False
    return control.restrict_cron(base, task.expression_timezone, task.window) is not None


def _compiled(schedule_json: str, created_at: datetime) -> CompiledSchedule:
    """Compiled schedules are immutable: views of the same task reuse one. The service shows
    no warnings but the reason a schedule never fires (see `_validated`), so it skips the
    look-ahead hints. A calendar schedule compiles alike at any instant: one compile serves
    every task that has it, whenever made (its warnings are those of the first)."""
    if _kind_of(schedule_json) in NOW_INDEPENDENT_KINDS:
        return _compiled_calendar(schedule_json, created_at)
    return _compiled_at(schedule_json, created_at)


@functools.lru_cache(maxsize=4096)
def _kind_of(schedule_json: str) -> object:
    schedule = json.loads(schedule_json)
    return schedule.get("kind") if isinstance(schedule, dict) else None


@functools.lru_cache(maxsize=4096)
def _compiled_at(schedule_json: str, created_at: datetime) -> CompiledSchedule:
    return compile_schedule(json.loads(schedule_json), now=created_at, hints=False)


_calendar_lock = threading.Lock()
_calendar: dict[str, CompiledSchedule] = {}


def _compiled_calendar(schedule_json: str, now: datetime) -> CompiledSchedule:
    found = _calendar.get(schedule_json)
    if found is None:
        found = compile_schedule(json.loads(schedule_json), now=now, hints=False)
        with _calendar_lock:
            if len(_calendar) >= 4096:  # kept small like the caches beside it
                _calendar.clear()
            _calendar[schedule_json] = found
    return found


@functools.lru_cache(maxsize=4096)
def _upcoming(
    schedule_json: str, created_at: datetime, now: datetime, count: int
) -> tuple[datetime, ...]:
    """The next `count` fires at or after `now`: a create's check and its view share one."""
    return tuple(_compiled(schedule_json, created_at).next_fire_times(now - _TICK, count))


def _next_fires(schedule_json: str, now: datetime) -> tuple[datetime, ...]:
    """A schedule compiled at `now` fires first at or after `now` here: a batch shares it, and
    the view of the new task (VIEW_FIRES from the same instant) reuses the answer."""
    return _upcoming(schedule_json, now, now, VIEW_FIRES)[:1]


@functools.lru_cache(maxsize=4096)
def _fire_texts(
    schedule_json: str, created_at: datetime, now: datetime, count: int
) -> tuple[str, ...]:
    """The next fires at or after `now`: a batch's views of one schedule share one answer."""
    fires = _upcoming(schedule_json, created_at, now, count)
    return tuple(f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in fires)


def _windowed_fires(task: Task, schedule_json: str, now: datetime, count: int) -> list[str]:
    """The next runs of a task with an execution window: occurrences outside it dropped
    (`skip`) or moved to the window's next opening (`defer`, several merging into one)."""
    compiled = _compiled(schedule_json, task.created_at)
    window = task.window or {}
    runs: list[datetime] = []
    for instant in compiled.next_fire_times(now - _TICK, count * 20):
        if task.outside_window == control.DEFER:
            instant = control.next_opening(window, instant)
        elif not control.in_window(window, instant):
            continue
        if instant not in runs:
            runs.append(instant)
        if len(runs) == count:
            break
    return [f"{t:%Y-%m-%dT%H:%M:%SZ}" for t in sorted(runs)]


def task_view(task: Task, *, now: datetime, count: int = VIEW_FIRES) -> dict[str, Any]:
    """The task as the API returns it: secrets redacted, next fires computed."""
    fires: list[str] = []
    timed = task.kind not in triggers.TRIGGER_KINDS
    if timed and task.status in (rules.SCHEDULED, rules.PROVISIONING) and task.enabled:
        try:
            schedule_json = json.dumps(task.schedule, sort_keys=True)
            if task.window:
                fires = _windowed_fires(task, schedule_json, now, count)
            else:
                fires = list(_fire_texts(schedule_json, task.created_at, now, count))
        except InvalidSchedule:  # pragma: no cover - stored schedules compiled once already
            fires = []
    return {
        "id": task.id,
        "name": task.name,
        "status": task.status,
        "mode": task.mode,
        "schedule": task.schedule,
        "aws_expression": task.aws_expression,
        "timezone": task.timezone,
        "schedule_name": task.schedule_name,
        "schedule_arn": task.schedule_arn,
        "next_fire_times": fires,
        "target": rules.redact_target(task.target),
        "retry": task.retry,
        "callback": task.callback,
        "metadata": task.task_metadata,
        **control_of(task),
        "version": task.version,
        "last_error": task.last_error,
        # Issue 9 part A: dependencies and trigger counts.
        "depends_on": list(task.depends_on or []),
        "dependency_gate": task.dependency_gate,
        "trigger_count": task.trigger_count or 0,
        "last_triggered_at": (
            f"{task.last_triggered_at:%Y-%m-%dT%H:%M:%S.%fZ}" if task.last_triggered_at else None
        ),
        "created_at": f"{task.created_at:%Y-%m-%dT%H:%M:%S.%fZ}",
        "updated_at": f"{task.updated_at:%Y-%m-%dT%H:%M:%S.%fZ}",
    }


class TaskService:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backend: SchedulerBackend,
        *,
        clock: Clock = utc_now,
        max_active_tasks: int | None = None,
        target_policy: targets.TargetPolicy | None = None,
    ) -> None:
        self.sessions = sessions
        self.backend = backend
        # Which AWS resources direct targets may name (region, the scheduler role's reach).
        self.target_policy = target_policy or targets.TargetPolicy()
        self.clock = clock
        self.max_active_tasks = max_active_tasks
        self._active: dict[str, tuple[int, float]] = {}
        self._cap_lock = threading.Lock()
        # The scheduler's quota is per account: every batch shares one adaptive limit.
        self.limiter = AdaptiveLimiter()

    # --- create ------------------------------------------------------------------------------

    @traced_task_action("create")
    def create(
        self,
        tenant_id: str,
        body: Mapping[str, Any],
        *,
        idempotency_key: str | None = None,
        actor: str | None = None,
    ) -> tuple[dict[str, Any], bool]:
        """Create a task and its schedule. Returns (task view, created) where created is False
        when an earlier request with the same Idempotency-Key made it. With `actor`, the audit
        event is written in the same transaction as the row (and removed with it on failure)."""
        now = self.clock()
        task, input_text = self.prepare_task(tenant_id, body, now)
        self.check_capacity(tenant_id)
        request_hash = hash_body(body) if idempotency_key is not None else ""
        timed = task.kind not in triggers.TRIGGER_KINDS
        if timed and getattr(self.backend, "shares_database", False):
            together = self._create_together(
                task, input_text, idempotency_key, request_hash, actor, now
            )
            if together is not None:
                return together
        with self.sessions() as session:
            if idempotency_key is not None:
                earlier = self._replay(session, tenant_id, idempotency_key, request_hash, now)
                if earlier is not None:
                    return earlier, False
            try:
                self._insert_new(session, task, idempotency_key, request_hash, actor, now)
                session.commit()
            except IntegrityError:
                session.rollback()
                if idempotency_key is None:
                    raise
                earlier = self._replay(session, tenant_id, idempotency_key, request_hash, now)
                if earlier is None:
                    raise
                return earlier, False
        if not timed:
            return task_view(task, now=now), True  # nothing to provision: live already
        definition = definition_for(task, input_text=input_text)
        live = rules.SCHEDULED if task.enabled else rules.PAUSED
        try:
            arn = self.provision_schedule(definition, task)
        except Exception:
            self._forget(task.id)
            raise
        now = self.clock()
        with self.sessions() as session:
            # One statement; the reconciler may have finished the row first, so only a row
            # still `provisioning` changes status.
            session.connection().execute(
                MARK_PROVISIONED, {"task_id": task.id, "arn": arn, "now": now, "live": live}
            )
            session.commit()
        task.status, task.schedule_arn, task.updated_at = live, arn, now
        return task_view(task, now=now), True

    def _create_together(
        self,
        task: Task,
        input_text: str | None,
        idempotency_key: str | None,
        request_hash: str,
        actor: str | None,
        now: datetime,
    ) -> tuple[dict[str, Any], bool] | None:
        """With a backend that keeps schedules in this database (`local`), the schedule, the
        row (already live, with its ARN) and the records beside it are one transaction: one
        commit per create, and never a moment where one exists without the other, so there is
        no first phase to undo or to finish. None when a schedule of that name exists already:
        the caller then takes the two-phase path, which adopts it."""
        if idempotency_key is not None:
            with self.sessions() as session:
                earlier = self._replay(session, task.tenant_id, idempotency_key, request_hash, now)
            if earlier is not None:
                return earlier, False
        live = rules.SCHEDULED if task.enabled else rules.PAUSED
        inserted: list[bool] = []

        def insert_task(connection: Connection, arn: str) -> None:
            task.status, task.schedule_arn = live, arn
            inserted.append(True)
            try:
                self._insert_new(connection, task, idempotency_key, request_hash, actor, now)
            except IntegrityError as exc:  # told apart from the backend's own name conflict
                raise _RowRefused from exc

        backend: Any = self.backend  # its create takes `also` (see LocalSchedulerBackend)
        token = client_token_for(task.id, task.version)
        # The task's id is new, and so its schedule's name: no early claims to withdraw.
        definition = definition_for(task, input_text=input_text, new_name=True)
        try:
            backend.create(definition, client_token=token, also=insert_task)
        except Conflict:
            inserted.clear()
        except _RowRefused as refused:
            cause = refused.__cause__
            assert isinstance(cause, IntegrityError)
            if idempotency_key is None:
                raise cause from None
            with self.sessions() as session:  # a concurrent request stored the same key first
                earlier = self._replay(session, task.tenant_id, idempotency_key, request_hash, now)
            if earlier is None:
                raise cause from None
            return earlier, False
        if not inserted:  # the schedule was there already: `also` did not run, or rolled back
            task.status, task.schedule_arn = rules.PROVISIONING, None
            return None
        return task_view(task, now=now), True

    @staticmethod
    def _insert_new(
        session: Session | Connection,
        task: Task,
        idempotency_key: str | None,
        request_hash: str,
        actor: str | None,
        now: datetime,
    ) -> None:
        """The new task's row, with its Idempotency-Key record and audit event when given."""
        if idempotency_key is not None:
            record = {
                "id": str(uuid.uuid4()),
                "tenant_id": task.tenant_id,
                "key": idempotency_key,
                "request_hash": request_hash,
                "task_id": task.id,
                "created_at": now,
            }
            insert_values(session, IdempotencyRecord, record)
        insert_rows(session, [task])
        if actor is not None:
            event = {
                "id": str(uuid.uuid4()),
                "tenant_id": task.tenant_id,
                "actor": actor,
                "action": "task.create",
                "target_kind": "task",
                "target_id": task.id,
                "details": {"name": task.name},
                "created_at": now,
            }
            insert_values(session, AuditEvent, event)

    def provision_schedule(self, definition: ScheduleDefinition, task: Task) -> str:
        try:
            return self.backend.create(
                definition, client_token=client_token_for(task.id, task.version)
            )
        except Conflict:
            # Already there: an earlier attempt (or the reconciler) made it. Adopt it.
            existing = self.backend.get(definition.name)
            if existing is None:
                raise
            if existing.definition != definition:
                return self.backend.update(definition)
            return existing.arn

    def _forget(self, task_id: str) -> None:
        with self.sessions() as session:
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.task_id == task_id))
            session.execute(delete(AuditEvent).where(AuditEvent.target_id == task_id))
            session.execute(delete(Task).where(Task.id == task_id))
            session.commit()

    def _replay(
        self, session: Session, tenant_id: str, key: str, request_hash: str, now: datetime
    ) -> dict[str, Any] | None:
        record = session.scalar(
            select(IdempotencyRecord).where(
                IdempotencyRecord.tenant_id == tenant_id, IdempotencyRecord.key == key
            )
        )
        if record is None:
            return None
        if record.request_hash != request_hash:
            raise Conflict("this Idempotency-Key was used with a different request body")
        task = session.get(Task, record.task_id)
        if task is None:
            return None
        return task_view(task, now=now)

    def check_capacity(self, tenant_id: str, adding: int = 1) -> None:
        """Refuse new tasks past the tenant's cap on active (not ended) tasks."""
        if self.max_active_tasks is None:
            return
        # The count is read at most every CAP_RECOUNT seconds and counted up in between, so the
        # cap costs no query on most creates (it is a soft cap across processes).
        stamp = time.monotonic()
        with self._cap_lock:
            cached = self._active.get(tenant_id)
            if cached is None or stamp - cached[1] > CAP_RECOUNT:
                cached = (self._count_active(tenant_id), stamp)
            active = cached[0]
            if active + adding > self.max_active_tasks:
                raise Conflict(
                    f"this tenant has {active} active tasks; the cap is {self.max_active_tasks}"
                )
            self._active[tenant_id] = (active + adding, cached[1])

    def _count_active(self, tenant_id: str) -> int:
        with self.sessions() as session:
            active = session.scalar(
                select(func.count())
                .select_from(Task)
                .where(Task.tenant_id == tenant_id, Task.status.in_(rules.ACTIVE_STATUSES))
            )
        return int(active or 0)

    def prepare_task(
        self, tenant_id: str, body: Mapping[str, Any], now: datetime
    ) -> tuple[Task, str | None]:
        """A new task row from a create body, checked through (its schedule's Input included),
        not yet stored; InvalidRequest / InvalidSchedule name the field. With it, the Input of
        the task's schedule (None for a direct target): built once here, where its size is
        checked, and handed on to `definition_for`."""
        fields = self._validated(body, now, partial=False)
        task_id = str(uuid.uuid4())
        task = Task(
            id=task_id,
            tenant_id=tenant_id,
            status=rules.PROVISIONING,
            enabled=True,
            version=1,
            schedule_name=schedule_name_for(task_id),
            created_at=now,
            updated_at=now,
        )
        self._apply(task, fields, now)
        rules.check_placeholders(
            task.target, task.callback, event_names=task.kind in triggers.TRIGGER_KINDS
        )
        if task.kind in triggers.TRIGGER_KINDS:
            task.status = rules.SCHEDULED  # an event or after task waits for its trigger
        if task.depends_on or task.kind == triggers.AFTER:
            with self.sessions() as session:
                self._check_links(session, task)
        if targets.is_direct(task.target):
            self._check_direct(task)
            return task, None
        return task, proxy_input(task)

    def _check_direct(self, task: Task) -> None:
        """A direct target must be reachable by the deployment and its Input fit (rendered
        with this task's id and name); InvalidRequest names the field. EventBridge Scheduler
        reports nothing back for a direct delivery, so neither a chained schedule (its next
        occurrence is written when the previous outcome is recorded) nor a window the proxy
        would check at fire time can work: only what a native expression states is accepted."""
        if task.depends_on:
            raise InvalidRequest(
                "depends_on",
                "a direct target is delivered without the proxy, which applies the dependency"
                " gate on AWS (use an http target)",
            )
        if (task.overlap or control.ALLOW) != control.ALLOW or task.max_concurrency is not None:
            raise InvalidRequest(
                "overlap" if task.max_concurrency is None else "max_concurrency",
                "a direct target reports no running executions, so overlap and concurrency"
                " limits cannot apply to it (use an http target)",
            )
        if task.kind in triggers.TRIGGER_KINDS:
            pass  # started by the service itself (run path), not by a schedule
        elif task.mode != "native":
            raise InvalidRequest(
                "schedule",
                "a direct target needs a schedule EventBridge Scheduler can state natively;"
                " this one is chained from outcome to outcome (use an http target)",
            )
        if task.window and not _window_compiles(task):
            raise InvalidRequest(
                "window",
                "a direct target honours only a window compiled into the cron expression"
                " (outside_window skip, whole hours, the schedule's own time zone)",
            )
        targets.check_reach(task.target, self.target_policy)
        targets.direct_schedule(task.target, task_id=task.id, task_name=task.name)

    def _validated(
        self, body: Mapping[str, Any], now: datetime, *, partial: bool
    ) -> dict[str, Any]:
        if not isinstance(body, Mapping):
            raise InvalidRequest("body", "must be a JSON object")
        unknown = set(body) - TASK_FIELDS
        if unknown:
            raise InvalidRequest(sorted(unknown)[0], "is not a task field")
        out: dict[str, Any] = {}
        if "name" in body or not partial:
            name = body.get("name")
            if not isinstance(name, str) or not 1 <= len(name.strip()) <= 255:
                raise InvalidRequest("name", "is required: 1-255 characters")
            out["name"] = name.strip()
        if "depends_on" in body:
            out["depends_on"] = triggers.check_task_ids(
                body.get("depends_on") or [], "depends_on", allow_empty=True
            )
        if "schedule" in body or not partial:
            schedule = body.get("schedule")
            if not isinstance(schedule, Mapping):
                raise InvalidSchedule("schedule", "is required: an object with a kind")
            if schedule.get("kind") in triggers.TRIGGER_KINDS:
                # An event or after trigger: validated here, nothing to compile or provision.
                out["schedule"] = triggers.check_trigger_schedule(schedule)
                out["trigger_schedule"] = True
        if ("schedule" in body or not partial) and "trigger_schedule" not in out:
            schedule = body["schedule"]
            schedule_json = json.dumps(schedule, sort_keys=True, default=str)
            compiled = _compiled(schedule_json, now)
            upcoming = _next_fires(schedule_json, now)
            if not upcoming:
                hinted = compile_schedule(json.loads(schedule_json), now=now)  # every warning
                raise InvalidSchedule(
                    "schedule", "never fires after now; " + "; ".join(hinted.warnings)
                )
            out["schedule"] = dict(schedule)
            out["compiled"] = compiled
            out["next_fire_at"] = upcoming[0]
        if "target" in body or not partial:
            target = body.get("target")
            if not isinstance(target, Mapping):
                raise InvalidRequest("target", "is required: an object with a url")
            out["target"] = rules.normalize_target(target)
        if "retry" in body or not partial:
            retry = body.get("retry")
            if retry is not None and not isinstance(retry, Mapping):
                raise InvalidRequest("retry", "must be an object")
            out["retry"] = rules.normalize_retry(retry)
        if "callback" in body or not partial:
            callback = body.get("callback")
            if callback is not None and not isinstance(callback, Mapping):
                raise InvalidRequest("callback", "must be an object")
            out["callback"] = rules.normalize_callback(callback)
        if "metadata" in body or not partial:
            metadata = body.get("metadata") or {}
            if not isinstance(metadata, Mapping):
                raise InvalidRequest("metadata", "must be an object")
            out["metadata"] = dict(metadata)
        out.update(control.normalize_control(body, partial=partial))
        return out

    def _apply(self, task: Task, fields: Mapping[str, Any], now: datetime) -> None:
        for key in ("name", "target", "retry", "callback"):
            if key in fields:
                setattr(task, key, fields[key])
        if "depends_on" in fields:
            task.depends_on = list(fields["depends_on"]) or None
        if fields.get("trigger_schedule"):
            task.schedule = fields["schedule"]
            task.kind = fields["schedule"]["kind"]
            task.mode = triggers.TRIGGER_MODE
            task.timezone = "UTC"
            task.aws_expression = None
            task.expression_timezone = "UTC"
            task.start_at = task.end_at = task.flexible_window_minutes = None
            task.next_fire_at = None
        if "metadata" in fields:
            task.task_metadata = fields["metadata"]
        for key in control.CONTROL_FIELDS:
            if key in fields:
                setattr(task, key, fields[key])
        compiled: CompiledSchedule | None = fields.get("compiled")
        if compiled is not None:
            task.schedule = fields["schedule"]
            task.kind = compiled.kind
            task.mode = compiled.mode
            task.timezone = compiled.timezone
            task.aws_expression = compiled.aws_expression_after(now - _TICK)
            task.expression_timezone = compiled.expression_timezone
            task.start_at = compiled.start
            task.end_at = compiled.end
            task.flexible_window_minutes = compiled.flexible_window_minutes
            task.next_fire_at = fields["next_fire_at"]
        if compiled is not None or "window" in fields or "outside_window" in fields:
            self._compile_window(task, fields, now)

    @staticmethod
    def _compile_window(task: Task, fields: Mapping[str, Any], now: datetime) -> None:
        """A `skip` window that a native cron() can state exactly (same time zone, whole hours,
        days the expression can restrict) is compiled into it; otherwise the proxy checks each
        occurrence against the window in the Input at fire time (always for `defer`, whose
        occurrences outside must reach the recorder to be deferred)."""
        if task.mode != "native":
            return
        if fields.get("compiled") is None:  # only the window changed: start from the schedule
            schedule_json = json.dumps(task.schedule, sort_keys=True, default=str)
            task.aws_expression = _compiled(schedule_json, task.created_at).aws_expression
        if task.window is None or task.aws_expression is None:
            return
        if task.outside_window == control.DEFER:
            return
        restricted = control.restrict_cron(
            task.aws_expression, task.expression_timezone, task.window
        )
        if restricted is not None:
            task.aws_expression = restricted

    # --- read --------------------------------------------------------------------------------

    def get(self, tenant_id: str, task_id: str) -> dict[str, Any]:
        with self.sessions() as session:
            return task_view(self._owned(session, tenant_id, task_id), now=self.clock())

    def _owned(self, session: Session, tenant_id: str, task_id: str, *, lock: bool = False) -> Task:
        task = session.get(Task, task_id, with_for_update=lock) if is_uuid(task_id) else None
        if task is None or task.tenant_id != tenant_id:
            raise NotFound(f"task {task_id} not found")
        return task

    def list(
        self,
        tenant_id: str,
        *,
        status: str | None = None,
        name: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> TaskPage:
        """Newest first; `cursor` is the opaque value of the previous page's next_cursor."""
        if status is not None and status not in rules.TASK_STATUSES:
            raise InvalidRequest("status", f"must be one of {', '.join(rules.TASK_STATUSES)}")
        query = select(Task).where(Task.tenant_id == tenant_id)
        if status is not None:
            query = query.where(Task.status == status)
        if name is not None:
            query = query.where(Task.name == name)
        now = self.clock()
        rows, next_cursor = newest_first(self.sessions, query, Task, limit=limit, cursor=cursor)
        return TaskPage([task_view(t, now=now) for t in rows], next_cursor)

    # --- change ------------------------------------------------------------------------------

    @traced_task_action("update")
    def update(self, tenant_id: str, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        now = self.clock()
        fields = self._validated(body, now, partial=True)
        with self.sessions() as session:
            task = self._owned(session, tenant_id, task_id, lock=True)
            self._require_live(task, "updated")
            if "target" in fields:
                fields["target"] = rules.keep_redacted_secrets(fields["target"], task.target)
            self._apply(task, fields, now)
            rules.check_placeholders(
                task.target, task.callback, event_names=task.kind in triggers.TRIGGER_KINDS
            )
            if "depends_on" in fields or "schedule" in fields:
                # No flush: on SQLite our write lock would block the local backend's write.
                with session.no_autoflush:
                    self._check_links(session, task)
            if targets.is_direct(task.target):
                self._check_direct(task)
            return self._push_and_commit(session, task, now)

    def _check_links(self, session: Session, task: Task) -> None:
        """Upstream tasks must be the tenant's (404) and form no cycle (422); the dependency
        gate starts from what the dependencies' latest executions say."""
        from service.application.triggers import check_graph, dependency_gate

        if task.depends_on or task.kind == triggers.AFTER:  # only new edges can close a cycle
            check_graph(session, task.tenant_id, task.id, task.schedule, task.depends_on)
        task.dependency_gate = dependency_gate(session, task) if task.depends_on else None

    @traced_task_action("pause")
    def pause(self, tenant_id: str, task_id: str) -> dict[str, Any]:
        return self._set_enabled(tenant_id, task_id, enabled=False)

    @traced_task_action("resume")
    def resume(self, tenant_id: str, task_id: str) -> dict[str, Any]:
        return self._set_enabled(tenant_id, task_id, enabled=True)

    def _set_enabled(self, tenant_id: str, task_id: str, *, enabled: bool) -> dict[str, Any]:
        now = self.clock()
        with self.sessions() as session:
            task = self._owned(session, tenant_id, task_id, lock=True)
            self._require_live(task, "resumed" if enabled else "paused")
            if task.enabled == enabled and task.status != rules.PROVISIONING:
                return task_view(task, now=now)
            task.enabled = enabled
            if task.status != rules.PROVISIONING:
                task.status = rules.SCHEDULED if enabled else rules.PAUSED
            return self._push_and_commit(session, task, now)

    @traced_task_action("cancel")
    def cancel(self, tenant_id: str, task_id: str) -> dict[str, Any]:
        """Cancel: delete the schedule (not-found counts as done) and keep the task and history."""
        now = self.clock()
        with self.sessions() as session:
            task = self._owned(session, tenant_id, task_id, lock=True)
            if task.status in rules.TERMINAL_STATUSES:
                return task_view(task, now=now)
            retries = self._pending_retry_schedules(session, task, now)  # before any change
            task.status = rules.CANCELLED
            task.enabled = False
            task.next_fire_at = None
            task.version += 1
            task.updated_at = now
            self.backend.delete(task.schedule_name)
            for name in retries:
                self.backend.delete(name)
            session.commit()
            return task_view(task, now=now)

    @staticmethod
    def _pending_retry_schedules(session: Session, task: Task, now: datetime) -> tuple[str, ...]:
        """Retry schedules that may not have fired yet (a fired one deleted itself); the
        reconciler removes any this misses, since they belong to a task that has ended."""
        rows = session.execute(
            select(Execution.scheduled_time, Execution.attempt).where(
                Execution.task_id == task.id,
                Execution.retry_at.is_not(None),
                Execution.retry_at > now - timedelta(hours=1),
            )
        ).all()
        return tuple(retry_schedule_name(task.id, when, attempt + 1) for when, attempt in rows)

    def _require_live(self, task: Task, action: str) -> None:
        if task.status in rules.TERMINAL_STATUSES:
            raise Conflict(f"task {task.id} is {task.status} and cannot be {action}")

    def _push_and_commit(self, session: Session, task: Task, now: datetime) -> dict[str, Any]:
        """A changed row's new version: the backend first (building the definition checks the
        Input size before any call), the commit after it; a failure leaves the row as it was."""
        task.version += 1
        task.updated_at = now
        task.schedule_arn = self._push(task)
        session.commit()
        return task_view(task, now=now)

    def _push(self, task: Task) -> str | None:
        """Make the backend hold the row's schedule (create it if it vanished)."""
        if task.kind in triggers.TRIGGER_KINDS:
            self.backend.delete(task.schedule_name)  # e.g. a timed task turned into a chain
            return None
        definition = definition_for(task)
        try:
            return self.backend.update(definition)
        except NotFound:
            fired = task.next_fire_at is not None and task.next_fire_at <= self.clock()
            if task.kind in ONE_TIME_KINDS and fired:
                # It fired and removed itself (ActionAfterCompletion=DELETE) before its outcome
                # was recorded: made again, its past at() would fire the occurrence twice.
                return task.schedule_arn
            return self.backend.create(
                definition, client_token=client_token_for(task.id, task.version)
            )


def hash_body(body: Mapping[str, Any]) -> str:
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()
