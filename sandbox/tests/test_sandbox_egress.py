"""The sandbox's egress proxy, in process: it tunnels CONNECT to the world's ALB front end
for the world's ALB names only; and the world's warnings reach the terminal."""

from __future__ import annotations

import contextlib
import http.client
import http.server
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.states.endpoint import tunnel
from orchestrator_sandbox import world
from orchestrator_sandbox.dnsview import Answer
from orchestrator_sandbox.egress import ConnectProxy, Refused, front_end_route

ALB = "k8s-istiosys-istioing-0123456789-1.us-west-2.elb.amazonaws.com"


@pytest.fixture
def echo() -> Iterator[tuple[str, int]]:
    """A server that answers each connection with what it received, upper-cased, once."""
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with contextlib.suppress(OSError):
            while True:
                connection, _ = listener.accept()
                with connection:
                    connection.sendall(connection.recv(1024).upper())

    threading.Thread(target=serve, daemon=True).start()
    try:
        yield listener.getsockname()
    finally:
        listener.close()


@contextlib.contextmanager
def proxy_for(route: Any) -> Iterator[str]:
    proxy = ConnectProxy(route)
    proxy.start()
    try:
        yield proxy.url
    finally:
        proxy.stop()


def test_the_proxy_tunnels_where_the_route_says(echo: tuple[str, int]) -> None:
    asked: list[tuple[str, int]] = []

    def route(name: str, port: int) -> tuple[str, int]:
        asked.append((name, port))
        return echo

    with proxy_for(route) as url, tunnel(url, "Kubeflow.Example.COM.", 443) as sock:
        sock.sendall(b"hello")
        assert sock.recv(1024) == b"HELLO"
    assert url.startswith("http://127.0.0.1:")
    assert asked == [("kubeflow.example.com", 443)]


@pytest.mark.parametrize(
    "error, status",
    [(Refused(403, "outside"), 403), (Refused(502, "no name"), 502), (KeyError("x"), 502)],
)
def test_the_proxy_refuses_what_the_route_refuses(error: Exception, status: int) -> None:
    def route(name: str, port: int) -> tuple[str, int]:
        raise error

    with (
        proxy_for(route) as url,
        pytest.raises(OSError, match=f"Tunnel connection failed: {status}"),
    ):
        tunnel(url, "example.org", 443)


@pytest.fixture
def alb_http() -> Iterator[tuple[tuple[str, int], list[dict[str, Any]]]]:
    """A stand-in for the front end's HTTP port: it notes each request it receives and
    answers as an ALB's HTTP listener does, with a redirect to HTTPS."""
    seen: list[dict[str, Any]] = []

    class Listener(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            seen.append(
                {
                    "line": self.requestline,
                    "headers": dict(self.headers.items()),
                    "body": self.rfile.read(length),
                }
            )
            self.send_response(301)
            self.send_header("Location", f"https://{self.headers['Host']}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_HEAD = do_POST = answer

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Listener)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield ("127.0.0.1", server.server_address[1]), seen
    finally:
        server.shutdown()
        server.server_close()


def through(proxy: str, method: str, url: str, **kwargs: Any) -> http.client.HTTPResponse:
    """A request through the proxy as curl and urllib send plain HTTP: the whole URL."""
    connection = http.client.HTTPConnection(proxy.removeprefix("http://"), timeout=5)
    connection.request(method, url, **kwargs)
    return connection.getresponse()


def test_plain_http_is_forwarded_to_where_the_route_says(
    alb_http: tuple[tuple[str, int], list[dict[str, Any]]],
) -> None:
    front, seen = alb_http
    asked: list[tuple[str, int]] = []

    def route(name: str, port: int) -> tuple[str, int]:
        asked.append((name, port))
        return front

    with proxy_for(route) as url:
        answer = through(
            url, "GET", "http://Kubeflow.Example.COM/a?b=c", headers={"Proxy-Authorization": "x"}
        )
        assert (answer.status, answer.getheader("Location")) == (
            301,
            "https://Kubeflow.Example.COM/a?b=c",
        )
        posted = through(url, "POST", "http://kubeflow.example.com:80/form", body=b"k=v")
        assert posted.status == 301
    assert asked == [("kubeflow.example.com", 80)] * 2
    # The ALB sees what a server sees: the path, the URL's host, nothing meant for the proxy.
    assert [request["line"] for request in seen] == ["GET /a?b=c HTTP/1.1", "POST /form HTTP/1.1"]
    assert seen[0]["headers"]["Host"] == "Kubeflow.Example.COM"
    assert "Proxy-Authorization" not in seen[0]["headers"]
    assert seen[1]["body"] == b"k=v"


@pytest.mark.parametrize(
    "url, status",
    [
        ("http://example.org/", 403),  # the route refuses it: outside the world
        ("http://kubeflow.example.com:8080/", 403),  # plain HTTP: port 80 only
        ("https://kubeflow.example.com/", 400),  # HTTPS goes through CONNECT
        ("/", 400),  # a request to the proxy itself, not through it
    ],
)
def test_plain_http_is_refused_as_connect_is(url: str, status: int) -> None:
    def route(name: str, port: int) -> tuple[str, int]:
        if name == "example.org":
            raise Refused(403, "outside")
        return ("127.0.0.1", 9)

    with proxy_for(route) as proxy:
        assert through(proxy, "GET", url).status == status


def test_plain_http_to_a_front_end_that_does_not_answer_is_a_bad_gateway() -> None:
    with proxy_for(lambda name, port: ("127.0.0.1", 9)) as proxy:
        answer = through(proxy, "GET", "http://kubeflow.example.com/")
        assert answer.status == 502
        assert answer.read().startswith(b"sandbox egress proxy: http://kubeflow.example.com/")


class FakeView:
    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers

    def resolve(self, name: str, rtype: str) -> Answer:
        if name not in self.answers:
            return Answer("NXDOMAIN")
        return Answer("NOERROR", [(name, "A", 60, value) for value in self.answers[name]])


class FakeFront:
    address, https_port, http_port = "127.0.0.1", 40443, 40080

    def alias_address(self, name: str) -> list[str]:
        return [self.address] if name == ALB else []


def test_the_world_routes_its_alb_names_to_the_front_end() -> None:
    view = FakeView(
        {"kubeflow.platform.example.com": ["127.0.0.1"], "www.example.com": ["192.0.2.8"]}
    )
    route = front_end_route(view, FakeFront())  # type: ignore[arg-type]
    assert route("kubeflow.platform.example.com", 443) == ("127.0.0.1", 40443)
    assert route("kubeflow.platform.example.com", 80) == ("127.0.0.1", 40080)
    assert route(ALB, 443) == ("127.0.0.1", 40443)
    for name, port, status in [
        ("www.example.com", 443, 403),  # resolves, but not to an ALB of the world
        ("nowhere.example.org", 443, 502),
        ("kubeflow.platform.example.com", 22, 403),
    ]:
        with pytest.raises(Refused) as refused:
            route(name, port)
        assert refused.value.status == status, name


def test_the_worlds_warnings_reach_the_terminal(capsys: pytest.CaptureFixture[str]) -> None:
    world.warn({"warnings": ["one thing", "another"]})
    world.warn({})
    assert capsys.readouterr().err == "sandbox: warning: one thing\nsandbox: warning: another\n"
