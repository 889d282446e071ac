"""Time-zone lookup and EventBridge Scheduler's rules for turning local wall time into instants."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from service.domain.errors import InvalidSchedule


@functools.cache
def _known_zones() -> frozenset[str]:
    return frozenset(available_timezones()) | {"UTC"}


@functools.cache
def load_zone(name: str, field: str = "timezone") -> ZoneInfo:
    """Return the IANA zone `name`, or raise InvalidSchedule naming `field`."""
    if not isinstance(name, str) or name not in _known_zones():
        raise InvalidSchedule(field, f"{name!r} is not an IANA time zone name (e.g. Asia/Seoul)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:  # pragma: no cover - listed but unloadable
        raise InvalidSchedule(field, f"{name!r} cannot be loaded: {exc}") from exc


def is_utc(zone: ZoneInfo) -> bool:
    return zone.key in ("UTC", "Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu", "UCT", "Zulu")


def resolve_local(naive: datetime, zone: ZoneInfo) -> datetime | None:
    """The UTC instant of a local wall time as EventBridge Scheduler reads it.

    A wall time that the spring-forward jump skips does not exist: None (no fire). A wall time
    that the fall-back repeats maps to its first occurrence (fold=0), so it fires once.
    """
    local = naive.replace(tzinfo=zone, fold=0)
    instant = local.astimezone(UTC)
    if instant.astimezone(zone).replace(tzinfo=None) != naive:
        return None
    return instant


def is_ambiguous(naive: datetime, zone: ZoneInfo) -> bool:
    """True when the wall time happens twice (the fall-back hour)."""
    first = naive.replace(tzinfo=zone, fold=0).utcoffset()
    second = naive.replace(tzinfo=zone, fold=1).utcoffset()
    return first != second and resolve_local(naive, zone) is not None


def to_local_naive(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def as_utc(value: datetime) -> datetime:
    """An aware UTC datetime; a naive one is taken to be UTC already."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def transitions(zone: ZoneInfo, start: datetime, end: datetime) -> list[datetime]:
    """UTC instants in [start, end) at which the zone's UTC offset changes (to the minute)."""
    if is_utc(zone):
        return []
    first_day = start.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    days = (end - first_day).days + 1
    return [t for t in _transitions_from(zone.key, first_day, days) if start <= t < end]


@functools.lru_cache(maxsize=512)
def _transitions_from(zone_key: str, first_day: datetime, days: int) -> tuple[datetime, ...]:
    zone = ZoneInfo(zone_key)
    end = first_day + timedelta(days=days)
    found: list[datetime] = []
    day = timedelta(days=1)
    cursor = first_day
    offset = cursor.astimezone(zone).utcoffset()
    while cursor < end:
        nxt = cursor + day
        nxt_offset = nxt.astimezone(zone).utcoffset()
        if nxt_offset != offset:
            # Bisect on whole minutes: the change happens in (low, high].
            low, high = 0, 24 * 60
            while high - low > 1:
                mid = (low + high) // 2
                if (cursor + timedelta(minutes=mid)).astimezone(zone).utcoffset() == offset:
                    low = mid
                else:
                    high = mid
            found.append(cursor + timedelta(minutes=high))
            offset = nxt_offset
        cursor = nxt
    return tuple(found)
