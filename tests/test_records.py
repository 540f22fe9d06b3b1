"""Pure Route 53 builders and the certificate planning functions."""

from __future__ import annotations

import pytest

from orchestrator.builders.records import (
    FOREIGN,
    HOLDS,
    WRITE,
    alias_record_set,
    change_batch,
    plain,
    record_set,
    record_verdict,
    same_record,
)
from orchestrator.config import Config
from orchestrator.errors import PhaseError
from orchestrator.states.certificates import validation_zone, wanted_certificates

CONFIG = Config(
    cluster_name="c",
    region="us-west-2",
    root_domain="example.com",
    root_zone_id="ZROOT",
    subdomain="platform.example.com",
    subject_alternative_names=("platform.example.com",),
    root_wildcard_certificate=True,
)


def test_record_sets_and_change_batches() -> None:
    rrset = record_set("Platform.Example.com", "NS", ["ns-1.example.net."], ttl=300)
    assert rrset["Name"] == "platform.example.com."
    batch = change_batch("UPSERT", rrset, "why")
    assert batch["Changes"][0] == {"Action": "UPSERT", "ResourceRecordSet": rrset}


def test_same_record_ignores_case_dots_and_order() -> None:
    a = record_set("x.example.com", "NS", ["b.net.", "a.net."])
    b = {
        "Name": "X.example.com.",
        "Type": "NS",
        "TTL": 60,
        "ResourceRecords": [{"Value": "A.net"}, {"Value": "b.net"}],
    }
    assert same_record(a, b)
    assert not same_record(a, record_set("x.example.com", "NS", ["a.net."]))
    alias = alias_record_set("k.example.com", "lb.elb.amazonaws.com", "Z2")
    assert same_record(alias, alias_record_set("k.example.com", "LB.elb.amazonaws.com.", "Z2"))
    assert not same_record(alias, alias_record_set("k.example.com", "lb.elb.amazonaws.com", "Z3"))
    assert plain("\\052.example.com.") == "*.example.com"


def test_wanted_certificates_and_where_their_validation_goes() -> None:
    wanted = wanted_certificates(CONFIG)
    assert [w["domain"] for w in wanted] == ["*.platform.example.com", "*.example.com"]
    assert wanted[0]["sans"] == ["platform.example.com"]
    assert validation_zone(CONFIG, "ZSUB", "_x.platform.example.com.") == "ZSUB"
    assert validation_zone(CONFIG, "ZSUB", "_x.example.com.") == "ZROOT"
    with pytest.raises(PhaseError):
        validation_zone(CONFIG, "ZSUB", "_x.example.org.")


WANTED = record_set("kubeflow.platform.example.com", "CNAME", ["alb.example.net"])
OTHER = record_set("kubeflow.platform.example.com", "CNAME", ["elsewhere.example.net"])


@pytest.mark.parametrize(
    ("current", "ours", "verdict"),
    [
        (None, False, WRITE),  # nothing there: write it
        (WANTED, False, HOLDS),  # someone's record already says it: use it (adopted)
        (WANTED, True, HOLDS),  # ours, as we wrote it
        (OTHER, True, WRITE),  # ours, changed since: ours to put back
        (OTHER, False, FOREIGN),  # another's, saying something else: never overwritten
    ],
)
def test_the_ownership_rule_for_one_record(
    current: dict[str, object] | None, ours: bool, verdict: str
) -> None:
    assert record_verdict(current, WANTED, ours) == verdict
