"""The world's DNS, as the internet would see it: answers come from the public Route 53
hosted zones as their name servers serve them (a change only once it is INSYNC, when the
view is given route53.published_zones), following delegation from the top zones down.

A zone is reachable only if it is a top zone (no other zone above it) or its parent
zone holds an NS record for it naming its name servers. So a subdomain zone nobody
delegated to does not resolve, just as on the real internet.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

MAX_CHASE = 8


def plain(name: str) -> str:
    return name.replace("\\052", "*").rstrip(".").lower()


def within(name: str, zone: str) -> bool:
    return name == zone or name.endswith("." + zone)


@dataclass
class Zone:
    id: str
    name: str
    records: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    @property
    def name_servers(self) -> list[str]:
        return values(self.records.get((self.name, "NS"), {}))


@dataclass
class Answer:
    rcode: str  # NOERROR, NXDOMAIN or SERVFAIL
    records: list[tuple[str, str, int, str]] = field(default_factory=list)  # name, type, ttl, value


def values(rrset: dict[str, Any]) -> list[str]:
    """The record's values; names (NS, CNAME targets) in their plain form."""
    names = rrset.get("Type") in ("NS", "CNAME", "PTR")
    return sorted(
        plain(r["Value"]) if names else r["Value"] for r in rrset.get("ResourceRecords", [])
    )


class DnsView:
    """Resolution over a snapshot of the hosted zones.

    The zones come from `served` if given: what Route 53's name servers serve, where a
    change shows only once it is INSYNC (route53.published_zones). Otherwise they are read
    through the Route 53 API, where every change shows at once."""

    def __init__(
        self,
        route53: Any,
        alias_address: Callable[[str], list[str]] | None = None,
        served: Callable[[], list[Zone]] | None = None,
    ):
        self.route53 = route53
        self.alias_address = alias_address or (lambda _target: [])
        self.served = served

    def zones(self) -> list[Zone]:
        if self.served is not None:
            return self.served()
        zones = []
        for summary in self._pages("list_hosted_zones", "HostedZones"):
            if summary.get("Config", {}).get("PrivateZone"):
                continue
            zone = Zone(summary["Id"].split("/")[-1], plain(summary["Name"]))
            for rrset in self._pages(
                "list_resource_record_sets", "ResourceRecordSets", HostedZoneId=zone.id
            ):
                zone.records[(plain(rrset["Name"]), rrset["Type"])] = rrset
            zones.append(zone)
        return zones

    def _pages(self, method: str, key: str, **kwargs: Any) -> list[dict[str, Any]]:
        paginator = self.route53.get_paginator(method)
        return [item for page in paginator.paginate(**kwargs) for item in page.get(key, [])]

    # ---- resolution -----------------------------------------------------------------------

    def resolve(self, name: str, rtype: str) -> Answer:
        return resolve(self.zones(), plain(name), rtype, self.alias_address)


def authoritative(zones: list[Zone], name: str) -> Zone | None:
    """The zone that answers for `name`, reached by delegation from a top zone."""
    containing = [z for z in zones if within(name, z.name)]
    tops = [
        z
        for z in containing
        if not any(o is not z and within(z.name, o.name) and o.name != z.name for o in zones)
    ]
    if not tops:
        return None
    current = min(tops, key=lambda z: len(z.name))
    while True:
        cut = _delegation_point(current, name)
        if cut is None:
            return current
        servers = values(current.records[(cut, "NS")])
        child = next((z for z in zones if z.name == cut and z.name_servers == servers), None)
        if child is None:
            return None  # lame delegation: the NS record points at no zone of that name
        current = child


def _delegation_point(zone: Zone, name: str) -> str | None:
    """The deepest NS record below the apex of `zone` that `name` falls under."""
    cuts = [
        owner
        for (owner, rtype) in zone.records
        if rtype == "NS" and owner != zone.name and within(name, owner)
    ]
    return max(cuts, key=len) if cuts else None


ELB_DOMAIN = ".elb.amazonaws.com"


def resolve(
    zones: list[Zone],
    name: str,
    rtype: str,
    alias_address: Callable[[str], list[str]],
    depth: int = 0,
) -> Answer:
    zone = authoritative(zones, name)
    if zone is None and rtype == "A" and name.endswith(ELB_DOMAIN):
        # AWS's DNS answers a load balancer's own name: a CNAME to it resolves (the old
        # setup script points `kubeflow.<subdomain>` at its ALB so).
        addresses = alias_address(name)
        if addresses:
            return Answer("NOERROR", [(name, "A", 60, address) for address in addresses])
    if zone is None or depth > MAX_CHASE:
        return Answer("NXDOMAIN" if zone is None else "SERVFAIL")
    rrset = zone.records.get((name, rtype))
    if rrset is not None:
        return Answer("NOERROR", _expand(zones, name, rtype, rrset, alias_address, depth))
    cname = zone.records.get((name, "CNAME"))
    if cname is not None and rtype != "CNAME":
        target = values(cname)[0]
        chased = resolve(zones, target, rtype, alias_address, depth + 1)
        first = (name, "CNAME", int(cname.get("TTL", 300)), target)
        return Answer(chased.rcode, [first, *chased.records])
    exists = any(owner == name or owner.endswith("." + name) for owner, _ in zone.records)
    return Answer("NOERROR" if exists else "NXDOMAIN")


def _expand(
    zones: list[Zone],
    name: str,
    rtype: str,
    rrset: dict[str, Any],
    alias_address: Callable[[str], list[str]],
    depth: int,
) -> list[tuple[str, str, int, str]]:
    alias = rrset.get("AliasTarget")
    if alias is None:
        ttl = int(rrset.get("TTL", 300))
        return [(name, rtype, ttl, value) for value in values(rrset)]
    target = plain(alias["DNSName"])
    addresses = alias_address(target)
    if not addresses:
        addresses = [
            v
            for (_, t, _, v) in resolve(zones, target, rtype, alias_address, depth + 1).records
            if t == rtype
        ]
    return [(name, rtype, 60, address) for address in addresses]
