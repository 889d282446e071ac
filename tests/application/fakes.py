"""Test doubles around real backends: a frozen clock and fault injection."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.models import Tenant
from service.domain.errors import UpstreamUnavailable
from service.domain.provisioning import (
    ScheduleDefinition,
    ScheduleInfo,
    SchedulerBackend,
    ScheduleSummary,
)


class FrozenClock:
    def __init__(self, now: datetime = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Crash(BaseException):
    """The process dying: not an Exception, so no compensation code runs."""


class FaultyBackend:
    """Wraps a real backend; `fault` decides what the next mutating call does:
    None (works), "raise" (fails before doing anything) or "crash" (works, then the process
    dies before the caller can record it)."""

    def __init__(self, inner: SchedulerBackend) -> None:
        self.inner = inner
        self.fault: str | None = None
        self.calls = 0

    def _around(self, action: Callable[[], object]) -> object:
        self.calls += 1
        fault, self.fault = self.fault, None
        if fault == "raise":
            raise UpstreamUnavailable("injected backend failure")
        result = action()
        if fault == "crash":
            raise Crash("injected crash after the backend call")
        return result

    def create(self, definition: ScheduleDefinition, *, client_token: str) -> str:
        return str(self._around(lambda: self.inner.create(definition, client_token=client_token)))

    def update(self, definition: ScheduleDefinition) -> str:
        return str(self._around(lambda: self.inner.update(definition)))

    def delete(self, name: str) -> bool:
        return bool(self._around(lambda: self.inner.delete(name)))

    def get(self, name: str) -> ScheduleInfo | None:
        return self.inner.get(name)

    def list(self) -> Iterator[ScheduleSummary]:
        return self.inner.list()


def add_tenant(sessions: sessionmaker[Session], name: str = "team-a") -> str:
    tenant_id = f"00000000-0000-4000-8000-{abs(hash(name)) % 10**12:012d}"
    with sessions() as session:
        session.add(Tenant(id=tenant_id, name=name, created_at=datetime.now(UTC)))
        session.commit()
    return tenant_id
