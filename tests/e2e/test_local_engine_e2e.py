"""Black box: `service.main:app` in a uvicorn subprocess with SQLite, the local backend and the
embedded engine, calling a loopback receiver (issue "Embedded local engine"). Every schedule
kind fires with a valid signature and lands in the history; retries back off; run now works;
and a `kill -9` in the middle of a burst loses no occurrence and records none twice (a
redelivery carries the same webhook-id)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from proxy_lambda.signing import parse_signing_secrets, verify_webhook
from tests.e2e.test_blackbox_eventbridge import ROOT, free_port
from tests.proxy.loopback import TargetServer

KEY = "tb_local-e2e-admin-key"
SECRET = "whsec_" + "bG9jYWwtZW5naW5lLWUyZS1zZWNyZXQ="  # test only


class Server:
    """The app in its own process; `kill()` is `kill -9`, `start()` brings it back."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.env = {
            **os.environ,
            "TIMEBRIDGE_BACKEND": "local",
            "TIMEBRIDGE_EMBEDDED_ENGINE": "true",
            "TIMEBRIDGE_DATABASE_URL": f"sqlite:///{workdir}/tb.db",
            "TIMEBRIDGE_BOOTSTRAP_API_KEY": KEY,
            "TIMEBRIDGE_SIGNING_SECRET": SECRET,
            "TIMEBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
            "TIMEBRIDGE_ALLOWED_TARGET_NETWORKS": "127.0.0.1/32",
        }
        self.process: subprocess.Popen[bytes] | None = None
        self.client = httpx.Client(
            base_url=f"http://127.0.0.1:{self.port}",
            headers={"Authorization": f"Bearer {KEY}"},
            timeout=10,
        )

    def start(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "uvicorn", "service.main:app", "--port", str(self.port)],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.client.get("/health").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                errors = self.process.stderr.read().decode() if self.process.stderr else ""
                pytest.fail(f"server did not start:\n{errors[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)
        self.client.close()


@pytest.fixture
def receiver() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.start()
    yield running
    running.stop()


def at(seconds: float) -> str:
    moment = datetime.now(UTC) + timedelta(seconds=seconds)
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.25)


def executions(server: Server, task_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = server.client.get(f"/v1/tasks/{task_id}/executions").json()[
        "items"
    ]
    return items


def create(server: Server, **body: Any) -> dict[str, Any]:
    response = server.client.post("/v1/tasks", json=body)
    assert response.status_code == 201, response.text
    task: dict[str, Any] = response.json()
    return task


def test_every_kind_fires_signed_and_is_recorded(server: Server, receiver: TargetServer) -> None:
    from standardwebhooks.webhooks import Webhook

    url = receiver.url
    tasks = {
        "delay": create(
            server,
            name="delay",
            schedule={"kind": "delay", "seconds": 2},
            target={"url": url("/delay"), "body": {"report": "daily"}},
        ),
        "once": create(
            server,
            name="once",
            schedule={"kind": "once", "at": at(3)},
            target={"url": url("/once")},
            callback={"enabled": True, "timeout_seconds": 60},
        ),
        "cron": create(
            server,
            name="cron",
            schedule={"kind": "cron", "expression": "* * * * *"},
            target={"url": url("/cron")},
        ),
        "rrule": create(
            server,
            name="rrule",
            schedule={"kind": "rrule", "rrule": "FREQ=MINUTELY;COUNT=2"},
            target={"url": url("/rrule")},
        ),
        "fixed": create(
            server,
            name="fixed",
            schedule={"kind": "fixed_delay", "seconds": 60},
            target={"url": url("/fixed")},
        ),
        "retry": create(
            server,
            name="retry",
            schedule={"kind": "delay", "seconds": 1},
            target={"url": url("/status/503")},
            retry={"max_attempts": 3, "base_delay_seconds": 1, "max_delay_seconds": 2},
        ),
        "manual": create(
            server,
            name="manual",
            schedule={"kind": "cron", "expression": "0 0 1 1 *"},
            target={"url": url("/manual")},
        ),
    }
    assert tasks["rrule"]["mode"] == "chained" and tasks["fixed"]["mode"] == "chained"
    run = server.client.post(f"/v1/tasks/{tasks['manual']['id']}/run")
    assert run.status_code == 202, run.text

    def succeeded(name: str, count: int = 1) -> bool:
        rows = executions(server, tasks[name]["id"])
        return sum(1 for r in rows if r["status"] == "success") >= count

    wait_for(lambda: succeeded("delay") and succeeded("manual"), 20, "delay and run now")
    # The callback task: the receiver got a callback URL; report through it.
    wait_for(lambda: any(r.path == "/once" for r in receiver.received), 20, "the once task")
    once = next(r for r in receiver.received if r.path == "/once")
    wait_for(lambda: bool(executions(server, tasks["once"]["id"])), 10, "the once record")
    assert executions(server, tasks["once"]["id"])[0]["status"] == "pending"
    reported = httpx.put(once.headers["timebridge-callback-url"], json={"status": "success"})
    assert reported.status_code == 200, reported.text
    wait_for(
        lambda: (
            [r["attempt"] for r in executions(server, tasks["retry"]["id"])] == [3, 2, 1]
            and all(r["status"] == "failed" for r in executions(server, tasks["retry"]["id"]))
        ),
        30,
        "three failed attempts",
    )
    # dtstart defaults to the creation time, which COUNT counts from: the fires still ahead
    # are the ones the task listed when it was made.
    rrule_fires = len(tasks["rrule"]["next_fire_times"])
    wait_for(
        lambda: succeeded("cron") and succeeded("rrule", rrule_fires) and succeeded("fixed"),
        150,
        "the minute-based kinds",
    )

    keys = parse_signing_secrets(SECRET)
    for request in receiver.received:
        assert verify_webhook(keys, request.headers, request.body, now=time.time())
        if request.body:  # the library also parses the body as JSON
            Webhook(SECRET).verify(request.body, request.headers)
    status = {
        name: server.client.get(f"/v1/tasks/{t['id']}").json()["status"]
        for name, t in tasks.items()
    }
    assert status["delay"] == "completed" and status["once"] == "completed"
    assert status["rrule"] == "completed" and status["retry"] == "failed"
    assert status["cron"] == "scheduled" and status["fixed"] == "scheduled"
    attempts = sorted(executions(server, tasks["retry"]["id"]), key=lambda r: r["attempt"])
    starts = [datetime.fromisoformat(r["started_at"]) for r in attempts]
    assert starts[0] < starts[1] < starts[2]  # each retry after its backoff
    assert len({r["scheduled_time"] for r in attempts}) == 1  # one occurrence, three attempts
    kinds = {a["kind"] for a in server.client.get("/v1/alerts").json()["items"]}
    assert "final_failure" in kinds


def test_kill_minus_nine_loses_nothing_and_records_nothing_twice(
    server: Server, receiver: TargetServer
) -> None:
    count = 30
    tasks = [
        create(
            server,
            name=f"burst-{i}",
            schedule={"kind": "once", "at": at(3 + i % 6)},
            target={"url": receiver.url("/sleep/0.5")},
        )
        for i in range(count)
    ]
    wait_for(lambda: len(receiver.received) >= count // 3, 20, "part of the burst")
    server.kill()  # in the middle of it: some calls in flight, some not yet due
    time.sleep(2)
    server.start()
    ids = [t["id"] for t in tasks]
    wait_for(
        lambda: all(
            [r["status"] for r in executions(server, task_id)] == ["success"] for task_id in ids
        ),
        60,
        "every occurrence recorded once",
    )
    delivered = [r.headers["webhook-id"] for r in receiver.received if r.path == "/sleep/0.5"]
    expected = {executions(server, task_id)[0]["occurrence_key"] for task_id in ids}
    assert set(delivered) == expected  # nothing lost; any redelivery is the same occurrence
    print(
        f"\nkill -9: {count} occurrences, {len(delivered)} deliveries "
        f"({len(delivered) - count} redelivered), {count} executions"
    )
