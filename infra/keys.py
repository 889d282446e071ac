"""Keys: the deployment's KMS key (schedule Input, stored header secrets, queues, topic, function
environments) and the two generated secrets the functions share: the webhook signing secret and
the bootstrap API key."""

from __future__ import annotations

from aws_cdk import Duration, RemovalPolicy
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

from infra.config import DeploymentConfig


class Keys(Construct):
    """`key` (rotating, retained on teardown so old snapshots and messages stay readable),
    `signing_secret` (44 base64 characters, used as `whsec_<secret>`) and `bootstrap_key`."""

    def __init__(self, scope: Construct, construct_id: str, *, config: DeploymentConfig) -> None:
        super().__init__(scope, construct_id)
        self.key = kms.Key(
            self,
            "Key",
            alias=f"alias/timebridge-{config.stage}",
            description="Timebridge: schedule Input, header secrets, queues and alarm topic",
            enable_key_rotation=True,
            pending_window=Duration.days(30),
            removal_policy=RemovalPolicy.RETAIN,
        )
        # CloudWatch alarms publish to the encrypted alarm topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchAlarmsPublishToEncryptedTopic",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],  # in a key policy, "*" means this key
            )
        )
        self.signing_secret = secretsmanager.Secret(
            self,
            "SigningSecret",
            description="Timebridge webhook signing secret (the value follows whsec_)",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                # Letters and digits only: every one is a base64 character, 44 of them decode
                # to 33 bytes, so "whsec_" + value is a valid Standard Webhooks secret.
                password_length=44,
                exclude_punctuation=True,
                include_space=False,
            ),
        )
        self.bootstrap_key = secretsmanager.Secret(
            self,
            "BootstrapApiKey",
            description="Timebridge bootstrap API key (system admin of tenant default)",
            encryption_key=self.key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True, include_space=False
            ),
        )

    @property
    def signing_secret_value(self) -> str:
        """The environment value: CloudFormation resolves the reference at deploy time."""
        return "whsec_" + self.signing_secret.secret_value.unsafe_unwrap()

    @property
    def bootstrap_key_value(self) -> str:
        return self.bootstrap_key.secret_value.unsafe_unwrap()
