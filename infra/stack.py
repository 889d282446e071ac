"""The Timebridge stack: every concern's construct, wired with the settings each function reads
(TIMEBRIDGE_* as in DESIGN.md, "Settings") and the least privilege each needs."""

from __future__ import annotations

from typing import Any

from aws_cdk import CfnOutput, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from constructs import Construct

from infra.alarms import Alarms
from infra.api import Api
from infra.bundle import Bundles
from infra.config import DeploymentConfig
from infra.data import Data, Migrations
from infra.keys import Keys
from infra.lambdas import Placement
from infra.network import make_vpc
from infra.proxy import Proxy
from infra.recorder import OutcomeQueues, Recorder
from infra.scheduler import Scheduler


class TimebridgeStack(Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        bundles: Bundles,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.config = config
        keys = Keys(self, "Keys", config=config)
        key = keys.key
        vpc = make_vpc(self, config)
        placement = Placement(self, "FunctionsSecurityGroup", vpc) if vpc is not None else None
        data = Data(self, "Data", config=config, vpc=vpc)
        queues = OutcomeQueues(self, "Outcomes", key=key)

        allow_lists: dict[str, str] = {}
        if config.allowed_target_hosts:
            allow_lists["TIMEBRIDGE_ALLOWED_TARGET_HOSTS"] = ",".join(config.allowed_target_hosts)
        if config.allowed_target_networks:
            allow_lists["TIMEBRIDGE_ALLOWED_TARGET_NETWORKS"] = ",".join(
                config.allowed_target_networks
            )
        signing = {"TIMEBRIDGE_SIGNING_SECRET": keys.signing_secret_value}

        self.proxy = Proxy(
            self,
            "Proxy",
            code=bundles.proxy,
            environment={**signing, **allow_lists},
            outcomes=queues.queue,
            key=key,
            placement=placement if config.proxy_in_vpc else None,
        )
        self.scheduler = Scheduler(
            self,
            "Scheduler",
            group_name=config.schedule_group_name,
            proxy=self.proxy.function,
            key=key,
        )
        database = {"TIMEBRIDGE_DATABASE_SECRET_ARN": data.secret.secret_arn}
        service_environment = {
            "TIMEBRIDGE_BACKEND": "eventbridge",
            "TIMEBRIDGE_EMBEDDED_ENGINE": "false",
            "TIMEBRIDGE_SCHEDULE_GROUP": config.schedule_group_name,
            "TIMEBRIDGE_PROXY_LAMBDA_ARN": self.proxy.function.function_arn,
            "TIMEBRIDGE_SCHEDULER_ROLE_ARN": self.scheduler.role.role_arn,
            "TIMEBRIDGE_KMS_KEY_ARN": key.key_arn,
            "TIMEBRIDGE_STAGE": config.stage,
            "TIMEBRIDGE_SCHEDULE_DLQ_ARN": self.scheduler.dead_letters.queue_arn,
            # What the scheduler role may reach; `none` refuses every direct target.
            "TIMEBRIDGE_ALLOWED_TARGET_ARNS": ",".join(config.allowed_target_arns) or "none",
            **database,
            **signing,
            **allow_lists,
        }
        self.api = Api(
            self,
            "Api",
            config=config,
            code=bundles.api,
            environment={
                **service_environment,
                "TIMEBRIDGE_BOOTSTRAP_API_KEY": keys.bootstrap_key_value,
            },
            key=key,
            placement=placement,
        )
        self.recorder = Recorder(
            self,
            "Recorder",
            code=bundles.api,
            environment=service_environment,
            queues=queues,
            schedule_dead_letters=self.scheduler.dead_letters,
            key=key,
            placement=placement,
        )
        self.migrations = Migrations(
            self,
            "Migrations",
            code=bundles.api,
            code_version=bundles.api_version,
            environment=database,
            data=data,
            key=key,
            placement=placement,
        )

        service_functions: list[lambda_.Function] = [self.api.function, *self.recorder.functions]
        for function in service_functions:
            self.scheduler.grant_manage(function)
            data.grant_connect(function)
            key.grant_encrypt_decrypt(function)  # schedule Input and stored header secrets
            # New code serves only once the schema it expects is in place.
            function.node.add_dependency(self.migrations.resource)
        self.scheduler.grant_list(self.recorder.sweeper)  # the reconciler finds orphans
        direct_targets = config.target_arns_by_action()
        self.scheduler.grant_direct_targets(direct_targets)
        for action, arns in sorted(direct_targets.items()):
            # A run now of a direct target is sent by the API itself (no scheduler involved).
            self.api.function.add_to_role_policy(
                iam.PolicyStatement(actions=[action], resources=arns)
            )
        for function in (*service_functions, self.proxy.function):
            function.add_environment("TIMEBRIDGE_PUBLIC_URL", self.api.url)

        self.alarms = Alarms(
            self,
            "Alarms",
            config=config,
            key=key,
            dead_letters=queues.dead_letters,
            proxy=self.proxy.function,
            recorder=self.recorder.function,
            sweeper=self.recorder.sweeper,
            functions=[*service_functions, self.proxy.function],
            api_server_errors=self.api.http_api.metric_server_error(),
        )

        CfnOutput(self, "ApiUrl", value=self.api.url, description="Base URL of the API")
        CfnOutput(
            self,
            "BootstrapKeySecretArn",
            value=keys.bootstrap_key.secret_arn,
            description="Secret holding the first (system admin) API key",
        )
        CfnOutput(self, "ScheduleGroupName", value=config.schedule_group_name)
        CfnOutput(self, "AlarmTopicArn", value=self.alarms.topic.topic_arn)
        CfnOutput(self, "DatabaseSecretArn", value=data.secret.secret_arn)
