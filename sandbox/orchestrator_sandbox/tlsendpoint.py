"""The front end every ALB of the world answers on: HTTPS and HTTP on 127.0.0.1.

One address and two ports stand in for all of the world's load balancers: the world's DNS
resolves an alias record to any active ALB to 127.0.0.1 (`alias_address`). The ports are
high ones the system picks (443 and 80 need root, and several worlds may run side by
side), so clients come in as from behind an egress proxy: through the world's CONNECT
proxy (egress), which `HTTPS_PROXY` names and which tunnels `<name>:443` to the HTTPS port
and `<name>:80` to the HTTP one. Since all ALBs share the front end, the ALB a client
means is told by the name it asks for: the TLS server name (SNI, read from the
ClientHello before the handshake) picks the ALB whose HTTPS listener has an ISSUED ACM
certificate covering it, and plain HTTP's Host header picks the ALB of that DNS name, or
the one serving that name over HTTPS.

- The certificate: a leaf from the sandbox CA for the chosen certificate's names; with no
  ALB for the name, a `*.elb.amazonaws.com` leaf, which fails the client's hostname check
  just as a real ALB would.
- Reachability: clients here stand on the internet, outside every VPC. An internal ALB, or
  an internet-facing one with a subnet that has no route to an internet gateway, cannot be
  reached from there: the connection is closed before any answer (a real client would
  time out; here all ALBs share one front end, so the TCP handshake cannot be withheld).
- The answer: while the listener's target group has no healthy target (new targets are
  `initial` for a while: elbphysics), the ALB's own `503 Service Temporarily Unavailable`
  page; then Kubeflow's answer to an anonymous visitor, a redirect to Dex's login. Over
  HTTP, the listener's redirect to HTTPS (port 443, where clients reach it by the proxy).
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

from orchestrator_sandbox.pki import SandboxCA
from orchestrator_sandbox.subnets import all_public

LOOPBACK = "127.0.0.1"
DEFAULT_NAMES = ("*.elb.amazonaws.com",)
LOGIN_REDIRECT = (
    "/dex/auth?client_id=kubeflow-oidc-authservice"
    "&redirect_uri=%2Fauthservice%2Foidc%2Fcallback"
    "&response_type=code&scope=openid+profile+email+groups&state=sandbox"
)
CONNECTION_TIMEOUT = 10.0
TLS_RECORD_MAX = 5 + 16384  # a TLS record: 5 header bytes, at most 16 KiB of payload
UNAVAILABLE_PAGE = (
    "<html>\r\n<head><title>503 Service Temporarily Unavailable</title></head>\r\n<body>\r\n"
    "<center><h1>503 Service Temporarily Unavailable</h1></center>\r\n</body>\r\n</html>\r\n"
)


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


def server_name_of(hello: bytes) -> str | None:
    """The host name a TLS ClientHello record asks for (its server_name extension), if any."""
    try:
        if hello[0] != 22:  # not a handshake record
            return None
        body = hello[5 : 5 + int.from_bytes(hello[3:5], "big")]
        if body[0] != 1:  # not a ClientHello
            return None
        at = 4 + 2 + 32  # message header, client version, random
        at += 1 + body[at]  # session id
        at += 2 + int.from_bytes(body[at : at + 2], "big")  # cipher suites
        at += 1 + body[at]  # compression methods
        end = at + 2 + int.from_bytes(body[at : at + 2], "big")
        at += 2
        while at + 4 <= end:
            kind = int.from_bytes(body[at : at + 2], "big")
            size = int.from_bytes(body[at + 2 : at + 4], "big")
            if kind == 0 and body[at + 6] == 0:  # server_name, first entry a host_name
                length = int.from_bytes(body[at + 7 : at + 9], "big")
                return body[at + 9 : at + 9 + length].decode("ascii") or None
            at += 4 + size
    except (IndexError, UnicodeDecodeError):
        return None
    return None


def peek_client_hello(sock: socket.socket) -> bytes:
    """The client's first TLS record (as much of it as comes within the socket's timeout),
    left unread for the handshake to read."""
    deadline = time.monotonic() + (sock.gettimeout() or CONNECTION_TIMEOUT)
    while True:
        data = sock.recv(TLS_RECORD_MAX, socket.MSG_PEEK)  # waits for the first bytes
        complete = len(data) >= 5 and len(data) >= 5 + int.from_bytes(data[3:5], "big")
        if not data or complete or time.monotonic() > deadline:
            return data
        # More of the record is on its way; a peek cannot wait for it, so look again soon.
        time.sleep(0.005)


@dataclass(frozen=True)
class Route:
    """The ALB a client asked for, and its listener for the client's protocol."""

    balancer: dict[str, Any]
    listener: dict[str, Any] | None  # None: the ALB has no listener for that protocol
    reachable: bool  # whether a client on the internet gets through to it
    names: tuple[str, ...] = ()  # the names of the certificate it presents (HTTPS)


class AlbEndpoint:
    """The TLS and plain-HTTP servers of the world's load balancers."""

    def __init__(self, ca: SandboxCA, elbv2: Any, acm: Any, ec2: Any | None = None) -> None:
        """`ec2`: for the subnets' route tables; by default a client of elbv2's endpoint."""
        self.ca = ca
        self.elbv2 = elbv2
        self.acm = acm
        self.ec2 = ec2 if ec2 is not None else _sibling_client(elbv2, "ec2")
        self.address = LOOPBACK
        self.https_port = 0
        self.http_port = 0
        self._servers: list[_Server] = []
        self._contexts: dict[Path, ssl.SSLContext] = {}
        self._lock = threading.Lock()

    # ---- lifecycle ----------------------------------------------------------------------------

    def start(self) -> None:
        """Bind two free ports of 127.0.0.1 and serve."""
        https = _Server((self.address, 0), _HttpsHandler)
        http = _Server((self.address, 0), _HttpHandler)
        self.https_port, self.http_port = https.server_address[1], http.server_address[1]
        https.endpoint = http.endpoint = self
        self._servers = [https, http]
        for server in self._servers:
            threading.Thread(target=server.serve_forever, daemon=True, name="alb-endpoint").start()

    def stop(self) -> None:
        for server in self._servers:
            with contextlib.suppress(Exception):
                server.shutdown()
                server.server_close()

    # ---- DNS ----------------------------------------------------------------------------------

    def alias_address(self, dns_name: str) -> list[str]:
        """The endpoint's address if `dns_name` is the DNSName of an active ALB, else []."""
        wanted = balancer_name(dns_name)
        for balancer in self._balancers():
            if balancer_name(balancer["DNSName"]) == wanted:
                return [self.address] if _active(balancer) else []
        return []

    # ---- which ALB, and what it answers --------------------------------------------------------

    def route_for_server_name(self, server_name: str) -> Route | None:
        """The active ALB with an HTTPS listener whose ISSUED certificate covers the name.

        Several may; the first made wins, as the front end cannot see which one the
        client's DNS pointed at."""
        for balancer in self._active_balancers():
            for listener in self._listeners(balancer, "HTTPS"):
                for arn in self._listener_certificates(listener):
                    names = self._issued_names(arn)
                    if any(covers(name, server_name) for name in names):
                        return Route(balancer, listener, self.reachable(balancer), tuple(names))
        return None

    def route_for_host(self, host: str) -> Route | None:
        """The ALB a plain-HTTP request's Host names: by its own DNS name, or the ALB that
        serves that name over HTTPS; with its HTTP listener."""
        wanted = balancer_name(host)
        balancer = next(
            (b for b in self._active_balancers() if balancer_name(b["DNSName"]) == wanted), None
        )
        if balancer is None:
            found = self.route_for_server_name(host)
            balancer = found.balancer if found else None
        if balancer is None:
            return None
        listener = next(iter(self._listeners(balancer, "HTTP")), None)
        return Route(balancer, listener, self.reachable(balancer))

    def reachable(self, balancer: dict[str, Any]) -> bool:
        """Whether a client on the internet can reach the ALB: internet-facing, and every
        one of its subnets routes to an internet gateway."""
        if balancer.get("Scheme") != "internet-facing":
            return False
        subnets = [zone["SubnetId"] for zone in balancer.get("AvailabilityZones", [])]
        return all_public(self.ec2, subnets)

    def healthy(self, listener: dict[str, Any] | None) -> bool:
        """Whether a target group the listener forwards to has a healthy target."""
        try:
            for group in _forwarded_groups(listener):
                described = self.elbv2.describe_target_health(TargetGroupArn=group)
                states = {d["TargetHealth"]["State"] for d in described["TargetHealthDescriptions"]}
                if "healthy" in states:
                    return True
        except Exception as exc:  # noqa: BLE001 - an ALB that cannot tell answers 503
            print(f"alb endpoint: target health: {exc!r}", flush=True)
        return False

    def certificate_names(self, server_name: str) -> list[str] | None:
        """The names of the ISSUED ACM certificate an active ALB would present, if any."""
        route = self.route_for_server_name(server_name)
        return list(route.names) if route else None

    def context_for(self, route: Route | None) -> ssl.SSLContext:
        """The TLS context presenting the route's certificate, or the default leaf."""
        names = route.names if route and route.names else DEFAULT_NAMES
        return self._context_for(self.ca.leaf(names))

    def _active_balancers(self) -> list[dict[str, Any]]:
        return [b for b in self._balancers() if _active(b)]

    def _listeners(self, balancer: dict[str, Any], protocol: str) -> list[dict[str, Any]]:
        listed = self.elbv2.describe_listeners(LoadBalancerArn=balancer["LoadBalancerArn"])
        return [x for x in listed["Listeners"] if x.get("Protocol") == protocol]

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


def _forwarded_groups(listener: dict[str, Any] | None) -> list[str]:
    groups = []
    for action in (listener or {}).get("DefaultActions", []):
        if action.get("Type") != "forward":
            continue
        if action.get("TargetGroupArn"):
            groups.append(action["TargetGroupArn"])
        groups += [
            g["TargetGroupArn"] for g in (action.get("ForwardConfig") or {}).get("TargetGroups", [])
        ]
    return list(dict.fromkeys(groups))


def _default_action(route: Route) -> str | None:
    actions = (route.listener or {}).get("DefaultActions", [])
    return actions[0].get("Type") if actions else None


def _sibling_client(client: Any, service: str) -> Any:
    """A boto3 client for another service at the same endpoint and region."""
    import boto3

    return boto3.client(
        service, region_name=client.meta.region_name, endpoint_url=client.meta.endpoint_url
    )


# ---- the servers -------------------------------------------------------------------------------


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True  # a restarted world may rebind while old sockets linger
    endpoint: AlbEndpoint

    def handle_error(self, request: Any, client_address: Any) -> None:
        # Clients hang up mid-handshake or mid-request, or fail our certificate, and
        # unreachable ALBs drop theirs: not news.
        pass


class _Unreachable(ConnectionAbortedError):
    """The client cannot reach the ALB it asked for: close without answering."""


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
        self._send(code, None, f"<html><body>{text}</body></html>\n", {"Location": location})

    def _unavailable(self) -> None:
        """The ALB's own answer when no target is healthy."""
        self.server_header = "awselb/2.0"
        self._send(503, "Service Temporarily Unavailable", UNAVAILABLE_PAGE, {})

    def _send(self, code: int, phrase: str | None, page: str, headers: dict[str, str]) -> None:
        body = page.encode()
        self.send_response(code, phrase)
        for name, value in headers.items():
            self.send_header(name, value)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _fixed(self, route: Route) -> None:
        """A listener's fixed-response action (the controller's 404 without a backend)."""
        config = (route.listener or {})["DefaultActions"][0].get("FixedResponseConfig") or {}
        self.server_header = "awselb/2.0"
        self._send(int(config.get("StatusCode", 404)), None, config.get("MessageBody", ""), {})

    def _route(self, find: Any, name: str) -> Route | None:
        """The ALB for `name` (None when there is none, or the look-up fails)."""
        try:
            return find(name) if name else None
        except Exception as exc:  # noqa: BLE001 - a failed look-up must not kill the server
            print(f"alb endpoint: look-up for {name}: {exc!r}", flush=True)
            return None


class _HttpsHandler(_Handler):
    """The ALB's HTTPS listener, with Kubeflow behind it (see module doc)."""

    server_header = "istio-envoy"
    route: Route | None = None

    def setup(self) -> None:
        # The handshake happens here, in the connection's own thread, not in the accept loop.
        self.request.settimeout(CONNECTION_TIMEOUT)
        endpoint = self.server.endpoint
        name = server_name_of(peek_client_hello(self.request)) or ""
        self.route = self._route(endpoint.route_for_server_name, name)
        if self.route is not None and not self.route.reachable:
            raise _Unreachable(name)
        context = endpoint.context_for(self.route)
        self.request = context.wrap_socket(self.request, server_side=True)
        super().setup()

    def _answer(self) -> None:
        if self.route is not None and not self.server.endpoint.healthy(self.route.listener):
            self._unavailable()
            return
        self._reply(302, LOGIN_REDIRECT, '<a href="/dex/auth">Found</a>.')

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer


class _HttpHandler(_Handler):
    """The ALB's HTTP listener: redirect to the same host and path over HTTPS."""

    def _answer(self) -> None:
        endpoint = self.server.endpoint
        host = (self.headers.get("Host") or endpoint.address).rsplit(":", 1)[0]
        route = self._route(endpoint.route_for_host, host)
        if route is not None and (route.listener is None or not route.reachable):
            self.close_connection = True  # nothing answers: see the module doc
            return
        if route is not None and _default_action(route) == "forward":
            if not endpoint.healthy(route.listener):
                self._unavailable()
            else:
                self._reply(302, LOGIN_REDIRECT, '<a href="/dex/auth">Found</a>.')
            return
        if route is not None and _default_action(route) == "fixed-response":
            self._fixed(route)
            return
        target = f"https://{host}{self.path}"
        self._reply(301, target, f'<a href="{target}">Moved Permanently</a>.')

    do_GET = do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = _answer
