"""ingress: the Ingress the AWS Load Balancer Controller turns into the ALB.

HTTPS on 443 with the issued certificate and a TLS 1.2+ policy, HTTP on 80 redirected
to HTTPS, IP targets, invalid header fields dropped, everything to the Istio ingress
gateway. An Ingress of that name that this deployment did not create stops the run.
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
            ctx.kube.delete("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
            self._wait_alb_gone(ctx)
            ctx.forget(resource)

    def _wait_alb_gone(self, ctx: PhaseContext) -> None:
        def gone() -> bool | None:
            remaining = stack_load_balancers(ctx, ctx.config.cluster_name)
            if remaining:
                ctx.note(
                    f"{len(remaining)} load balancer(s) still there: "
                    f"{', '.join(lb.rsplit('/', 2)[-2] for lb in remaining)}"
                )
                return None
            return True

        ctx.wait_until("the controller to delete the ALB of the Ingress", gone, limit=900)


def stack_load_balancers(ctx: PhaseContext, cluster: str) -> list[str]:
    """ARNs of the load balancers the controller made for our Ingress (by its tags)."""
    elbv2 = ctx.aws.elbv2
    arns = [lb["LoadBalancerArn"] for lb in elbv2.pages("describe_load_balancers", "LoadBalancers")]
    found = []
    for start in range(0, len(arns), 20):  # DescribeTags takes 20 ARNs at most
        for description in elbv2.describe_tags(ResourceArns=arns[start : start + 20])[
            "TagDescriptions"
        ]:
            tags = {t["Key"]: t.get("Value") for t in description.get("Tags", [])}
            if (
                tags.get("ingress.k8s.aws/stack") == f"{NAMESPACE}/{NAME}"
                and tags.get("elbv2.k8s.aws/cluster") == cluster
            ):
                found.append(description["ResourceArn"])
    return found
