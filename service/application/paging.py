"""Keyset pagination shared by the list endpoints: newest first by (created_at, id), with an
opaque cursor naming the last row of the previous page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select
from sqlalchemy.orm import Session, sessionmaker

from service.domain.errors import InvalidRequest


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def stamp(moment: datetime | None) -> str | None:
    """A stored time as the API shows it: UTC to the microsecond, with a Z."""
    return None if moment is None else f"{moment.astimezone(UTC):%Y-%m-%dT%H:%M:%S.%fZ}"


def encode_cursor(created: datetime, row_id: str) -> str:
    return f"{created.astimezone(UTC):%Y%m%dT%H%M%S%f}_{row_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """(created_at, id) of the row a cursor names; InvalidRequest for anything else."""
    stamp, _, row_id = cursor.partition("_")
    try:
        created = datetime.strptime(stamp, "%Y%m%dT%H%M%S%f").replace(tzinfo=UTC)
    except ValueError as exc:
        raise InvalidRequest("cursor", "is not a cursor this API returned") from exc
    if not is_uuid(row_id):
        raise InvalidRequest("cursor", "is not a cursor this API returned")
    return created, row_id


def check_limit(limit: int) -> None:
    if not 1 <= limit <= 500:
        raise InvalidRequest("limit", "must be 1-500")


def newest_first(
    sessions: sessionmaker[Session],
    query: Select[Any],
    model: Any,
    *,
    limit: int,
    cursor: str | None,
) -> tuple[list[Any], str | None]:
    """One page of `query` over `model` (which has `created_at` and `id`), newest first, after
    the row `cursor` names; returns the rows and the cursor of the next page (None at the end)."""
    check_limit(limit)
    if cursor is not None:
        created, last_id = decode_cursor(cursor)
        query = query.where(
            (model.created_at < created) | ((model.created_at == created) & (model.id < last_id))
        )
    query = query.order_by(model.created_at.desc(), model.id.desc()).limit(limit + 1)
    with sessions() as session:
        rows = list(session.scalars(query))
    more = len(rows) > limit
    rows = rows[:limit]
    last: Any = rows[-1] if more and rows else None
    return rows, (encode_cursor(last.created_at, last.id) if last is not None else None)
