"""The orchestrator's resolver (dnspython, pointed by ORCHESTRATOR_DNS_SERVERS at the servers
to ask) against the sandbox's DNS, whose own tests are sandbox/tests/test_sandbox_dns.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from test_sandbox_dns import NS, StaticView, served, world

from orchestrator import resolver


@pytest.fixture
def dns_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[StaticView]:
    view = StaticView(world(delegated=False))
    with served(view) as port:
        monkeypatch.setenv(resolver.ENV, f"127.0.0.1:{port}")
        yield view


def test_the_resolver_sees_the_delegation_once_it_exists(dns_server: StaticView) -> None:
    assert resolver.lookup("platform.example.com", "NS") == []
    dns_server._zones[:] = world(delegated=True)
    assert resolver.lookup("platform.example.com", "NS") == sorted(NS)
    assert resolver.lookup("www.example.com", "A") == ["192.0.2.10"]


def test_resolver_servers_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(resolver.ENV, "1.1.1.1, 127.0.0.1:5353")
    assert resolver.configured_servers() == [("1.1.1.1", 53), ("127.0.0.1", 5353)]
