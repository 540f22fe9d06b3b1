"""Server-side apply: field ownership per manager, kept in `metadata.managedFields`.

Simplification of the real structured-merge-diff: maps are merged key by key and every
other value (scalars and all lists) is one atomic field. A manager owns the leaf paths it
applied; re-applying without a path removes that field unless another apply manager owns it.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import Conflict
from .patching import merge_patch

Path = tuple[str, ...]

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


def strip_system_metadata(obj: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    metadata = result.get("metadata")
    if isinstance(metadata, dict):
        for key in SYSTEM_METADATA:
            metadata.pop(key, None)
    return result


def owned_paths(obj: dict[str, Any], prefix: Path = ()) -> set[Path]:
    """Leaf paths of an applied configuration (non-empty maps are walked, the rest are leaves)."""
    paths: set[Path] = set()
    for key, value in obj.items():
        path = (*prefix, key)
        if value is None:
            continue
        if isinstance(value, dict) and value:
            paths |= owned_paths(value, path)
        else:
            paths.add(path)
    return paths - IDENTITY_PATHS


def to_fields_v1(paths: set[Path]) -> dict[str, Any]:
    root: dict[str, Any] = {}
    for path in sorted(paths):
        node = root
        for key in path:
            node = node.setdefault(f"f:{key}", {})
    return root


def from_fields_v1(fields: dict[str, Any], prefix: Path = ()) -> set[Path]:
    paths: set[Path] = set()
    for key, child in (fields or {}).items():
        if not key.startswith("f:"):
            continue  # "." and keyed-list entries written by real servers; we never write them
        path = (*prefix, key[2:])
        paths |= from_fields_v1(child, path) or {path}
    return paths


def _lookup(obj: Any, path: Path) -> tuple[bool, Any]:
    for key in path:
        if not isinstance(obj, dict) or key not in obj:
            return False, None
        obj = obj[key]
    return True, obj


def _remove_path(obj: dict[str, Any], path: Path, applied: dict[str, Any]) -> None:
    parents: list[tuple[dict[str, Any], str]] = []
    node: Any = obj
    for key in path[:-1]:
        if not isinstance(node, dict) or key not in node:
            return
        parents.append((node, key))
        node = node[key]
    if isinstance(node, dict):
        node.pop(path[-1], None)
    # Maps emptied by the removal go too, unless the applied config still names them.
    for depth in range(len(parents), 0, -1):
        parent, key = parents[depth - 1]
        prefix = path[:depth]
        if parent[key] != {} or prefix == ("metadata",) or _lookup(applied, prefix)[0]:
            break
        del parent[key]


def _format_path(path: Path) -> str:
    return "." + ".".join(path)


def _conflicts(
    live: dict[str, Any], applied: dict[str, Any], paths: set[Path], others: list[dict[str, Any]]
) -> list[tuple[dict[str, Any], Path]]:
    found = []
    for entry in others:
        for path in sorted(paths & from_fields_v1(entry.get("fieldsV1") or {})):
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


def _take_over(entry: dict[str, Any], paths: set[Path]) -> dict[str, Any]:
    remaining = from_fields_v1(entry.get("fieldsV1") or {}) - paths
    return {**entry, "fieldsV1": to_fields_v1(remaining)}


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

    Raises Conflict when another apply manager owns a field this apply changes, unless `force`.
    """
    live = live or {}
    applied = strip_system_metadata(applied)
    paths = owned_paths(applied)
    entries = list((live.get("metadata") or {}).get("managedFields") or [])
    mine = next((e for e in entries if _is_entry(e, manager, subresource)), None)
    others = [e for e in entries if _is_other(e, mine)]
    conflicts = _conflicts(live, applied, paths, others)
    if conflicts and not force:
        raise _conflict_error(conflicts)
    taken = {path for _, path in conflicts}
    if taken:
        entries = [_take_over(e, taken) if _is_other(e, mine) else e for e in entries]
    others_owned: set[Path] = set()
    for other in (e for e in entries if _is_other(e, mine)):
        others_owned |= from_fields_v1(other.get("fieldsV1") or {})
    previous = from_fields_v1(mine.get("fieldsV1") or {}) if mine else set()
    merged = merge_patch(live, applied)
    for path in sorted(previous - paths - others_owned, key=len, reverse=True):
        _remove_path(merged, path, applied)
    entry = _entry(manager, subresource, applied.get("apiVersion", ""), paths, now, mine)
    entries = [entry if e is mine else e for e in entries] if mine else [*entries, entry]
    # A manager whose every field was taken over by force no longer manages anything.
    merged.setdefault("metadata", {})["managedFields"] = [
        e for e in entries if not _is_other(e, entry) or from_fields_v1(e.get("fieldsV1") or {})
    ]
    return merged


def _is_entry(entry: dict[str, Any], manager: str, subresource: str) -> bool:
    return (
        entry.get("manager") == manager
        and entry.get("operation") == "Apply"
        and entry.get("subresource", "") == subresource
    )


def _is_other(entry: dict[str, Any], mine: dict[str, Any] | None) -> bool:
    return entry is not mine and entry.get("operation") == "Apply"


def _entry(
    manager: str,
    subresource: str,
    api_version: str,
    paths: set[Path],
    now: str,
    previous: dict[str, Any] | None,
) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "manager": manager,
        "operation": "Apply",
        "apiVersion": api_version,
        "time": now,
        "fieldsType": "FieldsV1",
        "fieldsV1": to_fields_v1(paths),
    }
    if subresource:
        entry["subresource"] = subresource
    # An unchanged ownership keeps its old time, so a repeated apply stays a no-op.
    if previous and {**previous, "time": now} == entry:
        entry["time"] = previous.get("time", now)
    return entry
