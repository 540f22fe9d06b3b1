"""The world's way in from "the internet": an HTTP proxy on 127.0.0.1.

All of the world's ALBs answer on one front end (tlsendpoint) at high ports of 127.0.0.1,
so that any user can run a world (ports 443 and 80 need root) and on any system (macOS
has no loopback address but 127.0.0.1). Clients reach it as they reach the internet from
behind an egress proxy: the world's `env` sets `HTTPS_PROXY` and `HTTP_PROXY` to this
proxy, which tunnels `CONNECT <name>:443` (and `:80`) to the front end's HTTPS (HTTP) port
when the name is one of the world's ALBs: its DNS (the world's view) resolves it to the
front end, or it is an active ALB's own DNS name. Plain HTTP through a proxy is no tunnel:
the client sends the proxy the whole URL (`GET http://<name>/path HTTP/1.1`), and the
proxy forwards it, for the same names and port 80 only, to the front end's HTTP port.
Anything else is refused: 502 if the name does not resolve, 403 if it is outside the world
(the world reaches nothing else) or the port is not 443 or 80 (80 for plain HTTP), 400 for
a request that names no http:// URL, 411 for a body of unknown length.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

from orchestrator_sandbox.dnsview import DnsView
from orchestrator_sandbox.tlsendpoint import LOOPBACK, AlbEndpoint

TIMEOUT = 60.0  # an idle tunnel's life, and a silent client's
CHUNK = 65536
# Headers meant for the proxy, or for one connection only: not passed on (RFC 9110 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
}


class Refused(Exception):
    """The proxy will not tunnel there: an HTTP status and why."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


Route = Callable[[str, int], tuple[str, int]]  # (name, port) -> where to connect, or Refused


def front_end_route(view: DnsView, front: AlbEndpoint) -> Route:
    """Where CONNECT name:port goes: the front end, for a name of the world's ALBs."""

    def route(name: str, port: int) -> tuple[str, int]:
        ports = {443: front.https_port, 80: front.http_port}
        if port not in ports:
            raise Refused(403, f"port {port}: the world's ALBs listen on 443 and 80")
        if front.alias_address(name):  # an active ALB's own DNS name
            return front.address, ports[port]
        answer = view.resolve(name, "A")
        addresses = [value for _, rtype, _, value in answer.records if rtype == "A"]
        if not addresses:
            raise Refused(502, f"{name} does not resolve ({answer.rcode})")
        if front.address not in addresses:
            raise Refused(403, f"{name} is not an ALB of the sandbox world")
        return front.address, ports[port]

    return route


class ConnectProxy:
    """The proxy's server; `url` is what HTTPS_PROXY names once started."""

    def __init__(self, route: Route) -> None:
        self.route = route
        self.port = 0
        self._server: _Server | None = None

    @property
    def url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    def start(self) -> None:
        server = _Server((LOOPBACK, 0), _Handler)
        server.route = self.route
        self.port = server.server_address[1]
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True, name="egress-proxy").start()

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(Exception):
                self._server.shutdown()
                self._server.server_close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    route: Route

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients hang up mid-tunnel: not news


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = TIMEOUT

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_CONNECT(self) -> None:
        self.close_connection = True

        def target() -> tuple[str, int]:
            name, _, port = self.path.rpartition(":")
            if not name or not port.isdigit():
                raise Refused(400, f"CONNECT wants host:port, not {self.path!r}")
            return self.server.route(name.strip("[]").lower().rstrip("."), int(port))

        upstream = self._connect(target)
        if upstream is None:
            return
        with upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            self.wfile.flush()
            _relay(self.connection, upstream)

    def _connect(self, target: Callable[[], tuple[str, int]]) -> socket.socket | None:
        """A connection to the front end `target` names; None once the client has been told
        why not (the request refused, the name unknown, the front end down)."""
        try:
            return socket.create_connection(target(), timeout=TIMEOUT)
        except Refused as refused:
            self._refuse(refused.status, str(refused))
        except Exception as exc:  # noqa: BLE001 - the look-up or the front end failed
            self._refuse(502, f"{self.path}: {exc}")
        return None

    def _refuse(self, status: int, reason: str) -> None:
        body = f"sandbox egress proxy: {reason}\n".encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _forward(self) -> None:
        """A plain-HTTP request through the proxy (`GET http://name/path`): sent on to the
        front end's HTTP port as the ALB would receive it, one request per connection."""
        self.close_connection = True
        url = urlsplit(self.path)

        def target() -> tuple[str, int]:
            if url.scheme.lower() != "http" or not url.hostname:
                raise Refused(400, f"a proxy request names an http:// URL, not {self.path!r}")
            if (url.port or 80) != 80:
                raise Refused(403, f"port {url.port}: the world's ALBs answer plain HTTP on 80")
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                raise Refused(411, "a request body needs a Content-Length here")
            return self.server.route(url.hostname.rstrip("."), 80)

        upstream = self._connect(target)
        if upstream is None:
            return
        with upstream:
            upstream.sendall(self._origin_form(url.netloc, url.path or "/", url.query))
            body = int(self.headers.get("Content-Length") or 0)
            if body:
                upstream.sendall(self.rfile.read(body))
            # The front end closes after its answer (Connection: close): that ends the copy.
            _copy(upstream, self.connection)

    def _origin_form(self, netloc: str, path: str, query: str) -> bytes:
        """The request as a server receives it: path and query only, the URL's host in
        Host, no headers meant for the proxy, and a connection that ends with the answer."""
        target = path + (f"?{query}" if query else "")
        lines = [f"{self.command} {target} {self.request_version}"]
        lines += [
            f"{name}: {value}"
            for name, value in self.headers.items()
            if name.lower() not in HOP_BY_HOP and name.lower() != "host"
        ]
        lines += [f"Host: {netloc.rpartition('@')[2]}", "Connection: close"]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _forward


def _relay(client: socket.socket, upstream: socket.socket) -> None:
    """Copy both ways until both sides are done (or one stays silent for TIMEOUT)."""
    other = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
    other.start()
    _copy(client, upstream)
    other.join(TIMEOUT)


def _copy(source: socket.socket, target: socket.socket) -> None:
    try:
        while data := source.recv(CHUNK):
            target.sendall(data)
    except OSError:
        pass
    finally:
        # Pass the end on, so the other side finishes too (TLS close, HTTP Connection: close).
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)
