"""What any phase may read of the AWS Load Balancer Controller running in the cluster:
whether its Deployment is available, and the IAM role its ServiceAccount names. The
controller phase installs it; the ingress phase's rollback needs it running to tear the
ALB down, and reads it here without importing that phase."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
)
from orchestrator.errors import PhaseError

if TYPE_CHECKING:
    from orchestrator.kube import Kube


def available(deployment: dict[str, Any] | None) -> bool:
    """Whether a Deployment is available at its latest generation."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    generation = (deployment.get("metadata") or {}).get("generation", 0)
    if status.get("observedGeneration", 0) < generation:
        return False
    return any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def controller_running(kube: Kube) -> bool:
    return available(kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE))


def controller_role(kube: Kube) -> str | None:
    """The role name the controller in kube-system runs as, if it still runs there."""
    if kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE) is None:
        return None
    account = kube.get("v1", "ServiceAccount", SERVICE_ACCOUNT, CONTROLLER_NAMESPACE) or {}
    annotations = (account.get("metadata") or {}).get("annotations") or {}
    arn = annotations.get(ROLE_ANNOTATION) or ""
    return arn.rsplit("/", 1)[-1] or None


# A release of the controller as its image tag names it (v3.5.0); a suffix (-eksbuild.1,
# -rc1) is a build of that release.
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")
VERSION_LABEL = "app.kubernetes.io/version"


def parse_version(text: str | None) -> tuple[int, int, int] | None:
    """(major, minor, patch) of a release named like v3.5.0 or 3.5.0; None if it is not."""
    found = _RELEASE.match(text or "")
    if found is None:
        return None
    major, minor, patch = (int(part) for part in found.groups())
    return major, minor, patch


# The oldest controller release this tool's Ingress and IngressClass work with: the newest
# of what each thing we rely on needs (upstream's source at each tag):
#   v2.0.0   the annotations scheme, target-type ip, certificate-arn, listen-ports,
#            ssl-policy, load-balancer-attributes, healthcheck-path/-port and tags;
#   v2.2.0   ssl-redirect (HTTP redirected to HTTPS) and IngressClassParams, which our
#            IngressClass `alb` names as its parameters;
#   v2.13.0  subnet discovery by reachability (pkg/networking/subnet_resolver.go; its docs
#            say 2.12.1, a release never tagged): subnet_tags leaves a VPC whose route tables
#            tell public from private untagged, and an older release finds role-tagged
#            subnets only, so it would find none there.
MINIMUM = (2, 13, 0)
# The eks/aws-load-balancer-controller Helm chart version that installs MINIMUM (the chart
# is 1.<minor>.<patch> for a v2 release).
MINIMUM_CHART = "1.13.0"


def too_old(version: tuple[int, int, int] | None) -> bool:
    """Whether a controller of `version` lacks what our Ingress needs; one whose version
    cannot be told is not known to have it."""
    return version is None or version < MINIMUM


def shown_version(version: tuple[int, int, int]) -> str:
    return "v{}.{}.{}".format(*version)


def controller_version(deployment: dict[str, Any] | None) -> tuple[int, int, int] | None:
    """The release a controller's Deployment runs: its container's image tag (what runs),
    else the version label its installer put on it (Helm's chart does); None if neither
    names one (an image by digest alone, a tag like `latest`)."""
    if not deployment:
        return None
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod.get("containers") or []:
        image = str(container.get("image") or "")
        if "@" in image:  # by digest: the tag, if any, is not what runs
            continue
        tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
        found = parse_version(tag)
        if found:
            return found
    labels = (deployment.get("metadata") or {}).get("labels") or {}
    return parse_version(labels.get(VERSION_LABEL))


def refuse_downgrade(running: tuple[int, int, int] | None, wanted: str, allowed: bool) -> None:
    """Stop (a PhaseError) where the config asks for an older controller release than the
    one running, unless the operator asked for it: an older controller may not know
    objects the newer one made or recorded (its CRDs' fields, its annotations)."""
    asked = parse_version(wanted)
    if running is None or asked is None or asked >= running or allowed:
        return
    raise PhaseError(
        f"the AWS Load Balancer Controller runs {shown_version(running)} and the config asks "
        f"for {shown_version(asked)}, an older release: orchestrator does not downgrade it "
        "unless asked to",
        f"set kubeflow.alb.controller.version to {shown_version(running)} (or newer); or, to "
        "downgrade, run again with --allow-downgrade",
    )
