"""ACM's physics for the sandbox: DNS validation that actually depends on DNS.

moto issues every certificate after a fixed time whatever DNS says; the world turns
that off and runs this simulator instead. A PENDING_VALIDATION certificate becomes
ISSUED only after each of its validation CNAMEs resolves, through delegation, to the
exact value ACM asked for, and then only after `delay` more seconds.

Each issue is an `acm.issued` event of the world's event log (events.py), from when the
simulator first saw every validation record resolve to the issue, after the Route 53
changes that had made the zones serving those names (the zones of the records and the
parents that delegate to them) what they were by then: all of those zones' INSYNC changes.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass
from typing import Any

from orchestrator_sandbox import events
from orchestrator_sandbox.dnsview import DnsView, Zone, resolve, within
from orchestrator_sandbox.reconciler import Reconciler
from orchestrator_sandbox.route53 import in_sync_changes


def use_distinct_validation_records() -> None:
    """Give each domain its own validation record, as ACM does (moto gives every domain the
    same one).

    ACM's record belongs to the account and the domain, not to the certificate. The ACM
    User Guide ("DNS validation") says each CNAME is made for your domain and your account,
    and that while it stays in place further certificates for that name, in any Region,
    need no new validation; its table of example records shows ACM drops the wildcard
    label, giving `*.example.com` the very record of `example.com` (also in the ACM FAQ).
    So two teams' certificates for `*.example.com` share one record in the root zone."""
    from moto.acm.models import CertBundle

    original = CertBundle.describe
    if getattr(original, "sandbox_patched", False):
        return

    def describe(self: Any) -> dict[str, Any]:
        result = original(self)
        account = self.arn.split(":")[4]
        for option in result["Certificate"].get("DomainValidationOptions", []):
            record = option.get("ResourceRecord")
            if record is None:
                continue
            base = option["DomainName"].removeprefix("*.").rstrip(".").lower()
            record["Name"], record["Value"] = validation_record(account, base)
        return result

    describe.sandbox_patched = True  # type: ignore[attr-defined]
    CertBundle.describe = describe


def validation_record(account: str, domain: str) -> tuple[str, str]:
    """The CNAME name and value ACM asks `account` to publish to validate `domain`."""
    token = hashlib.sha256(f"{account}|{domain}".encode()).hexdigest()
    return f"_{token[:32]}.{domain}.", f"_{token[32:64]}.sandbox.acm-validations.aws."


def disable_moto_auto_issue() -> None:
    import moto.settings

    moto.settings.ACM_VALIDATION_WAIT = 10**9


@dataclass(frozen=True)
class Validated:
    """When every validation record of a certificate was first seen to resolve, and the
    hosted zones that served them then."""

    since: float
    zone_ids: frozenset[str]


class AcmSimulator(Reconciler):
    name = "acm simulator"

    def __init__(
        self,
        view: DnsView,
        acm_clients: dict[str, Any],
        account: str,
        delay: float,
        interval: float = 0.25,
    ) -> None:
        self.view = view
        self.clients = acm_clients  # region -> boto3 ACM client
        self.account = account
        self.delay = delay
        self.interval = interval
        self._validated_at: dict[str, Validated] = {}

    def tick(self) -> None:
        zones = None
        for region, client in self.clients.items():
            if not self._any_pending(region):
                continue
            pending = client.list_certificates(CertificateStatuses=["PENDING_VALIDATION"])
            for summary in pending.get("CertificateSummaryList", []):
                arn = summary["CertificateArn"]
                cert = client.describe_certificate(CertificateArn=arn)["Certificate"]
                if cert.get("Type") != "AMAZON_ISSUED":
                    continue
                zones = zones if zones is not None else self.view.zones()
                if not self._resolvable(zones, cert):
                    self._validated_at.pop(arn, None)
                    continue
                if arn not in self._validated_at:
                    self._validated_at[arn] = Validated(time.monotonic(), _serving(zones, cert))
                if time.monotonic() - self._validated_at[arn].since >= self.delay:
                    self._issue(region, arn)

    def _any_pending(self, region: str) -> bool:
        """Whether the region holds a certificate waiting for validation, asked of moto in
        this process: a tick over HTTP every quarter second was most of an idle world's
        CPU, and the world's CPU is its tests' (many worlds share two CPUs in CI)."""
        from moto.acm.models import acm_backends

        backend = acm_backends[self.account][region]
        return any(True for _ in backend.list_certificates(["PENDING_VALIDATION"], {}))

    def _resolvable(self, zones: Any, cert: dict[str, Any]) -> bool:
        options = cert.get("DomainValidationOptions", [])
        for option in options:
            record = option.get("ResourceRecord")
            if record is None:
                return False
            answer = resolve(
                zones, record["Name"].rstrip(".").lower(), "CNAME", self.view.alias_address
            )
            wanted = record["Value"].rstrip(".").lower()
            if not any(
                rtype == "CNAME" and value == wanted for _, rtype, _, value in answer.records
            ):
                return False
        return bool(options)

    def _issue(self, region: str, arn: str) -> None:
        from moto.acm.models import acm_backends

        acm_backends[self.account][region].get_certificate(arn).status = "ISSUED"
        validated = self._validated_at.pop(arn)
        changes = in_sync_changes(self.account, set(validated.zone_ids), validated.since)
        after = [events.event_id("route53.change", change) for change in changes]
        events.record("acm.issued", arn, validated.since, time.monotonic(), after)


def _serving(zones: list[Zone], cert: dict[str, Any]) -> frozenset[str]:
    """The zones a name server walk for the certificate's validation records goes through:
    every zone whose name contains one of them."""
    names = [
        option["ResourceRecord"]["Name"].rstrip(".").lower()
        for option in cert.get("DomainValidationOptions", [])
        if option.get("ResourceRecord")
    ]
    return frozenset(zone.id for zone in zones if any(within(n, zone.name) for n in names))
