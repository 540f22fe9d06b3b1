"""The Kubernetes side's audit log: every HTTP request the world's API servers serve.

The counterpart of `cloudtrail.jsonl` for the clusters: `<dir>/kube-audit.jsonl`, one
JSON line per request, in the order served:

    {"time": 1718000000.1, "cluster": "kube-eks-cluster", "method": "PATCH",
     "path": "/apis/apps/v1/namespaces/kube-system/deployments/x?fieldManager=y",
     "user_agent": "kubectl/v1.31.0 ...", "status": 200, "write": true}

The world's own simulators work on the clusters' object stores in process, not over
HTTP, so what they do is never recorded.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from orchestrator_sandbox import cloudtrail

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class KubeAuditLog:
    """Appends the requests of any number of API servers to one file, a line at a time."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def recorder(self, cluster: str) -> Callable[[dict[str, Any]], None]:
        """The `audit` callback for the API server of `cluster`."""

        def record(request: dict[str, Any]) -> None:
            self.append(entry(cluster, request))

        return record

    def append(self, line: dict[str, Any]) -> None:
        with self._lock, open(self.path, "a") as fh:
            fh.write(json.dumps(line) + "\n")


def entry(cluster: str, request: dict[str, Any]) -> dict[str, Any]:
    """An audit line from the API server's summary of a request."""
    method = request["method"]
    return {
        "time": request["time"],
        "cluster": cluster,
        "method": method,
        "path": request["path"],
        "user_agent": request.get("user_agent", ""),
        "status": request["status"],
        # A dry run (?dryRun=All) goes through admission and writes nothing.
        "write": method in WRITE_METHODS and "dryRun=All" not in request["path"],
        "user": request.get("user"),
    }


def read(path: Path) -> list[dict[str, Any]]:
    """The recorded requests, oldest first (JSON lines, read as cloudtrail.jsonl is)."""
    return cloudtrail.read(path)
