"""The address every ALB of the world answers on: HTTPS on 443 and HTTP on 80.

One loopback address per world (127.a.b.c, chosen at random so several worlds can run
side by side) stands in for all of the world's load balancers: the world's DNS resolves
an alias record to any active ALB to it (`alias_address`). During the TLS handshake
the server name picks the certificate, as an ALB's SNI does: an ISSUED ACM certificate on
an HTTPS listener of an active ALB that covers the name gives a leaf from the sandbox CA
for that certificate's names; otherwise clients get a `*.elb.amazonaws.com` leaf, which
fails their hostname check just as a real ALB would. Behind TLS, Kubeflow's answer to an
anonymous visitor: a redirect to Dex's login. On port 80, the ALB's redirect to HTTPS.
"""

from __future__ import annotations

import contextlib
import random
import socketserver
import ssl
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from orchestrator.sandbox.pki import SandboxCA

HTTPS_PORT = 443
HTTP_PORT = 80
DEFAULT_NAMES = ("*.elb.amazonaws.com",)
LOGIN_REDIRECT = (
    "/dex/auth?client_id=kubeflow-oidc-authservice"
    "&redirect_uri=%2Fauthservice%2Foidc%2Fcallback"
    "&response_type=code&scope=openid+profile+email+groups&state=sandbox"
)
CONNECTION_TIMEOUT = 10.0


def covers(pattern: str, name: str) -> bool:
    """Whether a certificate name covers a server name (exact, or a one-label `*.` wildcard)."""
    pattern, name = pattern.lower().rstrip("."), name.lower().rstrip(".")
    if pattern.startswith("*."):
        head, _, rest = name.partition(".")
        return bool(head) and rest == pattern[2:]
    return pattern == name


def balancer_name(dns_name: str) -> str:
    """A DNS name as Route 53 aliases hold it, reduced to the ALB's own DNSName form."""
    return dns_name.lower().rstrip(".").removeprefix("dualstack.")


class AlbEndpoint:
    """The TLS and plain-HTTP servers of the world's load balancers."""

    def __init__(self, ca: SandboxCA, elbv2: Any, acm: Any) -> None:
        self.ca = ca
        self.elbv2 = elbv2
        self.acm = acm
        self.address = ""
        self.https_port = HTTPS_PORT
        self.http_port = HTTP_PORT
        self._servers: list[_Server] = []
        self._contexts: dict[Path, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind (443 and 80, or ephemeral ports if those are not allowed) and serve."""
        default = self._context_for(self.ca.leaf(DEFAULT_NAMES))
        default.sni_callback = self._choose_certificate
        https, http = self._bind()
        https.tls_context = default
        http.endpoint = self
        self._servers = [https, http]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True, name="alb-endpoint").start()

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()

    def _bind(self) -> tuple[_Server, _Server]:
        for _ in range(16):
            self.address = _random_loopback()
            try:
                https = _Server((self.address, HTTPS_PORT), _HttpsHandler)
            except PermissionError as exc:
                return self._bind_ephemeral(exc)
            except OSError:
                continue  # that address's 443 is taken: try another address
            try:
                http = _Server((self.address, HTTP_PORT), _HttpHandler)
            except OSError:
                https.server_close()
                continue
            return https, http
        return self._bind_ephemeral(OSError("ports 443/80 busy on every address tried"))

    def _bind_ephemeral(self, why: OSError) -> tuple[_Server, _Server]:
        https = _Server((self.address, 0), _HttpsHandler)
        http = _Server((self.address, 0), _HttpHandler)
        self.https_port, self.http_port = https.server_address[1], http.server_address[1]
        print(
            f"alb endpoint: cannot serve on {self.address}:{HTTPS_PORT}/{HTTP_PORT} ({why}); "
            f"serving HTTPS on port {self.https_port} and HTTP on port {self.http_port} "
            "instead, so clients that assume 443 will not reach the ALB",
            flush=True,
        )
        return https, http

    # ---- DNS ----------------------------------------------------------------------------------

    def alias_address(self, dns_name: str) -> list[str]:
        """The endpoint's address if `dns_name` is the DNSName of an active ALB, else []."""
        wanted = balancer_name(dns_name)
        for balancer in self._balancers():
            if balancer_name(balancer["DNSName"]) == wanted:
                return [self.address] if _active(balancer) else []
        return []

    # ---- TLS ----------------------------------------------------------------------------------

    def _choose_certificate(
        self, sock: ssl.SSLSocket, server_name: str | None, _context: ssl.SSLContext
    ) -> None:
        if not server_name:
            return  # no SNI: the default leaf
        try:
            names = self.certificate_names(server_name)
        except Exception as exc:  # noqa: BLE001 - a failed look-up must not kill the handshake
            print(f"alb endpoint: certificate look-up for {server_name}: {exc}", flush=True)
            return
        if names:
            sock.context = self._context_for(self.ca.leaf(names))

    def certificate_names(self, server_name: str) -> list[str] | None:
        """The names of the ISSUED ACM certificate an active ALB would present, if any."""
        for balancer in self._balancers():
            if not _active(balancer):
                continue
            listeners = self.elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])
            for listener in listeners["Listeners"]:
                if listener.get("Protocol") != "HTTPS":
                    continue
                for arn in self._listener_certificates(listener):
                    names = self._issued_names(arn)
                    if any(covers(name, server_name) for name in names):
                        return names
        return None

    def _listener_certificates(self, listener: dict[str, Any]) -> list[str]:
        arns = [c["CertificateArn"] for c in listener.get("Certificates", [])]
        extra = self.elbv2.describe_listener_certificates(ListenerArn=listener["ListenerArn"])
        arns += [c["CertificateArn"] for c in extra.get("Certificates", [])]
        return list(dict.fromkeys(arns))

    def _issued_names(self, arn: str) -> list[str]:
        try:
            cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
        except self.acm.exceptions.ResourceNotFoundException:
            return []
        if cert.get("Status") != "ISSUED":
            return []
        return list(dict.fromkeys([cert["DomainName"], *cert.get("SubjectAlternativeNames", [])]))

    def _context_for(self, leaf: Path) -> ssl.SSLContext:
        with self._lock:
            context = self._contexts.get(leaf)
            if context is None:
                context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                context.minimum_version = ssl.TLSVersion.TLSv1_2
                context.load_cert_chain(leaf)
                self._contexts[leaf] = context
            return context

    def _balancers(self) -> list[dict[str, Any]]:
        paginator = self.elbv2.get_paginator("describe_load_balancers")
        return [lb for page in paginator.paginate() for lb in page.get("LoadBalancers", [])]


def _active(balancer: dict[str, Any]) -> bool:
    return balancer.get("State", {}).get("Code") == "active"


def _random_loopback() -> str:
    # The second octet is never 0, so the address is never 127.0.0.1 (or near it).
    return f"127.{random.randint(1, 254)}.{random.randint(1, 254)}.{random.randint(1, 254)}"


# ---- the servers -------------------------------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted world may rebind while old sockets linger
    tls_context: ssl.SSLContext
    endpoint: AlbEndpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-handshake or mid-request, or fail our certificate: not news.
        pass


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    timeout = CONNECTION_TIMEOUT
    server_header = "awselb/2.0"

    def version_string(self) -> str:
        return self.server_header

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def finish(self) -> None:
        with contextlib.suppress(OSError):
            super().finish()
        with contextlib.suppress(OSError):
            self.connection.close()

    def _reply(self, code: int, location: str, text: str) -> None:
        body = f"<html><body>{text}</body></html>\n".encode()
        self.send_response(code)
        self.send_header("Location", location)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True


class _HttpsHandler(_Handler):
    """Kubeflow behind the ALB: an anonymous visitor is sent to Dex to log in."""

    server_header = "istio-envoy"

    def setup(self) -> None:
        # The handshake happens here, in the connection's own thread, not in the accept loop.
        self.request.settimeout(CONNECTION_TIMEOUT)
        self.request = self.server.tls_context.wrap_socket(self.request, server_side=True)
        super().setup()

    def _answer(self) -> None:
        self._reply(302, LOGIN_REDIRECT, '<a href="/dex/auth">Found</a>.')

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer


class _HttpHandler(_Handler):
    """The ALB's HTTP listener: redirect to the same host and path over HTTPS."""

    def _answer(self) -> None:
        endpoint = self.server.endpoint
        host = (self.headers.get("Host") or endpoint.address).rsplit(":", 1)[0]
        port = "" if endpoint.https_port == HTTPS_PORT else f":{endpoint.https_port}"
        target = f"https://{host}{port}{self.path}"
        self._reply(301, target, f'<a href="{target}">Moved Permanently</a>.')

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer
