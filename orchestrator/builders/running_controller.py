"""What any phase may read of the AWS Load Balancer Controller running in the cluster:
whether its Deployment is available, and the IAM role its ServiceAccount names. The
controller phase installs it; the ingress phase's rollback needs it running to tear the
ALB down, and reads it here without importing that phase."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
)

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
