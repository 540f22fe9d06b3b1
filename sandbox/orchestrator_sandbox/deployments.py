"""Deployments become available, as the cluster's controllers and kubelets would make them.

The API server emulator stores Deployments but runs nothing; this reconciler plays the
deployment and ReplicaSet controllers and the nodes: a Deployment whose pod template's
ServiceAccount exists in its namespace becomes Available shortly after each change of
its spec, with all replicas ready. If the ServiceAccount is missing, its pods cannot be
created, and the Deployment says so in a ReplicaFailure condition, as a real one does.
If a ConfigMap or Secret its pods need is missing (an env var or envFrom taken from it, a
volume of it; none marked `optional`), the pods are created but never start, as kubelet
leaves them (CreateContainerConfigError, or a volume that fails to mount): the Deployment
stays unavailable. Pods already running are not affected: a rollout done stays available
when what its pods took goes; the next rollout is the one that cannot start. A real
Deployment's conditions do not name the pods' trouble (their containers' statuses and
Events do); the world models no pods, so the Deployment carries it in a `ContainersReady`
condition, False, with kubelet's reason and message.

Each rollout that ends available is a `deployment.available` event of the world's event
log (events.py): from when its clock started (the change, or its ServiceAccount's arrival)
to when the Deployment was made available.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from datetime import UTC, datetime
from typing import Any

from kube_api_emulator import ObjectStore
from orchestrator_sandbox import events
from orchestrator_sandbox.reconciler import Reconciler

Obj = dict[str, Any]
# The alphabet Kubernetes uses for generated name suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def service_account_of(deployment: Obj) -> str:
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    return spec.get("serviceAccountName") or spec.get("serviceAccount") or "default"


def desired_replicas(deployment: Obj) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def is_available(deployment: Obj | None) -> bool:
    """Whether the Deployment runs at least one ready pod (what a controller needs)."""
    if not deployment:
        return False
    status = deployment.get("status") or {}
    if int(status.get("availableReplicas") or 0) >= 1:
        return True
    available = any(
        c.get("type") == "Available" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return available and desired_replicas(deployment) > 0


def rolled_out(deployment: Obj) -> bool:
    """Whether the Deployment's current spec has been rolled out and is available."""
    status = deployment.get("status") or {}
    generation = deployment["metadata"].get("generation", 1)
    return is_available(deployment) and status.get("observedGeneration") == generation


def pod_template_hash(deployment: Obj) -> str:
    template = (deployment.get("spec") or {}).get("template") or {}
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_SUFFIX_ALPHABET[b % len(_SUFFIX_ALPHABET)] for b in digest[:10])


def available_status(deployment: Obj, stamp: str) -> Obj:
    name = deployment["metadata"]["name"]
    replicas = desired_replicas(deployment)
    replica_set = f"{name}-{pod_template_hash(deployment)}"
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "unavailableReplicas": None,
        "conditions": [
            _condition(
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
                stamp,
            ),
            _condition(
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{replica_set}" has successfully progressed.',
                stamp,
            ),
        ],
    }


def failed_status(deployment: Obj, stamp: str) -> Obj:
    """Pods cannot be created: the pod template's ServiceAccount does not exist."""
    meta = deployment["metadata"]
    namespace, account = meta.get("namespace") or "default", service_account_of(deployment)
    replica_set = f"{meta['name']}-{pod_template_hash(deployment)}"
    forbidden = (
        f'pods "{replica_set}-" is forbidden: error looking up service account '
        f'{namespace}/{account}: serviceaccount "{account}" not found'
    )
    status = _unavailable(deployment, replica_set, stamp)
    status.update(replicas=None, updatedReplicas=None)
    status["conditions"].append(
        _condition("ReplicaFailure", "True", "FailedCreate", forbidden, stamp)
    )
    return status


def blocked_status(deployment: Obj, stamp: str, reason: str, message: str) -> Obj:
    """Pods are created but cannot start: something they need (`reason`, `message`, as
    kubelet says it) is missing."""
    replica_set = f"{deployment['metadata']['name']}-{pod_template_hash(deployment)}"
    status = _unavailable(deployment, replica_set, stamp)
    replicas = desired_replicas(deployment)
    status.update(replicas=replicas, updatedReplicas=replicas)
    status["conditions"].append(_condition("ContainersReady", "False", reason, message, stamp))
    return status


def _unavailable(deployment: Obj, replica_set: str, stamp: str) -> Obj:
    """The status of a rollout none of whose pods is available (yet): its replica set
    progressing, the Deployment without minimum availability."""
    return {
        "observedGeneration": deployment["metadata"].get("generation", 1),
        "readyReplicas": None,
        "availableReplicas": None,
        "unavailableReplicas": desired_replicas(deployment),
        "conditions": [
            _condition(
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
                stamp,
            ),
            _condition(
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{replica_set}" is progressing.',
                stamp,
            ),
        ],
    }


def needed_objects(deployment: Obj) -> list[tuple[str, str, str | None, str]]:
    """What the pod template needs to start: (kind, name, key or None, volume or "") for
    each ConfigMap or Secret it takes an env var, envFrom or volume from, not `optional`."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    needed: list[tuple[str, str, str | None, str]] = []
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    for container in containers:
        for env in container.get("env") or []:
            source = env.get("valueFrom") or {}
            for field, kind in (("configMapKeyRef", "ConfigMap"), ("secretKeyRef", "Secret")):
                ref = source.get(field)
                if ref and not ref.get("optional"):
                    needed.append((kind, ref.get("name", ""), ref.get("key"), ""))
        for env_from in container.get("envFrom") or []:
            for field, kind in (("configMapRef", "ConfigMap"), ("secretRef", "Secret")):
                ref = env_from.get(field)
                if ref and not ref.get("optional"):
                    needed.append((kind, ref.get("name", ""), None, ""))
    for volume in spec.get("volumes") or []:
        sources = [volume, *((volume.get("projected") or {}).get("sources") or [])]
        for source in sources:
            config_map, secret = source.get("configMap"), source.get("secret")
            if config_map and not config_map.get("optional"):
                needed.append(("ConfigMap", config_map.get("name", ""), None, volume["name"]))
            if secret and not secret.get("optional"):
                name = secret.get("secretName") or secret.get("name") or ""
                needed.append(("Secret", name, None, volume["name"]))
    return needed


def _keys(obj: Obj) -> set[str]:
    # The emulator stores a Secret's stringData as written (the API server folds it in).
    return {key for field in ("data", "binaryData", "stringData") for key in obj.get(field) or {}}


def _condition(kind: str, status: str, reason: str, message: str, stamp: str) -> Obj:
    return {
        "type": kind,
        "status": status,
        "lastUpdateTime": stamp,
        "lastTransitionTime": stamp,
        "reason": reason,
        "message": message,
    }


def differs(live: Obj, wanted: Obj) -> bool:
    """Whether writing `wanted` would change `live` (timestamps aside; None means absent)."""
    if any(live.get(k) != v for k, v in wanted.items() if k != "conditions"):
        return True
    return _conditions(live) != _conditions(wanted)


def _conditions(status: Obj) -> set[tuple[Any, ...]]:
    return {
        (c.get("type"), c.get("status"), c.get("reason"), c.get("message"))
        for c in status.get("conditions") or []
    }


class DeploymentRollouts(Reconciler):
    """Makes Deployments available `settle` seconds after each spec change (polling)."""

    name = "deployments"

    def __init__(
        self,
        store: ObjectStore,
        settle: float = 0.5,
        interval: float = 0.1,
        cluster: str | None = None,
    ) -> None:
        """`settle`: the world's rollout_delay; `cluster`: named in the events it records."""
        self.store = store
        self.settle = settle
        self.interval = interval
        self.cluster = cluster
        self._pending_since: dict[tuple[str, str, int], float] = {}
        self._lock = threading.Lock()

    def tick(self) -> None:
        """One pass over every Deployment."""
        with self._lock:
            pending = set()
            for deployment in self.store.list("apps/v1", "Deployment"):
                key = self._reconcile(deployment)
                if key is not None:
                    pending.add(key)
            # Forget clocks of Deployments that settled, changed again or went away.
            self._pending_since = {k: v for k, v in self._pending_since.items() if k in pending}

    def _reconcile(self, deployment: Obj) -> tuple[str, str, int] | None:
        """Move one Deployment on; the key of its settling clock if it is still running."""
        meta = deployment["metadata"]
        namespace = meta.get("namespace") or "default"
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if not self._account_exists(namespace, service_account_of(deployment)):
            self._write(deployment, failed_status(deployment, stamp))
            return None  # the clock starts once the ServiceAccount exists
        # Pods already running keep running when what they took goes (kubelet read it as
        # they started); only the pods of a rollout not done yet cannot start.
        missing = None if rolled_out(deployment) else self._missing(namespace, deployment)
        if missing is not None:
            self._write(deployment, blocked_status(deployment, stamp, *missing))
            return None  # the clock starts once what it needs exists
        wanted = available_status(deployment, stamp)
        if not differs(deployment.get("status") or {}, wanted):
            return None
        key = (namespace, meta["name"], int(meta.get("generation") or 1))
        since = self._pending_since.setdefault(key, time.monotonic())
        if time.monotonic() - since >= self.settle:
            self._write(deployment, wanted)
            subject = f"{namespace}/{meta['name']}"
            now = time.monotonic()
            events.record("deployment.available", subject, since, now, cluster=self.cluster)
            return None
        return key

    def _account_exists(self, namespace: str, name: str) -> bool:
        # Every namespace has a "default" ServiceAccount: the cluster's token controller
        # makes it, and the emulator runs no such controller, so it is taken as given.
        return (
            name == "default" or self.store.get("v1", "ServiceAccount", name, namespace) is not None
        )

    def _missing(self, namespace: str, deployment: Obj) -> tuple[str, str] | None:
        """Kubelet's (reason, message) for the first thing the pods need that is missing."""
        for kind, name, key, volume in needed_objects(deployment):
            found = self.store.get("v1", kind, name, namespace)
            noun = kind.lower()
            if found is None and volume:
                return (
                    "FailedMount",
                    f'MountVolume.SetUp failed for volume "{volume}" : {noun} "{name}" not found',
                )
            if found is None:
                return "CreateContainerConfigError", f'{noun} "{name}" not found'
            if key is not None and key not in _keys(found):
                where = f"{namespace}/{name}"
                return "CreateContainerConfigError", f"couldn't find key {key} in {kind} {where}"
        return None

    def _write(self, deployment: Obj, status: Obj) -> None:
        if not differs(deployment.get("status") or {}, status):
            return
        meta = deployment["metadata"]
        self.store.patch_status(
            "apps/v1", "Deployment", meta["name"], meta.get("namespace"), status
        )
