"""One decision for the controller phase: plan lists exactly the objects enter then writes
(each object by kind and name, finer than tests/agreement.py's "a Kubernetes object"), a
plan that stops says enter's own words, and the rollback preview says exactly what
rollback deletes and leaves, over the kit's scenarios: fresh, adopt, drift, foreign, gone;
and for rollback: ours, not ours any more, still used by others, already gone.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed, plan
from harness import World, kube_client, kube_get
from phasekit import Kit, phase_kit
from test_backend_group import installed as installed_with_backend_group
from test_leftovers import OLD_ROLE, ROLE, expiring_certificates, runs_as_account
from test_phase_controller import CONTROLLER, ROLE_ARN, controller_kit, foreign_controller, install
from test_release import another_teams_ingress

from orchestrator import preview
from orchestrator.builders.controller_manifests import kinds
from orchestrator.builders.webhook_tls import webhook_certificates
from orchestrator.errors import PhaseError, StillWaiting
from orchestrator.planning import CHECK, CREATE, UPDATE, USE, WAIT, WRITES, Change
from orchestrator.states.controller import ControllerPhase
from orchestrator_sandbox.kubeseed import seed_leftovers

NAME, NAMESPACE = CONTROLLER
ACCOUNT_SHOWN = f"ServiceAccount {NAMESPACE}/{NAME}"
DEPLOYMENT_SHOWN = f"Deployment {NAMESPACE}/{NAME}"
SECRET = ("aws-load-balancer-tls", NAMESPACE)
# The plurals of the controller's kinds that are not the kind, lower case, with an "s".
PLURALS = {"ingressclasses": "IngressClass", "ingressclassparams": "IngressClassParams"}


def written_object(path: str) -> str:
    """The object a Kubernetes write request touched, as plan names it ("Kind ns/name")."""
    parts = urlsplit(path).path.strip("/").split("/")
    plural, name = parts[-2], parts[-1]
    namespace = parts[parts.index("namespaces") + 1] if "namespaces" in parts else None
    kind = PLURALS.get(plural) or next(k for _, k in kinds() if k.lower() + "s" == plural)
    return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"


def enter_as_planned(kit: Kit) -> list[Change]:
    """Plan, then enter (the Deployment made available when enter waits for it, as kubelet
    would): the objects enter wrote are exactly those plan listed as written. Returns the
    plan."""
    phase = ControllerPhase()
    changes = plan(kit, phase)
    with kit.watching() as entering:
        try:
            phase.enter(kit.ctx(phase.name))
        except StillWaiting:
            kit.make_available(*CONTROLLER)
            phase.enter(kit.ctx(phase.name))
    written = {written_object(w.split(" ", 1)[1]) for w in entering.kube_writes}
    listed = {c.what for c in changes if c.action in WRITES}
    assert written == listed, f"enter wrote {sorted(written)}; plan listed {sorted(listed)}"
    return changes


def actions(changes: list[Change]) -> dict[str, str]:
    return {c.what: c.action for c in changes}


# ---- forward: fresh, adopt, drift, gone ---------------------------------------------------------


def test_fresh_plan_lists_every_object_the_waits_and_the_check(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        changes = enter_as_planned(kit)
        assert {c.action for c in changes} == {CREATE, WAIT, CHECK}
        waits = [c.what for c in changes if c.action == WAIT]
        assert waits == [
            "for the controller's CustomResourceDefinitions to be Established",
            f"for {DEPLOYMENT_SHOWN} to be available",
            "for the controller's pods to answer its admission webhooks",
        ]
        (check,) = [c.what for c in changes if c.action == CHECK]
        assert "webhook certificate" in check
        # Entered again: each object, unchanged, used as it is (nothing written), as plan says.
        again = enter_as_planned(kit)
        assert {c.action for c in again} == {USE, WAIT, CHECK}


def test_adopt_a_controller_installed_by_someone_else_plans_use_and_writes_nothing(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        theirs = foreign_controller("kube-eks-cluster")
        theirs["metadata"]["labels"] = {"app.kubernetes.io/managed-by": "Helm"}
        kit.store.create(theirs)
        kit.make_available(*CONTROLLER)
        changes = check_enter_as_planned(kit, ControllerPhase())
        assert [c.action for c in changes] == [USE, WAIT]
        assert enter_as_planned(kit) == changes


def test_adopt_objects_not_ours_that_work_as_they_are(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        kit.store.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": NAME,
                    "namespace": NAMESPACE,
                    "annotations": {"eks.amazonaws.com/role-arn": ROLE_ARN},
                },
            }
        )
        changes = enter_as_planned(kit)
        assert actions(changes)[ACCOUNT_SHOWN] == USE


def test_adopt_leftovers_of_an_earlier_install_are_taken_over_as_planned(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit, ROLE)
        seed_leftovers(kit.store, OLD_ROLE)
        changes = enter_as_planned(kit)
        assert actions(changes)[f"Secret {SECRET[1]}/{SECRET[0]}"] == UPDATE


@pytest.mark.parametrize(
    "drift",
    [
        "ServiceAccount deleted",
        "ClusterRole deleted",
        "ServiceAccount replaced, annotated",
        "ServiceAccount replaced, not annotated",
        "caBundle of another CA",
        "certificate expiring",
    ],
)
def test_drift_plan_lists_what_enter_writes(tmp_path: Path, drift: str) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        install(kit)
        kit.done("controller")
        if drift == "ServiceAccount deleted":
            kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
        elif drift == "ClusterRole deleted":
            kit.store.delete("rbac.authorization.k8s.io/v1", "ClusterRole", NAME)
        elif drift.startswith("ServiceAccount replaced"):
            kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
            annotated = drift.endswith(", annotated")
            annotations = {"eks.amazonaws.com/role-arn": ROLE_ARN} if annotated else {}
            kit.store.create(
                {
                    "apiVersion": "v1",
                    "kind": "ServiceAccount",
                    "metadata": {"name": NAME, "namespace": NAMESPACE, "annotations": annotations},
                }
            )
        elif drift == "caBundle of another CA":
            ca = base64.b64encode(webhook_certificates()[0].encode()).decode()
            kind = ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration")
            validating = kit.store.get(*kind, "aws-load-balancer-webhook")
            for webhook in validating["webhooks"]:
                webhook["clientConfig"]["caBundle"] = ca
            kit.store.apply(validating, "someone-else", force=True)
        else:
            secret = kit.store.get("v1", "Secret", *SECRET)
            pems = expiring_certificates(days=10)
            keys = ("ca.crt", "tls.crt", "tls.key")
            secret["data"] = {
                k: base64.b64encode(v.encode()).decode() for k, v in zip(keys, pems, strict=True)
            }
            kit.store.apply(secret, "someone-else", force=True)
        planned = kit.engine.plan_phase("controller")
        # Replaced by one that names our role, it still works: the run leaves it as it is.
        still_true = drift == "ServiceAccount replaced, annotated"
        assert planned.status == ("done" if still_true else "drifted"), planned
        changes = enter_as_planned(kit)
        if "deleted" in drift:
            assert CREATE in actions(changes).values()
        assert ControllerPhase().verify(kit.ctx("controller")) is None


def test_gone_the_deployment_deleted_by_hand_is_planned_and_made_again(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        install(kit)
        kit.store.delete("apps/v1", "Deployment", *CONTROLLER)
        changes = enter_as_planned(kit)
        assert actions(changes)[DEPLOYMENT_SHOWN] == CREATE


# ---- foreign: plan stops with enter's words ------------------------------------------------------


@pytest.mark.parametrize(
    "foreign",
    ["controller of another cluster", "another controller's account", "another's Secret"],
)
def test_foreign_plan_stops_where_enter_stops_with_its_words(tmp_path: Path, foreign: str) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit, ROLE)
        if foreign == "controller of another cluster":  # plan once said "use" here
            kit.store.create(foreign_controller("kube-eks-staging"))
            kit.make_available(*CONTROLLER)
        elif foreign == "another controller's account":
            seed_leftovers(kit.store, OLD_ROLE)
            kit.store.create(runs_as_account("alb-ingress"))
        else:  # the account names our role (used as is); a controller not ours mounts the Secret
            seed_leftovers(kit.store, ROLE)
            mounting = foreign_controller("kube-eks-cluster")
            mounting["metadata"]["name"] = "alb-ingress"
            volume = {"name": "cert", "secret": {"secretName": SECRET[0]}}
            mounting["spec"]["template"]["spec"]["volumes"] = [volume]
            kit.store.create(mounting)
        planned = kit.engine.plan_phase("controller")
        with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
            ControllerPhase().enter(kit.ctx("controller"))
        assert entering.kube_writes == []
        assert (planned.status, planned.problem) == ("stop", stopped.value.message)
        if foreign == "another's Secret":
            assert stopped.value.message.startswith(f"Secret {NAMESPACE}/{SECRET[0]} cannot be")


# ---- rollback: ours, not ours any more, still used, already gone ---------------------------------


def installed(kit: Kit) -> Any:
    controller_kit(kit)
    ctx = install(kit)
    kit.done("controller")
    return ctx


def test_rollback_of_ours_deletes_what_its_preview_said(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx = installed(kit)
        applied = {r.describe() for r in ctx.record.resources}
        said = check_rollback_as_previewed(kit, ControllerPhase())
        assert said == {"delete": applied, "leave": set()}


def test_rollback_of_an_object_not_ours_any_more_leaves_it_as_previewed(tmp_path: Path) -> None:
    """The preview once said "delete" here; rollback then left it."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed(kit)
        account = kit.store.get("v1", "ServiceAccount", *CONTROLLER)
        account["metadata"]["labels"] = kit.other_state().labels
        kit.store.apply(account, "someone-else", force=True)
        said = check_rollback_as_previewed(kit, ControllerPhase())
        assert said["leave"] == {ACCOUNT_SHOWN}
        assert kit.store.get("v1", "ServiceAccount", *CONTROLLER) is not None


def test_rollback_of_a_controller_still_used_leaves_it_as_previewed(tmp_path: Path) -> None:
    """The preview once said "delete" for every object; rollback then released them all."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx = installed(kit)
        applied = {r.describe() for r in ctx.record.resources}
        another_teams_ingress(kit)
        engine = kit.engine
        phases = list(engine.phases.values())
        steps = preview.rollback_steps(engine.state, phases, "subnet_tags", engine=engine)
        said = check_rollback_as_previewed(kit, ControllerPhase())
        assert said == {"delete": set(), "leave": applied}
        whys = {s.why for s in steps if s.phase == "controller"}
        assert whys == {
            "the AWS Load Balancer Controller is still used by Ingress team-data/dashboard"
        }
        assert kit.store.get("apps/v1", "Deployment", *CONTROLLER) is not None


def test_rollback_of_objects_already_gone_is_as_previewed(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        installed(kit)
        kit.store.delete("apps/v1", "Deployment", *CONTROLLER)
        kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
        check_rollback_as_previewed(kit, ControllerPhase())


def test_rollback_of_an_adopted_controller_leaves_it_as_previewed(tmp_path: Path) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        kit.store.create(foreign_controller("kube-eks-cluster"))
        kit.make_available(*CONTROLLER)
        ControllerPhase().enter(kit.ctx("controller"))
        kit.done("controller")
        said = check_rollback_as_previewed(kit, ControllerPhase())
        assert said == {"delete": set(), "leave": {DEPLOYMENT_SHOWN}}


def test_the_rollback_preview_names_the_backend_group_rollback_deletes(tmp_path: Path) -> None:
    """The cluster's backend security group is the controller's, not in the state file:
    rollback deletes it once nothing the controller finalizes is left; the preview once
    did not say so."""
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        ctx, group = installed_with_backend_group(kit)
        kit.done("controller")
        engine = kit.engine
        steps = [
            s
            for s in preview.rollback_steps(
                engine.state, list(engine.phases.values()), "subnet_tags", engine=engine
            )
            if s.phase == "controller"
        ]
        said = {s.what for s in steps if s.action == "delete"}
        with kit.watching() as rolling_back:
            ControllerPhase().rollback(ctx)
        (deleted,) = rolling_back.calls("DeleteSecurityGroup")
        assert deleted.params["GroupId"] == group
        assert f"ec2:security-group {group}" in said
        objects = {s for s in said if not s.startswith("ec2:")}
        assert objects and all(f"deleted {s}\n" in kit.said() for s in objects)


# ---- end to end: the CLI's rollback preview -----------------------------------------------------


@pytest.mark.complete  # a world and two commands: CI runs it (`pytest --complete`)
def test_the_rollback_preview_says_the_controller_another_team_uses_is_left(
    tmp_path: Path, workdir: Path
) -> None:
    """The preview once listed every object of the controller as deleted, from the state
    file, and asked for --yes; rollback then left them all, for the data team's Ingress.
    Nothing deleted: it goes on without asking."""
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, second_team=True) as world:
        config = str(world.config)
        ran = world.cli("--config", config, "run", "--until", "controller", cwd=workdir)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        back = world.cli(
            "--config", config, "rollback", "--to", "subnet_tags", "--json", cwd=workdir
        )
        events = [json.loads(line) for line in back.stdout.splitlines() if line.startswith("{")]
        assert events[-1]["exit_code"] == 0, back.stdout + back.stderr
        (shown,) = [e["steps"] for e in events if e["event"] == "preview"]
        ours = [s for s in shown if s["phase"] == "controller"]
        assert {s["action"] for s in ours} == {"leave"}, ours
        reason = "the AWS Load Balancer Controller is still used by Ingress team-data/dashboard"
        assert all(s["why"].startswith(reason) for s in ours), ours
        assert DEPLOYMENT_SHOWN in {s["what"] for s in ours}
        assert kube_get(kube_client(world), "apps/v1", "Deployment", *CONTROLLER) is not None
