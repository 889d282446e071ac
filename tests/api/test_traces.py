"""OpenTelemetry traces (issue 10 "Operator experience"): with an exporter configured, an API
request is a server span, the task use case a child span and the scheduler call a grandchild,
all carrying the task id; run now hands the trace on to the proxy in the event. Spans go to an
in-memory exporter. Off by default: no OpenTelemetry import without configuration."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.orm import Session, sessionmaker

from service import tracing
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.auth import install_key
from service.container import assemble
from service.main import create_app
from service.settings import Settings
from tests.api.test_tasks_api import ADMIN_KEY, task_body
from tests.application.fakes import FrozenClock
from tests.support.invokers import RecordingInvoker

INCOMING = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    tracing.configure_tracing(Settings(database_url="sqlite://"), exporter=exporter)
    yield exporter
    tracing.shutdown_tracing()


@pytest.fixture
def invoker() -> RecordingInvoker:
    return RecordingInvoker()


@pytest.fixture
def traced_client(
    spans: InMemorySpanExporter, db_sessions: sessionmaker[Session], invoker: RecordingInvoker
) -> TestClient:
    clock = FrozenClock()
    settings = Settings(database_url="sqlite://", embedded_engine=False)
    app = create_app(settings, clock=clock)  # tracing is on: the middleware is installed
    backend = LocalSchedulerBackend(db_sessions, clock=clock)
    app.state.container = assemble(settings, db_sessions, backend, clock=clock, invoker=invoker)
    install_key(db_sessions, ADMIN_KEY, system_admin=True)
    client = TestClient(app, raise_server_exceptions=False)
    client.headers["Authorization"] = f"Bearer {ADMIN_KEY}"
    return client


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    return {span.name: span for span in exporter.get_finished_spans()}


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def chain(found: dict[str, ReadableSpan], *names: str) -> None:
    """Each span is the child of the one before, in one trace."""
    for outer, inner in itertools.pairwise(names):
        assert found[outer].context is not None and found[inner].context is not None
        assert parent_of(found[inner]) == found[outer].context.span_id, (outer, inner)
        assert found[inner].context.trace_id == found[outer].context.trace_id


def test_create_update_and_cancel_are_request_use_case_and_scheduler_spans(
    traced_client: TestClient, spans: InMemorySpanExporter
) -> None:
    created = traced_client.post("/v1/tasks", json=task_body())
    assert created.status_code == 201
    task_id = created.json()["id"]
    found = by_name(spans)
    chain(found, "HTTP POST /v1/tasks", "task.create", "scheduler.create_schedule")
    assert found["task.create"].attributes is not None
    assert found["task.create"].attributes["timebridge.task_id"] == task_id
    assert found["scheduler.create_schedule"].attributes == {
        "timebridge.schedule_name": f"tb-{task_id.replace('-', '')}",
        "timebridge.task_id": task_id,
    }
    request: Any = found["HTTP POST /v1/tasks"].attributes
    assert request["http.response.status_code"] == 201 and request["http.route"] == "/v1/tasks"

    spans.clear()
    patched = traced_client.patch(
        f"/v1/tasks/{task_id}", json={"schedule": {"kind": "daily", "time": "10:00"}}
    )
    assert patched.status_code == 200
    found = by_name(spans)
    chain(found, "HTTP PATCH /v1/tasks/{task_id}", "task.update", "scheduler.update_schedule")

    spans.clear()
    assert traced_client.delete(f"/v1/tasks/{task_id}").status_code == 200
    found = by_name(spans)
    chain(found, "HTTP DELETE /v1/tasks/{task_id}", "task.cancel", "scheduler.delete_schedule")
    assert found["scheduler.delete_schedule"].attributes is not None
    assert found["scheduler.delete_schedule"].attributes["timebridge.task_id"] == task_id


def test_an_incoming_traceparent_is_continued_and_run_now_hands_the_trace_to_the_proxy(
    traced_client: TestClient, spans: InMemorySpanExporter, invoker: RecordingInvoker
) -> None:
    task_id = traced_client.post("/v1/tasks", json=task_body()).json()["id"]
    spans.clear()
    response = traced_client.post(f"/v1/tasks/{task_id}/run", headers={"traceparent": INCOMING})
    assert response.status_code == 202
    server = by_name(spans)["HTTP POST /v1/tasks/{task_id}/run"]
    assert server.context is not None
    assert f"{server.context.trace_id:032x}" == INCOMING.split("-")[1]
    (event,) = invoker.events
    _, trace_id, span_id, _ = event["traceparent"].split("-")
    assert trace_id == INCOMING.split("-")[1]
    assert span_id == f"{server.context.span_id:016x}"


def test_a_failed_request_is_still_a_span_with_its_status(
    traced_client: TestClient, spans: InMemorySpanExporter
) -> None:
    response = traced_client.post("/v1/tasks", json=task_body(schedule={"kind": "nope"}))
    assert response.status_code == 422
    request: Any = by_name(spans)["HTTP POST /v1/tasks"].attributes
    assert request["http.response.status_code"] == 422


def test_tracing_is_off_and_the_sdk_not_imported_without_an_endpoint() -> None:
    # FastAPI itself imports opentelemetry-api (its native telemetry); the SDK and the OTLP
    # exporter, the heavy part, are ours to load, and only when configured.
    code = (
        "import sys\n"
        "from service.main import app\n"
        "from service import tracing\n"
        "assert not tracing.enabled()\n"
        "heavy = ('opentelemetry.sdk', 'opentelemetry.exporter')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    env = {"TIMEBRIDGE_EMBEDDED_ENGINE": "false", "PATH": "/usr/bin:/bin"}
    output = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    )
    assert output.stdout.strip() == "[]"


def test_the_otlp_endpoint_comes_from_either_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://collector:4318")
    assert Settings().otlp_endpoint == "http://collector:4318"
    monkeypatch.setenv("TIMEBRIDGE_OTLP_ENDPOINT", "http://mine:4318")
    assert Settings().otlp_endpoint == "http://mine:4318"
    monkeypatch.delenv("OTEL_EXPORTER_OTLP_ENDPOINT")
    monkeypatch.delenv("TIMEBRIDGE_OTLP_ENDPOINT")
    assert Settings().otlp_endpoint is None


def test_with_an_endpoint_spans_are_posted_over_otlp_http() -> None:
    """The real exporter path: spans batched and POSTed to <endpoint>/v1/traces as protobuf
    (a loopback collector stands in for the real one); shut-down flushes them."""
    received: list[tuple[str, str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            received.append((self.path, self.headers.get("Content-Type", ""), body))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    collector = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=collector.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{collector.server_address[1]}"
        assert tracing.configure_tracing(Settings(database_url="sqlite://", otlp_endpoint=endpoint))
        with tracing.span("task.create", {"timebridge.task_id": "t-1"}):
            pass
        tracing.shutdown_tracing()
    finally:
        collector.shutdown()
        collector.server_close()
    ((path, content_type, body),) = received
    assert path == "/v1/traces" and content_type == "application/x-protobuf"
    assert b"task.create" in body and b"timebridge.task_id" in body and b"t-1" in body
