"""The sandbox world's two clusters, production and staging, and its Kubernetes audit log,
seen through public APIs only: boto3, the official Kubernetes client, kubectl, DNS, TLS and
the files the world writes."""

from __future__ import annotations

import json
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dns.resolver
import pytest
import yaml
from kubernetes import client, config
from sandbox_support import World, binding_crd, needs_kubectl, wait_for
from test_sandbox_world import ingress
from test_sandbox_world import upsert as world_upsert

from kube_api_emulator import KubeApiServer, write_kubeconfig_contexts
from orchestrator.config import load_config
from orchestrator_sandbox import kubeaudit
from orchestrator_sandbox.neighbour import NEIGHBOUR

DEADLINE = 15.0
CONTROLLER = "aws-load-balancer-controller"


@dataclass(frozen=True)
class Cluster:
    name: str
    context: str
    subdomain: str
    seeded: dict[str, Any]  # its entry in world.json's `seeded`
    endpoint: str  # its API server's URL in world.json

    @property
    def host(self) -> str:
        return f"kubeflow.{self.subdomain}"


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with World.up(tmp_path_factory.mktemp("clusters") / "world", acm_delay=0.3, alb_delay=0.3) as w:
        yield w


@pytest.fixture(scope="module")
def clusters(sandbox: World) -> tuple[Cluster, Cluster]:
    seeded, endpoints = sandbox.info["seeded"], sandbox.info["endpoints"]
    production = Cluster(
        "kube-eks-cluster", "sandbox", "platform.example.com", seeded, endpoints["kubernetes"]
    )
    staging = Cluster(
        "kube-eks-staging",
        "staging",
        "staging.example.com",
        seeded["staging"],
        endpoints["kubernetes_staging"],
    )
    return production, staging


def core(w: World, context: str, agent: str | None = None) -> client.CoreV1Api:
    """The official client's core API for a kubeconfig context, with its own user agent."""
    api = config.new_client_from_config(config_file=w.env["KUBECONFIG"], context=context)
    if agent:
        api.user_agent = agent
    return client.CoreV1Api(api)


def audited(w: World, agent: str) -> list[dict[str, Any]]:
    return [e for e in kubeaudit.read(w.directory / "kube-audit.jsonl") if e["user_agent"] == agent]


def unique_agent() -> str:
    return f"cluster-test/{uuid.uuid4().hex[:8]} (python)"


# ---- the parts ---------------------------------------------------------------------------------


def test_kubeconfig_with_several_contexts(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    servers = {"one": "http://127.0.0.1:1", "two": "http://127.0.0.1:2"}
    write_kubeconfig_contexts(path, servers, current="two", token="t")
    assert path.stat().st_mode & 0o777 == 0o600
    for context, url in servers.items():
        configuration = client.Configuration()
        config.load_kube_config(str(path), context=context, client_configuration=configuration)
        assert configuration.host == url
    assert yaml.safe_load(path.read_text())["current-context"] == "two"
    with pytest.raises(ValueError, match="three"):
        write_kubeconfig_contexts(path, servers, current="three")


def test_a_failing_audit_sink_does_not_fail_requests(tmp_path: Path) -> None:
    seen: list[dict[str, Any]] = []

    def audit(entry: dict[str, Any]) -> None:
        seen.append(entry)
        raise OSError("disk full")

    with KubeApiServer(audit=audit) as server:
        write_kubeconfig_contexts(tmp_path / "kubeconfig", {"only": server.url})
        api = config.new_client_from_config(config_file=str(tmp_path / "kubeconfig"))
        assert client.CoreV1Api(api).read_namespace("default").metadata.name == "default"
    assert [(e["method"], e["path"], e["status"]) for e in seen] == [
        ("GET", "/api/v1/namespaces/default", 200)
    ]


# ---- two clusters ------------------------------------------------------------------------------


def test_both_clusters_are_active_each_in_its_own_network(
    sandbox: World, clusters: tuple[Cluster, Cluster]
) -> None:
    eks, ec2 = sandbox.client("eks"), sandbox.client("ec2")
    # and the neighbour, in production's VPC (neighbour.py)
    assert set(eks.list_clusters()["clusters"]) == {c.name for c in clusters} | {NEIGHBOUR}
    described = {c.name: eks.describe_cluster(name=c.name)["cluster"] for c in clusters}
    for cluster, prefix in zip(clusters, ("10.0.", "10.1."), strict=True):
        found = described[cluster.name]
        assert found["status"] == "ACTIVE"
        assert found["arn"] == cluster.seeded["cluster_arn"]
        assert found["identity"]["oidc"]["issuer"] == cluster.seeded["oidc_issuer"]
        assert found["resourcesVpcConfig"]["subnetIds"] == cluster.seeded["subnet_ids"]
        assert found["roleArn"].endswith(f":role/{cluster.name}-cluster-role")
        vpc = ec2.describe_vpcs(VpcIds=[cluster.seeded["vpc_id"]])["Vpcs"][0]
        assert vpc["CidrBlock"] == f"{prefix}0.0/16"
        subnets = ec2.describe_subnets(SubnetIds=cluster.seeded["subnet_ids"])["Subnets"]
        assert {s["VpcId"] for s in subnets} == {cluster.seeded["vpc_id"]}
        assert len({s["AvailabilityZone"] for s in subnets}) == 3
        assert all(s["CidrBlock"].startswith(prefix) for s in subnets)
        assert all({"Key": "team", "Value": "platform"} in s["Tags"] for s in subnets)
    production, staging = (described[c.name] for c in clusters)
    assert production["identity"]["oidc"]["issuer"] != staging["identity"]["oidc"]["issuer"]
    assert production["endpoint"] != staging["endpoint"]
    assert clusters[0].seeded["root_zone_id"] == clusters[1].seeded["root_zone_id"]


def test_one_kubeconfig_with_a_context_per_cluster(
    sandbox: World, clusters: tuple[Cluster, Cluster]
) -> None:
    kubeconfig = yaml.safe_load(Path(sandbox.env["KUBECONFIG"]).read_text())
    assert kubeconfig["current-context"] == "sandbox"
    servers = {c["name"]: c["cluster"]["server"] for c in kubeconfig["clusters"]}
    contexts = {c["name"]: servers[c["context"]["cluster"]] for c in kubeconfig["contexts"]}
    assert contexts == {c.context: c.endpoint for c in clusters}
    assert clusters[0].endpoint != clusters[1].endpoint


@needs_kubectl
def test_kubectl_reaches_either_cluster_by_context(sandbox: World) -> None:
    for context in (None, "staging"):
        chosen = ["--context", context] if context else []
        shown = subprocess.run(
            ["kubectl", *chosen, "get", "svc", "-n", "istio-system", "istio-ingressgateway"]
            + ["-o", "json"],
            env=sandbox.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert shown.returncode == 0, shown.stderr
        service = json.loads(shown.stdout)
        assert {p["port"] for p in service["spec"]["ports"]} == {15021, 80, 443}


def test_an_object_lives_in_one_cluster_only(sandbox: World) -> None:
    production, staging = core(sandbox, "sandbox"), core(sandbox, "staging")
    names = {"sandbox": f"only-production-{uuid.uuid4().hex[:6]}", "staging": "only-staging"}
    for api, name in ((production, names["sandbox"]), (staging, names["staging"])):
        body = {"metadata": {"name": name}, "data": {"where": name}}
        api.create_namespaced_config_map("kubeflow", body)
    listed = {
        context: {m.metadata.name for m in api.list_namespaced_config_map("kubeflow").items}
        for context, api in (("sandbox", production), ("staging", staging))
    }
    assert names["sandbox"] in listed["sandbox"] and names["sandbox"] not in listed["staging"]
    assert names["staging"] in listed["staging"] and names["staging"] not in listed["sandbox"]
    with pytest.raises(client.ApiException) as missing:
        staging.read_namespaced_config_map(names["sandbox"], "kubeflow")
    assert missing.value.status == 404


def test_each_cluster_has_a_deployment_config(
    sandbox: World, clusters: tuple[Cluster, Cluster]
) -> None:
    production = load_config(sandbox.directory / "config.yaml")
    staging = load_config(sandbox.directory / "config-staging.yaml")
    assert (staging.cluster_name, staging.kube_context, staging.subdomain) == (
        "kube-eks-staging",
        "staging",
        "staging.example.com",
    )
    assert (production.cluster_name, production.kube_context, production.subdomain) == (
        "kube-eks-cluster",
        None,  # as before: the kubeconfig's current context
        "platform.example.com",
    )
    assert staging.root_zone_id == production.root_zone_id == clusters[1].seeded["root_zone_id"]
    assert staging.region == production.region == "us-west-2"
    assert staging.deployment_id != production.deployment_id


# ---- the audit log ---------------------------------------------------------------------------


def test_audit_log_records_requests_with_cluster_agent_status_and_write(sandbox: World) -> None:
    agent = unique_agent()
    staging = core(sandbox, "staging", agent)
    staging.read_namespace("kubeflow")
    staging.create_namespaced_config_map("kubeflow", {"metadata": {"name": "audited"}})
    staging.list_namespaced_config_map("kubeflow", label_selector="app=audited")
    with pytest.raises(client.ApiException):
        staging.read_namespaced_config_map("absent", "kubeflow")
    core(sandbox, "sandbox", agent).read_namespace("auth")

    entries = audited(sandbox, agent)
    assert [(e["cluster"], e["method"], e["path"], e["status"], e["write"]) for e in entries] == [
        ("kube-eks-staging", "GET", "/api/v1/namespaces/kubeflow", 200, False),
        ("kube-eks-staging", "POST", "/api/v1/namespaces/kubeflow/configmaps", 201, True),
        (
            "kube-eks-staging",
            "GET",
            "/api/v1/namespaces/kubeflow/configmaps?labelSelector=app%3Daudited",
            200,
            False,
        ),
        ("kube-eks-staging", "GET", "/api/v1/namespaces/kubeflow/configmaps/absent", 404, False),
        ("kube-eks-cluster", "GET", "/api/v1/namespaces/auth", 200, False),
    ]
    times = [e["time"] for e in entries]
    assert times == sorted(times) and abs(times[-1] - time.time()) < 60
    keys = {"time", "cluster", "method", "path", "user_agent", "status", "write", "user"}
    assert set(entries[0]) == keys
    # Every request authenticated with the cluster's short-lived token, as on EKS.
    assert {e["user"] for e in entries} == {"kubernetes-admin"}


def test_audit_log_leaves_out_the_worlds_own_simulators(sandbox: World) -> None:
    agent = unique_agent()
    api = config.new_client_from_config(config_file=sandbox.env["KUBECONFIG"])
    api.user_agent = agent
    apps, core_api = client.AppsV1Api(api), client.CoreV1Api(api)
    core_api.create_namespaced_service_account("kubeflow", {"metadata": {"name": "worker"}})
    apps.create_namespaced_deployment("kubeflow", deployment("worker", "worker"))

    def available() -> bool:
        status = apps.read_namespaced_deployment("worker", "kubeflow").status
        return bool(status and status.available_replicas)

    wait_for(available, timeout=DEADLINE, what="the Deployment to become available")
    path = "/apis/apps/v1/namespaces/kubeflow/deployments/worker"
    about_it = [
        e for e in kubeaudit.read(sandbox.directory / "kube-audit.jsonl") if path in e["path"]
    ]
    # Only our client's reads: the reconciler's status update went to the store, not HTTP.
    assert about_it and {(e["method"], e["user_agent"]) for e in about_it} == {("GET", agent)}
    assert not [e for e in audited(sandbox, agent) if "/status" in e["path"]]


# ---- an ALB per cluster, served by the one front end -------------------------------------------


def test_each_clusters_controller_makes_its_alb_and_the_front_end_serves_both(
    sandbox: World, clusters: tuple[Cluster, Cluster]
) -> None:
    certificates = {c.name: prepare_alb(sandbox, c) for c in clusters}
    elbv2 = sandbox.client("elbv2")
    for cluster in clusters:
        kube = core(sandbox, cluster.context)
        networking = client.NetworkingV1Api(kube.api_client)
        gateway = ingress(
            "istio-ingress", "istio-system", "istio-ingressgateway", certificates[cluster.name]
        )
        networking.create_namespaced_ingress("istio-system", gateway)

    for cluster in clusters:
        networking = client.NetworkingV1Api(core(sandbox, cluster.context).api_client)

        def hostname(api: client.NetworkingV1Api = networking) -> str | None:
            found = api.read_namespaced_ingress("istio-ingress", "istio-system").to_dict()
            entries = ((found.get("status") or {}).get("load_balancer") or {}).get("ingress")
            return entries[0]["hostname"] if entries else None

        name = wait_for(hostname, timeout=DEADLINE, what=f"{cluster.name}'s ALB hostname")
        (balancer,) = [
            lb for lb in elbv2.describe_load_balancers()["LoadBalancers"] if lb["DNSName"] == name
        ]
        assert balancer["VpcId"] == cluster.seeded["vpc_id"]
        (described,) = elbv2.describe_tags(ResourceArns=[balancer["LoadBalancerArn"]])[
            "TagDescriptions"
        ]
        assert {"Key": "elbv2.k8s.aws/cluster", "Value": cluster.name} in described["Tags"]
        alias = {
            "HostedZoneId": balancer["CanonicalHostedZoneId"],
            "DNSName": f"dualstack.{name}",
            "EvaluateTargetHealth": True,
        }
        upsert(sandbox, zone_of(sandbox, cluster.subdomain), cluster.host, {"AliasTarget": alias})

    address = sandbox.info["endpoints"]["alb"]
    port = int(sandbox.info["endpoints"]["alb_https"].rpartition(":")[2])
    for cluster in clusters:
        wait_for(
            lambda c=cluster: resolve(sandbox, c.host) == [address],
            timeout=DEADLINE,
            what=f"{cluster.host} to resolve to the ALB",
        )
        served = served_names(sandbox, address, port, cluster.host)
        assert served == [f"*.{cluster.subdomain}"], cluster.name

    # The controllers' Events and Ingress status updates went to the stores, not over HTTP.
    log = kubeaudit.read(sandbox.directory / "kube-audit.jsonl")
    assert not [
        e for e in log if e["write"] and e["path"].split("?")[0].endswith(("/status", "/events"))
    ]


def prepare_alb(w: World, cluster: Cluster) -> str:
    """What a cluster's controller needs (IRSA, tagged subnets, an ISSUED certificate, the
    controller itself, bound to this cluster); the certificate's ARN."""
    iam, issuer = w.client("iam"), cluster.seeded["oidc_issuer"].removeprefix("https://")
    provider = iam.create_open_id_connect_provider(
        Url=f"https://{issuer}", ClientIDList=["sts.amazonaws.com"], ThumbprintList=["0" * 40]
    )["OpenIDConnectProviderArn"]
    subject = f"system:serviceaccount:kube-system:{CONTROLLER}"
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {
            "StringEquals": {f"{issuer}:sub": subject, f"{issuer}:aud": "sts.amazonaws.com"}
        },
    }
    role = iam.create_role(
        RoleName=f"lbc-{cluster.name}",
        AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [statement]}),
    )["Role"]
    allow = {"Effect": "Allow", "Action": ["elasticloadbalancing:*", "ec2:*"], "Resource": "*"}
    policy = iam.create_policy(
        PolicyName=f"lbc-{cluster.name}",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [allow]}),
    )["Policy"]
    iam.attach_role_policy(RoleName=role["RoleName"], PolicyArn=policy["Arn"])
    w.client("ec2").create_tags(
        Resources=cluster.seeded["public_subnet_ids"],
        Tags=[
            {"Key": "kubernetes.io/role/elb", "Value": "1"},
            {"Key": f"kubernetes.io/cluster/{cluster.name}", "Value": "shared"},
        ],
    )
    kube = core(w, cluster.context)
    client.ApiextensionsV1Api(kube.api_client).create_custom_resource_definition(binding_crd())
    annotations = {"eks.amazonaws.com/role-arn": role["Arn"]}
    kube.create_namespaced_service_account(
        "kube-system", {"metadata": {"name": CONTROLLER, "annotations": annotations}}
    )
    client.AppsV1Api(kube.api_client).create_namespaced_deployment(
        "kube-system", deployment(CONTROLLER, CONTROLLER, f"--cluster-name={cluster.name}")
    )
    return issued_certificate(w, cluster.subdomain)


def issued_certificate(w: World, subdomain: str) -> str:
    """A delegated zone for `subdomain` and an ISSUED `*.<subdomain>` certificate."""
    route53, acm = w.client("route53"), w.client("acm")
    zone = route53.create_hosted_zone(Name=subdomain, CallerReference=f"test-{subdomain}")
    servers = [{"Value": s} for s in zone["DelegationSet"]["NameServers"]]
    upsert(w, w.root_zone_id, subdomain, {"TTL": 300, "ResourceRecords": servers}, "NS")
    arn = acm.request_certificate(DomainName=f"*.{subdomain}", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    options = acm.describe_certificate(CertificateArn=arn)["Certificate"]["DomainValidationOptions"]
    record = options[0]["ResourceRecord"]
    upsert(
        w,
        zone["HostedZone"]["Id"].split("/")[-1],
        record["Name"],
        {"TTL": 300, "ResourceRecords": [{"Value": record["Value"]}]},
        "CNAME",
    )

    def issued() -> bool:
        return acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"] == "ISSUED"

    wait_for(issued, timeout=DEADLINE, what=f"the certificate for {subdomain}")
    return arn


def upsert(w: World, zone_id: str, name: str, rest: dict[str, Any], rtype: str = "A") -> None:
    record = {"Name": name, "Type": rtype, **rest}
    world_upsert(w, zone_id, record)  # as an alias to a new ALB needs: once Route 53 knows it


def zone_of(w: World, name: str) -> str:
    zones = w.client("route53").list_hosted_zones_by_name(DNSName=name)["HostedZones"]
    return next(z["Id"].split("/")[-1] for z in zones if z["Name"] == f"{name}.")


def resolve(w: World, host: str) -> list[str]:
    server, _, port = w.env["ORCHESTRATOR_DNS_SERVERS"].partition(":")
    resolver = dns.resolver.Resolver(configure=False)
    resolver.nameservers, resolver.port = [server], int(port or 53)
    try:
        return [r.address for r in resolver.resolve(host, "A")]
    except dns.resolver.NXDOMAIN:
        return []


def served_names(w: World, address: str, port: int, host: str) -> list[str]:
    """The DNS names of the certificate the front end presents for `host`, TLS-verified."""
    context = ssl.create_default_context(cafile=str(w.directory / "ca.pem"))
    with (
        socket.create_connection((address, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        certificate = tls.getpeercert()
    return sorted(value for kind, value in certificate["subjectAltName"] if kind == "DNS")


# ---- manifests ---------------------------------------------------------------------------------


def deployment(name: str, account: str, *args: str) -> dict[str, Any]:
    container = {"name": "main", "image": "public.ecr.aws/example/app:1", "args": list(args)}
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"serviceAccountName": account, "containers": [container]},
            },
        },
    }
