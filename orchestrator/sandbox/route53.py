"""Route 53's strictness for the sandbox, where moto is lenient.

- A CallerReference can be used once: a second CreateHostedZone with it fails with
  HostedZoneAlreadyExists (moto would create a duplicate zone).
- Each zone gets name servers of its own (moto gives every zone the same four), so a
  delegation names one zone, and a zone re-created after a rollback is unreachable
  until the delegation is updated, as on the real internet.
"""

from __future__ import annotations

import itertools
import threading
from typing import Any

_TLDS = ("com", "net", "org", "co.uk")


def make_route53_strict() -> None:
    from moto.route53.exceptions import Route53ClientError
    from moto.route53.models import Route53Backend

    original = Route53Backend.create_hosted_zone
    if getattr(original, "sandbox_patched", False):
        return
    used: set[str] = set()
    counter = itertools.count(1)
    lock = threading.Lock()

    def create_hosted_zone(
        self: Any,
        name: str,
        private_zone: bool,
        caller_reference: str | None = None,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        with lock:
            if caller_reference is not None and caller_reference in used:
                raise Route53ClientError(
                    "HostedZoneAlreadyExists",
                    f"A hosted zone has already been created with the specified caller "
                    f"reference {caller_reference}.",
                )
            zone = original(self, name, private_zone, caller_reference, *args, **kwargs)
            if caller_reference is not None:
                used.add(caller_reference)
            number = next(counter)
        servers = [
            f"ns-{number * 4 + i}.awsdns-{number % 64:02d}.{tld}" for i, tld in enumerate(_TLDS)
        ]
        zone.delegation_set.name_servers = servers
        for rrset in zone.rrsets:
            if rrset.type == "NS" and rrset.name.rstrip(".") == zone.name.rstrip("."):
                rrset.records = list(servers)
        return zone

    create_hosted_zone.sandbox_patched = True  # type: ignore[attr-defined]
    Route53Backend.create_hosted_zone = create_hosted_zone
