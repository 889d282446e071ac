"""Tasks: statuses, the target and retry settings a task carries, and the Input its schedule
hands to the proxy at fire time. Standard library only."""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from proxy_lambda.template import NAMES as TEMPLATE_NAMES
from proxy_lambda.template import has_placeholders, is_event_name, placeholders_in
from service.domain.errors import InvalidRequest
from service.domain.targets import DIRECT_TYPES, normalize_direct_target

PROVISIONING = "provisioning"
SCHEDULED = "scheduled"
PAUSED = "paused"
COMPLETED = "completed"
FAILED = "failed"
CANCELLED = "cancelled"
TASK_STATUSES = (PROVISIONING, SCHEDULED, PAUSED, COMPLETED, FAILED, CANCELLED)
TERMINAL_STATUSES = (COMPLETED, FAILED, CANCELLED)
LIVE_STATUSES = (SCHEDULED, PAUSED)
ACTIVE_STATUSES = (PROVISIONING, SCHEDULED, PAUSED)  # what counts against a tenant's cap

MAX_INPUT_BYTES = 256 * 1024  # EventBridge Scheduler's limit on a target's Input
HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE", "HEAD")
SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})
REDACTED = "***"
DEFAULT_TIMEOUT_SECONDS = 30
MAX_TIMEOUT_SECONDS = 900
DEFAULT_RETRY = {"max_attempts": 6, "base_delay_seconds": 60, "max_delay_seconds": 3600}
DEFAULT_CALLBACK = {"enabled": False, "timeout_seconds": 3600}
# Cloud metadata endpoints are refused at creation, whatever the allow-list says.
METADATA_HOSTS = frozenset(
    {"169.254.169.254", "fd00:ec2::254", "metadata.google.internal", "100.100.100.200"}
)

# Filled in by EventBridge Scheduler at fire time; the local engine substitutes the same names.
CONTEXT_ATTRIBUTES = {
    "schedule_arn": "<aws.scheduler.schedule-arn>",
    "scheduled_time": "<aws.scheduler.scheduled-time>",
    "execution_id": "<aws.scheduler.execution-id>",
    "attempt_number": "<aws.scheduler.attempt-number>",
}


def normalize_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """Validate a target and fill its defaults; InvalidRequest names the field. `type` picks
    the member of the union (service.domain.targets.DIRECT_TYPES besides `http`)."""
    kind = target.get("type", "http")
    if isinstance(kind, str) and kind in DIRECT_TYPES:
        return normalize_direct_target(target)
    if kind == "event":
        return normalize_event_target(target)
    if kind != "http":
        known = ", ".join(["http", *DIRECT_TYPES])
        raise InvalidRequest("target.type", f"{kind!r} is not a target type; known: {known}")
    url = target.get("url")
    if not isinstance(url, str) or not url:
        raise InvalidRequest("target.url", "is required")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise InvalidRequest("target.url", "must start with http:// or https://")
    host = (parts.hostname or "").lower()
    if not host:
        raise InvalidRequest("target.url", "has no host")
    if host in METADATA_HOSTS or _is_link_local(host):
        raise InvalidRequest("target.url", f"{host} is a metadata or link-local address")
    method = str(target.get("method", "POST")).upper()
    if method not in HTTP_METHODS:
        raise InvalidRequest("target.method", f"must be one of {', '.join(HTTP_METHODS)}")
    headers = target.get("headers") or {}
    if not isinstance(headers, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
    ):
        raise InvalidRequest("target.headers", "must map header names to strings")
    query = target.get("query") or {}
    if not isinstance(query, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str | int | float | bool) for k, v in query.items()
    ):
        raise InvalidRequest("target.query", "must map names to strings or numbers")
    timeout = target.get("timeout_seconds", DEFAULT_TIMEOUT_SECONDS)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float):
        raise InvalidRequest("target.timeout_seconds", "must be a number")
    if not 1 <= timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidRequest("target.timeout_seconds", f"must be 1-{MAX_TIMEOUT_SECONDS}")
    marked = target.get("secret_headers") or []
    if not isinstance(marked, list) or not all(
        isinstance(name, str) and 0 < len(name) <= 128 for name in marked
    ):
        raise InvalidRequest("target.secret_headers", "must list header names")
    fields = {"type", "url", "method", "headers", "query", "body", "timeout_seconds"}
    unknown = set(target) - fields - {"secret_headers"}
    if unknown:
        raise InvalidRequest(f"target.{sorted(unknown)[0]}", "is not a field of an http target")
    return {
        "type": "http",
        "url": url,
        "method": method,
        "headers": dict(headers),
        "query": dict(query),
        "body": target.get("body"),
        "timeout_seconds": timeout,
        **({"secret_headers": sorted({name.lower() for name in marked})} if marked else {}),
    }


def normalize_event_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """An `event` target: when the task fires it publishes `payload` on `topic` within the
    task's tenant (Timebridge's own topics, see service.domain.triggers)."""
    from service.domain.triggers import check_topic

    unknown = set(target) - {"type", "topic", "payload"}
    if unknown:
        raise InvalidRequest(f"target.{sorted(unknown)[0]}", "is not a field of an event target")
    topic = check_topic(target.get("topic"), "target.topic")
    payload = target.get("payload")
    if len(json.dumps(payload, default=str).encode()) > 64 * 1024:
        raise InvalidRequest("target.payload", "is larger than 64 KB")
    return {"type": "event", "topic": topic, "payload": payload}


def _is_link_local(host: str) -> bool:
    if ":" not in host and not host.replace(".", "").isdigit():
        return False  # a name: an IP address is dotted digits, or has colons (IPv6)
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return address.is_link_local


def normalize_retry(retry: Mapping[str, Any] | None) -> dict[str, int]:
    values = {**DEFAULT_RETRY, **(retry or {})}
    unknown = set(values) - set(DEFAULT_RETRY)
    if unknown:
        raise InvalidRequest(f"retry.{sorted(unknown)[0]}", "is not a retry setting")
    limits = {"max_attempts": (1, 20), "base_delay_seconds": (1, 86400)}
    limits["max_delay_seconds"] = (1, 86400)
    out: dict[str, int] = {}
    for key, (low, high) in limits.items():
        value = values[key]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise InvalidRequest(f"retry.{key}", f"must be a whole number {low}-{high}")
        out[key] = value
    if out["max_delay_seconds"] < out["base_delay_seconds"]:
        raise InvalidRequest("retry.max_delay_seconds", "must be at least base_delay_seconds")
    return out


def normalize_callback(callback: Mapping[str, Any] | None) -> dict[str, Any]:
    values = {**DEFAULT_CALLBACK, **(callback or {})}
    unknown = set(values) - set(DEFAULT_CALLBACK)
    if unknown:
        raise InvalidRequest(f"callback.{sorted(unknown)[0]}", "is not a callback setting")
    if not isinstance(values["enabled"], bool):
        raise InvalidRequest("callback.enabled", "must be true or false")
    timeout = values["timeout_seconds"]
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 1 <= timeout <= 604800:
        raise InvalidRequest("callback.timeout_seconds", "must be a whole number 1-604800")
    return {"enabled": values["enabled"], "timeout_seconds": timeout}


def check_placeholders(
    target: Mapping[str, Any], callback: Mapping[str, Any], *, event_names: bool = False
) -> None:
    """Refuse placeholders the proxy cannot fill: unknown names, the callback URL of a task
    whose callbacks are off, or `event.*` names in a task no event starts (`event_names`
    False). InvalidRequest names the field."""
    if target.get("type") == "event" and callback.get("enabled"):
        raise InvalidRequest("callback.enabled", "an event target calls nothing to report back")
    for field in ("body", "query", "headers", "payload"):
        used = placeholders_in(target.get(field))
        if event_names:
            used = {name for name in used if not is_event_name(name)}
        unknown = sorted(used - TEMPLATE_NAMES)
        if unknown:
            raise InvalidRequest(
                f"target.{field}",
                f"unknown placeholder {{{{{unknown[0]}}}}}; known: "
                + ", ".join(sorted(TEMPLATE_NAMES)),
            )
        if "callback_url" in used and not callback.get("enabled"):
            raise InvalidRequest(f"target.{field}", "{{callback_url}} needs callback.enabled: true")


def secret_header_names(target: Mapping[str, Any]) -> frozenset[str]:
    """Lower-case names of the target's secret headers: the usual credentials and any the task
    marks in `secret_headers`. Their values are encrypted at rest and never shown."""
    marked = target.get("secret_headers") or ()
    return SECRET_HEADERS | {str(name).lower() for name in marked}


def redact_target(target: Mapping[str, Any]) -> dict[str, Any]:
    """The target as shown to people: secret header values replaced."""
    if "headers" not in target:  # direct targets carry no headers
        return dict(target)
    secret = secret_header_names(target)
    headers = {
        name: REDACTED if name.lower() in secret else value
        for name, value in (target.get("headers") or {}).items()
    }
    return {**target, "headers": headers}


def keep_redacted_secrets(new: Mapping[str, Any], old: Mapping[str, Any]) -> dict[str, Any]:
    """A target sent back as it was shown (secret values as "***") keeps the stored secrets:
    a client may round-trip GET -> PATCH without knowing them."""
    if "headers" not in new:
        return dict(new)
    old_headers = {name.lower(): value for name, value in (old.get("headers") or {}).items()}
    headers = {
        name: old_headers.get(name.lower(), value) if value == REDACTED else value
        for name, value in (new.get("headers") or {}).items()
    }
    return {**new, "headers": headers}


def schedule_input(
    *,
    task_id: str,
    tenant_id: str,
    target: Mapping[str, Any],
    callback: Mapping[str, Any],
    attempt: int = 1,
    scheduled_time: str | None = None,
    task_name: str | None = None,
    timezone: str | None = None,
    control: Mapping[str, Any] | None = None,
    gate: str | None = None,
    dependent: bool = False,
) -> str:
    """The JSON a schedule hands to the proxy; InvalidRequest when over AWS's 256 KB.

    `control` (issue 9) adds what the proxy and the local engine act on without the database:
    the task's execution `window` with `outside_window`, a non-zero `priority`, and an
    `overlap` / `max_concurrency` other than the defaults. Tasks without them keep the Input
    they had.

    `gate` (e.g. DEPENDENCY_FAILED) tells the proxy to call nothing and report the occurrence
    as skipped: the recorder sets it while a dependency's latest execution has not succeeded.
    `dependent` marks a task with dependencies, so the local engine re-reads them at fire time.

    A target with placeholders also carries what the proxy needs to fill them that it cannot
    know otherwise (the task's name and time zone); other Inputs stay as they were.

    `scheduled_time` pins the occurrence for retries and manual runs: a retry's own schedule
    fires later than the occurrence it repeats, so its Input carries the original time as text
    instead of EventBridge's placeholder.
    """
    context = dict(CONTEXT_ATTRIBUTES)
    if scheduled_time is not None:
        context["scheduled_time"] = scheduled_time
    document = {
        "version": 1,
        "task_id": task_id,
        "tenant_id": tenant_id,
        "attempt": attempt,
        "target": dict(target),
        "callback": dict(callback),
        "context": context,
    }
    if has_placeholders(target):
        document["template"] = {"task_name": task_name, "timezone": timezone}
    if control is not None and control.get("window"):
        document["window"] = dict(control["window"])
        document["outside_window"] = control.get("outside_window") or "skip"
    if control is not None and control.get("priority"):
        document["priority"] = int(control["priority"])
    if control is not None and control.get("overlap", "allow") != "allow":
        document["overlap"] = control["overlap"]
    if control is not None and control.get("max_concurrency") is not None:
        document["max_concurrency"] = int(control["max_concurrency"])
    if gate is not None:
        document["gate"] = gate
    if dependent:
        document["dependent"] = True
    text = json.dumps(document, separators=(",", ":"), sort_keys=True)
    if len(text.encode()) > MAX_INPUT_BYTES:
        raise InvalidRequest(
            "target", f"the schedule Input would be {len(text.encode())} bytes; AWS allows 256 KB"
        )
    return text


def fill_context(
    input_text: str,
    *,
    schedule_arn: str,
    scheduled_time: str,
    execution_id: str,
    attempt_number: int = 1,
) -> str:
    """The Input as EventBridge Scheduler delivers it: each context placeholder replaced by its
    value, as plain text substitution on the JSON (the values need no JSON escaping: ARNs, ids
    and times hold no quotes or backslashes)."""
    values = {
        CONTEXT_ATTRIBUTES["schedule_arn"]: schedule_arn,
        CONTEXT_ATTRIBUTES["scheduled_time"]: scheduled_time,
        CONTEXT_ATTRIBUTES["execution_id"]: execution_id,
        CONTEXT_ATTRIBUTES["attempt_number"]: str(attempt_number),
    }
    for placeholder, value in values.items():
        if '"' in value or "\\" in value:
            raise ValueError(f"context value {value!r} cannot be substituted into JSON")
        input_text = input_text.replace(placeholder, value)
    return input_text
