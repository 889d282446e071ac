"""The CDK app (`cdk.json` runs `python -m infra.app`): reads the context parameters, builds the
Lambda bundles locally (no Docker) and defines one stack, `Timebridge-<stage>`.

Account and region come from the CDK CLI (CDK_DEFAULT_ACCOUNT / CDK_DEFAULT_REGION) when it has
credentials; without them the stack is environment-agnostic, which offline synth needs.
"""

from __future__ import annotations

import os

from aws_cdk import App, Environment

from infra.bundle import build_bundles
from infra.config import DeploymentConfig
from infra.stack import TimebridgeStack


def main() -> None:
    app = App()
    config = DeploymentConfig.from_context(app.node.try_get_context)
    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    env = Environment(account=account, region=region) if account and region else None
    TimebridgeStack(app, config.stack_name, config=config, bundles=build_bundles(), env=env)
    app.synth()


if __name__ == "__main__":
    main()
