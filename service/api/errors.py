"""The one mapping from failures to the error envelope, and the request id every response carries.

Every error leaves the service as
`{"error": {"code", "message", "details": [{"field", "reason"}], "request_id", "timestamp"}}`:
- `TimebridgeError` subclasses: their own `code` and `status`; `field`/`reason` become details;
- Starlette/FastAPI `HTTPException` (unknown route, wrong method, ...): the real status, with
  the code DESIGN.md names for it, else VALIDATION_ERROR (4xx) or INTERNAL (5xx); but a 400
  (FastAPI's answer to a body it cannot decode, e.g. not UTF-8) is bad JSON: 422 as below;
- `RequestValidationError` (bad JSON, wrong types, unknown fields): 422 VALIDATION_ERROR with one
  detail per field;
- anything else: 500 INTERNAL with a fixed message; the exception text and traceback go to the
  server log only.
"""

import logging
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from service import logs
from service.domain.clock import utc_now
from service.domain.errors import (
    InvalidRequest,
    InvalidSchedule,
    RateLimited,
    TimebridgeError,
    UpstreamError,
)

logger = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Request-Id"
# A caller's id is echoed into headers and logs, so only a plain token is taken over.
_ACCEPTABLE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

_CODE_BY_STATUS = {
    401: "UNAUTHORIZED",
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    409: "CONFLICT",
    422: "VALIDATION_ERROR",
    429: "RATE_LIMITED",
}
# Server-side failures get fixed words: their own text may carry internals.
_SERVER_MESSAGES = {
    "UPSTREAM_THROTTLED": "The scheduler backend is throttling requests; retry later.",
    "UPSTREAM_UNAVAILABLE": "The scheduler backend is unavailable; retry later.",
}
_INTERNAL_MESSAGE = "Internal server error."


class ErrorDetail(BaseModel):
    field: str
    reason: str


class ErrorBody(BaseModel):
    code: str
    message: str
    details: list[ErrorDetail]
    request_id: str
    timestamp: str


class ErrorEnvelope(BaseModel):
    """The body of every error response."""

    error: ErrorBody


_ERROR_DESCRIPTIONS = {
    401: "UNAUTHORIZED: the API key is missing, malformed, unknown or revoked",
    403: "FORBIDDEN: this API key's role may not do this",
    404: "NOT_FOUND: no such resource for this tenant",
    409: "CONFLICT: the request contradicts the stored state",
    422: "VALIDATION_ERROR or INVALID_SCHEDULE, naming the field at fault",
    429: "RATE_LIMITED (with Retry-After): this tenant sent too many requests",
    503: "UPSTREAM_THROTTLED (with Retry-After) or UPSTREAM_UNAVAILABLE: retry later",
}


# Error responses point at one shared component instead of naming the model: FastAPI builds a
# pydantic adapter for every `"model"` entry of every route (some 150 here), at import, only to
# document them; `with_error_envelope_schemas` adds the component those references need.
_ERROR_ENVELOPE_REF = "#/components/schemas/ErrorEnvelope"


def error_envelope_response(description: str) -> dict[str, Any]:
    """One OpenAPI `responses=` entry: the error envelope, with this description."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": _ERROR_ENVELOPE_REF}}},
    }


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting the error envelope for these statuses."""
    return {status: error_envelope_response(_ERROR_DESCRIPTIONS[status]) for status in statuses}


def with_error_envelope_schemas(document: dict[str, Any]) -> dict[str, Any]:
    """`document` (FastAPI's OpenAPI output) with the error envelope's schemas among its
    components, in the form FastAPI gives a response model: what `error_responses` refer to."""
    from fastapi.encoders import jsonable_encoder
    from fastapi.openapi.models import OpenAPI
    from pydantic.json_schema import models_json_schema

    _, envelope = models_json_schema(
        [(ErrorEnvelope, "serialization")], ref_template="#/components/schemas/{model}"
    )
    schemas = {**document.get("components", {}).get("schemas", {}), **envelope["$defs"]}
    components = {**document.get("components", {}), "schemas": dict(sorted(schemas.items()))}
    # FastAPI's own last step, so the added schemas take the shape the others have.
    return jsonable_encoder(  # type: ignore[no-any-return]
        OpenAPI(**{**document, "components": components}), by_alias=True, exclude_none=True
    )


def new_request_id() -> str:
    return uuid.uuid4().hex


def accepted_request_id(value: str | None) -> str:
    """The caller's `X-Request-Id` when it is a plain token, else a fresh one."""
    if value is not None and _ACCEPTABLE_REQUEST_ID.fullmatch(value):
        return value
    return new_request_id()


def request_id_of(request: Request) -> str:
    """The id `RequestIdMiddleware` gave this request (a fresh one if it never ran)."""
    value = request.scope.get("state", {}).get("request_id")
    return value if isinstance(value, str) else new_request_id()


class RequestIdMiddleware:
    """Gives every HTTP request an id (`request.state.request_id`) and echoes it in the
    `X-Request-Id` header of the response."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = accepted_request_id(Headers(scope=scope).get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        logs.request_id.set(request_id)

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", [])
                MutableHeaders(scope=message)[REQUEST_ID_HEADER] = request_id
            await send(message)

        await self.app(scope, receive, send_with_request_id)


def _timestamp() -> str:
    return f"{utc_now():%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


def error_response(
    request: Request,
    *,
    status: int,
    code: str,
    message: str,
    details: Iterable[ErrorDetail] = (),
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """Build the envelope. It sets `X-Request-Id` itself because the handler for unexpected
    exceptions runs outside `RequestIdMiddleware`."""
    request_id = request_id_of(request)
    envelope = ErrorEnvelope(
        error=ErrorBody(
            code=code,
            message=message,
            details=list(details),
            request_id=request_id,
            timestamp=_timestamp(),
        )
    )
    response_headers = {**(headers or {}), REQUEST_ID_HEADER: request_id}
    return JSONResponse(envelope.model_dump(), status_code=status, headers=response_headers)


async def _on_timebridge_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, TimebridgeError)
    details: list[ErrorDetail] = []
    if isinstance(exc, InvalidSchedule | InvalidRequest):
        details.append(ErrorDetail(field=exc.field, reason=exc.reason))
    headers: dict[str, str] = {}
    if exc.status >= 500:
        logger.error("%s: %s", exc.code, exc, exc_info=exc)
        container = getattr(request.app.state, "container", None)
        if container is not None:
            container.metrics.count("timebridge_scheduler_errors_total", code=exc.code)
        message = _SERVER_MESSAGES.get(exc.code, _INTERNAL_MESSAGE)
    else:
        message = str(exc) or HTTPStatus(exc.status).phrase
    retry_after = exc.retry_after if isinstance(exc, UpstreamError | RateLimited) else None
    if retry_after is not None:
        headers["Retry-After"] = str(retry_after)
    return error_response(
        request,
        status=exc.status,
        code=exc.code,
        message=message,
        details=details,
        headers=headers,
    )


async def _on_http_exception(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    status = exc.status_code
    if status == 400:
        # DESIGN.md has no 400: an unreadable body is a VALIDATION_ERROR like any bad JSON.
        return error_response(
            request,
            status=422,
            code="VALIDATION_ERROR",
            message="The request is not valid.",
            details=[ErrorDetail(field="body", reason="could not be decoded as JSON")],
            headers=exc.headers,
        )
    if status >= 500:
        code, message = "INTERNAL", _INTERNAL_MESSAGE
    else:
        code = _CODE_BY_STATUS.get(status, "VALIDATION_ERROR")
        message = exc.detail if isinstance(exc.detail, str) else HTTPStatus(status).phrase
    return error_response(request, status=status, code=code, message=message, headers=exc.headers)


def _field_name(location: Sequence[Any]) -> str:
    # ("body", "schedule") -> "schedule": body fields are named as the client wrote them.
    parts = [str(part) for part in location]
    if len(parts) > 1 and parts[0] == "body":
        parts = parts[1:]
    return ".".join(parts) or "body"


def validation_details(errors: Sequence[Any]) -> list[ErrorDetail]:
    """One detail per pydantic error; the offending input is never echoed back."""
    details: list[ErrorDetail] = []
    for error in errors:
        if error.get("type") == "json_invalid":
            reason = str(error.get("ctx", {}).get("error", "")) or "invalid JSON"
            details.append(ErrorDetail(field="body", reason=f"is not valid JSON: {reason}"))
            continue
        location = error.get("loc", ())
        details.append(ErrorDetail(field=_field_name(location), reason=str(error.get("msg"))))
    return details


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(
        request,
        status=422,
        code="VALIDATION_ERROR",
        message="The request is not valid.",
        details=validation_details(exc.errors()),
    )


async def _on_unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    # Starlette logs the traceback after this response is sent; the body says nothing.
    return error_response(request, status=500, code="INTERNAL", message=_INTERNAL_MESSAGE)


def install_error_handling(app: FastAPI) -> None:
    """Register the envelope for every failure and the request-id middleware on `app`."""
    app.add_middleware(RequestIdMiddleware)
    app.add_exception_handler(TimebridgeError, _on_timebridge_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(Exception, _on_unexpected_error)
