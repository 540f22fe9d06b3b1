"""The sandbox's DNS: resolution that follows delegation from the Route 53 zones, served
over UDP and TCP as the internet's resolvers would answer (the product's resolver against it
is tested in tests/test_dns.py)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import dns.rcode

from orchestrator_sandbox.dnsserver import DnsServer
from orchestrator_sandbox.dnsview import Zone, authoritative, resolve

NS = ["ns-1.awsdns.com", "ns-2.awsdns.net"]


def rrset(name: str, rtype: str, *values: str, ttl: int = 300) -> dict[str, Any]:
    return {
        "Name": name + ".",
        "Type": rtype,
        "TTL": ttl,
        "ResourceRecords": [{"Value": v} for v in values],
    }


def zone(zone_id: str, name: str, *records: dict[str, Any]) -> Zone:
    z = Zone(zone_id, name)
    for r in (rrset(name, "NS", *NS), *records):
        z.records[(r["Name"].rstrip("."), r["Type"])] = r
    return z


def world(delegated: bool) -> list[Zone]:
    """A root zone and a subdomain's zone, the subdomain delegated from the root or not."""
    root_records = [rrset("www.example.com", "A", "192.0.2.10")]
    if delegated:
        root_records.append(rrset("platform.example.com", "NS", *NS))
    sub = zone(
        "ZSUB",
        "platform.example.com",
        rrset("_v.platform.example.com", "CNAME", "_t.acm-validations.aws."),
        {
            "Name": "kubeflow.platform.example.com.",
            "Type": "A",
            "AliasTarget": {
                "DNSName": "lb-1.us-west-2.elb.amazonaws.com.",
                "HostedZoneId": "Z1H1FL5HABSF5",
            },
        },
    )
    return [zone("ZROOT", "example.com", *root_records), sub]


def no_alias(_: str) -> list[str]:
    return []


class StaticView:
    """A DNS view over fixed zones (the world's own reads them from Route 53)."""

    def __init__(self, zones: list[Zone]) -> None:
        self._zones = zones
        self.alias_address = no_alias

    def zones(self) -> list[Zone]:
        return self._zones

    def resolve(self, name: str, rtype: str) -> Any:
        return resolve(self._zones, name.rstrip(".").lower(), rtype, self.alias_address)


@contextlib.contextmanager
def served(view: StaticView) -> Iterator[int]:
    """The world's DNS server answering from `view`, on a loopback port (yielded)."""
    server = DnsServer(view)  # type: ignore[arg-type]
    server.start()
    try:
        yield server.port
    finally:
        server.stop()


def test_an_undelegated_subdomain_does_not_resolve() -> None:
    zones = world(delegated=False)
    assert authoritative(zones, "_v.platform.example.com").id == "ZROOT"
    assert resolve(zones, "_v.platform.example.com", "CNAME", no_alias).rcode == "NXDOMAIN"
    assert resolve(zones, "www.example.com", "A", no_alias).records[0][3] == "192.0.2.10"


def test_a_delegated_subdomain_resolves_through_its_zone() -> None:
    zones = world(delegated=True)
    assert authoritative(zones, "_v.platform.example.com").id == "ZSUB"
    answer = resolve(zones, "_v.platform.example.com", "CNAME", no_alias)
    assert answer.records == [("_v.platform.example.com", "CNAME", 300, "_t.acm-validations.aws")]


def test_lame_delegation_does_not_resolve() -> None:
    zones = world(delegated=True)
    zones[0].records[("platform.example.com", "NS")] = rrset(
        "platform.example.com", "NS", "ns-9.elsewhere.org"
    )
    assert authoritative(zones, "x.platform.example.com") is None


def test_alias_records_resolve_through_the_hook() -> None:
    zones = world(delegated=True)
    answer = resolve(
        zones,
        "kubeflow.platform.example.com",
        "A",
        lambda target: ["127.0.0.7"] if target.endswith("elb.amazonaws.com") else [],
    )
    assert answer.records == [("kubeflow.platform.example.com", "A", 60, "127.0.0.7")]


def test_the_server_answers_over_udp_and_tcp_from_the_zones_as_they_are_now() -> None:
    view = StaticView(world(delegated=False))
    with served(view) as port:

        def ask(name: str, rtype: str, over: Any) -> dns.message.Message:
            return over(dns.message.make_query(name, rtype), "127.0.0.1", port=port, timeout=5)

        for over in (dns.query.udp, dns.query.tcp):
            assert ask("platform.example.com", "NS", over).rcode() == dns.rcode.NXDOMAIN
        view._zones[:] = world(delegated=True)
        for over in (dns.query.udp, dns.query.tcp):
            reply = ask("platform.example.com", "NS", over)
            assert reply.rcode() == dns.rcode.NOERROR
            assert sorted(r.to_text().rstrip(".") for r in reply.answer[0]) == NS
