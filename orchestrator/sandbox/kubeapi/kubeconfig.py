"""Writing a kubeconfig that points kubectl and client libraries at the emulator."""

from __future__ import annotations

import os

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
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "preferences": {},
        "clusters": [{"name": context, "cluster": {"server": server_url}}],
        "users": [{"name": context, "user": {"token": token}}],
        "contexts": [
            {
                "name": context,
                "context": {"cluster": context, "user": context, "namespace": namespace},
            }
        ],
        "current-context": context,
    }
    fd = os.open(os.fspath(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(config, handle, default_flow_style=False, sort_keys=False)
    os.chmod(path, 0o600)  # O_CREAT's mode does not apply to a file that already existed
