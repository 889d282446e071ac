"""Keyset pagination shared by the list endpoints: newest first by (created_at, id), with an
opaque cursor naming the last row of the previous page."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from service.domain.errors import InvalidRequest


def is_uuid(value: str) -> bool:
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


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
