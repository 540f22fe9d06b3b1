"""What the sandbox cluster holds before any deployment: Kubeflow's namespaces and the
Istio ingress gateway Service that the ALB will send traffic to; and, when the world is
asked for it, another team's application with an ALB Ingress of its own."""

from __future__ import annotations

from typing import Any

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
