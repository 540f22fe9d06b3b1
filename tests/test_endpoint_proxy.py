"""The endpoint probe behind an egress proxy: HTTPS_PROXY (CONNECT) and NO_PROXY, as the
standard library reads them; the DNS check and the certificate check stay end to end."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from orchestrator.states import endpoint
from orchestrator_sandbox.pki import SandboxCA

HOST = "kubeflow.platform.example.com"
UNROUTABLE = "192.0.2.1"  # TEST-NET-1: a probe that connects here directly never gets an answer
PROXY_VARIABLES = ("HTTPS_PROXY", "HTTP_PROXY", "ALL_PROXY", "NO_PROXY", "REQUEST_METHOD")


class Kubeflow(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", "/dex/auth")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


class Proxy(socketserver.ThreadingTCPServer):
    """A tiny CONNECT proxy: tunnels every CONNECT to `upstream`, or refuses with `refuse`."""

    daemon_threads = True

    def __init__(self, upstream: tuple[str, int], refuse: int | None = None) -> None:
        super().__init__(("127.0.0.1", 0), ProxyHandler)
        self.upstream, self.refuse = upstream, refuse
        self.requests: list[tuple[str, str | None]] = []  # (CONNECT target, Proxy-Authorization)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class ProxyHandler(BaseHTTPRequestHandler):
    server: Proxy

    def do_CONNECT(self) -> None:
        self.server.requests.append((self.path, self.headers.get("Proxy-Authorization")))
        if self.server.refuse:
            self.send_error(self.server.refuse)
            return
        with socket.create_connection(self.server.upstream) as upstream:
            self.send_response(200, "Connection established")
            self.end_headers()
            relay(self.connection, upstream)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def relay(a: socket.socket, b: socket.socket) -> None:
    def copy(source: socket.socket, target: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                target.sendall(data)
        with contextlib.suppress(OSError):
            target.shutdown(socket.SHUT_WR)

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join(5)


@contextlib.contextmanager
def serving(server: socketserver.BaseServer) -> Iterator[None]:
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def kubeflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, int]]:
    """An HTTPS server with a certificate for HOST from a CA that SSL_CERT_FILE trusts."""
    ca = SandboxCA(tmp_path)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(ca.leaf([HOST]))
    server = ThreadingHTTPServer(("127.0.0.1", 0), Kubeflow)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    monkeypatch.setenv("SSL_CERT_FILE", str(ca.cert_path))
    with serving(server):
        yield "127.0.0.1", server.server_address[1]


@pytest.fixture(autouse=True)
def no_proxy_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' own proxy settings only; the name resolves to an unroutable address."""
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setattr(endpoint.resolver, "lookup", lambda host, rtype: [UNROUTABLE])


def test_the_probe_tunnels_through_https_proxy(
    kubeflow: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Proxy(kubeflow)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with serving(proxy):
        result, problem = endpoint.probe(HOST)
    assert problem == ""
    assert result is not None
    assert (result["http_status"], result["proxy"], result["address"]) == (
        302,
        proxy.url,
        UNROUTABLE,
    )
    assert result["certificate_subject"] == HOST
    assert proxy.requests == [(f"{HOST}:443", None)]


def test_lower_case_https_proxy_with_credentials_that_are_never_shown(
    kubeflow: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    proxy = Proxy(kubeflow, refuse=403)
    port = proxy.server_address[1]
    monkeypatch.setenv("https_proxy", f"http://me:s%40cret@127.0.0.1:{port}")
    with serving(proxy):
        result, problem = endpoint.probe(HOST)
    assert result is None
    assert problem.startswith(f"{HOST}:443 through the proxy http://127.0.0.1:{port}: ")
    assert "403" in problem and "cret" not in problem
    # Basic base64("me:s@cret")
    assert proxy.requests == [(f"{HOST}:443", "Basic bWU6c0BjcmV0")]


def test_the_certificate_is_checked_end_to_end_through_the_tunnel(
    kubeflow: tuple[str, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The proxy reaches a server whose certificate is not for the name asked: refused."""
    proxy = Proxy(kubeflow)
    monkeypatch.setenv("HTTPS_PROXY", proxy.url)
    with serving(proxy):
        result, problem = endpoint.probe("other.example.org")
    assert result is None
    assert problem.startswith("TLS certificate not valid for other.example.org")
    assert proxy.requests == [("other.example.org:443", None)]


def test_the_name_must_still_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    monkeypatch.setattr(endpoint.resolver, "lookup", lambda host, rtype: [])
    assert endpoint.probe(HOST) == (None, f"{HOST} does not resolve yet")


@pytest.mark.parametrize(
    "no_proxy, proxied",
    [
        ("", True),
        ("example.org", True),
        ("platform.example.com", False),
        (".example.com", False),
        ("example.com", False),
        ("localhost, 127.0.0.1 ,EXAMPLE.COM", False),
        ("*", False),
        ("kubeflow.platform.example.co", True),
    ],
)
def test_no_proxy_exempts_hosts_as_the_standard_library_reads_it(
    monkeypatch: pytest.MonkeyPatch, no_proxy: str, proxied: bool
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.internal:3128")
    monkeypatch.setenv("NO_PROXY", no_proxy)
    assert endpoint.https_proxy(HOST) == ("http://proxy.internal:3128" if proxied else None)


def test_without_a_proxy_the_probe_connects_directly(monkeypatch: pytest.MonkeyPatch) -> None:
    assert endpoint.https_proxy(HOST) is None
    seen: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(address)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(endpoint.socket, "create_connection", refuse)
    assert endpoint.probe(HOST) == (None, f"{UNROUTABLE}:443: refused")
    assert seen == [(UNROUTABLE, 443)]


def test_proxy_urls() -> None:
    assert endpoint.shown("http://me:pw@proxy:3128") == "http://proxy:3128"
    assert endpoint.shown("proxy:3128") == "http://proxy:3128"
    with pytest.raises(OSError, match="unsupported proxy"):
        endpoint.tunnel("socks5://proxy:1080", HOST, 443)
