"""Settings: safe defaults, TIMEBRIDGE_* environment, lists written as "a, b", fail at start-up."""

from __future__ import annotations

from ipaddress import ip_network

import pytest
from pydantic import ValidationError

from service.settings import Settings

PREFIXED = (
    "DATABASE_URL",
    "BACKEND",
    "EMBEDDED_ENGINE",
    "SCHEDULE_GROUP",
    "PROXY_LAMBDA_ARN",
    "SCHEDULER_ROLE_ARN",
    "KMS_KEY_ARN",
    "BOOTSTRAP_API_KEY",
    "SIGNING_SECRET",
    "ALLOWED_TARGET_HOSTS",
    "ALLOWED_TARGET_NETWORKS",
    "PUBLIC_URL",
    "ALERT_LATENESS_SECONDS",
)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in PREFIXED:
        monkeypatch.delenv(f"TIMEBRIDGE_{name}", raising=False)


def test_defaults_run_locally_with_nothing_set() -> None:
    settings = Settings()
    assert settings.database_url == "sqlite:///./.timebridge/timebridge.db"
    assert settings.backend == "local"
    assert settings.embedded_engine is True
    assert settings.schedule_group == "timebridge"
    assert settings.proxy_lambda_arn is None
    assert settings.bootstrap_api_key is None
    assert settings.allowed_target_hosts == ()
    assert settings.allowed_target_networks == ()
    assert settings.public_url == "http://127.0.0.1:8000"
    assert settings.alert_lateness_seconds == 120


def test_environment_is_read_with_the_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEBRIDGE_BACKEND", "eventbridge")
    monkeypatch.setenv("TIMEBRIDGE_EMBEDDED_ENGINE", "false")
    monkeypatch.setenv("TIMEBRIDGE_ALLOWED_TARGET_HOSTS", "Reports.Internal, billing.internal.")
    monkeypatch.setenv("TIMEBRIDGE_ALLOWED_TARGET_NETWORKS", "10.0.0.0/8,fd00::/8")
    monkeypatch.setenv("TIMEBRIDGE_PUBLIC_URL", "https://timebridge.example.com/")
    monkeypatch.setenv("TIMEBRIDGE_ALERT_LATENESS_SECONDS", "300")
    settings = Settings()
    assert settings.backend == "eventbridge"
    assert settings.embedded_engine is False
    assert settings.allowed_target_hosts == ("reports.internal", "billing.internal")
    assert settings.allowed_target_networks == (ip_network("10.0.0.0/8"), ip_network("fd00::/8"))
    assert settings.public_url == "https://timebridge.example.com"
    assert settings.alert_lateness_seconds == 300


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIMEBRIDGE_BOOTSTRAP_API_KEY", "tb_bootstrap_value")
    monkeypatch.setenv("TIMEBRIDGE_SIGNING_SECRET", "whsec_c2VjcmV0")
    settings = Settings()
    assert "tb_bootstrap_value" not in repr(settings)
    assert "whsec_c2VjcmV0" not in repr(settings)
    assert settings.signing_secret is not None
    assert settings.signing_secret.get_secret_value() == "whsec_c2VjcmV0"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BACKEND", "cron-box"),
        ("ALLOWED_TARGET_NETWORKS", "10.0.0.0/33"),
        ("PUBLIC_URL", "timebridge.example.com"),
        ("ALERT_LATENESS_SECONDS", "0"),
        ("SCHEDULE_GROUP", "no spaces allowed"),
    ],
)
def test_malformed_values_fail_at_start_up(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"TIMEBRIDGE_{name}", value)
    with pytest.raises(ValidationError):
        Settings()


def test_arguments_win_over_the_environment_whose_names_ignore_case(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("timebridge_backend", "eventbridge")
    monkeypatch.setenv("TIMEBRIDGE_STAGE", "prod")
    settings = Settings(stage="test")
    assert settings.backend == "eventbridge"
    assert settings.stage == "test"


def test_the_region_comes_from_aws_region_before_aws_default_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("AWS_REGION", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("TIMEBRIDGE_AWS_REGION", "not-read")
    assert Settings().aws_region == "us-east-1"
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    assert Settings().aws_region == "eu-west-1"


def test_unknown_arguments_are_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(no_such_setting=1)  # type: ignore[call-arg]
