"""An in-memory Kubernetes API server emulator for the sandbox world and the tests.

It is an emulator, not a cluster: it stores objects and speaks enough of the Kubernetes REST
conventions (discovery, CRUD, merge/strategic/JSON patch, server-side apply, status
subresources, watches, Tables, Status errors) for kubectl and the official Python client to
work against it through a kubeconfig. No pods are scheduled and no controllers run inside it:
Deployments stay unavailable until a simulator marks them with `store.patch_status(...)`.
A few things controllers would do happen inside it: a deleted Namespace is Terminating for
`namespace_grace_seconds` (0.5 s by default) and then goes with all its objects; deleting a
CustomResourceDefinition deletes its custom objects at once; a CRD is Established as soon as
it is created.

    server = KubeApiServer()
    server.start()
    write_kubeconfig(path, server.url)
    ...
    server.stop()

`KubeApiServer(audit=callback)` calls `callback` with a summary of each HTTP request it
serves (time, method, path with query, user agent, status), for an audit log.
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
    UnsupportedMediaType,
)
from .kubeconfig import write_kubeconfig, write_kubeconfig_contexts
from .resources import ResourceType
from .server import KubeApiServer
from .store import ObjectStore

__all__ = [
    "AlreadyExists",
    "ApiError",
    "BadRequest",
    "Conflict",
    "Forbidden",
    "Gone",
    "Invalid",
    "KubeApiServer",
    "MethodNotAllowed",
    "NotFound",
    "ObjectStore",
    "ResourceType",
    "UnsupportedMediaType",
    "write_kubeconfig",
    "write_kubeconfig_contexts",
]
