"""What the sandbox cluster holds before any deployment: Kubeflow's namespaces and the
Istio ingress gateway Service that the ALB will send traffic to; and, when the world is
asked for them, another team's application with an ALB Ingress of its own, the
leftovers of an earlier install of the load balancer controller, or a controller someone
else installed with Helm, at a release of their choosing."""

from __future__ import annotations

import base64
import datetime
from typing import Any

from orchestrator import pki
from orchestrator_sandbox.seed import DATA_TEAM_NAMESPACE, DATA_TEAM_SERVICE_ACCOUNT

NAMESPACES = ("kube-system", "istio-system", "kubeflow", "auth")

GATEWAY = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "name": "istio-ingressgateway",
        "namespace": "istio-system",
        "labels": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
    },
    "spec": {
        "type": "ClusterIP",
        "selector": {"app": "istio-ingressgateway", "istio": "ingressgateway"},
        "ports": [
            {"name": "status-port", "port": 15021, "targetPort": 15021, "protocol": "TCP"},
            {"name": "http2", "port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "https", "port": 443, "targetPort": 8443, "protocol": "TCP"},
        ],
    },
}


def seed_cluster(store: Any) -> None:
    for name in NAMESPACES:
        if store.get("v1", "Namespace", name) is None:
            store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    store.create(GATEWAY)


# The data team's dashboard: its own `alb` Ingress (HTTP only, no certificate), labelled as
# the team's. Everything here is the data team's, never the orchestrator's to change.
DATA_TEAM_LABELS = {"team": "data", "app": "dashboard"}

DATA_TEAM_DASHBOARD_SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {"name": "dashboard", "namespace": DATA_TEAM_NAMESPACE, "labels": DATA_TEAM_LABELS},
    "spec": {
        "type": "ClusterIP",
        "selector": {"app": "dashboard"},
        "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
    },
}

DATA_TEAM_DASHBOARD_INGRESS = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {
        "name": "dashboard",
        "namespace": DATA_TEAM_NAMESPACE,
        "labels": DATA_TEAM_LABELS,
        "annotations": {
            "alb.ingress.kubernetes.io/scheme": "internet-facing",
            "alb.ingress.kubernetes.io/target-type": "ip",
            "alb.ingress.kubernetes.io/listen-ports": '[{"HTTP": 80}]',
        },
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
                            "backend": {"service": {"name": "dashboard", "port": {"number": 80}}},
                        }
                    ]
                }
            }
        ],
    },
}


def seed_data_team(store: Any, role_arn: str | None = None) -> None:
    """The data team's namespace, dashboard Service and its `alb` Ingress; with `role_arn`
    (seed()'s `data_team_role_arn`), also its IRSA ServiceAccount for that role."""
    team = {"team": "data"}
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": DATA_TEAM_NAMESPACE, "labels": team},
        }
    )
    if role_arn is not None:
        store.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": DATA_TEAM_SERVICE_ACCOUNT,
                    "namespace": DATA_TEAM_NAMESPACE,
                    "labels": team,
                    "annotations": {"eks.amazonaws.com/role-arn": role_arn},
                },
            }
        )
    store.create(DATA_TEAM_DASHBOARD_SERVICE)
    store.create(DATA_TEAM_DASHBOARD_INGRESS)


# ---- leftovers of an earlier install ------------------------------------------------------------
# What `helm uninstall` of a controller installed as AWS's guide has it leaves behind: the
# ServiceAccount `eksctl create iamserviceaccount` made (annotated with that install's role),
# the webhook Secret cert-manager issued (cert-manager never deletes a Secret it wrote), and
# a ValidatingWebhookConfiguration a half-finished clean-up left, still trusting the old CA.
# Nothing runs as that ServiceAccount any more.
LEFTOVER_NAMESPACE = "kube-system"
LEFTOVER_SERVICE_ACCOUNT = "aws-load-balancer-controller"
LEFTOVER_SECRET = "aws-load-balancer-tls"
LEFTOVER_WEBHOOK = "aws-load-balancer-webhook"
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"


def seed_leftovers(store: Any, role_arn: str) -> None:
    """The earlier install's ServiceAccount (naming `role_arn`), webhook Secret and
    validating webhook configuration, all of another CA than any new install makes."""
    ca_pem, cert_pem, key_pem = old_webhook_certificates()
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": LEFTOVER_SERVICE_ACCOUNT,
                "namespace": LEFTOVER_NAMESPACE,
                "labels": {"app.kubernetes.io/managed-by": "eksctl"},
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        }
    )
    store.create(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": LEFTOVER_SECRET,
                "namespace": LEFTOVER_NAMESPACE,
                "annotations": {
                    "cert-manager.io/certificate-name": "aws-load-balancer-serving-cert"
                },
            },
            "type": "kubernetes.io/tls",
            "data": {
                k: _b64(v)
                for k, v in (("ca.crt", ca_pem), ("tls.crt", cert_pem), ("tls.key", key_pem))
            },
        }
    )
    store.create(
        {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "ValidatingWebhookConfiguration",
            "metadata": {"name": LEFTOVER_WEBHOOK},
            "webhooks": [
                {
                    "name": "vingress.elbv2.k8s.aws",
                    "admissionReviewVersions": ["v1"],
                    "sideEffects": "None",
                    "failurePolicy": "Fail",
                    "clientConfig": {
                        "caBundle": _b64(ca_pem),
                        "service": {
                            "name": WEBHOOK_SERVICE,
                            "namespace": LEFTOVER_NAMESPACE,
                            "path": "/validate-networking-v1-ingress",
                            "port": 443,
                        },
                    },
                    "rules": [
                        {
                            "apiGroups": ["networking.k8s.io"],
                            "apiVersions": ["v1"],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": ["ingresses"],
                        }
                    ],
                }
            ],
        }
    )


# ---- a controller someone else installed -------------------------------------------------------
# As `helm install aws-load-balancer-controller eks/aws-load-balancer-controller -n
# kube-system --set clusterName=...` makes it: the chart's labels (its chart version is
# 1.<minor>.<patch> for a v2 release, the release's own for v3), the image of that release,
# the CRDs the chart ships (their gist: any field accepted). Not seeded: the chart's
# webhooks, RBAC, IngressClass and IngressClassParams, which the simulator does not need.
ADOPTED_IMAGE = "public.ecr.aws/eks/aws-load-balancer-controller"
CRD_API = "apiextensions.k8s.io/v1"


def chart_version(release: str) -> str:
    """The Helm chart version that installs a controller release (v2.4.0 -> 1.4.0)."""
    major, rest = release.removeprefix("v").split(".", 1)
    return f"1.{rest}" if major == "2" else f"{major}.{rest}"


def seed_adopted_controller(store: Any, release: str, cluster: str, role_arn: str) -> None:
    """A controller of `release` for `cluster` in kube-system, installed by Helm, not by
    orchestrator: its ServiceAccount naming `role_arn` (unless one is there) and its
    Deployment."""
    name, namespace = "aws-load-balancer-controller", "kube-system"
    selector = {"app.kubernetes.io/name": name, "app.kubernetes.io/instance": name}
    labels = {
        **selector,
        "helm.sh/chart": f"{name}-{chart_version(release)}",
        "app.kubernetes.io/version": release,
        "app.kubernetes.io/managed-by": "Helm",
    }
    helm = {"meta.helm.sh/release-name": name, "meta.helm.sh/release-namespace": namespace}
    meta = {"name": name, "namespace": namespace, "labels": labels, "annotations": helm}
    for kind, plural in (
        ("TargetGroupBinding", "targetgroupbindings"),
        ("IngressClassParams", "ingressclassparams"),
    ):
        if store.get(CRD_API, "CustomResourceDefinition", f"{plural}.elbv2.k8s.aws") is None:
            store.create(_crd(kind, plural, namespaced=kind == "TargetGroupBinding"))
    if store.get("v1", "ServiceAccount", name, namespace) is None:
        account = {**meta, "annotations": {**helm, "eks.amazonaws.com/role-arn": role_arn}}
        store.create({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": account})
    container = {
        "name": name,
        "image": f"{ADOPTED_IMAGE}:{release}",
        "args": [f"--cluster-name={cluster}", "--ingress-class=alb"],
    }
    store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": selector},
                    "spec": {"serviceAccountName": name, "containers": [container]},
                },
            },
        }
    )


def _crd(kind: str, plural: str, namespaced: bool) -> dict[str, Any]:
    version = {
        "name": "v1beta1",
        "served": True,
        "storage": True,
        "subresources": {"status": {}},
        "schema": {
            "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
        },
    }
    return {
        "apiVersion": CRD_API,
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.elbv2.k8s.aws"},
        "spec": {
            "group": "elbv2.k8s.aws",
            "scope": "Namespaced" if namespaced else "Cluster",
            "names": {"kind": kind, "plural": plural},
            "versions": [version],
        },
    }


def old_webhook_certificates() -> tuple[str, str, str]:
    """(ca, cert, key) PEMs as the earlier install's cert-manager issued them: a CA of its
    own and a serving certificate for the webhook Service, months old."""
    issued = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=200)
    expires = issued + datetime.timedelta(days=365)
    ca_key = pki.new_key()
    ca = pki.ca_certificate(
        ca_key, pki.common_name("aws-load-balancer-selfsigned-ca"), issued, expires
    )
    key = pki.new_key()
    names = [
        f"{WEBHOOK_SERVICE}.{LEFTOVER_NAMESPACE}.svc",
        f"{WEBHOOK_SERVICE}.{LEFTOVER_NAMESPACE}.svc.cluster.local",
    ]
    cert = pki.serving_certificate(key, names, ca, ca_key, issued, expires)
    return pki.cert_pem(ca), pki.cert_pem(cert), pki.key_pem(key)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()
