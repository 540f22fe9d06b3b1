"""A Deployment whose pods need a ConfigMap or Secret that is missing never becomes
available, as on a real cluster: kubelet cannot start the containers
(CreateContainerConfigError) or mount the volume (FailedMount). Played in process."""

from __future__ import annotations

from typing import Any

import pytest

from kube_api_emulator import ObjectStore
from orchestrator_sandbox import setupscript
from orchestrator_sandbox.deployments import DeploymentRollouts, is_available

NAMESPACE = "kube-system"


def deployment(pod: dict[str, Any]) -> dict[str, Any]:
    labels = {"app": "worker"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "worker", "namespace": NAMESPACE},
        "spec": {
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": pod},
        },
    }


def container(**more: Any) -> dict[str, Any]:
    return {"name": "main", "image": "worker:1", **more}


def config_map(name: str, data: dict[str, str]) -> dict[str, Any]:
    meta = {"name": name, "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}


def secret(name: str) -> dict[str, Any]:
    meta = {"name": name, "namespace": NAMESPACE}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "data": {"tls.crt": "eA=="}}


def rolled_out(store: ObjectStore, pod: dict[str, Any]) -> dict[str, Any]:
    """The Deployment after one pass of the world's rollouts (no settling delay)."""
    if store.get("apps/v1", "Deployment", "worker", NAMESPACE) is None:
        store.create(deployment(pod))
    DeploymentRollouts(store, settle=0).tick()
    found = store.get("apps/v1", "Deployment", "worker", NAMESPACE)
    assert found is not None
    return found


def why_not_ready(found: dict[str, Any]) -> tuple[str, str]:
    conditions = {c["type"]: c for c in found["status"]["conditions"]}
    assert conditions["Available"]["status"] == "False"
    ready = conditions["ContainersReady"]
    assert ready["status"] == "False"
    return ready["reason"], ready["message"]


CLUSTER_NAME = {
    "name": "CLUSTER_NAME",
    "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "clusterName"}},
}
CERT_VOLUME = {"name": "cert", "secret": {"secretName": "webhook-tls"}}


@pytest.mark.parametrize(
    ("pod", "reason", "message"),
    [
        (
            {"containers": [container(env=[CLUSTER_NAME])]},
            "CreateContainerConfigError",
            'configmap "settings" not found',
        ),
        (
            {"containers": [container(envFrom=[{"secretRef": {"name": "creds"}}])]},
            "CreateContainerConfigError",
            'secret "creds" not found',
        ),
        (
            {"containers": [container()], "volumes": [CERT_VOLUME]},
            "FailedMount",
            'MountVolume.SetUp failed for volume "cert" : secret "webhook-tls" not found',
        ),
        (
            {
                "containers": [container()],
                "volumes": [
                    {
                        "name": "bundle",
                        "projected": {"sources": [{"configMap": {"name": "trust"}}]},
                    }
                ],
            },
            "FailedMount",
            'MountVolume.SetUp failed for volume "bundle" : configmap "trust" not found',
        ),
    ],
)
def test_a_deployment_whose_pods_need_a_missing_object_stays_unavailable(
    pod: dict[str, Any], reason: str, message: str
) -> None:
    store = ObjectStore()
    found = rolled_out(store, pod)
    assert not is_available(found)
    assert why_not_ready(found) == (reason, message)


def test_it_becomes_available_once_what_its_pods_need_exists() -> None:
    store = ObjectStore()
    pod = {"containers": [container(env=[CLUSTER_NAME])], "volumes": [CERT_VOLUME]}
    assert why_not_ready(rolled_out(store, pod))[0] == "CreateContainerConfigError"
    store.create(config_map("settings", {"other": "x"}))
    assert why_not_ready(rolled_out(store, pod)) == (
        "CreateContainerConfigError",
        f"couldn't find key clusterName in ConfigMap {NAMESPACE}/settings",
    )
    store.delete("v1", "ConfigMap", "settings", NAMESPACE)
    store.create(config_map("settings", {"clusterName": "kube-eks-cluster"}))
    assert why_not_ready(rolled_out(store, pod))[0] == "FailedMount"
    store.create(secret("webhook-tls"))
    found = rolled_out(store, pod)
    assert is_available(found)
    assert "ContainersReady" not in {c["type"] for c in found["status"]["conditions"]}


def test_optional_references_do_not_hold_the_pods() -> None:
    env = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k", "optional": True}}}
    ]
    pod = {
        "containers": [
            container(env=env, envFrom=[{"configMapRef": {"name": "c", "optional": True}}])
        ],
        "volumes": [{"name": "v", "configMap": {"name": "c", "optional": True}}],
    }
    assert is_available(rolled_out(ObjectStore(), pod))


def test_running_pods_keep_running_when_what_they_took_goes_but_the_next_rollout_is_stuck() -> None:
    store = ObjectStore()
    store.create(config_map("settings", {"clusterName": "kube-eks-cluster"}))
    pod = {"containers": [container(env=[CLUSTER_NAME])]}
    assert is_available(rolled_out(store, pod))
    store.delete("v1", "ConfigMap", "settings", NAMESPACE)
    assert is_available(rolled_out(store, pod))

    changed = store.get("apps/v1", "Deployment", "worker", NAMESPACE)
    assert changed is not None
    changed["spec"]["template"]["spec"]["containers"][0]["image"] = "worker:2"
    rt = store.registry.by_kind("apps/v1", "Deployment")
    assert rt is not None
    store.update_resource(rt, NAMESPACE, "worker", changed)
    found = rolled_out(store, pod)
    assert not is_available(found)
    assert why_not_ready(found) == ("CreateContainerConfigError", 'configmap "settings" not found')


def test_the_setup_scripts_controller_applied_over_keeps_its_env_and_volume_so_they_hold_it() -> (
    None
):
    """The script's kustomize objects are owned as `kubectl apply` leaves them: an apply
    by another manager that does not name the ConfigMap env var and the Secret volume
    keeps them, and once those objects go, the next rollout cannot start."""
    store = ObjectStore(crd_establish_seconds=0)
    setupscript.create_service_account(store, "arn:aws:iam::123456789012:role/script")
    setupscript.apply_controller(store, "kube-eks-cluster")
    name = (setupscript.SERVICE_ACCOUNT, setupscript.NAMESPACE)
    theirs = store.get("apps/v1", "Deployment", *name)
    assert theirs is not None
    entries = theirs["metadata"]["managedFields"]
    assert [(e["manager"], e["operation"]) for e in entries] == [
        (setupscript.KUBECTL_APPLY, "Update")
    ]

    ours = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name[0], "namespace": name[1]},
        "spec": {
            "selector": theirs["spec"]["selector"],
            "template": {
                "metadata": theirs["spec"]["template"]["metadata"],
                "spec": {
                    "containers": [{"name": "controller", "image": "controller:v3.5.0"}],
                    "volumes": [{"name": "tls", "secret": {"secretName": "ours"}}],
                },
            },
        },
    }
    store.create(secret("ours"))
    applied = store.apply(ours, "orchestrator", force=True)
    pod = applied["spec"]["template"]["spec"]
    assert pod["containers"][0]["env"][0]["name"] == "CLUSTER_NAME"
    assert [v["name"] for v in pod["volumes"]] == ["cert", "tls"]

    store.delete("v1", "ConfigMap", setupscript.CONTROLLER_CONFIG, setupscript.NAMESPACE)
    store.delete("v1", "Secret", setupscript.WEBHOOK_SECRET, setupscript.NAMESPACE)
    DeploymentRollouts(store, settle=0).tick()
    found = store.get("apps/v1", "Deployment", *name)
    assert found is not None and not is_available(found)
    reason, message = why_not_ready(found)
    assert (reason, message) == (
        "CreateContainerConfigError",
        f'configmap "{setupscript.CONTROLLER_CONFIG}" not found',
    )
