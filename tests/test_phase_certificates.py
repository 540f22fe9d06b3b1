"""certificates and certificates_issued in process against moto's ACM and Route 53.

moto never validates a certificate through DNS (it says ISSUED a minute after the request,
whatever DNS holds): here `Kit.acm_status` sets what ACM says. Not here (end to end,
against the sandbox world, whose ACM issues only once the validation CNAME resolves through
the delegation): issuance itself, ACM publishing the validation records late, and a
request whose answer was lost (the crash sweep). The root-zone validation record another
certificate shares is in test_shared.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from phasekit import CONFIG, Kit, phase_kit

from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.ownership import OWNER_TAG, STATE_TAG
from orchestrator.states.certificates import CertificatesPhase
from orchestrator.states.certificates_issued import CertificatesIssuedPhase

SUB = CONFIG.subdomain
PURPOSE_TAG = "orchestrator:certificate"


def new_zone(kit: Kit, name: str) -> str:
    zone = kit.client("route53").create_hosted_zone(Name=name, CallerReference=f"zone-{name}")
    return zone["HostedZone"]["Id"].removeprefix("/hostedzone/")


def certificates_kit(kit: Kit) -> str:
    zone = new_zone(kit, SUB)
    kit.done("hosted_zone", zone_id=zone, name_servers=["ns-1.awsdns-01.org"])
    return zone


def requested(kit: Kit) -> Any:
    """The certificates phase's context once its enter has requested the certificate."""
    ctx = kit.ctx("certificates")
    CertificatesPhase().enter(ctx)
    return ctx


def certificates(kit: Kit) -> dict[str, str]:
    """ARN -> domain of every certificate in the account and region."""
    found = kit.client("acm").list_certificates()["CertificateSummaryList"]
    return {c["CertificateArn"]: c["DomainName"] for c in found}


def cert_tags(kit: Kit, arn: str) -> dict[str, str]:
    tags = kit.client("acm").list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
    return {t["Key"]: t.get("Value", "") for t in tags}


def validation_record(kit: Kit, arn: str) -> dict[str, str]:
    cert = kit.client("acm").describe_certificate(CertificateArn=arn)["Certificate"]
    return cert["DomainValidationOptions"][0]["ResourceRecord"]


def cnames(kit: Kit, zone: str) -> dict[str, list[str]]:
    found = kit.client("route53").list_resource_record_sets(HostedZoneId=zone)
    return {
        r["Name"]: [v["Value"] for v in r["ResourceRecords"]]
        for r in found["ResourceRecordSets"]
        if r["Type"] == "CNAME"
    }


def delete_validation_record(kit: Kit, zone: str) -> dict[str, Any]:
    """The zone's one validation CNAME, deleted by hand behind the phase's back."""
    route53 = kit.client("route53")
    found = route53.list_resource_record_sets(HostedZoneId=zone)
    (record,) = [r for r in found["ResourceRecordSets"] if r["Type"] == "CNAME"]
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": record}]},
    )
    return record


def tokens(activity: Any) -> list[str]:
    return [c.params["IdempotencyToken"] for c in activity.calls("RequestCertificate")]


# ---- certificates -------------------------------------------------------------------------------


def test_certificates_are_requested_tagged_with_validation_records_once(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = certificates_kit(kit)
        ctx = kit.ctx("certificates")
        with kit.watching() as entering:
            CertificatesPhase().enter(ctx)
        (arn,) = certificates(kit)
        assert certificates(kit)[arn] == f"*.{SUB}"
        (token,) = tokens(entering)
        assert token
        tags = cert_tags(kit, arn)
        assert tags[OWNER_TAG] == kit.owner.deployment and tags[STATE_TAG] == kit.owner.identity
        assert tags[PURPOSE_TAG] == "subdomain"
        assert ctx.outputs["certificate_arn"] == arn
        assert ctx.outputs["certificates"] == [
            {"purpose": "subdomain", "domain": f"*.{SUB}", "sans": [], "arn": arn}
        ]
        record = validation_record(kit, arn)
        assert cnames(kit, zone) == {record["Name"]: [record["Value"]]}
        assert CertificatesPhase().verify(ctx) is None

        with kit.watching() as again:
            CertificatesPhase().enter(ctx)
        assert again.aws_writes == []
        assert list(certificates(kit)) == [arn]


def test_certificates_for_sans_and_the_root_wildcard_validate_in_their_zones(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        sub_zone = certificates_kit(kit)
        root_zone = new_zone(kit, "example.com")
        kit.configure(
            root_zone_id=root_zone,
            root_wildcard_certificate=True,
            subject_alternative_names=(f"kubeflow.{SUB}",),
        )
        ctx = requested(kit)
        by_purpose = {c["purpose"]: c["arn"] for c in ctx.outputs["certificates"]}
        assert certificates(kit) == {
            by_purpose["subdomain"]: f"*.{SUB}",
            by_purpose["root"]: "*.example.com",
        }
        sub = kit.client("acm").describe_certificate(CertificateArn=by_purpose["subdomain"])
        assert sorted(sub["Certificate"]["SubjectAlternativeNames"]) == sorted(
            [f"*.{SUB}", f"kubeflow.{SUB}"]
        )
        assert cert_tags(kit, by_purpose["root"])[PURPOSE_TAG] == "root"
        assert [n.rstrip(".").split(".", 1)[1] for n in cnames(kit, root_zone)] == ["example.com"]
        assert sorted(n.rstrip(".").split(".", 1)[1] for n in cnames(kit, sub_zone)) == sorted(
            {SUB, f"kubeflow.{SUB}"}
        )
        assert CertificatesPhase().verify(ctx) is None


@pytest.mark.parametrize("whose", ["untagged", "other state file"])
def test_certificates_not_ours_for_the_same_domain_are_never_used(
    tmp_path: Path, whose: str
) -> None:
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        tags = [] if whose == "untagged" else kit.other_state().tags
        extra = {"Tags": [*tags, {"Key": PURPOSE_TAG, "Value": "subdomain"}]}
        theirs = kit.client("acm").request_certificate(
            DomainName=f"*.{SUB}", ValidationMethod="DNS", **extra
        )["CertificateArn"]
        before = cert_tags(kit, theirs)
        ctx = requested(kit)
        assert ctx.outputs["certificate_arn"] != theirs
        assert len(certificates(kit)) == 2
        CertificatesPhase().rollback(ctx)
        assert list(certificates(kit)) == [theirs]
        assert cert_tags(kit, theirs) == before


def test_certificates_deleted_behind_our_back_are_requested_anew_with_a_new_token(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        ctx = kit.ctx("certificates")
        with kit.watching() as first:
            CertificatesPhase().enter(ctx)
        old = ctx.outputs["certificate_arn"]
        kit.client("acm").delete_certificate(CertificateArn=old)
        assert CertificatesPhase().verify(ctx) == (
            f"certificate for *.{SUB} ({old}) no longer exists"
        )
        with kit.watching() as second:
            CertificatesPhase().enter(ctx)
        new = ctx.outputs["certificate_arn"]
        assert new != old and list(certificates(kit)) == [new]
        assert tokens(second) and set(tokens(second)).isdisjoint(tokens(first))
        assert CertificatesPhase().verify(ctx) is None


@pytest.mark.parametrize("status", ["FAILED", "VALIDATION_TIMED_OUT", "REVOKED", "EXPIRED"])
def test_certificates_that_are_dead_are_replaced(tmp_path: Path, status: str) -> None:
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        ctx = kit.ctx("certificates")
        with kit.watching() as first:
            CertificatesPhase().enter(ctx)
        old = ctx.outputs["certificate_arn"]
        kit.acm_status(old, status)
        assert CertificatesPhase().verify(ctx) == f"certificate for *.{SUB} is {status}"
        with kit.watching() as second:
            CertificatesPhase().enter(ctx)
        new = ctx.outputs["certificate_arn"]
        assert list(certificates(kit)) == [new] and new != old
        assert set(tokens(second)).isdisjoint(tokens(first))
        assert f"certificate {old} for *.{SUB} is {status}; replacing it" in kit.said()


def test_certificates_validation_record_deleted_behind_our_back_is_written_again(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        zone = certificates_kit(kit)
        ctx = requested(kit)
        record = delete_validation_record(kit, zone)
        problem = CertificatesPhase().verify(ctx)
        assert problem is not None
        assert problem.startswith("validation record ") and problem.endswith(" is gone")
        CertificatesPhase().enter(ctx)
        assert list(cnames(kit, zone)) == [record["Name"]]
        assert CertificatesPhase().verify(ctx) is None


def test_certificates_rollback_deletes_the_certificate_and_its_validation_record(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        zone = certificates_kit(kit)
        ctx = requested(kit)
        CertificatesPhase().rollback(ctx)
        assert certificates(kit) == {} and cnames(kit, zone) == {}
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_certificates_rollback_of_what_is_already_gone_is_fine(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = certificates_kit(kit)
        ctx = requested(kit)
        kit.client("acm").delete_certificate(CertificateArn=ctx.outputs["certificate_arn"])
        delete_validation_record(kit, zone)
        with kit.watching() as rolling_back:
            CertificatesPhase().rollback(ctx)
        assert rolling_back.aws_writes == []
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_certificates_rollback_waits_while_a_load_balancer_uses_the_certificate(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        ctx = requested(kit)
        arn = ctx.outputs["certificate_arn"]
        user = "arn:aws:elasticloadbalancing:us-west-2:123456789012:loadbalancer/app/x/1"
        kit.certificate_used_by(arn, user)
        with pytest.raises(StillWaiting) as waiting:
            CertificatesPhase().rollback(ctx)
        assert "to be unused" in waiting.value.waiting_for
        assert f"in use by {user}" in kit.said()
        assert list(certificates(kit)) == [arn]
        kit.certificate_used_by(arn)
        CertificatesPhase().rollback(ctx)  # resumed
        assert certificates(kit) == {}


def test_certificates_rollback_leaves_a_certificate_of_another_team_put_into_the_state(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        theirs = kit.client("acm").request_certificate(
            DomainName=f"*.{SUB}", ValidationMethod="DNS", Tags=[{"Key": "team", "Value": "data"}]
        )["CertificateArn"]
        ctx = kit.ctx("certificates")
        ctx.confirm(ctx.intend("acm:certificate", theirs, "a state file edited by hand"))
        CertificatesPhase().rollback(ctx)
        assert list(certificates(kit)) == [theirs]
        (kept,) = ctx.record.kept
        assert kept["id"] == theirs
        assert f"left acm:certificate {theirs} in place" in kit.said()


# ---- certificates_issued ------------------------------------------------------------------------


def issued_kit(kit: Kit, domains: tuple[str, ...] = (f"*.{SUB}",)) -> list[str]:
    arns = [
        kit.client("acm").request_certificate(DomainName=d, ValidationMethod="DNS")[
            "CertificateArn"
        ]
        for d in domains
    ]
    kit.done(
        "certificates",
        certificates=[{"domain": d, "arn": a} for d, a in zip(domains, arns, strict=True)],
        certificate_arn=arns[0],
    )
    return arns


def test_certificates_issued_goes_on_once_every_certificate_is_issued(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        arns = issued_kit(kit, (f"*.{SUB}", "*.example.com"))
        for arn in arns:
            kit.acm_status(arn, "ISSUED")
        ctx = kit.ctx("certificates_issued")
        with kit.watching() as entering:
            CertificatesIssuedPhase().enter(ctx)
        assert entering.aws_writes == []
        assert ctx.outputs["issued"] == arns and ctx.outputs["certificate_arn"] == arns[0]
        assert CertificatesIssuedPhase().verify(ctx) is None
        with kit.watching() as rolling_back:
            CertificatesIssuedPhase().rollback(ctx)
        assert rolling_back.aws_writes == [] and list(certificates(kit)) == arns


def test_certificates_issued_waits_resumably_while_one_is_pending(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        issued, pending = issued_kit(kit, (f"*.{SUB}", "*.example.com"))
        kit.acm_status(issued, "ISSUED")
        ctx = kit.ctx("certificates_issued")
        with pytest.raises(StillWaiting) as waiting:
            CertificatesIssuedPhase().enter(ctx)
        assert waiting.value.waiting_for == "ACM to issue 2 certificates (DNS validation)"
        assert "*.example.com is PENDING_VALIDATION" in kit.said()
        assert f"*.{SUB} is" not in kit.said()
        assert "issued" not in ctx.outputs
        kit.acm_status(pending, "ISSUED")
        CertificatesIssuedPhase().enter(ctx)
        assert ctx.outputs["issued"] == [issued, pending]


@pytest.mark.parametrize(
    "status, reason, explained",
    [
        ("FAILED", "CAA_ERROR", 'add `0 issue "amazon.com"` to the CAA records'),
        ("FAILED", "DOMAIN_NOT_ALLOWED", "ACM may not issue certificates for this domain"),
        ("FAILED", "OTHER", "OTHER"),
        ("FAILED", None, "no reason given"),
        ("VALIDATION_TIMED_OUT", None, "check that the subdomain's delegation resolves"),
        ("REVOKED", None, "no reason given"),
    ],
)
def test_certificates_issued_fails_fast_on_a_dead_certificate_with_the_reason(
    tmp_path: Path, status: str, reason: str | None, explained: str
) -> None:
    with phase_kit(tmp_path) as kit:
        (arn,) = issued_kit(kit)
        kit.acm_status(arn, status, reason)
        with pytest.raises(PhaseError) as failed:
            CertificatesIssuedPhase().enter(kit.ctx("certificates_issued"))
        assert failed.value.message.startswith(f"certificate for *.{SUB} ({arn}) is {status}: ")
        assert explained in failed.value.message
        assert "the certificates phase will replace the certificate" in failed.value.hint


def test_certificates_issued_verify_notices_a_replaced_or_revoked_certificate(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        (arn,) = issued_kit(kit)
        kit.acm_status(arn, "ISSUED")
        ctx = kit.ctx("certificates_issued")
        CertificatesIssuedPhase().enter(ctx)
        kit.acm_status(arn, "REVOKED")
        assert CertificatesIssuedPhase().verify(ctx) == f"certificate {arn} is REVOKED"
        issued_kit(kit)  # the certificates phase made another one since
        assert CertificatesIssuedPhase().verify(ctx) == (
            "the certificates were replaced since they were issued"
        )
