"""A loopback HTTP proxy in front of the sandbox's moto server that injects AWS faults.

The orchestrator under test is pointed at the proxy through AWS_ENDPOINT_URL, so it
meets the faults over real HTTP through boto3: throttling errors in each protocol's
own error format (on a share of requests, or on those over a rate limit, as AWS does),
HTTP 500/503, connections dropped before or after the request reached AWS, and permanent
errors such as AccessDenied.
"""

from __future__ import annotations

import http.client
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from orchestrator_sandbox.cloudtrail import classify

THROTTLING_CODES = (
    "Throttling",
    "ThrottlingException",
    "TooManyRequestsException",
    "PriorRequestNotComplete",
)

# How each service says "slow down": (code, HTTP status) as AWS sends them. Route 53 also
# answers PriorRequestNotComplete while an earlier change to the zone is in flight.
SERVICE_THROTTLING = {
    "route53": (("Throttling", 400), ("PriorRequestNotComplete", 400)),
    "ec2": (("RequestLimitExceeded", 503),),
    "acm": (("ThrottlingException", 400),),
    "eks": (("ThrottlingException", 429),),
}
QUERY_THROTTLING = (("Throttling", 400),)  # IAM, STS, ELB: the query protocol's services


@dataclass
class RateLimit:
    """A rate limit as AWS applies one: a bucket of `burst` requests, refilled at
    `per_second`; a request that finds it empty is over the limit."""

    per_second: float
    burst: float = 1.0
    tokens: float = 0.0
    updated: float | None = None

    def over(self) -> bool:
        now = time.monotonic()
        if self.updated is None:
            self.tokens = self.burst
        else:
            self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1:
            return True
        self.tokens -= 1
        return False


@dataclass
class Fault:
    """Inject `kind` into requests that `match`; `times` limits how often (None: always);
    with a `limit`, only into requests over it. "throttle" answers with the code the
    service throttles with; "error" with `code` and `status`."""

    kind: str  # "error", "throttle", "http500", "http503", "drop_before", "drop_after"
    match: Callable[[str, str], bool] = lambda service, action: True
    code: str = "Throttling"
    message: str = "Rate exceeded"
    status: int = 400
    probability: float = 1.0
    times: int | None = None
    limit: RateLimit | None = None
    injected: int = 0


@dataclass
class FaultProxy:
    upstream: str
    faults: list[Fault] = field(default_factory=list)
    seed: int = 7
    log: list[tuple[str, str, str]] = field(default_factory=list)  # service, action, fault
    requests: list[tuple[str, str]] = field(default_factory=list)  # service, action: all of them

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def _handle(self) -> None:
                proxy.handle(self)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()

    def injected(self, kind: str | None = None) -> int:
        return sum(1 for *_, k in self.log if kind is None or k == kind)

    # ---- per request ----------------------------------------------------------------------------

    def _pick(self, service: str, action: str) -> Fault | None:
        with self._lock:
            self.requests.append((service, action))
            for fault in self.faults:
                if fault.times is not None and fault.injected >= fault.times:
                    continue
                if not fault.match(service, action):
                    continue
                if fault.limit is not None and not fault.limit.over():
                    continue
                if self._random.random() >= fault.probability:
                    continue
                fault.injected += 1
                self.log.append((service, action, fault.kind))
                return fault
        return None

    def handle(self, request: BaseHTTPRequestHandler) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        environ = {
            "REQUEST_METHOD": request.command,
            "HTTP_AUTHORIZATION": request.headers.get("Authorization", ""),
            "HTTP_X_AMZ_TARGET": request.headers.get("X-Amz-Target"),
            "QUERY_STRING": urlsplit(request.path).query,
            "PATH_INFO": urlsplit(request.path).path,
        }
        service, action, _ = classify(environ, body)
        fault = self._pick(service, action)
        if fault is None:
            self._forward(request, body)
        elif fault.kind == "drop_before":
            request.close_connection = True
            request.connection.close()
        elif fault.kind == "drop_after":
            self._upstream(request, body)  # AWS did it; the answer is lost
            request.close_connection = True
            request.connection.close()
        elif fault.kind in ("http500", "http503"):
            status = 500 if fault.kind == "http500" else 503
            self._reply(request, status, b"", {"Content-Type": "text/plain"})
        else:
            code, status = fault.code, fault.status
            if fault.kind == "throttle":
                code, status = self._throttling(service)
            payload, headers = error_response(request, service, code, fault.message)
            self._reply(request, status, payload, headers)

    def _throttling(self, service: str) -> tuple[str, int]:
        """The code and status `service` throttles with (one of them, when it has several)."""
        with self._lock:
            return self._random.choice(SERVICE_THROTTLING.get(service, QUERY_THROTTLING))

    def _upstream(
        self, request: BaseHTTPRequestHandler, body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlsplit(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers["Host"] = target.netloc
        connection.request(request.command, request.path, body=body, headers=headers)
        response = connection.getresponse()
        payload = response.read()
        connection.close()
        return response.status, response.getheaders(), payload

    def _forward(self, request: BaseHTTPRequestHandler, body: bytes) -> None:
        status, headers, payload = self._upstream(request, body)
        skip = {"content-length", "transfer-encoding", "connection", "server", "date"}
        self._reply(request, status, payload, {k: v for k, v in headers if k.lower() not in skip})

    @staticmethod
    def _reply(
        request: BaseHTTPRequestHandler, status: int, payload: bytes, headers: dict[str, str]
    ) -> None:
        request.send_response(status)
        for key, value in headers.items():
            request.send_header(key, value)
        request.send_header("Content-Length", str(len(payload)))
        request.end_headers()
        if request.command != "HEAD":
            request.wfile.write(payload)


def error_response(
    request: BaseHTTPRequestHandler, service: str, code: str, message: str
) -> tuple[bytes, dict[str, str]]:
    """An AWS error's body and headers in the wire format the calling service's protocol uses."""
    if request.headers.get("X-Amz-Target"):  # JSON protocol (ACM, ...)
        body = json.dumps({"__type": code, "message": message}).encode()
        return body, {"Content-Type": "application/x-amz-json-1.1", "x-amzn-ErrorType": code}
    if service == "eks":  # REST-JSON
        body = json.dumps({"message": message}).encode()
        return body, {"Content-Type": "application/json", "x-amzn-ErrorType": code}
    if service == "ec2":
        xml = (
            f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
            "</Error></Errors><RequestID>fault</RequestID></Response>"
        )
        return xml.encode(), {"Content-Type": "text/xml"}
    xml = (
        f"<ErrorResponse><Error><Type>Sender</Type><Code>{code}</Code>"
        f"<Message>{message}</Message></Error><RequestId>fault</RequestId></ErrorResponse>"
    )
    return xml.encode(), {"Content-Type": "text/xml"}
