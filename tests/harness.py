"""Drive the real CLI against a sandbox world, and look at the world through its APIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from orchestrator.sandbox import cloudtrail, world

REGION = "us-west-2"
SUBDOMAIN = "platform.example.com"
ORCHESTRATOR_AGENT = "orchestrator/"


def cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS` as a user would, and capture what it says."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class World:
    """A running sandbox world in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        exports, unsets = world.read_env(directory)
        env = {k: v for k, v in os.environ.items() if k not in unsets}
        env.update(exports)
        env.setdefault("ORCHESTRATOR_POLL_MAX_INTERVAL", "0.5")
        self.env = env
        self.info = json.loads((directory / "world.json").read_text())
        self.config = directory / "config.yaml"
        self._clients: dict[tuple[str, str], Any] = {}
        self.kube_clients: dict[str | None, Any] = {}

    @classmethod
    def up(cls, directory: Path, acm_delay: float = 1.0, alb_delay: float = 1.0) -> World:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "sandbox",
                "up",
                "--dir",
                str(directory),
                "--acm-delay",
                str(acm_delay),
                "--alb-delay",
                str(alb_delay),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return cls(directory)

    def down(self) -> None:
        world.down(self.directory)

    def __enter__(self) -> World:
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()

    def cli(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=env or self.env, cwd=cwd, **kwargs)

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return start(*args, env=self.env, cwd=cwd)

    def client(self, service: str, region: str = REGION) -> Any:
        """A boto3 client for the world, made once (making one loads the service's model)."""
        key = (service, region)
        if key not in self._clients:
            self._clients[key] = boto3.client(
                service,
                region_name=region,
                endpoint_url=self.info["endpoints"]["aws"],
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
                config=Config(user_agent_extra="test-harness"),
            )
        return self._clients[key]

    # ---- what the orchestrator did, per the world's CloudTrail ----------------------------------

    def calls(self) -> list[dict[str, Any]]:
        return [
            c
            for c in cloudtrail.read(self.directory / "cloudtrail.jsonl")
            if ORCHESTRATOR_AGENT in c["agent"]
        ]

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["write"]]

    def kube_calls(self) -> list[dict[str, Any]]:
        """Requests the orchestrator made to the world's Kubernetes API servers."""
        path = self.directory / "kube-audit.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in entries if ORCHESTRATOR_AGENT in e.get("user_agent", "")]

    # ---- what exists ----------------------------------------------------------------------------

    @property
    def root_zone_id(self) -> str:
        return self.info["seeded"]["root_zone_id"]

    def zones(self, name: str = SUBDOMAIN) -> list[dict[str, Any]]:
        zones = self.client("route53").list_hosted_zones()["HostedZones"]
        return [z for z in zones if z["Name"].rstrip(".") == name]

    def records(self, zone_id: str) -> list[dict[str, Any]]:
        paginator = self.client("route53").get_paginator("list_resource_record_sets")
        return [
            r
            for page in paginator.paginate(HostedZoneId=zone_id)
            for r in page["ResourceRecordSets"]
        ]

    def record(self, zone_id: str, name: str, rtype: str) -> dict[str, Any] | None:
        for rrset in self.records(zone_id):
            if rrset["Name"].rstrip(".").replace("\\052", "*") == name and rrset["Type"] == rtype:
                return rrset
        return None

    def certificates(self, domain: str = f"*.{SUBDOMAIN}") -> list[dict[str, Any]]:
        acm = self.client("acm")
        summaries = acm.list_certificates(
            CertificateStatuses=[
                "PENDING_VALIDATION",
                "ISSUED",
                "INACTIVE",
                "EXPIRED",
                "VALIDATION_TIMED_OUT",
                "REVOKED",
                "FAILED",
            ]
        )["CertificateSummaryList"]
        return [
            acm.describe_certificate(CertificateArn=s["CertificateArn"])["Certificate"]
            for s in summaries
            if s["DomainName"] == domain
        ]


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def phase_status(path: Path, phase: str) -> str | None:
    try:
        state = read_state(path)
    except (OSError, ValueError):
        return None
    return next((p["status"] for p in state["phases"] if p["name"] == phase), None)


# ---- Kubernetes, through the official client ------------------------------------------------


CONTEXTS = ("sandbox", "staging")  # the world's two clusters


def kube_client(world_: World, context: str | None = None) -> Any:
    """The official client's dynamic client for one of the world's clusters, made once."""
    from kubernetes import config, dynamic

    if context not in world_.kube_clients:
        api = config.new_client_from_config(
            config_file=str(world_.directory / "kubeconfig"), context=context
        )
        world_.kube_clients[context] = dynamic.DynamicClient(api)
    return world_.kube_clients[context]


def kube_get(
    client: Any, api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    try:
        resource = client.resources.get(api_version=api_version, kind=kind)
        return resource.get(name=name, namespace=namespace).to_dict()
    except (NotFoundError, ResourceNotFoundError):
        return None


KINDS_WE_MAKE = [
    ("v1", "ServiceAccount"),
    ("v1", "Service"),
    ("v1", "Secret"),
    ("apps/v1", "Deployment"),
    ("networking.k8s.io/v1", "Ingress"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("rbac.authorization.k8s.io/v1", "ClusterRole"),
    ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding"),
    ("rbac.authorization.k8s.io/v1", "Role"),
    ("rbac.authorization.k8s.io/v1", "RoleBinding"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
]


def footprint(world_: World, deployment: str) -> list[str]:
    """Everything in AWS and Kubernetes that carries this deployment's id."""
    found: list[str] = []
    owner = ("orchestrator:deployment", deployment)

    def tagged(tags: list[dict[str, str]]) -> bool:
        return any((t.get("Key"), t.get("Value")) == owner for t in tags)

    route53 = world_.client("route53")
    for zone in route53.list_hosted_zones()["HostedZones"]:
        zone_id = zone["Id"].split("/")[-1]
        tags = route53.list_tags_for_resource(ResourceType="hostedzone", ResourceId=zone_id)
        if tagged(tags["ResourceTagSet"].get("Tags", [])):
            found.append(f"hosted zone {zone['Name']}")
    acm = world_.client("acm")
    for cert in acm.list_certificates()["CertificateSummaryList"]:
        if tagged(
            acm.list_tags_for_certificate(CertificateArn=cert["CertificateArn"]).get("Tags", [])
        ):
            found.append(f"certificate {cert['DomainName']}")
    iam = world_.client("iam", "us-east-1")
    for role in iam.list_roles()["Roles"]:
        if tagged(iam.list_role_tags(RoleName=role["RoleName"])["Tags"]):
            found.append(f"role {role['RoleName']}")
    for policy in iam.list_policies(Scope="Local")["Policies"]:
        if tagged(iam.list_policy_tags(PolicyArn=policy["Arn"])["Tags"]):
            found.append(f"policy {policy['PolicyName']}")
    for provider in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]:
        tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=provider["Arn"])
        if tagged(tags["Tags"]):
            found.append(f"OIDC provider {provider['Arn']}")
    elbv2 = world_.client("elbv2")
    arns = [lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]]
    arns += [tg["TargetGroupArn"] for tg in elbv2.describe_target_groups()["TargetGroups"]]
    for arn in arns:
        for description in elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]:
            if tagged(description.get("Tags", [])):
                found.append(f"elbv2 {arn}")
    ec2 = world_.client("ec2")
    for group in ec2.describe_security_groups()["SecurityGroups"]:
        if tagged(group.get("Tags", [])):
            found.append(f"security group {group['GroupId']}")
    for context in CONTEXTS:
        client = kube_client(world_, context)
        for api_version, kind in KINDS_WE_MAKE:
            resource = client.resources.get(api_version=api_version, kind=kind)
            selector = f"orchestrator.dev/deployment={deployment}"
            for item in resource.get(label_selector=selector).items:
                found.append(f"{kind} {item.metadata.name}")
    return found
