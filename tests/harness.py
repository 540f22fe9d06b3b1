"""Drive the real CLI against a sandbox world, and look at the world through its APIs."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config
from footprint import footprint as shared_footprint
from footprint import kept_ids

from orchestrator_sandbox import cloudtrail, options, world

REGION = "us-west-2"
SUBDOMAIN = "platform.example.com"
ORCHESTRATOR_AGENT = "orchestrator/"

# kubectl is part of what the tests prove works; CI installs it (.ci/run), so there a missing
# kubectl fails the tests instead of skipping them.
needs_kubectl = pytest.mark.skipif(
    shutil.which("kubectl") is None and os.environ.get("CI") != "true",
    reason="kubectl is not installed",
)


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


# The tests read the world as any other tool in the account would: within Route 53's
# 5 requests a second (which the world plays), slowing down when throttled (botocore's
# adaptive mode) and retrying long enough that a burst of reads between two commands
# never fails a test.
HARNESS_CONFIG = Config(
    user_agent_extra="test-harness", retries={"mode": "adaptive", "max_attempts": 20}
)


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
    def up(
        cls,
        directory: Path,
        acm_delay: float = 1.0,
        alb_delay: float = 1.0,
        second_team: bool = False,
        leftovers: bool = False,
        **settings: float,
    ) -> World:
        """Start a world with short delays; `settings`: other options.SETTINGS by name.

        Tokens live 380 s, so the official client refreshes them 20 s after each, as it does
        an EKS token 9 minutes in: long runs exercise that."""
        values = {
            "acm_delay": acm_delay,
            "alb_delay": alb_delay,
            "dns_delay": 0.3,
            "target_delay": 0.5,
            "drain_delay": 0.5,
            "crd_delay": 0.3,
            "token_ttl": 380.0,
            **settings,
        }
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "sandbox",
                "up",
                "--dir",
                str(directory),
                *options.as_arguments(values, second_team, leftovers=leftovers),
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
                config=HARNESS_CONFIG,
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

    def kube_writes(self) -> list[dict[str, Any]]:
        return [e for e in self.kube_calls() if e["write"]]

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


def footprint(world_: World, deployment: str, kept: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Everything in AWS and Kubernetes that carries this deployment's id, but what a
    rollback left in place on purpose (`kept`: ids from the state file, see kept_ids)."""

    def client(service: str, region: str = REGION) -> Any:
        return world_.client(service, region)

    kubes = [kube_client(world_, context) for context in CONTEXTS]
    return shared_footprint(client, kubes, deployment, kept=kept)


def left_behind(world_: World, state_path: Path) -> list[str]:
    """What a rolled-back deployment left, but what its state says it kept on purpose."""
    state = read_state(state_path)
    return footprint(world_, state["deployment"], kept_ids(state))


def binding_crd() -> dict[str, Any]:
    """The TargetGroupBinding CRD the controller's manifests ship (its gist): a controller
    installed by hand (helm, kubectl) comes with it."""
    version = {
        "name": "v1beta1",
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    names = {"kind": "TargetGroupBinding", "plural": "targetgroupbindings"}
    spec = {"group": "elbv2.k8s.aws", "scope": "Namespaced", "names": names, "versions": [version]}
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "targetgroupbindings.elbv2.k8s.aws"},
        "spec": spec,
    }
