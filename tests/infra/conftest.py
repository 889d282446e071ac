"""Fixtures for the infrastructure tests: the real Lambda bundles (built once, then reused from
build/lambda) and synthesized templates. jsii starts once per session: every stack is made in
the first fixture that needs one and the templates are shared."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from infra.bundle import ROOT, Bundles, build_bundles


@pytest.fixture(scope="session")
def bundles() -> Bundles:
    return build_bundles()


def cdk_json_context() -> dict[str, Any]:
    context: dict[str, Any] = json.loads((ROOT / "cdk.json").read_text())["context"]
    return context


def synthesize(bundles: Bundles, context: Mapping[str, Any]) -> dict[str, Any]:
    """The template `cdk synth` would write for `context` (cdk.json's, then these values)."""
    from aws_cdk import App
    from aws_cdk.assertions import Template

    from infra.config import DeploymentConfig
    from infra.stack import TimebridgeStack

    # Assets point at the bundles instead of copying ~90 MB per synth.
    app = App(context={**cdk_json_context(), **context, "aws:cdk:disable-asset-staging": True})
    config = DeploymentConfig.from_context(app.node.try_get_context)
    stack = TimebridgeStack(app, config.stack_name, config=config, bundles=bundles)
    return dict(Template.from_stack(stack).to_json())


@pytest.fixture(scope="session")
def template(bundles: Bundles) -> dict[str, Any]:
    """The default deployment: stage dev, new VPC, RDS, no e-mail."""
    return synthesize(bundles, {})


@pytest.fixture(scope="session")
def existing_db_template(bundles: Bundles) -> dict[str, Any]:
    """An existing database, the proxy in the VPC, allow-lists and an alert e-mail."""
    return synthesize(
        bundles,
        {
            "stage": "prod",
            "databaseMode": "existing",
            "databaseSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:db-AbCdEf",
            "proxyInVpc": "true",
            "allowedTargetHosts": "reports.internal, *.svc.cluster.local",
            "allowedTargetNetworks": "10.20.0.0/16",
            "alertEmail": "ops@example.com",
        },
    )


@pytest.fixture(scope="session")
def api_bundle(bundles: Bundles) -> Path:
    return bundles.api
