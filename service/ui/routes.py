"""The dashboard at `/ui`: server-rendered pages over the same application services and the
same authorization as the HTTP API.

Signing in checks an API key exactly as `Authorization: Bearer` does and keeps it in an
HttpOnly, SameSite=Strict cookie (Secure over https), so revoking the key signs the browser out
at its next page. Every POST carries a CSRF token derived from the key (see `views.csrf_token`)
and is refused when its Origin names another site. Actions call the API's own route functions,
so roles, audit records and errors are the API's. An application error is shown on the page with
its code and message, with the status the API would answer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from http import HTTPStatus
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute, Route, Router

from service.api.deps import get_container, get_principal
from service.api.routers.executions import retry_execution, run_task
from service.application.auth import Principal
from service.domain import executions as execution_states
from service.domain import tasks as task_rules
from service.domain.errors import InvalidRequest, NotFound, TimebridgeError, Unauthorized
from service.ui import views

if TYPE_CHECKING:
    from jinja2 import Environment

COOKIE = "timebridge_ui_key"
_TEMPLATES = Path(__file__).parent / "templates"
_MAX_FORM_BYTES = 8192
_MAX_ID = 64
# Server-side failures get fixed words, as in the API's envelope.
_SERVER_MESSAGES = {
    "UPSTREAM_THROTTLED": "The scheduler backend is throttling requests; retry later.",
    "UPSTREAM_UNAVAILABLE": "The scheduler backend is unavailable; retry later.",
}
_NOTICES = {
    "retried": "Retry started: a new attempt is pending; its outcome appears here when it ends.",
    "ran": "Run started: the new execution is pending.",
    "signed-out": "You are signed out.",
}


@functools.cache
def _environment() -> Environment:
    # Imported on the first page only: the API's cold import on Lambda does not pay for it.
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    environment = Environment(
        loader=FileSystemLoader(_TEMPLATES),
        autoescape=select_autoescape(default=True, default_for_string=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    environment.globals["symbols"] = views.STATUS_SYMBOLS
    environment.globals["retryable"] = views.RETRYABLE
    return environment


def _render(
    request: Request,
    template: str,
    http_status: int = 200,
    *,
    key: str | None = None,
    **context: Any,
) -> HTMLResponse:
    notice = _NOTICES.get(request.query_params.get("notice", ""))
    html = (
        _environment()
        .get_template(template)
        .render(
            csrf=views.csrf_token(key) if key else None,
            signed_in=key is not None,
            notice=notice,
            path=request.url.path,
            **context,
        )
    )
    return HTMLResponse(html, status_code=http_status, headers={"Cache-Control": "no-store"})


def _error_page(request: Request, exc: TimebridgeError, key: str | None) -> HTMLResponse:
    if exc.status >= 500:
        message = _SERVER_MESSAGES.get(exc.code, "Internal server error.")
    else:
        message = str(exc) or HTTPStatus(exc.status).phrase
    field = getattr(exc, "field", None)
    reason = getattr(exc, "reason", None)
    return _render(
        request,
        "error.html",
        exc.status,
        key=key,
        code=exc.code,
        message=message,
        detail=f"{field}: {reason}" if field and reason else None,
        title=HTTPStatus(exc.status).phrase,
    )


def _signin_redirect() -> RedirectResponse:
    return RedirectResponse("/ui/signin", status_code=303)


async def _signed_in(request: Request) -> tuple[str, Principal] | None:
    """The key in the cookie and its principal; None when there is none. A key that no longer
    authenticates raises Unauthorized (shown as a message with the sign-in form)."""
    key = request.cookies.get(COOKIE)
    if not key:
        return None
    principal = await get_principal(request, f"Bearer {key}")
    return key, principal


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Browsers send Origin on every cross-site POST; its absence is a same-site form or a
        # non-browser client, which has no cookie to abuse. "null" (sandboxed frames) is refused.
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise InvalidRequest("form", f"is larger than {_MAX_FORM_BYTES} bytes")
    try:
        fields = parse_qs(body.decode(), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        raise InvalidRequest("form", "is not a URL-encoded form") from None
    return {name: values[0] for name, values in fields.items()}


def _checked_id(value: str, what: str) -> str:
    if len(value) > _MAX_ID:
        raise NotFound(f"{what} {value[:_MAX_ID]}... not found")
    return value


def _option(value: str | None, allowed: tuple[str, ...], field: str) -> str | None:
    if not value:
        return None
    if value not in allowed:
        raise InvalidRequest(field, f"must be one of {', '.join(allowed)}")
    return value


PageBuilder = Callable[[str, Principal], Response]


async def _page(request: Request, build: PageBuilder) -> Response:
    """Run `build` (in the thread pool: it reads the database) for the signed-in caller; send
    a visitor to sign in; show any application error as a page."""
    key: str | None = None
    try:
        signed = await _signed_in(request)
        if signed is None:
            return _signin_redirect()
        key, principal = signed
        return await run_in_threadpool(build, key, principal)
    except Unauthorized as exc:
        response = _render(request, "signin.html", 401, message=str(exc), code=exc.code)
        response.delete_cookie(COOKIE, path="/ui")
        return response
    except TimebridgeError as exc:
        return _error_page(request, exc, key)


async def _action(request: Request, act: Callable[[Principal], str]) -> Response:
    """A POST from a dashboard form: same-origin, valid CSRF token, then `act`, which returns
    where to go next (303, so a reload does not repeat it)."""
    key: str | None = None
    try:
        signed = await _signed_in(request)
        if signed is None:
            return _signin_redirect()
        key, principal = signed
        form = await _form(request)
        if not _same_origin(request) or not views.csrf_ok(key, form.get("csrf")):
            return _render(
                request,
                "error.html",
                403,
                key=key,
                code="FORBIDDEN",
                message="This form is stale or came from another site; reload the page and "
                "try again.",
                detail=None,
                title="Forbidden",
            )
        target = await run_in_threadpool(act, principal)
        return RedirectResponse(target, status_code=303)
    except Unauthorized as exc:
        response = _render(request, "signin.html", 401, message=str(exc), code=exc.code)
        response.delete_cookie(COOKIE, path="/ui")
        return response
    except TimebridgeError as exc:
        return _error_page(request, exc, key)


# --- signing in and out ------------------------------------------------------------------------


async def home(request: Request) -> Response:
    if request.cookies.get(COOKIE):
        return RedirectResponse("/ui/tasks", status_code=303)
    return _signin_redirect()


async def signin_form(request: Request) -> Response:
    return _render(request, "signin.html", message=None, code=None)


async def signin(request: Request) -> Response:
    try:
        form = await _form(request)
        if not _same_origin(request):
            raise Unauthorized("this sign-in form came from another site")
        key = form.get("api_key", "").strip()
        if not key:
            raise InvalidRequest("api_key", "is required")
        await get_principal(request, f"Bearer {key}")
    except (Unauthorized, InvalidRequest) as exc:
        return _render(request, "signin.html", exc.status, message=str(exc), code=exc.code)
    except TimebridgeError as exc:
        return _error_page(request, exc, None)
    response = RedirectResponse("/ui/tasks", status_code=303)
    response.set_cookie(
        COOKIE,
        key,
        path="/ui",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        max_age=12 * 3600,
    )
    return response


async def signout(request: Request) -> Response:
    key = request.cookies.get(COOKIE)
    form = await _form(request)
    if key and not (_same_origin(request) and views.csrf_ok(key, form.get("csrf"))):
        return _render(
            request,
            "error.html",
            403,
            key=None,
            code="FORBIDDEN",
            message="This form is stale or came from another site; reload the page.",
            detail=None,
            title="Forbidden",
        )
    response = RedirectResponse("/ui/signin?notice=signed-out", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response


# --- pages -------------------------------------------------------------------------------------


async def tasks_page(request: Request) -> Response:
    params = request.query_params

    def build(key: str, principal: Principal) -> Response:
        container = get_container(request)
        status = _option(params.get("status"), task_rules.TASK_STATUSES, "status")
        page = container.tasks.list(
            principal.tenant_id, status=status, limit=50, cursor=params.get("cursor") or None
        )
        return _render(
            request,
            "tasks.html",
            key=key,
            title="Tasks",
            tasks=page.items,
            status=status,
            statuses=task_rules.TASK_STATUSES,
            next_link=_next_link(request, page.next_cursor),
        )

    return await _page(request, build)


async def task_page(request: Request) -> Response:
    task_id = str(request.path_params["task_id"])

    def build(key: str, principal: Principal) -> Response:
        container = get_container(request)
        task = container.tasks.get(principal.tenant_id, _checked_id(task_id, "task"))
        history = container.history.list_for_task(principal.tenant_id, task["id"], limit=20)
        now = request.app.state.clock()
        return _render(
            request,
            "task.html",
            key=key,
            title=f"Task {task['name']}",
            task=task,
            timeline=views.task_timeline(task, now),
            executions=history.items,
            can_act=_can(principal, "editor"),
        )

    return await _page(request, build)


async def executions_page(request: Request) -> Response:
    params = request.query_params

    def build(key: str, principal: Principal) -> Response:
        container = get_container(request)
        status = _option(params.get("status"), execution_states.EXECUTION_STATUSES, "status")
        page = container.history.list(
            principal.tenant_id, status=status, limit=50, cursor=params.get("cursor") or None
        )
        threshold = container.settings.alert_lateness_seconds
        return _render(
            request,
            "executions.html",
            key=key,
            title="Executions",
            executions=page.items,
            status=status,
            statuses=execution_states.EXECUTION_STATUSES,
            chart=views.lateness_chart(page.items, threshold),
            threshold=threshold,
            next_link=_next_link(request, page.next_cursor),
            can_act=_can(principal, "editor"),
        )

    return await _page(request, build)


async def alerts_page(request: Request) -> Response:
    params = request.query_params

    def build(key: str, principal: Principal) -> Response:
        container = get_container(request)
        page = container.history.alerts(
            principal.tenant_id, limit=50, cursor=params.get("cursor") or None
        )
        return _render(
            request,
            "alerts.html",
            key=key,
            title="Alerts",
            alerts=page.items,
            next_link=_next_link(request, page.next_cursor),
        )

    return await _page(request, build)


# --- actions -----------------------------------------------------------------------------------


async def retry(request: Request) -> Response:
    execution_id = str(request.path_params["execution_id"])

    def act(principal: Principal) -> str:
        container = get_container(request)
        started = retry_execution(
            _checked_id(execution_id, "execution"),
            principal,
            container.history,
            container.tenancy,
        )
        return f"/ui/tasks/{started['task_id']}?notice=retried"

    return await _action(request, act)


async def run(request: Request) -> Response:
    task_id = str(request.path_params["task_id"])

    def act(principal: Principal) -> str:
        container = get_container(request)
        run_task(_checked_id(task_id, "task"), principal, container.history, container.tenancy)
        return f"/ui/tasks/{task_id}?notice=ran"

    return await _action(request, act)


def _can(principal: Principal, role: str) -> bool:
    try:
        principal.require(role)
    except TimebridgeError:
        return False
    return True


def _next_link(request: Request, cursor: str | None) -> str | None:
    if cursor is None:
        return None
    query = {k: v for k, v in request.query_params.items() if k not in ("cursor", "notice")}
    query["cursor"] = cursor
    return f"{request.url.path}?{urlencode(query)}"


async def unknown_page(request: Request) -> Response:
    """Any other address under /ui: a page saying so, not the API's JSON."""
    unknown = str(request.path_params["unknown"])
    key = request.cookies.get(COOKIE)
    return _error_page(request, NotFound(f"there is no page /ui/{unknown[:100]}"), key)


def build_router() -> Router:
    """The dashboard's routes, relative to its mount point (`/ui`)."""
    routes: list[BaseRoute] = [
        Route("/", home, methods=["GET"]),
        Route("/signin", signin_form, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        Route("/tasks", tasks_page, methods=["GET"]),
        Route("/tasks/{task_id}", task_page, methods=["GET"]),
        Route("/tasks/{task_id}/run", run, methods=["POST"]),
        Route("/executions", executions_page, methods=["GET"]),
        Route("/executions/{execution_id}/retry", retry, methods=["POST"]),
        Route("/alerts", alerts_page, methods=["GET"]),
        Route("/{unknown:path}", unknown_page, methods=["GET"]),
    ]
    return Router(routes=routes)
