"""The composition root: settings in, wired engine, sessions, backend and use cases out.
The API, the CLI and the Lambda handlers all build their objects here, once."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.session import make_engine, make_session_factory, upgrade
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.application.reconcile import Reconciler
from service.application.tasks import TaskService
from service.domain.clock import Clock, utc_now
from service.domain.errors import TimebridgeError
from service.domain.provisioning import SchedulerBackend
from service.settings import Settings


class ConfigurationError(TimebridgeError):
    """A setting the chosen mode needs is missing or wrong."""


@dataclass
class Container:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    backend: SchedulerBackend
    tasks: TaskService
    reconciler: Reconciler


def build_backend(settings: Settings, sessions: sessionmaker[Session]) -> SchedulerBackend:
    if settings.backend == "local":
        return LocalSchedulerBackend(sessions, group=settings.schedule_group)
    missing = [
        f"TIMEBRIDGE_{name.upper()}"
        for name in ("proxy_lambda_arn", "scheduler_role_arn")
        if not getattr(settings, name)
    ]
    if missing:
        raise ConfigurationError(f"the eventbridge backend needs {' and '.join(missing)}")
    from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend

    assert settings.proxy_lambda_arn is not None and settings.scheduler_role_arn is not None
    return EventBridgeSchedulerBackend(
        group=settings.schedule_group,
        target_arn=settings.proxy_lambda_arn,
        role_arn=settings.scheduler_role_arn,
        kms_key_arn=settings.kms_key_arn,
    )


def build_container(settings: Settings, *, clock: Clock = utc_now) -> Container:
    engine = make_engine(settings.database_url)
    if engine.dialect.name == "sqlite":
        upgrade(engine)  # a laptop database follows the code; PostgreSQL is migrated on deploy
    sessions = make_session_factory(engine)
    backend = build_backend(settings, sessions)
    if settings.bootstrap_api_key is not None:
        install_key(sessions, settings.bootstrap_api_key.get_secret_value(), system_admin=True)
    return assemble(settings, sessions, backend, clock=clock)


def assemble(
    settings: Settings,
    sessions: sessionmaker[Session],
    backend: SchedulerBackend,
    *,
    clock: Clock = utc_now,
) -> Container:
    """The use cases over given sessions and backend (tests hand in their own)."""
    engine = sessions.kw["bind"]
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        backend=backend,
        tasks=TaskService(sessions, backend, clock=clock),
        reconciler=Reconciler(sessions, backend, clock=clock),
    )
