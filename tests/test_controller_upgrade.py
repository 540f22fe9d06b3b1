"""The controller's release is a setting: our controller, installed at one bundled release,
is upgraded in place when the config asks another (in process: the Kubernetes API emulator
and moto, the Deployment rolled out when the test says so, as kubelet would).

The IAM policy's side of an upgrade is in test_phase_controller_iam.py; the upgrade end to
end, against the sandbox world, in test_e2e_upgrade.py; crashes at each of its writes in
test_crash_sweep.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from agreement import plan
from phasekit import Kit, phase_kit
from test_agreement_controller import DEPLOYMENT_SHOWN, written_object
from test_phase_controller import CONTROLLER, controller_kit, install

from kube_api_emulator import webhooks
from orchestrator.builders.running_controller import controller_version
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.planning import CHECK, UPDATE, USE, WAIT, WRITES
from orchestrator.states.controller import ControllerPhase, difference

OLD, NEW = "v3.4.3", "v3.5.0"
ROLLOUT = f"for {DEPLOYMENT_SHOWN} to roll out controller {NEW}"
ANSWERING = "for the controller's pods to answer its admission webhooks"


def deployment(kit: Kit) -> dict[str, Any]:
    found = kit.store.get("apps/v1", "Deployment", *CONTROLLER)
    assert found is not None
    return found


def roll_out(kit: Kit) -> None:
    """The new pods up and ready, the old ones gone, as the deployment controller ends a
    rollout: every replica of the latest generation updated and available, answering the
    controller's admission webhooks."""
    kit.make_available(*CONTROLLER)
    replicas = deployment(kit)["spec"]["replicas"]
    kit.store.patch_status(
        "apps/v1", "Deployment", *CONTROLLER, {"updatedReplicas": replicas, "replicas": replicas}
    )
    kit.store.webhook_caller = lambda webhook, request: {"allowed": True}


def installed_at(kit: Kit, version: str) -> None:
    controller_kit(kit)
    kit.configure(controller_version=version)
    install(kit)
    assert controller_version(deployment(kit)) == tuple(int(p) for p in version[1:].split("."))


def test_a_newer_release_asked_is_an_upgrade_in_place_in_the_order_it_needs(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, OLD)
        phase = ControllerPhase()
        assert phase.verify(kit.ctx("controller")) is None
        kit.configure(controller_version=NEW)
        ctx = kit.ctx("controller")
        assert phase.verify(ctx) == f"it runs {OLD}, the config asks for {NEW}"

        changes = plan(kit, phase)
        # Only the Deployment changes between these two releases (its image): it names the
        # upgrade; every other object is used as it is.
        writes = [c for c in changes if c.action in WRITES]
        assert [(c.action, c.what, c.why) for c in writes] == [
            (UPDATE, DEPLOYMENT_SHOWN, f"the AWS Load Balancer Controller {OLD} → {NEW}")
        ]
        assert {c.why for c in changes if c.action == USE} == {"ours, unchanged"}
        assert [c.action for c in changes][-3:] == [WAIT, CHECK, WAIT]
        assert [c.what for c in changes if c.action == WAIT][-2:] == [ROLLOUT, ANSWERING]

        with kit.watching() as entering, pytest.raises(StillWaiting) as waiting:
            phase.enter(ctx)
        assert waiting.value.waiting_for == ROLLOUT[len("for ") :]
        assert {written_object(w.split(" ", 1)[1]) for w in entering.kube_writes} == {
            DEPLOYMENT_SHOWN
        }
        image = deployment(kit)["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image.endswith(f":{NEW}")
        # Still the old generation's status: not rolled out, whatever it said before.
        assert phase.verify(ctx) is not None

        # Rolled out, but no pod answers the webhooks yet: the upgrade is not over.
        kit.make_available(*CONTROLLER)
        kit.store.webhook_caller = webhooks.no_pods
        replicas = deployment(kit)["spec"]["replicas"]
        status = {"updatedReplicas": replicas, "replicas": replicas}
        kit.store.patch_status("apps/v1", "Deployment", *CONTROLLER, status)
        with pytest.raises(StillWaiting) as waiting:
            phase.enter(ctx)
        assert waiting.value.waiting_for == ANSWERING[len("for ") :]

        roll_out(kit)
        with kit.watching() as resumed:
            phase.enter(ctx)
        assert resumed.kube_writes == []  # the webhooks' dry run writes nothing
        assert phase.verify(ctx) is None
        with kit.watching() as planning:
            again = plan(kit, phase)
        assert planning.kube_writes == [] and not [c for c in again if c.action in WRITES]


def test_an_upgrade_resumed_before_its_rollout_ended_still_waits_for_it(tmp_path: Path) -> None:
    """The first run's rollout wait gave up (the new pods never became ready) while the
    old pods kept the Deployment available: resumed, the phase, though the Deployment
    already names the new release, waits for the rollout again, not for availability."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, OLD)
        kit.configure(controller_version=NEW)
        phase, ctx = ControllerPhase(), kit.ctx("controller")
        with pytest.raises(StillWaiting):
            phase.enter(ctx)
        kit.make_available(*CONTROLLER)  # the old pods, still available
        kit.store.patch_status("apps/v1", "Deployment", *CONTROLLER, {"updatedReplicas": 0})
        with pytest.raises(StillWaiting) as waiting:
            phase.enter(ctx)
        assert waiting.value.waiting_for == ROLLOUT[len("for ") :]
        roll_out(kit)
        phase.enter(ctx)
        assert phase.verify(ctx) is None


def test_what_changed_besides_the_release_is_named_and_put_back(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, NEW)
        edited = deployment(kit)
        container = edited["spec"]["template"]["spec"]["containers"][0]
        container["args"] = [*container["args"][:-1], "--by-hand"]
        del edited["status"], edited["metadata"]["managedFields"]
        kit.store.apply(edited, "kubectl-edit", force=True)
        kit.make_available(*CONTROLLER)
        ctx = kit.ctx("controller")
        problem = ControllerPhase().verify(ctx)
        assert problem is not None
        assert problem.startswith(f"{DEPLOYMENT_SHOWN} is not as controller {NEW} has it")
        assert "spec.template.spec.containers[0].args" in problem
        (change,) = [c for c in plan(kit, ControllerPhase()) if c.action in WRITES]
        assert change.what == DEPLOYMENT_SHOWN and change.why.startswith("changed at spec.")


def test_a_webhook_configuration_changed_by_hand_is_named_and_put_back(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, NEW)
        kind = "ValidatingWebhookConfiguration"
        api = "admissionregistration.k8s.io/v1"
        edited = kit.store.get(api, kind, "aws-load-balancer-webhook")
        assert edited is not None
        edited["webhooks"][0]["failurePolicy"] = "Ignore"
        del edited["metadata"]["managedFields"]
        kit.store.apply(edited, "kubectl-edit", force=True)
        problem = ControllerPhase().verify(kit.ctx("controller"))
        assert problem == (
            f"{kind} aws-load-balancer-webhook is not as controller {NEW} has it "
            "(webhooks[0].failurePolicy)"
        )
        (change,) = [c for c in plan(kit, ControllerPhase()) if c.action in WRITES]
        assert (change.what, change.why) == (
            f"{kind} aws-load-balancer-webhook",
            "changed at webhooks[0].failurePolicy",
        )
        ControllerPhase().enter(kit.ctx("controller"))
        assert ControllerPhase().verify(kit.ctx("controller")) is None


def test_an_older_release_is_refused_before_any_write_unless_asked(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, NEW)
        kit.configure(controller_version=OLD)
        ctx = kit.ctx("controller")
        assert ControllerPhase().verify(ctx) == f"it runs {NEW}, the config asks for {OLD}"
        with kit.watching() as refused:
            for attempt in (
                lambda: plan(kit, ControllerPhase()),
                lambda: ControllerPhase().enter(ctx),
            ):
                with pytest.raises(PhaseError) as stop:
                    attempt()
                assert stop.value.message == (
                    f"the AWS Load Balancer Controller runs {NEW} and the config asks for {OLD}, "
                    "an older release: orchestrator does not downgrade it unless asked to"
                )
                assert "--allow-downgrade" in stop.value.hint
        assert refused.kube_writes == []
        kit.engine.allow_downgrade = True
        writes = [c for c in plan(kit, ControllerPhase()) if c.action in WRITES]
        assert [c.why for c in writes] == [f"the AWS Load Balancer Controller {NEW} → {OLD}"]


def test_rollback_after_an_upgrade_removes_the_controller_as_before(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed_at(kit, OLD)
        kit.configure(controller_version=NEW)
        ctx = kit.ctx("controller")
        with pytest.raises(StillWaiting):
            ControllerPhase().enter(ctx)
        roll_out(kit)
        ControllerPhase().enter(ctx)
        ControllerPhase().rollback(ctx)
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is None
        assert ctx.owned("kubernetes:object") == []


@pytest.mark.parametrize(
    "wanted, live, where",
    [
        ({"a": {"b": 1}}, {"a": {"b": 1, "c": 2}, "d": 3}, None),  # what the server adds
        ({"a": {"b": 1}}, {"a": {"b": 2}}, "a.b"),
        ({"a": [{"b": 1}, {"b": 2}]}, {"a": [{"b": 1}, {"b": 3}]}, "a[1].b"),
        ({"a": [1, 2]}, {"a": [1]}, "a"),
        ({"a": {}, "b": ""}, {}, None),  # empty: the server drops it
        ({"a": {"b": 1}}, {}, "a"),
    ],
)
def test_difference_names_the_first_field_the_live_object_does_not_hold(
    wanted: dict[str, Any], live: dict[str, Any], where: str | None
) -> None:
    assert difference(wanted, live) == where
