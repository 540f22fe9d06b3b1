"""One decision for the ingress phase: plan lists exactly what enter then writes, and the
rollback preview exactly what rollback deletes and leaves, and why (tests/agreement.py),
over the kit's scenarios: fresh, drift (edited, deleted, being deleted), foreign, and for
rollback ours, not ours any more, already gone, and the controller missing.

The kit runs no load balancer controller: where its teardown matters, the test does what
it would (removes its finalizer) between two passes of the rollback.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed, plan
from phasekit import Kit, eks_network, phase_kit
from test_phase_ingress import (
    CERT,
    FINALIZER,
    INGRESS,
    STACK,
    A,
    ingress_entered,
    ingress_kit,
    ingress_named,
    stack_tags,
    the_ingress,
)
from test_webhooks import CONTROLLER, with_our_controller

from orchestrator import preview
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.planning import CREATE, UPDATE, WAIT
from orchestrator.states.ingress import IngressPhase

WHAT = f"Ingress {STACK} (internet-facing ALB, HTTPS with the certificates)"
RESOURCE = f"Ingress {STACK}"


def actions(changes: list[Any]) -> list[str]:
    return [c.action for c in changes]


def entered(kit: Kit) -> None:
    """The phase entered and done, as the rollback preview finds it."""
    ingress_entered(kit)
    kit.done("ingress")


# ---- plan and enter -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["fresh", "edited", "deleted", "new certificate", "again"])
def test_ingress_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = IngressPhase()
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        if scenario != "fresh":
            phase.enter(kit.ctx(phase.name))
        if scenario == "edited":  # an annotation changed by hand
            edited = ingress_named({"annotations": {A + "scheme": "internal"}})
            kit.store.apply(edited, "kubectl", force=True)
        if scenario == "deleted":
            kit.store.delete(*INGRESS)
        if scenario == "new certificate":
            ingress_kit(kit, (CERT.replace("1111", "9999"),))
        changes = check_enter_as_planned(kit, phase)
        expected = CREATE if scenario in ("fresh", "deleted") else UPDATE
        assert [(c.action, c.what) for c in changes] == [(expected, WHAT)]


def test_ingress_plan_waits_for_one_being_deleted_then_makes_it_anew(tmp_path: Path) -> None:
    """An interrupted rollback left our Ingress Terminating: plan once said "update"
    (applied again), while enter waits for it to go and then creates it."""
    phase = IngressPhase()
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        phase.enter(kit.ctx(phase.name))
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        kit.store.delete(*INGRESS)
        changes = plan(kit, phase)
        assert actions(changes) == [WAIT, CREATE]
        assert "being deleted" in changes[0].what
        with kit.watching() as entering, pytest.raises(StillWaiting):
            phase.enter(kit.ctx(phase.name))
        assert entering.kube_writes == []  # the wait comes first, as plan listed
        kit.store.remove_finalizer(*INGRESS, FINALIZER)  # the controller's teardown ends
        assert actions(check_enter_as_planned(kit, phase)) == [CREATE]


@pytest.mark.parametrize("whose", ["unlabelled", "other state file"])
def test_ingress_plan_stops_where_enter_stops_with_its_words(tmp_path: Path, whose: str) -> None:
    """foreign: an Ingress of our name not ours. Plan once listed a "stop" change and
    said the phase was to do."""
    with phase_kit(tmp_path) as kit:
        ingress_kit(kit)
        marks = {} if whose == "unlabelled" else kit.other_state().labels
        kit.store.create(ingress_named({"labels": marks}, {"ingressClassName": "nginx"}))
        planned = kit.engine.plan_phase("ingress")
        with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
            IngressPhase().enter(kit.ctx("ingress"))
        assert entering.kube_writes == []
        assert (planned.status, planned.problem) == ("stop", stopped.value.message)


# ---- rollback and its preview -------------------------------------------------------------------


def previewed(kit: Kit) -> list[preview.Step]:
    """The ingress phase's lines of the rollback preview (`rollback --to
    certificates_issued`), as the CLI makes it."""
    engine = kit.engine
    steps = preview.rollback_steps(
        engine.state, list(engine.phases.values()), "certificates_issued", engine=engine
    )
    return [s for s in steps if s.phase == "ingress"]


class InPasses:
    """The ingress phase whose rollback is run pass after pass, as `resume` would, until it
    ends; `between` does what the world would meanwhile (a controller becomes available, or
    ends its teardown)."""

    name = "ingress"

    def __init__(self, between: Callable[[], None] = lambda: None) -> None:
        self.between = between

    def rollback(self, ctx: Any) -> None:
        for _ in range(8):
            try:
                IngressPhase().rollback(ctx)
                return
            except StillWaiting:
                self.between()
        raise AssertionError("the rollback does not end")


def test_ingress_rollback_deletes_it_and_says_the_controller_tears_the_alb_down(
    tmp_path: Path,
) -> None:
    """ours: held by the controller's finalizer, the controller running."""
    from test_seams import running_controller

    with phase_kit(tmp_path) as kit:
        running_controller(kit, "arn:aws:iam::123456789012:role/ours")
        entered(kit)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        (step,) = previewed(kit)
        assert (step.action, step.what) == ("delete", RESOURCE)
        assert "the controller then deletes the ALB" in step.why

        def controller_tears_down() -> None:
            kit.store.remove_finalizer(*INGRESS, FINALIZER)

        said = check_rollback_as_previewed(kit, InPasses(controller_tears_down))
        assert said == {"delete": {RESOURCE}, "leave": set()}
        assert the_ingress(kit) is None


def test_ingress_rollback_leaves_one_not_ours_any_more_as_previewed(tmp_path: Path) -> None:
    """The preview once said "delete"; rollback then left it."""
    with phase_kit(tmp_path) as kit:
        entered(kit)
        theirs = ingress_named({"labels": kit.other_state().labels})
        kit.store.apply(theirs, "someone-else", force=True)
        (step,) = previewed(kit)
        assert step.action == "leave" and "belongs to state file ffffffffffffffff" in step.why
        said = check_rollback_as_previewed(kit, IngressPhase())
        assert said == {"delete": set(), "leave": {RESOURCE}}
        assert the_ingress(kit) is not None


def test_ingress_rollback_of_one_already_gone_says_so(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        entered(kit)
        kit.store.delete(*INGRESS)
        (step,) = previewed(kit)
        assert (step.action, step.why) == ("delete", "already gone")
        check_rollback_as_previewed(kit, IngressPhase())


def test_ingress_rollback_of_one_gone_names_what_outlived_it_in_aws(tmp_path: Path) -> None:
    """gone, but its ALB outlived it (no controller to delete it): deleted by its tags."""
    with phase_kit(tmp_path) as kit:
        network = eks_network(kit.client("ec2"))
        kit.preflight_done("https://oidc.example", vpc_id=network.vpc_id)
        entered(kit)
        kit.client("elbv2").create_load_balancer(
            Name="k8s-ours",
            Subnets=list(network.public.values())[:2],
            Tags=stack_tags(kit.owner.tags),
        )
        kit.store.delete(*INGRESS)
        (step,) = previewed(kit)
        assert step.action == "delete"
        assert step.why.startswith("already gone") and "load balancer k8s-ours" in step.why
        check_rollback_as_previewed(kit, InPasses())
        assert kit.client("elbv2").describe_load_balancers()["LoadBalancers"] == []


def test_ingress_rollback_with_our_controller_missing_says_it_is_installed_again(
    tmp_path: Path,
) -> None:
    """controller missing (restored): the preview once said nothing of the reinstall."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        with_our_controller(kit)
        kit.done("controller")
        kit.done("ingress")
        kit.store.delete(*CONTROLLER)
        (step,) = previewed(kit)
        assert step.action == "delete"
        assert "the controller then deletes the ALB" in step.why
        assert "installed again" in step.why

        def world() -> None:
            """The reinstalled controller becomes available, then does its teardown."""
            controller = kit.store.get(*CONTROLLER)
            if controller is None:
                return
            if not (controller.get("status") or {}).get("availableReplicas"):
                kit.make_available(*CONTROLLER[2:])
                return
            kit.store.remove_finalizer(*INGRESS, FINALIZER)

        said = check_rollback_as_previewed(kit, InPasses(world))
        assert said["delete"] == {RESOURCE}
        assert "installing it again to tear the ALB down" in kit.said()


def test_ingress_rollback_with_a_controller_not_ours_gone_says_it_is_done_by_tags(
    tmp_path: Path,
) -> None:
    """The controller is gone and was not this deployment's: its teardown is done here."""
    with phase_kit(tmp_path) as kit:
        entered(kit)
        kit.store.add_finalizer(*INGRESS, FINALIZER)
        (step,) = previewed(kit)
        assert step.action == "delete"
        assert "not this deployment's to bring back" in step.why
        assert "deleted by its tags" in step.why
        check_rollback_as_previewed(kit, InPasses())
        assert the_ingress(kit) is None
