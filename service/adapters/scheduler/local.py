"""The `local` backend: schedule definitions kept in the database, with EventBridge's semantics
and errors, so the rest of the service cannot tell it from AWS. The embedded engine fires them."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, delete, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import LocalFiring, LocalSchedule
from service.adapters.db.session import insert_values
from service.domain.errors import Conflict, NotFound
from service.domain.provisioning import (
    ScheduleDefinition,
    ScheduleInfo,
    ScheduleSummary,
    ScheduleTarget,
)
from service.domain.schedules import AtExpression, parse_aws_expression
from service.domain.schedules._zones import load_zone, resolve_local
from service.domain.schedules.evaluate import fire_times
from service.domain.tasks import CONTEXT_ATTRIBUTES

Clock = Callable[[], datetime]


def _utc_now() -> datetime:
    return datetime.now(UTC)


class LocalSchedulerBackend:
    """SchedulerBackend over the `local_schedules` table; ARNs look like EventBridge's."""

    # Its schedules live in the service's database: `create` can take `also` (see there).
    shares_database = True

    def __init__(
        self,
        sessions: sessionmaker[Session],
        *,
        group: str = "timebridge",
        region: str = "local",
        account: str = "000000000000",
        clock: Clock = _utc_now,
    ) -> None:
        self._sessions = sessions
        bind = sessions.kw.get("bind")
        # create() writes through the engine itself: a Session's bookkeeping would cost more
        # than the INSERT (see there).
        self._engine: Engine | None = bind if isinstance(bind, Engine) else None
        self._group = group
        self._arn_prefix = f"arn:aws:scheduler:{region}:{account}:schedule/{group}/"
        self._clock = clock
        # The embedded engine listens here, so a new or changed schedule wakes it at once.
        self.on_change: Callable[[], None] | None = None

    def _changed(self) -> None:
        if self.on_change is not None:
            self.on_change()

    def _validate(self, definition: ScheduleDefinition) -> None:
        # The same checks AWS makes before accepting a schedule.
        parse_aws_expression(definition.expression)
        load_zone(definition.expression_timezone, "ScheduleExpressionTimezone")

    def create(
        self,
        definition: ScheduleDefinition,
        *,
        client_token: str,
        also: Callable[[Connection, str], None] | None = None,
    ) -> str:
        """Create the schedule; `also(connection, arn)` runs in the same transaction (the task
        service writes its row there, already provisioned: this backend shares its database)."""
        self._validate(definition)
        now = self._clock()
        arn = self._arn_prefix + definition.name
        row = {
            "name": definition.name,
            "arn": arn,
            "client_token": client_token,
            "created_at": now,
            "updated_at": now,
            **_definition_values(definition),
            "next_fire_at": first_fire(definition, now),
        }
        try:
            # A plain transaction on the engine: nothing here needs the ORM's session.
            with self._transaction() as connection:
                # A one-time schedule leaves this table when the engine claims it; created
                # again (the task updated or paused meanwhile), its early claim gives way to it.
                if not definition.new_name:
                    _withdraw_early_claims(
                        connection, definition.name, now, all_pending=not definition.enabled
                    )
                insert_values(connection, LocalSchedule, row)
                if also is not None:
                    also(connection, arn)
        except IntegrityError as exc:
            with self._sessions() as session:
                existing = session.get(LocalSchedule, definition.name)
            if existing is not None and existing.client_token == client_token:
                return existing.arn  # an idempotent retry
            raise Conflict(f"schedule {definition.name} already exists") from exc
        self._changed()
        return arn

    @contextmanager
    def _transaction(self) -> Iterator[Connection]:
        """A connection in a transaction, committed when the block ends, rolled back if it
        raises."""
        if self._engine is not None:
            with self._engine.begin() as connection:
                yield connection
            return
        with self._sessions() as session:  # a factory bound otherwise: through its session
            yield session.connection()
            session.commit()

    def get(self, name: str) -> ScheduleInfo | None:
        with self._sessions() as session:
            row = session.get(LocalSchedule, name)
            return None if row is None else ScheduleInfo(_definition_of(row), row.arn)

    def update(self, definition: ScheduleDefinition) -> str:
        self._validate(definition)
        with self._sessions() as session:
            row = session.get(LocalSchedule, definition.name, with_for_update=True)
            if row is None:
                raise NotFound(f"schedule {definition.name} does not exist")
            _copy_into(row, definition)
            row.updated_at = self._clock()
            # Like EventBridge, an update starts the schedule afresh from now: occurrences
            # passed while it was disabled are not made up.
            row.next_fire_at = first_fire(definition, row.updated_at)
            _withdraw_early_claims(
                session.connection(),
                definition.name,
                row.updated_at,
                all_pending=not definition.enabled,
            )
            session.commit()
            arn = row.arn
        self._changed()
        return arn

    def delete(self, name: str) -> bool:
        with self._sessions() as session:
            row = session.get(LocalSchedule, name, with_for_update=True)
            # Also when the row is gone: a one-time schedule leaves it when claimed early.
            _withdraw_early_claims(session.connection(), name, self._clock(), all_pending=True)
            if row is not None:
                session.delete(row)
            session.commit()
            return row is not None

    def list(self) -> Iterator[ScheduleSummary]:
        with self._sessions() as session:
            rows = session.execute(
                select(LocalSchedule.name, LocalSchedule.arn, LocalSchedule.enabled).order_by(
                    LocalSchedule.name
                )
            ).all()
        for name, arn, enabled in rows:
            yield ScheduleSummary(name=name, arn=arn, enabled=enabled)


# A schedule with its own target keeps it in the row's Input, wrapped: the engine's firing then
# carries it, and the context attributes inside are filled like the rest (see invoke.py).
DIRECT_MARK = '{"direct_target":'


def _withdraw_early_claims(
    connection: Connection, name: str, now: datetime, *, all_pending: bool
) -> None:
    """The engine claims occurrences a little early (its lookahead). An update takes back
    those of this schedule whose time is still ahead: it starts the schedule afresh from now,
    so they are claimed again if still wanted. A pause or delete (`all_pending`) takes back
    every row not yet due: also an occurrence whose time has passed but whose flexible-window
    send time has not, and one waiting for a concurrency slot. The engine sends only rows
    still in the outbox at their due time."""
    statement = _WITHDRAW_PENDING if all_pending else _WITHDRAW_AHEAD
    connection.execute(statement, {"name": name, "now": now})


# Built once (every create, update, pause and delete runs one), and run as plain SQL: the
# session holds no LocalFiring objects to keep in step, so the ORM's bookkeeping is waste.
_WITHDRAW_AHEAD = delete(LocalFiring).where(
    LocalFiring.schedule_name == bindparam("name"), LocalFiring.scheduled_time > bindparam("now")
)
_WITHDRAW_PENDING = delete(LocalFiring).where(
    LocalFiring.schedule_name == bindparam("name"), LocalFiring.due_at > bindparam("now")
)


def wrap_direct(definition: ScheduleDefinition) -> str:
    if definition.target is None:
        return definition.input
    document = {
        "direct_target": {
            "arn": definition.target.arn,
            "message_group_id": definition.target.message_group_id,
            "detail_type": definition.target.detail_type,
            "source": definition.target.source,
        },
        "input": definition.input,
        "schedule_arn": CONTEXT_ATTRIBUTES["schedule_arn"],
        "scheduled_time": CONTEXT_ATTRIBUTES["scheduled_time"],
        "attempt_number": CONTEXT_ATTRIBUTES["attempt_number"],
    }
    return json.dumps(document, separators=(",", ":"))


def _unwrap_direct(stored: str) -> tuple[str, ScheduleTarget | None]:
    if not stored.startswith(DIRECT_MARK):
        return stored, None
    document = json.loads(stored)
    target = document["direct_target"]
    return str(document["input"]), ScheduleTarget(
        arn=target["arn"],
        message_group_id=target.get("message_group_id"),
        detail_type=target.get("detail_type"),
        source=target.get("source"),
    )


def _definition_values(definition: ScheduleDefinition) -> dict[str, Any]:
    """The row's columns that state `definition`."""
    return {
        "expression": definition.expression,
        "expression_timezone": definition.expression_timezone,
        "input": wrap_direct(definition),
        "enabled": definition.enabled,
        "start_at": definition.start,
        "end_at": definition.end,
        "flexible_window_minutes": definition.flexible_window_minutes,
        "delete_after_completion": definition.delete_after_completion,
        "description": definition.description,
        "priority": input_priority(definition.input),
    }


def _copy_into(row: LocalSchedule, definition: ScheduleDefinition) -> None:
    for attribute, value in _definition_values(definition).items():
        setattr(row, attribute, value)


def input_priority(input_text: str) -> int:
    """The task priority an Input carries (issue 9; 0 when none): the engine claims
    same-instant occurrences in its order."""
    if '"priority"' not in input_text:
        return 0
    try:
        value = json.loads(input_text).get("priority", 0)
    except (ValueError, AttributeError):
        return 0
    return value if type(value) is int else 0


def _definition_of(row: LocalSchedule) -> ScheduleDefinition:
    input_text, target = _unwrap_direct(row.input)
    return ScheduleDefinition(
        name=row.name,
        expression=row.expression,
        expression_timezone=row.expression_timezone,
        input=input_text,
        target=target,
        enabled=row.enabled,
        start=row.start_at,
        end=row.end_at,
        flexible_window_minutes=row.flexible_window_minutes,
        delete_after_completion=row.delete_after_completion,
        description=row.description,
    )


def first_fire(definition: ScheduleDefinition, now: datetime) -> datetime | None:
    """The first instant a (new or replaced) schedule fires: an at() keeps its own time even
    when it has just passed (the engine then fires it at once or reports it missed); a rate()
    is anchored at its start date or at `now`; a cron() fires at its next match after now."""
    parsed = parse_aws_expression(definition.expression)
    if isinstance(parsed, AtExpression):
        return resolve_local(parsed.when, load_zone(definition.expression_timezone))
    upcoming = fire_times(
        parsed,
        definition.expression_timezone,
        after=now,
        count=1,
        start=definition.start,
        end=definition.end,
    )
    return upcoming[0] if upcoming else None
