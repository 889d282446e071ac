"""Black box (issue 9 part A): the app in a uvicorn subprocess with the embedded engine and the
in-process run path (worker threads), calling a loopback receiver. An event starts a pipeline
of three steps (S3-05, S3-10), an `event` target publishes when its schedule fires, a failing
step starts its failure chain, and a backfill runs through the background worker."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.e2e.test_local_engine_e2e import Server, create, executions, wait_for
from tests.proxy.loopback import TargetServer


@pytest.fixture
def receiver() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    running = Server(tmp_path)
    running.env["TIMEBRIDGE_BACKFILL_RATE_PER_SECOND"] = "20"
    running.start()
    yield running
    running.stop()


def paths(receiver: TargetServer) -> list[str]:
    return [request.path for request in receiver.received]


def test_an_event_runs_a_pipeline_of_topics_and_chains(
    server: Server, receiver: TargetServer
) -> None:
    url = receiver.url
    extract = create(
        server,
        name="extract",
        schedule={"kind": "event", "topic": "nightly.*", "filter": {"day": {"prefix": "2026"}}},
        target={"url": url("/extract"), "body": {"day": "{{event.payload.day}}"}},
    )
    load = create(
        server,
        name="load",
        schedule={"kind": "event", "topic": "task.extract.succeeded"},
        target={"url": url("/load")},
    )
    report = create(
        server,
        name="report",
        schedule={"kind": "after", "tasks": [load["id"]], "on": "success"},
        target={"url": url("/status/500")},
    )
    alarm = create(
        server,
        name="alarm",
        schedule={"kind": "after", "tasks": [report["id"]], "on": "failure"},
        target={"url": url("/alarm")},
    )
    ignored = server.client.post("/v1/events", json={"topic": "nightly.eu", "payload": {}})
    assert ignored.status_code == 202 and ignored.json()["matched"] == 0

    response = server.client.post(
        "/v1/events", json={"topic": "nightly.eu", "payload": {"day": "2026-11-23"}}
    )
    assert response.status_code == 202, response.text
    assert response.json()["matched"] == 1

    wait_for(lambda: "/alarm" in paths(receiver), 30, "the whole pipeline")
    assert paths(receiver) == ["/extract", "/load", "/status/500", "/alarm"]
    first = receiver.received[0]
    assert json.loads(first.body) == {"day": "2026-11-23"}
    envelope = json.loads(receiver.received[1].body)
    assert envelope["event"]["topic"] == "task.extract.succeeded"
    assert envelope["event"]["payload"]["task_id"] == extract["id"]
    for task in (extract, load, report, alarm):
        shown = server.client.get(f"/v1/tasks/{task['id']}").json()
        assert shown["trigger_count"] == 1, shown
    wait_for(
        lambda: [e["status"] for e in executions(server, alarm["id"])] == ["success"],
        10,
        "the alarm's record",
    )


def test_an_event_target_and_a_backfill_run_in_the_background(
    server: Server, receiver: TargetServer
) -> None:
    url = receiver.url
    create(
        server,
        name="announce",
        schedule={"kind": "delay", "seconds": 1},
        target={"type": "event", "topic": "reports.ready", "payload": {"n": 3}},
    )
    listener = create(
        server,
        name="listener",
        schedule={"kind": "event", "topic": "reports.**"},
        target={"url": url("/listener"), "body": {"n": "{{event.payload.n}}"}},
    )
    wait_for(lambda: "/listener" in paths(receiver), 30, "the event target's subscriber")
    assert json.loads(receiver.received[paths(receiver).index("/listener")].body) == {"n": 3}
    assert server.client.get(f"/v1/tasks/{listener['id']}").json()["trigger_count"] == 1

    hourly = create(
        server,
        name="hourly",
        schedule={"kind": "cron", "expression": "0 * * * *"},
        target={"url": url("/hourly")},
    )
    now = datetime.now(UTC)
    window = {
        "from": f"{now - timedelta(hours=3):%Y-%m-%dT%H:%M:%S}Z",
        "to": f"{now:%Y-%m-%dT%H:%M:%S}Z",
    }
    queued = server.client.post(f"/v1/tasks/{hourly['id']}/backfill", json=window)
    assert queued.status_code == 202, queued.text
    assert queued.json()["queued"] == 3

    def backfilled() -> bool:
        rows = executions(server, hourly["id"])
        return sum(1 for r in rows if r["trigger"] == "backfill" and r["status"] == "success") == 3

    wait_for(backfilled, 30, "three backfilled runs")
    hourly_calls = [r for r in receiver.received if r.path == "/hourly"]
    times = [r.headers["timebridge-scheduled-time"] for r in hourly_calls]
    assert times == sorted(times) and len(times) == 3
    again = server.client.post(f"/v1/tasks/{hourly['id']}/backfill", json=window)
    assert again.json()["queued"] == 0 and again.json()["already_recorded"] == 3
    listing = server.client.get("/v1/schedules").json()
    assert hourly["id"] in {item["task_id"] for item in listing["items"]}
