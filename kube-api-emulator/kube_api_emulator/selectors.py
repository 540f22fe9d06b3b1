"""Label and field selectors, parsed like the API server reads labelSelector and fieldSelector."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import BadRequest

_KEY = r"[A-Za-z0-9][-A-Za-z0-9_./]*"
_VALUE = r"[-A-Za-z0-9_.]*"
_SET_RE = re.compile(rf"^(?P<key>{_KEY})\s+(?P<op>in|notin)\s*\((?P<values>[^()]*)\)$")
_NOT_EXISTS_RE = re.compile(rf"^!\s*(?P<key>{_KEY})$")
_COMPARE_RE = re.compile(rf"^(?P<key>{_KEY})\s*(?P<op>==|!=|=|<|>)\s*(?P<value>{_VALUE})$")
_EXISTS_RE = re.compile(rf"^(?P<key>{_KEY})$")


@dataclass(frozen=True)
class Requirement:
    """One label requirement; `op` is one of = != in notin exists !exists gt lt."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op in ("=", "in"):
            return present and value in self.values
        if self.op in ("!=", "notin"):
            return not present or value not in self.values
        if self.op == "exists":
            return present
        if self.op == "!exists":
            return not present
        return present and _compare(value, self.op, self.values[0])


def _compare(value: str | None, op: str, bound: str) -> bool:
    try:
        number, limit = int(value or ""), int(bound)
    except ValueError:
        return False
    return number > limit if op == "gt" else number < limit


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a `(...)` value set."""
    parts: list[str] = []
    current: list[str] = []
    depth = 0
    for char in text:
        if char == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        depth += {"(": 1, ")": -1}.get(char, 0)
        current.append(char)
    parts.append("".join(current))
    return [part.strip() for part in parts]


def _parse_requirement(term: str) -> Requirement:
    if match := _SET_RE.match(term):
        values = tuple(v.strip() for v in match["values"].split(",") if v.strip())
        return Requirement(match["key"], match["op"], values)
    if match := _NOT_EXISTS_RE.match(term):
        return Requirement(match["key"], "!exists")
    if match := _COMPARE_RE.match(term):
        op = {"==": "=", "<": "lt", ">": "gt"}.get(match["op"], match["op"])
        return Requirement(match["key"], op, (match["value"],))
    if match := _EXISTS_RE.match(term):
        return Requirement(match["key"], "exists")
    raise BadRequest(f"unable to parse requirement: {term!r}")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse e.g. `app=web,tier!=db,env in (a,b),!legacy`; an empty selector matches all."""
    if not text or not text.strip():
        return []
    return [_parse_requirement(term) for term in _split_top_level(text)]


def labels_match(requirements: list[Requirement], obj: dict[str, Any]) -> bool:
    labels = (obj.get("metadata") or {}).get("labels") or {}
    return all(req.matches(labels) for req in requirements)


@dataclass(frozen=True)
class FieldRequirement:
    path: tuple[str, ...]
    negate: bool
    value: str

    def matches(self, obj: dict[str, Any]) -> bool:
        return (_field_text(obj, self.path) == self.value) != self.negate


def _field_text(obj: Any, path: tuple[str, ...]) -> str:
    for key in path:
        obj = obj.get(key) if isinstance(obj, dict) else None
    if obj is None:
        return ""
    if isinstance(obj, bool):
        return "true" if obj else "false"
    return str(obj)


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    """Parse `a.b=c,d!=e`. Any dotted path is accepted, a superset of what real servers allow."""
    if not text or not text.strip():
        return []
    result = []
    for term in _split_top_level(text):
        match = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", term)
        if not match:
            raise BadRequest(f"invalid selector: '{text}'; can't understand '{term}'")
        path, op, value = match.groups()
        result.append(FieldRequirement(tuple(path.split(".")), op == "!=", value))
    return result


def fields_match(requirements: list[FieldRequirement], obj: dict[str, Any]) -> bool:
    return all(req.matches(obj) for req in requirements)
