"""Dependencies shared by the routers, declared once. Tests replace them through
`app.dependency_overrides` (for example `get_clock` to freeze time).

The services (and SQLAlchemy under them) are imported when the first request needs them, not
when the app is built: a Lambda's cold start pays only for what answers the request. The
dependency aliases name the real types for the type checker; FastAPI needs only `Depends`."""

from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, Header, Request
from starlette.concurrency import run_in_threadpool

from service.domain.clock import Clock, utc_now
from service.settings import Settings

if TYPE_CHECKING:
    from service.application.auth import Principal
    from service.application.history import HistoryService
    from service.application.tasks import TaskService
    from service.application.tenancy import TenancyService
    from service.application.triggers import TriggerService
    from service.container import Container


def get_clock(request: Request) -> Clock:
    """The service's one clock (the one `create_app` was given); override it to freeze time."""
    clock: Clock = getattr(request.app.state, "clock", utc_now)
    return clock


def get_settings(request: Request) -> Settings:
    """The settings `create_app` was built with."""
    settings = request.app.state.settings
    if not isinstance(settings, Settings):
        raise RuntimeError("the app was not built by service.main.create_app")
    return settings


def get_container(request: Request) -> "Container":
    """The wired services, built on first use (so importing the app stays cheap)."""
    state = request.app.state
    container: Container | None = getattr(state, "container", None)
    if container is None:
        with state.container_lock:
            container = getattr(state, "container", None)
            if container is None:
                from service.container import build_container

                container = build_container(state.settings, clock=state.clock)
                state.container = container
    return container


async def get_principal(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> "Principal":
    """Who is calling, from `Authorization: Bearer <api key | JWT>`; 401 otherwise; 429 when
    the caller's tenant is over its request rate. A key verified in the last second is answered
    here; a lookup runs in the thread pool."""
    from service.application.auth import authenticate, recently_authenticated

    container = await _container(request)
    principal = recently_authenticated(container.sessions, authorization)
    if principal is None:
        principal = await run_in_threadpool(
            authenticate, container.sessions, authorization, jwt=container.jwt
        )
    container.rate_limiter.check(principal.tenant_id)
    return principal


async def get_tasks(request: Request) -> "TaskService":
    return (await _container(request)).tasks


async def _container(request: Request) -> "Container":
    """`get_container` for async dependencies: no thread hop once the container is built."""
    container: Container | None = getattr(request.app.state, "container", None)
    if container is None:
        container = await run_in_threadpool(get_container, request)
    return container


def get_history(request: Request) -> "HistoryService":
    return get_container(request).history


def get_tenancy(request: Request) -> "TenancyService":
    return get_container(request).tenancy


def get_triggers(request: Request) -> "TriggerService":
    triggers = get_container(request).triggers
    assert triggers is not None
    return triggers


ClockDep = Annotated[Clock, Depends(get_clock)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
if TYPE_CHECKING:
    ContainerDep = Annotated[Container, Depends(get_container)]
    PrincipalDep = Annotated[Principal, Depends(get_principal)]
    TasksDep = Annotated[TaskService, Depends(get_tasks)]
    HistoryDep = Annotated[HistoryService, Depends(get_history)]
    TenancyDep = Annotated[TenancyService, Depends(get_tenancy)]
    TriggersDep = Annotated[TriggerService, Depends(get_triggers)]
else:  # the same dependencies, without importing the services to build the app
    ContainerDep = Annotated[Any, Depends(get_container)]
    PrincipalDep = Annotated[Any, Depends(get_principal)]
    TasksDep = Annotated[Any, Depends(get_tasks)]
    HistoryDep = Annotated[Any, Depends(get_history)]
    TenancyDep = Annotated[Any, Depends(get_tenancy)]
    TriggersDep = Annotated[Any, Depends(get_triggers)]
