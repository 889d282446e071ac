"""Api: the FastAPI app (`service.main.handler`, Mangum) behind an HTTP API whose one `$default`
stage is throttled, so a flood of requests is refused at the edge (429) before it reaches the
function or the database."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from aws_cdk import Duration
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_kms as kms
from constructs import Construct

from infra.config import DeploymentConfig
from infra.lambdas import API_HANDLER, Placement, python_function


class Api(Construct):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: DeploymentConfig,
        code: Path,
        environment: Mapping[str, str],
        key: kms.IKey,
        placement: Placement | None,
    ) -> None:
        super().__init__(scope, construct_id)
        self.function = python_function(
            self,
            "Function",
            code=code,
            handler=API_HANDLER,
            description="Timebridge API",
            environment=environment,
            key=key,
            timeout=Duration.seconds(29),  # API Gateway gives up at 30 s
            memory_size=1024,  # more memory, more CPU: a faster cold start
            placement=placement,
        )
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"timebridge-{config.stage}",
            description="Timebridge REST API",
            create_default_stage=False,
            default_integration=integrations.HttpLambdaIntegration("Service", self.function),
        )
        self.stage = apigwv2.HttpStage(
            self,
            "Stage",
            http_api=self.http_api,
            stage_name="$default",
            auto_deploy=True,
            throttle=apigwv2.ThrottleSettings(
                rate_limit=config.api_rate_limit, burst_limit=config.api_burst_limit
            ),
        )

    @property
    def url(self) -> str:
        """The API's base URL (no trailing slash), e.g. for callback links."""
        endpoint = self.http_api.api_endpoint
        return endpoint
