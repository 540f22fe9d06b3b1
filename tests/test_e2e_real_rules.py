"""End to end, the rules of a real account that the sandbox now enforces, through the CLI:
subnet discovery, the kubeconfig's cluster, the controller shared with another team, an
internal ALB, targets that are not healthy yet, CRDs that take time to be Established, and
EKS tokens that expire during long runs."""

from __future__ import annotations

import json
import ssl
from pathlib import Path
from typing import Any

import pytest
from harness import World, kube_client, kube_get, read_state

from orchestrator.errors import ExitCode
from orchestrator.states.endpoint import tunnel

pytestmark = pytest.mark.complete  # slow: CI runs it (`pytest --complete`)

HOST = "kubeflow.platform.example.com"
CONTROLLER = ("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")


def outputs(workdir: Path, phase: str, state: str = "state.json") -> dict[str, Any]:
    return next(p for p in read_state(workdir / state)["phases"] if p["name"] == phase)["outputs"]


def balancer_subnets(world: World) -> set[str]:
    (balancer,) = world.client("elbv2").describe_load_balancers()["LoadBalancers"]
    return {zone["SubnetId"] for zone in balancer["AvailabilityZones"]}


def role_tagged(world: World, key: str) -> set[str]:
    subnets = world.client("ec2").describe_subnets(
        Filters=[{"Name": f"tag:{key}", "Values": ["", "1"]}]
    )["Subnets"]
    return {s["SubnetId"] for s in subnets}


def test_a_cluster_listing_only_private_subnets_gets_its_alb_in_public_ones(
    world: World, workdir: Path
) -> None:
    """EKS lists only the staging cluster's private subnets; the ALB must still go into the
    VPC's public subnets, found by their route tables."""
    staging = world.info["seeded"]["staging"]
    assert set(staging["subnet_ids"]) == set(staging["private_subnet_ids"])
    config = str(world.directory / "config-staging.yaml")
    done = world.cli("--config", config, "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    placed = balancer_subnets(world)
    assert len(placed) >= 2 and placed <= set(staging["public_subnet_ids"])
    # No role tag in the VPC: the controller finds them by route tables, and none is added.
    assert role_tagged(world, "kubernetes.io/role/elb") == set()
    assert outputs(workdir, "endpoint")["http_status"] == 302


def test_a_kube_context_of_another_cluster_stops_preflight_before_any_write(
    world: World, workdir: Path
) -> None:
    wrong = workdir / "wrong-context.yaml"
    wrong.write_text(world.config.read_text() + "kubernetes:\n  context: staging\n")
    failed = world.cli("--config", str(wrong), "run", cwd=workdir)
    assert failed.returncode == ExitCode.PHASE_FAILED, failed.stdout + failed.stderr
    production = world.info["endpoints"]["kubernetes"]
    staging = world.info["endpoints"]["kubernetes_staging"]
    assert "phase preflight failed: staging does not point at EKS cluster 'kube-eks-cluster'" in (
        failed.stderr
    )
    assert staging in failed.stderr and production in failed.stderr
    assert "aws eks update-kubeconfig --name kube-eks-cluster" in failed.stderr
    assert world.writes() == []
    assert [c for c in world.kube_calls() if c["write"]] == []


def test_the_controller_stays_while_another_team_uses_it(tmp_path: Path, workdir: Path) -> None:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, second_team=True) as world:
        done = world.cli("--config", str(world.config), "run", cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        elbv2 = world.client("elbv2")
        assert len(elbv2.describe_load_balancers()["LoadBalancers"]) == 2, "theirs and ours"
        ours = outputs(workdir, "load_balancer")["load_balancer_arn"]
        role = outputs(workdir, "controller_iam")["role_name"]

        gone = world.cli("--config", str(world.config), "rollback", "--all", "--yes", cwd=workdir)
        assert gone.returncode == 0, gone.stdout + gone.stderr
        reason = "the AWS Load Balancer Controller is still used by Ingress team-data/dashboard"
        assert reason in gone.stdout
        client = kube_client(world)
        assert kube_get(client, *CONTROLLER) is not None
        crd = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
        assert kube_get(client, *crd, "targetgroupbindings.elbv2.k8s.aws") is not None
        assert world.client("iam").get_role(RoleName=role)["Role"]["RoleName"] == role
        balancers = [
            lb["LoadBalancerArn"] for lb in elbv2.describe_load_balancers()["LoadBalancers"]
        ]
        assert ours not in balancers and len(balancers) == 1, "theirs stays, ours is gone"
        assert (
            kube_get(client, "networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system")
            is None
        )

        shown = world.cli("status", cwd=workdir).stdout
        assert "kubernetes:object apps/v1/Deployment/kube-system/aws-load-balancer-controller" in (
            shown
        )
        assert reason in shown
        assert f"iam:role {role}" in shown and "still used by others" in shown
        state = read_state(workdir / "state.json")
        assert {p["status"] for p in state["phases"]} == {"rolled_back"}


def test_an_internal_alb_is_checked_without_the_https_request(world: World, workdir: Path) -> None:
    internal = workdir / "internal.yaml"
    internal.write_text(
        world.config.read_text().replace("scheme: internet-facing", "scheme: internal")
    )
    done = world.cli("--config", str(internal), "run", cwd=workdir)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "the HTTPS request was skipped: the ALB is internal" in done.stdout
    assert outputs(workdir, "endpoint")["http_status"] is None
    seeded = world.info["seeded"]
    assert balancer_subnets(world) <= set(seeded["private_subnet_ids"])
    assert role_tagged(world, "kubernetes.io/role/internal-elb") == set()
    assert role_tagged(world, "kubernetes.io/role/elb") == set()


def test_the_endpoint_is_not_done_while_the_alb_answers_503(tmp_path: Path, workdir: Path) -> None:
    """New targets stay `initial` (here: for the whole test); the ALB answers its own 503
    meanwhile, which must not count as a working endpoint."""
    with World.up(tmp_path / "world", target_delay=3600) as world:
        config = str(world.config)
        assert (
            world.cli("--config", config, "run", "--until", "dns_record", cwd=workdir).returncode
            == 0
        )
        checked = world.cli("--config", config, "resume", "--no-wait", cwd=workdir)
        assert checked.returncode == ExitCode.WAITING, checked.stdout + checked.stderr
        report = json.loads(world.cli("status", "--json", cwd=workdir).stdout)
        endpoint = report["phases"][-1]
        assert endpoint["status"] == "waiting"
        assert (
            "has no healthy target: 2 initial (Elb.RegistrationInProgress)"
            in endpoint["waiting_for"]
        )
        assert alb_answer(world).startswith("HTTP/1.1 503 Service Temporarily Unavailable")


def alb_answer(world: World) -> str:
    """What the ALB answers to GET https://kubeflow.<subdomain>/ (through the world's proxy)."""
    context = ssl.create_default_context(cafile=str(world.directory / "ca.pem"))
    with (
        tunnel(world.env["HTTPS_PROXY"], HOST, 443) as raw,
        context.wrap_socket(raw, server_hostname=HOST) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        return tls.makefile("rb").read().decode()


def test_custom_resources_wait_for_their_crds_and_tokens_are_refreshed(
    tmp_path: Path, workdir: Path
) -> None:
    """CRDs take seconds to be Established (their kinds are not served before); tokens last
    362 s, which the official client refreshes 2 s in (EKS's: 9 minutes in)."""
    with World.up(tmp_path / "world", crd_delay=2.0, token_ttl=362) as world:
        done = world.cli("--config", str(world.config), "run", cwd=workdir)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "to be Established" in done.stdout
        calls = world.kube_calls()
        assert calls and all(c["status"] != 401 for c in calls)
        assert {c["user"] for c in calls} == {"kubernetes-admin"}
        issued = [
            json.loads(line)
            for line in (world.directory / "kube-tokens-issued.jsonl").read_text().splitlines()
        ]
        assert sum(i["cluster"] == "kube-eks-cluster" for i in issued) >= 2, "refreshed"
