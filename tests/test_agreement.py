"""One decision per phase: plan lists exactly what enter then writes, and the rollback
preview exactly what rollback deletes and leaves (tests/agreement.py), for controller_iam
and certificates over the kit's scenarios: fresh, adopt, drift, foreign, gone.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from agreement import check_enter_as_planned, check_rollback_as_previewed, plan
from phasekit import ACCOUNT, Kit, phase_kit
from test_phase_certificates import certificates_kit, delete_validation_record

from orchestrator.errors import PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG
from orchestrator.planning import CREATE, DELETE, UPDATE, USE, WRITES
from orchestrator.states.certificates import CertificatesPhase
from orchestrator.states.controller_iam import ControllerIamPhase

HOST = "oidc.eks.us-west-2.amazonaws.com/id/CAFE"
ISSUER = f"https://{HOST}"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"
DENY_ALL = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}
)


def role_name(kit: Kit) -> str:
    return f"alb-controller-{kit.owner.deployment}"[:64]


def trusting(provider: str) -> str:
    """A trust policy of another IRSA role of the cluster (EBS CSI, say)."""
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": provider},
        "Action": "sts:AssumeRoleWithWebIdentity",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]})


def actions(changes: list, action: str) -> list[str]:
    return [c.what for c in changes if c.action == action]


@contextlib.contextmanager
def controller_iam_done(tmp_path: Path) -> Iterator[Kit]:
    """A kit where controller_iam has been entered and is done: what its rollbacks start from."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        phase = ControllerIamPhase()
        phase.enter(kit.ctx(phase.name))
        kit.done(phase.name)
        yield kit


# ---- controller_iam -----------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["fresh", "adopt", "drift", "gone"])
def test_controller_iam_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = ControllerIamPhase()
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        iam = kit.client("iam")
        if scenario == "adopt":  # the cluster's provider, there before us
            iam.create_open_id_connect_provider(
                Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9" * 40]
            )
        if scenario in ("drift", "gone"):
            phase.enter(kit.ctx(phase.name))
        if scenario == "drift":  # the policy and the role's trust edited by hand
            arn = f"arn:aws:iam::{ACCOUNT}:policy/{role_name(kit)}"
            iam.create_policy_version(PolicyArn=arn, PolicyDocument=DENY_ALL, SetAsDefault=True)
            other = f"arn:aws:iam::{ACCOUNT}:oidc-provider/elsewhere"
            iam.update_assume_role_policy(RoleName=role_name(kit), PolicyDocument=trusting(other))
        if scenario == "gone":  # the role deleted by hand
            iam.detach_role_policy(
                RoleName=role_name(kit),
                PolicyArn=f"arn:aws:iam::{ACCOUNT}:policy/{role_name(kit)}",
            )
            iam.delete_role(RoleName=role_name(kit))
        changes = check_enter_as_planned(kit, phase)
        if scenario == "drift":
            assert len(actions(changes, UPDATE)) == 2
        if scenario == "gone":
            assert len(actions(changes, CREATE)) == 2  # the role and its attachment
        # Entered again: nothing planned, nothing written.
        again = check_enter_as_planned(kit, phase)
        assert {c.action for c in again} == {USE}


@pytest.mark.parametrize("whose", ["untagged", "other state file"])
def test_controller_iam_plan_stops_where_enter_stops_with_its_words(
    tmp_path: Path, whose: str
) -> None:
    """foreign: a role of our name not ours."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        tags = [] if whose == "untagged" else kit.other_state().tags
        kit.client("iam").create_role(
            RoleName=role_name(kit), AssumeRolePolicyDocument=DENY_ALL, Tags=tags
        )
        planned = kit.engine.plan_phase("controller_iam")
        with pytest.raises(PhaseError) as entering:
            ControllerIamPhase().enter(kit.ctx("controller_iam"))
        assert (planned.status, planned.problem) == ("stop", entering.value.message)


def test_controller_iam_plan_stops_at_a_provider_without_the_sts_audience(
    tmp_path: Path,
) -> None:
    """Plan once said "use provider" here, and run then stopped."""
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        kit.client("iam").create_open_id_connect_provider(
            Url=ISSUER, ClientIDList=["kubernetes"], ThumbprintList=["9" * 40]
        )
        planned = kit.engine.plan_phase("controller_iam")
        with kit.watching() as entering, pytest.raises(PhaseError) as stopped:
            ControllerIamPhase().enter(kit.ctx("controller_iam"))
        assert entering.aws_writes == []
        assert planned.status == "stop"
        assert planned.problem == stopped.value.message
        assert "does not accept the audience sts.amazonaws.com" in planned.problem


def test_controller_iam_rollback_deletes_what_its_preview_said(tmp_path: Path) -> None:
    phase = ControllerIamPhase()
    with controller_iam_done(tmp_path) as kit:
        said = check_rollback_as_previewed(kit, phase)
        assert len(said["delete"]) == 4 and said["leave"] == set()
        assert kit.client("iam").list_roles()["Roles"] == []


def test_controller_iam_rollback_leaves_the_provider_other_roles_trust_as_previewed(
    tmp_path: Path,
) -> None:
    """The preview once said `delete iam:oidc-provider`; rollback then left it."""
    phase = ControllerIamPhase()
    with controller_iam_done(tmp_path) as kit:
        iam = kit.client("iam")
        iam.create_role(RoleName="ebs-csi", AssumeRolePolicyDocument=trusting(PROVIDER))
        said = check_rollback_as_previewed(kit, phase)
        (left,) = said["leave"]
        assert PROVIDER in left
        assert len(said["delete"]) == 3
        assert [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]
        assert "IAM roles trust it for IRSA (ebs-csi)" in kit.said()


def test_controller_iam_rollback_leaves_a_role_another_state_file_tagged_as_previewed(
    tmp_path: Path,
) -> None:
    """foreign: the role's tags now name another state file."""
    phase = ControllerIamPhase()
    with controller_iam_done(tmp_path) as kit:
        iam = kit.client("iam")
        iam.tag_role(RoleName=role_name(kit), Tags=kit.other_state().tags)
        said = check_rollback_as_previewed(kit, phase)
        assert {w for w in said["leave"] if role_name(kit) in w}  # the role, its attachment
        assert role_name(kit) in [r["RoleName"] for r in iam.list_roles()["Roles"]]
        tags = {t["Key"]: t["Value"] for t in iam.list_role_tags(RoleName=role_name(kit))["Tags"]}
        assert tags[OWNER_TAG] == kit.owner.deployment and STATE_TAG in tags


def test_a_plan_that_leaves_out_a_change_fails_the_agreement_check(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    phase = ControllerIamPhase()
    right = ControllerIamPhase.plan

    def forgetful(self: ControllerIamPhase, ctx: object) -> list:
        return [c for c in right(self, ctx) if "attachment" not in c.what]

    monkeypatch.setattr(ControllerIamPhase, "plan", forgetful)
    with phase_kit(tmp_path) as kit:
        kit.preflight_done(ISSUER)
        with pytest.raises(AssertionError, match="enter wrote"):
            check_enter_as_planned(kit, phase)


# ---- certificates -------------------------------------------------------------------------------


@pytest.mark.parametrize("scenario", ["fresh", "dead", "gone"])
def test_certificates_enter_writes_what_plan_listed(tmp_path: Path, scenario: str) -> None:
    phase = CertificatesPhase()
    with phase_kit(tmp_path) as kit:
        zone = certificates_kit(kit)
        if scenario != "fresh":
            phase.enter(kit.ctx(phase.name))
            arn = kit.ctx(phase.name).outputs["certificate_arn"]
        if scenario == "dead":
            kit.acm_status(arn, "FAILED")
        if scenario == "gone":
            delete_validation_record(kit, zone)
        changes = check_enter_as_planned(kit, phase)
        if scenario == "dead":  # plan once left this deletion out
            assert actions(changes, DELETE) == [f"ACM certificate {arn}"]
        again = plan(kit, phase)
        assert {c.action for c in again} == {USE}


def test_certificates_rollback_deletes_what_its_preview_said(tmp_path: Path) -> None:
    phase = CertificatesPhase()
    with phase_kit(tmp_path) as kit:
        certificates_kit(kit)
        phase.enter(kit.ctx(phase.name))
        kit.done(phase.name)
        said = check_rollback_as_previewed(kit, phase)
        assert len(said["delete"]) == 2 and said["leave"] == set()
        assert kit.client("acm").list_certificates()["CertificateSummaryList"] == []


# ---- controller: a ServiceAccount replaced by one without our labels ----------------------------


@pytest.mark.parametrize("annotated", [True, False], ids=["annotated", "not annotated"])
def test_controller_plan_and_enter_agree_on_a_replaced_service_account(
    tmp_path: Path, annotated: bool
) -> None:
    """Plan once said "use: exists, not ours" here while enter force-applied it."""
    from test_phase_controller import CONTROLLER, ROLE_ARN, controller_kit, install

    from orchestrator.states.controller import ControllerPhase

    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        controller_kit(kit)
        install(kit)
        kit.store.delete("v1", "ServiceAccount", *CONTROLLER)
        annotations = {"eks.amazonaws.com/role-arn": ROLE_ARN} if annotated else {}
        name, namespace = CONTROLLER
        kit.store.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            }
        )
        changes = plan(kit, ControllerPhase())
        (account,) = [c for c in changes if c.what == f"ServiceAccount {namespace}/{name}"]
        with kit.watching() as entering:
            ControllerPhase().enter(kit.ctx("controller"))
        written = [w for w in entering.kube_writes if f"/serviceaccounts/{name}" in w]
        assert bool(written) == (account.action in WRITES), (account, written)


def test_the_rollback_preview_falls_back_to_the_state_file_when_its_reads_fail(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import preview
    from orchestrator.aws import AwsError

    phase = ControllerIamPhase()
    with controller_iam_done(tmp_path) as kit:
        kit.client("iam").create_role(
            RoleName="ebs-csi", AssumeRolePolicyDocument=trusting(PROVIDER)
        )

        def unreadable(self: ControllerIamPhase, ctx: object) -> list:
            raise AwsError("iam", "ListRoles", "AccessDenied", "not allowed")

        engine = kit.engine
        phases = list(engine.phases.values())
        monkeypatch.setattr(ControllerIamPhase, "rollback_plan", unreadable)
        steps = preview.rollback_steps(engine.state, phases, "certificates", engine=engine)
        ours = [s for s in steps if s.phase == phase.name]
        assert [s.action for s in ours] == ["delete"] * 4  # as the state file records them
