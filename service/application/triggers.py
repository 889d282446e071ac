"""Triggers other than time: events on topics, chains after other tasks, dependency gates,
backfill of past occurrences, and the operators' view of provisioned schedules.

Every run started here goes the run-now way (service.application.history): the execution row
is written first, then the filled-in Input is handed to the invoker (an asynchronous Lambda
invoke on AWS, the proxy handler in a worker thread locally), and the outcome comes back
through the recorder like any firing.

Idempotency: an execution started by an event or a chain carries a unique `trigger_key`
derived from what started it (`evt:<source execution id>:<task id>` for a task's outcome,
`tgt:<source execution id>:<task id>` for an `event` target, `api:<event id>:<task id>` for
`POST /v1/events`), so a redelivered outcome record starts nothing twice. A backfill occurrence
is keyed by its scheduled time like any occurrence, so a second backfill of the same window
adds only what is missing.
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, NamedTuple, Protocol

from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.template import is_event_name, placeholders_in
from service.adapters.db.models import Execution, Task
from service.application.paging import check_limit, is_uuid
from service.domain import executions as states
from service.domain import targets
from service.domain import tasks as rules
from service.domain import triggers as spec
from service.domain.clock import Clock, utc_now
from service.domain.errors import Conflict, InvalidRequest, NotFound
from service.domain.provisioning import SchedulerBackend, is_retry_schedule, task_id_for

logger = logging.getLogger("timebridge.triggers")

EVENT_TRIGGER, CHAIN, BACKFILL = "event", "chain", "backfill"
MAX_DEPTH = 16  # hops from a first trigger; beyond it a pipeline loop stops publishing
MAX_EVENT_BYTES = 64 * 1024
# A started run with no outcome after this long was never invoked (the process died between
# its commit and the invoke): longer than any delivery can take (900 s timeout, redirects).
STRANDED_AFTER = timedelta(minutes=20)
_TICK = timedelta(microseconds=1)


class Invoker(Protocol):
    """The run path's invoker (as service.application.history.Invoker)."""

    def fire(self, event: dict[str, Any]) -> None: ...


# --- what a triggered run sends -----------------------------------------------------------------


def run_document(task: Task, execution: Execution) -> dict[str, Any]:
    """The Input for one execution row, as run now builds it, with the event that started it.

    A task whose target uses no `event.*` placeholder gets the event in an envelope instead:
    an HTTP body becomes `{"event": {"topic", "payload"}, "body": <the task's body>}`."""
    scheduled_text = states.format_scheduled_time(execution.scheduled_time)
    target = dict(task.target)
    event = execution.trigger_event
    if event is not None and not uses_event(target) and target.get("type", "http") == "http":
        target["body"] = {"event": event, "body": target.get("body")}
    document: dict[str, Any] = json.loads(
        rules.schedule_input(
            task_id=task.id,
            tenant_id=task.tenant_id,
            target=target,
            callback=task.callback,
            attempt=execution.attempt,
            scheduled_time=scheduled_text,
            task_name=task.name,
            timezone=task.timezone,
        )
    )
    document["context"] = {
        "schedule_arn": task.schedule_arn or execution.trigger,
        "scheduled_time": scheduled_text,
        "execution_id": execution.id,
        "attempt_number": 1,
    }
    if event is not None:
        document["event"] = event
    return document


def uses_event(target: Mapping[str, Any]) -> bool:
    return any(is_event_name(name) for name in placeholders_in(dict(target)))


def dispatch(
    sessions: sessionmaker[Session], invoker: Invoker | None, execution_ids: Iterable[str]
) -> int:
    """Hand pending, not yet recorded executions to the invoker; returns how many were fired.
    An invoke that fails ends its execution as trigger_failed (nothing was started)."""
    fired = 0
    for execution_id in execution_ids:
        with sessions() as session:
            execution = session.get(Execution, execution_id)
            if execution is None or execution.outcome_recorded:
                continue
            if execution.status != states.PENDING:
                continue
            task = session.get(Task, execution.task_id)
            assert task is not None
            document = run_document(task, execution)
        if invoker is None:
            continue
        try:
            invoker.fire(document)
            fired += 1
        except Exception as exc:
            logger.exception("invoking the run of execution %s failed", execution_id)
            _end_unstarted(sessions, execution_id, str(exc))
    return fired


def _end_unstarted(sessions: sessionmaker[Session], execution_id: str, error: str) -> None:
    with sessions() as session:
        execution = session.get(Execution, execution_id, with_for_update=True)
        if execution is None or execution.outcome_recorded:
            return
        now = utc_now()
        execution.status = states.TRIGGER_FAILED
        execution.error_kind = "invoke_failed"
        execution.error = error[:2000]
        execution.outcome_recorded = True
        execution.finished_at = now
        execution.updated_at = now
        session.commit()


# --- starting runs inside a transaction ---------------------------------------------------------


def _stamp(session: Session, task_id: str, now: datetime) -> datetime:
    """A scheduled time for a triggered run: now, to the microsecond, distinct per task within
    the transaction (a manual-style occurrence never shares a key with a scheduled one)."""
    used: set[tuple[str, datetime]] = session.info.setdefault("tb_trigger_stamps", set())
    moment = now if now.microsecond else now.replace(microsecond=1)
    while (task_id, moment) in used or _taken(session, task_id, moment):
        moment += _TICK
    used.add((task_id, moment))
    return moment


def _taken(session: Session, task_id: str, moment: datetime) -> bool:
    return (
        session.scalar(
            select(Execution.id).where(
                Execution.task_id == task_id,
                Execution.scheduled_time == moment,
                Execution.attempt == 1,
            )
        )
        is not None
    )


def start_run(
    session: Session,
    task: Task,
    *,
    trigger: str,
    key: str,
    event: Mapping[str, Any],
    depth: int,
    now: datetime,
    source: str | None = None,
) -> Execution | None:
    """A pending execution for a triggered run (None if `key` started one already). A task
    whose dependencies have not succeeded gets a `skipped` execution instead (DEPENDENCY_FAILED):
    the service reads the database here, so this gate is exact on both backends."""
    if session.scalar(select(Execution.id).where(Execution.trigger_key == key)) is not None:
        return None
    from service.application.recorder import new_execution

    execution = new_execution(task, _stamp(session, task.id, now), 1, now, trigger=trigger)
    execution.trigger_key = key
    execution.trigger_event = {"topic": event["topic"], "payload": event.get("payload")}
    execution.trigger_depth = depth
    execution.source_execution_id = source
    execution.planned_at = now
    if task.depends_on and dependency_gate(session, task) is not None:
        skip(execution, now)
    session.add(execution)
    session.execute(
        update(Task)
        .where(Task.id == task.id)
        .values(trigger_count=Task.trigger_count + 1, last_triggered_at=now)
        .execution_options(synchronize_session=False)
    )
    return execution


def skip(execution: Execution, now: datetime) -> None:
    """Record an occurrence as not run because a dependency has not succeeded."""
    execution.status = states.SKIPPED
    execution.error_kind = spec.DEPENDENCY_FAILED
    execution.error = "a dependency's latest execution did not succeed; nothing was called"
    execution.outcome_recorded = True
    execution.started_at = execution.started_at or now
    execution.finished_at = now
    execution.updated_at = now


class Linked(NamedTuple):
    """What the hooks need of a task that events, chains or dependencies may concern."""

    id: str
    kind: str
    schedule: dict[str, Any]
    depends_on: list[str]
    runnable: bool  # scheduled and enabled: may be started by an event or a chain


def links(session: Session, tenant_id: str) -> list[Linked]:
    """The tenant's live event and after tasks and tasks with dependencies, oldest first: one
    query per tenant per transaction (the local engine records outcomes in batches), so the
    hooks on every ended execution cost little when nothing is linked."""
    cache: dict[str, list[Linked]] = session.info.setdefault("tb_trigger_links", {})
    found = cache.get(tenant_id)
    if found is None:
        rows = session.execute(
            select(Task.id, Task.kind, Task.schedule, Task.depends_on, Task.status, Task.enabled)
            .where(
                Task.tenant_id == tenant_id,
                Task.status.in_(rules.LIVE_STATUSES),
                Task.kind.in_(spec.TRIGGER_KINDS) | Task.depends_on.is_not(None),
            )
            .order_by(Task.created_at, Task.id)
        ).all()
        found = [
            Linked(
                id=row_id,
                kind=kind,
                schedule=dict(schedule or {}),
                depends_on=list(depends or []),
                runnable=status == rules.SCHEDULED and bool(enabled),
            )
            for row_id, kind, schedule, depends, status, enabled in rows
        ]
        cache[tenant_id] = found
    return found


def subscribers(session: Session, tenant_id: str, topic: str, payload: Any) -> list[Task]:
    """The tenant's live event tasks whose pattern and filter match, oldest first."""
    matched = [
        link.id
        for link in links(session, tenant_id)
        if link.kind == spec.EVENT
        and link.runnable
        and spec.topic_matches(str(link.schedule.get("topic")), topic)
        and spec.filter_matches(link.schedule.get("filter") or {}, payload)
    ]
    return [task for task in (session.get(Task, task_id) for task_id in matched) if task]


def publish_in(
    session: Session,
    tenant_id: str,
    topic: str,
    payload: Any,
    *,
    key_prefix: str,
    depth: int,
    now: datetime,
    exclude: str | None = None,
    source: str | None = None,
) -> list[Execution]:
    """Start every matching event task of the tenant; returns the executions made."""
    if depth > MAX_DEPTH:
        logger.warning("%s not published: %d hops from its first trigger", topic, depth)
        return []
    made: list[Execution] = []
    for task in subscribers(session, tenant_id, topic, payload):
        if task.id == exclude:
            continue  # a task's own outcome never starts it again
        execution = start_run(
            session,
            task,
            trigger=EVENT_TRIGGER,
            key=f"{key_prefix}:{task.id}",
            event={"topic": topic, "payload": payload},
            depth=depth,
            now=now,
            source=source,
        )
        if execution is not None:
            made.append(execution)
    return made


def outcome_payload(task: Task, execution: Execution) -> dict[str, Any]:
    """What `task.<name>.succeeded` / `.failed` carries."""
    return {
        "task_id": task.id,
        "task_name": task.name,
        "execution_id": execution.id,
        "status": execution.status,
        "status_code": execution.status_code,
        "error_kind": execution.error_kind,
        "scheduled_time": states.format_scheduled_time(execution.scheduled_time),
        "attempt": execution.attempt,
        "output": execution.output,
    }


def on_final(session: Session, task: Task, execution: Execution, now: datetime) -> list[Execution]:
    """An execution has ended for good (no retry follows): publish its outcome topic and start
    the `after` chains it completes. Skipped executions publish nothing."""
    if execution.status == states.SKIPPED or execution.status not in states.TERMINAL:
        return []
    succeeded = execution.status == states.SUCCESS
    depth = (execution.trigger_depth or 0) + 1
    topic = spec.outcome_topic(task.name, succeeded)
    payload = outcome_payload(task, execution)
    made = publish_in(
        session,
        task.tenant_id,
        topic,
        payload,
        key_prefix=f"evt:{execution.id}",
        depth=depth,
        now=now,
        exclude=task.id,
        source=execution.id,
    )
    if depth > MAX_DEPTH:
        return made
    for link in links(session, task.tenant_id):
        upstream = list(link.schedule.get("tasks") or ())
        on = str(link.schedule.get("on", spec.ON_SUCCESS))
        if link.kind != spec.AFTER or not link.runnable or task.id not in upstream:
            continue
        if link.id == task.id or not spec.after_fires(on, succeeded=succeeded):
            continue
        if not all(other == task.id or _latest_fits(session, other, on) for other in upstream):
            continue
        follower = session.get(Task, link.id)
        if follower is None:
            continue
        started = start_run(
            session,
            follower,
            trigger=CHAIN,
            key=f"evt:{execution.id}:{follower.id}",
            event={"topic": topic, "payload": payload},
            depth=depth,
            now=now,
            source=execution.id,
        )
        if started is not None:
            made.append(started)
    return made


def latest_final(session: Session, task_id: str) -> Execution | None:
    """The task's latest execution that ended for good (a failed attempt awaiting its retry
    does not count; a skipped occurrence does)."""
    return session.scalar(
        select(Execution)
        .where(
            Execution.task_id == task_id,
            Execution.status.in_(tuple(states.TERMINAL)),
            Execution.retry_at.is_(None),
        )
        .order_by(
            Execution.finished_at.desc(),
            Execution.scheduled_time.desc(),
            Execution.created_at.desc(),
        )
        .limit(1)
    )


def _latest_fits(session: Session, task_id: str, on: str) -> bool:
    latest = latest_final(session, task_id)
    if latest is None or (latest.status == states.SKIPPED and on != spec.ON_COMPLETION):
        return False
    return spec.after_fires(on, succeeded=latest.status == states.SUCCESS)


def dependency_gate(session: Session, task: Task) -> str | None:
    """DEPENDENCY_FAILED unless every dependency's latest final execution succeeded (one that
    has never run has not succeeded)."""
    for dependency in task.depends_on or ():
        latest = latest_final(session, dependency)
        if latest is None or latest.status != states.SUCCESS:
            return spec.DEPENDENCY_FAILED
    return None


def gate_for(sessions: sessionmaker[Session], task_id: str) -> str | None:
    """The dependency gate of a task as of now, read from the database (the local engine's
    fire-time check)."""
    with sessions() as session:
        task = session.get(Task, task_id) if is_uuid(task_id) else None
        if task is None or not task.depends_on:
            return None
        return dependency_gate(session, task)


def dependents(session: Session, task: Task) -> list[Task]:
    """The tenant's live tasks that name `task` in `depends_on`."""
    named = [link.id for link in links(session, task.tenant_id) if task.id in link.depends_on]
    return [row for row in (session.get(Task, task_id) for task_id in named) if row]


def check_graph(
    session: Session,
    tenant_id: str,
    task_id: str,
    schedule: Mapping[str, Any] | None,
    depends_on: list[str] | None,
) -> None:
    """Refuse unknown or other-tenant task ids (NotFound) and cycles through `after` and
    `depends_on` (InvalidRequest with the path)."""
    named = spec.upstream_of(schedule, depends_on)
    for other in sorted(named):
        field = "depends_on" if other in (depends_on or ()) else "schedule.tasks"
        row = session.get(Task, other) if is_uuid(other) else None
        if row is None or row.tenant_id != tenant_id:
            raise NotFound(f"{field}: task {other} not found")
        if row.status == rules.CANCELLED:
            raise InvalidRequest(field, f"task {other} is cancelled")
        waits_for_success = field == "depends_on" or (schedule or {}).get(
            "on", spec.ON_SUCCESS
        ) in (spec.ON_SUCCESS, spec.ON_COMPLETION)
        if waits_for_success and targets.is_direct(row.target):
            raise InvalidRequest(
                field,
                f"task {other} has a direct target: EventBridge Scheduler reports no success"
                " for it on AWS, so nothing can wait for its success or completion",
            )
    edges: dict[str, set[str]] = {}
    rows = session.execute(
        select(Task.id, Task.schedule, Task.depends_on).where(
            Task.tenant_id == tenant_id,
            (Task.kind == spec.AFTER) | Task.depends_on.is_not(None),
        )
    ).all()
    for row_id, row_schedule, row_depends in rows:
        edges[row_id] = spec.upstream_of(row_schedule, row_depends)
    edges[task_id] = named
    cycle = spec.find_cycle(task_id, edges)
    if cycle is not None:
        field = "depends_on" if depends_on and cycle[1] in depends_on else "schedule.tasks"
        raise InvalidRequest(field, "would make a cycle: " + " -> ".join(cycle))


# --- the use cases ------------------------------------------------------------------------------


class TriggerService:
    """`POST /v1/events`, backfill, and the schedules listing."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        invoker: Invoker | None,
        backend: SchedulerBackend,
        *,
        clock: Clock = utc_now,
        backfill_rate_per_second: float = 2.0,
        backfill_max: int = 1000,
        background: bool = True,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.sessions = sessions
        self.invoker = invoker
        self.backend = backend
        self.clock = clock
        self.backfill_rate = backfill_rate_per_second
        self.backfill_max = backfill_max
        self.background = background
        self.sleep = sleep
        self._worker: threading.Thread | None = None
        self._worker_lock = threading.Lock()
        self._dispatch_lock = threading.Lock()

    # --- events --------------------------------------------------------------------------------

    def publish(self, tenant_id: str, topic: Any, payload: Any) -> dict[str, Any]:
        """Run every matching event task of the tenant once; `matched` 0 when none matches."""
        from service.application.history import execution_view

        topic = spec.check_topic(topic, "topic")
        if len(json.dumps(payload, default=str).encode()) > MAX_EVENT_BYTES:
            raise InvalidRequest("payload", "is larger than 64 KB")
        event_id = str(uuid.uuid4())
        now = self.clock()
        with self.sessions() as session:
            made = publish_in(
                session, tenant_id, topic, payload, key_prefix=f"api:{event_id}", depth=1, now=now
            )
            session.commit()
            ids = [execution.id for execution in made]
        dispatch(self.sessions, self.invoker, ids)
        with self.sessions() as session:
            views = [execution_view(e) for e in (session.get(Execution, i) for i in ids) if e]
        return {"event_id": event_id, "topic": topic, "matched": len(views), "executions": views}

    # --- backfill ------------------------------------------------------------------------------

    def backfill(self, tenant_id: str, task_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Queue the occurrences of the task's schedule in [from, to), oldest first, at most
        `max`; occurrences already recorded are left out. They run paced, in the background."""
        from service.application.recorder import new_execution
        from service.application.tasks import _compiled

        if not isinstance(body, Mapping):
            raise InvalidRequest("body", "must be a JSON object")
        unknown = set(body) - {"from", "to", "max"}
        if unknown:
            raise InvalidRequest(sorted(unknown)[0], "is not a backfill field")
        start, end = _instant(body.get("from"), "from"), _instant(body.get("to"), "to")
        limit = body.get("max", min(100, self.backfill_max))
        if isinstance(limit, bool) or not isinstance(limit, int) or not limit >= 1:
            raise InvalidRequest("max", "must be a whole number from 1")
        if limit > self.backfill_max:
            raise InvalidRequest("max", f"may be at most {self.backfill_max}")
        now = self.clock()
        if end <= start:
            raise InvalidRequest("to", "must be after from")
        if end > now:
            raise InvalidRequest("to", "is in the future: backfill runs past occurrences only")
        with self.sessions() as session:
            task = session.get(Task, task_id) if is_uuid(task_id) else None
            if task is None or task.tenant_id != tenant_id:
                raise NotFound(f"task {task_id} not found")
            if task.kind in spec.TRIGGER_KINDS:
                raise InvalidRequest("task", f"a {task.kind!r} task has no time schedule")
            if task.status == rules.CANCELLED:
                raise Conflict(f"task {task_id} is cancelled")
            compiled = _compiled(json.dumps(task.schedule, sort_keys=True), task.created_at)
            times = [t for t in compiled.next_fire_times(start - _TICK, limit + 1) if t < end]
            truncated = len(times) > limit
            times = times[:limit]
            recorded = set(
                session.scalars(
                    select(Execution.scheduled_time).where(
                        Execution.task_id == task.id,
                        Execution.scheduled_time >= start,
                        Execution.scheduled_time < end,
                    )
                )
            )
            queued = [t for t in times if t not in recorded]
            for when in queued:
                execution = new_execution(task, when, 1, now, trigger=BACKFILL)
                session.add(execution)  # planned_at stays None until dispatched
            session.commit()
        if queued:
            self._start_worker()
        stamp = states.format_scheduled_time
        return {
            "task_id": task_id,
            "queued": len(queued),
            "already_recorded": len(times) - len(queued),
            "first": stamp(queued[0]) if queued else None,
            "last": stamp(queued[-1]) if queued else None,
            "truncated": truncated,
            "rate_per_second": self.backfill_rate,
        }

    def _start_worker(self) -> None:
        if not self.background:
            return
        with self._worker_lock:
            if self._worker is not None and self._worker.is_alive():
                return
            self._worker = threading.Thread(
                target=self._work, name="timebridge-backfill", daemon=True
            )
            self._worker.start()

    def _work(self) -> None:
        try:
            self.dispatch_backfill()
        except Exception:  # the rows stay queued: the next request or `timebridge sweep` resumes
            logger.exception("backfill dispatch stopped")

    def dispatch_backfill(self, *, limit: int | None = None) -> int:
        """Fire queued backfill occurrences oldest first, one every 1/rate seconds, until none
        is left (or `limit` were fired). Locally a background thread runs it after each
        backfill request; on AWS the one-minute sweeper does, with a limit."""
        fired = 0
        with self._dispatch_lock:
            while limit is None or fired < limit:
                with self.sessions() as session:
                    execution = session.scalar(
                        select(Execution)
                        .where(
                            Execution.trigger == BACKFILL,
                            Execution.planned_at.is_(None),
                            Execution.status == states.PENDING,
                        )
                        .order_by(Execution.scheduled_time, Execution.id)
                        .limit(1)
                        .with_for_update(skip_locked=True)
                    )
                    if execution is None:
                        break
                    execution.planned_at = self.clock()
                    execution_id = execution.id
                    session.commit()
                if fired:
                    self.sleep(1.0 / self.backfill_rate)
                dispatch(self.sessions, self.invoker, [execution_id])
                fired += 1
        return fired

    # --- schedules -----------------------------------------------------------------------------

    def schedules(
        self, tenant_id: str, *, everyone: bool, limit: int = 50, cursor: str | None = None
    ) -> dict[str, Any]:
        """The schedules the backend holds, by name, with what it reports for each; a tenant
        sees those of its own tasks, a system admin (`everyone`) all of them."""
        check_limit(limit)
        summaries = sorted(self.backend.list(), key=lambda s: s.name)
        if not everyone:
            with self.sessions() as session:
                owned = set(session.scalars(select(Task.id).where(Task.tenant_id == tenant_id)))
            summaries = [s for s in summaries if task_id_for(s.name) in owned]
        if cursor is not None:
            summaries = [s for s in summaries if s.name > cursor]
        page = summaries[:limit]
        items = []
        for summary in page:
            info = self.backend.get(summary.name)
            definition = info.definition if info is not None else None
            items.append(
                {
                    "name": summary.name,
                    "arn": summary.arn,
                    "expression": definition.expression if definition else None,
                    "timezone": definition.expression_timezone if definition else None,
                    "state": "ENABLED" if summary.enabled else "DISABLED",
                    "task_id": task_id_for(summary.name),
                    "retry": is_retry_schedule(summary.name),
                }
            )
        more = len(summaries) > limit
        return {"items": items, "next_cursor": page[-1].name if more and page else None}

    def redispatch_stranded(self, *, limit: int = 100) -> int:
        """Fire again the runs started by events, chains and backfill that were committed but
        never invoked (at least once: the same occurrence key, which receivers deduplicate).
        The sweeper runs it."""
        now = self.clock()
        with self.sessions() as session:
            rows = session.scalars(
                select(Execution)
                .where(
                    Execution.status == states.PENDING,
                    Execution.trigger.in_((EVENT_TRIGGER, CHAIN, BACKFILL)),
                    Execution.outcome_recorded.is_(False),
                    Execution.planned_at < now - STRANDED_AFTER,
                )
                .order_by(Execution.planned_at, Execution.id)
                .limit(limit)
                .with_for_update(skip_locked=True)
            ).all()
            ids = [row.id for row in rows]
            for row in rows:
                row.planned_at = now  # the next try waits a full period again
            session.commit()
        if ids:
            logger.warning("firing %d runs that were never invoked", len(ids))
        return dispatch(self.sessions, self.invoker, ids)


def _instant(value: Any, field: str) -> datetime:
    if not isinstance(value, str):
        raise InvalidRequest(field, "is required: an ISO 8601 time with an offset or Z")
    try:
        moment = states.parse_utc(value)
    except ValueError as exc:
        raise InvalidRequest(field, str(exc)) from None
    return moment
