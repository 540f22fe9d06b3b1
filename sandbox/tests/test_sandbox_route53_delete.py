"""Route 53 deletes a record set only when the DELETE repeats it as it is now (its TTL and
values, or its alias target); moto deletes by name and type alone."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from orchestrator_sandbox.route53 import make_route53_strict

NAME = "kubeflow.platform.example.com"
ALIAS = {
    "HostedZoneId": "Z1H1FL5HABSF5",
    "DNSName": "k8s-ours-1234.us-west-2.elb.amazonaws.com",
    "EvaluateTargetHealth": False,
}


@pytest.fixture
def zone() -> Iterator[tuple[Any, str]]:
    with mock_aws():
        make_route53_strict()
        route53 = boto3.client("route53", region_name="us-east-1")
        made = route53.create_hosted_zone(Name="platform.example.com", CallerReference="z")
        yield route53, made["HostedZone"]["Id"]


def change(route53: Any, zone_id: str, action: str, **rrset: Any) -> None:
    route53.change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": {"Name": NAME, **rrset}}]},
    )


def names(route53: Any, zone_id: str) -> list[str]:
    listed = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    return [r["Name"] for r in listed]


@pytest.mark.parametrize(
    "given",
    [
        {"TTL": 60, "ResourceRecords": [{"Value": "192.0.2.1"}]},
        {"TTL": 300, "ResourceRecords": [{"Value": "192.0.2.9"}]},
    ],
    ids=["another TTL", "another value"],
)
def test_a_delete_with_values_not_the_records_is_refused(
    zone: tuple[Any, str], given: dict[str, Any]
) -> None:
    route53, zone_id = zone
    change(route53, zone_id, "CREATE", Type="A", TTL=300, ResourceRecords=[{"Value": "192.0.2.1"}])
    with pytest.raises(ClientError) as refused:
        change(route53, zone_id, "DELETE", Type="A", **given)
    assert refused.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert (
        f"Tried to delete resource record set [name='{NAME}.', type='A'] but the values "
        "provided do not match the current values"
    ) in refused.value.response["Error"]["Message"]
    assert f"{NAME}." in names(route53, zone_id)


def test_a_delete_of_an_alias_to_another_target_is_refused_and_of_its_own_accepted(
    zone: tuple[Any, str],
) -> None:
    route53, zone_id = zone
    change(route53, zone_id, "CREATE", Type="A", AliasTarget=ALIAS)
    elsewhere = ALIAS | {"DNSName": "k8s-other-9999.us-west-2.elb.amazonaws.com"}
    with pytest.raises(ClientError) as refused:
        change(route53, zone_id, "DELETE", Type="A", AliasTarget=elsewhere)
    assert "do not match the current values" in refused.value.response["Error"]["Message"]
    # The same target, written as ListResourceRecordSets gives it back (a trailing dot).
    change(
        route53,
        zone_id,
        "DELETE",
        Type="A",
        AliasTarget=ALIAS | {"DNSName": ALIAS["DNSName"] + "."},
    )
    assert f"{NAME}." not in names(route53, zone_id)


def test_a_delete_of_a_record_set_not_there_is_refused_as_not_found(
    zone: tuple[Any, str],
) -> None:
    route53, zone_id = zone
    with pytest.raises(ClientError) as refused:
        change(
            route53, zone_id, "DELETE", Type="A", TTL=300, ResourceRecords=[{"Value": "192.0.2.1"}]
        )
    assert refused.value.response["Error"]["Code"] == "InvalidChangeBatch"
    assert "but it was not found" in refused.value.response["Error"]["Message"]
