"""certificates: request the ACM certificates and publish their DNS validation records.

It does not wait for issuance (certificates_issued does, later), so ACM validates while
the IAM and controller phases run. Requests carry an IdempotencyToken and ownership
tags, so a retried or crashed request is found again instead of made twice.

ACM uses one validation record per domain and account: every certificate for
`*.example.com` (or `example.com`) in the account, in any region and of any key type,
validates, and renews, with the same CNAME. So rollback keeps a validation record outside
our own zone (the root zone's) while a certificate that is not ours may still use it, and
when a region's certificates cannot be read it keeps the record and says so.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from orchestrator.aws import AwsClient, AwsError, tolerate
from orchestrator.builders import records
from orchestrator.builders.records import plain
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import CREATE, USE, Change

KIND = "acm:certificate"
PURPOSE_TAG = "orchestrator:certificate"
ALL_STATUSES = [
    "PENDING_VALIDATION",
    "ISSUED",
    "INACTIVE",
    "EXPIRED",
    "VALIDATION_TIMED_OUT",
    "REVOKED",
    "FAILED",
]
# What ACM answers for an ARN that names no certificate (any more, or ever).
NOT_FOUND = "ResourceNotFoundException"
GONE = (NOT_FOUND, "InvalidArnException", "ValidationException")
DEAD_STATUSES = ("FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED", "INACTIVE")
VALIDATION_TTL = 300


def wanted_certificates(config: Any) -> list[dict[str, Any]]:
    """The certificates a config asks for: `*.<subdomain>` (+ SANs), optionally `*.<root>`."""
    wanted = [
        {
            "purpose": "subdomain",
            "domain": f"*.{config.subdomain}",
            "sans": list(config.subject_alternative_names),
        }
    ]
    if config.root_wildcard_certificate:
        wanted.append({"purpose": "root", "domain": f"*.{config.root_domain}", "sans": []})
    return wanted


def validation_zone(config: Any, sub_zone: str, record_name: str) -> str:
    """The zone a validation record belongs in: the subdomain's, else the root's."""
    name = plain(record_name)
    if name == config.subdomain or name.endswith("." + config.subdomain):
        return sub_zone
    if config.root_zone_id and name.endswith("." + config.root_domain):
        return config.root_zone_id
    raise PhaseError(
        f"no hosted zone here can hold the validation record {name}",
        "list only names within the subdomain (or the root domain, with its "
        "hostedZoneId) in route53.subDomain.subjectAlternativeNames",
    )


class CertificatesPhase(Phase):
    name = "certificates"
    title = "request ACM certificates and write their DNS validation records"
    inputs = (
        "cluster.region",
        "route53.subDomain.name",
        "route53.rootDomain.name",
        "route53.rootDomain.hostedZoneId",
        "route53.rootDomain.wildcardCertificate",
        "route53.subDomain.subjectAlternativeNames",
    )
    outputs = ("certificates", "certificate_arn")
    reads = ("hosted_zone",)

    def plan(self, ctx: PhaseContext) -> list[Change]:
        changes = []
        for want in wanted_certificates(ctx.config):
            names = " ".join([want["domain"], *want["sans"]])
            live = [
                found["Certificate"]
                for arn in self._ours(ctx, want)
                if (found := ctx.aws.acm.describe_certificate(CertificateArn=arn))
                and found["Certificate"]["Status"] not in DEAD_STATUSES
            ]
            if not live:
                changes.append(Change(CREATE, f"ACM certificate for {names}", "DNS validation"))
                changes.append(
                    Change(CREATE, f"its DNS validation records for {names}", "named by ACM")
                )
                continue
            changes.append(Change(USE, f"ACM certificate {live[0]['CertificateArn']}", names))
            sub_zone = ctx.earlier("hosted_zone").get("zone_id")
            for option in live[0].get("DomainValidationOptions", []):
                rr = option.get("ResourceRecord")
                if rr:
                    zone = validation_zone(ctx.config, sub_zone, rr["Name"]) if sub_zone else None
                    wanted = records.record_set(
                        rr["Name"], rr["Type"], [rr["Value"]], VALIDATION_TTL
                    )
                    changes.append(records.plan_record(ctx, zone, wanted, "ACM DNS validation"))
        return changes

    def enter(self, ctx: PhaseContext) -> None:
        certificates = [
            dict(want, arn=self._certificate(ctx, want)) for want in wanted_certificates(ctx.config)
        ]
        ctx.outputs["certificates"] = certificates
        ctx.outputs["certificate_arn"] = certificates[0]["arn"]
        sub_zone = ctx.earlier("hosted_zone")["zone_id"]
        for rr in self._validation_records(ctx, [c["arn"] for c in certificates]):
            zone = validation_zone(ctx.config, sub_zone, rr["Name"])
            wanted = records.record_set(rr["Name"], rr["Type"], [rr["Value"]], VALIDATION_TTL)
            records.ensure_record(ctx, zone, wanted, "ACM DNS validation")

    # ---- the certificates -------------------------------------------------------------------

    def _certificate(self, ctx: PhaseContext, want: dict[str, Any]) -> str:
        """The ARN of our live certificate for `want`, requesting one if there is none."""
        replaced = ""
        for arn in self._ours(ctx, want):
            status = ctx.aws.acm.describe_certificate(CertificateArn=arn)["Certificate"]["Status"]
            if status not in DEAD_STATUSES:
                pending = ctx.find(KIND, f"pending:{want['purpose']}")
                claim(ctx, KIND, arn, pending, domain=want["domain"], purpose=want["purpose"])
                return arn
            ctx.say(f"certificate {arn} for {want['domain']} is {status}; replacing it")
            delete_certificate(ctx, arn)
            replaced = arn
        # A request whose answer was never seen is retried with its own token (ACM then
        # answers with that certificate); any other request gets a new one, recorded with
        # the intent before the call, so a certificate deleted by hand is requested anew.
        pending = ctx.find(KIND, f"pending:{want['purpose']}")
        token = (pending.detail.get("token") if pending else None) or secrets.token_hex(16)
        if replaced:
            ctx.say(f"requesting a new certificate for {want['domain']} in place of {replaced}")
        request: dict[str, Any] = {
            "DomainName": want["domain"],
            "ValidationMethod": "DNS",
            "IdempotencyToken": token,
            "Tags": [*ctx.owner_tags, {"Key": PURPOSE_TAG, "Value": want["purpose"]}],
        }
        if want["sans"]:
            request["SubjectAlternativeNames"] = [want["domain"], *want["sans"]]
        with creating(
            ctx,
            KIND,
            f"pending:{want['purpose']}",
            f"request certificate {want['domain']}",
            purpose=want["purpose"],
            token=token,
        ) as made:
            arn = str(ctx.aws.acm.request_certificate(**request)["CertificateArn"])
            made.confirm(id=arn, domain=want["domain"])
        return arn

    def _ours(self, ctx: PhaseContext, want: dict[str, Any]) -> list[str]:
        """ARNs of certificates tagged as this deployment's for this purpose."""
        return [
            arn
            for arn in certificates_for(ctx, want["domain"])
            if _tags(ctx, arn).get(PURPOSE_TAG) == want["purpose"]
        ]

    def _validation_records(self, ctx: PhaseContext, arns: list[str]) -> list[dict[str, str]]:
        """The validation CNAMEs, once ACM has published them (seconds after a request)."""

        def published() -> list[dict[str, str]] | None:
            found: dict[str, dict[str, str]] = {}
            for arn in arns:
                cert = ctx.aws.acm.describe_certificate(CertificateArn=arn)["Certificate"]
                for option in cert.get("DomainValidationOptions", []):
                    record = option.get("ResourceRecord")
                    if record is None:
                        return None
                    found[plain(record["Name"])] = record
            return list(found.values())

        return ctx.wait_until("ACM to publish the DNS validation records", published, limit=300)

    # ---- verify and rollback ----------------------------------------------------------------

    def verify(self, ctx: PhaseContext) -> str | None:
        for cert in ctx.outputs["certificates"]:
            found = tolerate(
                ctx.aws.acm.describe_certificate, NOT_FOUND, CertificateArn=cert["arn"]
            )
            if found is None:
                return f"certificate for {cert['domain']} ({cert['arn']}) no longer exists"
            status = found["Certificate"]["Status"]
            if status in DEAD_STATUSES:
                return f"certificate for {cert['domain']} is {status}"
        for resource in ctx.resources(records.KIND):
            problem = records.record_problem(ctx, resource)
            if problem:
                return f"validation record {problem}"
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        own_zone = ctx.earlier("hosted_zone").get("zone_id")
        for resource in ctx.owned(records.KIND):
            if resource.detail["zone"] != own_zone:
                reason = certificates_sharing(ctx, resource.detail["rrset"]["Name"]).reason()
                if reason:
                    ctx.keep(resource, reason)
                    continue
            records.delete_record(ctx, resource)
        for resource in ctx.owned(KIND):
            if resource.id.startswith("pending:"):
                purpose = resource.id.removeprefix("pending:")
                for want in wanted_certificates(ctx.config):
                    if want["purpose"] == purpose:
                        for arn in self._ours(ctx, want):
                            wait_unused_then_delete(ctx, arn)
            elif not wait_unused_then_delete(ctx, resource.id):
                ctx.keep(resource, "its tags say it is not this state file's")
                continue
            ctx.deleted(resource)


# A certificate needs its validation record to be issued, and later to renew.
USING_STATUSES = ["PENDING_VALIDATION", "ISSUED"]
# Every key type ACM has. ListCertificates lists only RSA_1024 and RSA_2048 certificates
# unless `Includes.keyTypes` names others (ACM API reference, Filters), and an ECDSA
# certificate is as much ours, or as much another team's, as an RSA one.
KEY_TYPES = [
    "RSA_1024",
    "RSA_2048",
    "RSA_3072",
    "RSA_4096",
    "EC_prime256v1",
    "EC_secp384r1",
    "EC_secp521r1",
]
# How a region the account has enabled is described by EC2 DescribeRegions.
ENABLED = ("opt-in-not-required", "opted-in")
# What EC2 answers an identity that may not call DescribeRegions.
DENIED = ("UnauthorizedOperation", "AccessDenied")
# Regions read side by side when looking for certificates that share a validation record:
# one after another, the partition's thirty take seconds.
READERS = 8


def list_certificates(acm: AwsClient, statuses: list[str]) -> Iterator[dict[str, Any]]:
    """The summaries of a region's certificates in `statuses`, of every key type."""
    return acm.pages(
        "list_certificates",
        "CertificateSummaryList",
        CertificateStatuses=statuses,
        Includes={"keyTypes": KEY_TYPES},
    )


@dataclass(frozen=True)
class Sharing:
    """Who else may validate with a record: certificates not of this deployment that do
    (ARNs), and the regions whose certificates could not be read (region -> AWS's code)."""

    users: list[str]
    unread: dict[str, str]

    def reason(self) -> str | None:
        """Why the record must stay, if it must."""
        if self.users:
            return (
                f"certificates not of this deployment validate with it too: {', '.join(self.users)}"
            )
        if self.unread:
            regions = ", ".join(f"{r} ({code})" for r, code in sorted(self.unread.items()))
            return (
                "certificates not of this deployment may validate with it: the certificates "
                f"of {regions} could not be read; delete it by hand once none does"
            )
        return None


def certificates_sharing(ctx: PhaseContext, record_name: str) -> Sharing:
    """The certificates not of this deployment that validate with this record.

    ACM gives an account one validation record per domain, in every region and for every
    key type: any certificate of the account for the domain, in any region, may use it."""
    regions = sharing_regions(ctx)
    with ThreadPoolExecutor(max_workers=min(READERS, len(regions))) as pool:
        reads = {r: pool.submit(_sharing_in, ctx, r, record_name) for r in regions}
    users: list[str] = []
    unread: dict[str, str] = {}
    for region, read in reads.items():
        try:
            users += read.result()
        except AwsError as exc:
            unread[region] = exc.code
    return Sharing(users, unread)


def sharing_regions(ctx: PhaseContext) -> list[str]:
    """The regions of the cluster's partition that offer ACM (botocore's endpoint data) and
    that the account has enabled. An opt-in region it has not enabled holds no certificate
    it can use, and refuses every call as if the credentials were wrong. If EC2 may not be
    asked which regions are enabled, all of them: one that refuses leaves the record."""
    offered = ctx.aws.service_regions("acm")
    answer = tolerate(ctx.aws.ec2.describe_regions, *DENIED)
    if answer is not None:
        enabled = {
            r["RegionName"]
            for r in answer.get("Regions", [])
            if r.get("OptInStatus", ENABLED[0]) in ENABLED
        }
        offered = [region for region in offered if region in enabled]
    return list(dict.fromkeys([ctx.config.region, *offered]))


def _sharing_in(ctx: PhaseContext, region: str, record_name: str) -> list[str]:
    """ARNs of certificates in `region`, not of this deployment, that use this record."""
    acm = ctx.aws.client("acm", region)
    base = plain(record_name).split(".", 1)[-1]  # _<token>.<domain> -> <domain>
    found = []
    for summary in list_certificates(acm, USING_STATUSES):
        names = [summary["DomainName"], *summary.get("SubjectAlternativeNameSummaries", [])]
        listed = base in {n.removeprefix("*.") for n in names}
        if not listed and not summary.get("HasAdditionalSubjectAlternativeNames"):
            continue  # no tag or describe calls for the account's other certificates
        arn = summary["CertificateArn"]
        # A certificate deleted since the list uses nothing.
        tags = tolerate(acm.list_tags_for_certificate, *GONE, CertificateArn=arn)
        if tags is None or ctx.owner.owns_tags(tags.get("Tags", [])):
            continue
        described = tolerate(acm.describe_certificate, *GONE, CertificateArn=arn)
        if described and _validates_with(described["Certificate"], record_name):
            found.append(arn)
    return found


def _validates_with(cert: dict[str, Any], record_name: str) -> bool:
    options = cert.get("DomainValidationOptions", [])
    names = {plain((o.get("ResourceRecord") or {}).get("Name", "")) for o in options}
    return plain(record_name) in names


def certificates_for(ctx: PhaseContext, domain: str) -> list[str]:
    """ARNs of this state file's certificates (by their tags) whose domain is `domain`."""
    summaries = list_certificates(ctx.aws.acm, ALL_STATUSES)
    return [
        s["CertificateArn"]
        for s in summaries
        if s["DomainName"] == domain and ctx.owner.owns_tags(_tags(ctx, s["CertificateArn"]))
    ]


def _tags(ctx: PhaseContext, arn: str) -> dict[str, str]:
    tags = ctx.aws.acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
    return {t["Key"]: t.get("Value", "") for t in tags}


def delete_certificate(ctx: PhaseContext, arn: str) -> None:
    tolerate(ctx.aws.acm.delete_certificate, NOT_FOUND, CertificateArn=arn)


def wait_unused_then_delete(ctx: PhaseContext, arn: str) -> bool:
    """Delete one of our certificates once no load balancer uses it any more. False, and
    nothing deleted, if its tags say it is not this state file's."""
    tags = tolerate(_tags, *GONE, ctx=ctx, arn=arn)
    if tags is None:
        return True  # no such certificate (any more): nothing to delete
    if not ctx.owner.owns_tags(tags):
        return False

    def deleted() -> bool | None:
        found = tolerate(ctx.aws.acm.describe_certificate, *GONE, CertificateArn=arn)
        if found is None:
            return True
        users = found["Certificate"].get("InUseBy")
        if users:
            ctx.note(f"in use by {', '.join(users)}")
            return None
        try:
            tolerate(ctx.aws.acm.delete_certificate, *GONE, CertificateArn=arn)
        except AwsError as exc:
            if exc.code == "ResourceInUseException":
                return None  # a load balancer took it up since: wait on
            raise
        return True

    ctx.wait_until(
        f"certificate {arn.rsplit('/', 1)[-1]} to be unused, to delete it", deleted, limit=900
    )
    return True
