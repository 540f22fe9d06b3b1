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
from functools import partial
from typing import Any

from orchestrator.aws import AwsClient, AwsError, tolerate
from orchestrator.builders import records
from orchestrator.builders.acm import DEAD_STATUSES
from orchestrator.builders.records import plain
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG, tag_map
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, DELETE, LEAVE, USE, Change, Undo
from orchestrator.store import Resource

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
            live, dead = self._look(ctx, want)
            for found in dead:
                arn, status = found["CertificateArn"], found["Status"]
                changes.append(Change(DELETE, f"ACM certificate {arn}", f"{status}: replaced"))
            if live is None:
                changes.append(Change(CREATE, f"ACM certificate for {names}", "DNS validation"))
                # ACM names one validation record per domain for the account: a replacement
                # validates with the records of the certificate it replaces.
                known = self._plan_validation(ctx, dead[-1]) if dead else []
                unknown = Change(CREATE, f"its DNS validation records for {names}", "named by ACM")
                changes += known or [unknown]
                continue
            changes.append(Change(USE, f"ACM certificate {live['CertificateArn']}", names))
            changes += self._plan_validation(ctx, live)
        return changes

    def _plan_validation(self, ctx: PhaseContext, certificate: dict[str, Any]) -> list[Change]:
        changes = []
        sub_zone = ctx.earlier("hosted_zone").get("zone_id")
        for option in certificate.get("DomainValidationOptions", []):
            rr = option.get("ResourceRecord")
            if rr:
                zone = validation_zone(ctx.config, sub_zone, rr["Name"]) if sub_zone else None
                wanted = records.record_set(rr["Name"], rr["Type"], [rr["Value"]], VALIDATION_TTL)
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
        live, dead = self._look(ctx, want)
        for found in dead:
            arn, status = found["CertificateArn"], found["Status"]
            ctx.say(f"certificate {arn} for {want['domain']} is {status}; replacing it")
            delete_certificate(ctx, arn)
            replaced = arn
        if live is not None:
            arn = live["CertificateArn"]
            pending = ctx.find(KIND, f"pending:{want['purpose']}")
            claim(ctx, KIND, arn, pending, domain=want["domain"], purpose=want["purpose"])
            return str(arn)
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

    def _look(
        self, ctx: PhaseContext, want: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
        """What plan shows and enter does for `want`: our first live certificate (None if
        there is none: one is requested), and the dead ones before it (deleted, to be
        replaced), as ACM describes them."""
        dead: list[dict[str, Any]] = []
        for arn in self._ours(ctx, want):
            found = ctx.aws.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            if found["Status"] not in DEAD_STATUSES:
                return found, dead
            dead.append(found)
        return None, dead

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

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        return marked_certificates(ctx, [z.id for z in search.of_kind(records.ZONE_KIND)])

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: the validation
        records, then the certificates, each deleted or left (and why)."""
        own_zone = ctx.earlier("hosted_zone").get("zone_id")
        undos = []
        for resource in ctx.owned(records.KIND):
            shared = resource.detail["zone"] != own_zone and self._shared(ctx, resource)
            if shared:
                undos.append(Undo(resource, LEAVE, shared, partial(ctx.keep, resource, shared)))
            else:
                undos.append(records.record_undo(ctx, resource))
        for resource in ctx.owned(KIND):
            tags = (
                None
                if resource.id.startswith("pending:")
                else tolerate(_tags, *GONE, ctx=ctx, arn=resource.id)
            )
            if tags is not None and not ctx.owner.owns_tags(tags):
                why = "its tags say it is not this state file's"
                undos.append(Undo(resource, LEAVE, why, partial(ctx.keep, resource, why)))
            else:
                undos.append(Undo(resource, DELETE, "", partial(self._delete, ctx, resource)))
        return undos

    def _shared(self, ctx: PhaseContext, resource: Resource) -> str | None:
        """Why a validation record we wrote in another zone stays (None if it goes):
        certificates not ours validate with it, or regions that may hold some are unread."""
        return certificates_sharing(ctx, resource.detail["rrset"]["Name"]).reason()

    def _delete(self, ctx: PhaseContext, resource: Resource) -> None:
        if resource.id.startswith("pending:"):
            purpose = resource.id.removeprefix("pending:")
            for want in wanted_certificates(ctx.config):
                if want["purpose"] == purpose:
                    for arn in self._ours(ctx, want):
                        wait_unused_then_delete(ctx, arn)
        elif not wait_unused_then_delete(ctx, resource.id):  # its tags changed since
            ctx.keep(resource, "its tags say it is not this state file's")
            return
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


# ---- marks: what carries the deployment's tags (import, the sweep) ----------------------------


def marked_certificates(ctx: PhaseContext, zones: list[str]) -> list[Found]:
    """Our certificates, and their validation records where they are (one of our zones,
    or the root zone)."""
    acm = ctx.aws.acm
    domains = {want["domain"] for want in wanted_certificates(ctx.config)}
    found = []
    for listed in list_certificates(acm, ALL_STATUSES):
        if listed["DomainName"] not in domains:
            continue  # only ours can be ours: no tag reads for the account's other certificates
        arn = listed["CertificateArn"]
        tags = tag_map(acm.list_tags_for_certificate(CertificateArn=arn).get("Tags", []))
        if tags.get(OWNER_TAG) != ctx.deployment:
            continue
        identity = tags.get(STATE_TAG)
        detail = {"domain": listed["DomainName"], "purpose": tags.get(PURPOSE_TAG)}
        found.append(Found("certificates", KIND, arn, identity, detail))
        certificate = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        for option in certificate.get("DomainValidationOptions", []):
            record = option.get("ResourceRecord")
            if record is not None:
                found += _marked_validation(ctx, zones, record, identity)
    return _unique(found)


def _marked_validation(
    ctx: PhaseContext, zones: list[str], record: dict[str, str], identity: str | None
) -> list[Found]:
    """A certificate's validation record, in the first of the zones that holds it."""
    for zone_id in [*zones, ctx.config.root_zone_id]:
        if zone_id is None:
            continue
        live = records.get_record(ctx, zone_id, record["Name"], record["Type"])
        if live is None or records.values_of(live) != [plain(record["Value"])]:
            continue
        try:
            validation_zone(ctx.config, zone_id, record["Name"])
        except Exception:  # noqa: BLE001 - a name outside our zones: not ours
            continue
        return [records.found("certificates", zone_id, live, identity)]
    return []


def _unique(found: list[Found]) -> list[Found]:
    """One find per (kind, id): certificates of one domain share their validation record."""
    seen: dict[tuple[str, str], Found] = {}
    for item in found:
        seen.setdefault((item.kind, item.id), item)
    return list(seen.values())
