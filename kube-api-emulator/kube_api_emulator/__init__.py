"""An in-memory Kubernetes API server emulator, for worlds that stand in for a cluster.

It is an emulator, not a cluster: it stores objects and speaks enough of the Kubernetes REST
conventions (discovery, CRUD, merge/strategic/JSON patch, server-side apply, status
subresources, watches, Tables, Status errors) for kubectl and the official Python client to
work against it through a kubeconfig. No pods are scheduled and no workload controllers run
inside it: Deployments stay unavailable until a simulator marks them with
`store.patch_status(...)`. What the API server itself and its own controllers do, it does:

- Finalizers and graceful deletion: DELETE of an object with finalizers only marks it
  (`deletionTimestamp`, `deletionGracePeriodSeconds: 0`, a MODIFIED watch event); any write
  that leaves it with no finalizers deletes it; no write may add one while it is being
  deleted (422). Simulators use `store.add_finalizer` / `store.remove_finalizer`.
- A deleted Namespace is Terminating for `namespace_grace_seconds` (0.5 s by default); then
  its objects are deleted, and it goes once none remain, its conditions naming meanwhile
  the content and finalizers left.
- A new CustomResourceDefinition is Established `crd_establish_seconds` (0.5 s by default)
  after it is created; until then its kind is not served (REST paths and discovery answer
  404, in-process writes raise NotFound). A deleted CRD stays Terminating, with the
  `customresourcecleanup.apiextensions.k8s.io` finalizer, while its objects are deleted and
  wait for their own finalizers; then it and its kind go.
- Admission webhooks: a client's CREATE, UPDATE or DELETE is offered to the matching
  webhooks of the stored Mutating- and ValidatingWebhookConfigurations (rules, namespace
  and object selectors, failurePolicy), through `store.webhook_caller`, which whatever
  plays the cluster's pods sets (without one, no Service has endpoints: a webhook with
  failurePolicy Fail then refuses the write, as the API server words it). In-process
  writes stand for the cluster's own controllers and are not offered (webhooks.py).
- Optionally, EKS's front door: HTTPS under a CA of the cluster's own (`ClusterTls`) and
  bearer tokens checked on every path (`authenticator`, e.g. from
  a checker of exec-plugin tokens), 401 Unauthorized otherwise.

    server = KubeApiServer()
    server.start()
    write_kubeconfig(path, server.url)
    ...
    server.stop()

    tls = ClusterTls.issue()
    server = KubeApiServer(tls=tls.server_context(), authenticator=tokens.authenticator(name))
    write_kubeconfig_contexts(path, {name: ClusterAccess(server.url, tls.ca_pem, exec_args)})

`KubeApiServer(audit=callback)` calls `callback` with a summary of each HTTP request it
serves (time, method, path with query, user agent, status, authenticated user), for an
audit log.
"""

from .errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    Invalid,
    MethodNotAllowed,
    NotFound,
    Unauthorized,
    UnsupportedMediaType,
)
from .kubeconfig import ClusterAccess, write_kubeconfig, write_kubeconfig_contexts
from .resources import ResourceType
from .server import KubeApiServer
from .store import ObjectStore
from .tls import ClusterTls
from .webhooks import WebhookCaller, WebhookCallError

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "ClusterAccess",
    "ClusterTls",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeApiServer",
    "MethodNotAllowed",
    "NotFound",
    "ObjectStore",
    "ResourceType",
    "Unauthorized",
    "UnsupportedMediaType",
    "WebhookCallError",
    "WebhookCaller",
    "write_kubeconfig",
    "write_kubeconfig_contexts",
]
