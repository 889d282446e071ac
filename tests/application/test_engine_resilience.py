"""A receiver that hangs, resets or floods never stalls the local engine (issue "Embedded local
engine", Bad input): timeouts apply and the other schedules keep their times. The engine runs
in its threads on the real clock, delivering through the real proxy handler to loopback."""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.settings import ProxySettings
from service.adapters.db.models import Execution, LocalFiring
from service.adapters.invoke import LocalDelivery
from service.adapters.scheduler.engine import LocalEngine
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.application.recorder import Recorder
from service.application.tasks import TaskService
from service.domain.executions import format_scheduled_time
from tests.application.fakes import add_tenant
from tests.proxy.loopback import TargetServer


@pytest.fixture
def receiver() -> Iterator[TargetServer]:
    server = TargetServer().start()
    yield server
    server.stop()


def test_bad_receivers_do_not_delay_the_others(
    db_sessions: sessionmaker[Session], receiver: TargetServer
) -> None:
    backend = LocalSchedulerBackend(db_sessions)
    tasks = TaskService(db_sessions, backend)
    recorder = Recorder(db_sessions, backend)
    settings = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    engine = LocalEngine(db_sessions, LocalDelivery(recorder, settings), workers=32)
    backend.on_change = engine.wake
    tenant = add_tenant(db_sessions)
    due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    when = format_scheduled_time(due)

    def make(name: str, path: str, timeout: int = 2) -> str:
        body = {
            "name": name,
            "schedule": {"kind": "once", "at": when},
            "target": {"url": receiver.url(path), "timeout_seconds": timeout},
            "retry": {"max_attempts": 1},
        }
        return str(tasks.create(tenant, body)[0]["id"])

    hanging = {make(f"hang-{i}", "/sleep/30") for i in range(12)}
    reset, flood = make("reset", "/reset"), make("flood", "/big/50000000")
    bad = hanging | {reset, flood}
    good = {make(f"good-{i}", "/ok") for i in range(20)}
    engine.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db_sessions() as session:
                done = {
                    row.task_id: row
                    for row in session.scalars(select(Execution))
                    if row.task_id in good | bad
                }
            if len(done) == len(good | bad):
                break
            time.sleep(0.2)
    finally:
        engine.stop()
    assert set(done) == good | bad
    assert {done[t].status for t in good} == {"success"}
    assert {(done[t].status, done[t].error_kind) for t in hanging} == {("timeout", "timeout")}
    assert done[reset].status == "trigger_failed"
    assert done[reset].error_kind in ("connection_error", "protocol_error")
    # A flood is cut at 4 KB: the call succeeded and the excerpt says it was truncated.
    assert (done[flood].status, done[flood].response_body_truncated) == ("success", True)
    # The hanging calls hold their workers for their 2 s timeout, not 30 s; the good ones,
    # due in the same second, start on time beside them. (With more hanging targets than
    # workers, the rest would wait for a timeout: the README says so.)
    worst = max(done[t].late_seconds or 0 for t in good)
    print(f"\nworst lateness of the good schedules: {worst:.2f} s")
    assert worst < 1.0


def test_a_lookahead_claims_early_but_calls_at_the_due_time(
    db_sessions: sessionmaker[Session], receiver: TargetServer
) -> None:
    """The app's engine claims and leases what is due within its lookahead, then sends each
    call from its asyncio loop when the time comes: never before it, once, and recorded."""
    backend = LocalSchedulerBackend(db_sessions)
    tasks = TaskService(db_sessions, backend)
    recorder = Recorder(db_sessions, backend)
    settings = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    engine = LocalEngine(
        db_sessions,
        LocalDelivery(recorder, settings),
        workers=4,
        lookahead=timedelta(seconds=30),
    )
    backend.on_change = engine.wake
    tenant = add_tenant(db_sessions)
    due = (datetime.now(UTC) + timedelta(seconds=6)).replace(microsecond=0)
    ids = {
        str(
            tasks.create(
                tenant,
                {
                    "name": f"soon-{i}",
                    "schedule": {"kind": "once", "at": format_scheduled_time(due)},
                    "target": {"url": receiver.url(f"/ok/{i}")},
                },
            )[0]["id"]
        )
        for i in range(5)
    }
    engine.start()
    try:
        claimed = False
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db_sessions() as session:
                leased = session.scalars(select(LocalFiring)).all()
                done = list(session.scalars(select(Execution)))
            if datetime.now(UTC) < due and len(leased) == 5:
                claimed = claimed or all(f.lease_until is not None for f in leased)
            if len(done) == 5:
                break
            time.sleep(0.1)
    finally:
        engine.stop()
    assert claimed  # taken off the schedules and leased before their time
    assert {row.task_id for row in done} == ids
    assert all(row.status == "success" for row in done)
    assert all(row.started_at is not None and row.started_at >= due for row in done)
    assert len(receiver.received) == 5


def test_a_schedule_changed_after_an_early_claim_fires_as_changed_and_only_once(
    db_sessions: sessionmaker[Session], receiver: TargetServer
) -> None:
    """Claimed within the lookahead, then paused, updated or cancelled before its time: like
    EventBridge, a paused or cancelled schedule does not fire that occurrence, and an updated
    one fires it once, as updated (the local backend withdraws early claims; the engine sends
    only what is still in the outbox). Issue "Embedded local engine" (never duplicate)."""
    backend = LocalSchedulerBackend(db_sessions)
    tasks = TaskService(db_sessions, backend)
    recorder = Recorder(db_sessions, backend)
    settings = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    engine = LocalEngine(
        db_sessions, LocalDelivery(recorder, settings), workers=4, lookahead=timedelta(seconds=30)
    )
    backend.on_change = engine.wake
    tenant = add_tenant(db_sessions)
    due = (datetime.now(UTC) + timedelta(seconds=5)).replace(microsecond=0)

    def make(name: str) -> str:
        body = {
            "name": name,
            "schedule": {"kind": "once", "at": format_scheduled_time(due)},
            "target": {"url": receiver.url(f"/ok/{name}")},
        }
        return str(tasks.create(tenant, body)[0]["id"])

    paused, updated, cancelled, kept = (
        make("paused"),
        make("updated"),
        make("cancelled"),
        make("kept"),
    )
    engine.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with db_sessions() as session:
                leased = [f for f in session.scalars(select(LocalFiring)) if f.lease_until]
            if len(leased) == 4:
                break
            time.sleep(0.05)
        assert len(leased) == 4 and datetime.now(UTC) < due - timedelta(seconds=1)
        tasks.pause(tenant, paused)
        tasks.update(tenant, updated, {"target": {"url": receiver.url("/ok/updated-v2")}})
        tasks.cancel(tenant, cancelled)
        while time.monotonic() < deadline:
            with db_sessions() as session:
                recorded = list(session.scalars(select(Execution)))
            if len(recorded) >= 2 and datetime.now(UTC) > due + timedelta(seconds=2):
                break
            time.sleep(0.1)
    finally:
        engine.stop()
    paths = sorted(request.path for request in receiver.received)
    assert paths == ["/ok/kept", "/ok/updated-v2"]
    assert sorted(row.task_id for row in recorded) == sorted([updated, kept])
    assert engine.stats.withdrawn == 3


def test_the_sending_loop_reads_the_dependencies_at_fire_time_off_its_loop(
    db_sessions: sessionmaker[Session], receiver: TargetServer
) -> None:
    """The asynchronous path reads a dependent task's dependencies as the firing leaves, like
    the thread path, and not on its event loop: the live answer wins over the gate stored in
    the schedule's Input (here stored closed: the upstream task never ran; read open), so the
    target is called and the occurrence succeeds (seed 001, DEPENDENCY_FAILED)."""
    backend = LocalSchedulerBackend(db_sessions)
    tasks = TaskService(db_sessions, backend)
    recorder = Recorder(db_sessions, backend)
    settings = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))
    engine = LocalEngine(
        db_sessions, LocalDelivery(recorder, settings), workers=4, lookahead=timedelta(seconds=30)
    )
    reads: list[tuple[str, str]] = []

    def read_open(task_id: str) -> str | None:
        reads.append((task_id, threading.current_thread().name))
        return None

    engine.dependency_gate = read_open
    backend.on_change = engine.wake
    tenant = add_tenant(db_sessions)
    upstream = tasks.create(
        tenant,
        {
            "name": "upstream",
            "schedule": {"kind": "cron", "expression": "0 3 1 1 *"},
            "target": {"url": receiver.url("/ok/upstream")},
        },
    )[0]
    due = (datetime.now(UTC) + timedelta(seconds=2)).replace(microsecond=0)
    dependent = tasks.create(
        tenant,
        {
            "name": "dependent",
            "schedule": {"kind": "once", "at": format_scheduled_time(due)},
            "target": {"url": receiver.url("/ok/dependent")},
            "depends_on": [upstream["id"]],
        },
    )[0]
    assert dependent["dependency_gate"] == "DEPENDENCY_FAILED"  # as stored in the Input
    engine.start()
    try:
        deadline = time.monotonic() + 20
        recorded: list[Execution] = []
        while time.monotonic() < deadline and not recorded:
            with db_sessions() as session:
                recorded = list(session.scalars(select(Execution)))
            time.sleep(0.1)
    finally:
        engine.stop()
    assert [(row.task_id, row.status) for row in recorded] == [(dependent["id"], "success")]
    assert [request.path for request in receiver.received] == ["/ok/dependent"]
    assert [task_id for task_id, _ in reads] == [dependent["id"]]
    assert reads[0][1] != "tb-send"  # not on the sending loop's thread
