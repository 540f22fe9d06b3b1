"""The sandbox's ACM, in process with moto: key algorithms kept and listed as ACM lists them
(RSA_1024 and RSA_2048 only, unless `Includes.keyTypes` asks for more), one validation
record per account and domain in every region, regions the account has not enabled
refusing the caller, and the simulator issuing in any region and of any key type."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from orchestrator_sandbox.acm import (
    KEY_ALGORITHMS,
    AcmSimulator,
    disable_moto_auto_issue,
    refuse_regions_not_enabled,
    use_distinct_validation_records,
    use_key_algorithms,
)
from orchestrator_sandbox.dnsview import DnsView

ACCOUNT = "123456789012"  # moto's default account
REGION = "us-west-2"
NOT_ENABLED = "ap-east-1"  # an opt-in region (launched after March 2019)


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    disable_moto_auto_issue()
    use_distinct_validation_records()
    use_key_algorithms()
    refuse_regions_not_enabled()
    with mock_aws():
        yield


def acm(region: str = REGION) -> Any:
    return boto3.client("acm", region_name=region)


def request(region: str = REGION, domain: str = "*.example.com", **extra: Any) -> str:
    arn = acm(region).request_certificate(DomainName=domain, ValidationMethod="DNS", **extra)
    return str(arn["CertificateArn"])


def listed(region: str = REGION, **extra: Any) -> list[str]:
    found = acm(region).list_certificates(**extra)["CertificateSummaryList"]
    return [c["CertificateArn"] for c in found]


def described(arn: str, region: str = REGION) -> dict[str, Any]:
    return acm(region).describe_certificate(CertificateArn=arn)["Certificate"]


def test_acm_lists_only_rsa_certificates_unless_asked_for_other_key_types(aws: None) -> None:
    rsa = request()
    ecdsa = request(KeyAlgorithm="EC_prime256v1")
    assert described(rsa)["KeyAlgorithm"] == "RSA_2048"
    assert described(ecdsa)["KeyAlgorithm"] == "EC_prime256v1"
    assert listed() == [rsa]
    assert listed(CertificateStatuses=["PENDING_VALIDATION"]) == [rsa]
    every = {"keyTypes": list(KEY_ALGORITHMS)}
    assert sorted(listed(Includes=every)) == sorted([rsa, ecdsa])
    assert listed(Includes={"keyTypes": ["EC_prime256v1"]}) == [ecdsa]


def test_acm_refuses_a_key_algorithm_it_does_not_issue(aws: None) -> None:
    with pytest.raises(ClientError) as refused:
        request(KeyAlgorithm="RSA_4096")  # importable, not requestable
    assert refused.value.response["Error"]["Code"] == "ValidationException"


def test_a_domain_validates_with_one_record_in_every_region_and_key_type(aws: None) -> None:
    records = [
        described(arn, region)["DomainValidationOptions"][0]["ResourceRecord"]
        for arn, region in [
            (request(), REGION),
            (request(domain="example.com", KeyAlgorithm="EC_prime256v1"), REGION),
            (request("eu-west-1"), "eu-west-1"),
        ]
    ]
    assert records[0] == records[1] == records[2]


def test_a_region_the_account_has_not_enabled_refuses_the_caller(aws: None) -> None:
    regions = boto3.client("ec2", region_name=REGION).describe_regions()["Regions"]
    status = {r["RegionName"]: r["OptInStatus"] for r in regions}
    assert status[NOT_ENABLED] == "not-opted-in" and status["eu-west-1"] != "not-opted-in"
    with pytest.raises(ClientError) as refused:
        acm(NOT_ENABLED).list_certificates()
    assert refused.value.response["Error"]["Code"] == "UnrecognizedClientException"
    assert listed("eu-west-1") == []


def test_the_simulator_issues_in_any_region_and_of_any_key_type(aws: None) -> None:
    route53 = boto3.client("route53", region_name=REGION)
    zone = route53.create_hosted_zone(Name="example.com", CallerReference="root")
    zone_id = zone["HostedZone"]["Id"].split("/")[-1]
    ecdsa = request(KeyAlgorithm="EC_prime256v1")
    elsewhere = request("eu-west-1")
    record = described(ecdsa)["DomainValidationOptions"][0]["ResourceRecord"]
    change = {
        "Action": "UPSERT",
        "ResourceRecordSet": {
            "Name": record["Name"],
            "Type": "CNAME",
            "TTL": 300,
            "ResourceRecords": [{"Value": record["Value"]}],
        },
    }
    route53.change_resource_record_sets(HostedZoneId=zone_id, ChangeBatch={"Changes": [change]})
    simulator = AcmSimulator(DnsView(route53), {}, ACCOUNT, delay=0, make_client=acm)
    simulator.tick()
    assert described(ecdsa)["Status"] == "ISSUED"
    assert described(elsewhere, "eu-west-1")["Status"] == "ISSUED"
