"""The reconciler: makes the scheduler backend match the database, and finishes or rolls back
provisioning that a crash interrupted. Safe to run beside itself and the API: every repair of a
task holds that task's row, and an orphan is deleted only after a fresh look finds no row."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Task
from service.application.tasks import definition_for
from service.domain import tasks as rules
from service.domain.clock import Clock, utc_now
from service.domain.errors import NotFound
from service.domain.provisioning import (
    SchedulerBackend,
    client_token_for,
    is_retry_schedule,
    task_id_for,
)
from service.domain.triggers import TRIGGER_KINDS

# A provisioning row younger than this may still be in the hands of the request creating it.
PROVISIONING_GRACE = timedelta(seconds=60)


@dataclass
class ReconcileReport:
    checked_tasks: int = 0
    checked_schedules: int = 0
    adopted: int = 0
    created: int = 0
    updated: int = 0
    deleted_for_terminal_tasks: int = 0
    orphans_deleted: int = 0
    vanished_after_fire: int = 0
    skipped_busy: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def repairs(self) -> int:
        return (
            self.adopted
            + self.created
            + self.updated
            + self.deleted_for_terminal_tasks
            + self.orphans_deleted
        )


class Reconciler:
    def __init__(
        self,
        sessions: sessionmaker[Session],
        backend: SchedulerBackend,
        *,
        clock: Clock = utc_now,
        grace: timedelta = PROVISIONING_GRACE,
    ) -> None:
        self.sessions = sessions
        self.backend = backend
        self.clock = clock
        self.grace = grace

    def run(self) -> ReconcileReport:
        report = ReconcileReport()
        schedules = {s.name: s for s in self.backend.list()}
        report.checked_schedules = len(schedules)
        with self.sessions() as session:
            task_ids = list(session.scalars(select(Task.id).order_by(Task.created_at)))
        for task_id in task_ids:
            report.checked_tasks += 1
            try:
                self._repair_task(task_id, report)
            except Exception as exc:  # one bad task must not stop the sweep
                report.errors.append(f"task {task_id}: {exc}")
        known: set[str] = set()
        with self.sessions() as session:
            for name in session.scalars(select(Task.schedule_name)):
                known.add(name)
        for name in schedules:
            if name in known:
                continue
            owner = task_id_for(name)
            with self.sessions() as session:  # fresh look: the row may have appeared since
                task = session.get(Task, owner) if owner is not None else None
                if task is not None and (
                    # A retry schedule belongs to a live task until it fires (and deletes itself).
                    not is_retry_schedule(name) or task.status not in rules.TERMINAL_STATUSES
                ):
                    continue
            try:
                if self.backend.delete(name):
                    report.orphans_deleted += 1
            except Exception as exc:
                report.errors.append(f"orphan {name}: {exc}")
        return report

    def _repair_task(self, task_id: str, report: ReconcileReport) -> None:
        now = self.clock()
        with self.sessions() as session:
            task = self._lock(session, task_id)
            if task is None:
                report.skipped_busy += 1
                return
            if task.status in rules.TERMINAL_STATUSES:
                if self.backend.delete(task.schedule_name):
                    report.deleted_for_terminal_tasks += 1
                return
            if task.status == rules.PROVISIONING and now - task.updated_at < self.grace:
                return
            if task.kind in TRIGGER_KINDS:  # event and after tasks have no schedule
                return
            wanted = definition_for(task)
            current = self.backend.get(task.schedule_name)
            if current is None:
                if task.status != rules.PROVISIONING and self._fired_and_gone(task, now):
                    report.vanished_after_fire += 1
                    task.last_error = "one-time schedule ran and was deleted by the scheduler"
                    session.commit()
                    return
                task.schedule_arn = self.backend.create(
                    wanted, client_token=client_token_for(task.id, task.version)
                )
                report.created += 1
            elif current.definition != wanted:
                try:
                    task.schedule_arn = self.backend.update(wanted)
                except NotFound:
                    task.schedule_arn = self.backend.create(
                        wanted, client_token=client_token_for(task.id, task.version)
                    )
                report.updated += 1
            elif task.status == rules.PROVISIONING or task.schedule_arn != current.arn:
                task.schedule_arn = current.arn
                report.adopted += 1
            if task.status == rules.PROVISIONING:
                task.status = rules.SCHEDULED if task.enabled else rules.PAUSED
                task.updated_at = now
            session.commit()

    def _lock(self, session: Session, task_id: str) -> Task | None:
        query = select(Task).where(Task.id == task_id)
        if session.get_bind().dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        return session.scalar(query)

    @staticmethod
    def _fired_and_gone(task: Task, now: datetime) -> bool:
        one_time = task.kind in ("immediate", "once", "delay")
        return one_time and task.next_fire_at is not None and task.next_fire_at <= now
