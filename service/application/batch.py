"""Batch create: up to 1,000 tasks in one request, provisioned near the scheduler's quota.

The two phases run chunk by chunk: one transaction writes a chunk's valid rows as
`provisioning`, their schedules are created concurrently, paced by an adaptive rate limiter
shared by every batch (throttled calls are retried after it slows down; the oldest batch goes
first), and once they are made one transaction marks the chunk's created rows `scheduled` and
removes the rows whose schedule could not be made. Results come back per item, in order."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from service.adapters.db.models import IdempotencyRecord, Task
from service.adapters.db.session import insert_rows
from service.application.pacing import AdaptiveLimiter
from service.application.tasks import (
    MARK_PROVISIONED,
    TaskService,
    definition_for,
    hash_body,
    task_view,
)
from service.domain import tasks as rules
from service.domain.errors import Conflict, InvalidRequest, TimebridgeError, UpstreamThrottled
from service.domain.limits import MAX_BATCH
from service.domain.triggers import TRIGGER_KINDS

CHUNK = 100
FIRST_CHUNK = 8


@dataclass
class _Item:
    index: int
    status: int = 0
    task: Task | None = None
    view: dict[str, Any] | None = None
    error: TimebridgeError | None = None
    key: str | None = None
    request_hash: str = ""
    input_text: str | None = None  # the schedule's Input, built once where its size is checked


def create_many(
    service: TaskService,
    tenant_id: str,
    bodies: Sequence[Mapping[str, Any]],
    *,
    limiter: AdaptiveLimiter | None = None,
    max_throttle_retries: int = 200,
) -> list[dict[str, Any]]:
    """Create many tasks; each result has index and status, plus task or error."""
    if not 1 <= len(bodies) <= MAX_BATCH:
        raise InvalidRequest("tasks", f"must hold 1-{MAX_BATCH} tasks")
    limiter = limiter or service.limiter
    started = limiter.clock()  # this batch's priority for the scheduler's quota: older first
    now = service.clock()
    service.check_capacity(tenant_id, adding=len(bodies))
    items = [_Item(i) for i in range(len(bodies))]
    workers = min(limiter.maximum, len(items))
    # Rows are written chunk by chunk, and each chunk's schedules start while the next chunk
    # is validated, so the scheduler's quota is never left idle waiting for our own work. Chunks
    # start small and double, so the first schedules start after a few items' work, not 100's.
    # Each chunk's rows are marked `scheduled` as soon as its schedules are made, while later
    # chunks are still provisioning: the request ends one chunk's work after its last schedule,
    # and the next request's schedules start with little pause.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque[tuple[list[_Item], list[Future[None]]]] = deque()
        begin, size = 0, FIRST_CHUNK
        while begin < len(items):
            chunk = items[begin : begin + size]
            begin, size = begin + size, min(CHUNK, 2 * size)
            for item in chunk:
                _prepare(service, tenant_id, item, bodies[item.index], now)
            _write_rows(service, tenant_id, chunk, now)
            futures = [
                pool.submit(_provision, service, item, limiter, started, max_throttle_retries)
                for item in chunk
                if item.status == 0 and item.task is not None
            ]
            pending.append((chunk, futures))
            while pending and all(future.done() for future in pending[0][1]):
                _finish_chunk(service, *pending.popleft())
        while pending:
            _finish_chunk(service, *pending.popleft())
    return [_result(item) for item in items]


def _prepare(
    service: TaskService, tenant_id: str, item: _Item, raw: Mapping[str, Any], now: datetime
) -> None:
    body = dict(raw) if isinstance(raw, Mapping) else raw
    try:
        if not isinstance(body, dict):
            raise InvalidRequest(f"tasks[{item.index}]", "must be an object")
        key = body.pop("idempotency_key", None)
        if key is not None and (not isinstance(key, str) or not 1 <= len(key) <= 255):
            raise InvalidRequest("idempotency_key", "must be a string of 1-255 characters")
        item.key, item.request_hash = key, hash_body(body)
        item.task, item.input_text = service.prepare_task(tenant_id, body, now)
    except TimebridgeError as exc:
        item.status, item.error = exc.status, exc


def _write_rows(service: TaskService, tenant_id: str, items: list[_Item], now: datetime) -> None:
    keyed = {i.key: i for i in items if i.status == 0 and i.key is not None}
    with service.sessions() as session:
        if keyed:
            records = session.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.tenant_id == tenant_id,
                    IdempotencyRecord.key.in_(list(keyed)),
                )
            )
            for record in records:
                item = keyed.pop(record.key)
                if record.request_hash != item.request_hash:
                    item.status = 409
                    item.error = Conflict("this idempotency_key was used with another body")
                    continue
                existing = session.get(Task, record.task_id)
                if existing is not None:
                    item.status, item.view = 200, task_view(existing, now=now)
        seen: set[str] = set()
        new_records: list[IdempotencyRecord] = []
        rows: list[Task] = []
        for item in items:
            if item.status != 0 or item.task is None:
                continue
            if item.key is not None:
                if item.key in seen:
                    item.status = 409
                    item.error = InvalidRequest("idempotency_key", "appears twice in this batch")
                    continue
                seen.add(item.key)
                new_records.append(
                    IdempotencyRecord(
                        id=str(uuid.uuid4()),
                        tenant_id=tenant_id,
                        key=item.key,
                        request_hash=item.request_hash,
                        task_id=item.task.id,
                        created_at=now,
                    )
                )
            rows.append(item.task)
        # One multi-row INSERT per table for the chunk.
        insert_rows(session, new_records)
        insert_rows(session, rows)
        session.commit()


def _provision(
    service: TaskService, item: _Item, limiter: AdaptiveLimiter, priority: float, max_retries: int
) -> None:
    assert item.task is not None
    if item.task.kind in TRIGGER_KINDS:  # event and after tasks have nothing to provision
        item.status = 201
        return
    definition = definition_for(item.task, input_text=item.input_text)
    for attempt in range(max_retries + 1):
        limiter.acquire(priority)
        throttled = False
        try:
            item.task.schedule_arn = service.provision_schedule(definition, item.task)
            item.status = 201
            return
        except UpstreamThrottled as exc:
            throttled = True
            if attempt == max_retries:
                item.status, item.error = exc.status, exc
                return
        except TimebridgeError as exc:
            item.status, item.error = exc.status, exc
            return
        finally:
            limiter.release(throttled=throttled)


def _finish_chunk(service: TaskService, items: list[_Item], futures: list[Future[None]]) -> None:
    """Once the chunk's schedules are made (or refused), its rows follow them."""
    for future in futures:
        future.result()
    made = {i.task.id: i for i in items if i.status == 201 and i.task is not None}
    failed = [i.task.id for i in items if i.task is not None and i.status not in (0, 200, 201)]
    failed = [task_id for task_id in failed if task_id not in made]
    now = service.clock()
    with service.sessions() as session:
        if failed:
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.task_id.in_(failed)))
            session.execute(delete(Task).where(Task.id.in_(failed)))
        if made:
            # One executemany of create's last step: only rows still `provisioning` change status.
            updates = []
            for item in made.values():
                task = item.task
                assert task is not None
                task.status = rules.SCHEDULED if task.enabled else rules.PAUSED
                task.updated_at = now
                updates.append(
                    {"task_id": task.id, "arn": task.schedule_arn, "now": now, "live": task.status}
                )
            session.connection().execute(MARK_PROVISIONED, updates)
        session.commit()
    for item in made.values():
        assert item.task is not None
        item.view = task_view(item.task, now=now)


def _result(item: _Item) -> dict[str, Any]:
    if item.view is not None:
        return {"index": item.index, "status": item.status or 200, "task": item.view}
    error = item.error
    assert error is not None
    return {
        "index": item.index,
        "status": item.status,
        "error": {
            "code": error.code,
            "message": str(error),
            "field": getattr(error, "field", None),
        },
    }
