"""End to end, the whole job: controller, Ingress, ALB, DNS record and HTTPS endpoint,
driven through the real CLI and checked through boto3, the Kubernetes client and kubectl."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
from footprint import kept_ids
from harness import (
    SUBDOMAIN,
    World,
    binding_crd,
    footprint,
    kube_client,
    kube_get,
    left_behind,
    needs_kubectl,
    phase_status,
    read_state,
    wait_for,
)

from orchestrator.errors import ExitCode
from orchestrator.states import phase_names
from orchestrator_sandbox import events

CONTROLLER = "aws-load-balancer-controller"
CONTROLLER_SA = f"system:serviceaccount:kube-system:{CONTROLLER}"
HOST = f"kubeflow.{SUBDOMAIN}"


def statuses(workdir: Path) -> dict[str, str]:
    return {p["name"]: p["status"] for p in read_state(workdir / "state.json")["phases"]}


def outputs(workdir: Path, phase: str) -> dict[str, Any]:
    return next(p for p in read_state(workdir / "state.json")["phases"] if p["name"] == phase)[
        "outputs"
    ]


def kubectl(world: World, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(world.directory / "kubeconfig"), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def neighbour_failures(world: World) -> list[str]:
    """What the neighbour cluster's controller, in the production VPC, failed to resolve."""
    found = events.read(world.directory)
    return [e["error"] for e in found if e["kind"] == "subnets.unresolved"]


def load_balancers(world: World) -> list[dict[str, Any]]:
    return world.client("elbv2").describe_load_balancers()["LoadBalancers"]


def controller_made(world: World, cluster: str = "kube-eks-cluster") -> list[str]:
    """Security groups, target groups and load balancers carrying the controller's tag for
    the cluster: what the controller made and had not deleted."""
    tag = "elbv2.k8s.aws/cluster"
    groups = world.client("ec2").describe_security_groups(
        Filters=[{"Name": f"tag:{tag}", "Values": [cluster]}]
    )["SecurityGroups"]
    found = [f"security group {g['GroupId']}" for g in groups]
    elbv2 = world.client("elbv2")
    arns = [lb["LoadBalancerArn"] for lb in load_balancers(world)]
    arns += [g["TargetGroupArn"] for g in elbv2.describe_target_groups()["TargetGroups"]]
    for arn in arns:
        (description,) = elbv2.describe_tags(ResourceArns=[arn])["TagDescriptions"]
        if {"Key": tag, "Value": cluster} in description.get("Tags", []):
            found.append(arn)
    return found


def subnet_tags(world: World) -> list[Any]:
    subnets = world.client("ec2").describe_subnets(SubnetIds=world.info["seeded"]["subnet_ids"])[
        "Subnets"
    ]
    return sorted((s["SubnetId"], sorted(map(str, s.get("Tags", [])))) for s in subnets)


def seeded_snapshot(world: World) -> str:
    """What existed before the deployment: it must be byte-for-byte the same after."""
    client = kube_client(world)
    gateway = kube_get(client, "v1", "Service", "istio-ingressgateway", "istio-system")
    namespaces = [
        kube_get(client, "v1", "Namespace", n)["metadata"]["resourceVersion"]
        for n in ("kube-system", "istio-system", "kubeflow")
    ]
    return json.dumps(
        {
            "root": world.records(world.root_zone_id),
            "subnet_tags": subnet_tags(world),
            "gateway": gateway["metadata"]["resourceVersion"],
            "namespaces": namespaces,
            "roles": sorted(
                r["RoleName"] for r in world.client("iam", "us-east-1").list_roles()["Roles"]
            ),
        },
        sort_keys=True,
        default=str,
    )


def assert_serving(world: World, workdir: Path) -> None:
    """Every phase done; the Ingress, ALB, listeners, record and trust policy as specified."""
    assert set(statuses(workdir).values()) == {"done"}
    shown = kubectl(world, "get", "ingress", "-n", "istio-system", "istio-ingress", "-o", "json")
    assert shown.returncode == 0, shown.stderr
    hostname = json.loads(shown.stdout)["status"]["loadBalancer"]["ingress"][0]["hostname"]

    (balancer,) = load_balancers(world)
    assert balancer["DNSName"] == hostname
    assert balancer["Scheme"] == "internet-facing"
    # In public subnets only (a route to an internet gateway), in at least two zones, and no
    # private subnet carries the role tag the controller would take as a candidate.
    seeded = world.info["seeded"]
    placed = {zone["SubnetId"] for zone in balancer["AvailabilityZones"]}
    assert len(placed) >= 2 and placed <= set(seeded["public_subnet_ids"])
    for subnet in world.client("ec2").describe_subnets(SubnetIds=seeded["private_subnet_ids"])[
        "Subnets"
    ]:
        assert "kubernetes.io/role/elb" not in {t["Key"] for t in subnet.get("Tags", [])}
    certificate = outputs(workdir, "certificates_issued")["certificate_arn"]
    acm = world.client("acm").describe_certificate(CertificateArn=certificate)["Certificate"]
    assert acm["Status"] == "ISSUED"
    elbv2 = world.client("elbv2")
    listeners = {
        listener["Port"]: listener
        for listener in elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])[
            "Listeners"
        ]
    }
    assert set(listeners) == {80, 443}
    assert listeners[443]["Protocol"] == "HTTPS"
    assert [c["CertificateArn"] for c in listeners[443]["Certificates"]] == [certificate]
    assert listeners[443]["SslPolicy"].startswith("ELBSecurityPolicy-TLS13-1-2")
    redirect = listeners[80]["DefaultActions"][0]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"

    zone_id = outputs(workdir, "hosted_zone")["zone_id"]
    alias = world.record(zone_id, HOST, "A")["AliasTarget"]
    assert alias["DNSName"].rstrip(".").lower() == hostname.lower()
    assert alias["HostedZoneId"] == balancer["CanonicalHostedZoneId"]

    role = world.client("iam", "us-east-1").get_role(
        RoleName=outputs(workdir, "controller_iam")["role_name"]
    )["Role"]
    (statement,) = role["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    conditions = statement["Condition"]["StringEquals"]
    assert [v for k, v in conditions.items() if k.endswith(":sub")] == [CONTROLLER_SA]
    assert [v for k, v in conditions.items() if k.endswith(":aud")] == ["sts.amazonaws.com"]

    controller = kubectl(world, "get", "deployment", "-n", "kube-system", CONTROLLER, "-o", "json")
    args = json.loads(controller.stdout)["spec"]["template"]["spec"]["containers"][0]["args"]
    assert f"--aws-vpc-id={world.info['seeded']['vpc_id']}" in args

    endpoint = outputs(workdir, "endpoint")
    assert endpoint["url"] == f"https://{HOST}/"
    assert endpoint["http_status"] in (200, 302)


@needs_kubectl
def test_full_run_rollback_to_certificates_resume_and_rollback_all(
    world: World, workdir: Path
) -> None:
    config = str(world.config)
    before, tags_before = seeded_snapshot(world), subnet_tags(world)
    done = world.cli("--config", config, "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert_serving(world, workdir)
    deployment = read_state(workdir / "state.json")["deployment"]

    back = world.cli("--config", config, "rollback", "--yes", "--to", "certificates", cwd=workdir)
    assert back.returncode == 0, back.stdout + back.stderr
    certificate = outputs(workdir, "certificates")["certificate_arn"]
    acm = world.client("acm").describe_certificate(CertificateArn=certificate)["Certificate"]
    assert acm["Status"] == "ISSUED"
    assert acm.get("InUseBy", []) == [], "the ALB that used it is gone"
    assert load_balancers(world) == []
    assert world.record(outputs(workdir, "hosted_zone")["zone_id"], HOST, "A") is None
    client = kube_client(world)
    assert (
        kube_get(client, "networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system") is None
    )
    assert (
        kube_get(client, "apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")
        is None
    )
    kept = kept_ids(read_state(workdir / "state.json"))
    left = [
        f
        for f in footprint(world, deployment, kept)
        if not f.startswith(("hosted zone", "certificate"))
    ]
    assert left == [], "IAM, controller objects, ALB and tags must be gone"
    assert controller_made(world) == [], "the controller's teardown finished before it went"
    assert subnet_tags(world) == tags_before, "subnet tags back to what they were"
    assert neighbour_failures(world) == [], "the neighbour cluster kept resolving its subnets"
    expected = ["done"] * 4 + ["rolled_back"] * 8
    assert [statuses(workdir)[n] for n in phase_names()] == expected
    issuer = world.info["seeded"]["oidc_issuer"].removeprefix("https://")
    shown = world.cli("status", cwd=workdir)
    kept = "kept iam:oidc-provider arn:aws:iam::123456789012:oidc-provider/" + issuer
    assert f"{kept}: IAM roles trust it for IRSA (data-team-s3-reader)" in shown.stdout

    resumed = world.cli("--config", config, "resume", cwd=workdir)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_serving(world, workdir)

    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert left_behind(world, workdir / "state.json") == []
    assert controller_made(world) == []
    assert load_balancers(world) == []
    assert world.zones() == [] and world.certificates() == []
    assert seeded_snapshot(world) == before
    # The OIDC provider this deployment made stays: the data team's IRSA role trusts it. The
    # first rollback kept and released it, so the resumed run used it as pre-existing, and
    # the last rollback leaves it as such.
    provider = f"oidc-provider/{world.info['seeded']['oidc_issuer'].removeprefix('https://')}"
    providers = world.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert [p["Arn"].split(":")[-1] for p in providers] == [provider]
    said = "IAM roles trust it for IRSA (data-team-s3-reader); deleting it would break them"
    assert said in back.stdout and said not in gone.stdout
    assert "released: this state file's marks are off it" in back.stdout
    assert subnet_tags(world) == tags_before
    assert neighbour_failures(world) == []


@pytest.mark.complete
def test_a_detached_policy_keeps_the_alb_away_and_status_says_why(
    tmp_path: Path, workdir: Path
) -> None:
    # The controller deploys a new ALB once its preconditions have held for reconcile_delay:
    # ample time to take the policy away after the wait starts; the event shows next pass.
    w = World.up(tmp_path / "slow-alb", acm_delay=0.5, reconcile_delay=15.0)
    waiting: subprocess.Popen[str] | None = None
    try:
        config = str(w.config)
        assert (
            w.cli(
                "--config", config, "run", "--until", "certificates_issued", cwd=workdir
            ).returncode
            == 0
        )
        waiting = w.start("--config", config, "resume", cwd=workdir)
        wait_for(
            lambda: phase_status(workdir / "state.json", "load_balancer") == "waiting",
            what="the ALB wait",
        )
        iam = w.client("iam", "us-east-1")
        role = outputs(workdir, "controller_iam")["role_name"]
        iam.detach_role_policy(
            RoleName=role, PolicyArn=outputs(workdir, "controller_iam")["policy_arn"]
        )

        def shows_event() -> str | None:
            done = w.cli("status", "--json", cwd=workdir)
            phase = json.loads(done.stdout)["phases"][phase_names().index("load_balancer")]
            text = phase["waiting_for"] or ""
            return text if "elasticloadbalancing:CreateLoadBalancer" in text else None

        text = wait_for(shows_event, timeout=30, what="status to show the controller's event")
        assert "FailedDeployModel" in text and "AccessDenied" in text
        waiting.terminate()  # as a CI time-out would: state saved, resumable
        assert waiting.wait(timeout=60) == ExitCode.INTERRUPTED
        assert load_balancers(w) == []
        assert statuses(workdir)["load_balancer"] == "waiting"

        finished = w.cli("--config", config, "resume", cwd=workdir)  # re-attaches the policy
        assert finished.returncode == 0, finished.stdout + finished.stderr
        assert "controller_iam: was done, but policy" in finished.stdout
        assert len(load_balancers(w)) == 1
    finally:
        if waiting is not None and waiting.poll() is None:
            waiting.send_signal(signal.SIGKILL)
        w.down()


def install_team_controller(world: World) -> str:
    """Another team's AWS Load Balancer Controller, as they would have installed it (its
    CRD, its own IRSA role and OIDC provider), available; the provider's ARN."""
    iam = world.client("iam", "us-east-1")
    issuer = world.info["seeded"]["oidc_issuer"]
    provider = iam.create_open_id_connect_provider(
        Url=issuer,
        ClientIDList=["sts.amazonaws.com"],
        ThumbprintList=["9e99a48a9960b14926bb7f3b02e22da2b0ab7280"],
    )["OpenIDConnectProviderArn"]
    host = issuer.removeprefix("https://")
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": "system:serviceaccount:kube-system:lbc",
                        f"{host}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }
    role = iam.create_role(RoleName="team-lbc", AssumeRolePolicyDocument=json.dumps(trust))
    policy = iam.create_policy(
        PolicyName="team-lbc",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Resource": "*", "Action": "elasticloadbalancing:*"}
                ],
            }
        ),
    )
    iam.attach_role_policy(RoleName="team-lbc", PolicyArn=policy["Policy"]["Arn"])
    client = kube_client(world)
    definitions = client.resources.get(
        api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition"
    )
    definitions.create(body=binding_crd())  # installed with their controller
    accounts = client.resources.get(api_version="v1", kind="ServiceAccount")
    accounts.create(
        namespace="kube-system",
        body={
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": "lbc",
                "namespace": "kube-system",
                "annotations": {"eks.amazonaws.com/role-arn": role["Role"]["Arn"]},
            },
        },
    )
    deployments = client.resources.get(api_version="apps/v1", kind="Deployment")
    deployments.create(
        namespace="kube-system",
        body={
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "lbc"}},
                "template": {
                    "metadata": {"labels": {"app": "lbc"}},
                    "spec": {
                        "serviceAccountName": "lbc",
                        "containers": [
                            {
                                "name": "controller",
                                # The oldest release preflight lets us adopt.
                                "image": "lbc:v2.13.0",
                                "args": ["--cluster-name=kube-eks-cluster"],
                            }
                        ],
                    },
                },
            },
        },
    )
    wait_for(
        lambda: (
            (
                kube_get(
                    client, "apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system"
                )
                or {}
            )
            .get("status", {})
            .get("availableReplicas")
        ),
        what="the team's controller to be available",
    )
    return str(provider)


@pytest.mark.complete
def test_a_preexisting_controller_and_oidc_provider_are_used_never_touched(
    world: World, workdir: Path
) -> None:
    provider = install_team_controller(world)
    iam, client = world.client("iam", "us-east-1"), kube_client(world)
    theirs = kube_get(
        client, "apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system"
    )
    provider_before = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider)
    provider_before.pop("ResponseMetadata")

    config = str(world.config)
    done = world.cli("--config", config, "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs(workdir, "controller")["mode"] == "adopted"
    assert outputs(workdir, "controller_iam")["oidc_provider_arn"] == provider

    gone = world.cli("--config", config, "rollback", "--all", "--yes", cwd=workdir)
    assert gone.returncode == 0, gone.stdout + gone.stderr
    after = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider)
    after.pop("ResponseMetadata")
    assert after == provider_before
    still = kube_get(client, "apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")
    assert still["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert kube_get(client, "v1", "ServiceAccount", "lbc", "kube-system") is not None
    assert load_balancers(world) == []


@pytest.mark.complete
def test_an_unusable_kubeconfig_stops_the_run_saying_what_to_fix(
    world: World, workdir: Path
) -> None:
    config = str(world.config)
    missing = dict(world.env, KUBECONFIG=str(workdir / "no-such-kubeconfig"))
    refused = world.cli("--config", config, "run", cwd=workdir, env=missing)
    assert refused.returncode == ExitCode.USAGE, refused.stderr
    assert len(refused.stderr.strip().splitlines()) == 1
    assert "no-such-kubeconfig" in refused.stderr
    assert not (workdir / "state.json").exists() and world.calls() == []

    # A kubeconfig naming an API server that does not answer: preflight says so.
    unreachable = workdir / "unreachable-kubeconfig"
    unreachable.write_text(
        (world.directory / "kubeconfig")
        .read_text()
        .replace(world.info["endpoints"]["kubernetes"], "https://127.0.0.1:9")
    )
    broken = dict(world.env, KUBECONFIG=str(unreachable))
    failed = world.cli("--config", config, "run", cwd=workdir, env=broken)
    assert failed.returncode == ExitCode.PHASE_FAILED, failed.stderr
    assert "phase preflight failed: Kubernetes" in failed.stderr
    assert "check KUBECONFIG" in failed.stderr
    assert phase_status(workdir / "state.json", "preflight") == "failed"
    assert world.writes() == [], "preflight is read-only"

    resumed = world.cli("--config", config, "resume", "--until", "preflight", cwd=workdir)
    assert resumed.returncode == 0, resumed.stderr
