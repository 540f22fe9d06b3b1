"""The Ingress that exposes Kubeflow: where it is and what it sends traffic to. The ingress
phase builds it; other phases name it (the controller's users, the load balancer, the
subnets' load balancers, preflight's gateway check) without importing that phase."""

from __future__ import annotations

NAMESPACE = "istio-system"
NAME = "istio-ingress"
GATEWAY_SERVICE = "istio-ingressgateway"
OBJECT_ID = f"networking.k8s.io/v1/Ingress/{NAMESPACE}/{NAME}"
