"""An in-process stand-in for the EventBridge Scheduler API, with the two properties moto lacks
for load work: a request-rate quota that answers ThrottlingException, and per-call latency.
It speaks boto3's client method names, so EventBridgeSchedulerBackend runs on it unchanged."""

from __future__ import annotations

import threading
import time
from typing import Any

from botocore.exceptions import ClientError


def _error(code: str, message: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SchedulerEmulator",
    )


class SchedulerEmulator:
    """Token bucket of `rate` requests per second (burst `burst`), `latency` seconds per call."""

    def __init__(self, *, rate: float = 1000.0, burst: float = 50.0, latency: float = 0.02) -> None:
        self.rate = rate
        self.burst = burst
        self.latency = latency
        self.schedules: dict[tuple[str, str], dict[str, Any]] = {}
        self.accepted = 0
        self.throttled = 0
        self.creates = 0
        self.first_create: float | None = None  # monotonic time of the first accepted create
        self.last_create: float | None = None  # and of the last one's answer
        self._tokens = burst
        self._stamp = time.monotonic()
        self._lock = threading.Lock()

    def _admit(self) -> None:
        with self._lock:
            now = time.monotonic()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens < 1:
                self.throttled += 1
                raise _error("ThrottlingException", "Rate exceeded", 429)
            self._tokens -= 1
            self.accepted += 1
        time.sleep(self.latency)

    def create_schedule(self, **request: Any) -> dict[str, Any]:
        self._admit()
        key = (request["GroupName"], request["Name"])
        with self._lock:
            if key in self.schedules:
                raise _error("ConflictException", f"Schedule {key[1]} already exists.", 409)
            arn = f"arn:aws:scheduler:us-east-1:123456789012:schedule/{key[0]}/{key[1]}"
            self.schedules[key] = {**request, "Arn": arn}
            self.creates += 1
            now = time.monotonic()
            if self.first_create is None:
                self.first_create = now - self.latency
            self.last_create = now
        return {"ScheduleArn": arn}

    def get_schedule(self, *, Name: str, GroupName: str) -> dict[str, Any]:
        self._admit()
        found = self.schedules.get((GroupName, Name))
        if found is None:
            raise _error("ResourceNotFoundException", f"Schedule {Name} does not exist.", 404)
        return dict(found)

    def update_schedule(self, **request: Any) -> dict[str, Any]:
        self._admit()
        key = (request["GroupName"], request["Name"])
        with self._lock:
            if key not in self.schedules:
                raise _error("ResourceNotFoundException", f"Schedule {key[1]} does not exist.", 404)
            arn = self.schedules[key]["Arn"]
            self.schedules[key] = {**request, "Arn": arn}
        return {"ScheduleArn": arn}

    def delete_schedule(self, *, Name: str, GroupName: str) -> dict[str, Any]:
        self._admit()
        with self._lock:
            if self.schedules.pop((GroupName, Name), None) is None:
                raise _error("ResourceNotFoundException", f"Schedule {Name} does not exist.", 404)
        return {}

    def list_schedules(
        self, *, GroupName: str, NamePrefix: str = "", NextToken: str | None = None
    ) -> dict[str, Any]:
        self._admit()
        names = sorted(n for g, n in self.schedules if g == GroupName and n.startswith(NamePrefix))
        start = int(NextToken or 0)
        page = names[start : start + 100]
        out: dict[str, Any] = {
            "Schedules": [
                {
                    "Name": n,
                    "Arn": self.schedules[(GroupName, n)]["Arn"],
                    "State": self.schedules[(GroupName, n)]["State"],
                }
                for n in page
            ]
        }
        if start + 100 < len(names):
            out["NextToken"] = str(start + 100)
        return out
