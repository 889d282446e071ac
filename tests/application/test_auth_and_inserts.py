"""Verified API keys are remembered for VERIFIED_TTL only, and `insert_rows` writes what a flush
would (defaults included)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import ApiKey, LocalSchedule, Task
from service.adapters.db.session import insert_rows, insert_values
from service.application import auth
from service.domain.errors import Unauthorized


def test_a_revoked_key_is_refused_once_its_memo_expires(
    db_sessions: sessionmaker[Session], monkeypatch: pytest.MonkeyPatch
) -> None:
    key = auth.new_key()
    auth.install_key(db_sessions, key, tenant_name="memo")
    header = f"Bearer {key}"
    principal = auth.authenticate(db_sessions, header)
    assert auth.recently_authenticated(db_sessions, header) == principal
    assert auth.recently_authenticated(db_sessions, f"Bearer {key}x") is None
    with db_sessions() as session:
        session.execute(
            update(ApiKey)
            .where(ApiKey.key_hash == auth.hash_key(key))
            .values(revoked_at=datetime.now(UTC))
        )
        session.commit()
    now = time.monotonic()
    monkeypatch.setattr(time, "monotonic", lambda: now + auth.VERIFIED_TTL + 0.01)
    assert auth.recently_authenticated(db_sessions, header) is None
    with pytest.raises(Unauthorized):
        auth.authenticate(db_sessions, header)


def test_insert_rows_fills_defaults_like_a_flush(db_sessions: sessionmaker[Session]) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        LocalSchedule(
            name=f"tb-insert-{i}",
            arn=f"arn:{i}",
            expression="rate(1 hour)",
            expression_timezone="UTC",
            input="{}",
            created_at=now,
            updated_at=now,
            **({"description": "given"} if i else {}),
        )
        for i in range(3)
    ]
    with db_sessions() as session:
        insert_rows(session, rows)
        session.commit()
    with db_sessions() as session:
        stored = {
            row.name: row
            for row in session.scalars(
                select(LocalSchedule).where(LocalSchedule.name.like("tb-insert-%"))
            )
        }
    assert stored["tb-insert-0"].description == ""  # the column default
    assert stored["tb-insert-1"].description == "given"
    assert stored["tb-insert-2"].enabled is True and stored["tb-insert-2"].created_at == now


def test_a_single_inserted_row_reads_back_as_a_flushed_one(
    db_sessions: sessionmaker[Session],
) -> None:
    # One row goes to the driver with a statement compiled once: JSON, aware datetimes,
    # booleans and the defaults of unset columns must come back as a flush writes them.
    tenant = auth.ensure_tenant(db_sessions, "single-row")
    now = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)

    def task(task_id: str) -> Task:
        return Task(
            id=task_id,
            tenant_id=tenant,
            name="séance ✓",
            status="scheduled",
            kind="cron",
            mode="native",
            schedule={"kind": "cron", "expression": "0 9 * * *", "nested": [1, None, "x"]},
            timezone="Asia/Seoul",
            aws_expression="cron(0 9 * * ? *)",
            expression_timezone="Asia/Seoul",
            target={"url": "https://example.test/", "headers": {"A": "b"}},
            retry={"max_attempts": 3},
            callback={"enabled": False},
            task_metadata={},
            schedule_name=f"tb-{task_id}",
            enabled=False,
            next_fire_at=now,
            created_at=now,
            updated_at=now,
        )

    with db_sessions() as session:
        session.add(task("00000000-0000-4000-8000-000000000001"))
        session.commit()
    with db_sessions() as session:
        insert_rows(session, [task("00000000-0000-4000-8000-000000000002")])
        session.commit()
    with db_sessions() as session:
        flushed, inserted = (
            {c.key: getattr(row, c.key) for c in Task.__mapper__.column_attrs}
            for row in session.scalars(select(Task).order_by(Task.id))
        )
    for differs in ("id", "schedule_name"):
        flushed.pop(differs), inserted.pop(differs)
    assert inserted == flushed
    assert inserted["enabled"] is False and inserted["version"] == 1  # given, and a default
    assert inserted["created_at"] == now and inserted["overlap"] == "allow"


def test_a_single_row_refused_by_the_database_raises_integrity_error(
    db_sessions: sessionmaker[Session],
) -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)

    def schedule() -> LocalSchedule:
        return LocalSchedule(
            name="tb-twice",
            arn="arn:twice",
            expression="rate(1 hour)",
            expression_timezone="UTC",
            input="{}",
            created_at=now,
            updated_at=now,
        )

    with db_sessions() as session:
        insert_rows(session, [schedule()])
        session.commit()
    with db_sessions() as session:
        with pytest.raises(IntegrityError):
            insert_rows(session, [schedule()])
        session.rollback()  # the session stays usable, as after any failed execute
        assert session.scalar(select(func.count()).select_from(LocalSchedule)) == 1


def test_insert_values_writes_what_insert_rows_writes_for_the_same_row(
    db_sessions: sessionmaker[Session],
) -> None:
    now = datetime(2026, 5, 4, 3, 2, 1, tzinfo=UTC)
    values = {
        "name": "tb-values",
        "arn": "arn:values",
        "expression": "cron(0 9 * * ? *)",
        "expression_timezone": "Europe/Berlin",
        "input": '{"a": 1}',
        "enabled": False,
        "created_at": now,
        "updated_at": now,
        "next_fire_at": now,
    }
    with db_sessions() as session:
        insert_rows(session, [LocalSchedule(**{**values, "name": "tb-object"})])
        insert_values(session, LocalSchedule, values)
        with pytest.raises(TypeError, match="no column attribute 'nope'"):
            insert_values(session, LocalSchedule, {**values, "nope": 1})
        session.commit()
    with db_sessions() as session:
        by_name = {
            row.name: {c.key: getattr(row, c.key) for c in LocalSchedule.__mapper__.column_attrs}
            for row in session.scalars(select(LocalSchedule))
        }
    assert by_name.pop("tb-object") == {**by_name.pop("tb-values"), "name": "tb-object"}
