"""One contract for every SchedulerBackend: EventBridge (on moto) and the local table alike.
Whatever passes here may be swapped for the other without the service noticing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from sqlalchemy.orm import Session, sessionmaker

from service.adapters.scheduler.eventbridge import EventBridgeSchedulerBackend
from service.adapters.scheduler.local import LocalSchedulerBackend
from service.domain.errors import Conflict, InvalidSchedule, NotFound
from service.domain.provisioning import ScheduleDefinition, SchedulerBackend

GROUP = "timebridge-test"
PROXY_ARN = "arn:aws:lambda:us-east-1:123456789012:function:timebridge-proxy"
ROLE_ARN = "arn:aws:iam::123456789012:role/timebridge-scheduler"


@pytest.fixture(params=["eventbridge", "local"])
def backend(
    request: pytest.FixtureRequest, aws_env: None, db_sessions: sessionmaker[Session]
) -> Iterator[SchedulerBackend]:
    if request.param == "local":
        yield LocalSchedulerBackend(db_sessions, group=GROUP)
        return
    from moto import mock_aws

    from service.adapters.scheduler.eventbridge import make_scheduler_client

    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        yield EventBridgeSchedulerBackend(
            group=GROUP, target_arn=PROXY_ARN, role_arn=ROLE_ARN, client=client
        )


def definition(
    name: str = "tb-0123456789abcdef0123456789abcdef", **changes: object
) -> ScheduleDefinition:
    base = ScheduleDefinition(
        name=name,
        expression="cron(0 9 ? * MON-FRI *)",
        expression_timezone="Asia/Seoul",
        input='{"task_id":"t"}',
        enabled=True,
        start=datetime(2027, 1, 1, tzinfo=UTC),
        end=datetime(2028, 1, 1, tzinfo=UTC),
        flexible_window_minutes=None,
        delete_after_completion=False,
        description="Timebridge task t",
    )
    return ScheduleDefinition(**{**base.__dict__, **changes})


def test_create_then_get_round_trips_every_field(backend: SchedulerBackend) -> None:
    wanted = definition(flexible_window_minutes=15)
    arn = backend.create(wanted, client_token="token-1")
    assert arn.startswith("arn:aws:scheduler:")
    assert arn.endswith(f"schedule/{GROUP}/{wanted.name}")
    info = backend.get(wanted.name)
    assert info is not None
    assert info.arn == arn
    assert info.definition == wanted


def test_one_time_schedule_keeps_delete_after_completion(backend: SchedulerBackend) -> None:
    wanted = definition(
        expression="at(2027-01-01T00:00:00)",
        expression_timezone="UTC",
        start=None,
        end=None,
        delete_after_completion=True,
    )
    backend.create(wanted, client_token="token-1")
    info = backend.get(wanted.name)
    assert info is not None and info.definition.delete_after_completion


def test_creating_an_existing_name_with_another_token_conflicts(backend: SchedulerBackend) -> None:
    backend.create(definition(), client_token="token-1")
    with pytest.raises(Conflict):
        backend.create(definition(expression="cron(0 10 * * ? *)"), client_token="token-2")


def test_get_of_a_missing_schedule_is_none(backend: SchedulerBackend) -> None:
    assert backend.get("tb-ffffffffffffffffffffffffffffffff") is None


def test_update_replaces_the_whole_schedule(backend: SchedulerBackend) -> None:
    backend.create(definition(), client_token="token-1")
    changed = definition(
        expression="rate(5 minutes)",
        expression_timezone="UTC",
        input='{"task_id":"t","v":2}',
        enabled=False,
        start=None,
        end=None,
        description="changed",
    )
    backend.update(changed)
    info = backend.get(changed.name)
    assert info is not None
    assert info.definition == changed


def test_update_of_a_missing_schedule_is_not_found(backend: SchedulerBackend) -> None:
    with pytest.raises(NotFound):
        backend.update(definition())


def test_delete_reports_whether_there_was_anything(backend: SchedulerBackend) -> None:
    backend.create(definition(), client_token="token-1")
    assert backend.delete(definition().name) is True
    assert backend.delete(definition().name) is False
    assert backend.get(definition().name) is None


def test_list_shows_every_schedule_with_its_state(backend: SchedulerBackend) -> None:
    names = [f"tb-{i:032x}" for i in range(5)]
    for i, name in enumerate(names):
        backend.create(definition(name, enabled=i % 2 == 0), client_token=f"token-{i}")
    listed = {s.name: s.enabled for s in backend.list()}
    assert listed == {name: i % 2 == 0 for i, name in enumerate(names)}


def test_local_backend_refuses_what_aws_would_refuse(db_sessions: sessionmaker[Session]) -> None:
    local = LocalSchedulerBackend(db_sessions, group=GROUP)
    with pytest.raises(InvalidSchedule):
        local.create(definition(expression="cron(0 9 * * * *)"), client_token="t")
    with pytest.raises(InvalidSchedule):
        local.create(definition(expression_timezone="Mars/Base"), client_token="t")


def test_local_backend_retry_with_the_same_token_is_idempotent(
    db_sessions: sessionmaker[Session],
) -> None:
    local = LocalSchedulerBackend(db_sessions, group=GROUP)
    first = local.create(definition(), client_token="token-1")
    assert local.create(definition(), client_token="token-1") == first


def test_the_eventbridge_adapter_sets_the_dead_letter_queue(aws_env: None) -> None:
    from moto import mock_aws

    from service.adapters.scheduler.eventbridge import make_scheduler_client

    dlq = "arn:aws:sqs:us-east-1:123456789012:timebridge-schedule-dlq"
    with mock_aws():
        client = make_scheduler_client()
        client.create_schedule_group(Name=GROUP)
        backend = EventBridgeSchedulerBackend(
            group=GROUP, target_arn=PROXY_ARN, role_arn=ROLE_ARN, dead_letter_arn=dlq, client=client
        )
        backend.create(definition(), client_token="t")
        raw = client.get_schedule(Name=definition().name, GroupName=GROUP)
        assert raw["Target"]["DeadLetterConfig"] == {"Arn": dlq}
        backend.update(definition(expression="rate(5 minutes)"))
        raw = client.get_schedule(Name=definition().name, GroupName=GROUP)
        assert raw["Target"]["DeadLetterConfig"] == {"Arn": dlq}
