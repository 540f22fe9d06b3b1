"""DNS look-ups for the delegation and endpoint checks.

By default the system's resolvers are used. ORCHESTRATOR_DNS_SERVERS names others,
comma-separated, each `address` or `address:port` (e.g. `1.1.1.1,8.8.8.8` to check what
the public internet sees, or a split-horizon resolver inside a corporate network).
"""

from __future__ import annotations

import os

ENV = "ORCHESTRATOR_DNS_SERVERS"


def configured_servers() -> list[tuple[str, int]]:
    servers = []
    for item in os.environ.get(ENV, "").split(","):
        item = item.strip()
        if not item:
            continue
        host, sep, port = item.rpartition(":")
        if sep and port.isdigit() and ":" not in host:
            servers.append((host, int(port)))
        else:
            servers.append((item, 53))
    return servers


def _resolver():  # noqa: ANN202 - dnspython type, imported lazily
    import dns.nameserver
    import dns.resolver

    servers = configured_servers()
    resolver = dns.resolver.Resolver(configure=not servers)
    if servers:
        resolver.nameservers = [dns.nameserver.Do53Nameserver(h, p) for h, p in servers]
    resolver.lifetime = 5.0
    resolver.timeout = 2.0
    return resolver


def lookup(name: str, rdtype: str) -> list[str]:
    """The answer's values (lower-case, without trailing dots); [] if the name has none.

    Timeouts and server failures count as "no answer yet": callers poll.
    """
    import dns.exception
    import dns.resolver

    try:
        answer = _resolver().resolve(name, rdtype, raise_on_no_answer=False)
    except (
        dns.resolver.NXDOMAIN,
        dns.resolver.NoNameservers,
        dns.exception.Timeout,
        dns.resolver.NoAnswer,
    ):
        return []
    if answer.rrset is None:
        return []
    return sorted(r.to_text().rstrip(".").lower() for r in answer.rrset)
