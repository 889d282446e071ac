"""Direct targets in the stack (issue "Targets beyond HTTP"; SEEDS S0-01, C-12): the context
parameter allowedTargetArns grants the scheduler role exactly one action on exactly the listed
resources (never `*`), the API function the same for run-now, and every service function gets
the list as TIMEBRIDGE_ALLOWED_TARGET_ARNS ('none' when nothing is granted)."""

from __future__ import annotations

from typing import Any

import pytest

from infra.bundle import Bundles
from infra.config import ConfigError, DeploymentConfig
from infra.lambdas import API_HANDLER, PROXY_HANDLER, RECORDER_HANDLER, SWEEPER_HANDLER
from tests.infra.conftest import synthesize
from tests.infra.helpers import (
    Template,
    actions_of,
    environment,
    function_by_handler,
    grants,
    resources,
    resources_of,
    role_id,
    statements,
)

QUEUES = "arn:aws:sqs:eu-west-1:111122223333:jobs-*"
TOPIC = "arn:aws:sns:eu-west-1:111122223333:alerts"
BUS = "arn:aws:events:eu-west-1:111122223333:event-bus/reports"
FUNCTION = "arn:aws:lambda:*:111122223333:function:worker"
ALLOWED = (QUEUES, TOPIC, BUS, FUNCTION)
DIRECT_ACTIONS = {
    "sqs:SendMessage": [QUEUES],
    "sns:Publish": [TOPIC],
    "events:PutEvents": [BUS],
    "lambda:InvokeFunction": [FUNCTION],
}


@pytest.fixture(scope="module")
def direct_template(bundles: Bundles) -> dict[str, Any]:
    return synthesize(bundles, {"allowedTargetArns": ", ".join(ALLOWED)})


def scheduler_role(template: Template) -> str:
    for logical_id, role in resources(template, "AWS::IAM::Role").items():
        trust = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        if any(s["Principal"].get("Service") == "scheduler.amazonaws.com" for s in trust):
            return logical_id
    raise AssertionError("no scheduler role")


def test_the_scheduler_role_gets_exactly_one_action_on_exactly_the_allowed_targets(
    direct_template: Template,
) -> None:
    role = scheduler_role(direct_template)
    for action, arns in DIRECT_ACTIONS.items():
        literal = [arn for arn in grants(direct_template, role, action) if isinstance(arn, str)]
        assert literal == arns, action
    for statement in statements(direct_template, role):
        assert "*" not in resources_of(statement)
        assert "*" not in actions_of(statement)


def test_the_api_may_send_a_run_now_to_the_same_targets_and_nothing_wider(
    direct_template: Template,
) -> None:
    api_role = role_id(function_by_handler(direct_template, API_HANDLER)[1])
    for action, arns in DIRECT_ACTIONS.items():
        literal = [arn for arn in grants(direct_template, api_role, action) if isinstance(arn, str)]
        assert literal == arns, action
    recorder_role = role_id(function_by_handler(direct_template, RECORDER_HANDLER)[1])
    assert grants(direct_template, recorder_role, "sns:Publish") == []


def test_service_functions_get_the_allow_list_and_the_proxy_does_not(
    direct_template: Template, template: Template
) -> None:
    for handler in (API_HANDLER, RECORDER_HANDLER, SWEEPER_HANDLER):
        variables = environment(direct_template, handler)
        assert variables["TIMEBRIDGE_ALLOWED_TARGET_ARNS"] == ",".join(ALLOWED)
        assert environment(template, handler)["TIMEBRIDGE_ALLOWED_TARGET_ARNS"] == "none"
    assert "TIMEBRIDGE_ALLOWED_TARGET_ARNS" not in environment(direct_template, PROXY_HANDLER)


def test_by_default_the_scheduler_role_reaches_no_direct_target(template: Template) -> None:
    role = scheduler_role(template)
    for action in ("sns:Publish", "events:PutEvents"):
        assert grants(template, role, action) == []


@pytest.mark.parametrize(
    "arn",
    [
        "*",
        "arn:aws:sqs:eu-west-1:*:jobs",  # any account
        "arn:aws:sqs:eu-west-1:111122223333:*",  # every queue of the account
        "arn:aws:dynamodb:eu-west-1:111122223333:table/x",  # not a target service
        "arn:aws:events:eu-west-1:111122223333:rule/x",  # a rule, not a bus
        "arn:aws:lambda:eu-west-1:111122223333:layer:x",
    ],
)
def test_allowed_target_arns_refuses_wildcards_and_other_resources(arn: str) -> None:
    context = {"allowedTargetArns": arn}
    with pytest.raises(ConfigError, match="allowedTargetArns"):
        DeploymentConfig.from_context(context.get)
