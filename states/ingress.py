"""ingress: the Ingress the AWS Load Balancer Controller turns into the ALB.

HTTPS on 443 with the issued certificate and a TLS 1.2+ policy, HTTP on 80 redirected
to HTTPS, IP targets, invalid header fields dropped, everything to the Istio ingress
gateway. An Ingress of that name that this deployment did not create stops the run.

Rollback deletes the Ingress and waits for the controller's teardown, which runs in
stages: the load balancer and its listeners, then the TargetGroupBindings and target
groups, then the security groups (EC2 refuses while the load balancer's network
interfaces drain, which takes minutes), and only then the controller removes its
finalizer and the Ingress goes. Until all of that is gone the controller must keep
running, so the phases after this one (the controller, its IAM role) wait for it.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import PhaseError
from orchestrator.kube import labels_for, owned_by
from orchestrator.phase import OWNER_TAG, Phase, PhaseContext

NAMESPACE = "istio-system"
NAME = "istio-ingress"
GATEWAY_SERVICE = "istio-ingressgateway"
SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
KIND = "kubernetes:object"
OBJECT_ID = f"networking.k8s.io/v1/Ingress/{NAMESPACE}/{NAME}"
INGRESS = ("networking.k8s.io/v1", "Ingress")
TARGET_GROUP_BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"
STACK = f"{NAMESPACE}/{NAME}"  # the controller's name for what it makes for the Ingress


def ingress_manifest(
    *, scheme: str, certificate_arns: list[str], deployment: str
) -> dict[str, Any]:
    prefix = "alb.ingress.kubernetes.io/"
    annotations = {
        prefix + "scheme": scheme,
        prefix + "target-type": "ip",
        prefix + "certificate-arn": ",".join(certificate_arns),
        prefix + "listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
        prefix + "ssl-redirect": "443",
        prefix + "ssl-policy": SSL_POLICY,
        prefix + "load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
        prefix + "healthcheck-path": "/healthz/ready",
        prefix + "healthcheck-port": "15021",  # the gateway's status port
        prefix + "tags": f"{OWNER_TAG}={deployment}",
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": labels_for(deployment),
            "annotations": annotations,
        },
        "spec": {
            "ingressClassName": "alb",
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": GATEWAY_SERVICE, "port": {"number": 80}}
                                },
                            }
                        ]
                    }
                }
            ],
        },
    }


def drift(live: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """How the live Ingress differs from the one we apply, or None."""
    if live is None:
        return f"Ingress {NAMESPACE}/{NAME} is gone"
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    for key, value in wanted["metadata"]["annotations"].items():
        if annotations.get(key) != value:
            return f"Ingress annotation {key} is {annotations.get(key)!r}, not {value!r}"
    spec = live.get("spec") or {}
    if spec.get("ingressClassName") != "alb" or spec.get("rules") != wanted["spec"]["rules"]:
        return "Ingress spec changed"
    return None


class IngressPhase(Phase):
    name = "ingress"
    title = f"Ingress {NAMESPACE}/{NAME} for the ALB"
    inputs = ("kubeflow.alb.scheme", "route53.subDomain.name")
    outputs = ("ingress", "certificate_arn")

    def _wanted(self, ctx: PhaseContext) -> dict[str, Any]:
        arns = ctx.earlier("certificates_issued")["issued"]
        return ingress_manifest(
            scheme=ctx.config.alb_scheme, certificate_arns=arns, deployment=ctx.deployment
        )

    def enter(self, ctx: PhaseContext) -> None:
        live = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        if live is not None and not owned_by(live, ctx.deployment):
            raise PhaseError(
                f"Ingress {NAMESPACE}/{NAME} already exists and was not created by this "
                "deployment; orchestrator will not adopt, change or delete it",
                "delete or rename that Ingress if it is stale, then run `orchestrator resume`",
            )
        resource = ctx.find(KIND, OBJECT_ID) or ctx.intend(KIND, OBJECT_ID, "apply Ingress")
        ctx.kube.apply(self._wanted(ctx))
        ctx.confirm(resource)
        ctx.outputs.update(
            ingress=f"{NAMESPACE}/{NAME}",
            certificate_arn=ctx.earlier("certificates_issued")["certificate_arn"],
        )

    def verify(self, ctx: PhaseContext) -> str | None:
        live = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        return drift(live, self._wanted(ctx))

    def rollback(self, ctx: PhaseContext) -> None:
        for resource in ctx.owned(KIND):
            ctx.kube.delete(*INGRESS, NAME, NAMESPACE)
            self._wait_torn_down(ctx)
            ctx.forget(resource)

    def _wait_torn_down(self, ctx: PhaseContext) -> None:
        def torn_down() -> bool | None:
            left = stack_leftovers(ctx)
            if not left:
                return True
            from states.controller import CONTROLLER_NAME, CONTROLLER_NAMESPACE, available

            running = available(
                ctx.kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
            )
            ctx.note(
                f"left: {'; '.join(left)}"
                + ("" if running else " (the controller is not running: nothing will finish this)")
            )
            return None

        ctx.wait_until(
            f"the controller to tear down what it made for Ingress {STACK}", torn_down, limit=900
        )


def stack_leftovers(ctx: PhaseContext) -> list[str]:
    """What the controller made for our Ingress and has not deleted yet, Ingress included."""
    kube, cluster = ctx.kube, ctx.config.cluster_name
    left = []
    ingress = kube.get(*INGRESS, NAME, NAMESPACE)
    if ingress is not None:
        finalizers = (ingress.get("metadata") or {}).get("finalizers") or []
        left.append(
            f"Ingress {STACK}"
            + (f" (Terminating, finalizers {', '.join(finalizers)})" if finalizers else "")
        )
    if kube.served(*TARGET_GROUP_BINDING):
        selector = f"ingress.k8s.aws/stack-namespace={NAMESPACE},ingress.k8s.aws/stack-name={NAME}"
        for binding in kube.list(*TARGET_GROUP_BINDING, NAMESPACE, label_selector=selector):
            left.append(f"TargetGroupBinding {NAMESPACE}/{binding['metadata']['name']}")
    left += [
        f"load balancer {arn.rsplit('/', 2)[-2]}" for arn in stack_load_balancers(ctx, cluster)
    ]
    left += [f"target group {arn.rsplit('/', 2)[-2]}" for arn in stack_target_groups(ctx, cluster)]
    left += [f"security group {group}" for group in stack_security_groups(ctx, cluster)]
    return left


def _stack_tagged(ctx: PhaseContext, arns: list[str], cluster: str) -> list[str]:
    """Those of the ELBv2 resources whose tags name our Ingress's stack in this cluster."""
    found = []
    for start in range(0, len(arns), 20):  # DescribeTags takes 20 ARNs at most
        described = ctx.aws.elbv2.describe_tags(ResourceArns=arns[start : start + 20])
        for description in described["TagDescriptions"]:
            tags = {t["Key"]: t.get("Value") for t in description.get("Tags", [])}
            if tags.get(STACK_TAG) == STACK and tags.get(CLUSTER_TAG) == cluster:
                found.append(description["ResourceArn"])
    return found


def stack_load_balancers(ctx: PhaseContext, cluster: str) -> list[str]:
    """ARNs of the load balancers the controller made for our Ingress (by its tags)."""
    balancers = ctx.aws.elbv2.pages("describe_load_balancers", "LoadBalancers")
    return _stack_tagged(ctx, [lb["LoadBalancerArn"] for lb in balancers], cluster)


def stack_target_groups(ctx: PhaseContext, cluster: str) -> list[str]:
    groups = ctx.aws.elbv2.pages("describe_target_groups", "TargetGroups")
    return _stack_tagged(ctx, [g["TargetGroupArn"] for g in groups], cluster)


def stack_security_groups(ctx: PhaseContext, cluster: str) -> list[str]:
    groups = ctx.aws.ec2.pages(
        "describe_security_groups",
        "SecurityGroups",
        Filters=[
            {"Name": f"tag:{STACK_TAG}", "Values": [STACK]},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
        ],
    )
    return [g["GroupId"] for g in groups]
