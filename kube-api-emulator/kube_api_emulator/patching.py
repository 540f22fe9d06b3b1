"""The three classic patch formats: JSON merge patch, strategic merge patch and JSON patch."""

from __future__ import annotations

import copy
from typing import Any

from .errors import BadRequest, Invalid

# Lists that strategic merge patch merges item by item, and the key identifying an item.
# `ports` appear both in containers (containerPort) and services (port).
MERGE_KEYS: dict[str, tuple[str, ...]] = {
    "containers": ("name",),
    "initContainers": ("name",),
    "ephemeralContainers": ("name",),
    "env": ("name",),
    "volumes": ("name",),
    "imagePullSecrets": ("name",),
    "volumeMounts": ("mountPath",),
    "ports": ("containerPort", "port"),
    "hostAliases": ("ip",),
}


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: maps merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any) -> Any:
    """Merge patch, except well-known keyed lists merge by key and `$patch` directives work."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if not k.startswith("$")}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [item for item in result.get(field) or [] if item not in value]
        elif key.startswith("$"):
            continue  # $setElementOrder, $retainKeys: ordering hints we do not need
        elif value is None:
            result.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(result.get(key), list):
            result[key] = _merge_keyed_list(result[key], value, MERGE_KEYS[key])
        else:
            merged = strategic_merge_patch(result.get(key), value)
            if merged is None:
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _item_key(item: Any, key_names: tuple[str, ...]) -> tuple[str, Any] | None:
    if not isinstance(item, dict):
        return None
    for name in key_names:
        if name in item:
            return (name, item[name])
    return None


def _merge_keyed_list(live: list[Any], patch: list[Any], key_names: tuple[str, ...]) -> list[Any]:
    result = copy.deepcopy(live)
    for item in patch:
        key = _item_key(item, key_names)
        index = next(
            (i for i, old in enumerate(result) if key and _item_key(old, key_names) == key), None
        )
        if isinstance(item, dict) and item.get("$patch") == "delete":
            if index is not None:
                del result[index]
        elif index is None:
            result.append(strategic_merge_patch(None, item))
        else:
            result[index] = strategic_merge_patch(result[index], item)
    return result


# --- RFC 6902 JSON patch -------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise BadRequest(f"invalid JSON pointer: {path!r}")
    if path == "":
        return []
    return [token.replace("~1", "/").replace("~0", "~") for token in path[1:].split("/")]


def _index(container: list[Any], token: str, *, for_add: bool = False) -> int:
    if for_add and token == "-":
        return len(container)
    if not token.isdigit():
        raise Invalid(f"invalid array index: {token}")
    index = int(token)
    limit = len(container) + (1 if for_add else 0)
    if index >= limit:
        raise Invalid(f"array index out of bounds: {index}")
    return index


def _resolve(doc: Any, tokens: list[str]) -> Any:
    for token in tokens:
        if isinstance(doc, dict):
            if token not in doc:
                raise Invalid(f"path not found: /{'/'.join(tokens)}")
            doc = doc[token]
        elif isinstance(doc, list):
            doc = doc[_index(doc, token)]
        else:
            raise Invalid(f"path not found: /{'/'.join(tokens)}")
    return doc


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return copy.deepcopy(value)
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, for_add=True), copy.deepcopy(value))
    else:
        raise Invalid(f"cannot add at /{'/'.join(tokens)}")
    return doc


def _remove(doc: Any, tokens: list[str]) -> tuple[Any, Any]:
    if not tokens:
        raise Invalid("cannot remove the whole document")
    parent = _resolve(doc, tokens[:-1])
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise Invalid(f"path not found: /{'/'.join(tokens)}")
        return doc, parent.pop(last)
    if isinstance(parent, list):
        return doc, parent.pop(_index(parent, last))
    raise Invalid(f"path not found: /{'/'.join(tokens)}")


def _apply_op(doc: Any, op: dict[str, Any]) -> Any:
    name = op.get("op")
    tokens = _pointer(op.get("path"))
    if name == "add":
        return _add(doc, tokens, op.get("value"))
    if name == "remove":
        return _remove(doc, tokens)[0]
    if name == "replace":
        _resolve(doc, tokens)
        if not tokens:
            return copy.deepcopy(op.get("value"))
        doc, _ = _remove(doc, tokens)
        return _add(doc, tokens, op.get("value"))
    if name == "test":
        if _resolve(doc, tokens) != op.get("value"):
            raise Invalid(f"testing value /{'/'.join(tokens)} failed")
        return doc
    if name in ("move", "copy"):
        source = _pointer(op.get("from"))
        value = copy.deepcopy(_resolve(doc, source))
        if name == "move":
            doc, _ = _remove(doc, source)
        return _add(doc, tokens, value)
    raise BadRequest(f"unexpected JSON patch operation: {name!r}")


def json_patch(target: Any, operations: Any) -> Any:
    """Apply RFC 6902 operations to a copy of `target`; a failed op fails the whole patch."""
    if not isinstance(operations, list) or not all(isinstance(op, dict) for op in operations):
        raise BadRequest("a JSON patch must be a list of operation objects")
    doc = copy.deepcopy(target)
    for op in operations:
        doc = _apply_op(doc, op)
    return doc
