"""The project's exception tree, mapped once to the HTTP error envelope by the API layer.

TimebridgeError                 root of everything the service raises on purpose (500 INTERNAL)
 ├── InvalidSchedule            a schedule AWS (or Timebridge) would refuse; also a ValueError (422)
 ├── InvalidRequest             any other bad input, with the field at fault; a ValueError (422)
 ├── Unauthorized               missing, malformed, unknown or revoked credentials (401)
 ├── Forbidden                  the credentials' role may not do this (403)
 ├── NotFound                   no such resource for this tenant (404)
 ├── Conflict                   the request contradicts stored state (409)
 │    └── CallbackClosed        a callback for an execution that already ended (409)
 └── UpstreamError              the scheduler backend failed (503)
      ├── UpstreamThrottled     throttled beyond our retries; carries retry_after seconds
      └── UpstreamUnavailable   unreachable, 5xx, or refused for a reason we cannot fix
"""

from __future__ import annotations


class TimebridgeError(Exception):
    """Root of the project's own exceptions; `code` and `status` pick the error envelope."""

    code = "INTERNAL"
    status = 500


class _FieldError(TimebridgeError, ValueError):
    """Bad input with the field at fault and the reason; `str(error)` is "field: reason"."""

    status = 422

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class InvalidSchedule(_FieldError):
    """A schedule that cannot be provisioned. `field` names the offending part ("day-of-week",
    "schedule.timezone", ...), `reason` says what is wrong in plain words."""

    code = "INVALID_SCHEDULE"


class InvalidRequest(_FieldError):
    """Bad input other than the schedule; `field` and `reason` as for InvalidSchedule."""

    code = "VALIDATION_ERROR"


class Unauthorized(TimebridgeError):
    code = "UNAUTHORIZED"
    status = 401


class Forbidden(TimebridgeError):
    code = "FORBIDDEN"
    status = 403


class NotFound(TimebridgeError):
    code = "NOT_FOUND"
    status = 404


class Conflict(TimebridgeError):
    code = "CONFLICT"
    status = 409


class CallbackClosed(Conflict):
    code = "CALLBACK_CLOSED"


class UpstreamError(TimebridgeError):
    """The scheduler backend failed; nothing the request asked for was left half done."""

    code = "UPSTREAM_UNAVAILABLE"
    status = 503
    retry_after: int | None = None


class UpstreamThrottled(UpstreamError):
    code = "UPSTREAM_THROTTLED"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UpstreamUnavailable(UpstreamError):
    code = "UPSTREAM_UNAVAILABLE"


class RateLimited(TimebridgeError):
    """The tenant sent more requests than its rate allows; retry after `retry_after` seconds."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
