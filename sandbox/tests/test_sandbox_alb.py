"""The simulated AWS Load Balancer Controller and the ALBs' front end, against the rules of
the real controller and of AWS, in process: moto's `mock_aws`, an ObjectStore, the
simulator's tick() called by hand, and a clock the test moves (no threads, no sleeps; only
the front end serves on loopback sockets, as it must to be talked to)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from sandbox_support import binding_crd

from kube_api_emulator import ObjectStore
from orchestrator_sandbox import events, subnets
from orchestrator_sandbox.albcontroller import FINALIZER, AlbControllerSimulator
from orchestrator_sandbox.albmodel import ModelError
from orchestrator_sandbox.elbphysics import make_elb_lenient, make_elb_physical
from orchestrator_sandbox.pki import SandboxCA
from orchestrator_sandbox.targets import BINDING, BINDING_FINALIZER
from orchestrator_sandbox.tlsendpoint import AlbEndpoint, server_name_of

ACCOUNT = "123456789012"
REGION = "us-west-2"
CLUSTER = "test-cluster"
CONTROLLER = "aws-load-balancer-controller"
INGRESS = ("networking.k8s.io/v1", "Ingress")
DRAIN = 60.0
SETTLE = 30.0
PROVISIONING = 150.0
HOST = "kubeflow.platform.example.com"
ROLE_ELB = "kubernetes.io/role/elb"
ROLE_INTERNAL = "kubernetes.io/role/internal-elb"
NOT_SERVED = 'no matches for kind "TargetGroupBinding" in version "elbv2.k8s.aws/v1beta1"'
SESSION = boto3.session.Session()  # one session: its clients share loaded service models


class Clock:
    """Time that passes only when the test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---- the estate: a VPC with public and private subnets, an EKS cluster, the controller ----------


@dataclass
class Network:
    vpc_id: str
    public: list[str]  # one per zone a, b, c; their route table routes to an internet gateway
    private: list[str]  # one per zone; on the VPC's main route table, which does not


def build_network(ec2: Any, cidr: str = "10.0.0.0/16") -> Network:
    vpc_id = ec2.create_vpc(CidrBlock=cidr)["Vpc"]["VpcId"]
    gateway = ec2.create_internet_gateway()["InternetGateway"]["InternetGatewayId"]
    ec2.attach_internet_gateway(InternetGatewayId=gateway, VpcId=vpc_id)
    table = ec2.create_route_table(VpcId=vpc_id)["RouteTable"]["RouteTableId"]
    ec2.create_route(RouteTableId=table, DestinationCidrBlock="0.0.0.0/0", GatewayId=gateway)
    prefix = cidr.rsplit(".", 2)[0]
    network = Network(vpc_id, [], [])
    for i, zone in enumerate("abc"):
        public = subnet(ec2, vpc_id, f"{prefix}.{i}.0/24", zone)
        ec2.associate_route_table(RouteTableId=table, SubnetId=public)
        network.public.append(public)
        network.private.append(subnet(ec2, vpc_id, f"{prefix}.{10 + i}.0/24", zone))
    return network


def subnet(ec2: Any, vpc_id: str, cidr: str, zone: str) -> str:
    created = ec2.create_subnet(VpcId=vpc_id, CidrBlock=cidr, AvailabilityZone=f"{REGION}{zone}")
    return created["Subnet"]["SubnetId"]


def tag_role(ec2: Any, resources: list[str], role: str) -> None:
    ec2.create_tags(Resources=resources, Tags=[{"Key": role, "Value": "1"}])


@dataclass
class Rig:
    """A cluster with the controller installed, its identity granted and the TGB CRD."""

    clients: dict[str, Any]
    store: ObjectStore
    network: Network
    clock: Clock
    simulator: AlbControllerSimulator
    calls: list[str] = field(default_factory=list)  # successful AWS calls and store changes

    @property
    def ec2(self) -> Any:
        return self.clients["ec2"]

    @property
    def elbv2(self) -> Any:
        return self.clients["elbv2"]

    def tick(self, times: int = 1) -> None:
        for _ in range(times):
            self.simulator.tick()

    def ingress(self, name: str = "web", namespace: str = "default") -> dict[str, Any] | None:
        return self.store.get(*INGRESS, name, namespace)

    def events(self, reason: str) -> list[str]:
        return [e["message"] for e in self.store.list("v1", "Event") if e["reason"] == reason]

    def balancers(self) -> list[dict[str, Any]]:
        return self.elbv2.describe_load_balancers()["LoadBalancers"]

    def groups(self) -> dict[str, dict[str, Any]]:
        """The security groups the controller made, by name."""
        found = self.ec2.describe_security_groups()["SecurityGroups"]
        return {g["GroupName"]: g for g in found if g["GroupName"] != "default"}

    def record(self) -> None:
        """Note every successful AWS call and every change of the store, in order."""

        def after_call(http_response: Any, parsed: Any, model: Any, **_: Any) -> None:
            if "Error" not in parsed:
                self.calls.append(model.name)

        for client in self.clients.values():
            client.meta.events.register("after-call.*.*", after_call)
        self.store.subscribe(lambda change, obj: self.calls.append(f"{change} {obj['kind']}"))


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def aws(clock: Clock, moto_env: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("MOTO_EC2_LOAD_DEFAULT_AMIS", "false")
    with mock_aws():
        make_elb_physical(sg_drain_seconds=DRAIN, target_health_seconds=SETTLE, clock=clock)
        try:
            services = ("ec2", "eks", "iam", "elbv2", "acm")
            yield {s: SESSION.client(s, region_name=REGION) for s in services}
        finally:
            make_elb_lenient()  # moto's own ways again for the next test in this process


def make_rig(
    clients: dict[str, Any],
    clock: Clock,
    *,
    crd: bool = True,
    store: ObjectStore | None = None,
    args: tuple[str, ...] = (),
    delay: float = 0,
) -> Rig:
    network = build_network(clients["ec2"])
    store = store or ObjectStore(crd_establish_seconds=0, namespace_grace_seconds=0)
    role_arn = grant_identity(clients, eks_cluster(clients, network.private))
    store.create(service_account(role_arn))
    store.create(controller_deployment(*args))
    store.create(web_service())
    if crd:
        store.create(binding_crd())
    simulator = AlbControllerSimulator(store, clients, CLUSTER, REGION, ACCOUNT, delay, clock=clock)
    return Rig(clients, store, network, clock, simulator)


@pytest.fixture
def rig(aws: dict[str, Any], clock: Clock) -> Rig:
    return make_rig(aws, clock)


def eks_cluster(clients: dict[str, Any], subnet_ids: list[str]) -> str:
    """An EKS cluster in the subnets; its OIDC issuer."""
    role = clients["iam"].create_role(RoleName="eks", AssumeRolePolicyDocument="{}")["Role"]
    cluster = clients["eks"].create_cluster(
        name=CLUSTER, roleArn=role["Arn"], resourcesVpcConfig={"subnetIds": subnet_ids}
    )["cluster"]
    return cluster["identity"]["oidc"]["issuer"]


def grant_identity(clients: dict[str, Any], issuer: str) -> str:
    """The controller's IRSA role, trusted by the cluster's OIDC provider, allowed all."""
    iam, host = clients["iam"], issuer.removeprefix("https://")
    provider = iam.create_open_id_connect_provider(
        Url=issuer, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["a" * 40]
    )["OpenIDConnectProviderArn"]
    subject = f"system:serviceaccount:kube-system:{CONTROLLER}"
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{host}:sub": subject}},
    }
    trust = {"Version": "2012-10-17", "Statement": [statement]}
    role = iam.create_role(RoleName="lbc", AssumeRolePolicyDocument=json.dumps(trust))["Role"]
    allow = {"Effect": "Allow", "Action": ["elasticloadbalancing:*", "ec2:*"], "Resource": "*"}
    policy = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
    iam.put_role_policy(RoleName="lbc", PolicyName="controller", PolicyDocument=policy)
    return role["Arn"]


def service_account(role_arn: str) -> dict[str, Any]:
    annotations = {"eks.amazonaws.com/role-arn": role_arn}
    meta = {"name": CONTROLLER, "namespace": "kube-system", "annotations": annotations}
    return {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": meta}


def controller_deployment(*args: str) -> dict[str, Any]:
    container = {"name": "controller", "image": "lbc", "args": [f"--cluster-name={CLUSTER}", *args]}
    labels = {"app": CONTROLLER}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": CONTROLLER, "namespace": "kube-system"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"serviceAccountName": CONTROLLER, "containers": [container]},
            },
        },
        "status": {"availableReplicas": 1},
    }


def web_service(name: str = "web") -> dict[str, Any]:
    spec = {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    meta = {"name": name, "namespace": "default", "uid": f"uid-{name}"}
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def ingress(
    name: str = "web",
    scheme: str = "internet-facing",
    certificate: str | None = None,
    backend: str = "web",
) -> dict[str, Any]:
    prefix = "alb.ingress.kubernetes.io/"
    annotations = {
        prefix + "scheme": scheme,
        prefix + "target-type": "ip",
        prefix + "tags": "team=platform",
    }
    if certificate:
        annotations[prefix + "certificate-arn"] = certificate
        annotations[prefix + "listen-ports"] = json.dumps([{"HTTP": 80}, {"HTTPS": 443}])
        annotations[prefix + "ssl-redirect"] = "443"
    path = {
        "path": "/",
        "pathType": "Prefix",
        "backend": {"service": {"name": backend, "port": {"number": 80}}},
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"ingressClassName": "alb", "rules": [{"http": {"paths": [path]}}]},
    }


def issued_certificate(clients: dict[str, Any], domain: str) -> str:
    from moto.acm.models import acm_backends

    arn = clients["acm"].request_certificate(DomainName=domain, ValidationMethod="DNS")
    acm_backends[ACCOUNT][REGION].get_certificate(arn["CertificateArn"]).status = "ISSUED"
    return arn["CertificateArn"]


def in_use_arns(rig: Rig) -> list[str]:
    """What ACM says uses its certificates."""
    listed = rig.clients["acm"].list_certificates()["CertificateSummaryList"]
    return [
        user
        for c in listed
        for user in rig.clients["acm"]
        .describe_certificate(CertificateArn=c["CertificateArn"])["Certificate"]
        .get("InUseBy", [])
    ]


def deployed(rig: Rig, **options: Any) -> dict[str, Any]:
    """An Ingress the controller has made an ALB for (public subnets role-tagged)."""
    tag_role(rig.ec2, rig.network.public, ROLE_ELB)
    rig.store.create(ingress(**options))
    rig.tick()
    assert rig.events("SuccessfullyReconciled"), rig.events("FailedDeployModel")
    return rig.balancers()[0]


# ---- subnet discovery --------------------------------------------------------------------------


def fake_subnet(
    subnet_id: str, zone: str, tags: dict[str, str] | None = None, free: int = 250
) -> dict[str, Any]:
    return {
        "SubnetId": subnet_id,
        "AvailabilityZone": f"{REGION}{zone}",
        "AvailableIpAddressCount": free,
        "Tags": [{"Key": k, "Value": v} for k, v in (tags or {}).items()],
    }


def test_discovery_takes_role_tagged_subnets_only_and_one_per_zone() -> None:
    found = [
        fake_subnet("subnet-1", "a", {ROLE_ELB: "1"}),
        fake_subnet("subnet-2", "b", {ROLE_ELB: ""}),
        fake_subnet("subnet-3", "c", {ROLE_ELB: "0"}),  # neither "" nor "1"
        fake_subnet("subnet-0", "a", {ROLE_ELB: "1"}),  # lower id, same zone: preferred
        fake_subnet("subnet-4", "c"),
    ]
    tagged = subnets.role_tagged(found, "internet-facing")
    assert [s["SubnetId"] for s in tagged] == ["subnet-1", "subnet-2", "subnet-0"]
    assert [s["SubnetId"] for s in subnets.choose(tagged, CLUSTER)] == ["subnet-0", "subnet-2"]
    assert subnets.role_tagged(found, "internal") == []


def test_discovery_prefers_this_cluster_and_drops_other_clusters_and_full_subnets() -> None:
    mine, theirs = f"kubernetes.io/cluster/{CLUSTER}", "kubernetes.io/cluster/other"
    found = [
        fake_subnet("subnet-1", "a"),
        fake_subnet("subnet-2", "a", {mine: "shared"}),  # tagged for us: beats a lower id
        fake_subnet("subnet-3", "b", {theirs: "owned"}),  # only another cluster's: dropped
        fake_subnet("subnet-4", "b", {theirs: "shared", mine: "shared"}),  # ours too: kept
        fake_subnet("subnet-5", "c", free=7),  # fewer than 8 free addresses: dropped
    ]
    chosen = subnets.choose(found, CLUSTER)
    assert [s["SubnetId"] for s in chosen] == ["subnet-2", "subnet-4"]

    with pytest.raises(ModelError) as raised:
        subnets.choose(found[2:3] + found[4:], CLUSTER)
    assert raised.value.message == (
        "Failed build model due to couldn't auto-discover subnets: unable to resolve at least "
        "one subnet. Evaluated 2 subnets: 1 are tagged for other clusters, and 1 have "
        "insufficient available IP addresses"
    )
    with pytest.raises(ModelError, match="subnets count less than minimal required count: 1 < 2"):
        subnets.choose(found[:2], CLUSTER)


def test_discovery_falls_back_to_reachability_by_route_tables(aws: dict[str, Any]) -> None:
    ec2 = aws["ec2"]
    network = build_network(ec2)
    other = build_network(ec2, "10.9.0.0/16")  # another VPC's subnets are never candidates

    def found(scheme: str, vpc: str = network.vpc_id) -> list[str]:
        return [s["SubnetId"] for s in subnets.discover(ec2, vpc, CLUSTER, scheme)]

    # No role tags: public subnets (explicit table with an internet gateway) for
    # internet-facing, private ones (the main table, no gateway) for internal.
    assert found("internet-facing") == sorted(network.public)
    assert found("internal") == sorted(network.private)
    assert found("internal", other.vpc_id) == sorted(other.private)

    # Role tags win over reachability, even on the wrong side: the real controller puts an
    # internet-facing ALB into role-tagged private subnets.
    tag_role(ec2, network.private[:2], ROLE_ELB)
    assert found("internet-facing") == sorted(network.private[:2])
    tag_role(ec2, network.private[2:], ROLE_INTERNAL)
    with pytest.raises(ModelError, match="subnets count less than minimal required count: 1 < 2"):
        found("internal")

    assert subnets.all_public(ec2, network.public)
    assert not subnets.all_public(ec2, [network.public[0], network.private[0]])


def test_discovery_counts_free_addresses(aws: dict[str, Any]) -> None:
    ec2 = aws["ec2"]
    network = build_network(ec2)
    small = subnet(ec2, network.vpc_id, "10.0.20.0/28", "d")  # 11 usable addresses
    tag_role(ec2, [*network.public[:1], small], ROLE_ELB)
    assert len(subnets.discover(ec2, network.vpc_id, CLUSTER, "internet-facing")) == 2
    for _ in range(4):  # 7 left
        ec2.create_network_interface(SubnetId=small)
    with pytest.raises(ModelError, match="1 < 2"):
        subnets.discover(ec2, network.vpc_id, CLUSTER, "internet-facing")


def test_the_controller_reports_discovery_failures_and_uses_its_vpc_flag(
    aws: dict[str, Any], clock: Clock
) -> None:
    rig = make_rig(aws, clock)
    elsewhere = build_network(rig.ec2, "10.5.0.0/16")
    rig.store.create(ingress(scheme="internal"))
    tag_role(rig.ec2, rig.network.private[:1], ROLE_INTERNAL)
    rig.tick()
    assert rig.events("FailedBuildModel") == [
        "Failed build model due to couldn't auto-discover subnets: subnets count less than "
        "minimal required count: 1 < 2"
    ]
    assert not rig.balancers()

    # `--aws-vpc-id` points the controller at another VPC, where reachability decides.
    rig.store.apply(controller_deployment(f"--aws-vpc-id={elsewhere.vpc_id}"), "test", force=True)
    rig.tick()
    [balancer] = rig.balancers()
    zones = sorted(z["SubnetId"] for z in balancer["AvailabilityZones"])
    assert (balancer["Scheme"], zones) == ("internal", sorted(elsewhere.private))


# ---- the finalizer and the staged teardown ----------------------------------------------------


def test_the_finalizer_comes_before_any_aws_call(rig: Rig) -> None:
    rig.record()
    tag_role(rig.ec2, rig.network.public, ROLE_ELB)
    rig.calls.clear()
    rig.store.create(ingress())
    rig.tick()
    assert FINALIZER in rig.ingress()["metadata"]["finalizers"]
    first_aws_call = next(i for i, c in enumerate(rig.calls) if c[0].isupper() and " " not in c)
    assert "MODIFIED Ingress" in rig.calls[:first_aws_call]  # the finalizer
    assert "CreateLoadBalancer" in rig.calls


def test_an_ingress_the_controller_never_saw_simply_goes(rig: Rig) -> None:
    rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
    rig.store.create(ingress())
    rig.tick()
    assert "finalizers" not in rig.ingress()["metadata"]
    rig.store.delete(*INGRESS, "web", "default")
    assert rig.ingress() is None


def test_teardown_goes_in_the_real_order_and_waits_for_the_interfaces_to_drain(rig: Rig) -> None:
    balancer = deployed(rig, certificate=issued_certificate(rig.clients, HOST))
    assert len(rig.groups()) == 2 and in_use_arns(rig) == [balancer["LoadBalancerArn"]]
    names = {g["GroupId"]: name for name, g in rig.groups().items()}
    tried: list[str] = []  # the groups DeleteSecurityGroup was asked to delete, in order
    rig.ec2.meta.events.register(
        "before-parameter-build.ec2.DeleteSecurityGroup",
        lambda params, **_: tried.append(names[params["GroupId"]]),
    )
    rig.record()
    rig.calls.clear()

    rig.store.delete(*INGRESS, "web", "default")
    assert rig.ingress()["metadata"]["deletionTimestamp"]  # Terminating: the finalizer holds it
    rig.tick()
    assert not rig.balancers() and not rig.elbv2.describe_target_groups()["TargetGroups"]
    assert not rig.store.list(*BINDING)
    # EC2 refuses while the deleted ALB's network interfaces drain; the controller retries.
    assert len(rig.groups()) == 2 and rig.ingress() is not None
    rig.clock.advance(DRAIN - 1)
    rig.tick()
    assert len(rig.groups()) == 2 and rig.ingress() is not None
    rig.clock.advance(1)
    rig.tick()
    assert rig.groups() == {} and rig.ingress() is None

    done = [c for c in rig.calls if c.startswith("Delete") or c.startswith("DELETED")]
    assert done == [
        "DeleteLoadBalancer",
        "DELETED TargetGroupBinding",
        "DeleteTargetGroup",
        "DeleteSecurityGroup",
        "DeleteSecurityGroup",
        "DELETED Ingress",
    ]
    # The stack's frontend group, refused while draining, then the cluster's backend group.
    assert tried[0].startswith("k8s-default-web-") and tried[-2] == tried[0]
    assert tried[-1].startswith("k8s-traffic-")
    assert in_use_arns(rig) == []


def test_the_backend_group_stays_while_another_ingress_needs_it(rig: Rig) -> None:
    deployed(rig)
    rig.store.create(web_service("other"))
    rig.store.create(ingress("other", backend="other"))
    rig.tick()
    assert len(rig.balancers()) == 2
    backend = [name for name in rig.groups() if name.startswith("k8s-traffic-")]
    assert backend and len(rig.groups()) == 3

    rig.store.delete(*INGRESS, "web", "default")
    rig.tick()
    rig.clock.advance(DRAIN)
    rig.tick()
    assert rig.ingress() is None
    assert len(rig.groups()) == 2 and backend[0] in rig.groups()

    rig.store.delete(*INGRESS, "other", "default")
    rig.tick()
    rig.clock.advance(DRAIN)
    rig.tick()
    assert rig.groups() == {} and rig.ingress("other") is None


def test_teardown_stops_when_the_controller_goes(rig: Rig) -> None:
    deployed(rig)
    rig.store.delete(*INGRESS, "web", "default")
    rig.tick()  # the ALB and target group go; the security groups are draining
    rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
    rig.clock.advance(DRAIN * 10)
    rig.tick(3)
    assert len(rig.groups()) == 2  # leftovers stay, as in AWS
    assert rig.ingress()["metadata"]["finalizers"] == [FINALIZER]  # Terminating for good

    rig.store.create(controller_deployment())  # it comes back and finishes the job
    rig.tick()
    assert rig.ingress() is None
    # ... but the cluster's backend group: this run of the controller never built a model
    # that used it, so it does not know it (the real one keeps its id in memory only).
    assert [name for name in rig.groups()] == [backend_group(rig)]


def backend_group(rig: Rig) -> str:
    (name,) = [name for name in rig.groups() if name.startswith("k8s-traffic-")]
    return name


def test_a_restarted_controller_that_uses_the_backend_group_again_releases_it(
    rig: Rig,
) -> None:
    deployed(rig)
    rig.store.create(web_service("other"))
    rig.store.create(ingress("other", backend="other"))
    rig.tick()
    rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
    rig.tick()  # no controller: it forgets
    rig.store.create(controller_deployment())
    rig.tick()  # it builds the active Ingresses' models again: it knows the group again
    for name in ("web", "other"):
        rig.store.delete(*INGRESS, name, "default")
    rig.tick()
    rig.clock.advance(DRAIN)
    rig.tick(2)
    assert rig.groups() == {} and rig.ingress("other") is None


def test_deleting_an_ingress_while_no_controller_runs_leaves_the_alb(rig: Rig) -> None:
    deployed(rig)
    rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
    rig.store.delete(*INGRESS, "web", "default")
    rig.clock.advance(DRAIN * 10)
    rig.tick(3)
    assert len(rig.balancers()) == 1 and rig.ingress() is not None


def test_an_ingress_that_stops_being_alb_is_torn_down_and_released(rig: Rig) -> None:
    deployed(rig)
    changed = rig.ingress()
    changed["spec"]["ingressClassName"] = "nginx"
    rig.store.apply(
        {k: changed[k] for k in ("apiVersion", "kind", "spec")} | {"metadata": {"name": "web"}},
        "test",
        force=True,
    )
    rig.tick()
    rig.clock.advance(DRAIN)
    rig.tick()
    live = rig.ingress()
    assert live is not None and "finalizers" not in live["metadata"]
    assert not rig.balancers() and rig.groups() == {}
    assert not (live.get("status") or {}).get("loadBalancer", {}).get("ingress")


def test_changes_to_the_ingress_are_deployed_in_place(rig: Rig) -> None:
    balancer = deployed(rig)
    arn = balancer["LoadBalancerArn"]
    certificate = issued_certificate(rig.clients, HOST)

    def apply(changed: dict[str, Any]) -> None:
        rig.store.apply(changed, "test", force=True)
        rig.tick()

    def listeners() -> dict[int, str]:
        listed = rig.elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
        return {x["Port"]: x["DefaultActions"][0]["Type"] for x in listed}

    def open_ports() -> set[int]:
        frontend = next(g for n, g in rig.groups().items() if n.startswith("k8s-default-"))
        return {p["FromPort"] for p in frontend["IpPermissions"]}

    apply(ingress(certificate=certificate))
    assert [b["LoadBalancerArn"] for b in rig.balancers()] == [arn]
    assert listeners() == {80: "redirect", 443: "forward"} and open_ports() == {80, 443}
    assert in_use_arns(rig) == [arn]

    apply(ingress())
    assert listeners() == {80: "forward"} and open_ports() == {80}
    assert in_use_arns(rig) == []

    # A scheme cannot change: a new ALB, in subnets found for the new scheme, replaces it.
    apply(ingress(scheme="internal"))
    [internal] = rig.balancers()
    assert internal["LoadBalancerArn"] != arn and internal["Scheme"] == "internal"
    zones = {z["SubnetId"] for z in internal["AvailabilityZones"]}
    assert zones == set(rig.network.private)
    hostname = rig.ingress()["status"]["loadBalancer"]["ingress"][0]["hostname"]
    assert hostname == internal["DNSName"]
    assert len(rig.elbv2.describe_target_groups()["TargetGroups"]) == 1


# ---- security groups ---------------------------------------------------------------------------


def test_security_groups_are_named_described_and_tagged_as_the_controllers(rig: Rig) -> None:
    balancer = deployed(rig)
    groups = rig.groups()
    frontend = next(g for n, g in groups.items() if n.startswith("k8s-default-web-"))
    backend = next(
        g for n, g in groups.items() if n.startswith(f"k8s-traffic-{CLUSTER.replace('-', '')}-")
    )
    assert set(balancer["SecurityGroups"]) == {frontend["GroupId"], backend["GroupId"]}
    assert frontend["Description"] == "[k8s] Managed SecurityGroup for LoadBalancer"
    assert {t["Key"]: t["Value"] for t in frontend["Tags"]} == {
        "elbv2.k8s.aws/cluster": CLUSTER,
        "ingress.k8s.aws/stack": "default/web",
        "ingress.k8s.aws/resource": "ManagedLBSecurityGroup",
        "team": "platform",
    }
    assert [(p["FromPort"], p["IpRanges"]) for p in frontend["IpPermissions"]] == [
        (80, [{"CidrIp": "0.0.0.0/0"}])
    ]
    assert backend["Description"] == "[k8s] Shared Backend SecurityGroup for LoadBalancer"
    assert {t["Key"]: t["Value"] for t in backend["Tags"]} == {
        "elbv2.k8s.aws/cluster": CLUSTER,
        "elbv2.k8s.aws/resource": "backend-sg",
    }


def test_ec2_refuses_to_delete_a_group_a_load_balancer_holds(
    aws: dict[str, Any], clock: Clock
) -> None:
    ec2, elbv2 = aws["ec2"], aws["elbv2"]
    network = build_network(ec2)
    group = ec2.create_security_group(GroupName="g", Description="d", VpcId=network.vpc_id)
    arn = elbv2.create_load_balancer(
        Name="lb", Subnets=network.public[:2], SecurityGroups=[group["GroupId"]]
    )["LoadBalancers"][0]["LoadBalancerArn"]
    refused = f"resource {group['GroupId']} has a dependent object"
    with pytest.raises(ec2.exceptions.ClientError, match=refused):
        ec2.delete_security_group(GroupId=group["GroupId"])
    elbv2.delete_load_balancer(LoadBalancerArn=arn)
    clock.advance(DRAIN - 0.5)
    with pytest.raises(ec2.exceptions.ClientError, match="DependencyViolation"):
        ec2.delete_security_group(GroupId=group["GroupId"])
    clock.advance(0.5)
    ec2.delete_security_group(GroupId=group["GroupId"])


# ---- target groups, bindings and targets ------------------------------------------------------


def test_the_binding_is_made_bound_and_deleted_with_its_targets(rig: Rig) -> None:
    deployed(rig)
    [group] = rig.elbv2.describe_target_groups()["TargetGroups"]
    assert (group["Port"], group["TargetType"]) == (8080, "ip")  # the Service's targetPort
    [binding] = rig.store.list(*BINDING)
    meta, spec = binding["metadata"], binding["spec"]
    assert meta["name"] == group["TargetGroupName"] and meta["name"].startswith("k8s-default-web-")
    assert meta["labels"] == {
        "ingress.k8s.aws/stack-namespace": "default",
        "ingress.k8s.aws/stack-name": "web",
    }
    assert meta["finalizers"] == [BINDING_FINALIZER]
    assert spec["targetGroupARN"] == group["TargetGroupArn"]
    assert (spec["targetType"], spec["serviceRef"]) == ("ip", {"name": "web", "port": 80})
    assert binding["status"]["observedGeneration"] == meta["generation"]

    health = rig.elbv2.describe_target_health(TargetGroupArn=group["TargetGroupArn"])
    targets = [d["Target"] for d in health["TargetHealthDescriptions"]]
    assert len(targets) == 2 and {t["Port"] for t in targets} == {8080}
    private = [rig.ec2.describe_subnets(SubnetIds=[s])["Subnets"][0] for s in rig.network.private]
    for target in targets:  # pod addresses come from the private subnets
        assert any(target["Id"].startswith(s["CidrBlock"].rsplit(".", 1)[0] + ".") for s in private)


def test_without_the_binding_crd_the_deploy_fails_and_is_retried(
    aws: dict[str, Any], clock: Clock
) -> None:
    rig = make_rig(aws, clock, crd=False)
    tag_role(rig.ec2, rig.network.public, ROLE_ELB)
    rig.store.create(ingress())
    rig.tick(2)
    assert rig.events("FailedDeployModel") == [f"Failed deploy model due to {NOT_SERVED}"]
    assert len(rig.balancers()) == 1  # made before the binding, as the real deployer does
    assert not (rig.ingress().get("status") or {}).get("loadBalancer")

    rig.store.create(binding_crd())
    rig.tick()
    assert rig.events("SuccessfullyReconciled")
    assert len(rig.store.list(*BINDING)) == 1 and len(rig.balancers()) == 1
    assert rig.ingress()["status"]["loadBalancer"]["ingress"][0]["hostname"]


def test_a_binding_crd_not_yet_established_is_not_served(aws: dict[str, Any], clock: Clock) -> None:
    store = ObjectStore(crd_establish_seconds=3600, namespace_grace_seconds=0)
    rig = make_rig(aws, clock, store=store)
    tag_role(rig.ec2, rig.network.public, ROLE_ELB)
    rig.store.create(ingress())
    rig.tick()
    assert rig.events("FailedDeployModel") == [f"Failed deploy model due to {NOT_SERVED}"]


def test_targets_are_initial_until_the_alb_has_been_active_a_while(rig: Rig) -> None:
    deployed(rig)
    arn = rig.elbv2.describe_target_groups()["TargetGroups"][0]["TargetGroupArn"]

    def states() -> set[tuple[str, str | None]]:
        health = rig.elbv2.describe_target_health(TargetGroupArn=arn)
        return {
            (d["TargetHealth"]["State"], d["TargetHealth"].get("Reason"))
            for d in health["TargetHealthDescriptions"]
        }

    assert states() == {("initial", "Elb.RegistrationInProgress")}
    rig.clock.advance(SETTLE - 1)
    assert states() == {("initial", "Elb.RegistrationInProgress")}
    rig.clock.advance(1)
    assert states() == {("healthy", None)}


def test_the_ingress_names_the_alb_while_it_is_still_provisioning(
    aws: dict[str, Any], clock: Clock, tmp_path: Path
) -> None:
    rig = make_rig(aws, clock, delay=PROVISIONING)
    tag_role(rig.ec2, rig.network.public, ROLE_ELB)
    events.record_to(tmp_path / events.NAME)
    try:
        rig.store.create(ingress())
        rig.tick()  # every precondition holds: deployed at once, the hostname published
        [balancer] = rig.balancers()
        assert balancer["State"]["Code"] == "provisioning"
        assert (
            rig.ingress()["status"]["loadBalancer"]["ingress"][0]["hostname"]
            == (balancer["DNSName"])
        )
        group = rig.elbv2.describe_target_groups()["TargetGroups"][0]["TargetGroupArn"]
        rig.clock.advance(PROVISIONING - 1)
        rig.tick()
        assert rig.balancers()[0]["State"]["Code"] == "provisioning"
        health = rig.elbv2.describe_target_health(TargetGroupArn=group)
        assert {d["TargetHealth"]["State"] for d in health["TargetHealthDescriptions"]} == {
            "initial"
        }

        # AWS finishes provisioning whether the controller still runs or not.
        rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
        rig.clock.advance(1)
        rig.tick()
        assert rig.balancers()[0]["State"]["Code"] == "active"
        rig.clock.advance(SETTLE)
        health = rig.elbv2.describe_target_health(TargetGroupArn=group)
        assert {d["TargetHealth"]["State"] for d in health["TargetHealthDescriptions"]} == {
            "healthy"
        }
    finally:
        events.record_to(None)

    arn = balancer["LoadBalancerArn"]
    recorded = {e["kind"]: e for e in events.read(tmp_path)}
    active, reconciled = recorded["alb.active"], recorded["alb.reconciled"]
    # The controller's deploy waited for nothing of the world's here (no controller rollout
    # or certificate issue in this log); provisioning waited for the deploy.
    assert (reconciled["id"], reconciled["after"]) == (f"alb.reconciled:{arn}", [])
    assert reconciled["ended"] == active["began"]
    assert (active["id"], active["after"]) == (f"alb.active:{arn}", [reconciled["id"]])
    assert active["ended"] - active["began"] == pytest.approx(PROVISIONING)
    healthy = recorded["targets.healthy"]
    assert healthy["subject"].startswith(f"{group}/") and healthy["after"] == [active["id"]]
    assert (healthy["began"], healthy["ended"] - healthy["began"]) == pytest.approx(
        (active["ended"], SETTLE)
    )


# ---- the front end -----------------------------------------------------------------------------


@pytest.fixture
def endpoint(aws: dict[str, Any], tmp_path: Path) -> Iterator[AlbEndpoint]:
    front = AlbEndpoint(SandboxCA(tmp_path), aws["elbv2"], aws["acm"], aws["ec2"])
    front.start()
    try:
        yield front
    finally:
        front.stop()


def https_get(endpoint: AlbEndpoint, tmp_path: Path, host: str = HOST) -> str:
    context = ssl.create_default_context(cafile=str(tmp_path / "ca.pem"))
    with (
        socket.create_connection((endpoint.address, endpoint.https_port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return tls.makefile("rb").read().decode()


def http_get(endpoint: AlbEndpoint, host: str) -> http.client.HTTPResponse:
    connection = http.client.HTTPConnection(endpoint.address, endpoint.http_port, timeout=5)
    connection.request("GET", "/", headers={"Host": host})
    return connection.getresponse()


def test_the_alb_answers_503_until_a_target_is_healthy(
    rig: Rig, endpoint: AlbEndpoint, tmp_path: Path
) -> None:
    certificate = issued_certificate(rig.clients, f"*.{HOST.partition('.')[2]}")
    deployed(rig, certificate=certificate)
    answer = https_get(endpoint, tmp_path)
    assert answer.startswith("HTTP/1.1 503 Service Temporarily Unavailable\r\n")
    assert "\r\nServer: awselb/2.0\r\n" in answer
    assert "<center><h1>503 Service Temporarily Unavailable</h1></center>" in answer

    rig.clock.advance(SETTLE)
    answer = https_get(endpoint, tmp_path)
    assert answer.startswith("HTTP/1.1 302 Found\r\n")
    assert "\r\nLocation: /dex/auth?client_id=kubeflow-oidc-authservice&" in answer
    redirect = http_get(endpoint, HOST)
    assert (redirect.status, redirect.getheader("Location")) == (301, f"https://{HOST}/")


def test_an_internet_facing_alb_in_private_subnets_cannot_be_reached(
    rig: Rig, endpoint: AlbEndpoint, tmp_path: Path
) -> None:
    certificate = issued_certificate(rig.clients, HOST)
    tag_role(rig.ec2, rig.network.private, ROLE_ELB)  # the role tag on the wrong subnets
    rig.store.create(ingress(certificate=certificate))
    rig.tick()
    [balancer] = rig.balancers()
    zones = {z["SubnetId"] for z in balancer["AvailabilityZones"]}
    assert balancer["Scheme"] == "internet-facing" and zones == set(rig.network.private)
    rig.clock.advance(SETTLE)

    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(endpoint, tmp_path)  # closed before any answer
    with pytest.raises(http.client.RemoteDisconnected):
        http_get(endpoint, HOST)
    with pytest.raises(http.client.RemoteDisconnected):
        http_get(endpoint, balancer["DNSName"])


def test_an_internal_alb_cannot_be_reached_from_outside(
    rig: Rig, endpoint: AlbEndpoint, tmp_path: Path
) -> None:
    certificate = issued_certificate(rig.clients, HOST)
    rig.store.create(ingress(scheme="internal", certificate=certificate))
    rig.tick()
    assert rig.balancers()[0]["Scheme"] == "internal"
    rig.clock.advance(SETTLE)
    with pytest.raises((ssl.SSLError, ConnectionError)):
        https_get(endpoint, tmp_path)


def test_the_server_name_is_read_from_the_client_hello() -> None:
    context = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = context.wrap_bio(incoming, outgoing, server_hostname=HOST)
    with pytest.raises(ssl.SSLWantReadError):
        client.do_handshake()
    hello = outgoing.read()
    assert server_name_of(hello) == HOST
    assert server_name_of(hello[:20]) is None
    assert server_name_of(b"GET / HTTP/1.1\r\n") is None


def test_a_controller_whose_role_is_deleted_mid_teardown_says_why_and_retries(rig: Rig) -> None:
    """As the real one: each pass fails at its credentials, a Warning Event on the Ingress
    says so, and the teardown goes on once the role is back."""
    deployed(rig)
    iam = rig.clients["iam"]
    iam.delete_role_policy(RoleName="lbc", PolicyName="controller")
    trust = iam.get_role(RoleName="lbc")["Role"]["AssumeRolePolicyDocument"]
    iam.delete_role(RoleName="lbc")
    rig.store.delete(*INGRESS, "web", "default")
    rig.tick(2)
    (failure,) = rig.events("FailedDeployModel")
    assert "WebIdentityErr" in failure
    assert rig.ingress()["metadata"]["finalizers"] == [FINALIZER] and rig.balancers()

    iam.create_role(RoleName="lbc", AssumeRolePolicyDocument=json.dumps(trust))
    allow = {"Effect": "Allow", "Action": ["elasticloadbalancing:*", "ec2:*"], "Resource": "*"}
    document = json.dumps({"Version": "2012-10-17", "Statement": [allow]})
    iam.put_role_policy(RoleName="lbc", PolicyName="controller", PolicyDocument=document)
    rig.tick()
    rig.clock.advance(DRAIN)
    rig.tick(2)
    assert rig.ingress() is None and rig.balancers() == []


def test_a_controller_whose_policy_is_removed_cannot_delete_the_alb(rig: Rig) -> None:
    deployed(rig)
    rig.clients["iam"].delete_role_policy(RoleName="lbc", PolicyName="controller")
    rig.store.delete(*INGRESS, "web", "default")
    rig.tick(2)
    (failure,) = rig.events("FailedDeployModel")
    assert "AccessDenied" in failure and "elasticloadbalancing:DeleteLoadBalancer" in failure
    assert rig.balancers() and rig.ingress() is not None
