"""Admission webhooks: the emulator calls the matching ones on a client's write, through the
caller it is given, and honours their answers and failure policies as an API server does."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from kube_api_emulator import KubeApiServer, ObjectStore, WebhookCallError

VALIDATING = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations"
MUTATING = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations"
CONFIGMAPS = "/api/v1/namespaces/default/configmaps"
NO_ENDPOINTS = (
    'Internal error occurred: failed calling webhook "vcm.example.com": failed to call '
    'webhook: Post "https://guard.kube-system.svc:443/validate?timeout=10s": no endpoints '
    'available for service "guard"'
)


@pytest.fixture
def server() -> Iterator[KubeApiServer]:
    store = ObjectStore(crd_establish_seconds=0, namespace_grace_seconds=0)
    with KubeApiServer(store=store) as api_server:
        yield api_server


def http(server: KubeApiServer, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    content_type = "application/merge-patch+json" if method == "PATCH" else "application/json"
    request = urllib.request.Request(
        server.url + path, data, {"Content-Type": content_type}, method=method
    )
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def webhook(name: str = "vcm.example.com", **settings: Any) -> dict[str, Any]:
    return {
        "name": name,
        "admissionReviewVersions": ["v1"],
        "sideEffects": "None",
        "clientConfig": {
            "service": {"name": "guard", "namespace": "kube-system", "path": "/validate"}
        },
        "rules": [
            {
                "apiGroups": [""],
                "apiVersions": ["v1"],
                "operations": ["CREATE", "UPDATE"],
                "resources": ["configmaps"],
            }
        ],
        **settings,
    }


def configure(server: KubeApiServer, path: str, *hooks: dict[str, Any]) -> None:
    kind = "Validating" if path == VALIDATING else "Mutating"
    body = {
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": f"{kind}WebhookConfiguration",
        "metadata": {"name": "guard"},
        "webhooks": list(hooks),
    }
    assert http(server, "POST", path, body)[0] == 201


def configmap(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": "default"}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": "v"}}


def test_a_webhook_no_pod_serves_fails_a_clients_writes_but_not_the_clusters_own(
    server: KubeApiServer,
) -> None:
    held = configmap("before")
    held["metadata"]["finalizers"] = ["x/y"]
    server.store.create(held)
    configure(server, VALIDATING, webhook())

    code, status = http(server, "POST", CONFIGMAPS, configmap("new"))
    assert (code, status["reason"], status["message"]) == (500, "InternalError", NO_ENDPOINTS)
    # An update that only removes a finalizer is an UPDATE like any other.
    code, status = http(server, "PATCH", f"{CONFIGMAPS}/before", {"metadata": {"finalizers": None}})
    assert (code, status["message"]) == (500, NO_ENDPOINTS)
    assert server.store.get("v1", "ConfigMap", "before")["metadata"]["finalizers"] == ["x/y"]
    # DELETE is not among the rule's operations; the object is only marked (its finalizer).
    assert http(server, "DELETE", f"{CONFIGMAPS}/before")[0] == 200
    # In process: the cluster's own controllers, not a client.
    assert server.store.remove_finalizer("v1", "ConfigMap", "before", "default", "x/y") is None
    # The configuration itself is never subject to webhooks: it can always be removed.
    assert http(server, "DELETE", f"{VALIDATING}/guard")[0] == 200
    assert http(server, "POST", CONFIGMAPS, configmap("new"))[0] == 201


def test_failure_policy_ignore_lets_the_write_through(server: KubeApiServer) -> None:
    configure(server, VALIDATING, webhook(failurePolicy="Ignore"))
    assert http(server, "POST", CONFIGMAPS, configmap("new"))[0] == 201


def test_the_caller_answers_allow_deny_or_cannot_be_reached(server: KubeApiServer) -> None:
    calls: list[dict[str, Any]] = []

    def caller(hook: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        calls.append(request)
        name = request["object"]["metadata"]["name"]
        if name == "tls":
            raise WebhookCallError(
                "tls: failed to verify certificate: x509: certificate signed by unknown authority"
            )
        if name == "bad":
            return {"allowed": False, "status": {"code": 403, "message": "not this one"}}
        return {"allowed": True}

    server.store.webhook_caller = caller
    configure(server, VALIDATING, webhook())
    assert http(server, "POST", CONFIGMAPS, configmap("good"))[0] == 201
    (request,) = calls
    assert (request["operation"], request["name"], request["namespace"]) == (
        "CREATE",
        "good",
        "default",
    )
    assert request["resource"] == {"group": "", "version": "v1", "resource": "configmaps"}
    assert request["oldObject"] is None

    code, status = http(server, "POST", CONFIGMAPS, configmap("bad"))
    assert (code, status["message"]) == (
        403,
        'admission webhook "vcm.example.com" denied the request: not this one',
    )
    code, status = http(server, "POST", CONFIGMAPS, configmap("tls"))
    assert code == 500
    assert status["message"].endswith(
        '"https://guard.kube-system.svc:443/validate?timeout=10s": tls: failed to verify '
        "certificate: x509: certificate signed by unknown authority"
    )
    assert http(server, "PATCH", f"{CONFIGMAPS}/good", {"data": {"k": "w"}})[0] == 200
    assert calls[-1]["operation"] == "UPDATE"
    assert calls[-1]["oldObject"]["data"] == {"k": "v"}
    assert calls[-1]["object"]["data"] == {"k": "w"}


def test_a_mutating_webhook_patches_before_the_validating_ones_see_it(
    server: KubeApiServer,
) -> None:
    seen: list[str] = []
    patch = [{"op": "add", "path": "/metadata/labels", "value": {"mutated": "yes"}}]

    def caller(hook: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        labels = request["object"]["metadata"].get("labels") or {}
        seen.append(f"{hook['name']}:{labels.get('mutated')}")
        if hook["name"].startswith("m"):
            encoded = base64.b64encode(json.dumps(patch).encode()).decode()
            return {"allowed": True, "patchType": "JSONPatch", "patch": encoded}
        return {"allowed": True}

    server.store.webhook_caller = caller
    configure(server, VALIDATING, webhook())
    configure(server, MUTATING, webhook("mcm.example.com"))
    code, created = http(server, "POST", CONFIGMAPS, configmap("new"))
    assert code == 201
    assert created["metadata"]["labels"] == {"mutated": "yes"}
    assert seen == ["mcm.example.com:None", "vcm.example.com:yes"]


def test_selectors_and_subresources_decide_which_writes_a_webhook_sees(
    server: KubeApiServer,
) -> None:
    server.store.create(
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": "opted", "labels": {"inject": "on"}},
        }
    )
    configure(
        server,
        VALIDATING,
        webhook(
            namespaceSelector={"matchLabels": {"inject": "on"}},
            objectSelector={"matchExpressions": [{"key": "skip", "operator": "DoesNotExist"}]},
        ),
        webhook(
            "vdeploy.example.com",
            rules=[
                {
                    "apiGroups": ["apps"],
                    "apiVersions": ["v1"],
                    "operations": ["*"],
                    "resources": ["deployments"],
                }
            ],
        ),
    )
    # Another namespace; a skipped object: not called, so not failed.
    assert http(server, "POST", CONFIGMAPS, configmap("elsewhere"))[0] == 201
    opted = "/api/v1/namespaces/opted/configmaps"
    skipped = configmap("skipped", labels={"skip": "1"})
    skipped["metadata"]["namespace"] = "opted"
    assert http(server, "POST", opted, skipped)[0] == 201
    plain = configmap("plain")
    plain["metadata"]["namespace"] = "opted"
    assert http(server, "POST", opted, plain)[0] == 500

    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}},
        },
    }
    server.store.create(deployment)
    deployments = "/apis/apps/v1/namespaces/default/deployments/web"
    # `deployments` does not match its status subresource; `*` operations include DELETE.
    assert http(server, "PATCH", f"{deployments}/status", {"status": {"replicas": 1}})[0] == 200
    assert http(server, "DELETE", deployments)[0] == 500
