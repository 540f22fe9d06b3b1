"""A load balancer controller someone else installed is checked before anything is made:
its release (image tag, else Helm's version label) must have what our Ingress needs
(running_controller.MINIMUM); one too old, or of a release that cannot be told, stops
preflight, in plan and run alike, and is never changed. Ours is the controller phase's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phasekit import Kit, eks_cluster, eks_network, phase_kit
from test_agreement_checks import stops_as_enter_does

from orchestrator.builders.running_controller import (
    MINIMUM,
    VERSION_LABEL,
    controller_version,
    shown_version,
    too_old,
)
from orchestrator.errors import PhaseError
from orchestrator.states.preflight import PreflightPhase

NAME, NAMESPACE = "aws-load-balancer-controller", "kube-system"
REPOSITORY = "public.ecr.aws/eks/aws-load-balancer-controller"


def deployment(image: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    container = {"name": NAME, "image": image, "args": ["--cluster-name=kube-eks-cluster"]}
    selector = {"app.kubernetes.io/name": NAME}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME, "namespace": NAMESPACE, "labels": labels or {}},
        "spec": {
            "selector": {"matchLabels": selector},
            "template": {"metadata": {"labels": selector}, "spec": {"containers": [container]}},
        },
    }


def helm_labels(release: str) -> dict[str, str]:
    return {"app.kubernetes.io/managed-by": "Helm", VERSION_LABEL: release}


# ---- the version a controller runs --------------------------------------------------------------


@pytest.mark.parametrize(
    ("image", "labels", "version"),
    [
        (f"{REPOSITORY}:v2.4.0", {}, (2, 4, 0)),
        (f"{REPOSITORY}:v2.13.0-eksbuild.1", {}, (2, 13, 0)),
        # The image runs; the label is what an installer once wrote.
        (f"{REPOSITORY}:v3.5.0", helm_labels("v2.4.0"), (3, 5, 0)),
        # A registry with a port is no tag.
        ("registry.local:5000/lbc", helm_labels("v2.7.1"), (2, 7, 1)),
        (f"{REPOSITORY}:latest", helm_labels("v2.13.0"), (2, 13, 0)),
        # By digest: a tag next to it is not what runs; the label still tells.
        (f"{REPOSITORY}:v3.5.0@sha256:{'a' * 64}", helm_labels("v2.4.0"), (2, 4, 0)),
        (f"{REPOSITORY}@sha256:{'a' * 64}", {}, None),
        (f"{REPOSITORY}:latest", {}, None),
    ],
)
def test_the_version_comes_from_the_image_tag_else_the_label(
    image: str, labels: dict[str, str], version: tuple[int, int, int] | None
) -> None:
    assert controller_version(deployment(image, labels)) == version


def test_the_minimum_is_a_release_and_what_is_below_or_unknown_is_too_old() -> None:
    assert shown_version(MINIMUM) == "v2.13.0"
    assert not too_old(MINIMUM) and not too_old((3, 0, 0))
    assert too_old((2, 12, 9)) and too_old(None)


# ---- preflight ----------------------------------------------------------------------------------


def arrange(kit: Kit, controller: dict[str, Any] | None) -> None:
    network = eks_network(kit.client("ec2"))
    eks_cluster(kit, list(network.private.values()))
    if controller is not None:
        kit.namespace(NAMESPACE)
        kit.store.create(controller)


def test_an_adopted_controller_too_old_stops_plan_and_run_naming_both_versions(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        arrange(kit, deployment(f"{REPOSITORY}:v2.4.0", helm_labels("v2.4.0")))
        message = stops_as_enter_does(kit, PreflightPhase())
        assert "runs v2.4.0" in message and "needs v2.13.0 or later" in message
        assert "never changes a controller it did not install" in message
        with pytest.raises(PhaseError) as stopped:
            PreflightPhase().enter(kit.ctx("preflight"))
        hint = stopped.value.hint
        assert "helm upgrade aws-load-balancer-controller eks/aws-load-balancer-controller" in hint
        assert "--version 1.13.0" in hint and "let orchestrator install its own" in hint
        live = kit.store.get("apps/v1", "Deployment", NAME, NAMESPACE)
        assert live is not None and live["metadata"]["labels"] == helm_labels("v2.4.0")


def test_an_adopted_controller_of_unknown_release_stops_and_says_how_to_tell_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        arrange(kit, deployment(f"{REPOSITORY}@sha256:{'b' * 64}"))
        message = stops_as_enter_does(kit, PreflightPhase())
        assert f"its {VERSION_LABEL} label do not name" in message
        assert "v2.13.0" in message


@pytest.mark.parametrize("release", ["v2.13.0", "v3.5.0"])
def test_an_adopted_controller_new_enough_passes(tmp_path: Path, release: str) -> None:
    with phase_kit(tmp_path) as kit:
        arrange(kit, deployment(f"{REPOSITORY}:{release}", helm_labels(release)))
        ctx = kit.ctx("preflight")
        PreflightPhase().enter(ctx)
        assert PreflightPhase().verify(ctx) is None


def test_our_own_controller_is_not_preflights_business(tmp_path: Path) -> None:
    """An older controller we installed is the controller phase's to upgrade, not a stop."""
    with phase_kit(tmp_path) as kit:
        arrange(kit, deployment(f"{REPOSITORY}:v2.4.0", kit.owner.labels))
        PreflightPhase().enter(kit.ctx("preflight"))


def test_an_adopted_controller_downgraded_later_is_drift(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        arrange(kit, deployment(f"{REPOSITORY}:v2.13.0"))
        ctx = kit.ctx("preflight")
        PreflightPhase().enter(ctx)
        kit.store.delete("apps/v1", "Deployment", NAME, NAMESPACE)
        kit.store.create(deployment(f"{REPOSITORY}:v2.12.0"))
        drift = PreflightPhase().verify(ctx)
        assert drift is not None and "runs v2.12.0" in drift
