"""The project's exception tree, mapped once to the HTTP error envelope by the API layer.

TimebridgeError                 root of everything the service raises on purpose
 └── InvalidSchedule            a schedule AWS (or Timebridge) would refuse; also a ValueError
"""

from __future__ import annotations


class TimebridgeError(Exception):
    """Root of the project's own exceptions; `code` is the error envelope's code."""

    code = "INTERNAL"


class InvalidSchedule(TimebridgeError, ValueError):
    """A schedule that cannot be provisioned, with the field at fault and the reason.

    `field` names the offending part ("day-of-week", "schedule.timezone", ...), `reason` says
    what is wrong in plain words; `str(error)` is "field: reason".
    """

    code = "INVALID_SCHEDULE"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
