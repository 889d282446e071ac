"""Deployment parameters, read from CDK context (`cdk deploy -c stage=prod -c alertEmail=...`).

Context values given on the command line arrive as strings, values in cdk.json as JSON; both
are accepted. Every parameter has a default that deploys a complete, private stack.
allowedTargetArns may hold `*` in the region and resource parts; the scheduler role gets exactly
sqs:SendMessage / sns:Publish / events:PutEvents / lambda:InvokeFunction on them, and with none
every direct target is refused at creation.

| context key | meaning | default |
| --- | --- | --- |
| stage | suffix of the stack, schedule group and resource names | dev |
| vpcId | an existing VPC to place the functions (and RDS) in; needs account and region | new VPC |
| proxyInVpc | run the proxy inside the VPC so it reaches internal services | false |
| allowedTargetHosts | internal host names (or *.suffix) the proxy may call | none |
| allowedTargetNetworks | internal CIDRs the proxy may call | none |
| allowedTargetArns | queue, topic, bus and function ARNs direct targets may name | none |
| alertEmail | an address subscribed to the alarm topic | none |
| databaseMode | `rds` (create PostgreSQL) or `existing` | rds |
| databaseSecretArn | with `existing`: Secrets Manager secret of the database (RDS shape) | - |
| apiRateLimit / apiBurstLimit | HTTP API throttling, requests per second / burst | 50 / 100 |
| deletionProtection | protect the RDS instance from deletion | false |
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from dataclasses import dataclass

ContextReader = Callable[[str], object]

_STAGE = re.compile(r"^[a-z][a-z0-9-]{0,19}$")
_HOST = re.compile(
    r"^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
# A direct target's ARN pattern: a named service and account; `*` only inside region/resource.
_TARGET_ARN = re.compile(
    r"^arn:aws(-[a-z]+)*:(?P<service>sqs|sns|events|lambda):([a-z0-9-]+|\*):\d{12}:"
    r"(?P<resource>[A-Za-z0-9*_./:$-]+)$"
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


class ConfigError(ValueError):
    """A context parameter is malformed; the message names it."""


@dataclass(frozen=True)
class DeploymentConfig:
    stage: str = "dev"
    vpc_id: str | None = None
    proxy_in_vpc: bool = False
    allowed_target_hosts: tuple[str, ...] = ()
    allowed_target_networks: tuple[str, ...] = ()
    allowed_target_arns: tuple[str, ...] = ()
    alert_email: str | None = None
    database_mode: str = "rds"
    database_secret_arn: str | None = None
    api_rate_limit: int = 50
    api_burst_limit: int = 100
    deletion_protection: bool = False

    def target_arns_by_action(self) -> dict[str, list[str]]:
        """The one action the scheduler needs on each allowed direct target, by action."""
        actions = {
            "sqs": "sqs:SendMessage",
            "sns": "sns:Publish",
            "events": "events:PutEvents",
            "lambda": "lambda:InvokeFunction",
        }
        grouped: dict[str, list[str]] = {}
        for arn in self.allowed_target_arns:
            grouped.setdefault(actions[arn.split(":")[2]], []).append(arn)
        return grouped

    @property
    def stack_name(self) -> str:
        return f"Timebridge-{self.stage}"

    @property
    def schedule_group_name(self) -> str:
        return f"timebridge-{self.stage}"

    @property
    def creates_database(self) -> bool:
        return self.database_mode == "rds"

    @property
    def needs_vpc(self) -> bool:
        """RDS lives in a VPC; so does the proxy when asked; an explicit VPC is always used."""
        return self.creates_database or self.proxy_in_vpc or self.vpc_id is not None

    @classmethod
    def from_context(cls, read: ContextReader) -> DeploymentConfig:
        """Parameters from a context reader (`app.node.try_get_context`); ConfigError if bad."""
        stage = _text(read, "stage") or "dev"
        if not _STAGE.match(stage):
            raise ConfigError("stage: 1-20 of a-z, 0-9 and '-', starting with a letter")
        hosts = tuple(item.lower().rstrip(".") for item in _items(read, "allowedTargetHosts"))
        for host in hosts:
            if not _HOST.match(host):
                raise ConfigError(f"allowedTargetHosts: {host!r} is not a host name or *.suffix")
        networks: list[str] = []
        for item in _items(read, "allowedTargetNetworks"):
            try:
                networks.append(str(ipaddress.ip_network(item)))
            except ValueError as exc:
                raise ConfigError(f"allowedTargetNetworks: {exc}") from None
        target_arns = tuple(_items(read, "allowedTargetArns"))
        for arn in target_arns:
            match = _TARGET_ARN.match(arn)
            resource = match.group("resource") if match else ""
            if (
                match is None
                or resource.strip("*") == ""
                or (match.group("service") == "events" and not resource.startswith("event-bus/"))
                or (match.group("service") == "lambda" and not resource.startswith("function:"))
            ):
                raise ConfigError(
                    f"allowedTargetArns: {arn!r} is not an SQS queue, SNS topic, event bus or "
                    "Lambda function ARN (with an account, and `*` only in region or name)"
                )
        email = _text(read, "alertEmail") or None
        if email is not None and not _EMAIL.match(email):
            raise ConfigError(f"alertEmail: {email!r} is not an e-mail address")
        mode = _text(read, "databaseMode") or "rds"
        if mode not in ("rds", "existing"):
            raise ConfigError("databaseMode: rds or existing")
        secret_arn = _text(read, "databaseSecretArn") or None
        if mode == "existing" and (secret_arn is None or not secret_arn.startswith("arn:")):
            raise ConfigError("databaseSecretArn: the ARN of a Secrets Manager secret is required")
        if mode == "rds" and secret_arn is not None:
            raise ConfigError("databaseSecretArn: only with databaseMode=existing")
        vpc_id = _text(read, "vpcId") or None
        if vpc_id is not None and not re.match(r"^vpc-[0-9a-f]+$", vpc_id):
            raise ConfigError(f"vpcId: {vpc_id!r} is not a VPC id")
        rate = _integer(read, "apiRateLimit", 50)
        burst = _integer(read, "apiBurstLimit", 100)
        return cls(
            stage=stage,
            vpc_id=vpc_id,
            proxy_in_vpc=_flag(read, "proxyInVpc"),
            allowed_target_hosts=hosts,
            allowed_target_networks=tuple(networks),
            allowed_target_arns=target_arns,
            alert_email=email,
            database_mode=mode,
            database_secret_arn=secret_arn,
            api_rate_limit=rate,
            api_burst_limit=burst,
            deletion_protection=_flag(read, "deletionProtection"),
        )


def _text(read: ContextReader, key: str) -> str:
    value = read(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string")
    return value.strip()


def _items(read: ContextReader, key: str) -> list[str]:
    value = read(key)
    if value is None:
        return []
    if isinstance(value, list):
        return [str(item).strip() for item in value if str(item).strip()]
    if isinstance(value, str):
        return value.replace(",", " ").split()
    raise ConfigError(f"{key}: expected a list or a comma-separated string")


def _flag(read: ContextReader, key: str) -> bool:
    value = read(key)
    if isinstance(value, bool):
        return value
    text = "" if value is None else str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(f"{key}: expected true or false")


def _integer(read: ContextReader, key: str, default: int) -> int:
    value = read(key)
    if value is None or value == "":
        return default
    try:
        number = int(str(value))
    except ValueError:
        raise ConfigError(f"{key}: expected a whole number") from None
    if number < 1:
        raise ConfigError(f"{key}: must be at least 1")
    return number
