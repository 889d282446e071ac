"""How every Timebridge function is made: Python 3.11 on x86_64 (the bundles' one platform),
its environment encrypted with the deployment key, its logs in a group kept for a month."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = lambda_.Architecture.X86_64

API_HANDLER = "service.main.handler"
PROXY_HANDLER = "proxy_lambda.handler.handler"
RECORDER_HANDLER = "service.recorder.handler"
SWEEPER_HANDLER = "service.recorder.sweep_handler"
MIGRATE_HANDLER = "infra.functions.migrate.handler"


class Placement:
    """Where functions that need the VPC go: its private subnets, one shared security group."""

    def __init__(self, scope: Construct, construct_id: str, vpc: ec2.IVpc) -> None:
        self.vpc = vpc
        self.security_group = ec2.SecurityGroup(
            scope,
            construct_id,
            vpc=vpc,
            description="Timebridge functions",
            allow_all_outbound=True,
        )
        self.subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)


def python_function(
    scope: Construct,
    construct_id: str,
    *,
    code: Path,
    handler: str,
    description: str,
    environment: Mapping[str, str],
    key: kms.IKey,
    timeout: Duration,
    memory_size: int = 512,
    placement: Placement | None = None,
    security_groups: Sequence[ec2.ISecurityGroup] = (),
) -> lambda_.Function:
    log_group = logs.LogGroup(
        scope,
        f"{construct_id}Logs",
        retention=logs.RetentionDays.ONE_MONTH,
        removal_policy=RemovalPolicy.DESTROY,
    )
    function = lambda_.Function(
        scope,
        construct_id,
        runtime=RUNTIME,
        architecture=ARCHITECTURE,
        code=lambda_.Code.from_asset(str(code)),
        handler=handler,
        description=description,
        environment=dict(environment),
        environment_encryption=key,
        timeout=timeout,
        memory_size=memory_size,
        log_group=log_group,
        vpc=placement.vpc if placement else None,
        vpc_subnets=placement.subnets if placement else None,
        security_groups=([placement.security_group, *security_groups] if placement else None),
    )
    if handler != PROXY_HANDLER:
        # Header secrets at rest are sealed with data keys of this key (KMS envelope).
        key.grant(function, "kms:GenerateDataKey", "kms:Decrypt")
    return function
