"""The Kubernetes emulator's object lifecycle: finalizers and graceful deletion, Namespace and
CRD deletion, and CRD establishment, as a real API server and its controllers do them."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from emulator_support import needs_kubectl
from kubernetes import client, config, watch

from kube_api_emulator import (
    Invalid,
    KubeApiServer,
    MethodNotAllowed,
    NotFound,
    ObjectStore,
    write_kubeconfig,
)

HOLD = "example.com/hold"
CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
CRD = ("apiextensions.k8s.io/v1", "CustomResourceDefinition")
_names = itertools.count(1)

WIDGETS = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {"openAPIV3Schema": {"type": "object"}},
            }
        ],
    },
}


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")


def configmap(name: str, namespace: str = "default", finalizers: list[str] | None = None) -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if finalizers:
        metadata["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata, "data": {"k": "v"}}


def widget(name: str, namespace: str = "default", finalizers: list[str] | None = None) -> dict:
    metadata: dict[str, Any] = {"name": name, "namespace": namespace}
    if finalizers:
        metadata["finalizers"] = finalizers
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": metadata}


def condition(obj: dict | None, type_: str) -> dict:
    assert obj is not None
    return next(c for c in obj["status"]["conditions"] if c["type"] == type_)


def widgets_crd(store: ObjectStore) -> dict | None:
    return store.get(*CRD, "widgets.example.com")


def event_when(store: ObjectStore, happened: Callable[[str, dict], bool]) -> threading.Event:
    """An Event set once a change the store announces satisfies `happened`."""
    event = threading.Event()

    def check(kind: str, obj: dict) -> None:
        if happened(kind, obj):
            event.set()

    store.subscribe(check)
    return event


@pytest.fixture
def store() -> ObjectStore:
    return ObjectStore(namespace_grace_seconds=0, crd_establish_seconds=0)


@pytest.fixture(scope="module")
def server() -> Iterator[KubeApiServer]:
    with KubeApiServer(crd_establish_seconds=0) as api_server:
        yield api_server


@pytest.fixture
def namespace(server: KubeApiServer) -> str:
    name = f"life-{next(_names)}"
    server.store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


def http(
    server: KubeApiServer, method: str, path: str, body: Any = None, content_type: str = ""
) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": content_type or "application/json"}
    request = urllib.request.Request(server.url + path, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


# --- finalizers and graceful deletion -----------------------------------------------------------


def test_delete_marks_an_object_with_finalizers_until_the_last_goes(store: ObjectStore) -> None:
    seen: list[tuple[str, bool]] = []
    store.subscribe(lambda kind, obj: seen.append((kind, "deletionTimestamp" in obj["metadata"])))
    created = store.create(configmap("held", finalizers=[HOLD, "example.com/other"]))

    assert store.delete("v1", "ConfigMap", "held")
    marked = store.get("v1", "ConfigMap", "held")
    assert marked is not None
    meta = marked["metadata"]
    assert meta["deletionTimestamp"] and meta["deletionGracePeriodSeconds"] == 0
    assert meta["generation"] == created["metadata"]["generation"] + 1
    assert int(meta["resourceVersion"]) > int(created["metadata"]["resourceVersion"])

    # Deleting again changes nothing and still counts as the object existing.
    assert store.delete("v1", "ConfigMap", "held")
    again = store.get("v1", "ConfigMap", "held")
    assert again == marked

    still = store.remove_finalizer("v1", "ConfigMap", "held", None, HOLD)
    assert still is not None and still["metadata"]["finalizers"] == ["example.com/other"]
    assert store.remove_finalizer("v1", "ConfigMap", "held", None, "example.com/other") is None
    assert store.get("v1", "ConfigMap", "held") is None
    assert seen == [("ADDED", False), ("MODIFIED", True), ("MODIFIED", True), ("DELETED", True)]


def test_no_new_finalizers_on_an_object_being_deleted(store: ObjectStore) -> None:
    store.create(configmap("held", finalizers=[HOLD]))
    store.delete("v1", "ConfigMap", "held")
    with pytest.raises(Invalid) as caught:
        store.add_finalizer("v1", "ConfigMap", "held", "default", "example.com/late")
    assert caught.value.message == (
        'ConfigMap "held" is invalid: metadata.finalizers: Forbidden: no new finalizers can be '
        'added if the object is being deleted, found new finalizers []string{"example.com/late"}'
    )
    assert caught.value.details["causes"][0]["reason"] == "FieldValueForbidden"
    # One it already has is no new finalizer.
    assert store.add_finalizer("v1", "ConfigMap", "held", "default", HOLD) is not None


def test_finalizer_helpers(store: ObjectStore) -> None:
    assert store.add_finalizer("v1", "ConfigMap", "missing", None, HOLD) is None
    assert store.remove_finalizer("v1", "ConfigMap", "missing", None, HOLD) is None
    store.create(configmap("c"))
    added = store.add_finalizer("v1", "ConfigMap", "c", None, HOLD)
    assert added is not None and added["metadata"]["finalizers"] == [HOLD]
    twice = store.add_finalizer("v1", "ConfigMap", "c", None, HOLD)
    assert twice == added  # no second entry, no new resourceVersion
    kept = store.remove_finalizer("v1", "ConfigMap", "c", None, "example.com/absent")
    assert kept == added
    # Without a pending deletion, removing the last finalizer deletes nothing.
    cleared = store.remove_finalizer("v1", "ConfigMap", "c", None, HOLD)
    assert cleared is not None and "finalizers" not in cleared["metadata"]


WRITES_THAT_CLEAR = {
    "update": ("PUT", "", lambda obj: {**obj, "metadata": {**obj["metadata"], "finalizers": []}}),
    "merge patch": (
        "PATCH",
        "application/merge-patch+json",
        lambda obj: {"metadata": {"finalizers": None}},
    ),
    "strategic merge patch": (
        "PATCH",
        "application/strategic-merge-patch+json",
        lambda obj: {"metadata": {"finalizers": None}},
    ),
    "json patch": (
        "PATCH",
        "application/json-patch+json",
        lambda obj: [{"op": "remove", "path": "/metadata/finalizers"}],
    ),
}


@pytest.mark.parametrize("write", sorted(WRITES_THAT_CLEAR))
def test_any_write_that_clears_the_finalizers_deletes(
    server: KubeApiServer, namespace: str, write: str
) -> None:
    server.store.create(configmap("held", namespace, finalizers=[HOLD]))
    path = f"/api/v1/namespaces/{namespace}/configmaps/held"
    status, marked = http(server, "DELETE", path)
    assert status == 200 and marked["kind"] == "ConfigMap"
    assert marked["metadata"]["deletionTimestamp"]

    method, content_type, body = WRITES_THAT_CLEAR[write]
    status, answer = http(server, method, path, body(marked), content_type)
    assert status == 200, answer
    assert answer["metadata"]["deletionTimestamp"] and "finalizers" not in answer["metadata"]
    assert server.store.get("v1", "ConfigMap", "held", namespace) is None


def test_server_side_apply_that_drops_its_finalizer_deletes(store: ObjectStore) -> None:
    store.apply(configmap("applied", finalizers=[HOLD]), "owner")
    store.delete("v1", "ConfigMap", "applied")
    assert store.get("v1", "ConfigMap", "applied") is not None
    store.apply(configmap("applied"), "owner")
    assert store.get("v1", "ConfigMap", "applied") is None


def test_deletion_timestamp_is_set_only_by_delete(server: KubeApiServer, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps/c"
    body = configmap("c", namespace)
    body["metadata"]["deletionTimestamp"] = "2030-01-01T00:00:00Z"
    status, created = http(server, "POST", f"/api/v1/namespaces/{namespace}/configmaps", body)
    assert status == 201 and "deletionTimestamp" not in created["metadata"]

    status, refused = http(server, "PUT", path, body)
    assert (status, refused["reason"]) == (422, "Invalid")
    assert "metadata.deletionTimestamp" in refused["message"]
    assert "field is immutable" in refused["message"]

    server.store.add_finalizer("v1", "ConfigMap", "c", namespace, HOLD)
    _, marked = http(server, "DELETE", path)
    cleared = {**marked, "metadata": {**marked["metadata"], "deletionTimestamp": None}}
    status, kept = http(server, "PUT", path, cleared)
    assert status == 200
    assert kept["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]


def test_http_delete_answers_the_object_and_repeats_harmlessly(
    server: KubeApiServer, namespace: str
) -> None:
    server.store.create(configmap("held", namespace, finalizers=[HOLD]))
    path = f"/api/v1/namespaces/{namespace}/configmaps/held"
    first = http(server, "DELETE", path)
    second = http(server, "DELETE", path)
    assert first == second
    assert first[1]["metadata"]["finalizers"] == [HOLD]
    server.store.remove_finalizer("v1", "ConfigMap", "held", namespace, HOLD)
    status, gone = http(server, "DELETE", path)
    assert (status, gone["reason"]) == (404, "NotFound")


def test_a_client_watch_sees_the_mark_then_the_deletion(
    server: KubeApiServer, namespace: str, tmp_path: Path
) -> None:
    write_kubeconfig(tmp_path / "config", server.url)
    api = config.new_client_from_config(config_file=str(tmp_path / "config"))
    core = client.CoreV1Api(api)
    created = server.store.create(configmap("held", namespace, finalizers=[HOLD]))
    events = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=created["metadata"]["resourceVersion"],
        timeout_seconds=5,
    )
    core.delete_namespaced_config_map("held", namespace)
    server.store.remove_finalizer("v1", "ConfigMap", "held", namespace, HOLD)
    seen = [(e["type"], e["object"].metadata.deletion_timestamp is not None) for e in events]
    assert seen[:2] == [("MODIFIED", True), ("DELETED", True)]


# --- Namespace deletion -------------------------------------------------------------------------


def test_a_namespace_goes_only_once_its_content_has(store: ObjectStore) -> None:
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    store.create(configmap("held", "n", finalizers=[HOLD]))
    store.create(configmap("free", "n"))

    assert store.delete("v1", "Namespace", "n")
    terminating = store.get("v1", "Namespace", "n")
    assert terminating is not None and terminating["status"]["phase"] == "Terminating"
    assert terminating["spec"]["finalizers"] == ["kubernetes"]
    assert store.get("v1", "ConfigMap", "free", "n") is None
    held = store.get("v1", "ConfigMap", "held", "n")
    assert held is not None and held["metadata"]["deletionTimestamp"]
    assert condition(terminating, "NamespaceContentRemaining")["message"] == (
        "Some resources are remaining: configmaps has 1 resource instances"
    )
    assert condition(terminating, "NamespaceFinalizersRemaining")["message"] == (
        "Some content in the namespace has finalizers remaining: example.com/hold in 1 "
        "resource instances"
    )

    store.remove_finalizer("v1", "ConfigMap", "held", "n", HOLD)
    assert store.get("v1", "ConfigMap", "held", "n") is None
    assert store.get("v1", "Namespace", "n") is None


def test_a_namespace_keeps_its_content_for_its_grace_period() -> None:
    store = ObjectStore(namespace_grace_seconds=0.3)
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    store.create(configmap("held", "n", finalizers=[HOLD]))
    gone = event_when(store, lambda kind, obj: (kind, obj["kind"]) == ("DELETED", "Namespace"))
    store.delete("v1", "Namespace", "n")
    held = store.get("v1", "ConfigMap", "held", "n")
    assert held is not None and "deletionTimestamp" not in held["metadata"]
    # After the grace period the controller marks it, on its own; then the namespace waits.
    wait_for(lambda: store.get("v1", "ConfigMap", "held", "n")["metadata"].get("deletionTimestamp"))
    assert store.get("v1", "Namespace", "n") is not None
    store.remove_finalizer("v1", "ConfigMap", "held", "n", HOLD)
    assert gone.wait(5)


def test_clients_cannot_drop_the_namespace_finalizer(store: ObjectStore) -> None:
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    rt = store.registry.lookup("", "v1", "namespaces")
    assert rt is not None
    updated = store.patch_resource(rt, None, "n", lambda live: {**live, "spec": {}})
    assert updated["spec"]["finalizers"] == ["kubernetes"]


# --- CRD deletion -------------------------------------------------------------------------------


def test_a_crd_stays_terminating_while_its_objects_remain(store: ObjectStore) -> None:
    store.create(WIDGETS)
    store.create(widget("held", finalizers=[HOLD]))
    store.create(widget("free"))

    assert store.delete(*CRD, "widgets.example.com")
    crd = widgets_crd(store)
    assert crd is not None and crd["metadata"]["deletionTimestamp"]
    assert crd["metadata"]["finalizers"] == [CLEANUP]
    terminating = condition(crd, "Terminating")
    assert (terminating["status"], terminating["reason"]) == ("True", "InstanceDeletionInProgress")
    assert store.get("example.com/v1", "Widget", "free") is None
    assert store.get("example.com/v1", "Widget", "held")["metadata"]["deletionTimestamp"]
    with pytest.raises(MethodNotAllowed, match="create not allowed while custom resource"):
        store.create(widget("late"))

    store.remove_finalizer("example.com/v1", "Widget", "held", None, HOLD)
    assert widgets_crd(store) is None
    with pytest.raises(NotFound):
        store.list("example.com/v1", "Widget")


def test_a_crd_never_established_goes_at_once() -> None:
    store = ObjectStore(crd_establish_seconds=30)
    store.create(WIDGETS)
    assert store.delete(*CRD, "widgets.example.com")
    assert widgets_crd(store) is None


def test_crd_deletion_over_http(server: KubeApiServer, namespace: str) -> None:
    server.store.create(WIDGETS)
    server.store.create(widget("held", namespace, finalizers=[HOLD]))
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions/widgets.example.com"
    widgets = f"/apis/example.com/v1/namespaces/{namespace}/widgets"
    status, crd = http(server, "DELETE", crd_path)
    assert status == 200 and crd["metadata"]["deletionTimestamp"]

    status, refused = http(server, "POST", widgets, widget("late", namespace))
    assert (status, refused["reason"]) == (405, "MethodNotAllowed")
    assert http(server, "GET", f"{widgets}/held")[0] == 200

    http(
        server,
        "PATCH",
        f"{widgets}/held",
        {"metadata": {"finalizers": None}},
        "application/merge-patch+json",
    )
    assert http(server, "GET", crd_path)[0] == 404
    status, unserved = http(server, "GET", widgets)
    assert (status, unserved["message"]) == (
        404,
        "the server could not find the requested resource",
    )


# --- CRD establishment --------------------------------------------------------------------------


def test_a_new_crd_is_established_on_its_own_after_a_delay() -> None:
    store = ObjectStore(crd_establish_seconds=0.3)
    established = event_when(
        store,
        lambda kind, obj: (
            obj["kind"] == "CustomResourceDefinition"
            and condition(obj, "Established")["status"] == "True"
        ),
    )
    started = time.monotonic()
    crd = store.create(WIDGETS)
    names, installing = crd["status"]["conditions"]
    accepted = (names["type"], names["status"], names["reason"])
    assert accepted == ("NamesAccepted", "True", "NoConflicts")
    assert installing == {
        "type": "Established",
        "status": "False",
        "lastTransitionTime": installing["lastTransitionTime"],
        "reason": "Installing",
        "message": "the initial names have been accepted",
    }
    with pytest.raises(NotFound):
        store.create(widget("early"))
    with pytest.raises(NotFound):
        store.apply(widget("early"), "me")

    assert established.wait(5)  # a timer does it: nobody polls the store
    assert time.monotonic() - started >= 0.3
    done = condition(widgets_crd(store), "Established")
    assert (done["status"], done["reason"]) == ("True", "InitialNamesAccepted")
    assert store.create(widget("now"))["metadata"]["name"] == "now"


def test_an_unestablished_crd_is_not_served_over_http() -> None:
    with KubeApiServer(crd_establish_seconds=30) as api_server:
        status, _ = http(
            api_server, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", WIDGETS
        )
        assert status == 201
        for path in (
            "/apis/example.com/v1/widgets",
            "/apis/example.com/v1/namespaces/default/widgets",
            "/apis/example.com/v1",
            "/apis/example.com",
        ):
            status, body = http(api_server, "GET", path)
            assert (status, body["reason"]) == (404, "NotFound"), path
        status, body = http(
            api_server, "POST", "/apis/example.com/v1/namespaces/default/widgets", widget("w")
        )
        assert status == 404
        _, groups = http(api_server, "GET", "/apis")
        assert "example.com" not in [g["name"] for g in groups["groups"]]


def test_crd_establishment_can_be_immediate(store: ObjectStore) -> None:
    crd = store.create(WIDGETS)
    assert condition(crd, "Established")["status"] == "True"
    assert store.create(widget("w"))["kind"] == "Widget"


# --- kubectl ------------------------------------------------------------------------------------


@pytest.fixture
def kubectl(
    server: KubeApiServer, tmp_path: Path
) -> Callable[..., subprocess.CompletedProcess[str]]:
    kubeconfig = tmp_path / "config"
    write_kubeconfig(kubeconfig, server.url)
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(kubeconfig)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [shutil.which("kubectl") or "kubectl", "--cache-dir", str(tmp_path / "cache")]
        return subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=30, check=False
        )

    return run


def ingress(name: str, namespace: str) -> dict:
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "finalizers": ["ingress.k8s.aws/resources"],
        },
        "spec": {
            "ingressClassName": "alb",
            "defaultBackend": {"service": {"name": "s", "port": {"number": 80}}},
        },
    }


@needs_kubectl
def test_kubectl_sees_an_ingress_wait_for_its_finalizer(
    server: KubeApiServer, namespace: str, kubectl: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    server.store.create(ingress("x", namespace))
    started = time.monotonic()
    deleted = kubectl("delete", "ingress", "x", "-n", namespace, "--wait=false")
    assert deleted.returncode == 0, deleted.stderr
    assert 'ingress.networking.k8s.io "x" deleted' in deleted.stdout
    assert time.monotonic() - started < 10
    shown = kubectl("get", "ingress", "x", "-n", namespace, "-o", "json")
    assert shown.returncode == 0
    assert json.loads(shown.stdout)["metadata"]["deletionTimestamp"]

    server.store.remove_finalizer(
        "networking.k8s.io/v1", "Ingress", "x", namespace, "ingress.k8s.aws/resources"
    )
    gone = kubectl("get", "ingress", "x", "-n", namespace)
    assert gone.returncode != 0 and "NotFound" in gone.stderr


@needs_kubectl
def test_kubectl_delete_waits_until_the_finalizer_is_removed(
    server: KubeApiServer, namespace: str, kubectl: Callable[..., subprocess.CompletedProcess[str]]
) -> None:
    server.store.create(ingress("y", namespace))
    release = threading.Timer(
        0.5,
        server.store.remove_finalizer,
        args=("networking.k8s.io/v1", "Ingress", "y", namespace, "ingress.k8s.aws/resources"),
    )
    started = time.monotonic()
    release.start()
    deleted = kubectl("delete", "ingress", "y", "-n", namespace, "--timeout=20s")
    assert deleted.returncode == 0, deleted.stderr
    assert time.monotonic() - started >= 0.5
    assert server.store.get("networking.k8s.io/v1", "Ingress", "y", namespace) is None


def test_what_a_read_returns_is_the_reader_s_own_copy(store: ObjectStore) -> None:
    """Reads hand out copies (deep ones: the store's objects nest), so a client that
    changes what it read changes nothing stored."""
    store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default", "labels": {"a": "1"}},
            "data": {"k": "v"},
        }
    )
    read = store.get("v1", "ConfigMap", "c", "default")
    assert read is not None
    read["metadata"]["labels"]["a"] = "changed"
    read["data"]["k"] = "changed"
    again = store.get("v1", "ConfigMap", "c", "default")
    assert again is not None
    assert (again["metadata"]["labels"], again["data"]) == ({"a": "1"}, {"k": "v"})


# ---- fields an update may not change ------------------------------------------------------------


def deployment(name: str, app: str) -> dict:
    labels = {"app": app}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "c", "image": "example/c:1"}]},
            },
        },
    }


def test_a_secrets_type_and_a_deployments_selector_cannot_change(store: ObjectStore) -> None:
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "tls", "namespace": "default"},
        "data": {"k": "dg=="},
    }
    store.apply(secret, "someone")  # no type: Opaque
    with pytest.raises(Invalid) as caught:
        store.apply(secret | {"type": "kubernetes.io/tls"}, "someone")
    assert 'type: Invalid value: "kubernetes.io/tls": field is immutable' in str(caught.value)
    store.apply(secret | {"type": "Opaque"}, "someone")  # the same type, said: accepted

    store.apply(deployment("web", "web"), "someone")
    with pytest.raises(Invalid) as caught:
        store.apply(deployment("web", "web-v2"), "someone")
    assert "spec.selector: Invalid value:" in str(caught.value)
    assert "field is immutable" in str(caught.value)
    changed = deployment("web", "web")
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "example/c:2"
    store.apply(changed, "someone")  # the rest of the spec may change
