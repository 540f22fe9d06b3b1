"""Run one phase's enter, verify or rollback in process, against moto and a Kubernetes API
emulator: real boto3 and the official Kubernetes client, no subprocess, no sandbox world.

    with phase_kit(tmp_path, config) as kit:
        kit.done("preflight", vpc_id=..., account=...)
        SubnetTagsPhase().enter(kit.ctx("subnet_tags"))
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
from moto import mock_aws

from kube_api_emulator import KubeApiServer, write_kubeconfig
from orchestrator.aws import Aws
from orchestrator.config import Config
from orchestrator.kube import Kube
from orchestrator.machine import Engine
from orchestrator.phase import PhaseContext
from orchestrator.report import Reporter
from orchestrator.states import all_phases
from orchestrator.store import StateStore, new_state
from orchestrator.waiting import WaitPolicy

REGION = "us-west-2"
ACCOUNT = "123456789012"  # moto's

CONFIG = Config(
    cluster_name="kube-eks-cluster",
    region=REGION,
    root_domain="example.com",
    root_zone_id=None,
    subdomain="platform.example.com",
)


@dataclass
class Kit:
    engine: Engine
    kube_server: KubeApiServer
    out: io.StringIO
    clients: dict[str, Any] = field(default_factory=dict)

    def client(self, service: str) -> Any:
        """A boto3 client of the test's own, to arrange and inspect what exists."""
        if service not in self.clients:
            self.clients[service] = boto3.client(service, region_name=REGION)
        return self.clients[service]

    @property
    def store(self) -> Any:
        return self.kube_server.store

    def done(self, phase: str, **outputs: Any) -> None:
        """Make an earlier phase done, with these outputs."""
        record = self.engine.state.phase(phase)
        record.status = "done"
        record.outputs.update(outputs)

    def ctx(self, phase: str) -> PhaseContext:
        return PhaseContext(self.engine, self.engine.state.phase(phase))

    def said(self) -> str:
        return self.out.getvalue()


@contextlib.contextmanager
def phase_kit(tmp_path: Path, config: Config = CONFIG, no_wait: bool = True) -> Iterator[Kit]:
    """moto for AWS (credentials and endpoint of the caller's environment set aside) and an
    emulated API server for Kubernetes; waits check once unless `no_wait` is False."""
    saved = dict(os.environ)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
    )
    kubeconfig = tmp_path / "kubeconfig"
    out = io.StringIO()
    try:
        with mock_aws(), KubeApiServer() as server:
            write_kubeconfig(kubeconfig, server.url)
            os.environ["KUBECONFIG"] = str(kubeconfig)
            phases = all_phases()
            state = new_state(config.deployment_id, config.settings(), [p.name for p in phases])
            engine = Engine(
                phases,
                state,
                StateStore(tmp_path / "state.json"),
                config,
                Reporter(out, out),
                WaitPolicy(no_wait=no_wait),
                aws_factory=lambda: Aws(config.region),
                kube_factory=lambda: Kube(),
            )
            yield Kit(engine, server, out)
    finally:
        os.environ.clear()
        os.environ.update(saved)


# ---- an EKS-like network in moto -------------------------------------------------------------


@dataclass
class Network:
    vpc_id: str
    public: dict[str, str]  # zone -> subnet id
    private: dict[str, str]


def eks_network(ec2: Any, zones: tuple[str, ...] = ("a", "b", "c")) -> Network:
    """A VPC as eksctl makes it: per zone a public subnet (route to an internet gateway)
    and a private one (route to a NAT gateway); the last private subnet has no explicit
    association, so the VPC's main table (to the NAT gateway) applies to it."""
    vpc = ec2.create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
    public, private = {}, {}
    for i, zone in enumerate(zones):
        az = f"{REGION}{zone}"
        public[az] = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{i * 32}.0/19", AvailabilityZone=az
        )["Subnet"]["SubnetId"]
        private[az] = ec2.create_subnet(
            VpcId=vpc, CidrBlock=f"10.0.{128 + i * 32}.0/19", AvailabilityZone=az
        )["Subnet"]["SubnetId"]
    igw = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=igw, VpcId=vpc)
    table = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=igw)
    for subnet in public.values():
        ec2.associate_route_table(RouteTableId=table, SubnetId=subnet)
    address = ec2.allocate_address(Domain="vpc")["AllocationId"]
    nat = ec2.create_nat_gateway(SubnetId=next(iter(public.values())), AllocationId=address)
    nat_id = nat["NatGateway"]["NatGatewayId"]
    (main,) = ec2.describe_route_tables(
        Filters=[
            {"Name": "vpc-id", "Values": [vpc]},
            {"Name": "association.main", "Values": ["true"]},
        ]
    )["RouteTables"]
    ec2.create_route(
        RouteTableId=main["RouteTableId"], DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id
    )
    inner = ec2.create_route_table(VpcId=vpc)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=inner, DestinationCidrBlock="0.0.0.0/0", NatGatewayId=nat_id)
    for subnet in list(private.values())[:-1]:
        ec2.associate_route_table(RouteTableId=inner, SubnetId=subnet)
    return Network(vpc, public, private)


def tags_of(ec2: Any, subnet_id: str) -> dict[str, str]:
    (subnet,) = ec2.describe_subnets(SubnetIds=[subnet_id])["Subnets"]
    return {t["Key"]: t["Value"] for t in subnet.get("Tags", [])}
