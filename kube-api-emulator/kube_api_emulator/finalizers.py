"""Finalizers and graceful deletion: the rules the API server applies to every object.

DELETE of an object that lists finalizers only marks it: `deletionTimestamp` (now) and
`deletionGracePeriodSeconds: 0`, and its generation goes up. It stays, readable and
writable, until a write leaves it with no finalizers; then it goes. While it is being
deleted no write may add a finalizer it did not have. A Namespace is also held by its
`spec.finalizers` (the namespace controller's "kubernetes"), which clients cannot change.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import immutable, no_new_finalizers
from .resources import NAMESPACES, ResourceType

Obj = dict[str, Any]


def being_deleted(obj: Obj | None) -> bool:
    return bool(obj and (obj.get("metadata") or {}).get("deletionTimestamp"))


def finalizers_of(obj: Obj) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def held(rt: ResourceType, obj: Obj) -> bool:
    """Whether something still has to act before the object may go."""
    if finalizers_of(obj):
        return True
    return rt.storage_key == NAMESPACES and bool((obj.get("spec") or {}).get("finalizers"))


def drop_empty(metadata: Obj) -> None:
    """An empty finalizer list is no list, as the API server's JSON (omitempty) shows it."""
    if metadata.get("finalizers") == []:
        del metadata["finalizers"]


def marked_for_deletion(obj: Obj, now: str) -> Obj:
    """The object as DELETE leaves an object that has finalizers (apiserver's markAsDeleting)."""
    marked = copy.deepcopy(obj)
    meta = marked["metadata"]
    if not meta.get("deletionTimestamp") and int(meta.get("generation") or 0) > 0:
        # Controllers of an object being deleted change behaviour: that is a new generation.
        meta["generation"] = int(meta["generation"]) + 1
    meta.setdefault("deletionTimestamp", now)
    meta["deletionGracePeriodSeconds"] = 0
    return marked


def check_update(rt: ResourceType, live: Obj, candidate: Obj) -> None:
    """What a write may not do to deletion state (apimachinery's ObjectMeta update rules)."""
    name = live["metadata"]["name"]
    wanted = (candidate.get("metadata") or {}).get("deletionTimestamp")
    if wanted and not being_deleted(live):
        raise immutable(rt.kind, rt.group, name, "metadata.deletionTimestamp", wanted)
    if being_deleted(live):
        added = [f for f in finalizers_of(candidate) if f not in finalizers_of(live)]
        if added:
            raise no_new_finalizers(rt.kind, rt.group, name, added)
