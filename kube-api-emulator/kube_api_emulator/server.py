"""The HTTP side: a threaded HTTP or HTTPS server speaking the Kubernetes REST conventions,
with bearer-token authentication when given an authenticator (EKS has no anonymous access)."""

from __future__ import annotations

import contextlib
import json
import select
import socket
import ssl
import threading
import time
import traceback
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .api import Request, Response, Router, WatchPlan
from .controllers import CRD_ESTABLISH_SECONDS
from .errors import ApiError, Gone, unauthorized
from .store import ObjectStore

HANDSHAKE_SECONDS = 10.0  # a client that has not finished its TLS handshake by then is dropped

Authenticator = Callable[[str], str | None]


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: KubeApiServer

    def __init__(self, address: tuple[str, int], api: KubeApiServer) -> None:
        self.api = api
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Serve one connection; this runs in the connection's own thread, so the TLS
        handshake does too, and a slow or broken client holds up nobody else."""
        tls = self.api.tls
        if tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            connection = tls.wrap_socket(request, server_side=True)
        except OSError as exc:  # ssl.SSLError included: a failed handshake
            if self.api.log:
                self.api.log(f"{client_address[0]} TLS handshake failed: {exc}")
            return
        try:
            super().finish_request(connection, client_address)
        finally:
            connection.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        if self.api.log:
            self.api.log(f"{client_address[0]} connection failed: {traceback.format_exc()}")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, and chunked watch streams
    server_version = "kubeapi-sandbox/1.0"
    timeout = 300  # idle keep-alive connections end eventually
    server: _Server

    def setup(self) -> None:
        super().setup()
        # Headers and body go out as separate writes; without this, Nagle's algorithm holds
        # the body until the client's delayed ACK, adding ~40 ms to every request.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.connections_lock:
            self.server.connections.add(self.connection)

    def finish(self) -> None:
        with self.server.connections_lock:
            self.server.connections.discard(self.connection)
        with contextlib.suppress(OSError):  # the client may have gone away first
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        log = self.server.api.log
        if log:
            log(f"{self.address_string()} {format % args}")

    def do_GET(self) -> None:
        self._serve()

    def do_POST(self) -> None:
        self._serve()

    def do_PUT(self) -> None:
        self._serve()

    def do_PATCH(self) -> None:
        self._serve()

    def do_DELETE(self) -> None:
        self._serve()

    def _serve(self) -> None:
        api = self.server.api
        user, denied = self._authenticate()
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        request = Request(
            method=self.command,
            path=url.path,
            query=query,
            content_type=self.headers.get("Content-Type", ""),
            accept=self.headers.get("Accept", ""),
            body=self._read_body(),
            host=self.headers.get("Host", ""),
            user_agent=self.headers.get("User-Agent", ""),
        )
        try:
            result = denied or api.router.handle(request)
        except Exception:  # answer like the real server instead of dropping the connection
            if api.log:
                api.log(traceback.format_exc())
            result = Response(500, ApiError("internal error in the sandbox API server").status())
        # Audited before the answer goes out, so a client that has its answer finds it
        # recorded; a watch counts as served once its stream starts.
        self._audit(200 if isinstance(result, WatchPlan) else result.code, user)
        try:
            if isinstance(result, WatchPlan):
                self._stream(result)
            else:
                self._send(result)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _authenticate(self) -> tuple[str | None, Response | None]:
        """(who is asking, or a 401 to answer instead), as an EKS API server decides it."""
        authenticator = self.server.api.authenticator
        if authenticator is None:
            return None, None
        scheme, _, token = self.headers.get("Authorization", "").partition(" ")
        user = authenticator(token.strip()) if scheme.lower() == "bearer" else None
        if user is None:
            return None, Response(401, unauthorized().status())
        return user, None

    def _audit(self, status: int, user: str | None) -> None:
        api = self.server.api
        if api.audit is None:
            return
        entry = {
            "time": time.time(),
            "method": self.command,
            "path": self.path,
            "user_agent": self.headers.get("User-Agent", ""),
            "status": status,
            "user": user,
        }
        try:
            api.audit(entry)
        except Exception:  # noqa: BLE001 - a failing audit sink must not fail the request
            if api.log:
                api.log(traceback.format_exc())

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, response: Response) -> None:
        if isinstance(response.body, str):
            payload, content_type = response.body.encode(), "text/plain; charset=utf-8"
        else:
            payload, content_type = json.dumps(response.body).encode(), "application/json"
        self.send_response(response.code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, plan: WatchPlan) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        api = self.server.api
        events = api.store.watch_resource(
            plan.rt,
            plan.namespace,
            plan.since,
            time.monotonic() + plan.timeout,
            plan.matches,
            lambda: api.stopping or self._client_gone(),
        )
        try:
            for kind, obj in events:
                if kind == "BOOKMARK":
                    if plan.initial_events_end:
                        self._chunk({"type": kind, "object": obj})
                    continue
                self._chunk({"type": kind, "object": plan.render(obj)})
        except Gone as exc:
            self._chunk({"type": "ERROR", "object": exc.status()})
        self.wfile.write(b"0\r\n\r\n")

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event).encode() + b"\n"
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _client_gone(self) -> bool:
        """A watching client sends nothing, so a readable socket means it hung up."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if not readable:
                return False
            if isinstance(self.connection, ssl.SSLSocket):
                return True  # TLS cannot peek; what arrives is its close_notify or its FIN
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except (OSError, ValueError):
            return True


class KubeApiServer:
    """An in-memory Kubernetes API server for kubectl and client libraries.

    `store` is the shared ObjectStore; simulators in the same process use it directly
    (`crd_establish_seconds` configures the store made when none is given). `tls`: serve
    HTTPS with this server-side context (see tls.ClusterTls) instead of plain HTTP.
    `authenticator`: every request must then carry `Authorization: Bearer <token>` for which
    it returns a user name, or gets 401 Unauthorized, on every path (EKS has anonymous
    access off). `audit`, if given, is called with a summary of each request served (time,
    method, path with query, user agent, HTTP status, user or None), just before the
    response is sent.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        store: ObjectStore | None = None,
        log: Callable[[str], None] | None = None,
        audit: Callable[[dict[str, Any]], None] | None = None,
        tls: ssl.SSLContext | None = None,
        authenticator: Authenticator | None = None,
        crd_establish_seconds: float = CRD_ESTABLISH_SECONDS,
    ) -> None:
        self.log = log
        self.audit = audit
        self.tls = tls
        self.authenticator = authenticator
        self.store = store or ObjectStore(log=log, crd_establish_seconds=crd_establish_seconds)
        self.router = Router(self.store)
        self.stopping = False
        self._address = (host, port)
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Serve in a daemon thread; the socket is listening when this returns."""
        if self._httpd is not None:
            return
        self.stopping = False
        self._httpd = _Server(self._address, self)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"kubeapi-{self._httpd.server_address[1]}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving, end watches and drop open keep-alive connections."""
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self.stopping = True
        self.store.wake_watchers()
        httpd.shutdown()
        httpd.server_close()
        with httpd.connections_lock:
            for conn in list(httpd.connections):
                with contextlib.suppress(OSError):
                    conn.shutdown(socket.SHUT_RDWR)
        if self._thread is not None:
            self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        if self._httpd is None:
            raise RuntimeError("the API server is not running; call start() first")
        host, port = self._httpd.server_address[:2]
        return f"{'https' if self.tls else 'http'}://{host!s}:{port}"

    def __enter__(self) -> KubeApiServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
