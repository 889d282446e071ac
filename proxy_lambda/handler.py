"""The generic HTTP-proxy Lambda: one schedule firing becomes one signed call to its target.

`handler(event, context)` is the Lambda entry point; `handle(event, send=..., settings=...,
clock=..., resolve=...)` is the same thing with its collaborators passed in. The event is the
schedule's Input (see service.domain.tasks.schedule_input) after EventBridge Scheduler filled in
the <aws.scheduler.*> context. The result is an outcome record (a JSON-ready dict) that the
recorder turns into an execution.

Failures of the target or of the event become outcomes, never exceptions: status is "success"
(2xx), "failed" (any other status), "timeout" (no response in time), "trigger_failed" (the
target could not be called: refused by the guard, unreachable, or a malformed event) or
"skipped" (error_kind OUTSIDE_WINDOW: the Input's `window` excludes the occurrence). Only the
proxy's own faults raise: `ProxyConfigurationError` for bad settings, or a callback-enabled task
without a signing secret.

The outcome record has always the same keys: version (1), occurrence_key ("<task id>:<scheduled
time>:<attempt>", None when the event is unreadable), task_id, tenant_id, scheduled_time (UTC,
"2026-11-23T09:00:00Z"), attempt, schedule_arn, execution_id, delivery_attempt (EventBridge's
attempt number), started_at, status, status_code, latency_ms (None when nothing was sent),
response_headers (content-type, retry-after, location when present), response_body (the first
4 KB, decoded as UTF-8 with replacement), response_body_truncated, redirects (hops followed),
callback_enabled, callback_timeout_seconds, error_kind and error. error_kind is one of
malformed_event, unsafe_target, dns_failure, connection_refused, connect_timeout,
connection_error, tls_error, timeout, protocol_error, too_many_redirects (None on a response).

Standard library and urllib3 only: this module is imported on every cold start.
"""

from __future__ import annotations

import functools
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Generator, Mapping
from datetime import UTC, datetime
from typing import Any, NamedTuple
from urllib.parse import urlencode, urljoin, urlsplit

from proxy_lambda.guard import (
    CheckedTarget,
    ResolutionFailed,
    Resolver,
    UnsafeTarget,
    check_target,
    resolve_host,
)
from proxy_lambda.settings import ProxyConfigurationError, ProxySettings
from proxy_lambda.signing import make_callback_token, webhook_signature
from proxy_lambda.template import EventContext, render, render_text
from proxy_lambda.transport import (
    DeliveryError,
    HeadTemplate,
    OutgoingRequest,
    Sender,
    TargetResponse,
    Urllib3Sender,
    fill_head,
    head_template,
)
from proxy_lambda.window import in_window

__all__ = [
    "DeliveryPlan",
    "DeliverySteps",
    "Invocation",
    "MalformedEvent",
    "PreparedCall",
    "ProxyConfigurationError",
    "ProxySettings",
    "delivery_steps",
    "handle",
    "handler",
    "occurrence_key",
    "parse_invocation",
    "plan_delivery",
]

Clock = Callable[[], float]
Outcome = dict[str, Any]

SUCCESS = "success"
FAILED = "failed"
TIMEOUT = "timeout"
TRIGGER_FAILED = "trigger_failed"
SKIPPED = "skipped"  # not called: outside the task's execution window

HTTP_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"})
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_TIMEOUT_SECONDS = 900.0
USER_AGENT = "Timebridge-Proxy/1"
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
# Framing and identity are the proxy's to set; a task's headers cannot override them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "keep-alive",
        "te",
        "trailer",
        "upgrade",
        "proxy-connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "idempotency-key",
    }
)
# Not carried to another origin when a redirect leaves the target's.
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization", "x-api-key"})
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_TASK_ID_CHARS = _ALNUM | frozenset("._-")
_HEADER_NAME_CHARS = _ALNUM | frozenset("!#$%&'*+-.^_`|~")

_TRACEPARENT = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")
_JSON = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)

logger = logging.getLogger("timebridge.proxy")


class MalformedEvent(ValueError):
    """The event is not a schedule Input this proxy understands."""


class Invocation(NamedTuple):
    """One firing, read from the event and checked for shape (not for safety: that is the
    guard's job at call time)."""

    task_id: str
    tenant_id: str
    attempt: int
    scheduled_time: str  # UTC, "2026-11-23T09:00:00Z"
    occurrence_key: str
    url: str  # with the task's query merged in
    method: str
    headers: dict[str, str]
    body: bytes | None
    timeout: float
    callback_enabled: bool
    callback_timeout_seconds: int | None
    schedule_arn: str | None
    execution_id: str | None
    delivery_attempt: int | None  # EventBridge's attempt number for this delivery
    # W3C trace context sent to the target: the invoker's (run now / retry from a traced API
    # request) when the event carries a valid one, else None and a fresh one per call.
    traceparent: str | None = None


def occurrence_key(task_id: str, scheduled_time: str, attempt: int) -> str:
    """The key of one attempt of one occurrence; the same on every redelivery of it."""
    return f"{task_id}:{scheduled_time}:{attempt}"


def handler(event: Any, context: Any) -> Outcome:
    """Lambda entry point: settings from the environment, the shared urllib3 sender."""
    return handle(event)


def handle(
    event: Any,
    *,
    send: Sender | None = None,
    settings: ProxySettings | None = None,
    clock: Clock = time.time,
    resolve: Resolver = resolve_host,
) -> Outcome:
    """Deliver one firing and describe what happened; see the module docstring.

    `send` defaults to a urllib3 sender shared across warm invocations, `settings` to the
    environment's, `clock` (wall time, seconds) stamps `started_at` and `webhook-timestamp`,
    `resolve` turns a host name into addresses. Raises ProxyConfigurationError for the proxy's
    own misconfiguration only.
    """
    send = send if send is not None else _shared_sender()
    steps = delivery_steps(event, settings=settings, clock=clock, resolve=resolve)
    try:
        request = next(steps)
        while True:
            reply: TargetResponse | DeliveryError
            try:
                reply = send(request)
            except DeliveryError as exc:
                reply = exc
            request = steps.send(reply)
    except StopIteration as done:
        outcome: Outcome = done.value
        return outcome


DeliverySteps = Generator[OutgoingRequest, TargetResponse | DeliveryError, Outcome]


class DeliveryPlan(NamedTuple):
    """What a call needs that does not depend on when it is made: the event read and checked
    for shape (templates filled in) and, for a target named by IP address, the guard's verdict
    on it (no lookup, so it cannot change). A sender that claims firings before they are due
    (the local engine) makes the plan then; the call itself is still made at its time, with
    its own timestamp, signature, timeouts and window check.

    `prepared` is the rest of the call worked out ahead (None: worked out at call time). A
    plan serves one call: its trace context is that call's."""

    invocation: Invocation
    first_hop: CheckedTarget | None  # None: the guard checks the target at call time
    prepared: PreparedCall | None = None


class PreparedCall(NamedTuple):
    """A planned call's parts that do not depend on its time, made the way the call makes
    them: the outcome record before the call (`started_at` and `response_headers` filled
    in at call time), the identity headers (the webhook-timestamp filled in at call time),
    and, when the first hop is checked ahead, its request headers (identity, signature and
    Host included) and its head on the wire (see proxy_lambda.transport.head_template)."""

    outcome: Outcome
    identity: dict[str, str]
    headers: dict[str, str] | None
    head: HeadTemplate | None


class _LookupNeeded(Exception):
    pass


def _no_lookup(host: str, port: int) -> list[str]:
    raise _LookupNeeded(host)


def plan_delivery(event: Any, *, settings: ProxySettings | None = None) -> DeliveryPlan | None:
    """The plan for `event`, or None when there is nothing to plan ahead: an event that is
    not an http call (a dependency verdict, an `event` target) or that the call-time path
    refuses (it then reports the refusal as it would without a plan)."""
    settings = settings if settings is not None else _environment_settings()
    if not isinstance(event, dict) or event.get("gate") or _is_event_target(event):
        return None
    try:
        invocation = parse_invocation(event)
        if "template" in event:
            invocation = _rendered(event, invocation, settings)
    except MalformedEvent:
        return None
    try:
        first_hop: CheckedTarget | None = check_target(
            invocation.url,
            allowed_hosts=settings.allowed_hosts,
            allowed_networks=settings.allowed_networks,
            resolve=_no_lookup,
        )
    except (_LookupNeeded, UnsafeTarget, ResolutionFailed):
        first_hop = None
    try:
        identity = _identity_base(invocation, settings, new_traceparent())
    except ProxyConfigurationError:
        return DeliveryPlan(invocation, first_hop)  # raised again at call time
    headers: dict[str, str] | None = None
    head: HeadTemplate | None = None
    if first_hop is not None:
        headers = _hop_headers(invocation.headers, invocation.body, identity)
        if settings.signing_keys:
            headers["webhook-signature"] = ""
        headers["Host"] = first_hop.host_header
        request = _request(invocation.method, first_hop, headers, invocation.body, 0.0, settings)
        head = head_template(request, _CALL_TIME_HEADERS)
    outcome = _outcome(invocation, 0.0)
    return DeliveryPlan(invocation, first_hop, PreparedCall(outcome, identity, headers, head))


# The headers of a planned call given their values at call time.
_CALL_TIME_HEADERS = ("webhook-timestamp", "webhook-signature")


def delivery_steps(
    event: Any,
    *,
    settings: ProxySettings | None = None,
    clock: Clock = time.time,
    resolve: Resolver = resolve_host,
    plan: DeliveryPlan | None = None,
) -> DeliverySteps:
    """`handle` without the I/O: yields each request to send (checked by the guard, signed,
    with the time left for it as its timeout) and takes back the response or the
    DeliveryError it ended with; returns the outcome record. An asynchronous sender drives
    the same steps, so every call it makes gets the same guard, signature and timeouts.
    `plan` (from `plan_delivery` on the same event and settings) skips reading the event
    again."""
    settings = settings if settings is not None else _environment_settings()
    started = clock()
    if isinstance(event, dict) and (event.get("gate") or _is_event_target(event)):
        return _without_call(event, started)
    if plan is not None:
        invocation = plan.invocation
    else:
        try:
            invocation = parse_invocation(event)
        except MalformedEvent as exc:
            outcome = _malformed_outcome(event, started)
            outcome["error"] = str(exc)
            logger.warning("malformed event: %s", exc)
            return outcome
        if isinstance(event, dict) and "template" in event:
            try:
                invocation = _rendered(event, invocation, settings)
            except MalformedEvent as exc:
                outcome = _outcome(invocation, started)
                _fail(outcome, TRIGGER_FAILED, "malformed_event", str(exc), None)
                return outcome
    prepared = plan.prepared if plan is not None else None
    if prepared is not None:
        outcome = dict(prepared.outcome)
        outcome["started_at"] = _utc_text(started)
        outcome["response_headers"] = {}
    else:
        outcome = _outcome(invocation, started)
    windowed = isinstance(event, dict) and event.get("window") and invocation.attempt == 1
    if windowed and _outside_window(event, invocation, outcome):
        return outcome
    if prepared is not None:
        identity = dict(prepared.identity)
        identity["webhook-timestamp"] = str(int(started))
    else:
        identity = _identity_headers(invocation, settings, int(started))
    first_hop = plan.first_hop if plan is not None else None
    yield from _deliver(
        invocation, identity, int(started), outcome, settings, resolve, first_hop, prepared
    )
    if logger.isEnabledFor(logging.INFO):
        detail = outcome["status_code"] or outcome["error_kind"]
        logger.info("%s: %s %s", invocation.occurrence_key, outcome["status"], detail)
    return outcome


def parse_invocation(event: Any) -> Invocation:
    """The firing an event describes. Raises MalformedEvent naming the first bad field."""
    document = _document(event)
    version = document.get("version")
    if type(version) is not int or version != 1:
        raise MalformedEvent("version must be 1")
    task_id = document.get("task_id")
    if not isinstance(task_id, str) or not _is_task_id(task_id):
        raise MalformedEvent("task_id must be 1-64 letters, digits, '.', '_' or '-'")
    tenant_id = document.get("tenant_id")
    if not isinstance(tenant_id, str) or not tenant_id:
        raise MalformedEvent("tenant_id must be a non-empty string")
    attempt = document.get("attempt")
    if type(attempt) is not int or attempt < 1:
        raise MalformedEvent("attempt must be a whole number from 1")
    context = _mapping(document.get("context"), "context")
    scheduled_time = _utc_time(context.get("scheduled_time"))
    target = _mapping(document.get("target"), "target")
    if target.get("type", "http") != "http":
        raise MalformedEvent("target.type must be 'http'")
    url = target.get("url")
    if not isinstance(url, str) or not url:
        raise MalformedEvent("target.url must be a non-empty string")
    method = target.get("method") or "POST"
    if not isinstance(method, str) or method.upper() not in HTTP_METHODS:
        raise MalformedEvent(f"target.method must be one of {', '.join(sorted(HTTP_METHODS))}")
    method = method.upper()
    headers = _task_headers(target.get("headers"))
    timeout = target.get("timeout_seconds")
    if timeout is None:
        timeout = DEFAULT_TIMEOUT_SECONDS
    if type(timeout) is not int and type(timeout) is not float:
        raise MalformedEvent("target.timeout_seconds must be a number")
    if not 0 < timeout <= MAX_TIMEOUT_SECONDS:
        raise MalformedEvent(
            f"target.timeout_seconds must be over 0 and at most {MAX_TIMEOUT_SECONDS:g}"
        )
    callback = _mapping(document.get("callback") or {}, "callback")
    enabled = callback.get("enabled", False)
    if not isinstance(enabled, bool):
        raise MalformedEvent("callback.enabled must be true or false")
    callback_timeout = callback.get("timeout_seconds")
    if callback_timeout is not None and (type(callback_timeout) is not int or callback_timeout < 1):
        raise MalformedEvent("callback.timeout_seconds must be a whole number from 1")
    return Invocation(
        task_id=task_id,
        tenant_id=tenant_id,
        attempt=attempt,
        scheduled_time=scheduled_time,
        occurrence_key=occurrence_key(task_id, scheduled_time, attempt),
        url=_with_query(url, target.get("query")),
        method=method,
        headers=headers,
        body=_body(target.get("body"), method, headers),
        timeout=float(timeout),
        callback_enabled=enabled,
        callback_timeout_seconds=callback_timeout,
        schedule_arn=_text_or_none(context.get("schedule_arn")),
        execution_id=_text_or_none(context.get("execution_id")),
        delivery_attempt=_whole_or_none(context.get("attempt_number")),
        traceparent=_traceparent_or_none(document.get("traceparent")),
    )


def _deliver(
    invocation: Invocation,
    identity: Mapping[str, str],
    timestamp: int,
    outcome: Outcome,
    settings: ProxySettings,
    resolve: Resolver,
    first_hop: CheckedTarget | None = None,
    prepared: PreparedCall | None = None,
) -> Generator[OutgoingRequest, TargetResponse | DeliveryError, None]:
    """Call the target, following redirects when allowed (each hop checked, the first one
    possibly already: `first_hop`, its request then possibly made ahead too: `prepared`);
    fill `outcome`. Yields each request and takes back its response or DeliveryError."""
    url, method, body = invocation.url, invocation.method, invocation.body
    task_headers = invocation.headers
    began = time.perf_counter()
    deadline = began + invocation.timeout
    for hop in range(settings.max_redirects + 1):
        try:
            checked = (
                first_hop
                if hop == 0 and first_hop is not None
                else check_target(
                    url,
                    allowed_hosts=settings.allowed_hosts,
                    allowed_networks=settings.allowed_networks,
                    resolve=resolve,
                )
            )
        except (UnsafeTarget, ResolutionFailed) as exc:
            kind = "unsafe_target" if isinstance(exc, UnsafeTarget) else "dns_failure"
            message = f"redirect to {url} refused: {exc}" if hop else str(exc)
            _fail(outcome, TRIGGER_FAILED, kind, message, began if hop else None)
            return
        remaining = deadline - time.perf_counter()
        if remaining <= 0:
            _fail(outcome, TIMEOUT, "timeout", "the time allowed ran out during redirects", began)
            return
        ahead = prepared if hop == 0 and checked is first_hop else None
        if ahead is not None and ahead.headers is not None:
            headers = dict(ahead.headers)  # the same keys in the same order: values replaced
            headers.update(identity)
        else:
            headers = _hop_headers(task_headers, body, identity)
        if settings.signing_keys:
            # Signed per hop: a 303 drops the body, and the signature covers what is sent.
            headers["webhook-signature"] = webhook_signature(
                settings.signing_keys, invocation.occurrence_key, timestamp, body or b""
            )
        headers["Host"] = checked.host_header
        wire = fill_head(ahead.head, headers, body) if ahead and ahead.head else None
        request = _request(method, checked, headers, body, remaining, settings, wire)
        response = yield request
        if isinstance(response, DeliveryError):
            status = TIMEOUT if response.kind == "timeout" else TRIGGER_FAILED
            _fail(outcome, status, response.kind, str(response), began)
            return
        _record_response(outcome, response, began, hop)
        location = response.headers.get("location")
        if not (settings.follow_redirects and response.status in REDIRECT_STATUSES and location):
            return
        origin = _origin(url)
        try:
            url = urljoin(url, location)
        except ValueError:
            message = "the redirect location cannot be parsed"
            _fail(outcome, TRIGGER_FAILED, "unsafe_target", message, began)
            return
        if response.status == 303 or (response.status in (301, 302) and method == "POST"):
            method = "HEAD" if method == "HEAD" else "GET"
            body = None
        if _origin(url) != origin:
            task_headers = {
                name: value
                for name, value in task_headers.items()
                if name.lower() not in CREDENTIAL_HEADERS
            }
    message = f"stopped after {settings.max_redirects} redirects"
    _fail(outcome, TRIGGER_FAILED, "too_many_redirects", message, began)


def _hop_headers(
    task_headers: Mapping[str, str], body: bytes | None, identity: Mapping[str, str]
) -> dict[str, str]:
    """A hop's request headers before its signature and Host."""
    headers = dict(task_headers)
    names = {name.lower() for name in headers} if headers else frozenset()
    if body is not None and "content-type" not in names:
        headers["Content-Type"] = "application/json"
    if "user-agent" not in names:
        headers["User-Agent"] = USER_AGENT
    headers.update(identity)
    return headers


def _request(
    method: str,
    checked: CheckedTarget,
    headers: dict[str, str],
    body: bytes | None,
    timeout: float,
    settings: ProxySettings,
    wire: bytes | None = None,
) -> OutgoingRequest:
    return OutgoingRequest(
        method,
        checked.scheme,
        checked.host,
        checked.port,
        checked.addresses,
        checked.request_target,
        headers,
        body,
        timeout,
        settings.body_limit,
        wire,
    )


def _identity_headers(
    invocation: Invocation, settings: ProxySettings, timestamp: int
) -> dict[str, str]:
    headers = _identity_base(invocation, settings, new_traceparent())
    headers["webhook-timestamp"] = str(timestamp)
    return headers


def _identity_base(
    invocation: Invocation, settings: ProxySettings, fresh_traceparent: str
) -> dict[str, str]:
    """The identity headers but for the webhook-timestamp (left empty, in its place)."""
    key = invocation.occurrence_key
    headers = {
        "webhook-id": key,
        "webhook-timestamp": "",
        "Idempotency-Key": key,
        "Timebridge-Task-Id": invocation.task_id,
        "Timebridge-Scheduled-Time": invocation.scheduled_time,
        "Timebridge-Attempt": str(invocation.attempt),
        "traceparent": invocation.traceparent or fresh_traceparent,
    }
    if invocation.callback_enabled:
        headers["Timebridge-Callback-Url"] = _callback_url(invocation, settings)
    return headers


def _callback_url(invocation: Invocation, settings: ProxySettings) -> str:
    if not settings.signing_keys:
        raise ProxyConfigurationError(
            "a callback-enabled task needs TIMEBRIDGE_SIGNING_SECRET to make its token"
        )
    token = make_callback_token(invocation.occurrence_key, settings.signing_keys)
    return f"{settings.public_url}/v1/callbacks/{token}"


def _rendered(
    document: dict[str, Any], invocation: Invocation, settings: ProxySettings
) -> Invocation:
    """The invocation with the target's placeholders filled in (see proxy_lambda.template)."""
    template = document.get("template")
    if not isinstance(template, dict):
        raise MalformedEvent("template must be an object")
    name = template.get("task_name")
    table = {
        "task.id": invocation.task_id,
        "task.name": name if isinstance(name, str) else "",
        "scheduled_time": invocation.scheduled_time,
        "scheduled_time_local": _local_time(invocation.scheduled_time, template.get("timezone")),
        "attempt": invocation.attempt,
        "occurrence_key": invocation.occurrence_key,
        "callback_url": (
            _callback_url(invocation, settings) if invocation.callback_enabled else None
        ),
    }
    context = EventContext(table, document.get("event"))
    target = dict(_mapping(document.get("target"), "target"))
    try:
        target["body"] = render(target.get("body"), context)
        for field in ("query", "headers"):
            values = target.get(field)
            if isinstance(values, dict):
                target[field] = {
                    key: render_text(value, context) if isinstance(value, str) else value
                    for key, value in values.items()
                }
    except KeyError as exc:
        raise MalformedEvent(f"unknown placeholder {{{{{exc.args[0]}}}}}") from None
    return parse_invocation({**document, "target": target})


def _is_event_target(document: dict[str, Any]) -> bool:
    target = document.get("target")
    return isinstance(target, dict) and target.get("type") == "event"


def _without_call(document: dict[str, Any], started: float) -> Outcome:
    """A firing that calls nothing: a dependency gate closed by the recorder (the occurrence
    is reported `skipped`, DEPENDENCY_FAILED), or an `event` target, whose topic and payload
    go back in the outcome record for the recorder to publish within the tenant."""
    try:
        task_id = document.get("task_id")
        tenant_id = document.get("tenant_id")
        attempt = document.get("attempt")
        if not isinstance(task_id, str) or not _is_task_id(task_id):
            raise MalformedEvent("task_id must be 1-64 letters, digits, '.', '_' or '-'")
        if not isinstance(tenant_id, str) or not tenant_id:
            raise MalformedEvent("tenant_id must be a non-empty string")
        if type(attempt) is not int or attempt < 1:
            raise MalformedEvent("attempt must be a whole number from 1")
        context = _mapping(document.get("context"), "context")
        scheduled_time = _utc_time(context.get("scheduled_time"))
    except MalformedEvent as exc:
        malformed = _malformed_outcome(document, started)
        malformed["error"] = str(exc)
        return malformed
    key = occurrence_key(task_id, scheduled_time, attempt)
    outcome: Outcome = {
        "version": 1,
        "occurrence_key": key,
        "task_id": task_id,
        "tenant_id": tenant_id,
        "scheduled_time": scheduled_time,
        "attempt": attempt,
        "schedule_arn": _text_or_none(context.get("schedule_arn")),
        "execution_id": _text_or_none(context.get("execution_id")),
        "delivery_attempt": _whole_or_none(context.get("attempt_number")),
        "started_at": _utc_text(started),
        **_no_result(),
        "callback_enabled": False,
        "callback_timeout_seconds": None,
    }
    if document.get("gate"):
        outcome["status"] = "skipped"
        outcome["error_kind"] = str(document["gate"])[:32]
        outcome["error"] = "a dependency's latest execution did not succeed; nothing was called"
        return outcome
    target = document["target"]
    topic = target.get("topic")
    if not isinstance(topic, str) or not topic:
        _fail(outcome, TRIGGER_FAILED, "malformed_event", "target.topic must be a string", None)
        return outcome
    template = document.get("template")
    name = template.get("task_name") if isinstance(template, dict) else None
    values = {
        "task.id": task_id,
        "task.name": name if isinstance(name, str) else "",
        "scheduled_time": scheduled_time,
        "scheduled_time_local": _local_time(
            scheduled_time, template.get("timezone") if isinstance(template, dict) else None
        ),
        "attempt": attempt,
        "occurrence_key": key,
        "callback_url": None,
    }
    try:
        payload = render(target.get("payload"), EventContext(values, document.get("event")))
    except KeyError as exc:
        message = f"unknown placeholder {{{{{exc.args[0]}}}}}"
        _fail(outcome, TRIGGER_FAILED, "malformed_event", message, None)
        return outcome
    outcome["status"] = SUCCESS
    outcome["published"] = {"topic": topic, "payload": payload}
    return outcome


def _local_time(utc_text: str, zone_name: Any) -> str:
    """The scheduled time in the task's zone with its offset (UTC if the zone is unknown here:
    the proxy carries no time-zone database of its own)."""
    moment = datetime.fromisoformat(utc_text.replace("Z", "+00:00"))
    if isinstance(zone_name, str) and zone_name not in ("", "UTC"):
        try:
            from zoneinfo import ZoneInfo

            return moment.astimezone(ZoneInfo(zone_name)).isoformat()
        except (ValueError, OSError, KeyError):
            pass
    return utc_text


def _record_response(outcome: Outcome, response: TargetResponse, began: float, hop: int) -> None:
    outcome["status"] = SUCCESS if 200 <= response.status < 300 else FAILED
    outcome["status_code"] = response.status
    outcome["latency_ms"] = _elapsed_ms(began)
    outcome["response_headers"] = response.headers
    outcome["response_body"] = response.body.decode("utf-8", errors="replace")
    outcome["response_body_truncated"] = response.truncated
    outcome["redirects"] = hop


def _outside_window(event: dict[str, Any], invocation: Invocation, outcome: Outcome) -> bool:
    """An occurrence whose scheduled time is outside the task's execution window is not called:
    the outcome says `skipped` / OUTSIDE_WINDOW and the recorder skips or defers it. Retries
    (attempt > 1) belong to an occurrence that was inside, and are not checked again."""
    window = event["window"]
    try:
        when = datetime.fromisoformat(invocation.scheduled_time.replace("Z", "+00:00"))
        inside = isinstance(window, Mapping) and in_window(window, when)
    except (KeyError, ValueError, TypeError, LookupError) as exc:
        _fail(outcome, TRIGGER_FAILED, "malformed_event", f"window: {exc}", None)
        return True
    if inside:
        return False
    policy = event.get("outside_window") if event.get("outside_window") == "defer" else "skip"
    _fail(outcome, SKIPPED, "OUTSIDE_WINDOW", f"outside the execution window ({policy})", None)
    return True


def _fail(outcome: Outcome, status: str, kind: str, message: str, began: float | None) -> None:
    outcome["status"] = status
    outcome["error_kind"] = kind
    outcome["error"] = message
    if began is not None:
        outcome["latency_ms"] = _elapsed_ms(began)


def _elapsed_ms(began: float) -> int:
    return round((time.perf_counter() - began) * 1000)


def _outcome(invocation: Invocation, started: float) -> Outcome:
    """The record of a well-formed firing before delivery fills in what happened."""
    return {
        "version": 1,
        "occurrence_key": invocation.occurrence_key,
        "task_id": invocation.task_id,
        "tenant_id": invocation.tenant_id,
        "scheduled_time": invocation.scheduled_time,
        "attempt": invocation.attempt,
        "schedule_arn": invocation.schedule_arn,
        "execution_id": invocation.execution_id,
        "delivery_attempt": invocation.delivery_attempt,
        "started_at": _utc_text(started),
        **_no_result(),
        "callback_enabled": invocation.callback_enabled,
        "callback_timeout_seconds": invocation.callback_timeout_seconds,
    }


def _no_result() -> Outcome:
    """The result fields before (or without) any delivery: a trigger failure until known."""
    return {
        "status": TRIGGER_FAILED,
        "status_code": None,
        "latency_ms": None,
        "response_headers": {},
        "response_body": None,
        "response_body_truncated": False,
        "redirects": 0,
        "error_kind": None,
        "error": None,
    }


def _malformed_outcome(event: Any, started: float) -> Outcome:
    """The same record for an event that could not be read: whatever identifies it, kept."""
    try:
        document = _document(event)
    except MalformedEvent:
        document = {}
    context = document.get("context")
    context = context if isinstance(context, dict) else {}
    attempt = document.get("attempt")
    return {
        "version": 1,
        "occurrence_key": None,
        "task_id": _text_or_none(document.get("task_id")),
        "tenant_id": _text_or_none(document.get("tenant_id")),
        "scheduled_time": _text_or_none(context.get("scheduled_time")),
        "attempt": attempt if type(attempt) is int else None,
        "schedule_arn": _text_or_none(context.get("schedule_arn")),
        "execution_id": _text_or_none(context.get("execution_id")),
        "delivery_attempt": _whole_or_none(context.get("attempt_number")),
        "started_at": _utc_text(started),
        **_no_result(),
        "callback_enabled": False,
        "callback_timeout_seconds": None,
        "error_kind": "malformed_event",
    }


def _utc_text(seconds: float) -> str:
    """`seconds` (Unix time) as `datetime.fromtimestamp(seconds, UTC).isoformat()` writes it,
    with Z: the microseconds rounded the same way (half to even), the rest of the text made
    once per second (a stamp per call, thousands a second in a burst)."""
    fraction, whole = math.modf(seconds)
    micro = round(fraction * 1e6)
    if micro >= 1_000_000:
        whole, micro = whole + 1, micro - 1_000_000
    elif micro < 0:
        whole, micro = whole - 1, micro + 1_000_000
    prefix = _second_text(int(whole))
    return f"{prefix}.{micro:06d}Z" if micro else prefix + "Z"


@functools.lru_cache(maxsize=16)
def _second_text(whole: int) -> str:
    return datetime.fromtimestamp(whole, UTC).isoformat().removesuffix("+00:00")


def _document(event: Any) -> dict[str, Any]:
    if type(event) is dict:
        return event
    if isinstance(event, str | bytes | bytearray):
        try:
            event = json.loads(event)
        except ValueError:
            raise MalformedEvent("the event is not JSON") from None
    if not isinstance(event, dict):
        raise MalformedEvent("the event must be a JSON object")
    return event


def _mapping(value: Any, field: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise MalformedEvent(f"{field} must be an object")
    return value


def _is_task_id(text: str) -> bool:
    return 0 < len(text) <= 64 and text[0] in _ALNUM and _TASK_ID_CHARS.issuperset(text)


def _utc_time(value: Any) -> str:
    """The scheduled time, validated and written as UTC with a Z."""
    if not isinstance(value, str):
        raise MalformedEvent("context.scheduled_time must be a string")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise MalformedEvent(
            f"context.scheduled_time {value[:64]!r} is not an ISO 8601 time"
        ) from None
    if moment.tzinfo is None:
        raise MalformedEvent("context.scheduled_time must carry an offset or Z")
    if len(value) == 20 and value[10] == "T" and value[19] == "Z":
        return value  # already "YYYY-MM-DDTHH:MM:SSZ", the form EventBridge writes
    moment = moment.astimezone(UTC)
    spec = "microseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def _task_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise MalformedEvent("target.headers must be an object")
    headers: dict[str, str] = {}
    for name, text in value.items():
        if not isinstance(name, str) or not name or not _HEADER_NAME_CHARS.issuperset(name):
            raise MalformedEvent(f"target.headers: {str(name)[:64]!r} is not a header name")
        if not isinstance(text, str) or not _is_header_value(text):
            raise MalformedEvent(f"target.headers.{name} must be text without line breaks")
        lowered = name.lower()
        if lowered not in RESERVED_HEADERS and not lowered.startswith("timebridge-"):
            headers[name] = text
    return headers


def _is_header_value(text: str) -> bool:
    """Visible characters, spaces and tabs, Latin-1 at most: what goes on the wire unchanged."""
    if text.isascii() and text.isprintable():
        return True
    return all(c == "\t" or " " <= c <= "~" or "\xa0" <= c <= "\xff" for c in text)


def _with_query(url: str, query: Any) -> str:
    if query is None or query == {}:
        return url
    if not isinstance(query, dict):
        raise MalformedEvent("target.query must be an object")
    pairs: list[tuple[str, str]] = []
    for name, value in query.items():
        if isinstance(value, bool):
            pairs.append((str(name), "true" if value else "false"))
        elif isinstance(value, str | int | float):
            pairs.append((str(name), str(value)))
        else:
            raise MalformedEvent(f"target.query.{name} must be a string or a number")
    base = url.partition("#")[0]
    joiner = "" if base.endswith(("?", "&")) else "&" if "?" in base else "?"
    return base + joiner + urlencode(pairs)


def _body(body: Any, method: str, headers: Mapping[str, str]) -> bytes | None:
    if method in ("GET", "HEAD") or body is None:
        return None
    if isinstance(body, str | list | dict) and not body:
        return None
    try:
        if isinstance(body, str) and any(name.lower() == "content-type" for name in headers):
            return body.encode("utf-8")  # the task chose its own media type: sent as written
        return _JSON.encode(body).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise MalformedEvent(f"target.body cannot be sent: {exc}") from None


def _traceparent_or_none(value: Any) -> str | None:
    """A W3C traceparent (version 00, non-zero ids) as sent, else None (a bad one is dropped,
    not fatal: tracing never stops a delivery)."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None or set(match.group(1)) == {"0"} or set(match.group(2)) == {"0"}:
        return None
    return value


def new_traceparent() -> str:
    """A fresh sampled W3C traceparent: the root of this call's trace at the target."""
    ids = secrets.token_hex(24)  # one read of the system's randomness for both ids
    return f"00-{ids[:32]}-{ids[32:]}-01"


def _text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _whole_or_none(value: Any) -> int | None:
    if type(value) is int:
        return value
    if isinstance(value, str) and value.isdigit() and value.isascii():
        return int(value)
    return None


def _origin(url: str) -> tuple[str, str] | None:
    try:
        parts = urlsplit(url)
    except ValueError:
        return None  # the guard refuses such a URL before anything is sent
    return parts.scheme.lower(), parts.netloc.rpartition("@")[2].lower()


@functools.cache
def _environment_settings() -> ProxySettings:
    return ProxySettings.from_env()


@functools.cache
def _shared_sender() -> Sender:
    return Urllib3Sender()
