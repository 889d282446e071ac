"""The first HTTP slice: /health, POST /v1/schedules/explain, the error envelope on every failure,
the request id on every response, and the Lambda entry point (Mangum)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from mangum.types import LambdaCognitoIdentity, LambdaMobileClientContext

from service.api.deps import get_clock
from service.domain.clock import Clock
from service.main import create_app
from service.settings import Settings

# Saturday noon UTC: the next weekday 09:00 in Seoul is Monday 2026-01-05 00:00Z.
FROZEN_NOW = datetime(2026, 1, 3, 12, 0, tzinfo=UTC)
ENVELOPE_KEYS = {"code", "message", "details", "request_id", "timestamp"}


def frozen_clock() -> Clock:
    return lambda: FROZEN_NOW


@pytest.fixture
def app(tmp_path: Path) -> FastAPI:
    settings = Settings(
        backend="local", embedded_engine=False, database_url=f"sqlite:///{tmp_path}/tb.db"
    )
    built = create_app(settings)
    built.dependency_overrides[get_clock] = frozen_clock
    return built


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # raise_server_exceptions=False: see the 500 response a real client gets, not the exception.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def error_of(body: Any) -> dict[str, Any]:
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == ENVELOPE_KEYS
    assert error["timestamp"].endswith("Z")
    datetime.fromisoformat(error["timestamp"])
    return error


def test_health_answers_ok(client: TestClient) -> None:
    response = client.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_explain_translates_unix_cron_in_seoul_with_exact_fires(client: TestClient) -> None:
    response = client.post(
        "/v1/schedules/explain",
        json={
            "schedule": {"kind": "cron", "expression": "0 9 * * 1-5", "timezone": "Asia/Seoul"},
            "count": 5,
        },
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert set(view) == {"aws_expression", "mode", "description", "warnings", "next_fire_times"}
    assert view["aws_expression"] == "cron(0 9 ? * MON-FRI *)"
    assert view["mode"] == "native"
    assert view["warnings"] == []
    assert view["next_fire_times"] == [
        {"utc": f"2026-01-0{day}T00:00:00Z", "local": f"2026-01-0{day}T09:00:00+09:00"}
        for day in range(5, 10)
    ]


def test_explain_count_defaults_to_five(client: TestClient) -> None:
    response = client.post(
        "/v1/schedules/explain", json={"schedule": {"kind": "rate", "expression": "rate(1 hour)"}}
    )
    assert response.status_code == 200, response.text
    assert len(response.json()["next_fire_times"]) == 5


def test_explain_shows_chained_mode_when_aws_cron_cannot_say_it(client: TestClient) -> None:
    # Unix cron restricting both day fields fires on the 1st OR on Mondays.
    response = client.post(
        "/v1/schedules/explain",
        json={"schedule": {"kind": "cron", "expression": "0 9 1 * 1"}, "count": 5},
    )
    assert response.status_code == 200, response.text
    view = response.json()
    assert view["mode"] == "chained"
    assert view["aws_expression"] == "at(2026-01-05T09:00:00)"
    assert view["warnings"]
    assert [fire["utc"] for fire in view["next_fire_times"]] == [
        "2026-01-05T09:00:00Z",
        "2026-01-12T09:00:00Z",
        "2026-01-19T09:00:00Z",
        "2026-01-26T09:00:00Z",
        "2026-02-01T09:00:00Z",
    ]


@pytest.mark.parametrize(
    ("schedule", "field"),
    [
        ({"kind": "cron", "expression": "0 9 * *"}, "schedule.expression"),
        ({"kind": "cron"}, "schedule.expression"),
        ({"kind": "cron", "expression": "cron(0 9 ? * 0 *)"}, "schedule.expression"),
        ({"kind": "cron", "expression": "0 9 * * 1", "timezone": "Mars/Base"}, "schedule.timezone"),
        ({"kind": "hourly"}, "schedule.kind"),
        ({"kind": "daily", "time": "09:00", "colour": "red"}, "schedule.colour"),
    ],
)
def test_invalid_schedule_is_a_422_naming_the_field(
    client: TestClient, schedule: dict[str, Any], field: str
) -> None:
    response = client.post("/v1/schedules/explain", json={"schedule": schedule})
    assert response.status_code == 422
    error = error_of(response.json())
    assert error["code"] == "INVALID_SCHEDULE"
    assert [detail["field"] for detail in error["details"]] == [field]
    assert error["details"][0]["reason"]
    assert error["message"].startswith(f"{field}: ")


def test_bad_json_is_a_validation_error(client: TestClient) -> None:
    response = client.post(
        "/v1/schedules/explain",
        content=b'{"schedule": {"kind": ',
        headers={"Content-Type": "application/json"},
    )
    assert response.status_code == 422
    error = error_of(response.json())
    assert error["code"] == "VALIDATION_ERROR"
    assert error["details"][0]["field"] == "body"
    assert "JSON" in error["details"][0]["reason"]


@pytest.mark.parametrize(
    ("body", "fields"),
    [
        ({}, ["schedule"]),
        ({"schedule": "0 9 * * *"}, ["schedule"]),
        ({"schedule": {"kind": "immediate"}, "count": 0}, ["count"]),
        ({"schedule": {"kind": "immediate"}, "count": 101}, ["count"]),
        ({"schedule": {"kind": "immediate"}, "count": "5"}, ["count"]),
        ({"schedule": {"kind": "immediate"}, "timezone": "UTC"}, ["timezone"]),
    ],
)
def test_request_shape_errors_are_validation_errors_per_field(
    client: TestClient, body: dict[str, Any], fields: list[str]
) -> None:
    response = client.post("/v1/schedules/explain", json=body)
    assert response.status_code == 422
    error = error_of(response.json())
    assert error["code"] == "VALIDATION_ERROR"
    assert [detail["field"] for detail in error["details"]] == fields


def test_unknown_route_is_not_found_in_the_envelope(client: TestClient) -> None:
    response = client.get("/v1/nothing-here")
    assert response.status_code == 404
    assert error_of(response.json())["code"] == "NOT_FOUND"


def test_wrong_method_keeps_405_in_the_envelope(client: TestClient) -> None:
    response = client.get("/v1/schedules/explain")
    assert response.status_code == 405
    assert response.headers["Allow"] == "POST"
    assert error_of(response.json())["code"] == "VALIDATION_ERROR"


def test_unexpected_exception_is_internal_without_its_text(app: FastAPI) -> None:
    @app.get("/boom")
    def boom() -> None:
        raise RuntimeError("secret-value")

    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get("/boom", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert "secret-value" not in response.text
    assert "Traceback" not in response.text
    error = error_of(response.json())
    assert error["code"] == "INTERNAL"
    assert error["request_id"] == "req-500"
    assert response.headers["X-Request-Id"] == "req-500"


def test_request_id_is_echoed_on_success_and_error(client: TestClient) -> None:
    ok = client.get("/health", headers={"X-Request-Id": "abc-123"})
    assert ok.headers["X-Request-Id"] == "abc-123"
    missing = client.get("/nope", headers={"X-Request-Id": "abc-456"})
    assert missing.headers["X-Request-Id"] == "abc-456"
    assert error_of(missing.json())["request_id"] == "abc-456"


def test_request_id_is_generated_when_absent_or_not_a_plain_token(client: TestClient) -> None:
    generated = client.get("/health").headers["X-Request-Id"]
    assert len(generated) == 32
    int(generated, 16)
    replaced = client.get("/health", headers={"X-Request-Id": "x" * 500}).headers["X-Request-Id"]
    assert replaced != "x" * 500
    assert len(replaced) == 32


def test_openapi_documents_explain_with_an_example_and_the_error_envelope(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/v1/schedules/explain"]["post"]
    examples = operation["requestBody"]["content"]["application/json"]["examples"]
    assert examples["weekday-mornings"]["value"]["schedule"]["timezone"] == "Asia/Seoul"
    error_schema = operation["responses"]["422"]["content"]["application/json"]["schema"]
    assert error_schema == {"$ref": "#/components/schemas/ErrorEnvelope"}
    assert spec["info"]["title"] == "Timebridge"


def test_openapi_error_responses_refer_to_the_envelope_schemas_it_defines(
    client: TestClient,
) -> None:
    spec = client.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    referenced = set(re.findall(r'"#/components/schemas/([^"]+)"', json.dumps(spec)))
    assert referenced <= set(schemas)
    envelope_ref = {"$ref": "#/components/schemas/ErrorEnvelope"}
    unauthorized = spec["paths"]["/v1/tasks"]["get"]["responses"]["401"]
    assert unauthorized["content"]["application/json"]["schema"] == envelope_ref
    assert schemas["ErrorEnvelope"]["required"] == ["error"]
    assert set(schemas["ErrorBody"]["properties"]) == ENVELOPE_KEYS
    details = schemas["ErrorBody"]["properties"]["details"]
    assert details["items"] == {"$ref": "#/components/schemas/ErrorDetail"}
    assert set(schemas["ErrorDetail"]["required"]) == {"field", "reason"}
    assert client.get("/openapi.json").json() == spec


class LambdaContextStub:
    """Just the attributes Mangum's LambdaContext protocol names."""

    function_name = "timebridge-api"
    function_version = "$LATEST"
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:timebridge-api"
    memory_limit_in_mb = 512
    aws_request_id = "c6af9ac6-7b61-11e6-9a41-93e812345678"
    log_group_name = "/aws/lambda/timebridge-api"
    log_stream_name = "2026/01/03/[$LATEST]abcdef"
    identity: LambdaCognitoIdentity | None = None
    client_context: LambdaMobileClientContext | None = None

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def http_api_v2_event(method: str, path: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {"host": "api.example.com", "x-request-id": "lambda-req-1"},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api",
            "domainName": "api.example.com",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "203.0.113.7",
                "userAgent": "test",
            },
            "requestId": "apigw-1",
            "stage": "$default",
        },
        "isBase64Encoded": False,
    }


def test_lambda_handler_answers_an_http_api_v2_event() -> None:
    from service.main import handler

    result = handler(http_api_v2_event("GET", "/health"), LambdaContextStub())
    assert result["statusCode"] == 200
    assert result["body"] == '{"status":"ok"}'
    assert result["headers"]["x-request-id"] == "lambda-req-1"


@pytest.mark.parametrize("collecting", [True, False])
def test_importing_the_entry_point_leaves_the_collector_as_it_found_it(collecting: bool) -> None:
    """The module builds its app with the collector paused, then freezes what it built."""
    code = (
        "import gc\n"
        f"{'' if collecting else 'gc.disable()'}\n"
        "import service.main\n"
        "print(gc.isenabled(), gc.get_freeze_count() > 0)\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
        env={**os.environ, "TIMEBRIDGE_EMBEDDED_ENGINE": "false"},
    )
    assert output.stdout.split() == [str(collecting), "True"]
