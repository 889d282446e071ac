"""Verified API keys are remembered for VERIFIED_TTL only, and `insert_rows` writes what a flush
would (defaults included)."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import ApiKey, LocalSchedule
from service.adapters.db.session import insert_rows
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
