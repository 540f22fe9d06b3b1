"""Pure builders and readers of the Kubernetes/ALB half (no AWS, no cluster)."""

from __future__ import annotations

import json

from orchestrator.builders.running_controller import available
from orchestrator.ownership import Owner
from orchestrator.states import phase_names
from orchestrator.states.controller import failure_of, object_id, parse_object_id
from orchestrator.states.controller_iam import names, same_document
from orchestrator.states.endpoint import parse_status, request_bytes
from orchestrator.states.ingress import drift, ingress_manifest
from orchestrator.states.load_balancer import hostname_of, latest_event


def test_certificates_validate_while_the_controller_is_set_up() -> None:
    assert (
        phase_names().index("certificates")
        < phase_names().index("controller_iam")
        < phase_names().index("certificates_issued")
    ), "validation overlaps the IAM/controller work"


def test_the_ingress_manifest() -> None:
    owner = Owner("dep-1", "0123456789abcdef")
    ingress = ingress_manifest(scheme="internal", certificate_arns=["arn:a", "arn:b"], owner=owner)
    annotations = ingress["metadata"]["annotations"]
    prefix = "alb.ingress.kubernetes.io/"
    assert annotations[prefix + "scheme"] == "internal"
    assert annotations[prefix + "certificate-arn"] == "arn:a,arn:b"
    assert annotations[prefix + "target-type"] == "ip"
    assert json.loads(annotations[prefix + "listen-ports"]) == [{"HTTP": 80}, {"HTTPS": 443}]
    assert annotations[prefix + "ssl-redirect"] == "443"
    assert "TLS13-1-2" in annotations[prefix + "ssl-policy"]
    assert (
        annotations[prefix + "load-balancer-attributes"]
        == "routing.http.drop_invalid_header_fields.enabled=true"
    )
    assert ingress["spec"]["ingressClassName"] == "alb"
    backend = ingress["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
    assert backend == {"name": "istio-ingressgateway", "port": {"number": 80}}
    assert ingress["metadata"]["labels"]["orchestrator.dev/deployment"] == "dep-1"
    assert ingress["metadata"]["labels"]["orchestrator.dev/state"] == "0123456789abcdef"
    assert annotations[prefix + "tags"] == (
        "orchestrator:deployment=dep-1,orchestrator:state=0123456789abcdef"
    )
    assert drift(ingress, ingress) is None
    changed = json.loads(json.dumps(ingress))
    changed["metadata"]["annotations"][prefix + "scheme"] = "internet-facing"
    assert "scheme" in drift(changed, ingress)
    assert "gone" in drift(None, ingress)


def test_object_ids_round_trip() -> None:
    obj = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "x", "namespace": "kube-system"},
    }
    assert parse_object_id(object_id(obj)) == ("apps/v1", "Deployment", "kube-system", "x")
    crd = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}}
    assert parse_object_id(object_id(crd)) == ("v1", "Namespace", None, "n")


def test_deployment_availability() -> None:
    ready = {
        "metadata": {"generation": 2},
        "status": {
            "observedGeneration": 2,
            "conditions": [{"type": "Available", "status": "True"}],
        },
    }
    assert available(ready)
    stale = {"metadata": {"generation": 3}, "status": ready["status"]}
    assert not available(stale) and not available(None)
    failing = {
        "status": {
            "conditions": [
                {"type": "ReplicaFailure", "status": "True", "message": "serviceaccount not found"}
            ]
        }
    }
    assert failure_of(failing) == "serviceaccount not found"


def test_hostname_and_latest_event() -> None:
    assert hostname_of({"status": {"loadBalancer": {"ingress": [{"hostname": "h"}]}}}) == "h"
    assert hostname_of({"status": {}}) is None and hostname_of(None) is None
    events = [
        {
            "type": "Normal",
            "reason": "A",
            "message": "old",
            "lastTimestamp": "2026-01-01T00:00:00Z",
        },
        {
            "type": "Warning",
            "reason": "FailedBuildModel",
            "message": "no\n subnets",
            "lastTimestamp": "2026-01-01T00:00:05Z",
        },
    ]
    assert latest_event(events) == "Warning FailedBuildModel: no subnets"
    assert latest_event([]) is None


def test_endpoint_http_parsing() -> None:
    assert b"Host: kubeflow.example.com\r\n" in request_bytes("kubeflow.example.com")
    assert parse_status(b"HTTP/1.1 302 Found\r\n") == 302
    assert parse_status(b"SSH-2.0-OpenSSH\r\n") is None


def test_iam_names_fit_and_documents_compare() -> None:
    role, policy = names("x" * 60)
    assert len(role) <= 64 and len(policy) <= 128
    assert same_document('{"a": [1, 2]}', {"a": [1, 2]})
    assert not same_document({"a": 1}, {"a": 2})
