"""The resource types the emulator serves: a data table of built-ins plus CRD-registered ones."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from .errors import qualified

# One resource a line under its "[apiVersion]": plural, Kind, scope, "status" if it has a
# status subresource (else "-"), comma-separated short names (or "-").
BUILTIN_TABLE = """
[v1]
namespaces                      Namespace                       cluster    status ns
services                        Service                         namespaced status svc
serviceaccounts                 ServiceAccount                  namespaced -      sa
configmaps                      ConfigMap                       namespaced -      cm
secrets                         Secret                          namespaced -      -
events                          Event                           namespaced -      ev
endpoints                       Endpoints                       namespaced -      ep
pods                            Pod                             namespaced status po
nodes                           Node                            cluster    status no
persistentvolumeclaims          PersistentVolumeClaim           namespaced status pvc
[apps/v1]
deployments                     Deployment                      namespaced status deploy
replicasets                     ReplicaSet                      namespaced status rs
statefulsets                    StatefulSet                     namespaced status sts
daemonsets                      DaemonSet                       namespaced status ds
[batch/v1]
jobs                            Job                             namespaced status -
[networking.k8s.io/v1]
ingresses                       Ingress                         namespaced status ing
ingressclasses                  IngressClass                    cluster    -      -
networkpolicies                 NetworkPolicy                   namespaced -      netpol
[discovery.k8s.io/v1]
endpointslices                  EndpointSlice                   namespaced -      -
[rbac.authorization.k8s.io/v1]
roles                           Role                            namespaced -      -
rolebindings                    RoleBinding                     namespaced -      -
clusterroles                    ClusterRole                     cluster    -      -
clusterrolebindings             ClusterRoleBinding              cluster    -      -
[apiextensions.k8s.io/v1]
customresourcedefinitions       CustomResourceDefinition        cluster    status crd,crds
[admissionregistration.k8s.io/v1]
mutatingwebhookconfigurations   MutatingWebhookConfiguration    cluster    -      -
validatingwebhookconfigurations ValidatingWebhookConfiguration  cluster    -      -
[coordination.k8s.io/v1]
leases                          Lease                           namespaced -      -
[policy/v1]
poddisruptionbudgets            PodDisruptionBudget             namespaced status pdb
[events.k8s.io/v1]
events                          Event                           namespaced -      ev
[storage.k8s.io/v1]
storageclasses                  StorageClass                    cluster    -      sc
"""

# How names are validated; everything not listed is a DNS-1123 subdomain.
NAME_RULES = {
    ("", "namespaces"): "label",
    ("", "services"): "dns1035",
    ("rbac.authorization.k8s.io", "roles"): "path",
    ("rbac.authorization.k8s.io", "rolebindings"): "path",
    ("rbac.authorization.k8s.io", "clusterroles"): "path",
    ("rbac.authorization.k8s.io", "clusterrolebindings"): "path",
}

# kubectl's `get all` expands the "all" category from discovery.
ALL_CATEGORY = {("", "pods"), ("", "services"), ("apps", "deployments"), ("apps", "replicasets")}

# Storage keys of the two kinds whose lifecycle the emulator's controllers drive.
NAMESPACES = ("", "namespaces")
CRDS = ("apiextensions.k8s.io", "customresourcedefinitions")

VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]
STATUS_VERBS = ["get", "patch", "update"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    has_status: bool = False
    singular: str = ""
    categories: tuple[str, ...] = ()
    printer_columns: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def resource(self) -> str:
        """The group-qualified resource name used in error messages."""
        return qualified(self.plural, self.group)

    @property
    def storage_key(self) -> tuple[str, str]:
        # Objects are stored per group+resource so every served version sees the same objects.
        return (self.group, self.plural)

    @property
    def name_rule(self) -> str:
        return NAME_RULES.get(self.storage_key, "subdomain")


def _parse_builtin(api_version: str, line: str) -> ResourceType:
    plural, kind, scope, status, shorts = line.split()
    group, _, version = api_version.rpartition("/")
    return ResourceType(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=scope == "namespaced",
        short_names=() if shorts == "-" else tuple(shorts.split(",")),
        has_status=status == "status",
        singular=kind.lower(),
        categories=("all",) if (group, plural) in ALL_CATEGORY else (),
    )


def builtin_types() -> list[ResourceType]:
    result, api_version = [], ""
    for line in BUILTIN_TABLE.strip().splitlines():
        if line.startswith("["):
            api_version = line.strip("[]")
        else:
            result.append(_parse_builtin(api_version, line))
    return result


def crd_types(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a CustomResourceDefinition serves, one per served version."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    kind = names.get("kind", "")
    result = []
    for version in spec.get("versions") or []:
        if not version.get("served", True):
            continue
        result.append(
            ResourceType(
                group=spec.get("group", ""),
                version=version.get("name", ""),
                plural=names.get("plural", ""),
                kind=kind,
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames") or ()),
                has_status="status" in (version.get("subresources") or {}),
                singular=names.get("singular") or kind.lower(),
                categories=tuple(names.get("categories") or ()),
                printer_columns=tuple(version.get("additionalPrinterColumns") or ()),
            )
        )
    return result


class Registry:
    """Thread-safe lookup of resource types by (group, version, plural) and by kind."""

    def __init__(self, types: list[ResourceType] | None = None) -> None:
        self._lock = threading.Lock()
        self._types: dict[tuple[str, str, str], ResourceType] = {}
        for rt in builtin_types() if types is None else types:
            self._types[(rt.group, rt.version, rt.plural)] = rt

    def lookup(self, group: str, version: str, plural: str) -> ResourceType | None:
        with self._lock:
            return self._types.get((group, version, plural))

    def by_storage_key(self, key: tuple[str, str]) -> ResourceType | None:
        """A served version of the resource stored under `key` (group, plural), if any."""
        with self._lock:
            return next((rt for rt in self._types.values() if rt.storage_key == key), None)

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self._types.values():
                if (rt.group, rt.version, rt.kind) == (group, version, kind):
                    return rt
        return None

    def replace_group_resource(self, group: str, plural: str, types: list[ResourceType]) -> None:
        with self._lock:
            for key in [k for k in self._types if (k[0], k[2]) == (group, plural)]:
                del self._types[key]
            for rt in types:
                self._types[(rt.group, rt.version, rt.plural)] = rt

    def all(self) -> list[ResourceType]:
        with self._lock:
            return list(self._types.values())

    def groups(self) -> dict[str, list[str]]:
        """Group name -> its versions, in registration order (first is preferred)."""
        result: dict[str, list[str]] = {}
        for rt in self.all():
            versions = result.setdefault(rt.group, [])
            if rt.version not in versions:
                versions.append(rt.version)
        return result

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.all() if (rt.group, rt.version) == (group, version)]
