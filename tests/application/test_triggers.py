"""Triggers other than time (issue 9 part A), end to end in-process: the real proxy handler
(with a recording sender as the target) and the real recorder, on SQLite and PostgreSQL.

Seeds covered: S3-05 event triggers (topics with `*` / `**`, filters), S3-08 trigger counts,
S3-10 pipelines (one step's completion triggers the next), S1-04 / S1-11 task dependencies,
S1-14 DEPENDENCY_FAILED, S1-07 schedule listing (`GET /v1/schedules`, see test_triggers_api).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from proxy_lambda.settings import ProxySettings
from proxy_lambda.transport import OutgoingRequest, TargetResponse
from service.adapters.db.models import Execution, Task
from service.adapters.invoke import LocalDelivery
from service.application.history import HistoryService
from service.application.recorder import Recorder, outcome_from_record
from service.application.tasks import TaskService
from service.application.triggers import TriggerService
from service.domain.errors import InvalidRequest, NotFound
from service.domain.executions import format_scheduled_time
from service.domain.tasks import fill_context
from tests.application.fakes import FaultyBackend, FrozenClock, add_tenant

ALLOW_LOOPBACK = ProxySettings(allowed_networks=(ipaddress.ip_network("127.0.0.1/32"),))


class Target:
    """The targets' side: records each request and answers by path (200 unless told)."""

    def __init__(self) -> None:
        self.requests: list[OutgoingRequest] = []
        self.statuses: dict[str, int] = {}

    def __call__(self, request: OutgoingRequest, /) -> TargetResponse:
        self.requests.append(request)
        status = self.statuses.get(request.target.split("?")[0], 200)
        return TargetResponse(status, {"content-type": "text/plain"}, b"done", False)

    def paths(self) -> list[str]:
        return [request.target for request in self.requests]

    def bodies(self, path: str) -> list[Any]:
        return [json.loads(r.body or b"null") for r in self.requests if r.target == path]


class InlineInvoker:
    """The local run path without the thread: proxy handler then recorder, at once."""

    def __init__(self, delivery: LocalDelivery) -> None:
        self.delivery = delivery
        self.fired: list[dict[str, Any]] = []

    def fire(self, event: dict[str, Any]) -> None:
        self.fired.append(event)
        self.delivery.deliver(event)


@dataclass
class World:
    sessions: sessionmaker[Session]
    tenant: str
    tasks: TaskService
    recorder: Recorder
    triggers: TriggerService
    history: HistoryService
    invoker: InlineInvoker
    target: Target
    backend: FaultyBackend
    clock: FrozenClock
    sleeps: list[float] = field(default_factory=list)

    def create(self, name: str, schedule: dict[str, Any], **extra: Any) -> str:
        body = {"name": name, "schedule": schedule, "target": {"url": f"http://127.0.0.1/{name}"}}
        body.update(extra)
        view, _ = self.tasks.create(self.tenant, body)
        return str(view["id"])

    def executions(self, task_id: str) -> list[Execution]:
        with self.sessions() as session:
            return list(
                session.scalars(
                    select(Execution)
                    .where(Execution.task_id == task_id)
                    .order_by(Execution.scheduled_time)
                )
            )

    def task(self, task_id: str) -> Task:
        with self.sessions() as session:
            task = session.get(Task, task_id)
            assert task is not None
            return task

    def fire_schedule(self, task_id: str, when: datetime) -> dict[str, Any]:
        """What the local engine (or EventBridge) does at fire time: the schedule's Input with
        the context filled in, through the proxy and the recorder."""
        task = self.task(task_id)
        info = self.backend.get(task.schedule_name)
        assert info is not None
        event = json.loads(
            fill_context(
                info.definition.input,
                schedule_arn=info.arn,
                scheduled_time=format_scheduled_time(when),
                execution_id="exec-" + when.strftime("%H%M%S"),
            )
        )
        return self.invoker.delivery.deliver(event)


@pytest.fixture
def world(
    db_sessions: sessionmaker[Session], backend: FaultyBackend, clock: FrozenClock, tenant: str
) -> World:
    target = Target()
    recorder = Recorder(db_sessions, backend, clock=clock)
    invoker = InlineInvoker(LocalDelivery(recorder, ALLOW_LOOPBACK, send=target))
    recorder.invoker = invoker
    sleeps: list[float] = []
    return World(
        sessions=db_sessions,
        tenant=tenant,
        tasks=TaskService(db_sessions, backend, clock=clock),
        recorder=recorder,
        triggers=TriggerService(
            db_sessions,
            invoker,
            backend,
            clock=clock,
            background=False,
            backfill_rate_per_second=4.0,
            backfill_max=50,
            sleep=sleeps.append,
        ),
        history=HistoryService(db_sessions, invoker, clock=clock),
        invoker=invoker,
        target=target,
        backend=backend,
        clock=clock,
        sleeps=sleeps,
    )


EVENT = {"kind": "event", "topic": "orders.*.created", "filter": {"amount": {"gte": 100}}}


# --- events --------------------------------------------------------------------------------------


def test_an_event_runs_matching_tasks_through_the_run_path_and_counts_triggers(
    world: World,
) -> None:
    """S3-05, S3-08: a matching event runs the task now (execution row, then the proxy);
    the task shows trigger_count and last_triggered_at; the target gets the event envelope."""
    task_id = world.create("bill", EVENT, target={"url": "http://127.0.0.1/bill", "body": {"k": 1}})
    other = world.create("other", {"kind": "event", "topic": "payments.**"})

    result = world.triggers.publish(world.tenant, "orders.eu.created", {"amount": 150})

    assert result["matched"] == 1
    [execution] = result["executions"]
    assert execution["task_id"] == task_id and execution["trigger"] == "event"
    assert execution["status"] == "success"
    assert world.target.bodies("/bill") == [
        {"event": {"topic": "orders.eu.created", "payload": {"amount": 150}}, "body": {"k": 1}}
    ]
    view = world.tasks.get(world.tenant, task_id)
    assert view["trigger_count"] == 1
    assert view["last_triggered_at"] is not None
    assert view["mode"] == "trigger" and view["next_fire_times"] == []
    assert world.tasks.get(world.tenant, other)["trigger_count"] == 0


def test_an_event_with_no_match_runs_nothing(world: World) -> None:
    """S3-05: wrong topic, a failing filter, or another tenant's task: matched 0."""
    world.create("bill", EVENT)
    other_tenant = add_tenant(world.sessions, "team-b")
    assert world.triggers.publish(world.tenant, "orders.created", {"amount": 500})["matched"] == 0
    assert world.triggers.publish(world.tenant, "orders.eu.created", {"amount": 5})["matched"] == 0
    assert (
        world.triggers.publish(other_tenant, "orders.eu.created", {"amount": 500})["matched"] == 0
    )
    assert world.target.requests == []


def test_event_placeholders_fill_the_body_from_the_event(world: World) -> None:
    """S3-05 event mapper: {{event.topic}}, {{event.payload}}, {{event.payload.<path>}}."""
    world.create(
        "ship",
        {"kind": "event", "topic": "orders.**"},
        target={
            "url": "http://127.0.0.1/ship",
            "body": {
                "order": "{{event.payload.order.id}}",
                "topic": "{{event.topic}}",
                "all": "{{event.payload}}",
                "note": "order {{event.payload.order.id}} by {{task.name}}",
            },
        },
    )
    world.triggers.publish(world.tenant, "orders.created", {"order": {"id": 7}})
    assert world.target.bodies("/ship") == [
        {
            "order": 7,
            "topic": "orders.created",
            "all": {"order": {"id": 7}},
            "note": "order 7 by ship",
        }
    ]


def test_event_placeholders_are_refused_on_a_timed_task(world: World) -> None:
    with pytest.raises(InvalidRequest) as caught:
        world.create(
            "timed",
            {"kind": "rate", "expression": "rate(5 minutes)"},
            target={"url": "http://127.0.0.1/t", "body": {"x": "{{event.topic}}"}},
        )
    assert caught.value.field == "target.body"


# --- pipelines -----------------------------------------------------------------------------------


def test_a_finished_execution_publishes_task_succeeded_and_starts_the_next_step(
    world: World,
) -> None:
    """S3-10 pipeline: extract ends -> task.extract.succeeded -> load runs, once."""
    extract = world.create("extract", {"kind": "event", "topic": "nightly"})
    load = world.create("load", {"kind": "event", "topic": "task.extract.succeeded"})
    cleanup = world.create("cleanup", {"kind": "event", "topic": "task.extract.failed"})

    world.triggers.publish(world.tenant, "nightly", None)

    assert world.target.paths() == ["/extract", "/load"]
    [run] = world.executions(load)
    assert run.trigger == "event" and run.status == "success"
    assert run.trigger_event is not None
    assert run.trigger_event["topic"] == "task.extract.succeeded"
    assert run.trigger_event["payload"]["task_id"] == extract
    assert world.executions(cleanup) == []


def test_a_failed_execution_publishes_task_failed(world: World) -> None:
    world.target.statuses["/extract"] = 400  # a 4xx the target meant: final, no retry
    world.create("extract", {"kind": "event", "topic": "nightly"})
    alarm = world.create("alarm", {"kind": "event", "topic": "task.*.failed"})
    world.triggers.publish(world.tenant, "nightly", None)
    [run] = world.executions(alarm)
    assert run.status == "success"
    assert run.trigger_event is not None and run.trigger_event["payload"]["status_code"] == 400


def test_a_redelivered_outcome_does_not_trigger_twice(world: World) -> None:
    """At-least-once delivery: the same outcome record again starts no second run."""
    world.create("extract", {"kind": "event", "topic": "nightly"})
    load = world.create("load", {"kind": "event", "topic": "task.extract.succeeded"})
    world.triggers.publish(world.tenant, "nightly", None)
    first_fire = world.invoker.fired[0]
    record = world.invoker.delivery.call(first_fire)  # the proxy's record, delivered again
    world.recorder.record_outcome(outcome_from_record(record))
    world.recorder.sweep()
    assert len(world.executions(load)) == 1
    assert world.task(load).trigger_count == 1


def test_a_pipeline_loop_through_topics_stops(world: World) -> None:
    """Two tasks that start each other on success stop after the hop limit."""
    world.create("ping", {"kind": "event", "topic": "task.pong.succeeded"})
    pong = world.create("pong", {"kind": "event", "topic": "task.ping.succeeded"})
    world.triggers.publish(world.tenant, "task.pong.succeeded", None)
    assert 10 <= len(world.target.requests) <= 20
    assert max(e.trigger_depth for e in world.executions(pong)) <= 16


def test_an_event_target_publishes_on_its_topic_when_the_task_fires(world: World) -> None:
    """Target type `event` (issue 11): the firing publishes within the tenant; subscribers run
    with the rendered payload; the firing task itself calls nothing."""
    source = world.create(
        "announce",
        {"kind": "rate", "expression": "rate(1 hour)"},
        target={"type": "event", "topic": "reports.ready", "payload": {"at": "{{scheduled_time}}"}},
    )
    reader = world.create(
        "reader",
        {"kind": "event", "topic": "reports.*"},
        target={"url": "http://127.0.0.1/reader", "body": {"at": "{{event.payload.at}}"}},
    )
    when = world.clock() + timedelta(hours=1)
    record = world.fire_schedule(source, when)
    assert record["status"] == "success" and record["published"]["topic"] == "reports.ready"
    assert world.target.bodies("/reader") == [{"at": format_scheduled_time(when)}]
    assert world.target.paths() == ["/reader"]
    world.recorder.record_outcome(outcome_from_record(record))  # redelivered
    assert len(world.executions(reader)) == 1


# --- chains --------------------------------------------------------------------------------------


def test_after_chain_runs_on_success_and_on_failure(world: World) -> None:
    """S3-10, S1-18: `after` with on success / failure / completion."""
    build = world.create("build", {"kind": "event", "topic": "go"})
    deploy = world.create("deploy", {"kind": "after", "tasks": [build], "on": "success"})
    page = world.create("page", {"kind": "after", "tasks": [build], "on": "failure"})
    log = world.create("log", {"kind": "after", "tasks": [build], "on": "completion"})

    world.triggers.publish(world.tenant, "go", None)
    assert [len(world.executions(t)) for t in (deploy, page, log)] == [1, 0, 1]
    assert world.executions(deploy)[0].trigger == "chain"

    world.target.statuses["/build"] = 404
    world.clock.advance(minutes=1)
    world.triggers.publish(world.tenant, "go", None)
    assert [len(world.executions(t)) for t in (deploy, page, log)] == [1, 1, 2]


def test_after_several_tasks_waits_for_the_latest_of_each(world: World) -> None:
    """The occurrence rule: each time one upstream ends that way, the chain runs if the latest
    ended execution of every other upstream also ended that way."""
    a = world.create("a", {"kind": "event", "topic": "a"})
    b = world.create("b", {"kind": "event", "topic": "b"})
    both = world.create("both", {"kind": "after", "tasks": [a, b]})

    world.triggers.publish(world.tenant, "a", None)
    assert world.executions(both) == []  # b has never run
    world.triggers.publish(world.tenant, "b", None)
    assert len(world.executions(both)) == 1
    world.target.statuses["/a"] = 400
    world.triggers.publish(world.tenant, "a", None)  # a failed now
    world.triggers.publish(world.tenant, "b", None)  # b ok, but a's latest failed
    assert len(world.executions(both)) == 1


def test_a_paused_chain_does_not_run(world: World) -> None:
    """Pause and resume gate event and after tasks too."""
    a = world.create("a", {"kind": "event", "topic": "a"})
    follower = world.create("follower", {"kind": "after", "tasks": [a]})
    world.tasks.pause(world.tenant, follower)
    world.triggers.publish(world.tenant, "a", None)
    assert world.executions(follower) == []
    world.tasks.resume(world.tenant, follower)
    world.triggers.publish(world.tenant, "a", None)
    assert len(world.executions(follower)) == 1


# --- dependencies --------------------------------------------------------------------------------


def test_depends_on_skips_occurrences_with_dependency_failed_until_it_succeeds(
    world: World,
) -> None:
    """S1-04, S1-14 DEPENDENCY_FAILED: the gate travels in the schedule's Input, so the proxy
    skips the call without reading the database; the recorder opens it on success."""
    dependency = world.create("extract", {"kind": "rate", "expression": "rate(1 hour)"})
    report = world.create(
        "report", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=[dependency]
    )
    assert world.tasks.get(world.tenant, report)["dependency_gate"] == "DEPENDENCY_FAILED"
    first = world.clock() + timedelta(hours=1)
    record = world.fire_schedule(report, first)
    assert record["status"] == "skipped" and record["error_kind"] == "DEPENDENCY_FAILED"
    [skipped] = world.executions(report)
    assert skipped.status == "skipped" and skipped.error_kind == "DEPENDENCY_FAILED"
    assert "/report" not in world.target.paths()

    world.history.run_now(world.tenant, dependency)  # succeeds: the gate opens
    assert world.task(report).dependency_gate is None
    info = world.backend.get(world.task(report).schedule_name)
    assert info is not None and "gate" not in json.loads(info.definition.input)
    world.fire_schedule(report, first + timedelta(hours=1))
    assert world.executions(report)[-1].status == "success"

    world.target.statuses["/extract"] = 500
    world.clock.advance(minutes=1)
    world.history.run_now(world.tenant, dependency)  # a manual run ends failed: final
    assert world.task(report).dependency_gate == "DEPENDENCY_FAILED"
    world.fire_schedule(report, first + timedelta(hours=2))
    assert world.executions(report)[-1].status == "skipped"


def test_a_dependency_awaiting_its_retry_has_not_ended(world: World) -> None:
    dependency = world.create("extract", {"kind": "rate", "expression": "rate(1 hour)"})
    world.create("report", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=[dependency])
    world.target.statuses["/extract"] = 503
    world.fire_schedule(dependency, world.clock() + timedelta(hours=1))
    [attempt] = world.executions(dependency)
    assert attempt.retry_at is not None  # a retry follows: not final, no gate change to it
    with world.sessions() as session:
        from service.application.triggers import latest_final

        assert latest_final(session, dependency) is None


def test_unknown_or_other_tenant_ids_are_not_found(world: World) -> None:
    other_tenant = add_tenant(world.sessions, "team-b")
    theirs, _ = world.tasks.create(
        other_tenant,
        {
            "name": "x",
            "schedule": {"kind": "event", "topic": "x"},
            "target": {"url": "http://127.0.0.1/x"},
        },
    )
    for ids in (["not-a-uuid"], ["6f1b7c3e-0000-4000-8000-000000000000"], [theirs["id"]]):
        with pytest.raises(NotFound):
            world.create("chain", {"kind": "after", "tasks": ids})
        with pytest.raises(NotFound):
            world.create("dep", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=ids)


def test_cycles_are_refused_on_create_and_on_update(world: World) -> None:
    a = world.create("a", {"kind": "rate", "expression": "rate(1 hour)"})
    b = world.create("b", {"kind": "after", "tasks": [a]})
    c = world.create("c", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=[b])
    with pytest.raises(InvalidRequest) as caught:
        world.tasks.update(world.tenant, a, {"depends_on": [c]})
    assert caught.value.field == "depends_on"
    assert "cycle" in caught.value.reason and a in caught.value.reason
    with pytest.raises(InvalidRequest) as caught:
        world.tasks.update(world.tenant, a, {"schedule": {"kind": "after", "tasks": [b]}})
    assert caught.value.field == "schedule.tasks"
    with pytest.raises(InvalidRequest):
        world.tasks.update(world.tenant, b, {"depends_on": [b]})
    assert world.task(a).depends_on is None  # nothing stored by the refused updates
    # Turning a timed task into a chain removes its schedule; a valid link is accepted.
    world.tasks.update(world.tenant, c, {"schedule": {"kind": "after", "tasks": [a]}})
    assert world.backend.get(world.task(c).schedule_name) is None


# --- backfill ------------------------------------------------------------------------------------


def test_backfill_runs_past_occurrences_in_order_paced_and_only_once(world: World) -> None:
    """Backfill: occurrences of [from, to) in order, each with its own scheduled time, paced
    at the configured rate; a second backfill of the window queues nothing new."""
    task_id = world.create("hourly", {"kind": "cron", "expression": "0 * * * *"})
    start = world.clock() - timedelta(hours=5)  # 00:00 .. 04:00 are in [from, to)
    body = {"from": format_scheduled_time(start), "to": format_scheduled_time(world.clock())}

    queued = world.triggers.backfill(world.tenant, task_id, body)
    assert queued["queued"] == 5 and queued["already_recorded"] == 0
    assert queued["first"] == "2026-11-23T00:00:00Z" and queued["last"] == "2026-11-23T04:00:00Z"
    assert world.triggers.dispatch_backfill() == 5
    times = [e["context"]["scheduled_time"] for e in world.invoker.fired]
    assert times == [f"2026-11-23T0{h}:00:00Z" for h in range(5)]
    assert world.sleeps == [0.25] * 4  # 4 per second, between fires
    runs = world.executions(task_id)
    assert [r.trigger for r in runs] == ["backfill"] * 5
    assert all(r.status == "success" for r in runs)

    again = world.triggers.backfill(world.tenant, task_id, {**body, "max": 10})
    assert again["queued"] == 0 and again["already_recorded"] == 5
    assert world.triggers.dispatch_backfill() == 0


def test_backfill_max_truncates_and_bad_windows_are_refused(world: World) -> None:
    task_id = world.create("hourly", {"kind": "cron", "expression": "0 * * * *"})
    now = world.clock()
    text = format_scheduled_time
    result = world.triggers.backfill(
        world.tenant, task_id, {"from": text(now - timedelta(days=1)), "to": text(now), "max": 3}
    )
    assert result["queued"] == 3 and result["truncated"] is True
    assert result["first"] == text(now - timedelta(days=1))
    bad: list[tuple[dict[str, Any], str]] = [
        ({"from": text(now), "to": text(now + timedelta(hours=1))}, "to"),  # the future
        ({"from": text(now), "to": text(now - timedelta(hours=1))}, "to"),  # to < from
        ({"from": text(now - timedelta(hours=2)), "to": text(now), "max": 51}, "max"),
        ({"from": "yesterday", "to": text(now)}, "from"),
        ({"from": "2026-11-22T00:00:00", "to": text(now)}, "from"),  # no offset
    ]
    for body, field_name in bad:
        with pytest.raises(InvalidRequest) as caught:
            world.triggers.backfill(world.tenant, task_id, body)
        assert caught.value.field == field_name
    event_task = world.create("evt", {"kind": "event", "topic": "x"})
    with pytest.raises(InvalidRequest):
        world.triggers.backfill(
            world.tenant, event_task, {"from": text(now - timedelta(hours=1)), "to": text(now)}
        )
    with pytest.raises(NotFound):
        world.triggers.backfill(
            add_tenant(world.sessions, "team-b"),
            task_id,
            {"from": text(now - timedelta(hours=1)), "to": text(now)},
        )


def test_the_local_engine_reads_dependencies_at_fire_time(world: World) -> None:
    """S1-14 locally exact: even before the recorder has pushed a closed gate into the Input,
    the engine re-reads the dependencies as the firing leaves and the occurrence is skipped."""
    from functools import partial

    from service.adapters.scheduler.engine import LocalEngine
    from service.application.recorder import new_execution
    from service.application.triggers import gate_for

    dependency = world.create("extract", {"kind": "cron", "expression": "0 0 1 1 *"})
    report = world.create(
        "report", {"kind": "rate", "expression": "rate(1 hour)"}, depends_on=[dependency]
    )
    world.history.run_now(world.tenant, dependency)  # succeeds: the Input's gate opens
    assert world.task(report).dependency_gate is None
    with world.sessions() as session:  # then a failure lands, its follow-ups not yet done
        failed = new_execution(
            world.task(dependency), world.clock() + timedelta(minutes=1), 1, world.clock()
        )
        failed.status, failed.finished_at = "failed", world.clock() + timedelta(minutes=1)
        failed.outcome_recorded = True
        session.add(failed)
        session.commit()

    engine = LocalEngine(world.sessions, world.invoker.delivery, clock=world.clock)
    engine.dependency_gate = partial(gate_for, world.sessions)
    world.clock.advance(hours=1, seconds=1)
    engine.run_once()

    [run] = world.executions(report)
    assert (run.status, run.error_kind) == ("skipped", "DEPENDENCY_FAILED")
    assert "/report" not in world.target.paths()


def test_a_crash_before_the_next_step_is_fired_is_finished_by_the_sweeper(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run a pipeline step starts is committed with its source; if the process dies before
    invoking it, the source keeps its follow-up mark and the sweeper fires it (once)."""
    from service.application import triggers as module
    from tests.application.fakes import Crash

    world.create("extract", {"kind": "event", "topic": "nightly"})
    load = world.create("load", {"kind": "event", "topic": "task.extract.succeeded"})
    real_dispatch = module.dispatch
    calls: list[int] = []

    def crashing(*args: Any) -> int:
        calls.append(1)
        if len(calls) == 2:  # the first is the event's own run; the second starts `load`
            raise Crash()
        return real_dispatch(*args)

    monkeypatch.setattr(module, "dispatch", crashing)
    with pytest.raises(Crash):
        world.triggers.publish(world.tenant, "nightly", None)
    [pending] = world.executions(load)
    assert pending.status == "pending" and "/load" not in world.target.paths()

    monkeypatch.setattr(module, "dispatch", real_dispatch)
    assert world.recorder.sweep()["followups_finished"] >= 1
    assert world.target.paths().count("/load") == 1
    assert world.recorder.sweep()["followups_finished"] == 0
    [done] = world.executions(load)
    assert done.status == "success"


def test_an_event_run_of_a_gated_task_is_recorded_skipped(world: World) -> None:
    """S1-14: event and chain runs check depends_on when they start (exact on both backends)."""
    dependency = world.create("extract", {"kind": "rate", "expression": "rate(1 hour)"})
    gated = world.create("gated", {"kind": "event", "topic": "go"}, depends_on=[dependency])
    result = world.triggers.publish(world.tenant, "go", None)
    [execution] = result["executions"]
    assert (execution["status"], execution["error_kind"]) == ("skipped", "DEPENDENCY_FAILED")
    assert world.target.paths() == []
    world.history.run_now(world.tenant, dependency)
    world.clock.advance(seconds=1)
    assert world.triggers.publish(world.tenant, "go", None)["executions"][0]["status"] == "success"
    assert world.task(gated).trigger_count == 2


def test_an_event_run_never_invoked_is_fired_by_the_sweeper_later(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """POST /v1/events commits the run, then invokes it: a crash in between leaves a pending
    run that the sweeper fires once it is older than any delivery could take."""
    from service.application import triggers as module
    from tests.application.fakes import Crash

    task_id = world.create("job", {"kind": "event", "topic": "go"})

    def crash(*args: Any) -> int:
        raise Crash()

    monkeypatch.setattr(module, "dispatch", crash)
    with pytest.raises(Crash):
        world.triggers.publish(world.tenant, "go", None)
    monkeypatch.undo()
    assert world.triggers.redispatch_stranded() == 0  # too recent: it may be in flight
    world.clock.advance(minutes=21)
    assert world.triggers.redispatch_stranded() == 1
    assert world.triggers.redispatch_stranded() == 0
    [run] = world.executions(task_id)
    assert run.status == "success" and world.target.paths() == ["/job"]
