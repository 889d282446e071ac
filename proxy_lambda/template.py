"""Request templating: `{{ name }}` placeholders for the occurrence context in an HTTP target's
body, query and header values (SEEDS S0-03: the target gets its parameters and the callback URL
in the body, for targets that cannot read headers).

Names: `task.id`, `task.name`, `scheduled_time` (UTC, "2026-11-23T00:00:00Z"),
`scheduled_time_local` (in the task's time zone, with its offset), `attempt`, `occurrence_key`,
`callback_url` (only for tasks with callbacks on). Nothing is evaluated: a placeholder is a name
looked up in a fixed table, so there is no code execution. In a JSON body a string that is
exactly one placeholder takes the value's own type (`"{{attempt}}"` becomes the number 2); text
around placeholders is joined as a string, and the body is serialized afterwards, so every value
is escaped for JSON. `{{{{` and `}}}}` write literal braces.

Standard library only: the proxy imports it on every cold start; the service validates task
bodies with `placeholders_in` at create time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

NAMES = frozenset(
    {
        "task.id",
        "task.name",
        "scheduled_time",
        "scheduled_time_local",
        "attempt",
        "occurrence_key",
        "callback_url",
    }
)
# Tasks run by an event (schedule kinds `event` and `after`) may also use the event:
# `event.topic`, `event.payload` (the whole payload) and `event.payload.<dotted path>`.
EVENT_NAMES = frozenset({"event.topic", "event.payload"})
_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.]+)\s*\}\}")
_ESCAPED_OPEN, _ESCAPED_CLOSE = "{{{{", "}}}}"
_SENTINEL_OPEN, _SENTINEL_CLOSE = "\x00tb-open\x00", "\x00tb-close\x00"


def placeholders_in(value: Any) -> set[str]:
    """Every placeholder name used anywhere in a body, query or headers value."""
    found: set[str] = set()
    for text in _strings(value):
        found.update(_PLACEHOLDER.findall(_unescape_marks(text)))
    return found


def has_placeholders(value: Any) -> bool:
    return any("{{" in text for text in _strings(value))


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """`value` with every placeholder replaced from `context` (names as in NAMES). Raises
    KeyError naming an unknown placeholder."""
    if isinstance(value, str):
        return _render_text(value, context)
    if isinstance(value, list):
        return [render(item, context) for item in value]
    if isinstance(value, dict):
        return {key: render(item, context) for key, item in value.items()}
    return value


def render_text(text: str, context: Mapping[str, Any]) -> str:
    """A string with placeholders replaced by their text (for query and header values)."""
    rendered = _render_text(text, context)
    return rendered if isinstance(rendered, str) else _as_text(rendered)


def _render_text(text: str, context: Mapping[str, Any]) -> Any:
    if "{{" not in text and _ESCAPED_CLOSE not in text:
        return text
    marked = _unescape_marks(text)
    whole = _PLACEHOLDER.fullmatch(marked)
    if whole is not None:
        return context[whole.group(1)]
    out = _PLACEHOLDER.sub(lambda m: _as_text(context[m.group(1)]), marked)
    return out.replace(_SENTINEL_OPEN, "{{").replace(_SENTINEL_CLOSE, "}}")


def _unescape_marks(text: str) -> str:
    return text.replace(_ESCAPED_OPEN, _SENTINEL_OPEN).replace(_ESCAPED_CLOSE, _SENTINEL_CLOSE)


def _as_text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), sort_keys=True)
    return str(value)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [text for item in value for text in _strings(item)]
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    return []


def is_event_name(name: str) -> bool:
    """Whether a placeholder name refers to the event that started the run."""
    return name in EVENT_NAMES or (name.startswith("event.payload.") and len(name) > 14)


class EventContext(dict[str, Any]):
    """A placeholder table that also answers `event.*` names from an event (None when the run
    has no event, or the payload has no such path)."""

    def __init__(self, values: Mapping[str, Any], event: Mapping[str, Any] | None) -> None:
        super().__init__(values)
        self.event = event if isinstance(event, Mapping) else {}

    def __missing__(self, name: str) -> Any:
        if not is_event_name(name):
            raise KeyError(name)
        if name == "event.topic":
            return self.event.get("topic")
        value: Any = self.event.get("payload")
        for part in name.split(".")[2:]:
            if isinstance(value, Mapping):
                value = value.get(part)
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                return None
        return value
