"""Writing a kubeconfig that points kubectl and client libraries at emulators."""

from __future__ import annotations

import os
from collections.abc import Mapping

import yaml


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
    servers: Mapping[str, str],
    *,
    current: str | None = None,
    namespace: str = "default",
    token: str = "sandbox-token",
) -> None:
    """Write a kubeconfig with a context (and cluster and user of that name) per server.

    `servers` maps context names to API server URLs; `current` (by default the first
    context) becomes the current context. The file is readable only by its owner (0600).
    """
    if not servers:
        raise ValueError("a kubeconfig needs at least one context")
    current = current or next(iter(servers))
    if current not in servers:
        raise ValueError(f"current context {current!r} is not one of {sorted(servers)}")
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": url}} for name, url in servers.items()],
        "users": [{"name": name, "user": {"token": token}} for name in servers],
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
