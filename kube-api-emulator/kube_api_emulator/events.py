"""core/v1 Events as an event recorder writes them: one per object+reason+message, counted."""

from __future__ import annotations

import copy
import uuid
from typing import Any

Obj = dict[str, Any]


def reference(involved: Obj) -> Obj:
    """The ObjectReference an Event's involvedObject holds for `involved`."""
    meta = involved.get("metadata") or {}
    ref = {
        "apiVersion": involved.get("apiVersion"),
        "kind": involved.get("kind"),
        "name": meta.get("name"),
        "namespace": meta.get("namespace"),
        "uid": meta.get("uid"),
        "resourceVersion": meta.get("resourceVersion"),
    }
    return {k: v for k, v in ref.items() if v}


def new_event(ref: Obj, reason: str, message: str, type_: str, component: str, stamp: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{ref.get('name', 'event')}.{uuid.uuid4().hex[:16]}"},
        "involvedObject": ref,
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": "",
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


def is_repeat(event: Obj, ref: Obj, reason: str, message: str, type_: str, component: str) -> bool:
    involved = event.get("involvedObject") or {}
    return (
        all(involved.get(k) == ref.get(k) for k in ("kind", "name", "namespace", "uid"))
        and event.get("reason") == reason
        and event.get("message") == message
        and event.get("type") == type_
        and (event.get("source") or {}).get("component") == component
    )


def repeated(event: Obj, ref: Obj, stamp: str) -> Obj:
    updated = copy.deepcopy(event)
    updated["count"] = int(event.get("count") or 1) + 1
    updated["lastTimestamp"] = stamp
    updated["involvedObject"] = ref
    return updated
