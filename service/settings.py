"""The service's settings: one object, read from the environment (prefix TIMEBRIDGE_) once at the
edge and passed explicitly from there (`create_app(settings)`). Every field has a safe default so
a bare `make run` works; see DESIGN.md, "Settings"."""

import os
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyNetwork,
    SecretStr,
    field_validator,
    model_validator,
)

ENV_PREFIX = "TIMEBRIDGE_"


def _split_list(value: object) -> object:
    # Lists come from the environment as "a, b c"; anything else goes to pydantic as is.
    if isinstance(value, str):
        return tuple(item for item in value.replace(",", " ").split() if item)
    return value


class Settings(BaseModel):
    """Deployment settings. Secrets are `SecretStr` so they never show up in reprs or logs.

    Raises pydantic.ValidationError on construction when a value is malformed (fail at start-up,
    not on the first request that needs it). Arguments win over the environment. A plain model
    reading its own variables: pydantic-settings and its sources cost the Lambda cold start
    more than everything else here.
    """

    model_config = ConfigDict(
        frozen=True, populate_by_name=True, extra="forbid", validate_default=True
    )

    database_url: str = "sqlite:///./.timebridge/timebridge.db"
    stage: str = Field(default="local", max_length=64)  # names the deployment in metrics
    # On AWS: a Secrets Manager secret in RDS's shape; when set it names the database instead.
    database_secret_arn: str | None = None
    backend: Literal["local", "eventbridge"] = "local"
    embedded_engine: bool = True
    schedule_group: str = Field(
        default="timebridge", min_length=1, max_length=64, pattern=r"^[0-9A-Za-z_.\-]+$"
    )
    proxy_lambda_arn: str | None = None
    scheduler_role_arn: str | None = None
    kms_key_arn: str | None = None
    schedule_dlq_arn: str | None = None  # SQS queue for invocations the scheduler gave up on
    bootstrap_api_key: SecretStr | None = None
    signing_secret: SecretStr | None = None
    allowed_target_hosts: tuple[str, ...] = ()
    allowed_target_networks: tuple[IPvAnyNetwork, ...] = ()
    public_url: str = "http://127.0.0.1:8000"
    alert_lateness_seconds: int = Field(default=120, ge=1)
    alert_topic_arn: str | None = None  # SNS topic for alerts on AWS; locally alerts are logged
    execution_retention_days: int = Field(default=90, ge=1, le=3650)
    # Local engine: occurrences missed by less than this after downtime still fire (once each).
    engine_grace_seconds: int = Field(default=300, ge=0, le=86400)
    engine_workers: int = Field(default=32, ge=1, le=512)
    # Security (issue "Tenants, roles and security hardening").
    secrets_key: SecretStr | None = None  # base64 of 32 bytes: AES-GCM for header secrets
    jwt_jwks_url: str | None = None  # JWT bearer tokens are accepted when set
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    rate_limit_per_minute: int = Field(default=1200, ge=1)  # per tenant, per process
    max_active_tasks: int = Field(default=100_000, ge=1)  # per tenant
    # Direct targets (issue "Targets beyond HTTP"): ARN patterns (`*` wildcards) the scheduler
    # role may reach, empty = any (the default locally; infra passes the granted list); and
    # whether a target may sit outside the deployment's region (AWS_REGION).
    allowed_target_arns: tuple[str, ...] = ()
    allow_cross_region_targets: bool = False
    aws_region: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION")
    )

    @field_validator("allowed_target_arns", mode="before")
    @classmethod
    def _target_arns(cls, value: object) -> object:
        return _split_list(value)

    # Issue 9: executions one tenant may have running at once (calls under way and executions
    # awaiting a callback); None = no cap. The local engine checks it at fire time; on AWS the
    # recorder holds the tenant's schedules while the cap is reached.
    tenant_max_running: int | None = Field(default=None, ge=1)

    # Backfill (issue 9): queued past occurrences start at most this many per second, and one
    # request may queue at most `backfill_max`.
    backfill_rate_per_second: float = Field(default=2.0, gt=0, le=1000)
    backfill_max: int = Field(default=1000, ge=1, le=100_000)

    # Traces (OpenTelemetry over OTLP/HTTP): off unless an endpoint is set.
    otlp_endpoint: str | None = Field(
        default=None,
        validation_alias=AliasChoices("TIMEBRIDGE_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT"),
    )
    otel_service_name: str = Field(
        default="timebridge",
        validation_alias=AliasChoices("TIMEBRIDGE_OTEL_SERVICE_NAME", "OTEL_SERVICE_NAME"),
    )

    @model_validator(mode="before")
    @classmethod
    def _environment(cls, values: Any) -> Any:
        # Values given to the constructor win over the environment's.
        if not isinstance(values, dict):
            return values
        return {**environment_values(cls), **values}

    @field_validator("allowed_target_hosts", mode="before")
    @classmethod
    def _hosts(cls, value: object) -> object:
        split = _split_list(value)
        if isinstance(split, tuple | list):
            return tuple(str(host).strip().lower().rstrip(".") for host in split)
        return split

    @field_validator("allowed_target_networks", mode="before")
    @classmethod
    def _networks(cls, value: object) -> object:
        return _split_list(value)

    @field_validator("public_url")
    @classmethod
    def _public_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


def environment_values(model: type[BaseModel]) -> dict[str, str]:
    """The environment's value for each field of `model` that has one, by field name: the
    variable is TIMEBRIDGE_<FIELD>, or the field's alias choices in order, names matched
    ignoring case. Values stay strings; lists are split by the field validators."""
    environment = {name.lower(): value for name, value in os.environ.items()}
    found: dict[str, str] = {}
    for name, field in model.model_fields.items():
        alias = field.validation_alias
        candidates = (
            [str(choice) for choice in alias.choices]
            if isinstance(alias, AliasChoices)
            else [ENV_PREFIX + name]
        )
        value = next((environment[c.lower()] for c in candidates if c.lower() in environment), None)
        if value is not None:
            found[name] = value
    return found
