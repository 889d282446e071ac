"""Entry points: the ASGI app (`service.main:app`, served by uvicorn) and the Lambda handler
(`service.main.handler`, Mangum). Both are built from settings read from the environment here,
at the edge, and nowhere else."""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI
from mangum import Mangum

from service.api.errors import install_error_handling, with_error_envelope_schemas
from service.domain.clock import Clock, utc_now
from service.logs import configure_logging
from service.settings import Settings
from service.tracing import TracingMiddleware, configure_tracing
from service.ui import Dashboard

if TYPE_CHECKING:  # the services load on first use (see service.api.deps): cold start
    from service.container import Container

logger = logging.getLogger("timebridge")


def dev_key_file(settings: Settings) -> Path:
    """Where the development key lives: beside a SQLite database, else in ./.timebridge."""
    from service.container import dev_dir

    return dev_dir(settings) / "dev-api-key"


def _package_version() -> str:
    try:
        return version("timebridge")
    except PackageNotFoundError:
        return "0.1.0"


def install_dev_key(container: Container, key_file: Path) -> str | None:
    """With no bootstrap key set and the local backend, make (once) and return a development
    key kept in `key_file`, so `make run` is usable at once."""
    from service.application.auth import install_key, new_key

    settings = container.settings
    if settings.bootstrap_api_key is not None:  # build_container installed it already
        return None
    if settings.backend != "local":
        return None
    if key_file.exists():
        key = key_file.read_text().strip()
    else:
        key = new_key()
        key_file.parent.mkdir(parents=True, exist_ok=True)
        key_file.write_text(key + "\n")
        key_file.chmod(0o600)
    install_key(container.sessions, key, system_admin=True)
    return key


class TimebridgeAPI(FastAPI):
    """FastAPI with the error envelope's schemas in its OpenAPI document (the error responses
    refer to them; see service.api.errors)."""

    def openapi(self) -> dict[str, Any]:
        document = super().openapi()
        if "ErrorEnvelope" not in document.get("components", {}).get("schemas", {}):
            # Stored where FastAPI caches its document, so this runs once per set of routes.
            document = self.openapi_schema = with_error_envelope_schemas(document)
        return document


def create_app(settings: Settings | None = None, *, clock: Clock = utc_now) -> FastAPI:
    """Build the HTTP API; `settings` defaults to the environment (TIMEBRIDGE_*)."""
    settings = settings if settings is not None else Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Runs under uvicorn only (Mangum's lifespan is off): wire everything and print the
        # development key before the first request.
        configure_logging()
        from service.container import build_container

        container = build_container(settings, clock=clock)
        app.state.container = container
        key_file = dev_key_file(settings)
        key = install_dev_key(container, key_file)
        if key is not None:
            print(f"Timebridge development API key: {key}  (saved in {key_file})", flush=True)
        if container.local_engine is not None and settings.embedded_engine:
            from service.adapters.scheduler.engine import EngineLocked  # local runs only

            try:
                container.local_engine.start()
            except EngineLocked as exc:
                logger.warning("embedded engine not started: %s", exc)
        yield
        container.close()
        container.engine.dispose()

    app = TimebridgeAPI(
        title="Timebridge",
        version=_package_version(),
        description="Schedule HTTP calls on AWS EventBridge Scheduler.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.clock = clock
    app.state.container_lock = threading.Lock()
    install_error_handling(app)
    # Imported here, where the first build pays for them (see the end of this module).
    from service.api.routers import executions, health, schedules, tasks, tenants, triggers

    if configure_tracing(settings):
        app.add_middleware(TracingMiddleware)  # outermost: the request span covers the rest
    app.include_router(health.router)
    app.include_router(schedules.router)
    app.include_router(tasks.router)
    app.include_router(executions.router)
    app.include_router(executions.callbacks)
    app.include_router(tenants.router)
    app.include_router(triggers.router)
    app.mount("/ui", Dashboard())  # routes and templates load on the first /ui request
    return app


def _build_for_the_process() -> FastAPI:
    """`create_app()` with the cyclic garbage collector paused, the objects it made (routes,
    models, validators: all kept until the process ends) then frozen out of its reach. The
    build allocates enough to set off a full collection, a scan of everything the interpreter
    holds (some 30 ms of a Lambda cold start) that could free nothing; frozen, they are skipped
    by every later full collection too. The price: cyclic garbage made during the build (a
    handful of objects) is never freed."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        return create_app()
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


app = _build_for_the_process()
# lifespan="off": with it on, Mangum would run start-up and shut-down on every invocation.
handler = Mangum(app, lifespan="off")
