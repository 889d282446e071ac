"""The composition root: settings in, wired engine, sessions, backend and use cases out.
The API, the CLI and the Lambda handlers all build their objects here, once."""

from __future__ import annotations

import functools
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.db.session import (
    fetch_database_url,
    make_engine,
    make_session_factory,
    upgrade,
)
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import JwtVerifier, install_key
from service.application.history import HistoryService, Invoker
from service.application.limits import TenantRateLimiter
from service.application.reconcile import Reconciler
from service.application.recorder import AlertSink, LogAlertSink, Recorder
from service.application.tasks import TaskService
from service.application.tenancy import TenancyService
from service.application.triggers import TriggerService, gate_for
from service.domain.clock import Clock, utc_now
from service.domain.errors import TimebridgeError
from service.domain.provisioning import SchedulerBackend
from service.domain.targets import TargetPolicy
from service.metrics import Metrics
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
    recorder: Recorder
    history: HistoryService
    invoker: Invoker
    tenancy: TenancyService
    rate_limiter: TenantRateLimiter
    metrics: Metrics
    jwt: JwtVerifier | None = None
    signing_secret: str | None = None
    # Local only: the in-process delivery path (proxy handler + recorder) and the engine that
    # fires the local backend's schedules (started by the app's lifespan or `timebridge engine`).
    delivery: Any = field(default=None, repr=False)
    local_engine: Any = field(default=None, repr=False)
    # Events, backfill and the schedules listing (issue 9 part A).
    triggers: TriggerService | None = field(default=None, repr=False)

    def close(self) -> None:
        if self.local_engine is not None:
            self.local_engine.stop()
        close = getattr(self.invoker, "close", None)
        if close is not None:
            close()


def dev_dir(settings: Settings) -> Path:
    """Where development secrets live: beside a SQLite database, else in ./.timebridge."""
    url = settings.database_url
    if url.startswith("sqlite") and "///" in url and not url.endswith(":memory:"):
        return Path(url.split("///", 1)[1]).parent
    return Path(".timebridge")


def resolve_signing_secret(settings: Settings) -> str | None:
    """TIMEBRIDGE_SIGNING_SECRET, or with the local backend a development secret made once and
    kept beside the database, so signatures and callbacks work out of the box."""
    if settings.signing_secret is not None:
        return settings.signing_secret.get_secret_value()
    if settings.backend != "local":
        return None
    path = dev_dir(settings) / "dev-signing-secret"
    if path.exists():
        return path.read_text().strip()
    import base64

    secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


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
        dead_letter_arn=settings.schedule_dlq_arn,
    )


def configure_secrets(settings: Settings) -> None:
    """Choose the process's key for header secrets at rest (service.adapters.secrets)."""
    from service.adapters import secrets as box

    if settings.secrets_key is not None:
        box.configure(box.LocalCipher.from_text(settings.secrets_key.get_secret_value()))
    elif settings.kms_key_arn:
        box.configure(box.KmsEnvelopeCipher(settings.kms_key_arn))
    elif settings.backend == "local":
        path = dev_dir(settings) / "dev-secrets-key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(box.new_key_text() + "\n")
            path.chmod(0o600)
        box.configure(box.LocalCipher.from_text(path.read_text()))
    else:
        raise ConfigurationError(
            "header secrets need a key: set TIMEBRIDGE_SECRETS_KEY or TIMEBRIDGE_KMS_KEY_ARN"
        )


def build_container(settings: Settings, *, clock: Clock = utc_now) -> Container:
    configure_secrets(settings)
    url = settings.database_url
    if settings.database_secret_arn:
        url = fetch_database_url(settings.database_secret_arn)
    engine = make_engine(url)
    if engine.dialect.name == "sqlite":
        upgrade(engine)  # a laptop database follows the code; PostgreSQL is migrated on deploy
    sessions = make_session_factory(engine)
    backend = build_backend(settings, sessions)
    if settings.bootstrap_api_key is not None:
        install_key(sessions, settings.bootstrap_api_key.get_secret_value(), system_admin=True)
    return assemble(
        settings, sessions, backend, clock=clock, signing_secret=resolve_signing_secret(settings)
    )


def assemble(
    settings: Settings,
    sessions: sessionmaker[Session],
    backend: SchedulerBackend,
    *,
    clock: Clock = utc_now,
    invoker: Invoker | None = None,
    alerts: AlertSink | None = None,
    signing_secret: str | None = None,
) -> Container:
    """The use cases over given sessions and backend (tests hand in their own, and may hand
    in the invoker and alert sink too)."""
    engine = sessions.kw["bind"]
    if alerts is None:
        alerts = LogAlertSink()
        if settings.alert_topic_arn:
            from service.adapters.alerts import SnsAlertSink

            alerts = SnsAlertSink(settings.alert_topic_arn)
        if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
            from service.adapters.alerts import EmfAlertSink

            alerts = EmfAlertSink(alerts, settings.stage)
    metrics = Metrics()
    if os.environ.get("AWS_LAMBDA_FUNCTION_NAME"):
        from service.metrics import EmfWriter

        metrics = Metrics(emf=EmfWriter(settings.stage))  # CloudWatch embedded metrics
    recorder = Recorder(
        sessions,
        backend,
        clock=clock,
        alerts=alerts,
        metrics=metrics,
        lateness_threshold_seconds=settings.alert_lateness_seconds,
        retention_days=settings.execution_retention_days,
        # Issue 9: with no engine to ask at fire time, hold schedules at the concurrency limit.
        hold_schedules=settings.backend != "local",
        tenant_cap=settings.tenant_max_running,
    )
    if signing_secret is None and settings.signing_secret is not None:
        signing_secret = settings.signing_secret.get_secret_value()
    delivery = None
    local_engine = None
    if settings.backend == "local":
        from datetime import timedelta

        from service.adapters.invoke import LocalDelivery, ThreadInvoker, proxy_settings_for
        from service.adapters.scheduler.engine import (
            ENGINE_LOOKAHEAD,
            LocalEngine,
            sqlite_lock_path,
        )

        delivery = LocalDelivery(recorder, proxy_settings_for(settings, signing_secret))
        local_engine = LocalEngine(
            sessions,
            delivery,
            clock=clock,
            missed=recorder,
            grace=timedelta(seconds=settings.engine_grace_seconds),
            workers=settings.engine_workers,
            lock_path=sqlite_lock_path(settings.database_url),
            lookahead=ENGINE_LOOKAHEAD,
        )
        from service.application.control import ConcurrencyGate

        local_engine.gate = ConcurrencyGate(
            sessions, recorder, tenant_cap=settings.tenant_max_running, clock=clock
        )
        local_engine.dependency_gate = functools.partial(gate_for, sessions)
        if isinstance(backend, LocalSchedulerBackend):
            backend.on_change = local_engine.wake
        if invoker is None:
            invoker = ThreadInvoker(delivery)
    elif invoker is None:
        from service.adapters.invoke import DirectRunInvoker, LambdaInvoker

        assert settings.proxy_lambda_arn is not None
        invoker = DirectRunInvoker(LambdaInvoker(settings.proxy_lambda_arn), recorder)
    recorder.invoker = invoker  # runs started by outcomes (pipelines, chains) go the run path
    triggers = TriggerService(
        sessions,
        invoker,
        backend,
        clock=clock,
        backfill_rate_per_second=settings.backfill_rate_per_second,
        backfill_max=settings.backfill_max,
        background=settings.backend == "local",  # on AWS the sweeper dispatches backfills
    )
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        backend=backend,
        tasks=TaskService(
            sessions,
            _traced(backend),
            clock=clock,
            max_active_tasks=settings.max_active_tasks,
            target_policy=TargetPolicy(
                region=settings.aws_region,
                allow_cross_region=settings.allow_cross_region_targets,
                allowed_arns=settings.allowed_target_arns,
            ),
        ),
        reconciler=Reconciler(sessions, backend, clock=clock),
        recorder=recorder,
        history=HistoryService(sessions, invoker, clock=clock),
        invoker=invoker,
        tenancy=TenancyService(sessions, clock=clock),
        rate_limiter=TenantRateLimiter(settings.rate_limit_per_minute, metrics=metrics),
        metrics=metrics,
        jwt=(
            JwtVerifier(
                settings.jwt_jwks_url,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
            )
            if settings.jwt_jwks_url
            else None
        ),
        signing_secret=signing_secret,
        delivery=delivery,
        local_engine=local_engine,
        triggers=triggers,
    )


def _traced(backend: SchedulerBackend) -> SchedulerBackend:
    """The backend as the task use cases call it: in `scheduler.*` spans when tracing is on."""
    from service import tracing

    if not tracing.enabled():
        return backend
    traced: SchedulerBackend = tracing.TracedBackend(backend)
    return traced
