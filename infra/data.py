"""Data: PostgreSQL, either an RDS instance made here (private subnets, encrypted, generated
credentials) or an existing database named by a Secrets Manager secret; and the migrations,
applied on every deploy by a one-shot function behind a custom resource."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import CustomResource, Duration, RemovalPolicy
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_kms as kms
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import custom_resources as cr
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambdas import MIGRATE_HANDLER, Placement, python_function

DATABASE_NAME = "timebridge"


class Data(Construct):
    """`secret` holds username, password, host, port and dbname (RDS's shape) in both modes."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        vpc: ec2.IVpc | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.instance: rds.DatabaseInstance | None = None
        if config.creates_database:
            if vpc is None:
                raise ValueError("an RDS database needs a VPC")
            self.instance = rds.DatabaseInstance(
                self,
                "Postgres",
                engine=rds.DatabaseInstanceEngine.postgres(
                    version=rds.PostgresEngineVersion.VER_17_9
                ),
                instance_type=ec2.InstanceType.of(
                    ec2.InstanceClass.BURSTABLE4_GRAVITON, ec2.InstanceSize.MICRO
                ),
                vpc=vpc,
                vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
                credentials=rds.Credentials.from_generated_secret("timebridge"),
                database_name=DATABASE_NAME,
                allocated_storage=20,
                max_allocated_storage=100,
                storage_encrypted=True,
                backup_retention=Duration.days(7),
                deletion_protection=config.deletion_protection,
                removal_policy=RemovalPolicy.SNAPSHOT,
                publicly_accessible=False,
                auto_minor_version_upgrade=True,
            )
            assert self.instance.secret is not None  # generated above
            self.secret: secretsmanager.ISecret = self.instance.secret
        else:
            assert config.database_secret_arn is not None  # checked by DeploymentConfig
            self.secret = secretsmanager.Secret.from_secret_complete_arn(
                self, "DatabaseSecret", config.database_secret_arn
            )

    def grant_connect(self, function: lambda_.Function) -> None:
        """Read the credentials, and reach the RDS instance's port when there is one."""
        self.secret.grant_read(function)
        if self.instance is not None:
            self.instance.connections.allow_default_port_from(function, "Timebridge functions")


class Migrations(Construct):
    """Runs `infra.functions.migrate` (Alembic upgrade to head) on create and on every update
    of the code bundle. Functions that use the schema should depend on `resource`."""

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        code: Path,
        code_version: str,
        environment: Mapping[str, str],
        data: Data,
        key: kms.IKey,
        placement: Placement | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            code=code,
            handler=MIGRATE_HANDLER,
            description="Timebridge migrations: upgrades the schema on deploy",
            environment=environment,
            key=key,
            timeout=Duration.minutes(10),
            memory_size=512,
            placement=placement,
        )
        data.grant_connect(self.function)
        provider = cr.Provider(self, "Provider", on_event_handler=self.function)
        self.resource = CustomResource(
            self,
            "Schema",
            service_token=provider.service_token,
            resource_type="Custom::TimebridgeSchema",
            # A new bundle (new code, so maybe new migrations) makes CloudFormation run it again.
            properties={"CodeVersion": code_version, "Database": data.secret.secret_arn},
        )
        if data.instance is not None:
            self.resource.node.add_dependency(data.instance)
