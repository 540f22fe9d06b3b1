"""REST routing: turns one HTTP request into a store call and a JSON answer (no socket code)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import yaml

from . import discovery
from .errors import (
    ApiError,
    BadRequest,
    UnsupportedMediaType,
    not_allowed,
    unknown_resource,
)
from .patching import json_patch, merge_patch, strategic_merge_patch
from .resources import ResourceType
from .selectors import fields_match, labels_match, parse_field_selector, parse_label_selector
from .store import ObjectStore
from .tables import render_table

Obj = dict[str, Any]

DEFAULT_WATCH_SECONDS = 1800
PATCH_TYPES = (
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
)


class _YamlLoader(yaml.SafeLoader):
    """Safe YAML that keeps timestamps as strings, as JSON-minded Kubernetes does."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    query: dict[str, str]
    content_type: str
    accept: str
    body: bytes
    host: str
    user_agent: str = ""

    @property
    def field_manager(self) -> str:
        """Who a create or update is recorded as: the `fieldManager` asked for, else, as
        the API server does, the User-Agent's product name (kubectl's "kubectl")."""
        given = self.query.get("fieldManager")
        return given or self.user_agent.split("/", 1)[0].strip()[:128] or "unknown"


@dataclass(frozen=True)
class Response:
    code: int
    body: Obj | str


@dataclass(frozen=True)
class WatchPlan:
    """A watch to stream; the HTTP layer owns the connection while it runs."""

    rt: ResourceType
    namespace: str | None
    since: int | None
    timeout: float
    matches: Callable[[Obj], bool]
    render: Callable[[Obj], Obj]  # the event's object as sent: the object, or a Table of it
    # Watch-list (kubectl >= 1.35 by default): the current objects, then a BOOKMARK saying so.
    initial_events_end: bool = False


@dataclass(frozen=True)
class Target:
    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str


def _ok(body: Obj | str, code: int = 200) -> Response:
    return Response(code, body)


class Router:
    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def handle(self, req: Request) -> Response | WatchPlan:
        try:
            return self._route(req)
        except ApiError as exc:
            return Response(exc.code, exc.status())

    # --- paths ---------------------------------------------------------------------------

    def _route(self, req: Request) -> Response | WatchPlan:
        parts = [p for p in req.path.split("/") if p]
        special = self._special(req, parts)
        if special is not None:
            return special
        if len(parts) >= 2 and parts[0] == "api":
            group, version, rest = "", parts[1], parts[2:]
        elif len(parts) >= 3 and parts[0] == "apis":
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise unknown_resource()
        if not rest:
            return self._discovery(
                req, discovery.resource_list(self.store.registry, group, version)
            )
        return self._dispatch(req, self._target(group, version, rest))

    def _special(self, req: Request, parts: list[str]) -> Response | None:
        registry = self.store.registry
        if parts and parts[0] in ("healthz", "readyz", "livez"):
            return _ok("ok")
        if parts == ["version"]:
            return self._discovery(req, discovery.version_info())
        if parts == ["api"]:
            return self._discovery(req, discovery.core_versions(req.host))
        if parts == ["apis"]:
            return self._discovery(req, discovery.group_list(registry))
        if len(parts) == 2 and parts[0] == "apis":
            return self._discovery(req, discovery.group(registry, parts[1]))
        if not parts or parts[0] == "openapi":
            raise unknown_resource()  # no OpenAPI: kubectl copes when run with --validate=false
        return None

    @staticmethod
    def _discovery(req: Request, doc: Obj | None) -> Response:
        if doc is None:
            raise unknown_resource()
        if req.method != "GET":
            raise not_allowed()
        return _ok(doc)

    def _target(self, group: str, version: str, rest: list[str]) -> Target:
        namespace = None
        if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
            namespace, rest = rest[1], rest[2:]
        if len(rest) > 3:
            raise unknown_resource()
        rt = self.store.registry.lookup(group, version, rest[0])
        name = rest[1] if len(rest) > 1 else None
        sub = rest[2] if len(rest) > 2 else ""
        if (
            rt is None
            or (namespace is not None and not rt.namespaced)
            or (namespace is None and name is not None and rt.namespaced)
            or (sub and not (sub == "status" and rt.has_status))
        ):
            raise unknown_resource()
        return Target(rt, namespace, name, sub)

    # --- verbs ---------------------------------------------------------------------------

    def _dispatch(self, req: Request, target: Target) -> Response | WatchPlan:
        handlers: dict[str, Callable[[Request, Target], Response | WatchPlan]]
        if target.name is None:
            handlers = {"GET": self._list, "POST": self._create, "DELETE": self._delete_collection}
        else:
            handlers = {
                "GET": self._get,
                "PUT": self._update,
                "PATCH": self._patch,
                "DELETE": self._delete,
            }
        handler = handlers.get(req.method)
        if handler is None:
            raise not_allowed()
        return handler(req, target)

    def _list(self, req: Request, target: Target) -> Response | WatchPlan:
        if _flag(req.query.get("watch")):
            return self._watch(req, target, req.query.get("fieldSelector"))
        labels = parse_label_selector(req.query.get("labelSelector"))
        fields = parse_field_selector(req.query.get("fieldSelector"))
        items, rv = self.store.list_resource(target.rt, target.namespace, labels, fields)
        if _wants_table(req):
            return _ok(
                render_table(target.rt, items, rv, req.query.get("includeObject", "Metadata"))
            )
        return _ok(
            {
                "kind": f"{target.rt.kind}List",
                "apiVersion": target.rt.api_version,
                "metadata": {"resourceVersion": rv},
                "items": items,
            }
        )

    def _watch(self, req: Request, target: Target, field_selector: str | None) -> WatchPlan:
        labels = parse_label_selector(req.query.get("labelSelector"))
        fields = parse_field_selector(field_selector)
        since = req.query.get("resourceVersion") or "0"
        timeout = req.query.get("timeoutSeconds") or DEFAULT_WATCH_SECONDS
        try:
            since_rv, seconds = int(since), float(timeout)
        except ValueError as exc:
            raise BadRequest(f"invalid watch parameter: {exc}") from exc
        rt, include = target.rt, req.query.get("includeObject", "Metadata")

        def render(obj: Obj) -> Obj:
            if not _wants_table(req):
                return obj
            return render_table(rt, [obj], obj["metadata"].get("resourceVersion", ""), include)

        watch_list = _flag(req.query.get("sendInitialEvents"))
        return WatchPlan(
            rt,
            target.namespace,
            None if watch_list else since_rv or None,
            seconds,
            lambda obj: labels_match(labels, obj) and fields_match(fields, obj),
            render,
            initial_events_end=watch_list,
        )

    def _get(self, req: Request, target: Target) -> Response | WatchPlan:
        if _flag(req.query.get("watch")):
            return self._watch(req, target, f"metadata.name={target.name}")
        obj = self.store.get_resource(target.rt, target.namespace, target.name or "")
        if _wants_table(req):
            rv = obj["metadata"].get("resourceVersion", "")
            return _ok(
                render_table(target.rt, [obj], rv, req.query.get("includeObject", "Metadata"))
            )
        return _ok(obj)

    def _create(self, req: Request, target: Target) -> Response:
        if target.rt.namespaced and target.namespace is None:
            raise not_allowed()
        obj = self.store.create_resource(
            target.rt,
            target.namespace,
            _json_body(req),
            dry_run=_dry_run(req),
            admit=True,
            manager=req.field_manager,
        )
        return _ok(obj, 201)

    def _update(self, req: Request, target: Target) -> Response:
        obj = self.store.update_resource(
            target.rt,
            target.namespace,
            target.name or "",
            _json_body(req),
            subresource=target.subresource,
            dry_run=_dry_run(req),
            admit=True,
            manager=req.field_manager,
        )
        return _ok(obj)

    def _patch(self, req: Request, target: Target) -> Response:
        media = req.content_type.split(";")[0].strip().lower()
        if media not in PATCH_TYPES:
            raise UnsupportedMediaType(
                "the body of the request was in an unknown format - accepted media types include: "
                + ", ".join(PATCH_TYPES)
            )
        if media == "application/apply-patch+yaml":
            return self._apply(req, target)
        body = _json_body(req, allow_list=True)
        patcher = {
            "application/json-patch+json": json_patch,
            "application/merge-patch+json": merge_patch,
            "application/strategic-merge-patch+json": strategic_merge_patch,
        }[media]
        obj = self.store.patch_resource(
            target.rt,
            target.namespace,
            target.name or "",
            lambda live: patcher(live, body),
            subresource=target.subresource,
            dry_run=_dry_run(req),
            admit=True,
            manager=req.field_manager,
        )
        return _ok(obj)

    def _apply(self, req: Request, target: Target) -> Response:
        manager = req.query.get("fieldManager")
        if not manager:
            raise BadRequest(
                "PATCH requests with apply-patch+yaml require a fieldManager parameter"
            )
        existed = self._exists(target)
        obj = self.store.apply_resource(
            target.rt,
            target.namespace,
            target.name or "",
            _yaml_body(req),
            manager,
            force=_flag(req.query.get("force")),
            subresource=target.subresource,
            dry_run=_dry_run(req),
            admit=True,
        )
        return _ok(obj, 200 if existed else 201)

    def _exists(self, target: Target) -> bool:
        try:
            self.store.get_resource(target.rt, target.namespace, target.name or "")
        except ApiError:
            return False
        return True

    def _delete(self, req: Request, target: Target) -> Response:
        if target.subresource:
            raise not_allowed()
        options = _json_body(req) if req.body.strip() else {}
        obj, gone = self.store.delete_resource(
            target.rt,
            target.namespace,
            target.name or "",
            preconditions=options.get("preconditions") or {},
            dry_run=_dry_run(req) or "All" in (options.get("dryRun") or []),
            admit=True,
        )
        if not gone:
            # Marked for deletion (finalizers, a Terminating namespace): the object itself.
            return _ok(obj)
        details = {
            "name": target.name,
            "group": target.rt.group,
            "kind": target.rt.plural,
            "uid": obj["metadata"].get("uid"),
        }
        return _ok(
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Success",
                "details": {k: v for k, v in details.items() if v},
            }
        )

    def _delete_collection(self, req: Request, target: Target) -> Response:
        if target.rt.namespaced and target.namespace is None:
            raise not_allowed()
        items = self.store.delete_collection(
            target.rt,
            target.namespace,
            parse_label_selector(req.query.get("labelSelector")),
            parse_field_selector(req.query.get("fieldSelector")),
            admit=True,
        )
        return _ok(
            {
                "kind": f"{target.rt.kind}List",
                "apiVersion": target.rt.api_version,
                "metadata": {"resourceVersion": self.store.resource_version},
                "items": items,
            }
        )


def _flag(value: str | None) -> bool:
    return (value or "").lower() in ("true", "1")


def _dry_run(req: Request) -> bool:
    return req.query.get("dryRun") == "All"


def _wants_table(req: Request) -> bool:
    return "as=table" in req.accept.replace(" ", "").lower()


def _json_body(req: Request, *, allow_list: bool = False) -> Any:
    if "protobuf" in req.content_type:
        raise UnsupportedMediaType("only JSON request bodies are supported by this emulator")
    try:
        body = json.loads(req.body or b"null")
    except ValueError as exc:
        raise BadRequest(f"the request body is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) and not (allow_list and isinstance(body, list)):
        raise BadRequest("the request body must be a JSON object")
    return body


def _yaml_body(req: Request) -> Obj:
    try:
        body = yaml.load(req.body.decode("utf-8") or "null", Loader=_YamlLoader)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise BadRequest(f"error decoding YAML: {exc}") from exc
    if not isinstance(body, dict):
        raise BadRequest("the apply configuration must be a YAML or JSON object")
    return body
