"""What the sandbox cluster holds before any deployment: Kubeflow's namespaces and the
Istio ingress gateway Service that the ALB will send traffic to."""

from __future__ import annotations

from typing import Any

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
