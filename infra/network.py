"""The VPC the database and the functions that reach it live in: an existing one from context,
or a new one with public, private (NAT egress, for the functions) and isolated (database)
subnets in two zones and a single NAT gateway."""

from __future__ import annotations

from aws_cdk import aws_ec2 as ec2
from constructs import Construct

from infra.config import DeploymentConfig


def make_vpc(scope: Construct, config: DeploymentConfig) -> ec2.IVpc | None:
    """The VPC to use, or None when nothing needs one (existing database, proxy outside)."""
    if config.vpc_id is not None:
        return ec2.Vpc.from_lookup(scope, "Vpc", vpc_id=config.vpc_id)
    if not config.needs_vpc:
        return None
    return ec2.Vpc(
        scope,
        "Vpc",
        max_azs=2,
        nat_gateways=1,
        subnet_configuration=[
            ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
            ec2.SubnetConfiguration(
                name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
            ),
            ec2.SubnetConfiguration(
                name="data", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
            ),
        ],
    )
