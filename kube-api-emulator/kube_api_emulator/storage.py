"""Object storage by resource type: the API server's write semantics, history and watches.

One re-entrant lock guards everything. Stored dicts are never mutated once stored (every
write stores a fresh dict), so the watch history can share them; callers get deep copies.
Deletion follows the finalizer rules (finalizers.py). What the cluster's controllers do
lives in a subclass (controllers.py), which these hooks call: `_default`, `_admit_create`,
`_delete_object`, `_after_commit` and `_after_remove`, all with the lock held. A client's
writes (`admit=True`: those the HTTP layer serves) also go through the admission webhooks
(webhooks.py); in-process writes stand for the cluster's own controllers and do not.
"""

from __future__ import annotations

import copy
import functools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

from . import admission, webhooks
from .apply import SYSTEM_METADATA, server_side_apply, strip_system_metadata, update_ownership
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    already_exists,
    immutable,
    not_found,
    stale,
)
from .finalizers import being_deleted, check_update, drop_empty, held, marked_for_deletion
from .history import Change, History, as_seen_by
from .resources import NAMESPACES, Registry, ResourceType
from .selectors import FieldRequirement, Requirement, fields_match, labels_match
from .webhooks import WebhookCaller

Obj = dict[str, Any]
Callback = Callable[[str, Obj], None]
StorageKey = tuple[str, str]


def notifying(method: Callable[..., Any]) -> Callable[..., Any]:
    """Deliver queued subscriber callbacks once the write has left the lock."""

    @functools.wraps(method)
    def wrapper(self: ResourceStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        finally:
            self._flush()

    return wrapper


# Fields an update may not change, per (group, kind), as the API server's validation has them
# (a Secret's type; a Deployment's or DaemonSet's selector in apps/v1): a Secret of another
# type must be deleted and made anew, and so must a Deployment whose pods another selector
# picks.
IMMUTABLE = {
    ("", "Secret"): (("type",),),
    ("apps", "Deployment"): (("spec", "selector"),),
    ("apps", "DaemonSet"): (("spec", "selector"),),
}


def check_immutable(rt: ResourceType, live: Obj, candidate: Obj) -> None:
    for path in IMMUTABLE.get((rt.group, rt.kind), ()):
        before, after = _at(live, path), _at(candidate, path)
        if path == ("type",):  # a Secret's type defaults to Opaque
            before, after = before or "Opaque", after or "Opaque"
        if after != before:
            name = live["metadata"]["name"]
            shown = after if isinstance(after, str) else _go_map(after)
            raise immutable(rt.kind, rt.group, name, ".".join(path), shown)


def _at(obj: Obj, path: tuple[str, ...]) -> Any:
    value: Any = obj
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    return value


def _go_map(value: Any) -> str:
    """A value as the API server's message prints it (Go's %v of a struct, roughly)."""
    return str(value).replace("'", "")


def _spec_part(obj: Obj) -> Obj:
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


class ResourceStore:
    """Objects addressed by ResourceType, namespace and name; what the HTTP layer calls.

    Writes follow the API server: new resourceVersion per change (none when nothing changed),
    generation bumps on spec changes, status only through the status subresource, and an
    object with finalizers is only marked by DELETE, going once a write clears them.
    """

    def __init__(
        self,
        *,
        history_size: int = 10_000,
        log: Callable[[str], None] | None = None,
    ) -> None:
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self.registry = Registry()
        self._objects: dict[StorageKey, dict[tuple[str, str], Obj]] = {}
        self._rv = 0
        self._history = History(history_size)
        self._outbox: list[Change] = []
        self._subscribers: list[Callback] = []
        self._ips = 0
        self._log = log
        # Who answers the admission webhooks' calls (webhooks.py); by default no one.
        self.webhook_caller: WebhookCaller = webhooks.no_pods

    def get_resource(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        with self._lock:
            return self._out(rt, self._live(rt, namespace, name))

    def list_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
    ) -> tuple[list[Obj], str]:
        """Objects matching the selectors (all namespaces when `namespace` is None), and the RV."""
        with self._lock:
            bucket = self._objects.get(rt.storage_key, {})
            items = [
                self._out(rt, obj)
                for (ns, _), obj in sorted(bucket.items())
                if (namespace is None or ns == namespace)
                and labels_match(labels or [], obj)
                and fields_match(fields or [], obj)
            ]
            return items, str(self._rv)

    @notifying
    def create_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Obj,
        *,
        keep_status: bool = False,
        dry_run: bool = False,
        admit: bool = False,
        manager: str | None = None,
    ) -> Obj:
        """`admit`: a client's write, offered to the admission webhooks (also below);
        `manager`: the field manager it is recorded as (none for in-process writes)."""
        with self._lock:
            return self._create_locked(
                rt,
                namespace,
                body,
                keep_status=keep_status,
                dry_run=dry_run,
                admit=admit,
                manager=manager,
            )

    @notifying
    def update_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        *,
        subresource: str = "",
        dry_run: bool = False,
        admit: bool = False,
        manager: str | None = None,
    ) -> Obj:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        admission.check_type(rt, body)
        with self._lock:
            live = self._live(rt, namespace, name)
            return self._save_update(
                rt, live, copy.deepcopy(body), subresource, dry_run, admit=admit, manager=manager
            )

    @notifying
    def patch_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        patch: Callable[[Obj], Any],
        *,
        subresource: str = "",
        dry_run: bool = False,
        admit: bool = False,
        manager: str | None = None,
    ) -> Obj:
        """Run `patch(live copy)` under the lock and store what it returns."""
        with self._lock:
            live = self._live(rt, namespace, name)
            candidate = patch(self._out(rt, live))
            if not isinstance(candidate, dict):
                raise BadRequest("the patched object must be a JSON object")
            return self._save_update(
                rt, live, candidate, subresource, dry_run, admit=admit, manager=manager
            )

    @notifying
    def apply_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: Obj,
        manager: str,
        *,
        force: bool = False,
        subresource: str = "",
        dry_run: bool = False,
        admit: bool = False,
    ) -> Obj:
        """Server-side apply; creates the object when it does not exist yet."""
        applied = self._applied_config(rt, namespace, name, body, subresource)
        with self._lock:
            bucket = self._objects.get(rt.storage_key, {})
            live = bucket.get((namespace or "", name))
            if live is None and subresource:
                raise not_found(rt.plural, rt.group, name)
            stamp = admission.now()
            merged = server_side_apply(
                self._out(rt, live) if live else None,
                applied,
                manager=manager,
                force=force,
                now=stamp,
                subresource=subresource,
            )
            managed = merged["metadata"]["managedFields"]
            if live is None:
                return self._create_locked(
                    rt, namespace, merged, dry_run=dry_run, managed=managed, admit=admit
                )
            return self._save_update(
                rt, live, merged, subresource, dry_run, managed=managed, admit=admit
            )

    @notifying
    def delete_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        *,
        preconditions: Obj | None = None,
        dry_run: bool = False,
        admit: bool = False,
    ) -> tuple[Obj, bool]:
        """Delete or, if something holds it, mark the object: (the object, whether it is gone).

        A marked object (a deletionTimestamp) stays until its finalizers are removed.
        """
        with self._lock:
            live = self._live(rt, namespace, name)
            _check_preconditions(rt, live, preconditions or {})
            if admit:
                self._admit(rt, "DELETE", None, self._out(rt, live), "", dry_run)
            return self._delete_object(rt, live, dry_run=dry_run)

    @notifying
    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        labels: list[Requirement] | None = None,
        fields: list[FieldRequirement] | None = None,
        *,
        admit: bool = False,
    ) -> list[Obj]:
        with self._lock:
            items, _ = self.list_resource(rt, namespace, labels, fields)
            for item in items:
                meta = item["metadata"]
                live = self._stored(rt.storage_key, meta.get("namespace"), meta["name"])
                if live is not None:  # deleting one may have taken others with it
                    if admit:
                        self._admit(rt, "DELETE", None, self._out(rt, live), "", False)
                    self._delete_object(rt, live)
            return items

    def watch_resource(
        self,
        rt: ResourceType,
        namespace: str | None,
        since: int | None,
        deadline: float,
        matches: Callable[[Obj], bool],
        should_stop: Callable[[], bool],
    ) -> Iterator[tuple[str, Obj]]:
        """Yield (type, object) from `since` (or ADDED for current objects) until `deadline`.

        `deadline` is a time.monotonic() value; `should_stop` is polled about once a second.
        """
        with self._lock:
            if since is None:
                initial = [o for o in self.list_resource(rt, namespace)[0] if matches(o)]
                cursor = self._rv
            elif since < self._history.horizon:
                raise Gone(f"too old resource version: {since} ({self._history.horizon + 1})")
            else:
                initial, cursor = [], since
        for obj in initial:
            yield "ADDED", obj
        # Marks the end of the initial objects, for clients that asked for them (watch-list).
        yield (
            "BOOKMARK",
            {
                "kind": rt.kind,
                "apiVersion": rt.api_version,
                "metadata": {
                    "resourceVersion": str(cursor),
                    "annotations": {"k8s.io/initial-events-end": "true"},
                },
            },
        )
        while not should_stop() and time.monotonic() < deadline:
            with self._lock:
                batch = self._history.after(cursor, rt.storage_key, namespace)
                cursor = self._rv
                if not batch:
                    self._changed.wait(min(deadline - time.monotonic(), 1.0))
                    continue
            for change in batch:
                event = as_seen_by(change, matches)
                if event:
                    yield event[0], self._out(rt, event[1])

    def wake_watchers(self) -> None:
        with self._lock:
            self._changed.notify_all()

    @property
    def resource_version(self) -> str:
        with self._lock:
            return str(self._rv)

    # --- internals (call with the lock held) -------------------------------------------------

    @staticmethod
    def _out(rt: ResourceType, obj: Obj) -> Obj:
        result = _json_copy(obj)
        result["apiVersion"], result["kind"] = rt.api_version, rt.kind
        return result

    def _stored(self, key: StorageKey, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(key, {}).get((namespace or "", name))

    def _live(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._stored(rt.storage_key, namespace, name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def _require_namespace(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        if not rt.namespaced:
            return
        found = self._objects.get(NAMESPACES, {}).get(("", namespace or ""))
        if found is None:
            raise not_found("namespaces", "", namespace or "")
        if found["metadata"].get("deletionTimestamp"):
            raise Forbidden(
                f'{rt.resource} "{name}" is forbidden: unable to create new content in namespace '
                f"{namespace} because it is being terminated",
                name=name,
                group=rt.group,
                kind=rt.plural,
            )

    def _scope(self, rt: ResourceType, namespace: str | None, metadata: Obj) -> str | None:
        """Reconcile the namespace in the URL with the one in the body."""
        if not rt.namespaced:
            metadata.pop("namespace", None)
            return None
        given = metadata.get("namespace")
        if given and namespace and given != namespace:
            raise BadRequest(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        namespace = namespace or given
        if not namespace:
            raise BadRequest("a namespace is required for namespaced resources")
        metadata["namespace"] = namespace
        return namespace

    def _create_locked(
        self,
        rt: ResourceType,
        namespace: str | None,
        body: Obj,
        *,
        keep_status: bool = False,
        dry_run: bool = False,
        managed: list[Obj] | None = None,
        admit: bool = False,
        manager: str | None = None,
    ) -> Obj:
        if not isinstance(body, dict):
            raise BadRequest("the request body must be a JSON object")
        obj = strip_system_metadata(body)
        admission.check_type(rt, obj)
        metadata = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise BadRequest("metadata must be an object")
        namespace = self._scope(rt, namespace, metadata)
        name = admission.assign_name(rt, metadata)
        drop_empty(metadata)
        if not keep_status and rt.has_status:
            obj.pop("status", None)
        self._admit_create(rt, namespace, name)
        if (namespace or "", name) in self._objects.get(rt.storage_key, {}):
            raise already_exists(rt.plural, rt.group, name)
        metadata.update(uid=str(uuid.uuid4()), creationTimestamp=admission.now(), generation=1)
        if managed:
            metadata["managedFields"] = managed
        self._default(rt, obj, None)
        if admit:
            obj = self._admit(rt, "CREATE", obj, None, "", dry_run) or obj
        if manager and not managed:
            # A create is an update from nothing: its manager owns every field it set.
            obj["metadata"]["managedFields"] = update_ownership(
                None, {**obj, "kind": rt.kind}, manager=manager, now=admission.now()
            )
        return self._commit(rt, namespace, obj, None, dry_run)

    def _applied_config(
        self, rt: ResourceType, namespace: str | None, name: str, body: Any, subresource: str
    ) -> Obj:
        if not isinstance(body, dict):
            raise BadRequest("the apply configuration must be an object")
        applied = copy.deepcopy(body)
        admission.check_type(rt, applied)
        metadata = applied.setdefault("metadata", {})
        if metadata.get("name", name) != name:
            raise BadRequest(
                f"the name of the object ({metadata['name']}) does not match the name on the URL "
                f"({name})"
            )
        metadata["name"] = name
        self._scope(rt, namespace, metadata)
        if subresource == "status":
            return {k: v for k, v in applied.items() if k in ("apiVersion", "kind", "status")} | {
                "metadata": {k: v for k, v in metadata.items() if k in ("name", "namespace")}
            }
        if rt.has_status:
            applied.pop("status", None)
        return applied

    def _save_update(
        self,
        rt: ResourceType,
        live: Obj,
        candidate: Obj,
        subresource: str,
        dry_run: bool,
        managed: list[Obj] | None = None,
        *,
        admit: bool = False,
        manager: str | None = None,
    ) -> Obj:
        """Turn a client's full new object into the stored one (shared by PUT, PATCH, apply);
        a PUT or PATCH by `manager` records what it set (apply passes `managed` instead)."""
        live_meta = live["metadata"]
        meta = candidate.get("metadata")
        if not isinstance(meta, dict):
            raise BadRequest("metadata must be an object")
        if meta.get("name", live_meta["name"]) != live_meta["name"]:
            raise BadRequest(
                f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                f"({live_meta['name']})"
            )
        if meta.get("resourceVersion") and meta["resourceVersion"] != live_meta["resourceVersion"]:
            raise stale(rt.plural, rt.group, live_meta["name"])
        namespace = live_meta.get("namespace")
        self._scope(rt, namespace, meta)
        if subresource == "status":
            result = copy.deepcopy(live)
            _set_or_drop(result, "status", candidate.get("status"))
        else:
            check_update(rt, live, candidate)
            check_immutable(rt, live, candidate)
            result = candidate
            if rt.has_status:
                _set_or_drop(result, "status", copy.deepcopy(live.get("status")))
        result["apiVersion"], result["kind"] = rt.api_version, rt.kind
        meta = result.setdefault("metadata", {})
        meta.update(name=live_meta["name"])
        drop_empty(meta)
        for key in SYSTEM_METADATA:
            _set_or_drop(meta, key, copy.deepcopy(live_meta.get(key)))
        if managed is not None:
            meta["managedFields"] = managed
        self._default(rt, result, live)
        if admit:
            old = self._out(rt, live)
            result = self._admit(rt, "UPDATE", result, old, subresource, dry_run) or result
            meta = result.setdefault("metadata", {})  # the admitted object is a copy
        if manager and managed is None:
            meta["managedFields"] = update_ownership(
                self._out(rt, live),
                result,
                manager=manager,
                now=admission.now(),
                subresource=subresource,
            )
        if _spec_part(result) != _spec_part(live):
            meta["generation"] = int(live_meta.get("generation") or 0) + 1
        if being_deleted(result) and not held(rt, result):
            # Its last finalizer went: the object goes, and the writer gets what it wrote.
            if not dry_run:
                self._remove(rt.storage_key, namespace or "", live_meta["name"])
            return self._out(rt, result)
        return self._commit(rt, namespace, result, live, dry_run)

    def _commit(
        self,
        rt: ResourceType,
        namespace: str | None,
        obj: Obj,
        old: Obj | None,
        dry_run: bool = False,
    ) -> Obj:
        """Store `obj` under a new resourceVersion, unless nothing changed."""
        if old is not None and obj == old:
            return self._out(rt, old)
        if dry_run:
            return self._out(rt, obj)
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        key = (namespace or "", obj["metadata"]["name"])
        self._objects.setdefault(rt.storage_key, {})[key] = obj
        self._record("ADDED" if old is None else "MODIFIED", rt.storage_key, key[0], obj, old)
        self._after_commit(rt, obj, old)
        return self._out(rt, obj)

    def _remove(self, key: StorageKey, namespace: str, name: str) -> Obj:
        stored = self._objects.get(key, {}).pop((namespace, name))
        self._rv += 1
        gone = copy.deepcopy(stored)
        gone["metadata"]["resourceVersion"] = str(self._rv)
        self._record("DELETED", key, namespace, gone, stored)
        self._after_remove(key, namespace, gone)
        return gone

    def _delete_object(
        self, rt: ResourceType, live: Obj, *, dry_run: bool = False
    ) -> tuple[Obj, bool]:
        """DELETE of a stored object: marked while something holds it, else removed."""
        meta = live["metadata"]
        if held(rt, live):
            marked = marked_for_deletion(live, admission.now())
            return self._commit(rt, meta.get("namespace"), marked, live, dry_run), False
        if dry_run:
            return self._out(rt, live), True
        gone = self._remove(rt.storage_key, meta.get("namespace", ""), meta["name"])
        return self._out(rt, gone), True

    def _admit(
        self,
        rt: ResourceType,
        operation: str,
        obj: Obj | None,
        old: Obj | None,
        subresource: str,
        dry_run: bool,
    ) -> Obj | None:
        """Offer a client's write to the admission webhooks that match it (webhooks.py);
        the object as the mutating ones left it. Raises what the client is answered."""
        if rt.group == webhooks.ADMISSION_GROUP:
            return obj  # never for the webhook configurations themselves
        configurations = {
            key: [c for _, c in sorted(self._objects.get(key, {}).items())]
            for key in webhooks.CONFIGURATIONS
        }
        if not any(configurations.values()):
            return obj
        meta = (obj or old or {}).get("metadata") or {}
        namespace_labels = None
        if rt.namespaced:
            found = self._stored(NAMESPACES, None, meta.get("namespace", ""))
            namespace_labels = webhooks.labels_of(found)
        request = webhooks.review_request(
            operation,
            rt,
            subresource,
            meta.get("namespace"),
            meta.get("name", ""),
            _json_copy(obj) if obj is not None else None,
            old,
            dry_run,
        )
        return webhooks.admit(
            configurations,
            self.webhook_caller,
            request,
            lambda webhook: webhooks.applies(
                webhook, operation, rt, subresource, namespace_labels, obj, old
            ),
        )

    # --- hooks for the cluster's controllers (controllers.py) -------------------------------

    def _default(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """Fill in server-side defaults before a write is stored."""
        admission.default(rt, obj, old, self._allocate_ip)

    def _admit_create(self, rt: ResourceType, namespace: str | None, name: str) -> None:
        """Refuse a create the cluster would not admit."""
        self._require_namespace(rt, namespace, name)

    def _after_commit(self, rt: ResourceType, obj: Obj, old: Obj | None) -> None:
        """React to an object stored (created or changed)."""

    def _after_remove(self, key: StorageKey, namespace: str, obj: Obj) -> None:
        """React to an object gone from storage."""

    def _record(
        self, kind: str, key: StorageKey, namespace: str, obj: Obj, prev: Obj | None
    ) -> None:
        change = Change(self._rv, kind, key, namespace, obj, prev)
        self._history.append(change)
        self._outbox.append(change)
        self._changed.notify_all()

    def _allocate_ip(self) -> str:
        self._ips += 1
        return f"10.100.{self._ips // 250}.{self._ips % 250 + 1}"

    def _flush(self) -> None:
        with self._lock:
            batch, self._outbox = self._outbox, []
            subscribers = list(self._subscribers)
        for change in batch:
            for callback in subscribers:
                try:
                    callback(change.type, copy.deepcopy(change.obj))
                except Exception as exc:  # a broken subscriber must not break writes
                    if self._log:
                        self._log(f"subscriber {callback!r} failed: {exc!r}")


def _set_or_drop(target: Obj, key: str, value: Any) -> None:
    if value is None:
        target.pop(key, None)
    else:
        target[key] = value


def _check_preconditions(rt: ResourceType, live: Obj, preconditions: Obj) -> None:
    meta = live["metadata"]
    for field in ("uid", "resourceVersion"):
        wanted = preconditions.get(field)
        if wanted and wanted != meta.get(field):
            raise Conflict(
                f"Precondition failed: {field.upper() if field == 'uid' else 'ResourceVersion'} in "
                f"precondition: {wanted}, {field} in object meta: {meta.get(field)}",
                name=meta.get("name"),
                group=rt.group,
                kind=rt.plural,
            )


def _json_copy(value: Any) -> Any:
    """A deep copy of stored JSON data (dicts, lists, scalars). Every read hands out a copy,
    and CRDs are large: copy.deepcopy's generality (memo, any type) made it most of the
    emulator's CPU under the crash sweep; this is several times faster."""
    if isinstance(value, dict):
        return {key: _json_copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_json_copy(item) for item in value]
    return value
