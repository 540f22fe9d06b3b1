"""The Route 53 phases in process against moto: hosted_zone, delegation, dns_record.

Each test calls a phase's enter / verify / rollback directly and checks Route 53 itself
(zones, tags, record sets, CallerReferences) and what the phase said.

Not here (end to end, against the sandbox world): waiting for a Route 53 change to be
INSYNC (moto reports every change INSYNC at once), a create whose answer was lost (the
crash sweep), and delegation checked through real DNS (here `resolver.lookup` is replaced).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from phasekit import CONFIG, Kit, configured, phase_kit

from orchestrator import resolver
from orchestrator.errors import NeedsAction, PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG, Owner
from orchestrator.states.delegation import DelegationPhase
from orchestrator.states.dns_record import DnsRecordPhase
from orchestrator.states.hosted_zone import KIND, HostedZonePhase
from orchestrator.store import PhaseStatus

SUB = CONFIG.subdomain
HOST = CONFIG.kubeflow_host
NAME_SERVERS = ["ns-1.awsdns-01.org", "ns-2.awsdns-02.com"]
ALB = "k8s-istiosys-istioing-0123456789-1234567890.us-west-2.elb.amazonaws.com"
ALB_ZONE = "Z1H1FL5HABSF5"


# ---- looking at Route 53 -------------------------------------------------------------------------


def zones_named(kit: Kit, name: str = SUB) -> list[dict[str, Any]]:
    found = kit.client("route53").list_hosted_zones()["HostedZones"]
    return [z for z in found if z["Name"].rstrip(".") == name]


def zone_tags(kit: Kit, zone_id: str) -> dict[str, str]:
    found = kit.client("route53").list_tags_for_resource(
        ResourceType="hostedzone", ResourceId=zone_id
    )
    return {t["Key"]: t["Value"] for t in found["ResourceTagSet"].get("Tags", [])}


def new_zone(kit: Kit, name: str, reference: str, tags: list[dict[str, str]] | None = None) -> str:
    route53 = kit.client("route53")
    zone_id = route53.create_hosted_zone(Name=name, CallerReference=reference)["HostedZone"]["Id"]
    zone_id = zone_id.removeprefix("/hostedzone/")
    if tags:
        route53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=tags
        )
    return zone_id


def rrsets(kit: Kit, zone_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    found = kit.client("route53").list_resource_record_sets(HostedZoneId=zone_id)
    return {(r["Name"].rstrip("."), r["Type"]): r for r in found["ResourceRecordSets"]}


def upsert(kit: Kit, zone_id: str, rrset: dict[str, Any], action: str = "UPSERT") -> None:
    kit.client("route53").change_resource_record_sets(
        HostedZoneId=zone_id,
        ChangeBatch={"Changes": [{"Action": action, "ResourceRecordSet": rrset}]},
    )


def ns(name: str, values: list[str]) -> dict[str, Any]:
    return {
        "Name": name + ".",
        "Type": "NS",
        "TTL": 300,
        "ResourceRecords": [{"Value": v + "."} for v in values],
    }


def ns_values(rrset: dict[str, Any]) -> list[str]:
    return sorted(r["Value"].rstrip(".") for r in rrset["ResourceRecords"])


def alias(name: str, target: str, zone: str = ALB_ZONE) -> dict[str, Any]:
    return {
        "Name": name + ".",
        "Type": "A",
        "AliasTarget": {
            "HostedZoneId": zone,
            "DNSName": target + ".",
            "EvaluateTargetHealth": False,
        },
    }


def created(ctx: Any) -> list[bool]:
    return [r.created for r in ctx.record.resources]


def zone_ids(kit: Kit, name: str = SUB) -> list[str]:
    return [z["Id"].removeprefix("/hostedzone/") for z in zones_named(kit, name)]


def address(name: str, value: str) -> dict[str, Any]:
    """A plain A record, as a neighbour's own records are."""
    return {"Name": name + ".", "Type": "A", "TTL": 60, "ResourceRecords": [{"Value": value}]}


def entered(kit: Kit, phase: Any) -> Any:
    """The phase's context once its enter has run: where most tests start."""
    ctx = kit.ctx(phase.name)
    phase.enter(ctx)
    return ctx


@contextlib.contextmanager
def zone_made(tmp_path: Path) -> Iterator[tuple[Kit, Any]]:
    """A kit where hosted_zone has made its zone, and that phase's context."""
    with phase_kit(tmp_path) as kit:
        yield kit, entered(kit, HostedZonePhase())


# ---- hosted_zone ---------------------------------------------------------------------------------


def test_hosted_zone_is_made_tagged_as_ours_and_a_second_enter_writes_nothing(
    tmp_path: Path,
) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        (zone,) = zones_named(kit)
        zone_id = zone["Id"].removeprefix("/hostedzone/")
        assert not zone["Config"]["PrivateZone"]
        assert ctx.outputs["zone_id"] == zone_id
        delegation = kit.client("route53").get_hosted_zone(Id=zone_id)["DelegationSet"]
        assert ctx.outputs["name_servers"] == sorted(
            n.rstrip(".") for n in delegation["NameServers"]
        )
        tags = zone_tags(kit, zone_id)
        assert tags[OWNER_TAG] == kit.owner.deployment and tags[STATE_TAG] == kit.owner.identity
        assert created(ctx) == [True]
        assert HostedZonePhase().verify(ctx) is None

        with kit.watching() as again:
            HostedZonePhase().enter(ctx)
        assert again.aws_writes == []
        assert [z["Id"] for z in zones_named(kit)] == [zone["Id"]]
        assert ctx.outputs["zone_id"] == zone_id


def test_hosted_zone_named_in_the_config_is_adopted_and_rollback_leaves_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        theirs = new_zone(kit, SUB, "someone-else")
        kit.configure(subdomain_zone_id=theirs)
        ctx = kit.ctx("hosted_zone")
        with kit.watching() as entering:
            HostedZonePhase().enter(ctx)
        assert entering.aws_writes == []  # not even tagged
        assert ctx.outputs["zone_id"] == theirs
        assert created(ctx) == [False]
        assert HostedZonePhase().verify(ctx) is None
        HostedZonePhase().rollback(ctx)
        assert zone_ids(kit) == [theirs]
        assert OWNER_TAG not in zone_tags(kit, theirs)


OTHER_DEPLOYMENT = Owner("staging-example-com-0badcafe", "0" * 16)


@pytest.mark.parametrize(
    "marks, refusal",
    [
        (None, "already exists"),
        ("other deployment", "already exists"),
        ("other state", "belongs to this deployment's state file ffffffffffffffff"),
    ],
)
def test_hosted_zone_of_that_name_not_ours_is_refused_and_left_alone(
    tmp_path: Path, marks: str | None, refusal: str
) -> None:
    with phase_kit(tmp_path) as kit:
        tags = {
            None: None,
            "other deployment": OTHER_DEPLOYMENT.tags,
            "other state": kit.other_state().tags,
        }[marks]
        theirs = new_zone(kit, SUB, "theirs", tags)
        before = zone_tags(kit, theirs)
        with pytest.raises(PhaseError) as refused:
            HostedZonePhase().enter(kit.ctx("hosted_zone"))
        assert refusal in refused.value.message and theirs in refused.value.message + str(
            refused.value.hint
        )
        assert zone_ids(kit) == [theirs]
        assert zone_tags(kit, theirs) == before


def test_hosted_zone_named_in_the_config_must_exist(tmp_path: Path) -> None:
    with phase_kit(tmp_path, configured(subdomain_zone_id="Z0NOSUCHZONE")) as kit:
        with pytest.raises(PhaseError) as refused:
            HostedZonePhase().enter(kit.ctx("hosted_zone"))
        assert "Z0NOSUCHZONE is not a public hosted zone" in refused.value.message
        assert zones_named(kit) == []


def test_hosted_zone_private_zone_of_that_name_is_not_ours_to_use(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        vpc = kit.client("ec2").create_vpc(CidrBlock="10.0.0.0/16")["Vpc"]["VpcId"]
        private = kit.client("route53").create_hosted_zone(
            Name=SUB,
            CallerReference="private",
            VPC={"VPCRegion": "us-west-2", "VPCId": vpc},
            HostedZoneConfig={"PrivateZone": True, "Comment": "inside"},
        )["HostedZone"]["Id"]
        ctx = entered(kit, HostedZonePhase())
        assert ctx.outputs["zone_id"] != private.removeprefix("/hostedzone/")
        assert sorted(z["Config"]["PrivateZone"] for z in zones_named(kit)) == [False, True]


def test_hosted_zone_deleted_behind_our_back_is_made_again_under_a_new_caller_reference(
    tmp_path: Path,
) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        (first,) = zones_named(kit)
        kit.client("route53").delete_hosted_zone(Id=first["Id"])
        problem = HostedZonePhase().verify(ctx)
        assert problem == f"hosted zone {ctx.outputs['zone_id']} no longer exists"

        HostedZonePhase().enter(ctx)
        (second,) = zones_named(kit)
        assert second["Id"] != first["Id"]
        assert second["CallerReference"] != first["CallerReference"]
        assert ctx.outputs["zone_id"] == second["Id"].removeprefix("/hostedzone/")
        assert zone_tags(kit, ctx.outputs["zone_id"])[STATE_TAG] == kit.owner.identity
        assert HostedZonePhase().verify(ctx) is None


def test_hosted_zone_that_lost_its_tags_is_reported_then_tagged_again_by_its_reference(
    tmp_path: Path,
) -> None:
    """The CallerReference we created it with is AWS's word that the zone is ours."""
    with zone_made(tmp_path) as (kit, ctx):
        zone_id = ctx.outputs["zone_id"]
        kit.client("route53").change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, RemoveTagKeys=[OWNER_TAG, STATE_TAG]
        )
        assert HostedZonePhase().verify(ctx) == (
            f"hosted zone {zone_id} lost its {OWNER_TAG}/{STATE_TAG} tags"
        )
        HostedZonePhase().enter(ctx)
        assert zone_ids(kit) == [zone_id]
        assert zone_tags(kit, zone_id)[STATE_TAG] == kit.owner.identity
        assert HostedZonePhase().verify(ctx) is None


def test_hosted_zone_crash_between_create_and_tagging_is_picked_up_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = kit.ctx("hosted_zone")

        def crash(*args: Any) -> None:
            raise KeyboardInterrupt  # the process dies before ChangeTagsForResource

        with monkeypatch.context() as patched:
            patched.setattr(HostedZonePhase, "_tag", crash)
            with pytest.raises(KeyboardInterrupt):
                HostedZonePhase().enter(ctx)
        (zone,) = zones_named(kit)
        zone_id = zone["Id"].removeprefix("/hostedzone/")
        assert zone_tags(kit, zone_id).get(OWNER_TAG) is None

        HostedZonePhase().enter(ctx)
        assert [z["Id"] for z in zones_named(kit)] == [zone["Id"]]
        assert zone_tags(kit, zone_id)[STATE_TAG] == kit.owner.identity
        assert created(ctx) == [True]


def test_hosted_zone_a_state_naming_an_untagged_zone_not_made_by_us_is_refused(
    tmp_path: Path,
) -> None:
    """A hand-edited state cannot make a zone ours: we never made its CallerReference."""
    with phase_kit(tmp_path) as kit:
        theirs = new_zone(kit, SUB, "their-terraform-run")
        ctx = kit.ctx("hosted_zone")
        ctx.intend(KIND, theirs, "edited by hand", caller_reference="their-terraform-run")
        ctx.confirm(ctx.find(KIND, theirs))  # type: ignore[arg-type]
        with pytest.raises(PhaseError, match="not created by this deployment"):
            HostedZonePhase().enter(ctx)
        assert zone_tags(kit, theirs) == {}


def test_hosted_zone_rollback_deletes_the_zone_we_made(tmp_path: Path) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        HostedZonePhase().rollback(ctx)
        assert zones_named(kit) == []
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_hosted_zone_rollback_refuses_while_it_holds_records_we_did_not_write(
    tmp_path: Path,
) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        zone_id = ctx.outputs["zone_id"]
        upsert(kit, zone_id, address(f"mail.{SUB}", "192.0.2.7"))
        with pytest.raises(PhaseError) as refused:
            HostedZonePhase().rollback(ctx)
        assert f"mail.{SUB} A" in refused.value.message
        assert len(zones_named(kit)) == 1
        assert (f"mail.{SUB}", "A") in rrsets(kit, zone_id)


def test_hosted_zone_rollback_of_a_zone_already_gone_is_fine(tmp_path: Path) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        kit.client("route53").delete_hosted_zone(Id=ctx.outputs["zone_id"])
        HostedZonePhase().rollback(ctx)
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_hosted_zone_rollback_leaves_a_zone_another_state_file_tagged_and_says_so(
    tmp_path: Path,
) -> None:
    with zone_made(tmp_path) as (kit, ctx):
        zone_id = ctx.outputs["zone_id"]
        kit.client("route53").change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=kit.other_state().tags
        )
        HostedZonePhase().rollback(ctx)
        assert len(zones_named(kit)) == 1
        (kept,) = ctx.record.kept
        assert kept["id"] == zone_id
        assert f"left route53:hosted-zone {zone_id} in place" in kit.said()


# ---- delegation ----------------------------------------------------------------------------------


def delegation_kit(kit: Kit, name_servers: list[str] = NAME_SERVERS) -> str:
    """The root zone in Route 53, named in the config, with a record of its own."""
    root = new_zone(kit, "example.com", "root")
    upsert(kit, root, address("www.example.com", "192.0.2.1"))
    kit.configure(root_zone_id=root)
    kit.done("hosted_zone", zone_id="ZSUB", name_servers=name_servers)
    return root


def test_delegation_writes_the_ns_record_in_the_root_zone_once(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        ctx = entered(kit, DelegationPhase())
        record = rrsets(kit, root)[(SUB, "NS")]
        assert ns_values(record) == NAME_SERVERS and record["TTL"] == 300
        assert ctx.outputs["mode"] == "route53" and created(ctx) == [True]
        assert DelegationPhase().verify(ctx) is None

        with kit.watching() as again:
            DelegationPhase().enter(ctx)
        assert again.aws_writes == []


def test_zone_and_delegation_end_while_route53_still_propagates_them(tmp_path: Path) -> None:
    """Neither waits for INSYNC: ACM validates once the records resolve, and
    certificates_issued waits for that, so the certificates are requested while Route 53
    propagates the zone and the delegation (the sandbox's Route 53 keeps them PENDING)."""
    from phasekit import ACCOUNT

    from orchestrator_sandbox.route53 import make_route53_strict, published_zones

    with phase_kit(tmp_path) as kit:  # waits check once: a wait here would raise
        make_route53_strict(dns_delay=0)
        root = new_zone(kit, "example.com", "root")  # an old zone, long INSYNC
        kit.configure(root_zone_id=root)
        make_route53_strict(dns_delay=3600)
        try:
            zone = kit.ctx("hosted_zone")
            with kit.watching() as seen:
                HostedZonePhase().enter(zone)
                kit.done("hosted_zone", **zone.outputs)
                DelegationPhase().enter(kit.ctx("delegation"))
            assert seen.calls("get_change") == []
            # Route 53's name servers do not serve the zone, nor the delegation, yet.
            served = {z.name: z for z in published_zones(ACCOUNT)}
            assert SUB not in served
            assert (SUB, "NS") not in served["example.com"].records
        finally:
            make_route53_strict(dns_delay=0)


def test_delegation_already_in_place_is_adopted_and_rollback_leaves_it(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        upsert(kit, root, ns(SUB, NAME_SERVERS))
        ctx = kit.ctx("delegation")
        with kit.watching() as entering:
            DelegationPhase().enter(ctx)
        assert entering.aws_writes == []
        assert created(ctx) == [False]
        DelegationPhase().rollback(ctx)
        assert ns_values(rrsets(kit, root)[(SUB, "NS")]) == NAME_SERVERS


def test_delegation_to_other_name_servers_not_ours_is_refused(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        upsert(kit, root, ns(SUB, ["ns.elsewhere.example.net"]))
        with pytest.raises(PhaseError) as refused:
            DelegationPhase().enter(kit.ctx("delegation"))
        assert "which this deployment did not create" in refused.value.message
        assert ns_values(rrsets(kit, root)[(SUB, "NS")]) == ["ns.elsewhere.example.net"]


@pytest.mark.parametrize("drift", ["deleted", "changed", "zone replaced"])
def test_delegation_drift_is_reported_and_enter_puts_it_right(tmp_path: Path, drift: str) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        ctx = entered(kit, DelegationPhase())
        wanted = NAME_SERVERS
        if drift == "deleted":
            upsert(kit, root, rrsets(kit, root)[(SUB, "NS")], "DELETE")
            reason = f"{SUB} NS {' '.join(NAME_SERVERS)} is gone"
        elif drift == "changed":
            upsert(kit, root, ns(SUB, ["ns.hijack.example.net"]))
            reason = f"{SUB} NS changed to {SUB} NS ns.hijack.example.net"
        else:
            wanted = ["ns-3.awsdns-03.net", "ns-4.awsdns-04.co.uk"]
            kit.done("hosted_zone", zone_id="ZSUB2", name_servers=wanted)
            reason = "the hosted zone was replaced and has other name servers"
        assert DelegationPhase().verify(ctx) == reason
        DelegationPhase().enter(ctx)
        assert ns_values(rrsets(kit, root)[(SUB, "NS")]) == wanted
        assert DelegationPhase().verify(ctx) is None


def test_delegation_rollback_deletes_exactly_that_record(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        before = rrsets(kit, root)
        ctx = entered(kit, DelegationPhase())
        DelegationPhase().rollback(ctx)
        assert rrsets(kit, root) == before
        assert ctx.record.resources == []
        DelegationPhase().rollback(ctx)  # again: nothing left to do, and no error


def test_delegation_rollback_of_a_record_already_gone_is_fine(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        ctx = entered(kit, DelegationPhase())
        upsert(kit, root, rrsets(kit, root)[(SUB, "NS")], "DELETE")
        with kit.watching() as rolling_back:
            DelegationPhase().rollback(ctx)
        assert rolling_back.aws_writes == []
        assert ctx.record.resources == []


def test_delegation_rollback_leaves_a_record_changed_behind_our_back_and_says_so(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        ctx = entered(kit, DelegationPhase())
        upsert(kit, root, ns(SUB, ["ns.hijack.example.net"]))
        DelegationPhase().rollback(ctx)
        assert ns_values(rrsets(kit, root)[(SUB, "NS")]) == ["ns.hijack.example.net"]
        assert f"left {SUB} NS ns.hijack.example.net in place" in kit.said()


def test_delegation_without_a_root_zone_asks_a_human_with_the_records_to_add(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda name, rtype: [])
    with phase_kit(tmp_path) as kit:
        kit.done("hosted_zone", zone_id="ZSUB", name_servers=NAME_SERVERS)
        ctx = kit.ctx("delegation")
        with kit.watching() as entering, pytest.raises(NeedsAction) as parked:
            DelegationPhase().enter(ctx)
        for server in NAME_SERVERS:
            assert f"{SUB}.  NS  {server}." in parked.value.instructions
        assert "orchestrator resume --confirm delegation" in parked.value.instructions
        assert entering.aws_writes == []
        assert ctx.outputs["mode"] == "manual"


@pytest.mark.parametrize("answers, confirmed", [(NAME_SERVERS, False), ([], True)])
def test_delegation_by_hand_goes_on_once_dns_answers_or_a_human_confirms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: list[str], confirmed: bool
) -> None:
    dns = {"answers": sorted(answers)}
    monkeypatch.setattr(resolver, "lookup", lambda name, rtype: dns["answers"])
    confirmations = frozenset({"delegation"}) if confirmed else frozenset()
    with phase_kit(tmp_path, confirmations=confirmations) as kit:
        kit.done("hosted_zone", zone_id="ZSUB", name_servers=NAME_SERVERS)
        ctx = entered(kit, DelegationPhase())
        assert ctx.outputs["checked_by"] == ("operator" if confirmed else "dns")
        assert DelegationPhase().verify(ctx) is None
        dns["answers"] = []
        expected = None if confirmed else f"DNS no longer answers the delegation of {SUB}"
        assert DelegationPhase().verify(ctx) == expected
        DelegationPhase().rollback(ctx)
        assert f"remove the NS records for {SUB} at the registrar" in kit.said()


# ---- dns_record ----------------------------------------------------------------------------------


def record_kit(kit: Kit, hostname: str = ALB) -> str:
    zone = new_zone(kit, SUB, "sub", kit.owner.tags)
    kit.done("hosted_zone", zone_id=zone, name_servers=NAME_SERVERS)
    kit.done("load_balancer", hostname=hostname, canonical_hosted_zone_id=ALB_ZONE)
    return zone


def alias_target(kit: Kit, zone: str) -> str | None:
    record = rrsets(kit, zone).get((HOST, "A"))
    return record["AliasTarget"]["DNSName"].rstrip(".") if record else None


def test_dns_record_aliases_the_host_to_the_alb_once(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        ctx = entered(kit, DnsRecordPhase())
        record = rrsets(kit, zone)[(HOST, "A")]
        assert record["AliasTarget"]["HostedZoneId"].removeprefix("/hostedzone/") == ALB_ZONE
        assert alias_target(kit, zone) == ALB
        assert ctx.outputs == {"name": HOST, "target": ALB}
        assert created(ctx) == [True]
        assert DnsRecordPhase().verify(ctx) is None
        with kit.watching() as again:
            DnsRecordPhase().enter(ctx)
        assert again.aws_writes == []


def test_dns_record_already_pointing_at_the_alb_is_adopted_and_left(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        upsert(kit, zone, alias(HOST, ALB))
        ctx = entered(kit, DnsRecordPhase())
        assert created(ctx) == [False]
        DnsRecordPhase().rollback(ctx)
        assert alias_target(kit, zone) == ALB


@pytest.mark.parametrize(
    "theirs",
    [
        alias(HOST, "other-alb-1.us-west-2.elb.amazonaws.com"),
        address(HOST, "192.0.2.9"),
    ],
    ids=["alias elsewhere", "plain address"],
)
def test_dns_record_of_that_name_not_ours_is_refused(tmp_path: Path, theirs: dict) -> None:
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        upsert(kit, zone, theirs)
        before = rrsets(kit, zone)[(HOST, "A")]
        with pytest.raises(PhaseError, match="which this deployment did not create"):
            DnsRecordPhase().enter(kit.ctx("dns_record"))
        assert rrsets(kit, zone)[(HOST, "A")] == before


def test_dns_record_deleted_behind_our_back_is_reported_and_made_again(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        ctx = entered(kit, DnsRecordPhase())
        upsert(kit, zone, rrsets(kit, zone)[(HOST, "A")], "DELETE")
        assert DnsRecordPhase().verify(ctx) == f"{HOST} A alias {ALB} is gone"
        DnsRecordPhase().enter(ctx)
        assert alias_target(kit, zone) == ALB


def test_dns_record_follows_a_new_load_balancer(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        ctx = entered(kit, DnsRecordPhase())
        newer = "k8s-istiosys-istioing-9876543210-1.us-west-2.elb.amazonaws.com"
        kit.done("load_balancer", hostname=newer, canonical_hosted_zone_id=ALB_ZONE)
        assert DnsRecordPhase().verify(ctx) == "the load balancer changed"
        DnsRecordPhase().enter(ctx)
        assert alias_target(kit, zone) == newer
        assert DnsRecordPhase().verify(ctx) is None


@pytest.mark.parametrize("behind_our_back", [None, "deleted", "changed"])
def test_dns_record_rollback(tmp_path: Path, behind_our_back: str | None) -> None:
    """Deletes the record we wrote; already gone is fine; one changed since is left, said."""
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        ctx = entered(kit, DnsRecordPhase())
        if behind_our_back == "deleted":
            upsert(kit, zone, rrsets(kit, zone)[(HOST, "A")], "DELETE")
        elif behind_our_back == "changed":
            upsert(kit, zone, alias(HOST, "hand-made.example.net"))
        DnsRecordPhase().rollback(ctx)
        expected = "hand-made.example.net" if behind_our_back == "changed" else None
        assert alias_target(kit, zone) == expected
        assert ctx.record.resources == []
        assert ("left " in kit.said()) == (behind_our_back == "changed")


# ---- plan ---------------------------------------------------------------------------------------


def test_hosted_zone_plan_names_the_zone_to_make_then_uses_it_and_never_writes(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        with kit.watching() as planning:
            first = kit.engine.plan_phase("hosted_zone")
        assert planning.aws_writes == []
        assert first.status == "to_do"
        assert [(c.action, c.what) for c in first.changes] == [
            ("create", f"public hosted zone {SUB}")
        ]
        ctx = entered(kit, HostedZonePhase())
        kit.engine.state.phase("hosted_zone").status = PhaseStatus.DONE
        assert kit.engine.plan_phase("hosted_zone").status == "done"
        kit.engine.state.phase("hosted_zone").status = PhaseStatus.PENDING
        again = kit.engine.plan_phase("hosted_zone")
        assert [(c.action, c.what) for c in again.changes] == [
            ("use", f"hosted zone {ctx.outputs['zone_id']} for {SUB}")
        ]


def test_hosted_zone_plan_says_where_enter_would_stop(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        theirs = new_zone(kit, SUB, "theirs")
        with kit.watching() as planning:
            plan = kit.engine.plan_phase("hosted_zone")
        assert planning.aws_writes == []
        assert plan.status == "stop" and theirs in (plan.problem or "")
        assert "already exists" in (plan.problem or "")


def test_a_plan_that_tries_to_write_is_stopped_before_the_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with phase_kit(tmp_path) as kit:
        monkeypatch.setattr(HostedZonePhase, "plan", HostedZonePhase.enter)
        with kit.watching() as planning:
            plan = kit.engine.plan_phase("hosted_zone")
        assert planning.aws_writes == []
        assert plan.status == "unknown"
        assert "plan makes no change, but aws route53 CreateHostedZone" in (plan.problem or "")
