"""Security properties, checked on a real run: private state, no secrets written anywhere,
an exact IRSA trust policy, an HTTPS-only ALB with a TLS 1.2+ policy, and Kubernetes
objects that are all labelled and no more cluster-wide than the controller needs."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from harness import World, kube_client, kube_get, read_state

from orchestrator.states.controller import parse_object_id
from orchestrator.store import Resource

SECRET_KEY = "OrchestratorTestSecretKey/do-not-leak-7f3a9c"
SESSION_TOKEN = "OrchestratorTestSessionToken-do-not-leak-2b8e1d"
TLS_12_PLUS = {
    "ELBSecurityPolicy-TLS13-1-2-2021-06",
    "ELBSecurityPolicy-TLS13-1-2-Res-2021-06",
    "ELBSecurityPolicy-TLS13-1-3-2021-06",
    "ELBSecurityPolicy-TLS-1-2-2017-01",
    "ELBSecurityPolicy-TLS-1-2-Ext-2018-06",
    "ELBSecurityPolicy-FS-1-2-Res-2020-10",
}
CLUSTER_WIDE_ALLOWED = {
    "CustomResourceDefinition",
    "ClusterRole",
    "ClusterRoleBinding",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "IngressClass",
    "IngressClassParams",
}


@pytest.mark.complete
def test_a_run_is_secure(world: World, workdir: Path) -> None:
    env = dict(world.env, AWS_SECRET_ACCESS_KEY=SECRET_KEY, AWS_SESSION_TOKEN=SESSION_TOKEN)
    config = str(world.config)
    outputs = [
        world.cli("--config", config, *args, cwd=workdir, env=env)
        for args in (["run"], ["status"], ["status", "--json"], ["run"])
    ]
    assert all(done.returncode == 0 for done in outputs), outputs[0].stderr

    # The state file: private, in a directory others cannot write, free of secrets.
    state_path = workdir / "state.json"
    assert stat.S_IMODE(state_path.stat().st_mode) == 0o600
    assert not workdir.stat().st_mode & stat.S_IWOTH
    # The cluster's bearer tokens (EKS-style, from the kubeconfig's exec plugin) and the
    # world's key for them.
    token_prefix = "k8s-aws-v1."
    token_key = json.loads((world.directory / "kube-tokens.json").read_text())["secret"]
    written = state_path.read_text() + "".join(o.stdout + o.stderr for o in outputs)
    for secret in (SECRET_KEY, SESSION_TOKEN, token_prefix, token_key, "PRIVATE KEY", "BEGIN CERT"):
        assert secret not in written, f"{secret!r} leaked into the state file or the output"

    saved = read_state(state_path)
    state = {p["name"]: p for p in saved["phases"]}
    check_trust_policy(world, state)
    check_listeners(world, state)
    check_kubernetes_objects(world, state, saved["deployment"])


def check_trust_policy(world: World, state: dict) -> None:
    outputs = state["controller_iam"]["outputs"]
    role = world.client("iam", "us-east-1").get_role(RoleName=outputs["role_name"])["Role"]
    issuer = world.info["seeded"]["oidc_issuer"].removeprefix("https://")
    subject = "system:serviceaccount:kube-system:aws-load-balancer-controller"
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Effect": "Allow",
            "Principal": {"Federated": outputs["oidc_provider_arn"]},
            "Action": "sts:AssumeRoleWithWebIdentity",
            "Condition": {
                "StringEquals": {
                    f"{issuer}:sub": subject,
                    f"{issuer}:aud": "sts.amazonaws.com",
                }
            },
        }
    ]


def check_listeners(world: World, state: dict) -> None:
    elbv2 = world.client("elbv2")
    arn = state["load_balancer"]["outputs"]["load_balancer_arn"]
    listeners = elbv2.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    by_port = {listener["Port"]: listener for listener in listeners}
    assert set(by_port) == {80, 443}
    https, http = by_port[443], by_port[80]
    assert https["Protocol"] == "HTTPS" and https["SslPolicy"] in TLS_12_PLUS
    assert http["Protocol"] == "HTTP"
    assert [a["Type"] for a in http["DefaultActions"]] == ["redirect"], "HTTP only redirects"
    redirect = http["DefaultActions"][0]["RedirectConfig"]
    assert (redirect["Protocol"], redirect["Port"]) == ("HTTPS", "443")
    attributes = {
        a["Key"]: a["Value"]
        for a in elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    }
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"


def check_kubernetes_objects(world: World, state: dict, deployment: str) -> None:
    client = kube_client(world)
    created = [
        Resource(**r)
        for phase in ("controller", "ingress")
        for r in state[phase]["resources"]
        if r["created"]
    ]
    assert created
    cluster_wide = set()
    for resource in created:
        api_version, kind, namespace, name = parse_object_id(resource.id)
        obj = kube_get(client, api_version, kind, name, namespace)
        assert obj is not None, resource.id
        labels = obj["metadata"].get("labels") or {}
        assert labels.get("orchestrator.dev/deployment") == deployment, resource.id
        assert labels.get("app.kubernetes.io/managed-by") == "orchestrator", resource.id
        if namespace is None:
            cluster_wide.add(kind)
        if kind == "ClusterRole":
            for rule in obj["rules"]:
                assert "*" not in rule.get("verbs", []) and "*" not in rule.get("resources", [])
                assert "secrets" not in rule.get("resources", []), "no cluster-wide secrets"
    assert cluster_wide <= CLUSTER_WIDE_ALLOWED, cluster_wide - CLUSTER_WIDE_ALLOWED


def test_status_is_fast_and_needs_no_aws_or_kubernetes(world: World, workdir: Path) -> None:
    assert (
        world.cli(
            "--config", str(world.config), "run", "--until", "preflight", cwd=workdir
        ).returncode
        == 0
    )
    calls = len(world.calls())
    probe = (
        "import sys, runpy; sys.argv = ['orchestrator', 'status']; "
        "runpy.run_module('orchestrator', run_name='__main__')"
    )
    env = dict(world.env)
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", probe],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "preflight" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines()}
    assert not {"boto3", "botocore", "kubernetes", "tenacity"} & imported, "status stays light"
    assert len(world.calls()) == calls
    assert (
        json.loads(world.cli("status", "--json", cwd=workdir).stdout)["phases"][0]["status"]
        == "done"
    )
