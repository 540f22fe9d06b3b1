"""controller: the AWS Load Balancer Controller running in kube-system.

If a controller already runs there and this deployment did not install it, it is
adopted: checked (it must serve this cluster), used, never changed or deleted.
Otherwise the project's own manifests are applied with server-side apply: the CRDs
first, then, once the API server has Established them (their kinds are not served
before), everything else; the phase waits for the Deployment to be available. Any object
of those manifests that already exists without our label (CRDs left by an earlier
install, say) is used as it is.

The controller is shared by nature: once installed, any Ingress of class `alb`, any
TargetGroupBinding or load-balancer Service in the cluster may depend on it. Rollback
leaves what it installed in place while anything not ours uses it, and says so;
otherwise it waits until the controller has released the cluster's shared backend
security group before deleting it (deleted, the controller could never release it).
"""

from __future__ import annotations

import base64
from typing import Any

from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
    TLS_SECRET,
    cluster_name_of,
    controller_manifests,
)
from orchestrator.builders.webhook_tls import webhook_certificates
from orchestrator.creating import creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import Owner, describe_identity
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CREATE, UPDATE, USE, Change

KIND = "kubernetes:object"
CRD = "CustomResourceDefinition"
ALB_CONTROLLER_CLASS = "ingress.k8s.aws/alb"  # IngressClass spec.controller
NLB_SERVICE_CLASS = "service.k8s.aws/nlb"  # Service spec.loadBalancerClass
LEGACY_SERVICE_TYPES = ("external", "nlb-ip")  # service.beta.kubernetes.io/aws-load-balancer-type
TARGET_GROUP_BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
STACK_LABELS = ("ingress.k8s.aws/stack-namespace", "ingress.k8s.aws/stack-name")
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
RESOURCE_TAG = "elbv2.k8s.aws/resource"
BACKEND_SG = "backend-sg"  # the controller's shared backend security group, one per cluster


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


def condition_true(obj: dict[str, Any] | None, kind: str) -> bool:
    """Whether the object's status has condition `kind` with status True."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


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
    inputs = (
        "cluster.name",
        "cluster.region",
        "kubernetes.context",
        "kubeflow.alb.controller.imageRepository",
    )
    outputs = ("mode", "deployment")
    reads = ("preflight", "controller_iam")

    def plan(self, ctx: PhaseContext) -> list[Change]:
        kube = ctx.kube
        existing = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if existing is not None and not ctx.owner.owns_object(existing):
            return [
                Change(
                    USE,
                    f"the AWS Load Balancer Controller in {CONTROLLER_NAMESPACE}",
                    f"already installed, for cluster {cluster_name_of(existing)!r}",
                )
            ]
        changes = []
        for obj in self._manifests(ctx, ("", "", "")):
            meta = obj["metadata"]
            shown = f"{obj['kind']} {'/'.join(filter(None, (meta.get('namespace'), meta['name'])))}"
            current = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            if current is None:
                changes.append(Change(CREATE, shown))
            elif ctx.owner.owns_object(current):
                changes.append(Change(UPDATE, shown, "applied again"))
            else:
                changes.append(Change(USE, shown, "exists, not ours"))
        return changes

    def enter(self, ctx: PhaseContext) -> None:
        kube = ctx.kube
        existing = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if existing is not None and not ctx.owner.owns_object(existing):
            self._adopt(ctx, existing)
        else:
            self._install(ctx)
        ctx.outputs["deployment"] = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
        self._wait_available(ctx)

    def reinstall(self, ctx: PhaseContext) -> None:
        """Bring back the controller this phase installed (deleted by hand, say), keeping the
        phase's own status: a rollback needs it to finish tearing the ALB down."""
        record = ctx.record
        status = record.status
        try:
            self._install(ctx)
            self._wait_available(ctx)
        finally:
            record.status = status
            ctx.save()

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

    def _manifests(self, ctx: PhaseContext, tls: tuple[str, str, str]) -> list[dict[str, Any]]:
        ca, cert, key = tls
        role_arn = (
            ctx.earlier("controller_iam").get("role_arn") or "(the role controller_iam makes)"
        )
        return controller_manifests(
            cluster_name=ctx.config.cluster_name,
            region=ctx.config.region,
            vpc_id=ctx.earlier("preflight")["vpc_id"],
            role_arn=role_arn,
            labels=ctx.owner.labels,
            webhook_ca_pem=ca,
            webhook_cert_pem=cert,
            webhook_key_pem=key,
            image_repository=ctx.config.controller_image_repository,
        )

    def _install(self, ctx: PhaseContext) -> None:
        manifests = self._manifests(ctx, self._webhook_tls(ctx))
        definitions = [obj for obj in manifests if obj["kind"] == CRD]
        for obj in definitions:
            self._apply(ctx, obj)
        self._wait_established(ctx, [obj["metadata"]["name"] for obj in definitions])
        for obj in manifests:
            if obj["kind"] != CRD:
                self._apply(ctx, obj)
        ctx.outputs["mode"] = "installed"

    def _apply(self, ctx: PhaseContext, obj: dict[str, Any]) -> None:
        """Apply one object of the controller's, unless it exists and is not ours."""
        kube = ctx.kube
        rid = object_id(obj)
        mine = ctx.find(KIND, rid)
        if mine is None or not mine.created:
            meta = obj["metadata"]
            current = kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            if current is not None and not ctx.owner.owns_object(current):
                ctx.adopt(KIND, rid)  # someone else's: used as it is, never deleted
                return
        with creating(ctx, KIND, rid, f"apply {obj['kind']} {obj['metadata']['name']}"):
            kube.apply(obj)

    def _wait_established(self, ctx: PhaseContext, names: list[str]) -> None:
        """The API server serves a CRD's kind only once the CRD is Established."""
        kube = ctx.kube

        def established() -> bool | None:
            pending = [
                n
                for n in names
                if not condition_true(kube.get("apiextensions.k8s.io/v1", CRD, n), "Established")
            ]
            if pending:
                ctx.note(f"not yet Established: {', '.join(pending)}")
                return None
            kube.forget_discovery()  # discovery read before now does not know the new kinds
            return True

        ctx.wait_until(
            "the controller's CustomResourceDefinitions to be Established", established, limit=300
        )

    def _webhook_tls(self, ctx: PhaseContext) -> tuple[str, str, str]:
        """The webhook's certificates: kept from our Secret if it exists, so re-applying
        changes nothing; new ones otherwise. They live only in the cluster."""
        secret = ctx.kube.get("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE)
        if secret and ctx.owner.owns_object(secret):
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
        owned = list(reversed(ctx.owned(KIND)))
        if not owned:
            return
        users = users_not_ours(ctx)
        if users:
            shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            ctx.keep(owned, f"the AWS Load Balancer Controller is still used by {shown}")
            return
        self._wait_backend_released(ctx)
        for resource in owned:
            api_version, kind, namespace, name = parse_object_id(resource.id)
            live = ctx.kube.get(api_version, kind, name, namespace)
            if live is not None and not ctx.owner.owns_object(live):
                ctx.keep(resource, not_ours(ctx, kind, live))
                continue
            ctx.kube.delete(api_version, kind, name, namespace)
            ctx.deleted(resource)

    def _wait_backend_released(self, ctx: PhaseContext) -> None:
        """The controller deletes the cluster's backend security group once no load balancer
        needs it; deleted before that, the controller could never, and the group would leak."""

        def released() -> bool | None:
            left = backend_security_groups(ctx)
            if not left:
                return True
            running = available(
                ctx.kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
            )
            ctx.note(
                f"backend security group {', '.join(left)} still there"
                + ("" if running else "; the controller is not running, so nothing will delete it")
            )
            return None

        ctx.wait_until(
            "the controller to release the cluster's backend security group", released, limit=900
        )


# ---- who else uses the controller ------------------------------------------------------------


def ingress_class_of(ingress: dict[str, Any]) -> str | None:
    """spec.ingressClassName, or the older annotation."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return annotations.get("kubernetes.io/ingress.class")


def served_by_controller(service: dict[str, Any]) -> bool:
    """A Service the AWS Load Balancer Controller makes an NLB for."""
    spec = service.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return False
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return (
        spec.get("loadBalancerClass") == NLB_SERVICE_CLASS
        or annotations.get("service.beta.kubernetes.io/aws-load-balancer-type")
        in LEGACY_SERVICE_TYPES
    )


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta["name"]


def not_ours(ctx: PhaseContext, kind: str, live: dict[str, Any]) -> str:
    """Why an object the state file lists is left: its labels name another owner."""
    other = ctx.owner.other_owner_of_object(live)
    whose = describe_identity(other) if other is not None else "someone else"
    return f"the {kind}'s labels say it belongs to {whose}, not this state file"


def controller_users(
    owner: Owner,
    classes: list[dict[str, Any]],
    ingresses: list[dict[str, Any]],
    bindings: list[dict[str, Any]],
    services: list[dict[str, Any]],
    our_stack: tuple[str, str],
) -> list[str]:
    """What, of the cluster's objects, depends on the controller and is not this
    deployment's: Ingresses of a class it serves, TargetGroupBindings of other stacks, and
    Services it makes load balancers for."""
    served = {"alb"} | {
        c["metadata"]["name"]
        for c in classes
        if (c.get("spec") or {}).get("controller") == ALB_CONTROLLER_CLASS
    }
    users = [
        f"Ingress {_name(i)}"
        for i in ingresses
        if ingress_class_of(i) in served and not owner.owns_object(i)
    ]
    for binding in bindings:
        labels = (binding.get("metadata") or {}).get("labels") or {}
        if tuple(labels.get(k) for k in STACK_LABELS) != our_stack:
            users.append(f"TargetGroupBinding {_name(binding)}")
    users += [f"Service {_name(s)}" for s in services if served_by_controller(s)]
    return users


def users_not_ours(ctx: PhaseContext) -> list[str]:
    # Imported here: the ingress module imports this one.
    from orchestrator.states.ingress import NAME, NAMESPACE

    kube = ctx.kube
    bindings = kube.list(*TARGET_GROUP_BINDING) if kube.served(*TARGET_GROUP_BINDING) else []
    return controller_users(
        ctx.owner,
        kube.list("networking.k8s.io/v1", "IngressClass"),
        kube.list("networking.k8s.io/v1", "Ingress"),
        bindings,
        kube.list("v1", "Service"),
        (NAMESPACE, NAME),
    )


def cluster_vpc(ctx: PhaseContext) -> str:
    """The cluster's VPC: as preflight saw it, or (preflight rolled back: the final sweep
    of a rollback, a state made by import) as EKS says now."""
    known = ctx.earlier("preflight").get("vpc_id")
    if known:
        return str(known)
    cluster = ctx.aws.eks.describe_cluster(name=ctx.config.cluster_name)["cluster"]
    return str(cluster["resourcesVpcConfig"]["vpcId"])


def backend_security_groups(ctx: PhaseContext) -> list[str]:
    """The cluster's backend security group(s) the controller made, by their tags."""
    groups = ctx.aws.ec2.pages(
        "describe_security_groups",
        "SecurityGroups",
        Filters=[
            {"Name": "vpc-id", "Values": [cluster_vpc(ctx)]},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [ctx.config.cluster_name]},
            {"Name": f"tag:{RESOURCE_TAG}", "Values": [BACKEND_SG]},
        ],
    )
    return [g["GroupId"] for g in groups]
