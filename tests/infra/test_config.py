"""Context parameters: defaults deploy a complete stack, bad values fail synth with the key."""

from __future__ import annotations

from typing import Any

import pytest

from infra.config import ConfigError, DeploymentConfig


def config(**context: Any) -> DeploymentConfig:
    return DeploymentConfig.from_context(context.get)


def test_defaults_are_stage_dev_with_rds() -> None:
    default = config()
    assert default.stack_name == "Timebridge-dev"
    assert default.schedule_group_name == "timebridge-dev"
    assert default.creates_database and default.needs_vpc
    assert not default.proxy_in_vpc and default.alert_email is None


def test_command_line_strings_are_parsed() -> None:
    parsed = config(
        stage="prod",
        proxyInVpc="true",
        allowedTargetHosts="Reports.Internal., *.svc.local",
        allowedTargetNetworks="10.0.0.0/8 192.168.1.0/24",
        apiRateLimit="200",
        deletionProtection="yes",
    )
    assert parsed.stage == "prod" and parsed.proxy_in_vpc and parsed.deletion_protection
    assert parsed.allowed_target_hosts == ("reports.internal", "*.svc.local")
    assert parsed.allowed_target_networks == ("10.0.0.0/8", "192.168.1.0/24")
    assert parsed.api_rate_limit == 200 and parsed.api_burst_limit == 100


def test_existing_database_needs_no_vpc_unless_the_proxy_does() -> None:
    arn = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf"
    existing = config(databaseMode="existing", databaseSecretArn=arn)
    assert not existing.creates_database and not existing.needs_vpc
    assert config(databaseMode="existing", databaseSecretArn=arn, proxyInVpc=True).needs_vpc


@pytest.mark.parametrize(
    ("context", "key"),
    [
        ({"stage": "Prod!"}, "stage"),
        ({"stage": "a" * 21}, "stage"),
        ({"allowedTargetHosts": "bad/host"}, "allowedTargetHosts"),
        ({"allowedTargetHosts": "under_score.internal"}, "allowedTargetHosts"),
        ({"allowedTargetNetworks": "10.0.0.1/8"}, "allowedTargetNetworks"),
        ({"alertEmail": "nobody"}, "alertEmail"),
        ({"databaseMode": "aurora"}, "databaseMode"),
        ({"databaseMode": "existing"}, "databaseSecretArn"),
        ({"databaseSecretArn": "arn:aws:secretsmanager:x"}, "databaseSecretArn"),
        ({"vpcId": "my-vpc"}, "vpcId"),
        ({"proxyInVpc": "maybe"}, "proxyInVpc"),
        ({"apiRateLimit": "0"}, "apiRateLimit"),
        ({"apiBurstLimit": "lots"}, "apiBurstLimit"),
    ],
)
def test_bad_values_name_their_key(context: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        config(**context)
