"""OpenTelemetry traces, off unless an OTLP endpoint is configured.

`configure_tracing` is called once by `create_app` (and the recorder/engine entry points may
call it too); only then are the OpenTelemetry packages imported, so the API's cold import on
Lambda pays nothing when tracing is off. Everything else here is cheap to call when it is off:
`span` is a no-op context manager and `current_traceparent` returns None.

Spans: `HTTP <method> <route>` for each API request (continuing an incoming `traceparent`),
`task.<action>` around the task use cases with `timebridge.task_id`, and
`scheduler.<operation>` around each backend call (EventBridge or the local table) with
`timebridge.task_id` and `timebridge.schedule_name`.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

from service.settings import Settings

_P = ParamSpec("_P")
_R = TypeVar("_R")

_lock = threading.Lock()
_tracer: Any = None  # an opentelemetry Tracer once configured
_provider: Any = None


def enabled() -> bool:
    return _tracer is not None


def configure_tracing(settings: Settings, *, exporter: Any = None) -> bool:
    """Start tracing when `settings.otlp_endpoint` is set (spans batched to
    `<endpoint>/v1/traces` over OTLP/HTTP) or when `exporter` is given (tests pass an in-memory
    one; its spans are exported synchronously). Returns whether tracing is on. Idempotent for
    the same configuration; a second call with an exporter replaces the first."""
    global _tracer, _provider
    if exporter is None and not settings.otlp_endpoint:
        return enabled()
    with _lock:
        if _tracer is not None and exporter is None:
            return True
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        provider = TracerProvider(
            resource=Resource.create({"service.name": settings.otel_service_name})
        )
        if exporter is not None:
            provider.add_span_processor(SimpleSpanProcessor(exporter))
        else:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            endpoint = settings.otlp_endpoint or ""
            if not endpoint.rstrip("/").endswith("/v1/traces"):
                endpoint = endpoint.rstrip("/") + "/v1/traces"
            provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint)))
        if _provider is not None:
            _provider.shutdown()
        _provider = provider
        _tracer = provider.get_tracer("timebridge")
    return True


def shutdown_tracing() -> None:
    """Flush and stop (tests, and the app's shut-down)."""
    global _tracer, _provider
    with _lock:
        if _provider is not None:
            _provider.shutdown()
        _tracer = None
        _provider = None


@contextmanager
def span(name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[Any]:
    """A span named `name` under the current one; yields it (None when tracing is off)."""
    tracer = _tracer
    if tracer is None:
        yield None
        return
    with tracer.start_as_current_span(name, attributes=dict(attributes or {})) as current:
        yield current


def traced_task_action(action: str) -> Callable[[Callable[_P, _R]], Callable[_P, _R]]:
    """Decorate a TaskService method `(self, tenant_id, [task_id,] ...)` returning a task view
    (or a (view, created) pair): one `task.<action>` span carrying the task id."""

    def decorate(method: Callable[_P, _R]) -> Callable[_P, _R]:
        @functools.wraps(method)
        def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
            if _tracer is None:
                return method(*args, **kwargs)
            with span(f"task.{action}", {"timebridge.tenant_id": str(args[1])}) as current:
                if len(args) > 2 and isinstance(args[2], str):
                    current.set_attribute("timebridge.task_id", args[2])
                result = method(*args, **kwargs)
                view = result[0] if isinstance(result, tuple) else result
                if isinstance(view, dict) and "id" in view:
                    current.set_attribute("timebridge.task_id", str(view["id"]))
                return result

        return wrapper

    return decorate


def current_traceparent() -> str | None:
    """The W3C `traceparent` of the current span, to hand to the proxy; None when off."""
    if _tracer is None:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent")


class TracedBackend:
    """A SchedulerBackend whose calls are `scheduler.<operation>` spans. Installed by the
    container only when tracing is on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:  # anything else the adapter offers
        return getattr(self.inner, name)

    def create(self, definition: Any, *, client_token: str, **extra: Any) -> str:
        """`extra`: what the inner backend's create also takes (the local one's `also`)."""
        with span("scheduler.create_schedule", _schedule_attributes(definition.name)):
            result: str = self.inner.create(definition, client_token=client_token, **extra)
            return result

    def get(self, name: str) -> Any:
        with span("scheduler.get_schedule", _schedule_attributes(name)):
            return self.inner.get(name)

    def update(self, definition: Any) -> str:
        with span("scheduler.update_schedule", _schedule_attributes(definition.name)):
            result: str = self.inner.update(definition)
            return result

    def delete(self, name: str) -> bool:
        with span("scheduler.delete_schedule", _schedule_attributes(name)):
            return bool(self.inner.delete(name))

    def list(self) -> Iterator[Any]:
        with span("scheduler.list_schedules"):
            items = list(self.inner.list())
        return iter(items)


def _schedule_attributes(name: str) -> dict[str, str]:
    from service.domain.provisioning import task_id_for

    attributes = {"timebridge.schedule_name": name}
    task_id = task_id_for(name)  # the task's own schedule or one of its retries
    if task_id is not None:
        attributes["timebridge.task_id"] = task_id
    return attributes


class TracingMiddleware:
    """ASGI: one server span per HTTP request, continuing the caller's `traceparent`."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or _tracer is None:
            await self.app(scope, receive, send)
            return
        from opentelemetry.trace import SpanKind
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        headers = {
            key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]
        }
        parent = TraceContextTextMapPropagator().extract(headers)
        method = scope["method"]
        with _tracer.start_as_current_span(
            f"HTTP {method}",
            context=parent,
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method, "url.path": scope["path"]},
        ) as current:

            async def send_with_status(message: Any) -> None:
                if message["type"] == "http.response.start":
                    current.set_attribute("http.response.status_code", message["status"])
                await send(message)

            await self.app(scope, receive, send_with_status)
            route = scope.get("route")
            template = getattr(route, "path", None)
            if template:
                current.update_name(f"HTTP {method} {template}")
                current.set_attribute("http.route", template)
