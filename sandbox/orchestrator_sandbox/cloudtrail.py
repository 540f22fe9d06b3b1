"""A WSGI wrapper that records every AWS request the world receives, like CloudTrail.

One JSON line per request: time, service, action, whether it writes, the caller's user
agent and the HTTP status. The world's own simulators identify themselves with the
`sandbox-world` user agent and are not recorded.
"""

from __future__ import annotations

import io
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

SELF_AGENT = "sandbox-world"
_SCOPE = re.compile(r"Credential=[^/]+/\d{8}/([^/]+)/([^/]+)/")
_READ_PREFIXES = ("Describe", "Get", "List", "Head", "Lookup", "Search", "Check")


def classify(environ: dict[str, Any], body: bytes) -> tuple[str, str, bool]:
    """(service, action, writes) of a signed AWS request."""
    method = environ.get("REQUEST_METHOD", "GET")
    scope = _SCOPE.search(environ.get("HTTP_AUTHORIZATION", ""))
    service = scope.group(2) if scope else "unknown"
    target = environ.get("HTTP_X_AMZ_TARGET")
    if target:
        action = target.rsplit(".", 1)[-1]
        return service, action, not action.startswith(_READ_PREFIXES)
    form = parse_qs(body.decode("utf-8", "replace")) if body else {}
    query = parse_qs(environ.get("QUERY_STRING", ""))
    action = (form.get("Action") or query.get("Action") or [None])[0]
    if action:
        return service, action, not action.startswith(_READ_PREFIXES)
    return service, f"{method} {environ.get('PATH_INFO', '')}", method not in ("GET", "HEAD")


class CloudTrail:
    def __init__(self, app: Callable[..., Iterable[bytes]], path: Path) -> None:
        self.app = app
        self.path = path
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        agent = environ.get("HTTP_USER_AGENT", "")
        if SELF_AGENT in agent:
            return self.app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        service, action, writes = classify(environ, body)
        status: list[str] = []

        def recording_start_response(code: str, headers: Any, *rest: Any) -> Any:
            status.append(code)
            return start_response(code, headers, *rest)

        result = self.app(environ, recording_start_response)
        entry = {
            "time": time.time(),
            "service": service,
            "action": action,
            "write": writes,
            "agent": agent,
            "status": int(status[0].split()[0]) if status else None,
        }
        with self._lock, open(self.path, "a") as fh:
            fh.write(json.dumps(entry) + "\n")
        return result


def read(path: Path) -> list[dict[str, Any]]:
    """The recorded requests, oldest first."""
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
