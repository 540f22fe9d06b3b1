"""Server-side apply of the pod spec's associative lists, and the ownership creates and
updates record, as a real API server has them: containers, volumes and env vars are merged
by key, each element's fields owned on their own, so an apply keeps what another manager
set and it does not name, where an update (PUT) replaces the whole object."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from kube_api_emulator import Conflict, ObjectStore
from kube_api_emulator.api import Request, Response, Router

NAMESPACE = "kube-system"
PATH = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
SELECTOR = {"app": "controller"}


def deployment(container: dict[str, Any], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "controller", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": SELECTOR},
            "template": {
                "metadata": {"labels": SELECTOR},
                "spec": {"containers": [container], "volumes": volumes},
            },
        },
    }


# The old install's: its cluster name from a ConfigMap, its webhook certificate's Secret.
SCRIPTS = deployment(
    {
        "name": "controller",
        "image": "controller:v2.4.7",
        "env": [
            {
                "name": "CLUSTER_NAME",
                "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "clusterName"}},
            }
        ],
        "volumeMounts": [{"name": "cert", "mountPath": "/certs", "readOnly": True}],
        "ports": [{"containerPort": 9443, "name": "webhook-server", "protocol": "TCP"}],
    },
    [{"name": "cert", "secret": {"secretName": "old-tls"}}],
)
# Ours: another image, no env var, another volume at the same path.
OURS = deployment(
    {
        "name": "controller",
        "image": "controller:v3.5.0",
        "volumeMounts": [{"name": "tls", "mountPath": "/certs", "readOnly": True}],
        "ports": [{"containerPort": 9443, "name": "webhook-server"}],
    },
    [{"name": "tls", "secret": {"secretName": "new-tls"}}],
)


def call(
    router: Router,
    method: str,
    path: str,
    body: dict[str, Any],
    *,
    query: dict[str, str] | None = None,
    content_type: str = "application/json",
    user_agent: str = "",
) -> dict[str, Any]:
    request = Request(
        method=method,
        path=path,
        query=query or {},
        content_type=content_type,
        accept="application/json",
        body=json.dumps(body).encode(),
        host="localhost",
        user_agent=user_agent,
    )
    response = router.handle(request)
    assert isinstance(response, Response) and isinstance(response.body, dict)
    assert response.code < 300, response.body
    return response.body


def create(router: Router, body: dict[str, Any], manager: str) -> dict[str, Any]:
    return call(router, "POST", PATH, body, query={"fieldManager": manager})


def apply(router: Router, body: dict[str, Any], manager: str) -> dict[str, Any]:
    query = {"fieldManager": manager, "force": "true"}
    path = f"{PATH}/{body['metadata']['name']}"
    return call(
        router, "PATCH", path, body, query=query, content_type="application/apply-patch+yaml"
    )


def pod_of(obj: dict[str, Any]) -> dict[str, Any]:
    pod: dict[str, Any] = obj["spec"]["template"]["spec"]
    return pod


def managers(obj: dict[str, Any]) -> list[tuple[str, str]]:
    return [(e["manager"], e["operation"]) for e in obj["metadata"]["managedFields"]]


def test_an_apply_keeps_the_env_var_and_volume_another_manager_created_and_a_put_drops_them() -> (
    None
):
    router = Router(ObjectStore())
    created = create(router, SCRIPTS, "kubectl-client-side-apply")
    assert managers(created) == [("kubectl-client-side-apply", "Update")]

    applied = apply(router, OURS, "orchestrator")
    container = pod_of(applied)["containers"][0]
    assert container["image"] == "controller:v3.5.0"
    assert container["env"] == SCRIPTS["spec"]["template"]["spec"]["containers"][0]["env"]
    assert container["volumeMounts"] == [{"name": "tls", "mountPath": "/certs", "readOnly": True}]
    assert [v["name"] for v in pod_of(applied)["volumes"]] == ["cert", "tls"]
    assert container["ports"] == [
        {"containerPort": 9443, "name": "webhook-server", "protocol": "TCP"}
    ]
    assert managers(applied) == [
        ("kubectl-client-side-apply", "Update"),
        ("orchestrator", "Apply"),
    ]

    by_us = {"fieldManager": "orchestrator"}
    replaced = call(router, "PUT", f"{PATH}/controller", OURS, query=by_us)
    container = pod_of(replaced)["containers"][0]
    assert "env" not in container
    assert [v["name"] for v in pod_of(replaced)["volumes"]] == ["tls"]
    # What the update removed, nobody owns any more.
    assert "CLUSTER_NAME" not in json.dumps(replaced["metadata"]["managedFields"])


def test_ownership_is_recorded_per_element_as_real_servers_write_it() -> None:
    router = Router(ObjectStore())
    applied = apply(router, OURS, "orchestrator")
    fields = applied["metadata"]["managedFields"][0]["fieldsV1"]
    pod = fields["f:spec"]["f:template"]["f:spec"]
    element = pod["f:containers"]['k:{"name":"controller"}']
    assert element["."] == {} and "f:image" in element and "f:name" in element
    assert element["f:volumeMounts"]['k:{"mountPath":"/certs"}']["f:name"] == {}
    assert 'k:{"containerPort":9443,"protocol":"TCP"}' in element["f:ports"]
    assert 'k:{"name":"tls"}' in pod["f:volumes"]


def test_an_element_or_field_the_applier_stops_applying_goes_unless_another_owns_it() -> None:
    router = Router(ObjectStore())
    first = copy.deepcopy(OURS)
    first["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "A", "value": "1"},
        {"name": "B", "value": "2"},
    ]
    first["spec"]["template"]["spec"]["containers"].append({"name": "sidecar", "image": "s:1"})
    apply(router, first, "orchestrator")
    # Another manager adds a field to the sidecar (an update: a PUT of the whole object).
    live = call(router, "GET", f"{PATH}/controller", {})
    pod_of(live)["containers"][1]["args"] = ["--verbose"]
    call(router, "PUT", f"{PATH}/controller", live, query={"fieldManager": "operator"})

    second = copy.deepcopy(OURS)
    second["spec"]["template"]["spec"]["containers"][0]["env"] = [{"name": "A", "value": "1"}]
    after = apply(router, second, "orchestrator")
    controller, sidecar = pod_of(after)["containers"]
    assert controller["env"] == [{"name": "A", "value": "1"}]
    # The sidecar stays, with what the other manager set; the applier's own fields go.
    assert sidecar == {"name": "sidecar", "args": ["--verbose"]}


def test_an_apply_changing_a_field_an_update_set_conflicts_unless_forced() -> None:
    store = ObjectStore()
    router = Router(store)
    create(router, SCRIPTS, "kubectl-client-side-apply")
    with pytest.raises(Conflict) as caught:
        store.apply(OURS, "orchestrator")
    assert (
        'conflict with "kubectl-client-side-apply": '
        '.spec.template.spec.containers[name="controller"].image'
    ) in caught.value.message
    forced = store.apply(OURS, "orchestrator", force=True)
    assert pod_of(forced)["containers"][0]["image"] == "controller:v3.5.0"
    entries = {e["manager"]: e["fieldsV1"] for e in forced["metadata"]["managedFields"]}
    old = entries["kubectl-client-side-apply"]["f:spec"]["f:template"]["f:spec"]
    assert "f:image" not in old["f:containers"]['k:{"name":"controller"}']


@pytest.mark.parametrize(
    ("user_agent", "manager"),
    [
        ("kubectl/v1.31.0 (linux/amd64) kubernetes/abcdef", "kubectl"),
        ("OpenAPI-Generator/31.0.0/python", "OpenAPI-Generator"),
        ("", "unknown"),
    ],
)
def test_a_write_without_a_field_manager_is_recorded_as_its_user_agent(
    user_agent: str, manager: str
) -> None:
    router = Router(ObjectStore())
    created = call(router, "POST", PATH, OURS, user_agent=user_agent)
    assert managers(created) == [(manager, "Update")]


def test_lists_elsewhere_stay_atomic() -> None:
    router = Router(ObjectStore())
    first = copy.deepcopy(OURS)
    first["spec"]["template"]["spec"]["containers"][0]["args"] = ["--a", "--b"]
    create(router, first, "someone")
    second = copy.deepcopy(OURS)
    second["spec"]["template"]["spec"]["containers"][0]["args"] = ["--c"]
    after = apply(router, second, "orchestrator")
    assert pod_of(after)["containers"][0]["args"] == ["--c"]


def test_a_status_write_is_owned_apart_and_leaves_the_spec_owners_alone() -> None:
    router = Router(ObjectStore())
    create(router, OURS, "orchestrator")
    live = call(router, "GET", f"{PATH}/controller", {})
    live["status"] = {"replicas": 1, "availableReplicas": 1}
    by_controller = {"fieldManager": "kube-controller-manager"}
    written = call(router, "PUT", f"{PATH}/controller/status", live, query=by_controller)
    entries = written["metadata"]["managedFields"]
    assert [(e["manager"], e.get("subresource", "")) for e in entries] == [
        ("orchestrator", ""),
        ("kube-controller-manager", "status"),
    ]
    assert set(entries[1]["fieldsV1"]) == {"f:status"}
    assert "f:status" not in entries[0]["fieldsV1"]
