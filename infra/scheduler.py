"""Scheduler: the schedule group, the role EventBridge Scheduler assumes to fire a schedule (it
may invoke the proxy and nothing else), and the grants that let a function manage the group's
schedules and pass that role, and nothing wider."""

from __future__ import annotations

from aws_cdk import Duration, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_scheduler as scheduler
from aws_cdk import aws_sqs as sqs
from constructs import Construct

SCHEDULER_SERVICE = "scheduler.amazonaws.com"
MANAGE_ACTIONS = (
    "scheduler:CreateSchedule",
    "scheduler:GetSchedule",
    "scheduler:UpdateSchedule",
    "scheduler:DeleteSchedule",
)


class Scheduler(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        group_name: str,
        proxy: lambda_.IFunction,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = Stack.of(self)
        self.group_name = group_name
        self.group = scheduler.CfnScheduleGroup(self, "Group", name=group_name)
        self.schedule_arns = stack.format_arn(
            service="scheduler", resource="schedule", resource_name=f"{group_name}/*"
        )
        self.role = iam.Role(
            self,
            "InvokeProxyRole",
            description="Assumed by EventBridge Scheduler to invoke the Timebridge proxy",
            assumed_by=iam.ServicePrincipal(
                SCHEDULER_SERVICE,
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            ),
        )
        proxy.grant_invoke(self.role)
        key.grant_decrypt(self.role)  # schedule Input is encrypted with the deployment key
        # Invocations the scheduler gives up on (after its retries) land here, Input as body;
        # the recorder reads them back as trigger_failed executions.
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=key,
            enforce_ssl=True,
            retention_period=Duration.days(14),
            # The recorder reads this queue too: six of its timeouts, as for the outcomes queue.
            visibility_timeout=Duration.minutes(6),
        )
        self.dead_letters.grant_send_messages(self.role)

    def grant_manage(self, function: lambda_.IFunction) -> None:
        """Create, read, update and delete this group's schedules, passing only our role."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=list(MANAGE_ACTIONS), resources=[self.schedule_arns])
        )
        function.add_to_role_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": SCHEDULER_SERVICE}},
            )
        )

    def grant_list(self, function: lambda_.IFunction) -> None:
        """ListSchedules, for the reconciler. IAM has no resource type for this action, so it
        can only be granted on "*"; it reveals schedule names and states, never their Input."""
        function.add_to_role_policy(
            iam.PolicyStatement(actions=["scheduler:ListSchedules"], resources=["*"])
        )

    def grant_direct_targets(self, arns_by_action: dict[str, list[str]]) -> None:
        """Let the scheduler role deliver to the deployment's allowed direct targets: exactly
        one action (SendMessage, Publish, PutEvents, InvokeFunction) on exactly those ARNs."""
        for action, arns in sorted(arns_by_action.items()):
            self.role.add_to_policy(iam.PolicyStatement(actions=[action], resources=arns))
