"""Run one phase's enter, verify or rollback in process, against moto and a Kubernetes API
emulator: real boto3 and the official Kubernetes client, no subprocess, no sandbox world.

    with phase_kit(tmp_path, config) as kit:
        kit.done("preflight", vpc_id=..., account=...)
        SubnetTagsPhase().enter(kit.ctx("subnet_tags"))
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import unittest.mock
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import botocore.loaders
import botocore.session
from moto import mock_aws

from kube_api_emulator import KubeApiServer, webhooks, write_kubeconfig
from orchestrator.aws import Aws
from orchestrator.builders.controller_manifests import CONTROLLER_NAME
from orchestrator.config import Config
from orchestrator.kube import Kube
from orchestrator.machine import Engine
from orchestrator.ownership import Owner
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


# Operations that only read: every other AWS call is a write.
READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Check")


@dataclass(frozen=True)
class AwsCall:
    service: str
    operation: str
    params: dict[str, Any]

    @property
    def writes(self) -> bool:
        return not self.operation.startswith(READ_PREFIXES)


def configured(**changes: Any) -> Config:
    """CONFIG with some settings changed (`root_zone_id=...`, `alb_scheme="internal"`)."""
    return dataclasses.replace(CONFIG, **changes)


@dataclass
class Kit:
    engine: Engine
    kube_server: KubeApiServer
    out: io.StringIO
    clients: dict[str, Any] = field(default_factory=dict)
    # Every AWS call made in the kit (the test's own clients' too) and every request the
    # Kubernetes API emulator served (its audit records), in order.
    aws_calls: list[AwsCall] = field(default_factory=list)
    kube_requests: list[dict[str, Any]] = field(default_factory=list)

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

    def preflight_done(self, oidc_issuer: str, vpc_id: str = "vpc-1") -> None:
        """preflight done, as it would be in moto's account, for the phases that read it."""
        self.done(
            "preflight",
            account=ACCOUNT,
            caller_arn=f"arn:aws:iam::{ACCOUNT}:user/moto",
            partition="aws",
            oidc_issuer=oidc_issuer,
            vpc_id=vpc_id,
        )

    def configure(self, **changes: Any) -> None:
        """Change settings of the running kit's config (an id known only once moto made it)."""
        self.engine.config = dataclasses.replace(self.engine.config, **changes)

    def ctx(self, phase: str) -> PhaseContext:
        return PhaseContext(self.engine, self.engine.state.phase(phase))

    def said(self) -> str:
        return self.out.getvalue()

    # ---- what the phases did --------------------------------------------------------------

    @property
    def owner(self) -> Owner:
        """This deployment as made by the kit's state file."""
        state = self.engine.state
        return Owner(state.deployment, state.identity)

    def other_state(self, identity: str = "f" * 16) -> Owner:
        """The same deployment, made by another state file."""
        return Owner(self.engine.state.deployment, identity)

    @contextlib.contextmanager
    def watching(self) -> Iterator[Activity]:
        """What happens inside the block: AWS calls and Kubernetes requests."""
        activity = Activity(len(self.aws_calls), len(self.kube_requests), self)
        yield activity
        activity.close()

    # ---- the world, arranged by the test ----------------------------------------------------

    def namespace(self, name: str) -> None:
        if self.store.get("v1", "Namespace", name) is None:
            self.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def make_available(self, name: str, namespace: str) -> None:
        """Mark a Deployment available, as kubelet and the deployment controller would. The
        load balancer controller's pods then answer its admission webhooks (admitting
        everything), unless the test gave the cluster a webhook caller of its own."""
        if name == CONTROLLER_NAME and self.store.webhook_caller is webhooks.no_pods:
            self.store.webhook_caller = lambda webhook, request: {"allowed": True}
        live = self.store.get("apps/v1", "Deployment", name, namespace)
        assert live is not None, f"no Deployment {namespace}/{name}"
        replicas = (live.get("spec") or {}).get("replicas", 1)
        self.store.patch_status(
            "apps/v1",
            "Deployment",
            name,
            namespace,
            {
                "observedGeneration": live["metadata"].get("generation", 1),
                "replicas": replicas,
                "updatedReplicas": replicas,
                "readyReplicas": replicas,
                "availableReplicas": replicas,
                "conditions": [
                    {"type": "Available", "status": "True", "reason": "MinimumReplicasAvailable"}
                ],
            },
        )

    def acm_status(self, arn: str, status: str, reason: str | None = None) -> None:
        """Set what ACM says of a certificate (moto issues only after a minute)."""
        from moto.acm.models import acm_backends

        bundle = acm_backends[ACCOUNT][REGION].get_certificate(arn)
        bundle.status = status
        if reason is not None:  # moto never says why
            describe = type(bundle).describe

            def with_reason(self: Any = bundle) -> dict[str, Any]:
                found = describe(self)
                found["Certificate"]["FailureReason"] = reason
                return found

            bundle.describe = with_reason

    def certificate_used_by(self, arn: str, *users: str) -> None:
        """Load balancers that use the certificate (ACM refuses to delete it meanwhile)."""
        from moto.acm.models import acm_backends

        acm_backends[ACCOUNT][REGION].get_certificate(arn).in_use_by = list(users)


@dataclass
class Activity:
    """The AWS calls and Kubernetes requests made inside `Kit.watching()`."""

    aws_start: int
    kube_start: int
    kit: Kit
    aws_calls: list[AwsCall] = field(default_factory=list)
    kube_requests: list[dict[str, Any]] = field(default_factory=list)

    def close(self) -> None:
        self.aws_calls = self.kit.aws_calls[self.aws_start :]
        self.kube_requests = self.kit.kube_requests[self.kube_start :]

    @property
    def aws_writes(self) -> list[str]:
        return [f"{c.service}:{c.operation}" for c in self.aws_calls if c.writes]

    @property
    def kube_writes(self) -> list[str]:
        return [
            f"{r.get('method')} {r.get('path')}"
            for r in self.kube_requests
            if r.get("method") not in ("GET", "HEAD") and "dryRun=All" not in str(r.get("path"))
        ]

    def calls(self, operation: str) -> list[AwsCall]:
        return [c for c in self.aws_calls if c.operation == operation]


_LOADERS: dict[str | None, Any] = {}


def _shared_loader(search_path: str | None = None) -> Any:
    """One botocore data loader for every session the kit's tests make: each boto3 session
    (the product's `Aws` makes its own) otherwise parses the service models' JSON again."""
    if search_path not in _LOADERS:
        _LOADERS[search_path] = botocore.loaders.create_loader(search_path)
    return _LOADERS[search_path]


@contextlib.contextmanager
def phase_kit(
    tmp_path: Path,
    config: Config = CONFIG,
    no_wait: bool = True,
    *,
    crd_establish_seconds: float | None = None,
    confirmations: frozenset[str] = frozenset(),
) -> Iterator[Kit]:
    """moto for AWS (credentials and endpoint of the caller's environment set aside) and an
    emulated API server for Kubernetes; waits check once unless `no_wait` is False.
    `crd_establish_seconds`: how long the emulator takes to Establish a CRD (0: at once);
    `confirmations`: phases a human confirmed (`resume --confirm PHASE`)."""
    saved = dict(os.environ)
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        os.environ.pop(key, None)
    os.environ.update(
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
        AWS_DEFAULT_REGION=REGION,
        MOTO_EC2_LOAD_DEFAULT_AMIS="false",
        # moto in process shares no account: Route 53 calls go unpaced (test_route53_limit.py)
        ORCHESTRATOR_ROUTE53_RATE="0",
    )
    kubeconfig = tmp_path / "kubeconfig"
    out = io.StringIO()
    aws_calls: list[AwsCall] = []
    kube_requests: list[dict[str, Any]] = []
    make_api_call = botocore.client.BaseClient._make_api_call

    def recorded(client: Any, operation: str, params: dict[str, Any]) -> Any:
        aws_calls.append(AwsCall(client.meta.service_model.service_name, operation, params))
        return make_api_call(client, operation, params)

    server_options: dict[str, Any] = {"audit": kube_requests.append}
    if crd_establish_seconds is not None:
        server_options["crd_establish_seconds"] = crd_establish_seconds
    engine_options: dict[str, Any] = {}
    if confirmations:
        engine_options["confirmations"] = confirmations
    try:
        with (
            mock_aws(),
            KubeApiServer(**server_options) as server,
            unittest.mock.patch.object(botocore.client.BaseClient, "_make_api_call", recorded),
            unittest.mock.patch.object(botocore.session, "create_loader", _shared_loader),
            # The state file is saved after every step; its durability is test_store.py's
            # business, not the phases': no waiting for the disk here.
            unittest.mock.patch.object(os, "fsync", lambda fd: None),
        ):
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
                **engine_options,
            )
            yield Kit(engine, server, out, aws_calls=aws_calls, kube_requests=kube_requests)
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


# ---- an EKS cluster in moto, with the Istio gateway in the emulator ----------------------------


def eks_cluster(
    kit: Kit, subnet_ids: list[str], endpoint: str | None = None, gateway: bool = True
) -> Any:
    """An ACTIVE EKS cluster in moto whose API server is the kit's emulator (or `endpoint`),
    in the VPC of `subnet_ids`, and (`gateway`) the Istio ingress gateway Service. Returns
    moto's cluster object, to change what EKS reports."""
    from moto.eks.models import eks_backends

    iam = kit.client("iam")
    role = iam.create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    kit.client("eks").create_cluster(
        name=CONFIG.cluster_name, roleArn=role, resourcesVpcConfig={"subnetIds": subnet_ids}
    )
    cluster = eks_backends[ACCOUNT][REGION].clusters[CONFIG.cluster_name]
    cluster.endpoint = endpoint or kit.kube_server.url
    (subnet,) = kit.client("ec2").describe_subnets(SubnetIds=subnet_ids[:1])["Subnets"]
    cluster.resources_vpc_config = {**cluster.resources_vpc_config, "vpcId": subnet["VpcId"]}
    if gateway:
        kit.namespace("istio-system")
        kit.store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "istio-ingressgateway", "namespace": "istio-system"},
                "spec": {"ports": [{"port": 80}]},
            }
        )
    return cluster
