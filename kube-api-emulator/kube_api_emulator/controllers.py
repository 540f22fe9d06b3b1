"""What a cluster's own controllers do that clients can observe, run inside the emulator.

- The namespace controller: a deleted Namespace is Terminating; after
  `namespace_grace_seconds` its objects are deleted (those with finalizers are only
  marked and stay) and it goes once none remain, its conditions saying meanwhile what
  content and which finalizers are left.
- The CRD naming and establishing controllers: a new CustomResourceDefinition has its names
  accepted at once but is Established only `crd_establish_seconds` later; until then its
  resource is not served (no REST paths, no discovery, no in-process writes).
- The CRD finalizer: a deleted CRD gets the `customresourcecleanup.apiextensions.k8s.io`
  finalizer and stays Terminating while its custom objects are deleted (creating new ones
  is refused); once none remain it goes, and so does its resource.

Each runs on its own (a timer, or inside the write that triggers it), never by polling.
"""

from __future__ import annotations

import copy
import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

from . import admission, conditions
from .errors import MethodNotAllowed
from .finalizers import being_deleted, finalizers_of, held
from .resources import CRDS, NAMESPACES, ResourceType, crd_types
from .storage import ResourceStore, StorageKey, notifying

Obj = dict[str, Any]

CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
NAMESPACE_FINALIZER = "kubernetes"
NAMESPACE_GRACE_SECONDS = 0.5
CRD_ESTABLISH_SECONDS = 0.5


class ControlledStore(ResourceStore):
    """A ResourceStore with the namespace controller and the apiextensions controllers."""

    def __init__(
        self,
        *,
        namespace_grace_seconds: float = NAMESPACE_GRACE_SECONDS,
        crd_establish_seconds: float = CRD_ESTABLISH_SECONDS,
        **options: Any,
    ) -> None:
        """`namespace_grace_seconds`: how long a deleted Namespace stays Terminating before
        its objects are deleted; `crd_establish_seconds`: how long a new CRD takes to be
        Established (0: at once, for either). `options`: those of ResourceStore."""
        super().__init__(**options)
        self._grace = namespace_grace_seconds
        self._establish_after = crd_establish_seconds
        self._emptying: set[str] = set()  # namespaces whose content is being deleted

    # --- hooks -------------------------------------------------------------------------------

    def _default(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        super()._default(rt, obj, old)
        if rt.storage_key == CRDS and old is None and self._establish_after <= 0:
            self._set_condition(obj, conditions.ESTABLISHED)

    def _admit_create(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        super()._admit_create(rt, namespace, name)
        if being_deleted(self._crd_serving(rt.storage_key)):
            # The apiextensions server's words; a 405, as it answers.
            raise MethodNotAllowed(
                "create not allowed while custom resource definition is terminating",
                group=rt.group,
                kind=rt.plural,
            )

    def _delete_object(
        self, rt: ResourceType, live: Obj, *, dry_run: bool = False
    ) -> tuple[Obj, bool]:
        if rt.storage_key == NAMESPACES:
            if being_deleted(live):
                return self._out(rt, live), False
            return self._terminate_namespace(rt, live, dry_run)
        if rt.storage_key == CRDS and not being_deleted(live):
            return self._terminate_crd(rt, live, dry_run)
        return super()._delete_object(rt, live, dry_run=dry_run)

    def _after_commit(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        if rt.storage_key == CRDS:
            self._serve_crd(obj, old)
        elif rt.namespaced:
            self._namespace_content_changed(obj["metadata"].get("namespace", ""))

    def _after_remove(self, key: StorageKey, namespace: str, obj: Obj) -> None:
        if key == NAMESPACES:
            self._emptying.discard(obj["metadata"]["name"])
        elif key == CRDS:
            self._unserve_crd(obj)
        else:
            if namespace:
                self._namespace_content_changed(namespace)
            crd = self._crd_serving(key)
            if crd is not None and being_deleted(crd):
                self._finish_crd_cleanup(crd["metadata"]["name"])

    # --- the namespace controller ------------------------------------------------------------

    def _terminate_namespace(self, rt: ResourceType, live: Obj, dry_run: bool) -> tuple[Obj, bool]:
        terminating = copy.deepcopy(live)
        terminating["metadata"]["deletionTimestamp"] = admission.now()
        terminating.setdefault("status", {})["phase"] = "Terminating"
        result = self._commit(rt, None, terminating, live, dry_run)
        if dry_run:
            return result, False
        meta = live["metadata"]
        self._later(self._grace, self._empty_namespace, meta["name"], meta["uid"])
        return result, self._stored(NAMESPACES, None, meta["name"]) is None

    def _empty_namespace(self, name: str, uid: str) -> None:
        """Delete everything in the namespace, as the namespace controller does."""
        live = self._stored(NAMESPACES, None, name)
        if live is None or live["metadata"]["uid"] != uid or not being_deleted(live):
            return
        for rt, obj in self._content(name):
            current = self._stored(rt.storage_key, name, obj["metadata"]["name"])
            if current is not None:
                self._delete_object(rt, current)
        # Watched from now on: the namespace goes once its last object has.
        self._emptying.add(name)
        self._namespace_content_changed(name)

    def _namespace_content_changed(self, name: str) -> None:
        """Once emptying started: finalize the namespace when its last object has gone, or
        say in its conditions what remains."""
        live = self._stored(NAMESPACES, None, name) if name in self._emptying else None
        if live is None:
            return
        content = self._content(name)
        if not content:
            self._finalize_namespace(live)
            return
        remaining = Counter(rt.resource for rt, _ in content)
        held_by = Counter(f for _, obj in content for f in finalizers_of(obj))
        updated = copy.deepcopy(live)
        status = updated.setdefault("status", {})
        status["conditions"] = conditions.namespace_deletion(
            status.get("conditions") or [], remaining, held_by, admission.now()
        )
        self._commit(self._builtin(NAMESPACES), None, updated, live)

    def _finalize_namespace(self, live: Obj) -> None:
        """The namespace controller's last step: its own finalizer goes, and so may the
        namespace (unless other finalizers still hold it)."""
        name = live["metadata"]["name"]
        self._emptying.discard(name)
        rt = self._builtin(NAMESPACES)
        finalized = copy.deepcopy(live)
        spec = finalized.setdefault("spec", {})
        spec["finalizers"] = [f for f in spec.get("finalizers") or [] if f != NAMESPACE_FINALIZER]
        if held(rt, finalized):
            self._commit(rt, None, finalized, live)
        else:
            self._remove(NAMESPACES, "", name)

    def _content(self, namespace: str) -> list[tuple[ResourceType, Obj]]:
        """The namespace's objects of served resources, as discovery lets the controller see."""
        found = []
        for key, bucket in list(self._objects.items()):
            rt = self.registry.by_storage_key(key)
            if rt is None or not rt.namespaced:
                continue
            found += [(rt, obj) for (ns, _), obj in sorted(bucket.items()) if ns == namespace]
        return found

    # --- the CRD establishing controller -----------------------------------------------------

    def _serve_crd(self, crd: Obj, old: Obj | None) -> None:
        if old is not None and _crd_key(old) != _crd_key(crd):
            self.registry.replace_group_resource(*_crd_key(old), [])
        established = conditions.is_true(crd, "Established")
        self.registry.replace_group_resource(*_crd_key(crd), crd_types(crd) if established else [])
        if old is None and not established:
            meta = crd["metadata"]
            self._later(self._establish_after, self._establish_crd, meta["name"], meta["uid"])

    def _establish_crd(self, name: str, uid: str) -> None:
        live = self._stored(CRDS, None, name)
        if (
            live is None
            or live["metadata"]["uid"] != uid
            or being_deleted(live)
            or conditions.is_true(live, "Established")
        ):
            return
        established = copy.deepcopy(live)
        self._set_condition(established, conditions.ESTABLISHED)
        self._commit(self._builtin(CRDS), None, established, live)

    def _unserve_crd(self, crd: Obj) -> None:
        key = _crd_key(crd)
        self.registry.replace_group_resource(*key, [])
        # Objects left only if someone stripped the cleanup finalizer: they go with it.
        for namespace, name in list(self._objects.get(key, {})):
            self._remove(key, namespace, name)
        self._objects.pop(key, None)

    def _crd_serving(self, key: StorageKey) -> Obj | None:
        """The stored CRD that defines the resource stored under `key`, if any."""
        group, plural = key
        return self._stored(CRDS, None, f"{plural}.{group}") if group else None

    # --- the CRD finalizer -------------------------------------------------------------------

    def _terminate_crd(self, rt: ResourceType, live: Obj, dry_run: bool) -> tuple[Obj, bool]:
        """The apiextensions server's DELETE of a CRD: mark it and add the cleanup finalizer."""
        marked = copy.deepcopy(live)
        meta = marked["metadata"]
        meta["deletionTimestamp"] = admission.now()
        if CRD_CLEANUP not in finalizers_of(marked):
            meta["finalizers"] = [*finalizers_of(marked), CRD_CLEANUP]
        self._set_condition(marked, conditions.DELETION_PENDING)
        result = self._commit(rt, None, marked, live, dry_run)
        if dry_run:
            return result, False
        self._clean_up_crd(meta["name"])
        return result, self._stored(CRDS, None, meta["name"]) is None

    def _clean_up_crd(self, name: str) -> None:
        crd = self._update_crd_condition(name, conditions.DELETION_IN_PROGRESS)
        if crd is None:
            return
        if not conditions.is_true(crd, "Established"):
            self._complete_crd_cleanup(crd, conditions.NEVER_ESTABLISHED)
            return
        key = _crd_key(crd)
        rt = self.registry.by_storage_key(key)
        for namespace, obj_name in list(self._objects.get(key, {})):
            current = self._stored(key, namespace, obj_name)
            if rt is not None and current is not None:
                self._delete_object(rt, current)
        self._finish_crd_cleanup(name)

    def _finish_crd_cleanup(self, name: str) -> None:
        """Once no custom objects remain, the finalizer's work is done."""
        crd = self._stored(CRDS, None, name)
        if crd is None or CRD_CLEANUP not in finalizers_of(crd) or self._objects.get(_crd_key(crd)):
            return
        self._complete_crd_cleanup(crd, conditions.DELETION_COMPLETED)

    def _complete_crd_cleanup(self, crd: Obj, outcome: tuple[str, str, str, str]) -> None:
        done = copy.deepcopy(crd)
        self._set_condition(done, outcome)
        done["metadata"]["finalizers"] = [f for f in finalizers_of(done) if f != CRD_CLEANUP]
        rt = self._builtin(CRDS)
        if held(rt, done):
            self._commit(rt, None, done, crd)
        else:
            # As on a real server, the write that clears the last finalizer deletes it.
            self._remove(CRDS, "", crd["metadata"]["name"])

    def _update_crd_condition(self, name: str, spec: tuple[str, str, str, str]) -> Obj | None:
        live = self._stored(CRDS, None, name)
        if live is None or CRD_CLEANUP not in finalizers_of(live):
            return None
        updated = copy.deepcopy(live)
        self._set_condition(updated, spec)
        self._commit(self._builtin(CRDS), None, updated, live)
        return self._stored(CRDS, None, name)

    # --- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _set_condition(obj: Obj, spec: tuple[str, str, str, str]) -> None:
        status = obj.setdefault("status", {})
        new = conditions.condition(spec, admission.now())
        status["conditions"] = conditions.set_condition(status.get("conditions") or [], new)

    def _builtin(self, key: StorageKey) -> ResourceType:
        rt = self.registry.by_storage_key(key)
        assert rt is not None  # built-ins are always served
        return rt

    def _later(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        """Run `action(*args)` with the lock held: now if `delay` is 0, else from a timer."""
        if delay <= 0:
            action(*args)
            return
        timer = threading.Timer(delay, self._run_locked, args=(action, *args))
        timer.daemon = True
        timer.start()

    @notifying
    def _run_locked(self, action: Callable[..., None], *args: Any) -> None:
        with self._lock:
            action(*args)


def _crd_key(crd: Obj) -> StorageKey:
    spec = crd.get("spec") or {}
    return (spec.get("group", ""), (spec.get("names") or {}).get("plural", ""))
