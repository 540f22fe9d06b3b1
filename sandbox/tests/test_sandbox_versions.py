"""The simulated controller plays the release its Deployment runs, as the real ones behave:
an older release lacks what a newer one has (an annotation it does not know is ignored
without a word, and the ALB lacks that setting; before v2.13.0 only role-tagged subnets
are found); each start says its release in the world's event log; and `sandbox up
--adopted-controller` seeds a controller someone else installed with Helm."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_support import World, wait_for
from test_sandbox_alb import (  # the in-process rig of the controller's own tests
    CONTROLLER,
    ROLE_ELB,
    Rig,
    aws,  # noqa: F401 - a fixture
    clock,  # noqa: F401 - a fixture
    controller_deployment,
    deployed,
    ingress,
    issued_certificate,
    make_rig,
)

from orchestrator_sandbox import cli, events
from orchestrator_sandbox.albmodel import read_model, release_of
from orchestrator_sandbox.kubeseed import chart_version

IMAGE = "public.ecr.aws/eks/aws-load-balancer-controller"
PRODUCTION = "sandbox"  # the production cluster's kubeconfig context


def runs(rig: Rig, release: str) -> None:
    """Replace the rig's controller with one of `release` (a new process)."""
    deployment = controller_deployment()
    deployment["spec"]["template"]["spec"]["containers"][0]["image"] = f"{IMAGE}:{release}"
    rig.store.delete("apps/v1", "Deployment", CONTROLLER, "kube-system")
    rig.store.create(deployment)


def http_action(rig: Rig) -> str:
    """What the ALB's HTTP:80 listener does first: forward, or redirect (to HTTPS)."""
    balancer = rig.balancers()[0]["LoadBalancerArn"]
    listeners = rig.elbv2.describe_listeners(LoadBalancerArn=balancer)["Listeners"]
    (http,) = [listener for listener in listeners if listener["Port"] == 80]
    return str(http["DefaultActions"][0]["Type"])


@pytest.fixture
def log(tmp_path: Path) -> Iterator[Path]:
    events.record_to(tmp_path / events.NAME)
    yield tmp_path
    events.record_to(None)


def test_the_release_is_the_image_tag_else_helms_label() -> None:
    deployment = controller_deployment()
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert release_of(deployment) is None  # an untagged image: the simulator plays the newest
    container["image"] = f"{IMAGE}:v2.4.0"
    assert release_of(deployment) == (2, 4, 0)
    container["image"] = f"{IMAGE}@sha256:{'a' * 64}"
    deployment["metadata"]["labels"] = {"app.kubernetes.io/version": "v2.7.1"}
    assert release_of(deployment) == (2, 7, 1)


def test_a_release_before_ssl_redirect_ignores_it() -> None:
    annotated = ingress(certificate="arn:aws:acm:us-west-2:123456789012:certificate/x")
    assert read_model(annotated, (2, 1, 3)).ssl_redirect is None
    assert read_model(annotated, (2, 2, 0)).ssl_redirect == 443
    assert read_model(annotated).ssl_redirect == 443  # unknown release: the newest


def test_an_old_controller_leaves_http_forwarding_and_its_upgrade_redirects(
    aws: dict[str, Any],  # noqa: F811
    clock: Any,  # noqa: F811
    log: Path,
) -> None:
    rig = make_rig(aws, clock)
    runs(rig, "v2.1.0")
    deployed(rig, certificate=issued_certificate(rig.clients, "web.example.com"))
    assert http_action(rig) == "forward"  # no Event says it was ignored, as the real one
    assert not rig.events("FailedBuildModel")
    runs(rig, "v2.2.0")
    rig.tick()
    assert http_action(rig) == "redirect"
    started = [e for e in events.read(log) if e["kind"] == "controller.started"]
    assert [e["version"] for e in started] == ["v2.1.0", "v2.2.0"]


@pytest.mark.parametrize(("release", "found"), [("v2.12.0", False), ("v2.13.0", True)])
def test_only_a_release_since_v2_13_finds_subnets_by_their_route_tables(
    aws: dict[str, Any],  # noqa: F811
    clock: Any,  # noqa: F811
    release: str,
    found: bool,
) -> None:
    rig = make_rig(aws, clock)
    runs(rig, release)
    rig.store.create(ingress())  # no subnet carries a role tag
    rig.tick()
    assert bool(rig.balancers()) == found
    failures = rig.events("FailedBuildModel")
    assert bool(failures) != found
    if failures:
        assert (
            "couldn't auto-discover subnets: unable to resolve at least one subnet"
            in (failures[-1])
        )
        rig.ec2.create_tags(Resources=rig.network.public, Tags=[{"Key": ROLE_ELB, "Value": "1"}])
        rig.tick()
        assert rig.balancers()  # role tags it always knew


def test_chart_versions_follow_the_release() -> None:
    assert chart_version("v2.4.0") == "1.4.0" and chart_version("v3.5.0") == "3.5.0"


def test_sandbox_up_refuses_an_adopted_controller_that_is_no_release(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as refused:
        cli.main(["up", "--dir", str(tmp_path), "--adopted-controller", "latest"])
    assert refused.value.code == 2
    assert "'latest' is not a release like v2.4.0" in capsys.readouterr().err
    assert not (tmp_path / "world.json").exists()


def test_sandbox_up_seeds_an_adopted_controller_that_says_its_release(tmp_path: Path) -> None:
    with World.up(tmp_path, adopted_controller="v2.4.0") as world:
        kube = _apps(world)
        deployment = wait_for(
            lambda: _available(kube), what="the adopted controller to be available"
        )
        labels = deployment.metadata.labels
        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["app.kubernetes.io/version"] == "v2.4.0"
        assert labels["helm.sh/chart"] == "aws-load-balancer-controller-1.4.0"
        assert deployment.spec.template.spec.containers[0].image == f"{IMAGE}:v2.4.0"
        assert world.info["adopted_controller"] == "v2.4.0"
        account = _core(world).read_namespaced_service_account(CONTROLLER, "kube-system")
        role = account.metadata.annotations["eks.amazonaws.com/role-arn"]
        assert role == world.info["seeded"]["adopted_role_arn"]
        role_name = role.rsplit("/", 1)[-1]
        assert world.client("iam").list_role_policies(RoleName=role_name)["PolicyNames"]
        started = wait_for(
            lambda: [e for e in events.read(tmp_path) if e["kind"] == "controller.started"],
            what="the controller's start in the world's event log",
        )
        assert started[-1]["version"] == "v2.4.0"


def _apps(world: World) -> Any:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=world.env["KUBECONFIG"], context=PRODUCTION)
    return client.AppsV1Api(api)


def _core(world: World) -> Any:
    from kubernetes import client, config

    api = config.new_client_from_config(config_file=world.env["KUBECONFIG"], context=PRODUCTION)
    return client.CoreV1Api(api)


def _available(apps: Any) -> Any:
    with contextlib.suppress(Exception):
        deployment = apps.read_namespaced_deployment(CONTROLLER, "kube-system")
        if (deployment.status.available_replicas or 0) >= 1:
            return deployment
    return None
