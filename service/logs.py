"""Structured logs: one JSON object a line, with the request id (API) or the occurrence key
(firing path) when there is one, and bearer credentials masked whatever a message says."""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
from datetime import UTC, datetime

request_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

_BEARER = re.compile(r"(?i)(bearer\s+)[^\s\"',;]+")
_MARK = "_timebridge_json"


def mask(text: str) -> str:
    return _BEARER.sub(r"\1***", text)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": mask(record.getMessage()),
        }
        current = request_id.get()
        if current:
            entry["request_id"] = current
        for key in ("occurrence_key", "task_id", "tenant_id"):
            value = getattr(record, key, None)
            if value is not None:
                entry[key] = value
        if record.exc_info:
            entry["exception"] = mask(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


def configure_logging(level: str | None = None) -> None:
    """Send the service's logs to stderr as JSON (once; later calls change nothing)."""
    root = logging.getLogger()
    if any(getattr(handler, _MARK, False) for handler in root.handlers):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    setattr(handler, _MARK, True)
    root.addHandler(handler)
    root.setLevel((level or os.environ.get("TIMEBRIDGE_LOG_LEVEL") or "INFO").upper())
