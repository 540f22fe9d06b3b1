"""What the API server does to an object before storing it: validation and defaulting.

Kept to the few rules clients notice: names, Service cluster IPs, Namespace phase and
finalizer, Deployment replicas, Pod phase, and the status of CustomResourceDefinitions.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .conditions import INSTALLING, NAMES_ACCEPTED, condition
from .errors import BadRequest, invalid
from .resources import ResourceType

_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"

_NAME_CHECKS: dict[str, tuple[str, int, str]] = {
    "subdomain": (
        _SUBDOMAIN,
        253,
        "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
        "'-' or '.', and must start and end with an alphanumeric character (e.g. "
        f"'example.com', regex used for validation is '{_SUBDOMAIN}')",
    ),
    "label": (
        _LABEL,
        63,
        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
        "and must start and end with an alphanumeric character (e.g. 'my-name',  or "
        f"'123-abc', regex used for validation is '{_LABEL}')",
    ),
    "dns1035": (
        _DNS1035,
        63,
        "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start "
        "with an alphabetic character, and end with an alphanumeric character (e.g. "
        f"'my-name',  or 'abc-123', regex used for validation is '{_DNS1035}')",
    ),
}


def now() -> str:
    """The current time as RFC 3339 with second precision, the API server's format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def check_type(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Default apiVersion/kind from the endpoint; reject a body meant for another type."""
    api_version, kind = obj.get("apiVersion"), obj.get("kind")
    if api_version and api_version != rt.api_version:
        raise BadRequest(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version})"
        )
    if kind and kind != rt.kind:
        raise BadRequest(
            f"the kind in the data ({kind}) does not match the expected kind ({rt.kind})"
        )
    obj["apiVersion"], obj["kind"] = rt.api_version, rt.kind


def assign_name(rt: ResourceType, metadata: dict[str, Any]) -> str:
    name = metadata.get("name")
    if not name and metadata.get("generateName"):
        name = metadata["generateName"] + secrets.token_hex(3)[:5]
        metadata["name"] = name
    if not name:
        raise invalid(rt.kind, rt.group, "", "metadata.name", "name or generateName is required")
    validate_name(rt, name)
    return name


def validate_name(rt: ResourceType, name: str) -> None:
    if rt.name_rule == "path":
        bad = name in (".", "..") or "/" in name or "%" in name
        detail = "may not contain '/' or '%', and may not be '.' or '..'"
    else:
        pattern, limit, detail = _NAME_CHECKS[rt.name_rule]
        bad = len(name) > limit or not re.fullmatch(pattern, name)
    if bad:
        raise invalid(rt.kind, rt.group, name, "metadata.name", detail, value=name)


def default(
    rt: ResourceType,
    obj: dict[str, Any],
    old: dict[str, Any] | None,
    allocate_ip: Callable[[], str],
) -> None:
    """Fill in server-side defaults in place; `old` is the live object on updates."""
    handler = _DEFAULTERS.get(rt.storage_key)
    if handler:
        handler(obj, old, allocate_ip)


def _default_namespace(
    obj: dict[str, Any], old: dict[str, Any] | None, _ip: Callable[[], str]
) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    # The namespace controller's finalizer: set on create; only that controller removes it.
    spec = obj.setdefault("spec", {})
    if old is None:
        spec["finalizers"] = ["kubernetes"]
    elif "finalizers" in (old.get("spec") or {}):
        spec["finalizers"] = list(old["spec"]["finalizers"])
    else:
        spec.pop("finalizers", None)
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _default_service(
    obj: dict[str, Any], old: dict[str, Any] | None, ip: Callable[[], str]
) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
        spec["clusterIP"] = old_ip or ip()
    if spec.get("clusterIP") and spec["clusterIP"] != "None":
        spec.setdefault("clusterIPs", [spec["clusterIP"]])
    for port in spec.get("ports") or []:
        if isinstance(port, dict):
            port.setdefault("protocol", "TCP")
            if "port" in port:
                port.setdefault("targetPort", port["port"])


def _default_deployment(obj: dict[str, Any], old: Any, _ip: Callable[[], str]) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    if strategy.setdefault("type", "RollingUpdate") == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxSurge": "25%", "maxUnavailable": "25%"})
    _default_pod_spec(((spec.get("template") or {}).get("spec")) or {})


def _default_pod_spec(spec: dict[str, Any]) -> None:
    for container in [*(spec.get("containers") or []), *(spec.get("initContainers") or [])]:
        for port in (container.get("ports") or []) if isinstance(container, dict) else []:
            if isinstance(port, dict):
                port.setdefault("protocol", "TCP")


def _default_pod(obj: dict[str, Any], old: Any, _ip: Callable[[], str]) -> None:
    _default_pod_spec(obj.get("spec") or {})
    if old is None:
        obj.setdefault("status", {}).setdefault("phase", "Pending")


def _default_crd(obj: dict[str, Any], old: dict[str, Any] | None, _ip: Callable[[], str]) -> None:
    validate_crd(obj)
    obj["status"] = crd_status(obj, (old or {}).get("status") or {})


_DEFAULTERS: dict[tuple[str, str], Callable[..., None]] = {
    ("", "namespaces"): _default_namespace,
    ("", "services"): _default_service,
    ("", "pods"): _default_pod,
    ("apps", "deployments"): _default_deployment,
    ("apiextensions.k8s.io", "customresourcedefinitions"): _default_crd,
}


def validate_crd(crd: dict[str, Any]) -> None:
    name = crd["metadata"]["name"]
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = "apiextensions.k8s.io"
    kind = "CustomResourceDefinition"
    for field, value in (("spec.group", spec.get("group")), ("spec.names.kind", names.get("kind"))):
        if not value:
            raise invalid(kind, group, name, field, "must be specified")
    if not spec.get("versions"):
        raise invalid(
            kind,
            group,
            name,
            "spec.versions",
            "must have exactly one version marked as storage version",
        )
    expected = f"{names.get('plural')}.{spec['group']}"
    if name != expected:
        raise invalid(
            kind,
            group,
            name,
            "metadata.name",
            'must be spec.names.plural+"."+spec.group',
            value=name,
        )


def crd_status(crd: dict[str, Any], old_status: dict[str, Any]) -> dict[str, Any]:
    """The names are accepted at once; a new CRD is Installing until it is established."""
    spec = crd["spec"]
    names = dict(spec.get("names") or {})
    names.setdefault("singular", names.get("kind", "").lower())
    names.setdefault("listKind", names.get("kind", "") + "List")
    versions = spec.get("versions") or []
    storage = [v.get("name") for v in versions if v.get("storage")] or [versions[0].get("name")]
    stored = list(old_status.get("storedVersions") or [])
    stored += [v for v in storage if v not in stored]
    stamp = now()
    conditions = old_status.get("conditions") or [
        condition(NAMES_ACCEPTED, stamp),
        condition(INSTALLING, stamp),
    ]
    return {"conditions": conditions, "acceptedNames": names, "storedVersions": stored}
