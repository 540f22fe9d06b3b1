"""Writing a kubeconfig that points kubectl and client libraries at emulators.

A context is either a bare URL with a static token, or a ClusterAccess, which can carry the
cluster's CA and an exec credential plugin, as `aws eks update-kubeconfig` writes for EKS.
"""

from __future__ import annotations

import base64
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

EXEC_API_VERSION = "client.authentication.k8s.io/v1beta1"


@dataclass(frozen=True)
class ClusterAccess:
    """How one context reaches its cluster and proves who it is.

    `ca_pem`: the CA that signed the server's certificate (`certificate-authority-data`).
    `exec_args`: authenticate by running `<this Python> *exec_args`, an exec credential
    plugin printing an ExecCredential; otherwise by the static bearer `token` (or the
    writer's default token).
    """

    url: str
    ca_pem: str | None = None
    exec_args: tuple[str, ...] = ()
    token: str | None = None


def write_kubeconfig(
    path: str | os.PathLike[str],
    server_url: str,
    *,
    context: str = "sandbox",
    namespace: str = "default",
    token: str = "sandbox-token",
) -> None:
    """Write a one-cluster, one-user kubeconfig readable only by its owner (mode 0600)."""
    write_kubeconfig_contexts(path, {context: server_url}, namespace=namespace, token=token)


def write_kubeconfig_contexts(
    path: str | os.PathLike[str],
    servers: Mapping[str, str | ClusterAccess],
    *,
    current: str | None = None,
    namespace: str = "default",
    token: str = "sandbox-token",
) -> None:
    """Write a kubeconfig with a context (and cluster and user of that name) per server.

    `servers` maps context names to API server URLs (authenticated by `token`) or to a
    ClusterAccess; `current` (by default the first context) becomes the current context.
    The file is readable only by its owner (0600).
    """
    if not servers:
        raise ValueError("a kubeconfig needs at least one context")
    current = current or next(iter(servers))
    if current not in servers:
        raise ValueError(f"current context {current!r} is not one of {sorted(servers)}")
    access = {
        name: ClusterAccess(url=given) if isinstance(given, str) else given
        for name, given in servers.items()
    }
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": _cluster(a)} for name, a in access.items()],
        "users": [{"name": name, "user": _user(a, token)} for name, a in access.items()],
        "contexts": [
            {"name": name, "context": {"cluster": name, "user": name, "namespace": namespace}}
            for name in servers
        ],
        "current-context": current,
    }
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, default_flow_style=False, sort_keys=False)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed


def _cluster(access: ClusterAccess) -> dict[str, Any]:
    cluster: dict[str, Any] = {"server": access.url}
    if access.ca_pem:
        cluster["certificate-authority-data"] = base64.b64encode(access.ca_pem.encode()).decode()
    return cluster


def _user(access: ClusterAccess, default_token: str) -> dict[str, Any]:
    if not access.exec_args:
        return {"token": access.token or default_token}
    return {
        "exec": {
            "apiVersion": EXEC_API_VERSION,
            "command": sys.executable,
            "args": list(access.exec_args),
            "interactiveMode": "Never",
        }
    }
