"""Server-side apply: field ownership per manager, kept in `metadata.managedFields`.

A simplification of the real structured-merge-diff. Maps are merged key by key. The pod
spec's associative lists (`x-kubernetes-list-type: map`: containers and volumes by name,
a container's env by name, volumeMounts by mountPath, ports by containerPort and protocol)
are merged element by element, by their keys, and each element's fields are owned on
their own (fieldsV1 `k:{"name":"controller"}` entries, as real servers write them). Every
other value (scalars and other lists) is one atomic field.

A manager owns the fields it applied (operation Apply) or set by a create or update
(operation Update). Re-applying without a field removes it, unless another manager owns
it (or something under it); an apply changing a field another manager owns conflicts,
unless forced, which takes it over.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from .errors import Conflict


@dataclass(frozen=True)
class Key:
    """One element of an associative list, by its key fields (sorted, as JSON)."""

    text: str

    @classmethod
    def of(cls, values: dict[str, Any]) -> Key:
        return cls(json.dumps(values, sort_keys=True, separators=(",", ":")))

    def matches(self, element: Any) -> bool:
        keys = tuple(json.loads(self.text))
        return isinstance(element, dict) and element_key(element, keys) == self


# A path's steps: a field's name, or an associative list's element.
Path = tuple[str | Key, ...]

# Never owned or removed by apply: identity of the object and fields the server manages.
IDENTITY_PATHS: set[Path] = {
    ("apiVersion",),
    ("kind",),
    ("metadata", "name"),
    ("metadata", "namespace"),
}
SYSTEM_METADATA = (
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "managedFields",
    "selfLink",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
)

# Where each kind holds a pod spec, and the pod spec's associative lists (by their field
# path below it, elements left out) with their key fields.
POD_SPEC_AT: dict[str, tuple[str, ...]] = {
    "Pod": ("spec",),
    "PodTemplate": ("template", "spec"),
    **dict.fromkeys(
        ("Deployment", "ReplicaSet", "DaemonSet", "StatefulSet", "Job", "ReplicationController"),
        ("spec", "template", "spec"),
    ),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
}
POD_LIST_KEYS: dict[tuple[str, ...], tuple[str, ...]] = {("volumes",): ("name",)}
for _containers in ("containers", "initContainers"):
    POD_LIST_KEYS |= {
        (_containers,): ("name",),
        (_containers, "env"): ("name",),
        (_containers, "volumeMounts"): ("mountPath",),
        (_containers, "ports"): ("containerPort", "protocol"),
    }
# A key field an element may leave out, and the value the API server defaults it to.
KEY_DEFAULTS = {"protocol": "TCP"}


def strip_system_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        for key in SYSTEM_METADATA:
            metadata.pop(key, None)
    return result


def list_keys(kind: str, path: Path) -> tuple[str, ...] | None:
    """The key fields of the list at `path` of a `kind`, if it is an associative list."""
    fields = tuple(step for step in path if isinstance(step, str))
    root = POD_SPEC_AT.get(kind)
    if root is None or fields[: len(root)] != root:
        return None
    return POD_LIST_KEYS.get(fields[len(root) :])


def element_key(element: dict[str, Any], keys: tuple[str, ...]) -> Key | None:
    values = {name: element.get(name, KEY_DEFAULTS.get(name)) for name in keys}
    if any(value is None for value in values.values()):
        return None
    return Key.of(values)


def _keyed(value: Any, kind: str, path: Path) -> dict[Key, Any] | None:
    """An associative list's elements by key; None for any other value (or one whose
    elements lack their keys or repeat one: the API server refuses those; kept atomic)."""
    keys = list_keys(kind, path) if isinstance(value, list) else None
    if keys is None:
        return None
    elements: dict[Key, Any] = {}
    for element in value:
        key = element_key(element, keys) if isinstance(element, dict) else None
        if key is None or key in elements:
            return None
        elements[key] = element
    return elements


def owned_paths(obj: dict[str, Any], kind: str = "") -> set[Path]:
    """The fields of a configuration: leaves, and each associative list element itself
    (non-empty maps and those elements are walked, the rest are leaves)."""
    kind = kind or obj.get("kind", "")
    return _map_paths(obj, kind, ()) - IDENTITY_PATHS


def _map_paths(obj: dict[str, Any], kind: str, prefix: Path) -> set[Path]:
    paths: set[Path] = set()
    for name, value in obj.items():
        if value is not None:
            paths |= _value_paths(value, kind, (*prefix, name))
    return paths


def _value_paths(value: Any, kind: str, path: Path) -> set[Path]:
    if isinstance(value, dict) and value:
        return _map_paths(value, kind, path)
    elements = _keyed(value, kind, path)
    if not elements:
        return {path}
    paths: set[Path] = set()
    for key, element in elements.items():
        paths |= {(*path, key)} | _map_paths(element, kind, (*path, key))
    return paths


def _step_name(step: str | Key) -> str:
    return f"k:{step.text}" if isinstance(step, Key) else f"f:{step}"


def _order(path: Path) -> tuple[str, ...]:
    return tuple(_step_name(step) for step in path)


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths, key=_order):
        node = root
        for step in path:
            node = node.setdefault(_step_name(step), {})
        if path and isinstance(path[-1], Key):
            node["."] = {}  # the element itself (its membership of the list)
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for name, child in (fields or {}).items():
        if name == ".":
            if prefix:
                paths.add(prefix)
            continue
        if name.startswith("f:"):
            path = (*prefix, name[2:])
        elif name.startswith("k:"):
            path = (*prefix, Key.of(json.loads(name[2:])))
        else:
            continue  # "v:" (set values) and "i:" entries: this emulator writes none
        paths |= from_fields_v1(child, path) or {path}
    return paths


def _child(node: Any, step: str | Key) -> tuple[bool, Any]:
    if isinstance(step, Key):
        if isinstance(node, list):
            for element in node:
                if step.matches(element):
                    return True, element
        return False, None
    if isinstance(node, dict) and step in node:
        return True, node[step]
    return False, None


def _lookup(obj: Any, path: Path) -> tuple[bool, Any]:
    for step in path:
        present, obj = _child(obj, step)
        if not present:
            return False, None
    return True, obj


def _drop(node: Any, step: str | Key) -> None:
    if isinstance(step, Key) and isinstance(node, list):
        node[:] = [element for element in node if not step.matches(element)]
    elif isinstance(node, dict):
        node.pop(step, None)


def _remove_path(obj: dict[str, Any], path: Path, applied: dict[str, Any]) -> None:
    parents: list[tuple[Any, str | Key]] = []
    node: Any = obj
    for step in path[:-1]:
        present, child = _child(node, step)
        if not present:
            return
        parents.append((node, step))
        node = child
    _drop(node, path[-1])
    # Maps emptied by the removal go too, unless the applied config still names them.
    for depth in range(len(parents), 0, -1):
        parent, step = parents[depth - 1]
        prefix = path[:depth]
        if (
            isinstance(step, Key)
            or _child(parent, step)[1] != {}
            or prefix == ("metadata",)
            or _lookup(applied, prefix)[0]
        ):
            break
        _drop(parent, step)


def merge(live: Any, applied: Any, kind: str, path: Path = ()) -> Any:
    """`applied` over `live` (whose parts the result takes: pass a copy): maps key by key
    (None removes a key, as in a merge patch), associative lists element by element
    (live's order, new elements after), anything else replaced."""
    if isinstance(applied, dict):
        merged = dict(live) if isinstance(live, dict) else {}
        for name, value in applied.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = merge(merged.get(name), value, kind, (*path, name))
        return merged
    wanted, present = _keyed(applied, kind, path), _keyed(live, kind, path)
    if wanted is None or present is None:
        return copy.deepcopy(applied)
    kept = [
        merge(element, wanted[key], kind, (*path, key)) if key in wanted else element
        for key, element in present.items()
    ]
    added = [merge(None, e, kind, (*path, key)) for key, e in wanted.items() if key not in present]
    return kept + added


def _is_key_field(path: Path) -> bool:
    """Whether `path` is a key field of its element: it goes only with the element."""
    if len(path) < 2 or not isinstance(path[-2], Key) or isinstance(path[-1], Key):
        return False
    return path[-1] in json.loads(path[-2].text)


def _format_path(path: Path) -> str:
    """A field as the API server's conflict message writes it:
    `.spec.template.spec.containers[name="controller"].image`."""
    return "".join(_format_step(step) for step in path)


def _format_step(step: str | Key) -> str:
    if isinstance(step, str):
        return f".{step}"
    values = json.loads(step.text)
    return "[" + ",".join(f"{name}={json.dumps(value)}" for name, value in values.items()) + "]"


def _conflicts(
    live: dict[str, Any], applied: dict[str, Any], paths: set[Path], others: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], Path]]:
    found = []
    for entry in others:
        for path in sorted(paths & from_fields_v1(entry.get("fieldsV1") or {}), key=_order):
            if isinstance(path[-1], Key):
                continue  # an element's membership has no value to differ
            present, value = _lookup(live, path)
            if present and value != _lookup(applied, path)[1]:
                found.append((entry, path))
    return found


def _conflict_error(conflicts: list[tuple[dict[str, Any], Path]]) -> Conflict:
    count = len(conflicts)
    listed = ", ".join(
        f'conflict with "{entry.get("manager")}": {_format_path(path)}' for entry, path in conflicts
    )
    causes = [
        {
            "reason": "FieldManagerConflict",
            "message": f'conflict with "{entry.get("manager")}"',
            "field": _format_path(path),
        }
        for entry, path in conflicts
    ]
    plural = "conflict" if count == 1 else "conflicts"
    return Conflict(f"Apply failed with {count} {plural}: {listed}", causes=causes)


def _without(entry: dict[str, Any], paths: set[Path]) -> dict[str, Any]:
    owned = from_fields_v1(entry.get("fieldsV1") or {})
    if not owned & paths:
        return entry
    return {**entry, "fieldsV1": to_fields_v1(owned - paths)}


def _owns_some(entry: dict[str, Any]) -> bool:
    return bool(from_fields_v1(entry.get("fieldsV1") or {}))


def server_side_apply(
    live: dict[str, Any] | None,
    applied: dict[str, Any],
    *,
    manager: str,
    force: bool,
    now: str,
    subresource: str = "",
) -> dict[str, Any]:
    """Merge `applied` into `live` (None when creating) and record `manager`'s ownership.

    Raises Conflict when another manager owns a field this apply changes, unless `force`.
    """
    live = live or {}
    applied = strip_system_metadata(applied)
    kind = applied.get("kind") or live.get("kind") or ""
    paths = owned_paths(applied, kind)
    entries = list((live.get("metadata") or {}).get("managedFields") or [])
    mine = next((e for e in entries if _is_entry(e, manager, "Apply", subresource)), None)
    conflicts = _conflicts(live, applied, paths, [e for e in entries if e is not mine])
    if conflicts and not force:
        raise _conflict_error(conflicts)
    taken = {path for _, path in conflicts}
    if taken:
        entries = [e if e is mine else _without(e, taken) for e in entries]
    others_owned: set[Path] = set()
    for other in (e for e in entries if e is not mine):
        others_owned |= from_fields_v1(other.get("fieldsV1") or {})
    previous = from_fields_v1(mine.get("fieldsV1") or {}) if mine else set()
    merged = merge(copy.deepcopy(live), applied, kind)
    for path in sorted(previous - paths, key=len, reverse=True):
        if not _is_key_field(path) and not any(o[: len(path)] == path for o in others_owned):
            _remove_path(merged, path, applied)
    entry = _entry(manager, "Apply", subresource, applied.get("apiVersion", ""), paths, now, mine)
    entries = [entry if e is mine else e for e in entries] if mine else [*entries, entry]
    # A manager whose every field was taken over by force no longer manages anything.
    merged.setdefault("metadata", {})["managedFields"] = [
        e for e in entries if e is entry or _owns_some(e)
    ]
    return merged


def written_fields(obj: dict[str, Any], kind: str, subresource: str = "") -> set[Path]:
    """The fields a create or update of a `kind` writes: the status alone through the
    status subresource, everything but the status (and the server's metadata) otherwise."""
    paths = {p for p in owned_paths(obj, kind) if not _server_managed(p)}
    if subresource == "status":
        return {p for p in paths if p[0] == "status"}
    return {p for p in paths if p[0] != "status"}


def _server_managed(path: Path) -> bool:
    return len(path) > 1 and path[0] == "metadata" and path[1] in SYSTEM_METADATA


def update_ownership(
    live: dict[str, Any] | None,
    written: dict[str, Any],
    *,
    manager: str,
    now: str,
    subresource: str = "",
) -> list[dict[str, Any]]:
    """The managedFields once `manager` created (`live` None) or updated the object to
    `written`: it owns what it added or changed, no other manager keeps those, and what
    it removed nobody owns."""
    kind = written.get("kind", "")
    before = written_fields(live or {}, kind, subresource)
    after = written_fields(written, kind, subresource)
    changed = {
        p
        for p in before & after
        if not isinstance(p[-1], Key) and _lookup(live, p)[1] != _lookup(written, p)[1]
    }
    added, removed = after - before, before - after
    entries = list(((live or {}).get("metadata") or {}).get("managedFields") or [])
    mine = next((e for e in entries if _is_entry(e, manager, "Update", subresource)), None)
    entries = [e if e is mine else _without(e, changed | added | removed) for e in entries]
    owned = from_fields_v1(mine.get("fieldsV1") or {}) if mine else set()
    owned = (owned | changed | added) - removed
    api_version = written.get("apiVersion", "")
    entry = _entry(manager, "Update", subresource, api_version, owned, now, mine)
    if mine is None:
        entries.append(entry)
    else:
        entries = [entry if e is mine else e for e in entries]
    return [e for e in entries if _owns_some(e)]


def _is_entry(entry: dict[str, Any], manager: str, operation: str, subresource: str) -> bool:
    return (
        entry.get("manager") == manager
        and entry.get("operation") == operation
        and entry.get("subresource", "") == subresource
    )


def _entry(
    manager: str,
    operation: str,
    subresource: str,
    api_version: str,
    paths: set[Path],
    now: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": operation,
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    # An unchanged ownership keeps its old time, so a repeated write stays a no-op.
    if previous and {**previous, "time": now} == entry:
        entry["time"] = previous.get("time", now)
    return entry
