"""The CLI's view of a running Timebridge: its HTTP API, found by `TIMEBRIDGE_URL` (default
http://127.0.0.1:8000) and `TIMEBRIDGE_API_KEY` (default: the development key `make run` saved).

Every failure becomes `RemoteError` with one line to print: the API's own error message, or
what went wrong reaching it.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"
DEV_KEY_FILE = Path(".timebridge") / "dev-api-key"


class RemoteError(Exception):
    """One line for the user; `status` is the HTTP status (0 when the API was not reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


ClientFactory = Callable[[str, dict[str, str]], httpx.Client]


def _default_client(base_url: str, headers: dict[str, str]) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers=headers, timeout=30)


class Remote:
    # Tests point this at the app in-process (a TestClient is an httpx.Client).
    client_factory: ClientFactory = _default_client

    def __init__(self, url: str | None = None, key: str | None = None) -> None:
        self.url = (url or os.environ.get("TIMEBRIDGE_URL") or DEFAULT_URL).rstrip("/")
        key = key or os.environ.get("TIMEBRIDGE_API_KEY")
        if not key and DEV_KEY_FILE.exists():
            key = DEV_KEY_FILE.read_text().strip()
        if not key:
            raise RemoteError("no API key: set TIMEBRIDGE_API_KEY (or run `make run` here first)")
        self.client = type(self).client_factory(self.url, {"Authorization": f"Bearer {key}"})

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self.client.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise RemoteError(f"cannot reach Timebridge at {self.url}: {exc}") from None
        if response.status_code >= 400:
            raise RemoteError(_error_line(response), response.status_code)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise RemoteError(f"{self.url} did not answer like a Timebridge API") from None

    def pages(self, path: str, params: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """Every item of a paginated list, following `next_cursor`."""
        cursor = None
        while True:
            page = self.call(
                "GET", path, params={**params, **({"cursor": cursor} if cursor else {})}
            )
            yield from page["items"]
            cursor = page.get("next_cursor")
            if not cursor:
                return


def _error_line(response: httpx.Response) -> str:
    try:
        error = response.json()["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code} from {response.request.url}"
    details = "; ".join(f"{d['field']}: {d['reason']}" for d in error.get("details") or [])
    return f"{error['code']}: {error['message']}" + (f" ({details})" if details else "")


# --- import files --------------------------------------------------------------------------------


def read_rows(path: Path) -> list[tuple[int, dict[str, Any] | None, str | None]]:
    """Rows of a JSONL or CSV file as (line number, task body, problem). CSV columns: name,
    schedule (JSON), target (JSON) or url, and optionally retry, callback, metadata (JSON)."""
    text = path.read_text()
    rows: list[tuple[int, dict[str, Any] | None, str | None]] = []
    if path.suffix.lower() == ".csv":
        for number, record in enumerate(csv.DictReader(io.StringIO(text)), start=2):
            try:
                rows.append((number, _csv_task(record), None))
            except ValueError as exc:
                rows.append((number, None, str(exc)))
        return rows
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            body = json.loads(line)
        except ValueError as exc:
            rows.append((number, None, f"not JSON: {exc}"))
            continue
        if not isinstance(body, dict):
            rows.append((number, None, "not a JSON object"))
            continue
        rows.append((number, body, None))
    return rows


def _csv_task(record: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {"name": record.get("name") or ""}
    for field in ("schedule", "target", "retry", "callback", "metadata"):
        value = (record.get(field) or "").strip()
        if value:
            try:
                body[field] = json.loads(value)
            except ValueError as exc:
                raise ValueError(f"column {field} is not JSON: {exc}") from None
    if "target" not in body and record.get("url"):
        body["target"] = {"url": record["url"]}
    return body


def idempotency_key(path: Path, body: dict[str, Any]) -> str:
    """The same row of the same file always asks for the same task: a re-run creates nothing
    twice."""
    digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32]
    return f"import:{path.name[:100]}:{digest}"
