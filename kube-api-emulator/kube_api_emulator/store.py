"""The in-process API of the emulator's store: objects addressed by apiVersion and kind."""

from __future__ import annotations

import builtins
from collections.abc import Callable
from typing import Any

from . import admission, events
from .controllers import ControlledStore
from .errors import NotFound
from .finalizers import finalizers_of
from .patching import merge_patch
from .resources import ResourceType
from .selectors import parse_label_selector
from .storage import Callback, notifying

Obj = dict[str, Any]

INITIAL_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


class ObjectStore(ControlledStore):
    """Kubernetes objects as plain dicts (deep copies in and out), shared with simulators.

    In-process `create` keeps `.status` as given (handy to seed objects); everything else
    follows the API server: status subresources are written only through status writes,
    deletion waits for finalizers, and a CRD's kinds exist only once it is Established.
    A namespace of None means "default" for namespaced kinds (and all namespaces in `list`).
    """

    def __init__(self, **options: Any) -> None:
        """`options`: those of ControlledStore (`namespace_grace_seconds`,
        `crd_establish_seconds`) and ResourceStore. Starts with a cluster's initial
        namespaces."""
        super().__init__(**options)
        for name in INITIAL_NAMESPACES:
            self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> Obj | None:
        """The object, or None if there is none."""
        rt = self._type(api_version, kind)
        try:
            return self.get_resource(rt, self._namespace(rt, namespace), name)
        except NotFound:
            return None

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
    ) -> list[Obj]:
        """Objects sorted by namespace and name; `label_selector` as in `kubectl get -l`."""
        rt = self._type(api_version, kind)
        scope = namespace if rt.namespaced else None
        return self.list_resource(rt, scope, parse_label_selector(label_selector))[0]

    def create(self, obj: Obj, *, manager: str | None = None) -> Obj:
        """Create `obj` (its `.status` kept); raises AlreadyExists, a Conflict, if it exists.
        `manager`: the field manager it is recorded as, as a client's create would be."""
        rt = self._type(obj.get("apiVersion", ""), obj.get("kind", ""))
        namespace = self._namespace(rt, (obj.get("metadata") or {}).get("namespace"))
        return self.create_resource(rt, namespace, obj, keep_status=True, manager=manager)

    def apply(self, obj: Obj, field_manager: str, *, force: bool = False) -> Obj:
        """Server-side apply `obj` as `field_manager`; re-applying the same object is a no-op.

        Raises Conflict if another apply manager owns a field this changes, unless `force`.
        """
        rt = self._type(obj.get("apiVersion", ""), obj.get("kind", ""))
        metadata = obj.get("metadata") or {}
        namespace = self._namespace(rt, metadata.get("namespace"))
        return self.apply_resource(
            rt, namespace, metadata.get("name", ""), obj, field_manager, force=force
        )

    def patch_status(
        self, api_version: str, kind: str, name: str, namespace: str | None, status: Obj
    ) -> Obj:
        """JSON-merge-patch `.status` alone; the generation does not change."""
        rt = self._type(api_version, kind)
        return self.patch_resource(
            rt,
            self._namespace(rt, namespace),
            name,
            lambda live: merge_patch(live, {"status": status}),
            subresource="status",
        )

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete the object; False if there was none. One with finalizers is only marked
        (a deletionTimestamp) and goes once they are removed; Namespaces go after their
        grace period, once their objects have."""
        rt = self._type(api_version, kind)
        try:
            self.delete_resource(rt, self._namespace(rt, namespace), name)
        except NotFound:
            return False
        return True

    def add_finalizer(
        self, api_version: str, kind: str, name: str, namespace: str | None, finalizer: str
    ) -> Obj | None:
        """Add `finalizer` to the object (once); None if there is no such object.

        Raises Invalid, as the API server does, if the object is being deleted and does not
        have it already.
        """
        return self._change_finalizers(
            api_version, kind, name, namespace, lambda names: [*names, finalizer]
        )

    def remove_finalizer(
        self, api_version: str, kind: str, name: str, namespace: str | None, finalizer: str
    ) -> Obj | None:
        """Remove `finalizer` from the object; None if there is none, or if that was the last
        finalizer of an object being deleted, which then goes."""
        return self._change_finalizers(
            api_version, kind, name, namespace, lambda names: [f for f in names if f != finalizer]
        )

    @notifying
    def _change_finalizers(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        # builtins.list: `list` here is the store's own method
        change: Callable[[builtins.list[str]], builtins.list[str]],
    ) -> Obj | None:
        rt = self._type(api_version, kind)
        namespace = self._namespace(rt, namespace)
        with self._lock:
            live = self._stored(rt.storage_key, namespace, name)
            if live is None:
                return None
            candidate = self._out(rt, live)
            wanted = list(dict.fromkeys(change(finalizers_of(live))))
            candidate["metadata"].pop("finalizers", None)
            if wanted:
                candidate["metadata"]["finalizers"] = wanted
            result = self._save_update(rt, live, candidate, "", False)
            # Removing the last finalizer of an object being deleted deletes it.
            return None if self._stored(rt.storage_key, namespace, name) is None else result

    @notifying
    def record_event(
        self,
        involved: Obj,
        reason: str,
        message: str,
        type: str = "Normal",
        component: str = "sandbox",
    ) -> Obj:
        """Record a core/v1 Event about `involved`, counting repeats like kubelet's recorder."""
        rt = self._type("v1", "Event")
        namespace = (involved.get("metadata") or {}).get("namespace") or "default"
        ref = events.reference(involved)
        stamp = admission.now()
        with self._lock:
            for (ns, _), event in self._objects.get(rt.storage_key, {}).items():
                if ns == namespace and events.is_repeat(
                    event, ref, reason, message, type, component
                ):
                    return self._commit(rt, namespace, events.repeated(event, ref, stamp), event)
            event = events.new_event(ref, reason, message, type, component, stamp)
            return self._create_locked(rt, namespace, event, keep_status=True)

    def subscribe(self, callback: Callback) -> None:
        """`callback(type, obj)` after each change, outside the lock, from the writer's thread."""
        with self._lock:
            self._subscribers.append(callback)

    def _type(self, api_version: str, kind: str) -> ResourceType:
        rt = self.registry.by_kind(api_version, kind)
        if rt is None:
            raise NotFound(f'no matches for kind "{kind}" in version "{api_version}"')
        return rt

    @staticmethod
    def _namespace(rt: ResourceType, namespace: str | None) -> str | None:
        # In-process callers may omit the namespace of namespaced objects, like kubectl does.
        return (namespace or "default") if rt.namespaced else None
