"""controller_iam in process against moto's IAM: the cluster's OIDC provider, the
controller's policy and its IRSA role.

The branches about things others still use (a provider other roles trust, a controller
left in place running as the role) and other partitions are in test_shared.py and
test_checks.py. Not here: a create whose answer was lost (the crash sweep, end to end).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, Kit, phase_kit

from orchestrator import calls
from orchestrator.builders.controller_manifests import controller_policy
from orchestrator.errors import PhaseError
from orchestrator.ownership import OWNER_TAG, STATE_TAG
from orchestrator.planning import UPDATE, USE
from orchestrator.states import controller_iam
from orchestrator.states.controller_iam import ControllerIamPhase

HOST = "oidc.eks.us-west-2.amazonaws.com/id/CAFE"
ISSUER = f"https://{HOST}"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"
SUBJECT = "system:serviceaccount:kube-system:aws-load-balancer-controller"


ALLOW_NOTHING = json.dumps(
    {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}],
    }
)


def iam_kit(kit: Kit) -> Any:
    kit.preflight_done(ISSUER)
    return kit.client("iam")


def role_name(kit: Kit) -> str:
    return f"alb-controller-{kit.owner.deployment}"[:64]


def policy_arn(kit: Kit) -> str:
    return f"arn:aws:iam::{ACCOUNT}:policy/{role_name(kit)}"


def tags(entries: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in entries}


def providers(iam: Any) -> list[str]:
    return [p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]]


def roles(iam: Any) -> list[str]:
    return [r["RoleName"] for r in iam.list_roles()["Roles"]]


def policies(iam: Any) -> list[str]:
    return [p["Arn"] for p in iam.list_policies(Scope="Local")["Policies"]]


def test_controller_iam_makes_provider_policy_and_role_tagged_and_wired_once(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        name = role_name(kit)
        assert providers(iam) == [PROVIDER] and roles(iam) == [name]
        assert policies(iam) == [policy_arn(kit)]
        ours = {OWNER_TAG: kit.owner.deployment, STATE_TAG: kit.owner.identity}
        provider_tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=PROVIDER)
        for found in (
            provider_tags["Tags"],
            iam.list_role_tags(RoleName=name)["Tags"],
            iam.list_policy_tags(PolicyArn=policy_arn(kit))["Tags"],
        ):
            assert tags(found).items() >= ours.items()
        provider = iam.get_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER)
        assert provider["ClientIDList"] == ["sts.amazonaws.com"]
        trust = iam.get_role(RoleName=name)["Role"]["AssumeRolePolicyDocument"]
        (statement,) = trust["Statement"]
        assert statement["Principal"] == {"Federated": PROVIDER}
        assert statement["Condition"] == {
            "StringEquals": {f"{HOST}:sub": SUBJECT, f"{HOST}:aud": "sts.amazonaws.com"}
        }
        attached = iam.list_attached_role_policies(RoleName=name)["AttachedPolicies"]
        assert [p["PolicyArn"] for p in attached] == [policy_arn(kit)]
        assert ctx.outputs["role_arn"] == f"arn:aws:iam::{ACCOUNT}:role/{name}"
        assert ctx.outputs["oidc_provider_arn"] == PROVIDER
        assert all(r.created for r in ctx.record.resources)
        assert ControllerIamPhase().verify(ctx) is None

        with kit.watching() as again:
            ControllerIamPhase().enter(ctx)
        assert again.aws_writes == []


def test_controller_iam_adopts_the_clusters_existing_provider_and_rollback_leaves_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        iam.create_open_id_connect_provider(
            Url=ISSUER, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9" * 40]
        )
        ctx = kit.ctx("controller_iam")
        with kit.watching() as entering:
            ControllerIamPhase().enter(ctx)
        assert "iam:CreateOpenIDConnectProvider" not in entering.aws_writes
        (provider,) = [r for r in ctx.record.resources if r.kind == "iam:oidc-provider"]
        assert provider.id == PROVIDER and not provider.created
        ControllerIamPhase().rollback(ctx)
        assert providers(iam) == [PROVIDER]
        assert roles(iam) == [] and policies(iam) == []
        provider_tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=PROVIDER)
        assert OWNER_TAG not in tags(provider_tags["Tags"])


@pytest.mark.parametrize("what", ["role", "policy"])
@pytest.mark.parametrize("whose", ["untagged", "other state file"])
def test_controller_iam_refuses_a_role_or_policy_of_its_name_not_ours(
    tmp_path: Path, what: str, whose: str
) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        marks = [] if whose == "untagged" else kit.other_state().tags
        if what == "role":
            iam.create_role(RoleName=role_name(kit), AssumeRolePolicyDocument="{}", Tags=marks)
        else:
            iam.create_policy(PolicyName=role_name(kit), PolicyDocument=ALLOW_NOTHING, Tags=marks)
        before = (roles(iam), policies(iam))
        ctx = kit.ctx("controller_iam")
        with pytest.raises(PhaseError) as refused:
            ControllerIamPhase().enter(ctx)
        if whose == "untagged":
            assert f"an IAM {what} named {role_name(kit)} already exists" in refused.value.message
        else:
            assert "belongs to this deployment's state file ffffffffffffffff" in (
                refused.value.message
            )
        # Rolled back, only theirs is left (what was made before the refusal was ours).
        ControllerIamPhase().rollback(ctx)
        assert (roles(iam), policies(iam)) == before
        found = (
            iam.list_role_tags(RoleName=role_name(kit))["Tags"]
            if what == "role"
            else iam.list_policy_tags(PolicyArn=policy_arn(kit))["Tags"]
        )
        assert found == marks


def _delete_role(iam: Any, name: str, policy: str) -> None:
    iam.detach_role_policy(RoleName=name, PolicyArn=policy)
    iam.delete_role(RoleName=name)


DRIFTS: dict[str, tuple[Callable[[Any, str, str], None], str]] = {
    "role deleted": (_delete_role, "role {role} is gone"),
    "policy detached": (
        lambda iam, name, policy: iam.detach_role_policy(RoleName=name, PolicyArn=policy),
        "policy {policy} is no longer attached to {role}",
    ),
    "trust widened": (
        lambda iam, name, policy: iam.update_assume_role_policy(
            RoleName=name,
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Federated": PROVIDER},
                            "Action": "sts:AssumeRoleWithWebIdentity",
                        }
                    ],
                }
            ),
        ),
        "role {role}'s trust policy changed",
    ),
}


@pytest.mark.parametrize("drift", list(DRIFTS))
def test_controller_iam_drift_is_reported_and_enter_puts_it_right(
    tmp_path: Path, drift: str
) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        change, reason = DRIFTS[drift]
        change(iam, role_name(kit), policy_arn(kit))
        assert ControllerIamPhase().verify(ctx) == reason.format(
            role=role_name(kit), policy=policy_arn(kit)
        )
        ControllerIamPhase().enter(ctx)
        assert ControllerIamPhase().verify(ctx) is None
        assert roles(iam) == [role_name(kit)]


def test_controller_iam_brings_a_changed_policy_document_back(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        arn = policy_arn(kit)
        original = iam.get_policy_version(PolicyArn=arn, VersionId="v1")["PolicyVersion"]
        iam.create_policy_version(PolicyArn=arn, PolicyDocument=ALLOW_NOTHING, SetAsDefault=True)
        ControllerIamPhase().enter(ctx)
        default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
        current = iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]
        assert current["Document"] == original["Document"]


def test_controller_iam_drift_of_the_provider_audience_is_reported(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        # Made again by hand without the audience IRSA needs (moto cannot remove a client id).
        iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER)
        iam.create_open_id_connect_provider(
            Url=ISSUER, ClientIDList=["kubernetes"], ThumbprintList=["9" * 40]
        )
        assert ControllerIamPhase().verify(ctx) == (
            f"OIDC provider {PROVIDER} no longer accepts sts.amazonaws.com"
        )
        with pytest.raises(PhaseError, match="does not accept the audience sts.amazonaws.com"):
            ControllerIamPhase().enter(ctx)


def test_controller_iam_rollback_deletes_everything_it_made(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        ControllerIamPhase().rollback(ctx)
        assert (providers(iam), roles(iam), policies(iam)) == ([], [], [])
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_controller_iam_rollback_of_what_is_already_gone_is_fine(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        _delete_role(iam, role_name(kit), policy_arn(kit))
        iam.delete_policy(PolicyArn=policy_arn(kit))
        iam.delete_open_id_connect_provider(OpenIDConnectProviderArn=PROVIDER)
        ControllerIamPhase().rollback(ctx)
        assert (providers(iam), roles(iam), policies(iam)) == ([], [], [])
        assert ctx.record.resources == [] and ctx.record.kept == []


def test_controller_iam_rollback_leaves_a_role_another_state_file_tagged_and_says_so(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        iam.tag_role(RoleName=role_name(kit), Tags=kit.other_state().tags)
        ControllerIamPhase().rollback(ctx)
        assert roles(iam) == [role_name(kit)]
        kept = {k["kind"] for k in ctx.record.kept}
        assert {"iam:role", "iam:role-policy-attachment"} <= kept
        assert f"left iam:role-policy-attachment {role_name(kit)}|" in kit.said()
        assert "its tags say it is not this state file's" in kit.said()


# ---- the policy of the configured controller release ---------------------------------------------

OLDER_NEEDS_LESS = "elasticloadbalancing:ModifyListenerAttributes"


def policies_by_release(monkeypatch: pytest.MonkeyPatch) -> None:
    """A bundle made for the test: v3.4.3's policy lacks one action v3.5.0's grants (the
    bundled two are the same: upstream's did not change between them)."""
    bundled = controller_iam.controller_policy

    def policy(partition: str = "aws", version: str = "v3.5.0") -> dict[str, Any]:
        document = bundled(partition, version)
        if version == "v3.4.3":
            for statement in document["Statement"]:
                actions = statement["Action"]
                if isinstance(actions, list) and OLDER_NEEDS_LESS in actions:
                    actions.remove(OLDER_NEEDS_LESS)
        return document

    monkeypatch.setattr(controller_iam, "controller_policy", policy)


def default_document(iam: Any, arn: str) -> Any:
    default = iam.get_policy(PolicyArn=arn)["Policy"]["DefaultVersionId"]
    return iam.get_policy_version(PolicyArn=arn, VersionId=default)["PolicyVersion"]["Document"]


def test_another_controller_release_updates_the_policy_naming_what_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies_by_release(monkeypatch)
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        kit.configure(controller_version="v3.4.3")
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        assert ControllerIamPhase().verify(ctx) is None
        kit.configure(controller_version="v3.5.0")
        ctx = kit.ctx("controller_iam")
        drift = ControllerIamPhase().verify(ctx)
        assert drift == (
            f"policy {policy_arn(kit)} is not the one controller v3.5.0 needs "
            f"(that one adds {OLDER_NEEDS_LESS})"
        )
        with calls.read_only("plan"):
            (change,) = [c for c in ControllerIamPhase().plan(ctx) if "IAM policy" in c.what]
        assert change.action == UPDATE
        assert change.why.endswith(f"for controller v3.5.0: adds {OLDER_NEEDS_LESS}")
        ControllerIamPhase().enter(ctx)
        assert ControllerIamPhase().verify(ctx) is None
        assert default_document(iam, policy_arn(kit)) == controller_policy(version="v3.5.0")


def test_the_same_policy_for_both_releases_plans_no_change(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam_kit(kit)
        kit.configure(controller_version="v3.4.3")
        ControllerIamPhase().enter(kit.ctx("controller_iam"))
        kit.configure(controller_version="v3.5.0")
        ctx = kit.ctx("controller_iam")
        assert ControllerIamPhase().verify(ctx) is None
        with calls.read_only("plan"):
            assert {c.action for c in ControllerIamPhase().plan(ctx)} == {USE}


def test_an_older_releases_policy_is_refused_while_ours_runs_newer_unless_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    policies_by_release(monkeypatch)
    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        kit.namespace("kube-system")
        kit.store.create(our_controller(kit, "v3.5.0"))
        kit.configure(controller_version="v3.4.3")
        ctx = kit.ctx("controller_iam")
        with pytest.raises(PhaseError) as refused, calls.read_only("plan"):
            ControllerIamPhase().plan(ctx)
        assert "runs v3.5.0 and the config asks for v3.4.3" in refused.value.message
        assert "--allow-downgrade" in refused.value.hint
        kit.engine.allow_downgrade = True
        ControllerIamPhase().enter(ctx)
        older = controller_iam.controller_policy(version="v3.4.3")
        assert default_document(iam, policy_arn(kit)) == older


def our_controller(kit: Kit, version: str) -> dict[str, Any]:
    """A controller Deployment this deployment installed, running `version`."""
    image = f"public.ecr.aws/eks/aws-load-balancer-controller:{version}"
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "aws-load-balancer-controller",
            "namespace": "kube-system",
            "labels": kit.owner.labels,
        },
        "spec": {
            "selector": {"matchLabels": {"app": "c"}},
            "template": {
                "metadata": {"labels": {"app": "c"}},
                "spec": {"containers": [{"name": "controller", "image": image}]},
            },
        },
    }


# ---- what the old setup script made, replaced ----------------------------------------------


def test_a_taken_over_role_and_policy_go_once_the_controller_runs_as_ours(tmp_path: Path) -> None:
    """The old setup script's role and policy, taken over (tagged and recorded): plan lists
    them as deletes; while the controller still runs as the old role they stay; once it
    runs as ours, each goes."""
    from orchestrator.store import Resource

    with phase_kit(tmp_path) as kit:
        iam = iam_kit(kit)
        ctx = kit.ctx("controller_iam")
        ControllerIamPhase().enter(ctx)
        old_role, tagged = "eksctl-kube-eks-cluster-addon-iamserviceacco-Role1-X", kit.owner.tags
        trust = iam.get_role(RoleName=role_name(kit))["Role"]["AssumeRolePolicyDocument"]
        iam.create_role(RoleName=old_role, AssumeRolePolicyDocument=json.dumps(trust), Tags=tagged)
        old_policy = iam.create_policy(
            PolicyName="alb_ingress_controller_kube-eks-clusterab12",
            PolicyDocument=ALLOW_NOTHING,
            Tags=tagged,
        )["Policy"]["Arn"]
        iam.attach_role_policy(RoleName=old_role, PolicyArn=old_policy)
        ctx.record.resources += [
            Resource("iam:policy", old_policy, created=True),
            Resource("iam:role-policy-attachment", f"{old_role}|{old_policy}", created=True),
            Resource("iam:role", old_role, created=True),
        ]
        assert ControllerIamPhase().verify(ctx) == (
            f"IAM policy {old_policy} attached to role {old_role}, which it replaced, is still "
            f"there: it goes once the controller runs as {role_name(kit)}"
        )
        planned = [(c.action, c.what) for c in ControllerIamPhase().plan(ctx) if c.action != USE]
        assert planned == [
            ("delete", f"IAM policy {old_policy} attached to role {old_role}"),
            ("delete", f"IAM role {old_role}"),
            ("delete", f"IAM policy {old_policy}"),
        ]
        runs_as(kit, old_role)
        assert [u.action for u in ControllerIamPhase().retirement(ctx)] == [
            "leave",
            "leave",
            "leave",
        ]

        runs_as(kit, role_name(kit))
        for undo in ControllerIamPhase().retirement(ctx):
            undo.apply()
        assert roles(iam) == [role_name(kit)] and policies(iam) == [policy_arn(kit)]
        assert {r.id for r in ctx.record.resources} == {
            PROVIDER,
            role_name(kit),
            policy_arn(kit),
            f"{role_name(kit)}|{policy_arn(kit)}",
        }
        assert ControllerIamPhase().retirement(ctx) == []
        assert ControllerIamPhase().verify(ctx) is None


def runs_as(kit: Kit, role: str) -> None:
    """The controller's Deployment runs, its ServiceAccount naming `role`."""
    kit.namespace("kube-system")
    account = {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {
            "name": "aws-load-balancer-controller",
            "namespace": "kube-system",
            "annotations": {"eks.amazonaws.com/role-arn": f"arn:aws:iam::{ACCOUNT}:role/{role}"},
        },
    }
    kit.store.apply(account, "test", force=True)
    if kit.store.get("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system"):
        return
    labels = {"app": "alb"}
    kit.store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"},
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {"containers": [{"name": "controller", "image": "x"}]},
                },
            },
        }
    )
