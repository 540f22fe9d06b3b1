"""controller: the AWS Load Balancer Controller running in kube-system.

If a controller already runs there and this deployment did not install it, it is
adopted: checked (it must serve this cluster), used, never changed or deleted.
Otherwise the project's own manifests are applied with server-side apply, and the phase
waits for the Deployment to be available. Any object of those manifests that already
exists without our label (CRDs left by an earlier install, say) is used as it is.
"""

from __future__ import annotations

import base64
from typing import Any

from orchestrator.errors import PhaseError
from orchestrator.kube import labels_for, owned_by
from orchestrator.phase import Phase, PhaseContext
from states.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
    TLS_SECRET,
    cluster_name_of,
    controller_manifests,
)
from states.webhook_tls import webhook_certificates

KIND = "kubernetes:object"


def object_id(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return "/".join((obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]))


def parse_object_id(rid: str) -> tuple[str, str, str | None, str]:
    """(apiVersion, kind, namespace, name) of an object id; apiVersion may hold a '/'."""
    *version, kind, namespace, name = rid.split("/")
    return "/".join(version), kind, namespace or None, name


def available(deployment: dict[str, Any] | None) -> bool:
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


def failure_of(deployment: dict[str, Any] | None) -> str | None:
    """Why a Deployment is not available, from its conditions, if it says."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") == "ReplicaFailure":
            return condition.get("message")
        if condition.get("type") == "Available" and condition.get("status") == "False":
            return condition.get("message")
    return None


class ControllerPhase(Phase):
    name = "controller"
    title = "install (or adopt) the AWS Load Balancer Controller"
    inputs = ("cluster.name", "cluster.region", "kubernetes.context")
    outputs = ("mode", "deployment")

    def enter(self, ctx: PhaseContext) -> None:
        kube = ctx.kube
        existing = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if existing is not None and not owned_by(existing, ctx.deployment):
            self._adopt(ctx, existing)
        else:
            self._install(ctx)
        ctx.outputs["deployment"] = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
        self._wait_available(ctx)

    def _adopt(self, ctx: PhaseContext, deployment: dict[str, Any]) -> None:
        cluster = cluster_name_of(deployment)
        if cluster != ctx.config.cluster_name:
            raise PhaseError(
                f"an AWS Load Balancer Controller already runs in {CONTROLLER_NAMESPACE} for "
                f"cluster {cluster!r}, not {ctx.config.cluster_name!r}; orchestrator will not "
                "change or replace a controller it did not install",
                "fix that controller's --cluster-name (or remove it), then run "
                "`orchestrator resume`",
            )
        ctx.adopt(KIND, object_id(deployment))
        ctx.outputs["mode"] = "adopted"
        ctx.say(
            f"using the AWS Load Balancer Controller already in {CONTROLLER_NAMESPACE} "
            "(not installed by orchestrator, so never changed or deleted by it)"
        )

    def _install(self, ctx: PhaseContext) -> None:
        kube = ctx.kube
        ca, cert, key = self._webhook_tls(ctx)
        manifests = controller_manifests(
            cluster_name=ctx.config.cluster_name,
            region=ctx.config.region,
            vpc_id=ctx.earlier("preflight")["vpc_id"],
            role_arn=ctx.earlier("controller_iam")["role_arn"],
            labels=labels_for(ctx.deployment),
            webhook_ca_pem=ca,
            webhook_cert_pem=cert,
            webhook_key_pem=key,
        )
        for obj in manifests:
            rid = object_id(obj)
            mine = ctx.find(KIND, rid)
            if mine is None or not mine.created:
                meta = obj["metadata"]
                current = kube.get(
                    obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace")
                )
                if current is not None and not owned_by(current, ctx.deployment):
                    ctx.adopt(KIND, rid)  # someone else's: used as it is, never deleted
                    continue
            resource = (
                mine
                if mine and mine.created
                else ctx.intend(KIND, rid, f"apply {obj['kind']} {obj['metadata']['name']}")
            )
            kube.apply(obj)
            ctx.confirm(resource)
        ctx.outputs["mode"] = "installed"

    def _webhook_tls(self, ctx: PhaseContext) -> tuple[str, str, str]:
        """The webhook's certificates: kept from our Secret if it exists, so re-applying
        changes nothing; new ones otherwise. They live only in the cluster."""
        secret = ctx.kube.get("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE)
        if secret and owned_by(secret, ctx.deployment):
            data = secret.get("data") or {}
            try:
                return tuple(
                    base64.b64decode(data[k]).decode()  # type: ignore[return-value]
                    for k in ("ca.crt", "tls.crt", "tls.key")
                )
            except (KeyError, ValueError):
                pass
        return webhook_certificates()

    def _wait_available(self, ctx: PhaseContext) -> None:
        kube = ctx.kube

        def ready() -> bool | None:
            deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
            if available(deployment):
                return True
            ctx.note(failure_of(deployment) or "pods not available yet")
            return None

        ctx.wait_until(
            f"Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_NAME} to be available", ready, limit=900
        )

    def verify(self, ctx: PhaseContext) -> str | None:
        kube = ctx.kube
        deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is None:
            return f"Deployment {ctx.outputs['deployment']} is gone"
        if not available(deployment):
            return f"Deployment {ctx.outputs['deployment']} is not available"
        if ctx.outputs["mode"] == "adopted":
            return None
        for resource in ctx.owned(KIND):
            api_version, kind, namespace, name = parse_object_id(resource.id)
            if kube.get(api_version, kind, name, namespace) is None:
                return f"{kind} {name} is gone"
        account = kube.get("v1", "ServiceAccount", SERVICE_ACCOUNT, CONTROLLER_NAMESPACE) or {}
        annotation = ((account.get("metadata") or {}).get("annotations") or {}).get(ROLE_ANNOTATION)
        if annotation != ctx.earlier("controller_iam")["role_arn"]:
            return f"ServiceAccount {SERVICE_ACCOUNT} is not annotated with the controller role"
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        for resource in reversed(ctx.owned(KIND)):
            api_version, kind, namespace, name = parse_object_id(resource.id)
            ctx.kube.delete(api_version, kind, name, namespace)
            ctx.forget(resource)
