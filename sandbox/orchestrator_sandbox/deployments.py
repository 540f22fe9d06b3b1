"""Deployments become available, as the cluster's controllers and kubelets would make them.

The API server emulator stores Deployments but runs nothing; this reconciler plays the
deployment and ReplicaSet controllers and the nodes: a Deployment whose pod template's
ServiceAccount exists in its namespace becomes Available shortly after each change of
its spec, with all replicas ready. If the ServiceAccount is missing, its pods cannot be
created, and the Deployment says so in a ReplicaFailure condition, as a real one does.

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
    return {
        "observedGeneration": meta.get("generation", 1),
        "replicas": None,
        "updatedReplicas": None,
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
            _condition("ReplicaFailure", "True", "FailedCreate", forbidden, stamp),
        ],
    }


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

    def _write(self, deployment: Obj, status: Obj) -> None:
        if not differs(deployment.get("status") or {}, status):
            return
        meta = deployment["metadata"]
        self.store.patch_status(
            "apps/v1", "Deployment", meta["name"], meta.get("namespace"), status
        )
