"""The sandbox's egress proxy, in process: it tunnels CONNECT to the world's ALB front end
for the world's ALB names only; and the world's warnings reach the terminal."""

from __future__ import annotations

import contextlib
import http.client
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


def test_the_proxy_only_tunnels() -> None:
    with proxy_for(lambda name, port: ("127.0.0.1", 9)) as url:
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=5)
        connection.request("GET", "http://example.org/")
        assert connection.getresponse().status == 405


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
