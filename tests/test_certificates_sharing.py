"""The root-zone validation record a rollback leaves while another certificate of the
account may use it: ACM gives one record per domain and account, in every region and for
every key type. In process, against moto with the sandbox's ACM rules (ListCertificates
lists RSA only unless asked, key algorithms kept, regions not enabled refuse the caller)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.client
import pytest
from botocore.exceptions import ClientError
from phasekit import Kit, phase_kit

from orchestrator.aws import Aws
from orchestrator.builders.records import plain
from orchestrator.phase import PhaseContext
from orchestrator.states.certificates import CertificatesPhase, certificates_for
from orchestrator_sandbox.acm import (
    refuse_regions_not_enabled,
    use_distinct_validation_records,
    use_key_algorithms,
)

ROOT = "example.com"


@pytest.fixture
def kit(tmp_path: Path) -> Iterator[Kit]:
    use_distinct_validation_records()
    use_key_algorithms()
    refuse_regions_not_enabled()
    with phase_kit(tmp_path) as kit:
        route53 = kit.client("route53")
        sub = route53.create_hosted_zone(Name="platform.example.com", CallerReference="sub")
        root = route53.create_hosted_zone(Name=ROOT, CallerReference="root")
        kit.done("hosted_zone", zone_id=sub["HostedZone"]["Id"].split("/")[-1])
        kit.configure(
            root_zone_id=root["HostedZone"]["Id"].split("/")[-1], root_wildcard_certificate=True
        )
        yield kit


def root_cnames(kit: Kit) -> list[str]:
    found = kit.client("route53").list_resource_record_sets(
        HostedZoneId=kit.engine.config.root_zone_id
    )
    return [plain(r["Name"]) for r in found["ResourceRecordSets"] if r["Type"] == "CNAME"]


def other_team_certificate(region: str, **extra: Any) -> str:
    acm = boto3.client("acm", region_name=region)
    request = {"DomainName": f"*.{ROOT}", "ValidationMethod": "DNS", **extra}
    return str(acm.request_certificate(**request)["CertificateArn"])


def answering(monkeypatch: pytest.MonkeyPatch, change: Any) -> None:
    """Make `change(client, operation, params, call)` answer every AWS call of the kit."""
    make_api_call = botocore.client.BaseClient._make_api_call

    def call(client: Any, operation: str, params: dict[str, Any]) -> Any:
        return change(client, operation, params, lambda: make_api_call(client, operation, params))

    monkeypatch.setattr(botocore.client.BaseClient, "_make_api_call", call)


def deployed(kit: Kit) -> tuple[PhaseContext, str]:
    """Our certificates requested and their records written: ours in the root zone too."""
    ctx = kit.ctx("certificates")
    CertificatesPhase().enter(ctx)
    (record,) = root_cnames(kit)
    return ctx, record


@pytest.mark.parametrize(
    ("region", "extra"),
    [("us-west-2", {"KeyAlgorithm": "EC_prime256v1"}), ("eu-west-1", {})],
    ids=["ecdsa-same-region", "rsa-other-region"],
)
def test_a_root_validation_record_another_teams_certificate_uses_is_kept(
    kit: Kit, region: str, extra: dict[str, Any]
) -> None:
    ctx, record = deployed(kit)
    theirs = other_team_certificate(region, **extra)
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == [record]
    (kept,) = ctx.record.kept
    assert theirs in kept["reason"]
    assert theirs in kit.said()


def test_a_root_validation_record_no_other_certificate_uses_is_deleted(kit: Kit) -> None:
    """Though the regions the account has not enabled refuse every call: they hold none."""
    ctx, _ = deployed(kit)
    other_team_certificate("eu-west-1", KeyAlgorithm="EC_prime256v1", DomainName="other.org")
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == []
    assert ctx.record.kept == []


def test_a_region_that_cannot_be_read_keeps_the_record_and_says_why(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, record = deployed(kit)

    def denied_in_ireland(client: Any, operation: str, params: dict[str, Any], call: Any) -> Any:
        if client.meta.region_name == "eu-west-1" and operation == "ListCertificates":
            error = {"Code": "AccessDeniedException", "Message": "explicit deny"}
            raise ClientError({"Error": error}, operation)
        return call()

    answering(monkeypatch, denied_in_ireland)
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == [record]
    (kept,) = ctx.record.kept
    assert "eu-west-1" in kept["reason"] and "AccessDeniedException" in kept["reason"]


def test_our_certificates_are_found_whatever_their_key_type(kit: Kit) -> None:
    ctx = kit.ctx("certificates")
    ours = other_team_certificate("us-west-2", KeyAlgorithm="EC_secp384r1", Tags=ctx.owner_tags)
    assert certificates_for(ctx, f"*.{ROOT}") == [ours]


def test_a_certificate_deleted_between_the_list_and_its_reads_uses_nothing(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    ctx, _ = deployed(kit)
    theirs = other_team_certificate("eu-west-1")

    def deleted_once_listed(client: Any, operation: str, params: dict[str, Any], call: Any) -> Any:
        if params.get("CertificateArn") == theirs and operation != "DeleteCertificate":
            client.delete_certificate(CertificateArn=theirs)
        return call()

    answering(monkeypatch, deleted_once_listed)
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == []
    assert ctx.record.kept == []


def test_a_certificate_whose_list_entry_omits_some_names_is_read_whole(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ListCertificates names only some of a certificate's SANs (it says when it has more):
    such a certificate may validate with the record, so it is described."""
    ctx, record = deployed(kit)
    theirs = other_team_certificate(
        "eu-west-1", DomainName="shop.example.org", SubjectAlternativeNames=[f"*.{ROOT}"]
    )

    def names_cut_short(client: Any, operation: str, params: dict[str, Any], call: Any) -> Any:
        answer = call()
        for summary in answer.get("CertificateSummaryList", []):
            if summary["CertificateArn"] == theirs:
                summary["SubjectAlternativeNameSummaries"] = ["shop.example.org"]
                summary["HasAdditionalSubjectAlternativeNames"] = True
        return answer

    answering(monkeypatch, names_cut_short)
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == [record]
    (kept,) = ctx.record.kept
    assert theirs in kept["reason"]


def test_without_leave_to_ask_which_regions_are_enabled_every_region_is_read(
    kit: Kit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Then the regions the account has not enabled refuse, and the record stays: whether
    a certificate there uses it cannot be known."""
    ctx, record = deployed(kit)

    def no_describe_regions(client: Any, operation: str, params: dict[str, Any], call: Any) -> Any:
        if operation == "DescribeRegions":
            error = {"Code": "UnauthorizedOperation", "Message": "not authorized"}
            raise ClientError({"Error": error}, operation)
        return call()

    answering(monkeypatch, no_describe_regions)
    CertificatesPhase().rollback(ctx)
    assert root_cnames(kit) == [record]
    (kept,) = ctx.record.kept
    assert "ap-east-1 (UnrecognizedClientException)" in kept["reason"]


def test_the_regions_read_are_those_of_the_clusters_partition() -> None:
    assert Aws("cn-north-1").service_regions("acm") == ["cn-north-1", "cn-northwest-1"]
    commercial = Aws("us-west-2").service_regions("acm")
    assert {"us-east-1", "eu-west-1", "ap-east-1"} <= set(commercial)
    assert "cn-north-1" not in commercial and "us-gov-west-1" not in commercial
