"""The synthesized stack, read as CloudFormation: what runs, who may do what, where outcomes
go, what raises an alarm, and which settings each function gets."""

from __future__ import annotations

from typing import Any

from infra.lambdas import (
    API_HANDLER,
    MIGRATE_HANDLER,
    PROXY_HANDLER,
    RECORDER_HANDLER,
    SWEEPER_HANDLER,
)
from tests.infra.helpers import (
    Template,
    actions_of,
    environment,
    function_by_handler,
    grants,
    mentions,
    resources,
    resources_of,
    role_id,
    statements,
)

SERVICE_HANDLERS = (API_HANDLER, RECORDER_HANDLER, SWEEPER_HANDLER)


def only(found: dict[str, dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    assert len(found) == 1, sorted(found)
    return next(iter(found.items()))


def test_the_three_entry_points_run_on_python_311_x86(template: Template) -> None:
    for handler in (API_HANDLER, PROXY_HANDLER, RECORDER_HANDLER, SWEEPER_HANDLER):
        _, function = function_by_handler(template, handler)
        assert function["Runtime"] == "python3.11"
        assert function["Architectures"] == ["x86_64"]


def test_no_scheduler_passrole_or_invoke_action_is_granted_on_everything(
    template: Template,
) -> None:
    on_everything = [
        action
        for statement in statements(template)
        if "*" in resources_of(statement)
        for action in actions_of(statement)
    ]
    risky = [
        action
        for action in on_everything
        if action.startswith(("scheduler:", "iam:PassRole", "lambda:Invoke", "iam:*", "lambda:*"))
    ]
    # ListSchedules has no resource type in IAM: "*" is the only way to grant it.
    assert risky == ["scheduler:ListSchedules"]


def test_only_the_sweeper_may_list_schedules(template: Template) -> None:
    listers = [
        handler
        for handler in (API_HANDLER, PROXY_HANDLER, RECORDER_HANDLER, SWEEPER_HANDLER)
        if grants(
            template, role_id(function_by_handler(template, handler)[1]), "scheduler:ListSchedules"
        )
    ]
    assert listers == [SWEEPER_HANDLER]


def test_scheduler_role_is_assumed_by_scheduler_and_invokes_only_the_proxy(
    template: Template,
) -> None:
    proxy_id, _ = function_by_handler(template, PROXY_HANDLER)
    roles = {
        logical_id: role
        for logical_id, role in resources(template, "AWS::IAM::Role").items()
        if any(
            statement["Principal"].get("Service") == "scheduler.amazonaws.com"
            for statement in role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
        )
    }
    role, properties = only(roles)
    trust = properties["Properties"]["AssumeRolePolicyDocument"]["Statement"][0]
    assert "aws:SourceAccount" in trust["Condition"]["StringEquals"]
    invocable = grants(template, role, "lambda:InvokeFunction")
    assert invocable and all(mentions(target, proxy_id) for target in invocable)
    actions = {
        action for statement in statements(template, role) for action in actions_of(statement)
    }
    sqs_actions = {"sqs:SendMessage", "sqs:GetQueueAttributes", "sqs:GetQueueUrl"}
    kms_actions = {"kms:Decrypt", "kms:Encrypt", "kms:ReEncrypt*", "kms:GenerateDataKey*"}
    assert actions == {"lambda:InvokeFunction"} | sqs_actions | kms_actions
    # It may send only to the schedules' dead-letter queue.
    for action in sqs_actions:
        targets = grants(template, role, action)
        assert targets and all("SchedulerDeadLetters" in str(target) for target in targets)


def test_service_functions_manage_only_their_group_and_pass_only_the_scheduler_role(
    template: Template,
) -> None:
    scheduler_role, _ = only(
        {
            logical_id: role
            for logical_id, role in resources(template, "AWS::IAM::Role").items()
            if "InvokeProxyRole" in logical_id
        }
    )
    for handler in SERVICE_HANDLERS:
        role = role_id(function_by_handler(template, handler)[1])
        for action in (
            "scheduler:CreateSchedule",
            "scheduler:UpdateSchedule",
            "scheduler:DeleteSchedule",
            "scheduler:GetSchedule",
        ):
            (arn,) = grants(template, role, action)
            assert arn["Fn::Join"][1][-1] == ":schedule/timebridge-dev/*"
        passable = [
            statement
            for statement in statements(template, role)
            if "iam:PassRole" in actions_of(statement)
        ]
        (statement,) = passable
        assert resources_of(statement) == [{"Fn::GetAtt": [scheduler_role, "Arn"]}]
        assert statement["Condition"] == {
            "StringEquals": {"iam:PassedToService": "scheduler.amazonaws.com"}
        }
    proxy_role = role_id(function_by_handler(template, PROXY_HANDLER)[1])
    assert not grants(template, proxy_role, "scheduler:CreateSchedule")
    assert not grants(template, proxy_role, "iam:PassRole")


def test_schedule_group_is_named_for_the_stage(template: Template) -> None:
    _, group = only(resources(template, "AWS::Scheduler::ScheduleGroup"))
    assert group["Properties"]["Name"] == "timebridge-dev"


def test_proxy_makes_no_retries_and_sends_every_outcome_to_the_queue(template: Template) -> None:
    proxy_id, _ = function_by_handler(template, PROXY_HANDLER)
    configs = {
        logical_id: config
        for logical_id, config in resources(template, "AWS::Lambda::EventInvokeConfig").items()
        if config["Properties"]["FunctionName"] == {"Ref": proxy_id}
    }
    _, config = only(configs)
    properties = config["Properties"]
    assert properties["MaximumRetryAttempts"] == 0
    assert 60 <= properties["MaximumEventAgeInSeconds"] <= 21600
    queue_id, _ = next(
        (logical_id, queue)
        for logical_id, queue in resources(template, "AWS::SQS::Queue").items()
        if "RedrivePolicy" in queue["Properties"]
    )
    destinations = properties["DestinationConfig"]
    assert destinations["OnSuccess"]["Destination"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert destinations["OnFailure"]["Destination"] == {"Fn::GetAtt": [queue_id, "Arn"]}


def test_outcomes_queue_has_an_encrypted_dead_letter_queue(template: Template) -> None:
    queues = resources(template, "AWS::SQS::Queue")
    assert len(queues) == 3  # outcomes, their dead letters, and the schedules' dead letters
    ((main_id, main),) = [(k, q) for k, q in queues.items() if "RedrivePolicy" in q["Properties"]]
    redrive = main["Properties"]["RedrivePolicy"]
    dead_letter_id = redrive["deadLetterTargetArn"]["Fn::GetAtt"][0]
    assert dead_letter_id in queues and dead_letter_id != main_id
    assert redrive["maxReceiveCount"] == 5
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    # Visibility covers six recorder timeouts, as AWS advises for an SQS trigger.
    _, recorder = function_by_handler(template, RECORDER_HANDLER)
    assert main["Properties"]["VisibilityTimeout"] >= 6 * recorder["Timeout"]


def test_recorder_reads_the_queue_with_partial_batch_responses(template: Template) -> None:
    recorder_id, _ = function_by_handler(template, RECORDER_HANDLER)
    mappings = resources(template, "AWS::Lambda::EventSourceMapping")
    sources = set()
    for mapping in mappings.values():
        properties = mapping["Properties"]
        assert properties["FunctionName"] == {"Ref": recorder_id}
        assert properties["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
        sources.add(properties["EventSourceArn"]["Fn::GetAtt"][0])
    # The outcomes queue, and the dead letters of the schedules themselves.
    assert len(sources) == 2 and any("SchedulerDeadLetters" in s for s in sources)
    dlq = environment(template, RECORDER_HANDLER)["TIMEBRIDGE_SCHEDULE_DLQ_ARN"]
    assert "SchedulerDeadLetters" in str(dlq)


def test_a_timer_runs_the_sweeper_every_minute_without_retries(template: Template) -> None:
    sweeper_id, _ = function_by_handler(template, SWEEPER_HANDLER)
    _, rule = only(resources(template, "AWS::Events::Rule"))
    assert rule["Properties"]["ScheduleExpression"] == "rate(1 minute)"
    (target,) = rule["Properties"]["Targets"]
    assert target["Arn"] == {"Fn::GetAtt": [sweeper_id, "Arn"]}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0


def test_http_api_fronts_the_api_function_with_throttling(template: Template) -> None:
    api_id, _ = function_by_handler(template, API_HANDLER)
    _, integration = only(resources(template, "AWS::ApiGatewayV2::Integration"))
    assert mentions(integration["Properties"]["IntegrationUri"], api_id)
    _, stage = only(resources(template, "AWS::ApiGatewayV2::Stage"))
    settings = stage["Properties"]["DefaultRouteSettings"]
    assert settings == {"ThrottlingRateLimit": 50, "ThrottlingBurstLimit": 100}
    assert stage["Properties"]["StageName"] == "$default"


def test_kms_key_rotates_and_encrypts_the_function_environments(template: Template) -> None:
    key_id, key = only(resources(template, "AWS::KMS::Key"))
    assert key["Properties"]["EnableKeyRotation"] is True
    assert key["DeletionPolicy"] == "Retain"
    for _, function in resources(template, "AWS::Lambda::Function").items():
        properties = function["Properties"]
        if properties.get("Handler", "").startswith(("service.", "proxy_lambda.", "infra.")):
            assert properties["KmsKeyArn"] == {"Fn::GetAtt": [key_id, "Arn"]}


def test_alarms_cover_dead_letters_errors_throttles_and_lateness(template: Template) -> None:
    topic_id, topic = only(resources(template, "AWS::SNS::Topic"))
    assert "KmsMasterKeyId" in topic["Properties"]
    alarms = resources(template, "AWS::CloudWatch::Alarm")
    proxy_id, _ = function_by_handler(template, PROXY_HANDLER)
    recorder_id, _ = function_by_handler(template, RECORDER_HANDLER)

    def watching(metric_name: str, dimension_ref: str | None = None) -> list[dict[str, Any]]:
        found = []
        for alarm in alarms.values():
            properties = alarm["Properties"]
            if properties.get("MetricName") != metric_name:
                continue
            if dimension_ref and not mentions(properties.get("Dimensions"), dimension_ref):
                continue
            found.append(properties)
        return found

    assert watching("ApproximateNumberOfMessagesVisible")
    assert watching("Errors", proxy_id)
    assert watching("Errors", recorder_id)
    assert watching("DestinationDeliveryFailures", proxy_id)
    assert watching("LateExecutions")
    throttles = [
        alarm["Properties"]
        for alarm in alarms.values()
        if any(
            query.get("MetricStat", {}).get("Metric", {}).get("MetricName") == "Throttles"
            for query in alarm["Properties"].get("Metrics", [])
        )
    ]
    assert len(throttles) == 1
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == [{"Ref": topic_id}]
    assert not resources(template, "AWS::SNS::Subscription")  # no e-mail given


def test_service_functions_get_the_eventbridge_settings(template: Template) -> None:
    proxy_id, _ = function_by_handler(template, PROXY_HANDLER)
    for handler in SERVICE_HANDLERS:
        env = environment(template, handler)
        assert env["TIMEBRIDGE_BACKEND"] == "eventbridge"
        assert env["TIMEBRIDGE_EMBEDDED_ENGINE"] == "false"
        assert env["TIMEBRIDGE_SCHEDULE_GROUP"] == "timebridge-dev"
        assert env["TIMEBRIDGE_STAGE"] == "dev"  # the lateness alarm's dimension
        assert env["TIMEBRIDGE_PROXY_LAMBDA_ARN"] == {"Fn::GetAtt": [proxy_id, "Arn"]}
        assert "InvokeProxyRole" in env["TIMEBRIDGE_SCHEDULER_ROLE_ARN"]["Fn::GetAtt"][0]
        assert "KeysKey" in env["TIMEBRIDGE_KMS_KEY_ARN"]["Fn::GetAtt"][0]
        assert env["TIMEBRIDGE_DATABASE_SECRET_ARN"]
        assert "TIMEBRIDGE_DATABASE_URL" not in env  # no password in the configuration
        assert "whsec_" in str(env["TIMEBRIDGE_SIGNING_SECRET"])
        assert "execute-api" in str(env["TIMEBRIDGE_PUBLIC_URL"]) or "HttpApi" in str(
            env["TIMEBRIDGE_PUBLIC_URL"]
        )
    assert "TIMEBRIDGE_BOOTSTRAP_API_KEY" in environment(template, API_HANDLER)
    assert "TIMEBRIDGE_BOOTSTRAP_API_KEY" not in environment(template, RECORDER_HANDLER)


def test_proxy_gets_signing_and_callback_settings_and_nothing_of_the_service(
    template: Template,
) -> None:
    env = environment(template, PROXY_HANDLER)
    assert set(env) == {"TIMEBRIDGE_SIGNING_SECRET", "TIMEBRIDGE_PUBLIC_URL"}
    assert "{{resolve:secretsmanager:" in str(env["TIMEBRIDGE_SIGNING_SECRET"])


def test_migrations_run_on_deploy_before_the_service_code(template: Template) -> None:
    migrate_id, migrate = function_by_handler(template, MIGRATE_HANDLER)
    assert set(migrate["Environment"]["Variables"]) == {"TIMEBRIDGE_DATABASE_SECRET_ARN"}
    schema_id, schema = only(resources(template, "Custom::TimebridgeSchema"))
    assert schema["Properties"]["CodeVersion"] not in ("", "unversioned")
    _, database = only(resources(template, "AWS::RDS::DBInstance"))
    assert any(dep.startswith("DataPostgres") for dep in schema["DependsOn"])
    for handler in SERVICE_HANDLERS:
        function_id, _ = function_by_handler(template, handler)
        assert schema_id in template["Resources"][function_id]["DependsOn"]
    assert database["Properties"]["Engine"] == "postgres"
    assert database["Properties"]["StorageEncrypted"] is True
    assert database["Properties"]["PubliclyAccessible"] is False
    del migrate_id


def test_existing_database_mode_uses_the_given_secret_and_no_rds(
    existing_db_template: Template,
) -> None:
    template = existing_db_template
    assert not resources(template, "AWS::RDS::DBInstance")
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"
    for handler in (*SERVICE_HANDLERS, MIGRATE_HANDLER):
        assert environment(template, handler)["TIMEBRIDGE_DATABASE_SECRET_ARN"] == arn
        role = role_id(function_by_handler(template, handler)[1])
        assert arn in grants(template, role, "secretsmanager:GetSecretValue")
    _, group = only(resources(template, "AWS::Scheduler::ScheduleGroup"))
    assert group["Properties"]["Name"] == "timebridge-prod"


def test_context_places_the_proxy_in_the_vpc_with_allow_lists_and_mails_alarms(
    existing_db_template: Template,
) -> None:
    template = existing_db_template
    _, proxy = function_by_handler(template, PROXY_HANDLER)
    assert proxy["VpcConfig"]["SubnetIds"]
    env = proxy["Environment"]["Variables"]
    assert env["TIMEBRIDGE_ALLOWED_TARGET_HOSTS"] == "reports.internal,*.svc.cluster.local"
    assert env["TIMEBRIDGE_ALLOWED_TARGET_NETWORKS"] == "10.20.0.0/16"
    _, subscription = only(resources(template, "AWS::SNS::Subscription"))
    assert subscription["Properties"]["Protocol"] == "email"
    assert subscription["Properties"]["Endpoint"] == "ops@example.com"


def test_default_proxy_runs_outside_the_vpc(template: Template) -> None:
    _, proxy = function_by_handler(template, PROXY_HANDLER)
    assert "VpcConfig" not in proxy
    _, api = function_by_handler(template, API_HANDLER)
    assert api["VpcConfig"]["SubnetIds"]
