"""The team's VPCs, built as eksctl (and the EKS VPC CloudFormation templates) build them,
and EC2's route table rules where moto is lenient.

Per cluster: one VPC over three zones with a public and a private subnet in each. An
internet gateway is attached to the VPC; a public route table sends 0.0.0.0/0 to it and is
explicitly associated with the public subnets; a NAT gateway with an Elastic IP sits in the
first public subnet. Two private subnets are explicitly associated with a private route
table sending 0.0.0.0/0 to the NAT gateway; the third has no explicit association, so it
uses the VPC's main route table, which also routes 0.0.0.0/0 to the NAT gateway. Whether a
subnet is public is therefore written only in the route tables, as on a real account: its
route table is its explicit association, else the main one, and it is public iff that table
routes to an internet gateway. No subnet carries `kubernetes.io/*` tags: tagging them for
load balancers is the orchestrator's job.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

ZONE_LETTERS = "abc"
SUBNET_PREFIX = 19  # eksctl's size: 8,187 usable addresses in each of the six subnets
ANYWHERE = "0.0.0.0/0"


@dataclass(frozen=True)
class EksVpc:
    """The ids of one cluster's network; subnet lists in zone order."""

    vpc_id: str
    public_subnet_ids: tuple[str, ...]
    private_subnet_ids: tuple[str, ...]
    subnet_zones: dict[str, str]  # subnet id -> availability zone
    internet_gateway_id: str
    nat_gateway_id: str
    elastic_ip_allocation_id: str
    public_route_table_id: str
    private_route_table_id: str
    main_route_table_id: str

    def facts(self) -> dict[str, Any]:
        """What seed() publishes about the network (JSON-ready)."""
        return {
            "vpc_id": self.vpc_id,
            "public_subnet_ids": list(self.public_subnet_ids),
            "private_subnet_ids": list(self.private_subnet_ids),
            "subnet_zones": dict(self.subnet_zones),
            "internet_gateway_id": self.internet_gateway_id,
            "nat_gateway_id": self.nat_gateway_id,
            "public_route_table_id": self.public_route_table_id,
            "private_route_table_id": self.private_route_table_id,
            "main_route_table_id": self.main_route_table_id,
        }


def build_eks_vpc(ec2: Any, region: str, cluster: str, cidr: str, team: str) -> EksVpc:
    """Create one cluster's VPC as eksctl lays it out; `team` tags the subnets."""
    stack = f"eksctl-{cluster}-cluster"
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    for attribute in ("EnableDnsSupport", "EnableDnsHostnames"):
        ec2.modify_vpc_attribute(VpcId=vpc_id, **{attribute: {"Value": True}})
    _name(ec2, vpc_id, stack, "VPC", cluster)

    blocks = list(ipaddress.ip_network(cidr).subnets(new_prefix=SUBNET_PREFIX))
    zones = [f"{region}{letter}" for letter in ZONE_LETTERS]
    public = [
        _subnet(ec2, vpc_id, str(block), zone, stack, "Public", cluster, team)
        for block, zone in zip(blocks[:3], zones, strict=True)
    ]
    private = [
        _subnet(ec2, vpc_id, str(block), zone, stack, "Private", cluster, team)
        for block, zone in zip(blocks[3:6], zones, strict=True)
    ]
    for subnet_id in public:  # eksctl's public subnets give instances public addresses
        ec2.modify_subnet_attribute(SubnetId=subnet_id, MapPublicIpOnLaunch={"Value": True})

    igw_id = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw_id, VpcId=vpc_id)
    _name(ec2, igw_id, stack, "InternetGateway", cluster)
    public_table = _route_table(ec2, vpc_id, stack, "PublicRouteTable", cluster)
    ec2.create_route(RouteTableId=public_table, DestinationCidrBlock=ANYWHERE, GatewayId=igw_id)
    for subnet_id in public:
        ec2.associate_route_table(RouteTableId=public_table, SubnetId=subnet_id)

    allocation = ec2.allocate_address(Domain="vpc")["AllocationId"]
    _name(ec2, allocation, stack, "NATIP", cluster)
    nat = ec2.create_nat_gateway(SubnetId=public[0], AllocationId=allocation)["NatGateway"]
    nat_id = nat["NatGatewayId"]
    _name(ec2, nat_id, stack, "NATGateway", cluster)
    private_table = _route_table(ec2, vpc_id, stack, "PrivateRouteTable", cluster)
    ec2.create_route(RouteTableId=private_table, DestinationCidrBlock=ANYWHERE, NatGatewayId=nat_id)
    # The third private subnet stays implicitly on the main table: private only because the
    # main table, too, sends the internet through the NAT gateway.
    for subnet_id in private[:2]:
        ec2.associate_route_table(RouteTableId=private_table, SubnetId=subnet_id)
    main_table = _main_route_table(ec2, vpc_id)
    ec2.create_route(RouteTableId=main_table, DestinationCidrBlock=ANYWHERE, NatGatewayId=nat_id)

    return EksVpc(
        vpc_id=vpc_id,
        public_subnet_ids=tuple(public),
        private_subnet_ids=tuple(private),
        subnet_zones=dict(zip(public + private, zones + zones, strict=True)),
        internet_gateway_id=igw_id,
        nat_gateway_id=nat_id,
        elastic_ip_allocation_id=allocation,
        public_route_table_id=public_table,
        private_route_table_id=private_table,
        main_route_table_id=main_table,
    )


def _subnet(
    ec2: Any, vpc_id: str, block: str, zone: str, stack: str, kind: str, cluster: str, team: str
) -> str:
    subnet = ec2.create_subnet(VpcId=vpc_id, CidrBlock=block, AvailabilityZone=zone)["Subnet"]
    subnet_id = subnet["SubnetId"]
    # eksctl names a subnet after its CloudFormation resource, e.g. SubnetPublicUSWEST2A.
    logical_id = f"Subnet{kind}{zone.replace('-', '').upper()}"
    _name(ec2, subnet_id, stack, logical_id, cluster, {"team": team})
    return subnet_id


def _route_table(ec2: Any, vpc_id: str, stack: str, logical_id: str, cluster: str) -> str:
    table_id = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    _name(ec2, table_id, stack, logical_id, cluster)
    return table_id


def _main_route_table(ec2: Any, vpc_id: str) -> str:
    """The table EC2 made with the VPC, which every subnet without an association uses."""
    tables = ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc_id]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    return tables[0]["RouteTableId"]


def _name(
    ec2: Any,
    resource_id: str,
    stack: str,
    logical_id: str,
    cluster: str,
    more: dict[str, str] | None = None,
) -> None:
    """The tags eksctl's CloudFormation stack leaves on what it creates (those a user may set:
    `aws:` tags are reserved), and `more`."""
    found = {"Name": f"{stack}/{logical_id}", "alpha.eksctl.io/cluster-name": cluster}
    found.update(more or {})
    ec2.create_tags(
        Resources=[resource_id], Tags=[{"Key": k, "Value": v} for k, v in found.items()]
    )


# ---- EC2's rules where moto is lenient ------------------------------------------------------


def make_ec2_strict() -> None:
    """Make moto's route tables behave as EC2's do, where the product relies on it.

    - Values of one filter are joined with OR (EC2 API reference, `Filter`): moto matches a
      route table's set of associated subnets only if it contains, or is contained in, the
      filter's values, so `association.subnet-id` with several subnets misses tables.
    - A subnet has at most one explicit route table association: associating it again fails
      with Resource.AlreadyAssociated (moto quietly returns the existing association, even
      one with another table)."""
    from moto.ec2.exceptions import EC2ClientError
    from moto.ec2.models.route_tables import RouteBackend
    from moto.ec2.utils import generic_filter

    describe = RouteBackend.describe_route_tables
    if getattr(describe, "sandbox_patched", False):
        return
    associate = RouteBackend.associate_route_table

    def describe_route_tables(
        self: Any, route_table_ids: list[str] | None = None, filters: Any = None
    ) -> list[Any]:
        tables = describe(self, route_table_ids, None)
        for name, values in (filters or {}).items():
            wanted = values if isinstance(values, list) else [values]
            tables = [t for t in tables if any(generic_filter({name: [v]}, [t]) for v in wanted)]
        return tables

    def associate_route_table(
        self: Any, route_table_id: str, gateway_id: str | None = None, subnet_id: str | None = None
    ) -> str:
        if subnet_id is not None:
            self.get_route_table(route_table_id)  # InvalidRouteTableID.NotFound first
            if any(subnet_id in t._associations.values() for t in self.route_tables.values()):
                raise EC2ClientError(
                    "Resource.AlreadyAssociated",
                    f"the specified association for route table {route_table_id} conflicts "
                    "with an existing association",
                )
        return associate(self, route_table_id, gateway_id, subnet_id)

    describe_route_tables.sandbox_patched = True  # type: ignore[attr-defined]
    RouteBackend.describe_route_tables = describe_route_tables
    RouteBackend.associate_route_table = associate_route_table


def place_on_outpost(account: str, region: str, subnet_id: str, outpost_arn: str) -> None:
    """Make a subnet one of an Outpost's, as EC2 reports it (`OutpostArn`): moto's
    CreateSubnet ignores OutpostArn, and the controller takes an Outpost for a locale of its
    own, never mixed with regular zones in one load balancer."""
    from moto.ec2.models import ec2_backends

    subnet = ec2_backends[account][region].get_subnet(subnet_id)
    subnet.outpost_arn = outpost_arn  # type: ignore[attr-defined]  # what DescribeSubnets reads
