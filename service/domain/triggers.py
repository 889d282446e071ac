"""Triggers that are not time: event topics with filters, chains after other tasks, and the
dependency graph between tasks (SEEDS S3-05, S3-10, S1-04, S1-14). Standard library only.

Topics are dot-separated segments (`orders.eu.created`). A subscription pattern may use `*`
for exactly one segment and `**` for any number of segments, zero included. A filter is a
mapping from a dotted payload path to conditions, every one of which must hold:

    {"amount": {"gte": 100}, "customer.tier": {"in": ["gold", "silver"]}, "ref": {"exists": true}}
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from service.domain.errors import InvalidRequest

EVENT, AFTER = "event", "after"
TRIGGER_KINDS = (EVENT, AFTER)
TRIGGER_MODE = "trigger"  # a task's `mode` when nothing is provisioned for it
ON_SUCCESS, ON_FAILURE, ON_COMPLETION = "success", "failure", "completion"
AFTER_ON = (ON_SUCCESS, ON_FAILURE, ON_COMPLETION)
DEPENDENCY_FAILED = "DEPENDENCY_FAILED"
MAX_UPSTREAM = 20
MAX_TOPIC_LENGTH = 255
FILTER_OPERATORS = ("eq", "ne", "in", "gt", "gte", "lt", "lte", "exists", "prefix")
MAX_FILTER_PATHS = 50

_SEGMENT = re.compile(r"[A-Za-z0-9_:-]{1,64}")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


# --- topics -------------------------------------------------------------------------------------


def check_topic(topic: Any, field: str = "topic") -> str:
    """A concrete topic (no wildcards) as published; InvalidRequest names `field`."""
    return _checked(topic, field, wildcards=False)


def check_pattern(pattern: Any, field: str = "schedule.topic") -> str:
    """A subscription pattern (`*` one segment, `**` any number); InvalidRequest names `field`."""
    return _checked(pattern, field, wildcards=True)


def _checked(text: Any, field: str, *, wildcards: bool) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidRequest(field, "is required: dot-separated segments, e.g. orders.created")
    if len(text) > MAX_TOPIC_LENGTH:
        raise InvalidRequest(field, f"is longer than {MAX_TOPIC_LENGTH} characters")
    for index, segment in enumerate(text.split(".")):
        if segment == "":
            raise InvalidRequest(field, f"segment {index + 1} is empty (check the dots)")
        if wildcards and segment in ("*", "**"):
            continue
        if not _SEGMENT.fullmatch(segment):
            allowed = "letters, digits, '_', '-', ':'" + (
                " or a whole segment '*' / '**'" if wildcards else " (no wildcards here)"
            )
            raise InvalidRequest(field, f"segment {segment[:64]!r} must be 1-64 of {allowed}")
    return text


def topic_matches(pattern: str, topic: str) -> bool:
    """Whether a concrete topic matches a pattern: `*` is one segment, `**` zero or more."""
    return _match(tuple(pattern.split(".")), tuple(topic.split(".")))


def _match(pattern: tuple[str, ...], topic: tuple[str, ...]) -> bool:
    # Walk both; `**` tries every split point (patterns are short, so this stays small).
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "**":
        return any(_match(rest, topic[skip:]) for skip in range(len(topic) + 1))
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and _match(rest, topic[1:])


def topic_segment(name: str) -> str:
    """A task name as one topic segment: characters other than letters, digits, `_` and `-`
    become `-` (so `nightly report` publishes `task.nightly-report.succeeded`)."""
    return _UNSAFE.sub("-", name)[:64] or "-"


def outcome_topic(task_name: str, succeeded: bool) -> str:
    """The topic an ended execution publishes within its tenant."""
    return f"task.{topic_segment(task_name)}.{'succeeded' if succeeded else 'failed'}"


# --- filters ------------------------------------------------------------------------------------


def check_filter(value: Any, field: str = "schedule.filter") -> dict[str, dict[str, Any]]:
    """Validate a filter's shape; InvalidRequest names the path and operator at fault."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidRequest(field, 'must map payload paths to conditions, e.g. {"a.b": {"eq": 1}}')
    if len(value) > MAX_FILTER_PATHS:
        raise InvalidRequest(field, f"has more than {MAX_FILTER_PATHS} paths")
    out: dict[str, dict[str, Any]] = {}
    for path, conditions in value.items():
        where = f"{field}.{path}"
        if not isinstance(path, str) or not path or any(p == "" for p in path.split(".")):
            raise InvalidRequest(where, "a path is dot-separated field names, none empty")
        if not isinstance(conditions, Mapping) or not conditions:
            raise InvalidRequest(where, 'must be an object of conditions, e.g. {"gte": 10}')
        for op, operand in conditions.items():
            _check_condition(f"{where}.{op}", op, operand)
        out[path] = dict(conditions)
    return out


def _check_condition(where: str, op: Any, operand: Any) -> None:
    if op not in FILTER_OPERATORS:
        raise InvalidRequest(where, f"unknown operator; use one of {', '.join(FILTER_OPERATORS)}")
    if op == "in" and not isinstance(operand, list):
        raise InvalidRequest(where, "must be a list of values")
    if op in ("gt", "gte", "lt", "lte") and not (_is_number(operand) or isinstance(operand, str)):
        raise InvalidRequest(where, "must be a number or a string")
    if op == "exists" and not isinstance(operand, bool):
        raise InvalidRequest(where, "must be true or false")
    if op == "prefix" and not isinstance(operand, str):
        raise InvalidRequest(where, "must be a string")


_MISSING = object()


def filter_matches(conditions: Mapping[str, Mapping[str, Any]], payload: Any) -> bool:
    """Whether every condition holds for the payload. A missing field satisfies only `ne` and
    `exists: false`; ordering compares numbers with numbers and strings with strings only."""
    for path, ops in conditions.items():
        value = _lookup(payload, path)
        for op, operand in ops.items():
            if not _holds(op, operand, value):
                return False
    return True


def _lookup(payload: Any, path: str) -> Any:
    value = payload
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return _MISSING
    return value


def _holds(op: str, operand: Any, value: Any) -> bool:
    if op == "exists":
        return (value is not _MISSING) is operand
    if op == "ne":
        return value is _MISSING or not _same(value, operand)
    if value is _MISSING:
        return False
    if op == "eq":
        return _same(value, operand)
    if op == "in":
        return any(_same(value, item) for item in operand)
    if op == "prefix":
        return isinstance(value, str) and value.startswith(operand)
    comparable = (_is_number(value) and _is_number(operand)) or (
        isinstance(value, str) and isinstance(operand, str)
    )
    if not comparable:
        return False
    if op == "gt":
        return bool(value > operand)
    if op == "gte":
        return bool(value >= operand)
    if op == "lt":
        return bool(value < operand)
    return bool(value <= operand)  # lte


def _same(a: Any, b: Any) -> bool:
    # JSON equality: true is not 1, 1 is 1.0.
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# --- trigger schedules --------------------------------------------------------------------------


def check_trigger_schedule(schedule: Mapping[str, Any]) -> dict[str, Any]:
    """Validate an `event` or `after` schedule and return it normalized. Task ids are checked
    for shape here; their existence and tenant by the caller."""
    kind = schedule.get("kind")
    if kind == EVENT:
        unknown = set(schedule) - {"kind", "topic", "filter"}
        if unknown:
            raise InvalidRequest(f"schedule.{sorted(unknown)[0]}", "is not a field of 'event'")
        out: dict[str, Any] = {"kind": EVENT, "topic": check_pattern(schedule.get("topic"))}
        if schedule.get("filter") is not None:
            out["filter"] = check_filter(schedule.get("filter"))
        return out
    if kind == AFTER:
        unknown = set(schedule) - {"kind", "tasks", "on"}
        if unknown:
            raise InvalidRequest(f"schedule.{sorted(unknown)[0]}", "is not a field of 'after'")
        on = schedule.get("on", ON_SUCCESS)
        if on not in AFTER_ON:
            raise InvalidRequest("schedule.on", f"must be one of {', '.join(AFTER_ON)}")
        return {
            "kind": AFTER,
            "tasks": check_task_ids(schedule.get("tasks"), "schedule.tasks"),
            "on": on,
        }
    raise InvalidRequest("schedule.kind", f"{kind!r} is not a trigger kind")


def check_task_ids(value: Any, field: str, *, allow_empty: bool = False) -> list[str]:
    """A list of distinct task ids (1-20, or 0-20 with allow_empty)."""
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidRequest(field, "must be a list of task ids")
    if not value and not allow_empty:
        raise InvalidRequest(field, "must name at least one task")
    if len(value) > MAX_UPSTREAM:
        raise InvalidRequest(field, f"may name at most {MAX_UPSTREAM} tasks")
    if len(set(value)) != len(value):
        raise InvalidRequest(field, "names a task twice")
    return list(value)


def after_fires(on: str, *, succeeded: bool) -> bool:
    """Whether an `after` chain with this `on` fires for an upstream execution that ended."""
    if on == ON_COMPLETION:
        return True
    return succeeded if on == ON_SUCCESS else not succeeded


def upstream_of(schedule: Mapping[str, Any] | None, depends_on: Iterable[str] | None) -> set[str]:
    """The tasks a task waits on: its `after` tasks and its `depends_on`."""
    found = set(depends_on or ())
    if schedule is not None and schedule.get("kind") == AFTER:
        found.update(schedule.get("tasks") or ())
    return found


def find_cycle(start: str, edges: Mapping[str, Iterable[str]]) -> list[str] | None:
    """A path start -> ... -> start through `edges` (task -> the tasks it waits on), or None."""
    path: list[str] = [start]
    seen: set[str] = set()

    def visit(node: str) -> bool:
        for nxt in edges.get(node, ()):
            if nxt == start:
                path.append(start)
                return True
            if nxt in seen:
                continue
            seen.add(nxt)
            path.append(nxt)
            if visit(nxt):
                return True
            path.pop()
        return False

    return path if visit(start) else None
