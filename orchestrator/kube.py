"""Kubernetes access through the official client, over the standard kubeconfig.

Objects go in and out as plain dicts. Writes use server-side apply under one field
manager, so re-applying the same object is a no-op and the API server itself records
which fields are ours. Calls are retried on 429/5xx and dropped connections; other
errors carry the HTTP status, the Kubernetes reason and message, and what to do.
"""

from __future__ import annotations

import atexit
import builtins
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from orchestrator import __version__, calls, failpoints

T = TypeVar("T")

FIELD_MANAGER = "orchestrator"
_RETRYABLE_STATUS = {429, 500, 502, 503, 504}


class KubeError(Exception):
    def __init__(self, operation: str, status: int | None, reason: str, message: str) -> None:
        code = f"{status} {reason}" if status else reason
        super().__init__(f"Kubernetes {operation}: {code}: {message}")
        self.operation = operation
        self.status = status
        self.reason = reason
        self.message = message

    @property
    def retryable(self) -> bool:
        return self.status in _RETRYABLE_STATUS or self.status is None

    @property
    def hint(self) -> str:
        if "failed calling webhook" in self.message:
            return (
                "the API server could not call the AWS Load Balancer Controller's admission "
                "webhook (its pods, port 9443): check that the controller's pods are Ready, and "
                "that the nodes' security group allows TCP 9443 from the cluster's control "
                "plane security group; then run `orchestrator resume`"
            )
        if self.status in (401, 403):
            return (
                "the kubeconfig's identity may not do this; check `kubectl auth can-i` and "
                "the cluster's RBAC / aws-auth mapping, then run `orchestrator resume`"
            )
        if self.status is None:
            return (
                "the Kubernetes API could not be reached; check KUBECONFIG, the context "
                "(kubernetes.context) and the network, then run `orchestrator resume`"
            )
        return "fix the cause, then run `orchestrator resume`"


@dataclass(frozen=True)
class Webhook:
    """One admission webhook of a Mutating- or ValidatingWebhookConfiguration."""

    kind: str  # of its configuration
    configuration: dict[str, Any]
    name: str
    failure_policy: str  # Fail (v1's default) or Ignore

    def __str__(self) -> str:
        return f'webhook "{self.name}" of {self.kind} {self.configuration["metadata"]["name"]}'


WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")


def webhooks_called(
    configurations: list[tuple[str, dict[str, Any]]], group: str, resource: str, operation: str
) -> list[Webhook]:
    """The webhooks the API server calls for `operation` on `resource` of `group`, by their
    rules alone (their namespace and object selectors are not judged: they may be called)."""

    def among(values: Any, value: str) -> bool:
        return "*" in (values or []) or value in (values or [])

    found = []
    for kind, configuration in configurations:
        for webhook in configuration.get("webhooks") or []:
            rules = webhook.get("rules") or []
            if any(
                among(r.get("operations"), operation)
                and among(r.get("apiGroups"), group)
                and any(x in (r.get("resources") or []) for x in (resource, "*", "*/*"))
                for r in rules
            ):
                policy = webhook.get("failurePolicy") or "Fail"
                found.append(Webhook(kind, configuration, webhook.get("name", ""), policy))
    return found


def tolerate_not_found(call: Callable[[], T]) -> T | None:
    """`call()`, or None if the API server answers 404: no such object, or its kind is not
    served (a CRD's, not yet Established or deleted)."""
    try:
        return call()
    except KubeError as exc:
        if exc.status == 404:
            return None
        raise


def _translate(operation: str, exc: Exception) -> KubeError:
    from kubernetes.client.exceptions import ApiException
    from kubernetes.dynamic.exceptions import ResourceNotFoundError
    from urllib3.exceptions import HTTPError

    if isinstance(exc, ApiException):
        reason, message = exc.reason or "", ""
        try:
            body = json.loads(exc.body or "{}")
            reason, message = body.get("reason") or reason, body.get("message") or ""
        except (TypeError, ValueError):
            message = str(exc.body or "")
        return KubeError(operation, exc.status, reason, message)
    if isinstance(exc, ResourceNotFoundError):
        return KubeError(operation, 404, "NotFound", f"the API server does not serve it ({exc})")
    if isinstance(exc, HTTPError | ConnectionError | OSError):
        return KubeError(operation, None, "Unreachable", str(exc))
    raise exc


class Kube:
    """The cluster named by the kubeconfig (KUBECONFIG or ~/.kube/config) and context."""

    def __init__(self, context: str | None = None) -> None:
        from kubernetes import config, dynamic

        try:
            api_client = config.new_client_from_config(
                config_file=os.environ.get("KUBECONFIG") or None, context=context
            )
        except (config.ConfigException, OSError, TypeError) as exc:
            raise KubeError("load kubeconfig", None, "BadConfig", str(exc)) from None
        # Named in the API server's audit log as the AWS calls are in CloudTrail.
        api_client.user_agent = f"orchestrator/{__version__} (kubernetes-client)"
        self._configuration = api_client.configuration
        self._discovery = threading.Lock()
        # The client caches API discovery in a file; by default one shared in /tmp and named
        # after the server's URL, which another user could plant and another process leave
        # stale. Ours lives in a private directory for this process only.
        cache = tempfile.mkdtemp(prefix="orchestrator-discovery-")
        atexit.register(shutil.rmtree, cache, ignore_errors=True)
        # The client asks the API server what it serves as it is made: the first call.
        self._client = self._call(
            "discover the API",
            lambda: dynamic.DynamicClient(
                api_client, cache_file=os.path.join(cache, "discovery.json")
            ),
        )

    # ---- which cluster ----------------------------------------------------------------------

    @property
    def server(self) -> str:
        """The API server's URL, as the kubeconfig context names it."""
        return str(self._configuration.host)

    def certificate_authority(self) -> bytes | None:
        """The CA the kubeconfig trusts for the API server (PEM), if it names one."""
        path = self._configuration.ssl_ca_cert
        if not path:
            return None
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def _call(self, operation: str, work: Any, *, mutating: bool = False) -> Any:
        started = calls.check("kubernetes", operation, mutating=mutating)
        attempts = 0

        def attempt() -> Any:
            nonlocal attempts
            attempts += 1
            if mutating:
                failpoints.before_write(f"kubernetes:{operation}")
            try:
                result = work()
            except Exception as exc:  # noqa: BLE001 - translated or re-raised
                raise _translate(operation, exc) from None
            if mutating:
                failpoints.after_write(f"kubernetes:{operation}")
            return result

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda e: isinstance(e, KubeError) and e.retryable),
            wait=tenacity.wait_random_exponential(multiplier=0.3, max=10),
            stop=tenacity.stop_after_attempt(6),
            reraise=True,
        )
        try:
            result = retrying(attempt)
        except KubeError as error:
            calls.done("kubernetes", operation, started, attempts, error.reason)
            raise
        calls.done("kubernetes", operation, started, attempts)
        return result

    def _resource(self, api_version: str, kind: str) -> Any:
        def look_up() -> Any:
            # The client's discovery cache is not safe for threads; the calls it finds are.
            with self._discovery:
                return self._client.resources.get(api_version=api_version, kind=kind)

        return self._call(f"discover {kind}", look_up)

    def forget_discovery(self) -> None:
        """Drop what discovery said, e.g. once new CustomResourceDefinitions are Established."""
        with self._discovery:
            self._client.resources.invalidate_cache()

    def served(self, api_version: str, kind: str) -> bool:
        """Whether the API server serves this kind (a CRD's kind only once it is Established)."""
        return tolerate_not_found(lambda: self._resource(api_version, kind)) is not None

    # ---- reads ------------------------------------------------------------------------------

    def version(self) -> dict[str, Any]:
        return self._call("GET /version", lambda: self._client.version["kubernetes"])

    def get(
        self, api_version: str, kind: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        def read() -> Any:
            resource = self._resource(api_version, kind)
            return self._call(
                f"get {kind} {name}", lambda: resource.get(name=name, namespace=namespace)
            )

        found = tolerate_not_found(read)
        return None if found is None else found.to_dict()

    def list(
        self,
        api_version: str,
        kind: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        resource = self._resource(api_version, kind)
        found = self._call(
            f"list {kind}",
            lambda: resource.get(
                namespace=namespace, label_selector=label_selector, field_selector=field_selector
            ),
        )
        return [item.to_dict() for item in found.items]

    # (builtins.list: in this class, `list` is the method above.)
    def events_for(self, kind: str, name: str, namespace: str) -> builtins.list[dict[str, Any]]:
        """Events about one object, oldest first."""
        events = self.list(
            "v1",
            "Event",
            namespace,
            field_selector=(f"involvedObject.kind={kind},involvedObject.name={name}"),
        )
        return sorted(events, key=lambda e: e.get("lastTimestamp") or e.get("eventTime") or "")

    def webhooks(self, group: str, resource: str, operation: str) -> builtins.list[Webhook]:
        """The admission webhooks called for `operation` (CREATE, UPDATE, DELETE) on
        `resource` of API group `group` (see webhooks_called)."""
        configurations = [
            (kind, configuration)
            for kind in WEBHOOK_KINDS
            for configuration in self.list("admissionregistration.k8s.io/v1", kind)
        ]
        return webhooks_called(configurations, group, resource, operation)

    def webhook_failure(self, obj: dict[str, Any]) -> str | None:
        """Why the API server would not take a create of `obj` now, or None if the admission
        webhooks it goes through answered (admitting it, or denying it in their own words):
        a dry run, for which the API server calls the webhooks as for a real create and
        writes nothing."""
        resource = self._resource(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]

        def dry_run() -> str | None:
            try:
                resource.create(body=obj, namespace=metadata.get("namespace"), dry_run="All")
            except Exception as exc:  # noqa: BLE001 - a refusal is the answer we look for
                error = _translate(f"dry-run create {obj['kind']}", exc)
                if "denied the request" in error.message:
                    return None  # a webhook's own refusal: it answered
                return error.message or error.reason
            return None  # admitted

        return self._call(f"dry-run create {obj['kind']}", dry_run)

    # ---- writes -----------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply as our field manager; taking over fields others changed on it."""
        try:
            resource = self._resource(obj["apiVersion"], obj["kind"])
        except KubeError as exc:
            if exc.status != 404:
                raise
            # A kind whose CRD was just Established may be missing from a discovery read a
            # moment before: read discovery again once before giving up.
            self.forget_discovery()
            resource = self._resource(obj["apiVersion"], obj["kind"])
        metadata = obj["metadata"]
        applied = self._call(
            f"apply {obj['kind']} {metadata['name']}",
            lambda: resource.server_side_apply(
                body=obj,
                name=metadata["name"],
                namespace=metadata.get("namespace"),
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
            ),
            mutating=True,
        )
        return applied.to_dict()

    def replace(self, obj: dict[str, Any], resource_version: str) -> dict[str, Any]:
        """Write the whole object over the one at `resource_version` (an update, not an
        apply): every field another manager set and `obj` lacks goes, which server-side
        apply would keep. Refused (409) if the object changed since it was read."""
        metadata = obj["metadata"]
        body = {**obj, "metadata": {**metadata, "resourceVersion": resource_version}}
        resource = self._resource(obj["apiVersion"], obj["kind"])
        replaced = self._call(
            f"replace {obj['kind']} {metadata['name']}",
            lambda: resource.replace(
                body=body,
                name=metadata["name"],
                namespace=metadata.get("namespace"),
                field_manager=FIELD_MANAGER,
            ),
            mutating=True,
        )
        return replaced.to_dict()

    def remove_finalizer(
        self, api_version: str, kind: str, name: str, namespace: str | None, finalizer: str
    ) -> bool:
        """Take one finalizer off an object (a controller's, when that controller is gone and
        its work was done by hand); False if the object or the finalizer was not there."""
        live = self.get(api_version, kind, name, namespace)
        finalizers = ((live or {}).get("metadata") or {}).get("finalizers") or []
        if finalizer not in finalizers:
            return False
        metadata = {
            "finalizers": [f for f in finalizers if f != finalizer],
            # Refused if the object changed since we read it: then we read it again.
            "resourceVersion": live["metadata"]["resourceVersion"],  # type: ignore[index]
        }
        self._merge_patch(
            f"remove finalizer {finalizer} from {kind} {name}",
            api_version,
            kind,
            name,
            namespace,
            {"metadata": metadata},
        )
        return True

    def patch_metadata(
        self,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        labels: dict[str, str | None],
        annotations: dict[str, str | None],
    ) -> bool:
        """Set labels and annotations of an object (None removes one) by a merge patch,
        which changes nothing else (server-side apply would drop what it does not list);
        False if the object is gone."""

        def patch() -> bool:
            body = {"metadata": {"labels": labels, "annotations": annotations}}
            self._merge_patch(
                f"patch metadata of {kind} {name}", api_version, kind, name, namespace, body
            )
            return True

        return tolerate_not_found(patch) is not None

    def _merge_patch(
        self,
        operation: str,
        api_version: str,
        kind: str,
        name: str,
        namespace: str | None,
        body: dict[str, Any],
    ) -> None:
        """A JSON merge patch of one object: it changes what `body` names and nothing else."""
        resource = self._resource(api_version, kind)
        self._call(
            operation,
            lambda: resource.patch(
                body=body,
                name=name,
                namespace=namespace,
                content_type="application/merge-patch+json",
            ),
            mutating=True,
        )

    def delete(self, api_version: str, kind: str, name: str, namespace: str | None = None) -> bool:
        """Delete an object; False if it was already gone."""

        def delete() -> bool:
            resource = self._resource(api_version, kind)
            self._call(
                f"delete {kind} {name}",
                lambda: resource.delete(
                    name=name, namespace=namespace, body={"propagationPolicy": "Background"}
                ),
                mutating=True,
            )
            return True

        return tolerate_not_found(delete) is not None
