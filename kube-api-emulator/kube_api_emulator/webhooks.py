"""Admission webhooks: the API server calls them on a client's write, before it stores it.

Every CREATE, UPDATE (PUT, PATCH, server-side apply) and DELETE a client sends is offered
to the webhooks of the stored MutatingWebhookConfigurations, then of the
ValidatingWebhookConfigurations, whose rules match it (operation, API group, version,
resource or `resource/subresource`, scope) and whose namespace and object selectors match
(the object selector against the new or the old object's labels). Writes to webhook
configurations themselves are never offered, as on a real server: a broken webhook can
always be removed. A mutating webhook's JSON patch is applied; a webhook that denies stops
the write ('admission webhook "<name>" denied the request: ...').

The emulator runs no pods, so it cannot reach a webhook's Service itself: it hands each
call to a `WebhookCaller`, given by whatever stands in for the cluster's workloads, which
answers the AdmissionReview's response or raises WebhookCallError with the reason the
API server would give (no endpoints, a TLS failure, ...). Without a caller, no Service
has endpoints. A call that fails rejects the write when the webhook's failurePolicy is
Fail (the default), as a 500 InternalError worded as the API server words it, and is
passed over when it is Ignore.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from typing import Any

from .errors import ApiError, BadRequest
from .patching import json_patch
from .resources import ResourceType
from .selectors import Requirement

Obj = dict[str, Any]

ADMISSION_GROUP = "admissionregistration.k8s.io"
CONFIGURATIONS = (
    (ADMISSION_GROUP, "mutatingwebhookconfigurations"),
    (ADMISSION_GROUP, "validatingwebhookconfigurations"),
)
MUTATING, VALIDATING = CONFIGURATIONS


class WebhookCallError(Exception):
    """A webhook could not be called or did not answer; the message is the reason, as the
    API server reports it (e.g. 'no endpoints available for service "x"')."""


# (the webhook as configured, the AdmissionReview's request) -> the AdmissionReview's
# response: {"allowed": bool, "status": {...}, "patch": base64 JSON patch, "patchType"}.
WebhookCaller = Callable[[Obj, Obj], Obj]


class InternalError(ApiError):
    """The API server's 500: here, a webhook it could not call."""


def no_pods(webhook: Obj, request: Obj) -> Obj:
    """The caller of a cluster that runs nothing: no Service has endpoints."""
    service = (webhook.get("clientConfig") or {}).get("service")
    if service:
        raise WebhookCallError(f'no endpoints available for service "{service.get("name")}"')
    raise WebhookCallError("connect: connection refused")


def url_of(webhook: Obj) -> str:
    """Where the API server posts to: the URL, or the Service's in-cluster address."""
    config = webhook.get("clientConfig") or {}
    timeout = webhook.get("timeoutSeconds") or 10
    if config.get("url"):
        return f"{config['url']}?timeout={timeout}s"
    service = config.get("service") or {}
    host = f"{service.get('name')}.{service.get('namespace')}.svc:{service.get('port') or 443}"
    return f"https://{host}{service.get('path') or ''}?timeout={timeout}s"


def failed_call(webhook: Obj, reason: str) -> InternalError:
    message = (
        f'failed calling webhook "{webhook.get("name")}": failed to call webhook: '
        f'Post "{url_of(webhook)}": {reason}'
    )
    return InternalError(f"Internal error occurred: {message}", causes=[{"message": message}])


def denied(webhook: Obj, status: Obj | None) -> ApiError:
    """A webhook's refusal, as the API server passes it on (at least a 400)."""
    status = status or {}
    said = f'admission webhook "{webhook.get("name")}" denied the request'
    detail = status.get("message") or status.get("reason")
    error = ApiError(f"{said}: {detail}" if detail else f"{said} without explanation")
    error.code = max(int(status.get("code") or 400), 400)
    error.reason = status.get("reason") or ""
    return error


def rule_matches(rule: Obj, operation: str, rt: ResourceType, subresource: str) -> bool:
    def among(values: Any, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])

    resource = f"{rt.plural}/{subresource}" if subresource else rt.plural
    resources = rule.get("resources") or []
    by_resource = (
        resource in resources
        or "*/*" in resources
        or (not subresource and "*" in resources)
        or (bool(subresource) and f"{rt.plural}/*" in resources)
        or (bool(subresource) and f"*/{subresource}" in resources)
    )
    scope = rule.get("scope") or "*"
    return (
        among(rule.get("operations"), operation)
        and among(rule.get("apiGroups"), rt.group)
        and among(rule.get("apiVersions"), rt.version)
        and by_resource
        and (scope == "*" or (scope == "Namespaced") == rt.namespaced)
    )


def selector_matches(selector: Obj | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (matchLabels, matchExpressions); empty or absent matches all."""
    selector = selector or {}
    wanted = [
        Requirement(k, "=", (str(v),)) for k, v in (selector.get("matchLabels") or {}).items()
    ]
    for expression in selector.get("matchExpressions") or []:
        op = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!exists"}
        wanted.append(
            Requirement(
                expression.get("key", ""),
                op.get(expression.get("operator", ""), "in"),
                tuple(str(v) for v in expression.get("values") or []),
            )
        )
    return all(requirement.matches(labels) for requirement in wanted)


def labels_of(obj: Obj | None) -> dict[str, str]:
    return ((obj or {}).get("metadata") or {}).get("labels") or {}


def applies(
    webhook: Obj,
    operation: str,
    rt: ResourceType,
    subresource: str,
    namespace_labels: dict[str, str] | None,
    obj: Obj | None,
    old: Obj | None,
) -> bool:
    """Whether the webhook is called for this write. `namespace_labels`: those of the
    object's namespace (None for a cluster-scoped object, which a namespaceSelector does
    not restrict, Namespaces aside: their own labels count)."""
    if not any(rule_matches(r, operation, rt, subresource) for r in webhook.get("rules") or []):
        return False
    if rt.storage_key == ("", "namespaces"):
        namespace_labels = labels_of(obj or old)
    if namespace_labels is not None and not selector_matches(
        webhook.get("namespaceSelector"), namespace_labels
    ):
        return False
    selector = webhook.get("objectSelector")
    return any(selector_matches(selector, labels_of(o)) for o in (obj, old) if o is not None)


def review_request(
    operation: str,
    rt: ResourceType,
    subresource: str,
    namespace: str | None,
    name: str,
    obj: Obj | None,
    old: Obj | None,
    dry_run: bool,
) -> Obj:
    """The `request` of the AdmissionReview sent to a webhook."""
    gvk = {"group": rt.group, "version": rt.version, "kind": rt.kind}
    gvr = {"group": rt.group, "version": rt.version, "resource": rt.plural}
    request: Obj = {
        "uid": str(uuid.uuid4()),
        "kind": gvk,
        "resource": gvr,
        "requestKind": gvk,
        "requestResource": gvr,
        "name": name,
        "operation": operation,
        "object": obj,
        "oldObject": old,
        "dryRun": dry_run,
    }
    if subresource:
        request["subResource"] = subresource
    if namespace:
        request["namespace"] = namespace
    return request


def admit(
    configurations: dict[tuple[str, str], list[Obj]],
    caller: WebhookCaller,
    request: Obj,
    matches: Callable[[Obj], bool],
) -> Obj | None:
    """Offer the write to every matching webhook, mutating ones first; the object as they
    left it (None for a DELETE). Raises the ApiError the client gets when one refuses or
    cannot be called and its failurePolicy is Fail."""
    for key in CONFIGURATIONS:
        for configuration in configurations.get(key, []):
            for webhook in configuration.get("webhooks") or []:
                if matches(webhook):
                    request["object"] = _call(webhook, caller, request, mutating=key == MUTATING)
    return request["object"]


def _call(webhook: Obj, caller: WebhookCaller, request: Obj, *, mutating: bool) -> Obj | None:
    obj = request["object"]
    try:
        response = caller(webhook, request)
    except WebhookCallError as exc:
        if webhook.get("failurePolicy", "Fail") == "Ignore":
            return obj
        raise failed_call(webhook, str(exc)) from None
    if not response.get("allowed"):
        raise denied(webhook, response.get("status"))
    patch = response.get("patch")
    if not (mutating and patch and obj is not None):
        return obj
    try:
        return json_patch(obj, json.loads(base64.b64decode(patch)))
    except (ValueError, BadRequest) as exc:
        raise failed_call(webhook, f"the webhook's patch cannot be applied: {exc}") from None
