"""meta.k8s.io/v1 Tables, which `kubectl get` asks for (Accept: ...;as=Table)."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceType

Obj = dict[str, Any]
Cell = Callable[[Obj], Any]


def _get(obj: Any, *path: str | int) -> Any:
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and -len(obj) <= key < len(obj):
            obj = obj[key]
        else:
            return None
    return obj


def human_duration(seconds: float) -> str:
    """Like apimachinery's HumanDuration: 45s, 3m20s, 15m, 5h10m, 3d4h, 400d, 2y30d."""
    s = int(seconds)
    if s < 0:
        return "0s" if s > -2 else "<invalid>"
    minutes, hours, days = s // 60, s // 3600, s // 86400
    if s < 120:
        return f"{s}s"
    if minutes < 10:
        return f"{minutes}m{s % 60}s" if s % 60 else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    if hours < 8:
        return f"{hours}h{minutes % 60}m" if minutes % 60 else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    if hours < 192:
        return f"{days}d{hours % 24}h" if hours % 24 else f"{days}d"
    if days < 730:
        return f"{days}d"
    years = days // 365
    return f"{years}y{days % 365}d" if years < 8 else f"{years}y"


def age_of(timestamp: Any) -> str:
    if not isinstance(timestamp, str) or not timestamp:
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


def _age(obj: Obj) -> str:
    return age_of(_get(obj, "metadata", "creationTimestamp"))


def _name(obj: Obj) -> str:
    return _get(obj, "metadata", "name") or ""


def _or_none(value: Any) -> str:
    return str(value) if value not in (None, "", []) else "<none>"


def _lb_addresses(obj: Obj) -> str:
    entries = _get(obj, "status", "loadBalancer", "ingress") or []
    return ",".join(e.get("hostname") or e.get("ip") or "" for e in entries if isinstance(e, dict))


def _ingress_hosts(obj: Obj) -> str:
    hosts = [r.get("host") for r in _get(obj, "spec", "rules") or [] if isinstance(r, dict)]
    return ",".join(h for h in hosts if h) or "*"


def _ingress_ports(obj: Obj) -> str:
    return "80, 443" if _get(obj, "spec", "tls") else "80"


def _service_external(obj: Obj) -> str:
    spec = obj.get("spec") or {}
    if spec.get("type") == "ExternalName":
        return spec.get("externalName") or "<none>"
    if spec.get("type") == "LoadBalancer":
        return _lb_addresses(obj) or "<pending>"
    return _or_none(",".join(spec.get("externalIPs") or []))


def _service_ports(obj: Obj) -> str:
    parts = []
    for port in _get(obj, "spec", "ports") or []:
        node = f":{port['nodePort']}" if port.get("nodePort") else ""
        parts.append(f"{port.get('port')}{node}/{port.get('protocol', 'TCP')}")
    return _or_none(",".join(parts))


def _pod_ready(obj: Obj) -> str:
    statuses = _get(obj, "status", "containerStatuses") or []
    ready = sum(1 for s in statuses if isinstance(s, dict) and s.get("ready"))
    return f"{ready}/{len(_get(obj, 'spec', 'containers') or [])}"


def _restarts(obj: Obj) -> int:
    statuses = _get(obj, "status", "containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses if isinstance(s, dict))


def _involved(obj: Obj) -> str:
    involved = obj.get("involvedObject") or {}
    return f"{str(involved.get('kind', '')).lower()}/{involved.get('name', '')}"


def _replicas(*path: str) -> Cell:
    return lambda obj: int(_get(obj, *path) or 0)


NAME: tuple[str, str, Cell] = ("Name", "string", _name)
AGE: tuple[str, str, Cell] = ("Age", "string", _age)

# Extra columns per (group, kind), between NAME and AGE, like the real server's printers.
COLUMNS: dict[tuple[str, str], list[tuple[str, str, Cell]]] = {
    ("", "Namespace"): [("Status", "string", lambda o: _get(o, "status", "phase") or "")],
    ("", "ConfigMap"): [("Data", "integer", lambda o: len(o.get("data") or {}))],
    ("", "Secret"): [
        ("Type", "string", lambda o: o.get("type") or "Opaque"),
        ("Data", "integer", lambda o: len(o.get("data") or {})),
    ],
    ("", "Service"): [
        ("Type", "string", lambda o: _get(o, "spec", "type") or "ClusterIP"),
        ("Cluster-IP", "string", lambda o: _or_none(_get(o, "spec", "clusterIP"))),
        ("External-IP", "string", _service_external),
        ("Port(s)", "string", _service_ports),
    ],
    ("", "Pod"): [
        ("Ready", "string", _pod_ready),
        ("Status", "string", lambda o: _get(o, "status", "phase") or "Unknown"),
        ("Restarts", "integer", _restarts),
    ],
    ("apps", "Deployment"): [
        (
            "Ready",
            "string",
            lambda o: (
                f"{_get(o, 'status', 'readyReplicas') or 0}/{_get(o, 'spec', 'replicas') or 0}"
            ),
        ),
        ("Up-to-date", "integer", _replicas("status", "updatedReplicas")),
        ("Available", "integer", _replicas("status", "availableReplicas")),
    ],
    ("apps", "ReplicaSet"): [
        ("Desired", "integer", _replicas("spec", "replicas")),
        ("Current", "integer", _replicas("status", "replicas")),
        ("Ready", "integer", _replicas("status", "readyReplicas")),
    ],
    ("networking.k8s.io", "Ingress"): [
        ("Class", "string", lambda o: _or_none(_get(o, "spec", "ingressClassName"))),
        ("Hosts", "string", _ingress_hosts),
        ("Address", "string", _lb_addresses),
        ("Ports", "string", _ingress_ports),
    ],
    ("networking.k8s.io", "IngressClass"): [
        ("Controller", "string", lambda o: _get(o, "spec", "controller") or ""),
    ],
}

# Core events read best as a log line, so they replace the NAME/AGE layout.
EVENT_COLUMNS: list[tuple[str, str, Cell]] = [
    ("Last Seen", "string", lambda o: age_of(o.get("lastTimestamp") or o.get("eventTime"))),
    ("Type", "string", lambda o: o.get("type") or ""),
    ("Reason", "string", lambda o: o.get("reason") or ""),
    ("Object", "string", _involved),
    ("Message", "string", lambda o: o.get("message") or ""),
]


def _json_path(expression: str) -> list[str | int]:
    path: list[str | int] = []
    for name, index in re.findall(r"\.?([^.\[\]]+)|\[(\d+)\]", expression):
        path.append(int(index) if index else name)
    return path


def _crd_columns(rt: ResourceType) -> list[tuple[str, str, Cell]]:
    columns: list[tuple[str, str, Cell]] = [NAME]
    for column in rt.printer_columns:
        path = _json_path(column.get("jsonPath", ""))
        if column.get("type") == "date":
            columns.append((column["name"], "string", _age_at(path)))
        else:
            columns.append((column["name"], column.get("type", "string"), _cell_at(path)))
    return columns


def _age_at(path: list[str | int]) -> Cell:
    return lambda obj: age_of(_get(obj, *path))


def _cell_at(path: list[str | int]) -> Cell:
    def cell(obj: Obj) -> Any:
        value = _get(obj, *path)
        return value if value is not None else "<none>"

    return cell


def columns_for(rt: ResourceType) -> list[tuple[str, str, Cell]]:
    if rt.printer_columns:
        return _crd_columns(rt)
    if (rt.group, rt.kind) == ("", "Event"):
        return EVENT_COLUMNS
    return [NAME, *COLUMNS.get((rt.group, rt.kind), []), AGE]


def _row_object(obj: Obj, include: str) -> Obj | None:
    if include == "None":
        return None
    if include == "Object":
        return obj
    return {
        "kind": "PartialObjectMetadata",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": obj.get("metadata") or {},
    }


def render_table(
    rt: ResourceType, objects: list[Obj], resource_version: str, include: str = "Metadata"
) -> Obj:
    """A Table of `objects`; `include` is the includeObject parameter (None/Metadata/Object)."""
    columns = columns_for(rt)
    definitions = [
        {
            "name": name,
            "type": kind,
            "format": "name" if name == "Name" else "",
            "description": name,
            "priority": 0,
        }
        for name, kind, _ in columns
    ]
    rows = []
    for obj in objects:
        row: Obj = {"cells": [cell(obj) for _, _, cell in columns]}
        row_object = _row_object(obj, include)
        if row_object is not None:
            row["object"] = row_object
        rows.append(row)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": resource_version},
        "columnDefinitions": definitions,
        "rows": rows,
    }
