"""One decision per phase (tests/agreement.py) for dns_record and for the phases that only
wait or check (preflight, certificates_issued, load_balancer, endpoint): plan lists exactly
what enter then writes (for the checks: nothing), a refusal of enter is plan's "stop" in
enter's own words, and dns_record's rollback preview says what its rollback deletes and
leaves.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed, plan
from phasekit import Kit, eks_cluster, eks_network, phase_kit
from test_agreement import certificates_kit
from test_phase_ingress import INGRESS, balancer_kit, new_balancer
from test_phase_network import alb, certificate, endpoint_kit
from test_phase_route53 import ALB, ALB_ZONE, HOST, alias, record_kit, rrsets, upsert

from orchestrator import resolver
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.planning import CREATE, UPDATE, USE, WRITES
from orchestrator.states import endpoint
from orchestrator.states.certificates import CertificatesPhase
from orchestrator.states.certificates_issued import CertificatesIssuedPhase
from orchestrator.states.dns_record import DnsRecordPhase
from orchestrator.states.endpoint import EndpointPhase
from orchestrator.states.load_balancer import LoadBalancerPhase
from orchestrator.states.preflight import PreflightPhase

NEWER = "k8s-istiosys-istioing-9876543210-1.us-west-2.elb.amazonaws.com"
THEIRS = {
    "alias elsewhere": alias(HOST, "other-alb-1.us-west-2.elb.amazonaws.com"),
    "plain address": {
        "Name": HOST + ".",
        "Type": "A",
        "TTL": 60,
        "ResourceRecords": [{"Value": "192.0.2.9"}],
    },
    # A name with a CNAME can have no other record: Route 53 would refuse our alias beside it.
    "a CNAME": {
        "Name": HOST + ".",
        "Type": "CNAME",
        "TTL": 300,
        "ResourceRecords": [{"Value": "old-alb-1.us-west-2.elb.amazonaws.com"}],
    },
}


def stops_as_enter_does(kit: Kit, phase: Any) -> str:
    """Plan says "stop" with the words enter then stops with, and enter writes nothing.
    Returns those words."""
    planned = kit.engine.plan_phase(phase.name)
    with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
        phase.enter(kit.ctx(phase.name))
    assert entering.aws_writes == [] and entering.kube_writes == []
    assert (planned.status, planned.problem) == ("stop", stopped.value.message)
    assert planned.changes == []
    return stopped.value.message


def waits_writing_nothing(kit: Kit, phase: Any) -> None:
    """A phase that waits: plan lists no write, and enter (its wait cut short, or over)
    makes none."""
    assert not [c for c in plan(kit, phase) if c.action in WRITES]
    with kit.watching() as entering, contextlib.suppress(StillWaiting):
        phase.enter(kit.ctx(phase.name))
    assert entering.aws_writes == [] and entering.kube_writes == []


# ---- dns_record ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["fresh", "adopt", "drift", "new balancer", "gone"])
def test_dns_record_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = DnsRecordPhase()
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        if scenario == "adopt":  # already pointing at the ALB: used
            upsert(kit, zone, alias(HOST, ALB))
        if scenario in ("drift", "new balancer", "gone"):
            phase.enter(kit.ctx(phase.name))
        if scenario == "drift":  # our record pointed elsewhere by hand
            upsert(kit, zone, alias(HOST, "hand-made.example.net"))
        if scenario == "new balancer":
            kit.done("load_balancer", hostname=NEWER, canonical_hosted_zone_id=ALB_ZONE)
        if scenario == "gone":  # deleted by hand
            upsert(kit, zone, rrsets(kit, zone)[(HOST, "A")], "DELETE")
        changes = check_enter_as_planned(kit, phase)
        expected = {"fresh": CREATE, "adopt": USE, "gone": CREATE}.get(scenario, UPDATE)
        assert [c.action for c in changes] == [expected]
        again = check_enter_as_planned(kit, phase)
        assert [c.action for c in again] == [USE]


@pytest.mark.parametrize("theirs", THEIRS.values(), ids=THEIRS.keys())
def test_dns_record_plan_stops_where_enter_stops_with_its_words(
    tmp_path: Path, theirs: dict
) -> None:
    """foreign: a record of our name that this deployment did not write. Plan once listed
    it as a "stop" change of a phase "to do"."""
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        upsert(kit, zone, theirs)
        words = stops_as_enter_does(kit, DnsRecordPhase())
        assert "which this deployment did not create" in words


def test_dns_record_replaces_a_cname_of_ours_with_its_alias_in_one_change(
    tmp_path: Path,
) -> None:
    """The old setup script pointed kubeflow.<subdomain> at its ALB with a CNAME; taken over
    (import --from-setup-script records it as this deployment's), the alias replaces it in
    one change batch, so the name never answers nothing."""
    phase = DnsRecordPhase()
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        cname = THEIRS["a CNAME"]
        upsert(kit, zone, cname)
        ctx = kit.ctx(phase.name)
        ctx.intend("route53:record", f"{zone}/{HOST}/CNAME", "take over", zone=zone, rrset=cname)
        changes = check_enter_as_planned(kit, phase)
        (change,) = [c for c in changes if c.action in WRITES]
        assert change.action == UPDATE and change.why.startswith(f"replaces {HOST} CNAME")
        (batch,) = [c for c in kit.aws_calls if c.operation == "ChangeResourceRecordSets"][-1:]
        actions = [c["Action"] for c in batch.params["ChangeBatch"]["Changes"]]
        assert actions == ["DELETE", "CREATE"]
        assert (HOST, "CNAME") not in rrsets(kit, zone)
        assert (HOST, "A") in rrsets(kit, zone)
        assert [r.id for r in ctx.owned("route53:record")] == [f"{zone}/{HOST}/A"]


@pytest.mark.parametrize("behind_our_back", [None, "changed", "deleted"])
def test_dns_record_rollback_deletes_what_its_preview_said(
    tmp_path: Path, behind_our_back: str | None
) -> None:
    """ours: deleted; changed by hand (no longer ours): left, and why; already gone:
    nothing to delete, said deleted. The preview once said "delete" of a changed record."""
    phase = DnsRecordPhase()
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        phase.enter(kit.ctx(phase.name))
        kit.done(phase.name)
        if behind_our_back == "changed":
            upsert(kit, zone, alias(HOST, "hand-made.example.net"))
        if behind_our_back == "deleted":
            upsert(kit, zone, rrsets(kit, zone)[(HOST, "A")], "DELETE")
        said = check_rollback_as_previewed(kit, phase)
        if behind_our_back == "changed":
            assert len(said["leave"]) == 1 and said["delete"] == set()
            assert (HOST, "A") in rrsets(kit, zone)
        else:
            assert len(said["delete"]) == 1 and said["leave"] == set()
            assert (HOST, "A") not in rrsets(kit, zone)


def test_dns_record_rollback_leaves_an_adopted_record_as_previewed(tmp_path: Path) -> None:
    phase = DnsRecordPhase()
    with phase_kit(tmp_path) as kit:
        zone = record_kit(kit)
        upsert(kit, zone, alias(HOST, ALB))
        phase.enter(kit.ctx(phase.name))
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        assert len(said["leave"]) == 1 and said["delete"] == set()
        assert (HOST, "A") in rrsets(kit, zone)


# ---- preflight ----------------------------------------------------------------------------------


def test_preflight_plans_a_check_and_enter_writes_nothing(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        eks_cluster(kit, list(network.private.values()))
        changes = check_enter_as_planned(kit, PreflightPhase())
        assert [c.action for c in changes] == ["check"]


def no_cluster(kit: Kit) -> None:
    pass


def cluster_updating(kit: Kit) -> None:
    network = eks_network(kit.client("ec2"))
    eks_cluster(kit, list(network.private.values())).status = "UPDATING"


def no_gateway(kit: Kit) -> None:
    network = eks_network(kit.client("ec2"))
    eks_cluster(kit, list(network.private.values()), gateway=False)


def another_cluster(kit: Kit) -> None:
    network = eks_network(kit.client("ec2"))
    eks_cluster(kit, list(network.private.values()), "https://ABCDEF.gr7.eks.amazonaws.com")


def one_zone(kit: Kit) -> None:
    network = eks_network(kit.client("ec2"), zones=("a",))
    eks_cluster(kit, list(network.private.values()))


def no_root_zone(kit: Kit) -> None:
    network = eks_network(kit.client("ec2"))
    eks_cluster(kit, list(network.private.values()))
    kit.configure(root_zone_id="Z0NOSUCHZONE")


def adopted_controller_too_old(kit: Kit) -> None:
    from test_adopted_controller import REPOSITORY, arrange, deployment

    arrange(kit, deployment(f"{REPOSITORY}:v2.4.0"))


REFUSALS = {
    "no cluster": no_cluster,
    "cluster updating": cluster_updating,
    "no istio gateway": no_gateway,
    "kubeconfig of another cluster": another_cluster,
    "subnets in one zone": one_zone,
    "root zone missing": no_root_zone,
    "adopted controller too old": adopted_controller_too_old,
}


@pytest.mark.parametrize("arrange", REFUSALS.values(), ids=REFUSALS.keys())
def test_preflight_plan_stops_where_enter_stops_with_its_words(
    tmp_path: Path, arrange: Any
) -> None:
    with phase_kit(tmp_path) as kit:
        arrange(kit)
        stops_as_enter_does(kit, PreflightPhase())


# ---- certificates_issued ------------------------------------------------------------------------


def requested(kit: Kit) -> str:
    """The certificates phase done: its certificate requested (pending validation)."""
    certificates_kit(kit)
    CertificatesPhase().enter(kit.ctx("certificates"))
    kit.done("certificates")
    return str(kit.ctx("certificates").outputs["certificate_arn"])


@pytest.mark.parametrize("status", ["PENDING_VALIDATION", "ISSUED"])
def test_certificates_issued_waits_and_writes_nothing(tmp_path: Path, status: str) -> None:
    """It does not write the validation records (the certificates phase does)."""
    phase = CertificatesIssuedPhase()
    with phase_kit(tmp_path) as kit:
        kit.acm_status(requested(kit), status)
        waits_writing_nothing(kit, phase)
        assert (kit.engine.state.phase(phase.name).outputs.get("issued") is not None) == (
            status == "ISSUED"
        )


def test_a_dead_certificate_is_planned_replaced_and_waited_for_not_stopped_at(
    tmp_path: Path,
) -> None:
    """certificates_issued refuses a dead certificate, but `run` never meets one at its
    start: the certificates phase before it finds it dead (verify) and replaces it. So plan
    lists the replacement there and a wait here, not a stop."""
    with phase_kit(tmp_path) as kit:
        arn = requested(kit)
        kit.acm_status(arn, "FAILED", "CAA_ERROR")
        with pytest.raises(PhaseError, match="is FAILED"):
            CertificatesIssuedPhase().enter(kit.ctx("certificates_issued"))
        replaced = kit.engine.plan_phase("certificates")
        assert replaced.status == "drifted"
        assert ("delete", f"ACM certificate {arn}") in [
            (c.action, c.what) for c in replaced.changes
        ]
        waiting = kit.engine.plan_phase("certificates_issued")
        assert (waiting.status, [c.action for c in waiting.changes]) == ("to_do", ["wait"])


# ---- load_balancer ------------------------------------------------------------------------------


@pytest.mark.parametrize("made", [False, True], ids=["no ALB yet", "ALB made"])
def test_load_balancer_waits_and_writes_nothing(tmp_path: Path, made: bool) -> None:
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit, new_balancer(kit, "active")["DNSName"] if made else None)
        waits_writing_nothing(kit, LoadBalancerPhase())


def test_load_balancer_plan_stops_at_a_failed_alb_with_enters_words(tmp_path: Path) -> None:
    """Plan once said "wait" here, and run then stopped."""
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit, new_balancer(kit, "failed")["DNSName"])
        words = stops_as_enter_does(kit, LoadBalancerPhase())
        assert "ALB k8s-istiosys-istioing-0123456789 failed" in words


def test_load_balancer_plan_waits_for_an_ingress_being_deleted(tmp_path: Path) -> None:
    """enter refuses an Ingress being deleted, but `run` never meets one here: the ingress
    phase before this one finds it (verify) and waits for it to go, then makes it anew,
    and the controller another ALB. So plan waits, even for the failed ALB it names."""
    with phase_kit(tmp_path) as kit:
        balancer_kit(kit, new_balancer(kit, "failed")["DNSName"])
        kit.store.add_finalizer(*INGRESS, "ingress.k8s.aws/resources")
        kit.store.delete(*INGRESS)
        with pytest.raises(PhaseError, match="is being deleted"):
            LoadBalancerPhase().enter(kit.ctx("load_balancer"))
        planned = kit.engine.plan_phase("load_balancer")
        assert (planned.status, [c.action for c in planned.changes]) == ("to_do", ["wait"])


# ---- endpoint -----------------------------------------------------------------------------------


@pytest.mark.parametrize("answers", [False, True], ids=["no healthy target", "answers"])
def test_endpoint_checks_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, answers: bool
) -> None:
    monkeypatch.setattr(resolver, "lookup", lambda host, rtype: ["192.0.2.1"])
    monkeypatch.setattr(
        endpoint, "https_check", lambda host, address: {"http_status": 302, "tls_version": "1.3"}
    )
    phase = EndpointPhase()
    with phase_kit(tmp_path) as kit:
        cert = certificate(kit)
        endpoint_kit(kit, alb(kit, targets=1 if answers else 0, cert=cert), cert)
        waits_writing_nothing(kit, phase)
        assert [c.action for c in plan(kit, phase)] == ["check"]
        assert ("url" in kit.ctx(phase.name).outputs) == answers
