"""One decision per phase for hosted_zone and delegation: plan lists exactly what enter
then writes, plan stops where enter stops and in its words, and the rollback preview says
exactly what rollback deletes and leaves (tests/agreement.py), over the kit's scenarios:
fresh, adopt, drift, foreign, gone; and for rollback: ours, not ours any more, gone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed, plan
from phasekit import Kit, configured, phase_kit
from test_phase_route53 import (
    NAME_SERVERS,
    SUB,
    delegation_kit,
    new_zone,
    ns,
    rrsets,
    upsert,
    zones_named,
)

from orchestrator import resolver
from orchestrator.errors import NeedsAction, PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG
from orchestrator.planning import ASK, CHECK, CREATE, UPDATE, USE, WRITES
from orchestrator.states.delegation import DelegationPhase
from orchestrator.states.hosted_zone import KIND, HostedZonePhase


def actions(changes: list, action: str) -> list[str]:
    return [c.what for c in changes if c.action == action]


def check_plan_stops_with_enters_words(kit: Kit, phase: HostedZonePhase | DelegationPhase) -> str:
    """Plan stops; enter stops in the same words and writes nothing. Returns the words."""
    planned = kit.engine.plan_phase(phase.name)
    with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
        phase.enter(kit.ctx(phase.name))
    assert entering.aws_writes == []
    assert (planned.status, planned.problem) == ("stop", stopped.value.message)
    return stopped.value.message


# ---- hosted_zone: enter writes what plan listed ------------------------------------------------


def untag(kit: Kit, zone_id: str) -> None:
    kit.client("route53").change_tags_for_resource(
        ResourceType="hostedzone", ResourceId=zone_id, RemoveTagKeys=[OWNER_TAG, STATE_TAG]
    )


@pytest.mark.parametrize("scenario", ["fresh", "adopt", "drift", "gone"])
def test_hosted_zone_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = HostedZonePhase()
    with phase_kit(tmp_path) as kit:
        if scenario == "adopt":  # a zone there before us, named in the config
            kit.configure(subdomain_zone_id=new_zone(kit, SUB, "someone-else"))
        if scenario in ("drift", "gone"):
            phase.enter(kit.ctx(phase.name))
            zone_id = kit.ctx(phase.name).outputs["zone_id"]
        if scenario == "drift":  # its tags removed by hand: ours still, by its CallerReference
            untag(kit, zone_id)
        if scenario == "gone":
            kit.client("route53").delete_hosted_zone(Id=zone_id)
        changes = check_enter_as_planned(kit, phase)
        if scenario == "drift":  # plan once said "use" here, and enter tagged it
            assert actions(changes, UPDATE) == [f"hosted zone {zone_id} for {SUB}"]
        if scenario == "gone":
            assert actions(changes, CREATE) == [f"public hosted zone {SUB}"]
        again = check_enter_as_planned(kit, phase)
        assert {c.action for c in again} == {USE}


def test_hosted_zone_plan_lists_the_tagging_of_a_zone_a_crash_left_untagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The create went through, the process died before ChangeTagsForResource."""
    phase = HostedZonePhase()
    with phase_kit(tmp_path) as kit:

        def crash(*args: object) -> None:
            raise KeyboardInterrupt

        with monkeypatch.context() as patched:
            patched.setattr(HostedZonePhase, "_tag", crash)
            with pytest.raises(KeyboardInterrupt):
                phase.enter(kit.ctx(phase.name))
        changes = check_enter_as_planned(kit, phase)
        assert [c.action for c in changes] == [UPDATE]
        assert [r.confirmed for r in kit.ctx(phase.name).record.resources] == [True]


# ---- hosted_zone: plan stops where enter stops, in its words -----------------------------------


@pytest.mark.parametrize("whose", ["untagged", "other state file"])
def test_hosted_zone_plan_stops_at_a_zone_not_ours_with_enters_words(
    tmp_path: Path, whose: str
) -> None:
    """foreign: a public zone of our name that is not this state file's."""
    with phase_kit(tmp_path) as kit:
        tags = None if whose == "untagged" else kit.other_state().tags
        theirs = new_zone(kit, SUB, "theirs", tags)
        words = check_plan_stops_with_enters_words(kit, HostedZonePhase())
        assert theirs in words
        assert [z["Id"].removeprefix("/hostedzone/") for z in zones_named(kit)] == [theirs]


def test_hosted_zone_plan_stops_at_a_named_zone_that_is_not_there_with_enters_words(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, configured(subdomain_zone_id="Z0NOSUCHZONE")) as kit:
        words = check_plan_stops_with_enters_words(kit, HostedZonePhase())
        assert "Z0NOSUCHZONE is not a public hosted zone" in words


# ---- hosted_zone: rollback does what its preview said --------------------------------------------


@pytest.mark.parametrize("scenario", ["ours", "gone", "unconfirmed"])
def test_hosted_zone_rollback_deletes_what_its_preview_said(tmp_path: Path, scenario: str) -> None:
    phase = HostedZonePhase()
    with phase_kit(tmp_path) as kit:
        if scenario == "unconfirmed":  # a create whose answer a crash lost
            ctx = kit.ctx(phase.name)
            reference = f"orchestrator:{kit.owner.deployment}:hosted_zone:lost"
            ctx.intend(KIND, f"pending:{reference}", "create hosted zone")
            new_zone(kit, SUB, reference)
        else:
            phase.enter(kit.ctx(phase.name))
        if scenario == "gone":
            kit.client("route53").delete_hosted_zone(Id=kit.ctx(phase.name).outputs["zone_id"])
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        assert len(said["delete"]) == 1 and said["leave"] == set()
        assert zones_named(kit) == []


def test_hosted_zone_rollback_leaves_a_zone_another_state_file_tagged_as_previewed(
    tmp_path: Path,
) -> None:
    """not ours any more: the zone's tags now name another state file."""
    phase = HostedZonePhase()
    with phase_kit(tmp_path) as kit:
        phase.enter(kit.ctx(phase.name))
        zone_id = kit.ctx(phase.name).outputs["zone_id"]
        kit.client("route53").change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=kit.other_state().tags
        )
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        assert said == {"delete": set(), "leave": {f"{KIND} {zone_id}"}}
        assert len(zones_named(kit)) == 1


def test_hosted_zone_rollback_leaves_the_zone_the_config_named_as_previewed(
    tmp_path: Path,
) -> None:
    phase = HostedZonePhase()
    with phase_kit(tmp_path) as kit:
        theirs = new_zone(kit, SUB, "someone-else")
        kit.configure(subdomain_zone_id=theirs)
        phase.enter(kit.ctx(phase.name))
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        assert said == {"delete": set(), "leave": {f"{KIND} {theirs}"}}


# ---- delegation: enter writes what plan listed -------------------------------------------------


@pytest.mark.parametrize("scenario", ["fresh", "adopt", "changed", "zone replaced", "gone"])
def test_delegation_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = DelegationPhase()
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        if scenario == "adopt":  # the delegation already in place
            upsert(kit, root, ns(SUB, NAME_SERVERS))
        if scenario in ("changed", "zone replaced", "gone"):
            phase.enter(kit.ctx(phase.name))
        if scenario == "changed":  # ours, edited by hand
            upsert(kit, root, ns(SUB, ["ns.hijack.example.net"]))
        if scenario == "zone replaced":
            kit.done("hosted_zone", zone_id="ZSUB2", name_servers=["ns-3.awsdns-03.net"])
        if scenario == "gone":
            upsert(kit, root, rrsets(kit, root)[(SUB, "NS")], "DELETE")
        changes = check_enter_as_planned(kit, phase)
        assert len([c for c in changes if c.action in WRITES]) == (scenario != "adopt")
        again = check_enter_as_planned(kit, phase)
        assert {c.action for c in again} == {USE}


def test_delegation_plan_stops_at_a_record_not_ours_with_enters_words(tmp_path: Path) -> None:
    """foreign: plan once listed a "stop" change and said the phase was to do."""
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        upsert(kit, root, ns(SUB, ["ns.elsewhere.example.net"]))
        words = check_plan_stops_with_enters_words(kit, DelegationPhase())
        assert "which this deployment did not create" in words


@pytest.mark.parametrize("answers, confirmed", [([], False), (NAME_SERVERS, False), ([], True)])
def test_delegation_by_hand_plan_asks_only_when_enter_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: list[str], confirmed: bool
) -> None:
    """Without the root zone: plan once asked for the NS records even when DNS answered them
    already (or a human had confirmed), and enter then went on."""
    monkeypatch.setattr(resolver, "lookup", lambda name, rtype: sorted(answers))
    confirmations = frozenset({"delegation"}) if confirmed else frozenset()
    phase = DelegationPhase()
    with phase_kit(tmp_path, confirmations=confirmations) as kit:
        kit.done("hosted_zone", zone_id="ZSUB", name_servers=NAME_SERVERS)
        changes = plan(kit, phase)
        with kit.watching() as entering:
            try:
                phase.enter(kit.ctx(phase.name))
                asked = False
            except NeedsAction:
                asked = True
        assert entering.aws_writes == []
        assert [c.action for c in changes] == [ASK if asked else CHECK]
        assert asked == (not answers and not confirmed)


# ---- delegation: rollback does what its preview said ---------------------------------------------


@pytest.mark.parametrize("scenario", ["ours", "changed", "gone", "adopted"])
def test_delegation_rollback_does_what_its_preview_said(tmp_path: Path, scenario: str) -> None:
    phase = DelegationPhase()
    with phase_kit(tmp_path) as kit:
        root = delegation_kit(kit)
        if scenario == "adopted":
            upsert(kit, root, ns(SUB, NAME_SERVERS))
        phase.enter(kit.ctx(phase.name))
        if scenario == "changed":  # not ours any more: changed by hand since we wrote it
            upsert(kit, root, ns(SUB, ["ns.hijack.example.net"]))
        if scenario == "gone":
            upsert(kit, root, rrsets(kit, root)[(SUB, "NS")], "DELETE")
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        deletes = scenario in ("ours", "gone")
        assert (len(said["delete"]), len(said["leave"])) == ((1, 0) if deletes else (0, 1))
        assert ((SUB, "NS") in rrsets(kit, root)) == (scenario != "ours" and scenario != "gone")
