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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

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


# The key algorithms ACM knows, as its API names them; RequestCertificate accepts three, and
# ListCertificates lists only RSA_1024 and RSA_2048 certificates unless its
# `Includes.keyTypes` names others (ACM API reference: RequestCertificate, Filters).
KEY_ALGORITHMS = (
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
)
REQUESTABLE = ("RSA_2048", "EC_prime256v1", "EC_secp384r1")
LISTED_BY_DEFAULT = ["RSA_1024", "RSA_2048"]
_CURVES = {"EC_prime256v1": "SECP256R1", "EC_secp384r1": "SECP384R1", "EC_secp521r1": "SECP521R1"}


def use_key_algorithms() -> None:
    """Keep the key algorithm a certificate is requested with, and list as ACM lists.

    moto makes every requested certificate RSA_2048 whatever `KeyAlgorithm` asks, and lists
    every key type when `Includes.keyTypes` is not given; ACM lists only RSA_1024 and
    RSA_2048 then, so a tool that does not ask never sees an ECDSA certificate."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from moto.acm.exceptions import AWSValidationException
    from moto.acm.models import AWSCertificateManagerBackend
    from moto.acm.responses import AWSCertificateManagerResponse

    original_list = AWSCertificateManagerBackend.list_certificates
    if getattr(original_list, "sandbox_patched", False):
        return
    original_request = AWSCertificateManagerResponse.request_certificate

    def list_certificates(self: Any, statuses: list[str], includes: dict[str, Any]) -> Any:
        return original_list(self, statuses, {"keyTypes": LISTED_BY_DEFAULT, **(includes or {})})

    def request_certificate(self: Any) -> Any:
        algorithm = self._get_param("KeyAlgorithm") or "RSA_2048"
        if algorithm not in REQUESTABLE:
            raise AWSValidationException(
                f"Value '{algorithm}' at 'keyAlgorithm' failed to satisfy constraint: "
                f"Member must satisfy enum value set: {list(REQUESTABLE)}"
            )
        result = original_request(self)
        if algorithm in _CURVES:
            # moto tells the algorithm from the private key it holds: give it one of that
            # curve (the certificate itself is never used with it in the sandbox).
            answer = cast(dict[str, str], result.result)
            bundle = self.acm_backend.get_certificate(answer["CertificateArn"])
            bundle._key = ec.generate_private_key(getattr(ec, _CURVES[algorithm])())
        return result

    list_certificates.sandbox_patched = True  # type: ignore[attr-defined]
    AWSCertificateManagerBackend.list_certificates = list_certificates
    AWSCertificateManagerResponse.request_certificate = request_certificate


def refuse_regions_not_enabled() -> None:
    """Answer ACM calls in a region the account has not enabled as AWS does: with
    UnrecognizedClientException, as if the credentials were wrong.

    Which regions are enabled is what the world's EC2 DescribeRegions says (moto's list:
    the regions AWS has launched since March 2019 are `not-opted-in`)."""
    from moto.acm.responses import AWSCertificateManagerResponse
    from moto.core.exceptions import JsonRESTError
    from moto.ec2.models.availability_zones_and_regions import RegionsAndZonesBackend

    original = AWSCertificateManagerResponse._authenticate_and_authorize_normal_action
    if getattr(original, "sandbox_patched", False):
        return
    not_enabled = {
        r.name for r in RegionsAndZonesBackend.regions if r.opt_in_status == "not-opted-in"
    }

    def authenticate(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self.region in not_enabled:
            raise JsonRESTError(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
            )
        return original(self, *args, **kwargs)

    authenticate.sandbox_patched = True  # type: ignore[attr-defined]
    AWSCertificateManagerResponse._authenticate_and_authorize_normal_action = authenticate


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
        make_client: Callable[[str], Any] | None = None,
    ) -> None:
        """`acm_clients`: boto3 ACM clients by region; `make_client(region)` makes one for
        any other region a certificate is requested in (without it, only those are watched)."""
        self.view = view
        self.clients = dict(acm_clients)
        self.make_client = make_client
        self.account = account
        self.delay = delay
        self.interval = interval
        self._validated_at: dict[str, Validated] = {}

    def tick(self) -> None:
        zones = None
        for region in self._pending_regions():
            client = self._client(region)
            if client is None:
                continue
            pending = client.list_certificates(
                CertificateStatuses=["PENDING_VALIDATION"],
                Includes={"keyTypes": list(KEY_ALGORITHMS)},
            )
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

    def _client(self, region: str) -> Any | None:
        if region not in self.clients and self.make_client is not None:
            self.clients[region] = self.make_client(region)
        return self.clients.get(region)

    def _pending_regions(self) -> list[str]:
        """The regions holding a certificate (of any key type) waiting for validation,
        asked of moto in this process: a tick over HTTP every quarter second was most of an
        idle world's CPU, and the world's CPU is its tests' (many worlds share two CPUs in
        CI)."""
        from moto.acm.models import acm_backends

        backends = acm_backends[self.account]
        includes = {"keyTypes": list(KEY_ALGORITHMS)}
        return [
            region
            for region in list(backends.keys())
            if any(
                True for _ in backends[region].list_certificates(["PENDING_VALIDATION"], includes)
            )
        ]

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
