"""Tests for the in-memory Kubernetes API server emulator (kube_api_emulator)."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
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
from kubernetes import client, config, dynamic, watch
from kubernetes.client.rest import ApiException

from kube_api_emulator import (
    AlreadyExists,
    Conflict,
    KubeApiServer,
    NotFound,
    ObjectStore,
    write_kubeconfig,
)
from kube_api_emulator.apply import server_side_apply
from kube_api_emulator.errors import BadRequest, Gone, Invalid
from kube_api_emulator.patching import json_patch, strategic_merge_patch
from kube_api_emulator.selectors import (
    labels_match,
    parse_field_selector,
    parse_label_selector,
)

_names = itertools.count(1)


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    """Poll `condition` until it returns something truthy, failing after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"condition not met within {timeout}s")


def status_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


# --- fixtures ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server() -> Iterator[KubeApiServer]:
    api_server = KubeApiServer()
    api_server.start()
    yield api_server
    api_server.stop()


@pytest.fixture(scope="module")
def kubeconfig(server: KubeApiServer, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "config"
    write_kubeconfig(path, server.url)
    return path


@pytest.fixture(scope="module")
def api_client(kubeconfig: Path) -> Iterator[client.ApiClient]:
    configuration = client.Configuration()
    config.load_kube_config(config_file=str(kubeconfig), client_configuration=configuration)
    with client.ApiClient(configuration) as api:
        yield api


@pytest.fixture
def core(api_client: client.ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api_client)


@pytest.fixture
def apps(api_client: client.ApiClient) -> client.AppsV1Api:
    return client.AppsV1Api(api_client)


@pytest.fixture
def namespace(core: client.CoreV1Api) -> str:
    name = f"test-{next(_names)}"
    core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    return name


def deployment(name: str, image: str = "nginx:1.27", replicas: int = 1) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": labels},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [{"name": "main", "image": image}]},
            },
        },
    }


def ingress(name: str, host: str = "kf.example.com") -> dict[str, Any]:
    backend = {"service": {"name": name, "port": {"number": 80}}}
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {"name": name},
        "spec": {
            "ingressClassName": "alb",
            "rules": [
                {
                    "host": host,
                    "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": backend}]},
                }
            ],
        },
    }


WIDGET_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "scope": "Namespaced",
        "names": {"plural": "widgets", "kind": "Widget", "shortNames": ["wd"]},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "subresources": {"status": {}},
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


# --- the official Python client ---------------------------------------------------------------


def test_version_and_discovery(api_client: client.ApiClient) -> None:
    assert client.VersionApi(api_client).get_code().git_version.endswith("-sandbox")
    groups = {g.name for g in client.ApisApi(api_client).get_api_versions().groups}
    assert {"apps", "networking.k8s.io", "apiextensions.k8s.io"} <= groups
    resources = client.AppsV1Api(api_client).get_api_resources().resources
    by_name = {r.name: r for r in resources}
    assert by_name["deployments"].short_names == ["deploy"]
    assert "deployments/status" in by_name


def test_configmap_crud_and_label_selectors(core: client.CoreV1Api, namespace: str) -> None:
    for name, tier in (("a", "web"), ("b", "db"), ("c", None)):
        labels = {"tier": tier} if tier else {}
        body = client.V1ConfigMap(
            metadata=client.V1ObjectMeta(name=name, labels=labels), data={"k": name}
        )
        created = core.create_namespaced_config_map(namespace, body)
        assert created.metadata.uid and created.metadata.resource_version

    def names(selector: str) -> list[str]:
        items = core.list_namespaced_config_map(namespace, label_selector=selector).items
        return [cm.metadata.name for cm in items]

    assert names("tier=web") == ["a"]
    assert names("tier!=web") == ["b", "c"]
    assert names("tier in (web,db)") == ["a", "b"]
    assert names("!tier") == ["c"]

    patched = core.patch_namespaced_config_map(
        "a",
        namespace,
        {"data": {"k": None, "n": "1"}},
        _content_type="application/merge-patch+json",
    )
    assert patched.data == {"n": "1"}
    assert core.read_namespaced_config_map("a", namespace).data == {"n": "1"}

    core.delete_namespaced_config_map("a", namespace)
    with pytest.raises(ApiException) as caught:
        core.read_namespaced_config_map("a", namespace)
    assert caught.value.status == 404


def test_server_side_apply_twice_is_a_no_op(core: client.CoreV1Api, namespace: str) -> None:
    body = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cfg", "namespace": namespace, "labels": {"a": "1"}},
        "data": {"x": "1", "y": "2"},
    }

    def apply(manifest: dict[str, Any]) -> client.V1ConfigMap:
        return core.patch_namespaced_config_map(
            "cfg",
            namespace,
            manifest,
            field_manager="deployer",
            _content_type="application/apply-patch+yaml",
        )

    first = apply(body)
    second = apply(body)
    assert second.metadata.resource_version == first.metadata.resource_version
    managers = [(m.manager, m.operation) for m in second.metadata.managed_fields]
    assert managers == [("deployer", "Apply")]

    # A key the manager no longer applies is removed; others are kept.
    third = apply({**body, "data": {"x": "1"}})
    assert third.data == {"x": "1"}
    assert int(third.metadata.resource_version) > int(second.metadata.resource_version)


def test_apply_requires_field_manager(core: client.CoreV1Api, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map(
            "x",
            namespace,
            {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}},
            _content_type="application/apply-patch+yaml",
        )
    assert caught.value.status == 400


def test_dynamic_client_server_side_apply(api_client: client.ApiClient, namespace: str) -> None:
    dyn = dynamic.DynamicClient(api_client)
    deployments = dyn.resources.get(api_version="apps/v1", kind="Deployment")
    body = deployment("dyn")
    body["metadata"]["namespace"] = namespace
    first = deployments.server_side_apply(body=body, field_manager="orchestrator")
    second = deployments.server_side_apply(body=body, field_manager="orchestrator")
    assert first.metadata.resourceVersion == second.metadata.resourceVersion
    assert second.metadata.generation == 1


def test_status_subresource_changes_status_only(apps: client.AppsV1Api, namespace: str) -> None:
    created = apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    assert created.metadata.generation == 1
    assert created.status is None or created.status.observed_generation is None

    patched = apps.patch_namespaced_deployment_status(
        "web",
        namespace,
        {"spec": {"replicas": 9}, "status": {"readyReplicas": 2, "availableReplicas": 2}},
    )
    assert patched.status.ready_replicas == 2
    assert patched.spec.replicas == 2
    assert patched.metadata.generation == 1

    # The main resource ignores .status but a spec change bumps the generation.
    updated = apps.patch_namespaced_deployment(
        "web", namespace, {"spec": {"replicas": 3}, "status": {"readyReplicas": 0}}
    )
    assert updated.metadata.generation == 2
    assert updated.status.ready_replicas == 2


def test_replace_with_stale_resource_version_conflicts(
    core: client.CoreV1Api, namespace: str
) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="cm"), data={"v": "1"})
    old = core.create_namespaced_config_map(namespace, body)
    old.data = {"v": "2"}
    core.replace_namespaced_config_map("cm", namespace, old)
    old.data = {"v": "3"}
    with pytest.raises(ApiException) as caught:
        core.replace_namespaced_config_map("cm", namespace, old)
    assert caught.value.status == 409
    assert status_body(caught.value)["reason"] == "Conflict"
    assert core.read_namespaced_config_map("cm", namespace).data == {"v": "2"}


def test_missing_object_is_a_not_found_status(api_client: client.ApiClient, namespace: str) -> None:
    with pytest.raises(ApiException) as caught:
        client.NetworkingV1Api(api_client).read_namespaced_ingress("nope", namespace)
    assert caught.value.status == 404
    body = status_body(caught.value)
    assert body["kind"] == "Status"
    assert body["reason"] == "NotFound"
    assert body["message"] == 'ingresses.networking.k8s.io "nope" not found'
    assert body["details"] == {"name": "nope", "group": "networking.k8s.io", "kind": "ingresses"}


def test_create_errors(core: client.CoreV1Api, apps: client.AppsV1Api, namespace: str) -> None:
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="dup"))
    core.create_namespaced_config_map(namespace, body)
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, body)
    assert (caught.value.status, status_body(caught.value)["reason"]) == (409, "AlreadyExists")

    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment("no-such-namespace", deployment("x"))
    assert caught.value.status == 404
    assert status_body(caught.value)["message"] == 'namespaces "no-such-namespace" not found'

    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(namespace, deployment("Bad_Name"))
    assert caught.value.status == 422
    assert status_body(caught.value)["reason"] == "Invalid"

    mismatched = deployment("x")
    mismatched["metadata"]["namespace"] = "default"
    with pytest.raises(ApiException) as caught:
        apps.create_namespaced_deployment(namespace, mismatched)
    assert caught.value.status == 400


def test_ingress_and_service_defaults(api_client: client.ApiClient, namespace: str) -> None:
    net = client.NetworkingV1Api(api_client)
    net.create_namespaced_ingress(namespace, ingress("web"))
    listed = net.list_ingress_for_all_namespaces().items
    assert [(i.metadata.namespace, i.spec.rules[0].host) for i in listed] == [
        (namespace, "kf.example.com")
    ]
    service = client.CoreV1Api(api_client).create_namespaced_service(
        namespace, {"metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}
    )
    assert service.spec.type == "ClusterIP"
    assert service.spec.cluster_ip.startswith("10.100.")


def test_json_patch(core: client.CoreV1Api, namespace: str) -> None:
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="jp"), data={"a": "1"})
    )
    ops = [
        {"op": "test", "path": "/data/a", "value": "1"},
        {"op": "replace", "path": "/data/a", "value": "2"},
        {"op": "add", "path": "/metadata/labels", "value": {"x": "y"}},
    ]
    patched = core.patch_namespaced_config_map("jp", namespace, ops)
    assert (patched.data, patched.metadata.labels) == ({"a": "2"}, {"x": "y"})
    with pytest.raises(ApiException) as caught:
        core.patch_namespaced_config_map(
            "jp", namespace, [{"op": "test", "path": "/data/a", "value": "1"}]
        )
    assert caught.value.status == 422


def test_custom_resource_definition_and_objects(
    api_client: client.ApiClient, namespace: str
) -> None:
    ext = client.ApiextensionsV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    crd = ext.create_custom_resource_definition(WIDGET_CRD)
    conditions = {c.type: c.status for c in crd.status.conditions}
    assert conditions == {"Established": "False", "NamesAccepted": "True"}
    assert crd.status.accepted_names.singular == "widget"
    try:
        wait_for(lambda: established(ext, "widgets.example.com"))
        widget = {
            "apiVersion": "example.com/v1",
            "kind": "Widget",
            "metadata": {"name": "w1"},
            "spec": {"size": 3},
            "status": {"ignored": True},
        }
        created = custom.create_namespaced_custom_object(
            "example.com", "v1", namespace, "widgets", widget
        )
        assert "status" not in created
        with_status = custom.patch_namespaced_custom_object_status(
            "example.com", "v1", namespace, "widgets", "w1", {"status": {"ready": True}}
        )
        assert with_status["status"] == {"ready": True}
        assert with_status["metadata"]["generation"] == 1
        listed = custom.list_namespaced_custom_object("example.com", "v1", namespace, "widgets")
        assert [w["metadata"]["name"] for w in listed["items"]] == ["w1"]
    finally:
        ext.delete_custom_resource_definition("widgets.example.com")
    with pytest.raises(ApiException) as caught:
        custom.list_namespaced_custom_object("example.com", "v1", namespace, "widgets")
    assert caught.value.status == 404


def established(ext: client.ApiextensionsV1Api, name: str) -> bool:
    crd = ext.read_custom_resource_definition(name)
    return any(c.type == "Established" and c.status == "True" for c in crd.status.conditions)


def test_watch_sees_added_modified_deleted(core: client.CoreV1Api, namespace: str) -> None:
    seen: list[tuple[str, str]] = []
    watcher = watch.Watch()
    started = threading.Event()

    def consume() -> None:
        stream = watcher.stream(core.list_namespaced_config_map, namespace, timeout_seconds=10)
        started.set()
        for event in stream:
            seen.append((event["type"], event["object"].metadata.name))
            if event["type"] == "DELETED":
                watcher.stop()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    started.wait(5)
    # The stream opens lazily: a first object, announced as ADDED either way, proves it is live.
    body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="first"))
    core.create_namespaced_config_map(namespace, body)
    wait_for(lambda: ("ADDED", "first") in seen)
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "w"}))
    core.patch_namespaced_config_map("w", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("w", namespace)
    thread.join(5)
    assert not thread.is_alive()
    assert seen == [("ADDED", "first"), ("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_from_resource_version(core: client.CoreV1Api, namespace: str) -> None:
    first = core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="old"))
    )
    core.create_namespaced_config_map(
        namespace, client.V1ConfigMap(metadata=client.V1ObjectMeta(name="new"))
    )
    events = watch.Watch().stream(
        core.list_namespaced_config_map,
        namespace,
        resource_version=first.metadata.resource_version,
        timeout_seconds=5,
    )
    # Only changes after the given version come, so "old" is not replayed first.
    event = next(events)
    events.close()
    assert (event["type"], event["object"].metadata.name) == ("ADDED", "new")


def test_recorded_events_are_listable_by_field_selector(
    server: KubeApiServer, core: client.CoreV1Api, namespace: str
) -> None:
    target = server.store.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "t", "namespace": namespace}}
    )
    server.store.record_event(target, "Synced", "all good")
    event = server.store.record_event(target, "Synced", "all good")
    server.store.record_event(target, "Failed", "boom", type="Warning")
    assert event["count"] == 2
    selector = "involvedObject.name=t,involvedObject.kind=ConfigMap,type=Warning"
    listed = core.list_namespaced_event(namespace, field_selector=selector).items
    assert [(e.reason, e.count) for e in listed] == [("Failed", 1)]


def test_deleted_namespace_terminates_then_goes_with_its_objects(
    server: KubeApiServer, core: client.CoreV1Api, namespace: str
) -> None:
    core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "gone"}))
    core.delete_namespace(namespace)
    assert core.read_namespace(namespace).status.phase == "Terminating"
    with pytest.raises(ApiException) as caught:
        core.create_namespaced_config_map(namespace, client.V1ConfigMap(metadata={"name": "new"}))
    assert (caught.value.status, status_body(caught.value)["reason"]) == (403, "Forbidden")
    wait_for(lambda: server.store.get("v1", "Namespace", namespace) is None)
    assert server.store.get("v1", "ConfigMap", "gone", namespace) is None


def http(
    server: KubeApiServer, method: str, path: str, body: Any = None, headers: dict | None = None
) -> tuple[int, str, Any]:
    """One raw request: (status, content type, decoded JSON or text)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(server.url + path, data, headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            status, content_type, raw = (
                response.status,
                response.headers["Content-Type"],
                response.read(),
            )
    except urllib.error.HTTPError as err:
        status, content_type, raw = err.code, err.headers["Content-Type"], err.read()
    return status, content_type, json.loads(raw) if "json" in content_type else raw.decode()


def test_rest_conventions_over_raw_http(server: KubeApiServer, namespace: str) -> None:
    assert http(server, "GET", "/healthz")[::2] == (200, "ok")
    # Asked for aggregated discovery, it answers legacy JSON, which kubectl falls back from.
    aggregated = {"Accept": "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"}
    status, content_type, body = http(server, "GET", "/apis", headers=aggregated)
    assert (status, content_type, body["kind"]) == (200, "application/json", "APIGroupList")

    assert http(server, "GET", "/apis/example.org/v1/gadgets")[0] == 404
    assert http(server, "POST", "/api/v1/configmaps", {"metadata": {"name": "x"}})[0] == 405
    cms = f"/api/v1/namespaces/{namespace}/configmaps"
    http(server, "POST", cms, {"metadata": {"name": "t", "labels": {"del": "yes"}}})
    patch = http(server, "PATCH", f"{cms}/t", {}, {"Content-Type": "text/plain"})
    assert (patch[0], patch[2]["reason"]) == (415, "UnsupportedMediaType")

    table_accept = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    status, _, table = http(server, "GET", f"{cms}?includeObject=Object", headers=table_accept)
    assert table["kind"] == "Table"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Data", "Age"]
    assert table["rows"][0]["cells"][:2] == ["t", 0]
    assert table["rows"][0]["object"]["kind"] == "ConfigMap"

    status, _, deleted = http(server, "DELETE", f"{cms}?labelSelector=del%3Dyes")
    assert (status, [i["metadata"]["name"] for i in deleted["items"]]) == (200, ["t"])


# --- the in-process store ---------------------------------------------------------------------


def test_store_api_and_subscribers() -> None:
    store = ObjectStore()
    seen: list[tuple[str, str]] = []
    store.subscribe(lambda kind, obj: seen.append((kind, obj["metadata"]["name"])))
    dep = deployment("app")
    created = store.create(dep)
    assert created["metadata"]["namespace"] == "default"
    with pytest.raises(AlreadyExists):
        store.create(dep)
    with pytest.raises(Conflict):  # AlreadyExists is a Conflict
        store.create(dep)

    applied = store.apply(dep, "sim")["metadata"]["resourceVersion"]
    assert store.apply(dep, "sim")["metadata"]["resourceVersion"] == applied
    ready = store.patch_status("apps/v1", "Deployment", "app", "default", {"readyReplicas": 1})
    assert ready["status"] == {"readyReplicas": 1}
    assert ready["metadata"]["generation"] == created["metadata"]["generation"]
    assert [d["metadata"]["name"] for d in store.list("apps/v1", "Deployment", None, "app")] == [
        "app"
    ]
    assert store.delete("apps/v1", "Deployment", "app")
    assert not store.delete("apps/v1", "Deployment", "app")
    assert store.get("apps/v1", "Deployment", "app") is None
    with pytest.raises(NotFound):
        store.patch_status("apps/v1", "Deployment", "app", "default", {})
    assert [kind for kind, name in seen if name == "app"] == [
        "ADDED",
        "MODIFIED",
        "MODIFIED",
        "DELETED",
    ]


def test_store_generates_names_and_serialises_writes() -> None:
    store = ObjectStore()
    made = store.create({"apiVersion": "v1", "kind": "Secret", "metadata": {"generateName": "s-"}})
    assert made["metadata"]["name"].startswith("s-") and len(made["metadata"]["name"]) == 7

    versions: list[str] = []

    def writer(worker: int) -> None:
        for i in range(20):
            cm = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"c{worker}-{i}"}}
            versions.append(store.create(cm)["metadata"]["resourceVersion"])

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(versions)) == 160
    assert len(store.list("v1", "ConfigMap", "default")) == 160


def test_watch_from_an_expired_resource_version_is_gone() -> None:
    store = ObjectStore(history_size=2)
    for name in ("a", "b", "c"):
        store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}})
    rt = store.registry.lookup("", "v1", "configmaps")
    assert rt is not None
    events = store.watch_resource(rt, "default", 1, time.monotonic() + 1, bool, lambda: False)
    with pytest.raises(Gone):
        next(events)


def test_namespace_grace_can_be_zero() -> None:
    store = ObjectStore(namespace_grace_seconds=0)
    store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "n"}})
    store.create(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "n"}}
    )
    assert store.delete("v1", "Namespace", "n")
    assert store.get("v1", "Namespace", "n") is None
    assert store.list("v1", "ConfigMap") == []


def test_store_validates_names() -> None:
    store = ObjectStore()
    with pytest.raises(Invalid):
        store.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a.b"}})
    # RBAC names are path segments, so colons are fine there.
    role = {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole"}
    store.create({**role, "metadata": {"name": "system:sandbox"}})


# --- unit tests: selectors, apply, patches ----------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("a in (x, y),b notin (z)", {"a": "y", "b": "w"}, True),
        ("a in (x,y),b notin (z)", {"a": "y", "b": "z"}, False),
        ("app.kubernetes.io/name=web,tier", {"app.kubernetes.io/name": "web", "tier": "1"}, True),
        ("n>3", {"n": "4"}, True),
        ("", {}, True),
    ],
)
def test_label_selectors(selector: str, labels: dict[str, str], expected: bool) -> None:
    obj = {"metadata": {"labels": labels}}
    assert labels_match(parse_label_selector(selector), obj) is expected


def test_label_selector_rejects_garbage() -> None:
    with pytest.raises(BadRequest):
        parse_label_selector("a in x")


def test_field_selector() -> None:
    requirements = parse_field_selector("involvedObject.kind=Ingress,type!=Normal")
    event = {"involvedObject": {"kind": "Ingress"}, "type": "Warning"}
    assert all(r.matches(event) for r in requirements)


def _managers(obj: dict[str, Any]) -> list[str]:
    return [entry["manager"] for entry in obj["metadata"]["managedFields"]]


def test_apply_merges_maps_and_replaces_lists() -> None:
    live = {
        "apiVersion": "v1",
        "kind": "X",
        "metadata": {"name": "n", "labels": {"keep": "1"}},
        "spec": {"list": [1, 2], "other": "kept"},
    }
    applied = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}, "spec": {"list": [3]}}
    merged = server_side_apply(live, applied, manager="m", force=False, now="t")
    assert merged["spec"] == {"list": [3], "other": "kept"}
    assert merged["metadata"]["labels"] == {"keep": "1"}
    assert merged["metadata"]["managedFields"][0]["fieldsV1"] == {"f:spec": {"f:list": {}}}


def test_apply_removes_fields_the_manager_stopped_applying() -> None:
    config = {
        "apiVersion": "v1",
        "kind": "X",
        "metadata": {"name": "n", "labels": {"a": "1", "b": "2"}},
        "spec": {"x": 1},
    }
    first = server_side_apply(None, config, manager="m", force=False, now="t1")
    second_config = {**config, "metadata": {"name": "n", "labels": {"a": "1"}}}
    second = server_side_apply(first, second_config, manager="m", force=False, now="t2")
    assert second["metadata"]["labels"] == {"a": "1"}
    # Unchanged ownership keeps its time, so re-applying is recognisably a no-op.
    third = server_side_apply(second, second_config, manager="m", force=False, now="t3")
    assert third == second


def test_apply_conflicts_between_managers() -> None:
    base = {"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}}
    first = server_side_apply(None, {**base, "spec": {"x": 1}}, manager="a", force=False, now="t")
    with pytest.raises(Conflict) as caught:
        server_side_apply(first, {**base, "spec": {"x": 2}}, manager="b", force=False, now="t")
    assert 'conflict with "a": .spec.x' in caught.value.message
    same = server_side_apply(first, {**base, "spec": {"x": 1}}, manager="b", force=False, now="t")
    assert _managers(same) == ["a", "b"]
    forced = server_side_apply(first, {**base, "spec": {"x": 2}}, manager="b", force=True, now="t")
    assert forced["spec"] == {"x": 2}
    assert _managers(forced) == ["b"]


def test_strategic_merge_patch_merges_containers_by_name() -> None:
    live = {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]}
    patch = {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "1"}]}
    assert strategic_merge_patch(live, patch)["containers"] == [
        {"name": "a", "image": "1"},
        {"name": "b", "image": "2"},
        {"name": "c", "image": "1"},
    ]
    removed = strategic_merge_patch(live, {"containers": [{"name": "a", "$patch": "delete"}]})
    assert removed["containers"] == [{"name": "b", "image": "1"}]


def test_json_patch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    ops = [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "remove", "path": "/a/0"},
        {"op": "move", "from": "/b/c", "path": "/d"},
        {"op": "copy", "from": "/d", "path": "/e~1f"},
    ]
    assert json_patch(doc, ops) == {"a": [2, 3], "b": {}, "d": 1, "e/f": 1}
    with pytest.raises(Invalid):
        json_patch(doc, [{"op": "remove", "path": "/missing"}])


def test_kubeconfig_is_private(tmp_path: Path) -> None:
    path = tmp_path / "config"
    write_kubeconfig(path, "http://127.0.0.1:1", context="c", namespace="ns", token="t")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    cfg = client.Configuration()
    config.load_kube_config(config_file=str(path), client_configuration=cfg)
    assert cfg.host == "http://127.0.0.1:1"
    assert cfg.auth_settings()["BearerToken"]["value"] == "Bearer t"


# --- kubectl ----------------------------------------------------------------------------------

KUBECTL = shutil.which("kubectl")

MANIFEST = """
apiVersion: v1
kind: Namespace
metadata:
  name: kf
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: kf
  labels: {app: web}
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: nginx:1.27
        ports:
        - containerPort: 80
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: kf
  annotations:
    alb.ingress.kubernetes.io/scheme: internet-facing
spec:
  ingressClassName: alb
  rules:
  - host: kf.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
"""


@pytest.fixture(scope="module")
def kubectl(
    kubeconfig: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., subprocess.CompletedProcess[str]]:
    cache = tmp_path_factory.mktemp("kubectl-cache")
    env = {**os.environ, "HOME": str(cache), "KUBECONFIG": str(kubeconfig)}

    def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        command = [KUBECTL or "kubectl", "--kubeconfig", str(kubeconfig), "--cache-dir", str(cache)]
        result = subprocess.run(
            [*command, *args], capture_output=True, text=True, env=env, timeout=30, check=False
        )
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stderr}")
        return result

    return run


@needs_kubectl
def test_kubectl_workflow(
    kubectl: Callable[..., subprocess.CompletedProcess[str]],
    server: KubeApiServer,
    tmp_path: Path,
) -> None:
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(MANIFEST)
    apply = ("apply", "--server-side", "--validate=false", "-f", str(manifest))
    assert "deployment.apps/web serverside-applied" in kubectl(*apply).stdout
    before = server.store.get("apps/v1", "Deployment", "web", "kf")
    kubectl(*apply)
    after = server.store.get("apps/v1", "Deployment", "web", "kf")
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]

    ing = json.loads(kubectl("get", "ingress", "-n", "kf", "web", "-o", "json").stdout)
    assert ing["spec"]["rules"][0]["host"] == "kf.example.com"

    table = kubectl("get", "deploy", "-A").stdout.splitlines()
    assert table[0].split()[:3] == ["NAMESPACE", "NAME", "READY"]
    assert table[1].split()[:3] == ["kf", "web", "0/2"]

    server.store.record_event(ing, "SuccessfullyReconciled", "Successfully reconciled")
    described = kubectl("describe", "ingress", "-n", "kf", "web").stdout
    assert "kf.example.com" in described
    assert "SuccessfullyReconciled" in described

    patch = ("patch", "deploy", "web", "-n", "kf", "--type", "merge", "-p")
    kubectl(*patch, '{"spec":{"replicas":3}}')
    status = '{"status":{"readyReplicas":3,"availableReplicas":3,"updatedReplicas":3}}'
    kubectl(*patch, status, "--subresource=status")
    kubectl("label", "deploy", "web", "-n", "kf", "tier=frontend")
    row = kubectl("get", "deploy", "-n", "kf", "-l", "tier=frontend").stdout.splitlines()[1]
    assert row.split()[:2] == ["web", "3/3"]
    assert "web" in kubectl("describe", "deployment", "-n", "kf", "web").stdout

    started = time.monotonic()
    assert "deleted" in kubectl("delete", "ingress", "-n", "kf", "web").stdout
    assert time.monotonic() - started < 10
    assert server.store.get("networking.k8s.io/v1", "Ingress", "web", "kf") is None

    # As on a real cluster, the namespace first listed is still Terminating while the rest go.
    deleted = kubectl("delete", "--ignore-not-found", "-f", str(manifest)).stdout
    assert 'deployment.apps "web" deleted' in deleted
    assert server.store.get("v1", "Namespace", "kf") is None


@needs_kubectl
def test_kubectl_errors(
    kubectl: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path
) -> None:
    missing = kubectl("get", "configmap", "nope", "-n", "default", check=False)
    assert missing.returncode != 0
    assert 'Error from server (NotFound): configmaps "nope" not found' in missing.stderr

    manifest = tmp_path / "cm.yaml"
    manifest.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: twice}\n")
    kubectl("create", "--validate=false", "-f", str(manifest))
    duplicate = kubectl("create", "--validate=false", "-f", str(manifest), check=False)
    assert duplicate.returncode != 0
    assert "Error from server (AlreadyExists)" in duplicate.stderr
