"""An invoker that starts nothing: it keeps the events run-now and retry hand it."""

from __future__ import annotations

from typing import Any


class RecordingInvoker:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def fire(self, event: dict[str, Any]) -> None:
        self.events.append(event)
