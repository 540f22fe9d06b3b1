"""What a rollback keeps because others still use it is released.

The cluster's OIDC provider another team's role trusts, a controller other Ingresses need
(with the role and policy it runs as), subnet tags other load balancers sit on: each stays,
loses this state file's marks and gains a kept mark saying why (IAM allows only some
characters in a tag value: the world refuses the others, as IAM does). The sweep and
`import` then no longer count it, and a later state file of the deployment finds it
pre-existing: used, never deleted. End to end (import after a kept provider): in
test_e2e_ownership.py.

In process, against moto (with the world's IAM tag rule) and the Kubernetes API emulator.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from phasekit import ACCOUNT, Kit, eks_network, phase_kit

from orchestrator import inventory
from orchestrator.errors import StillWaiting
from orchestrator.ownership import (
    DEPLOYMENT_LABEL,
    KEPT_ANNOTATION_PREFIX,
    OWNER_TAG,
    STATE_LABEL,
    STATE_TAG,
    kept_mark,
    kept_tag_key,
)
from orchestrator.phase import RELEASING
from orchestrator.states.controller import ControllerPhase, marked_objects
from orchestrator.states.controller_iam import ControllerIamPhase, marked_iam
from orchestrator.states.ingress import marked_ingress
from orchestrator.states.subnet_tags import KIND as SUBNET_TAG
from orchestrator.states.subnet_tags import (
    SubnetTagsPhase,
    marked_tags,
    marker_key,
    marker_value,
)
from orchestrator.store import new_state
from orchestrator_sandbox.iamtags import (
    ALLOWED_VALUE,
    make_iam_tags_lenient,
    make_iam_tags_strict,
)

HOST = "oidc.eks.us-west-2.amazonaws.com/id/CAFE"
ISSUER = f"https://{HOST}"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/{HOST}"
DATA_TEAM = "data-team-s3-reader"
CONTROLLER = ("aws-load-balancer-controller", "kube-system")
CLUSTER = "kube-eks-cluster"


@pytest.fixture(autouse=True)
def iam_tag_rule() -> Iterator[None]:
    make_iam_tags_strict()  # moto checks only a tag value's length
    try:
        yield
    finally:
        make_iam_tags_lenient()  # moto's own ways again for the next test in this process


def tags_of(entries: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in entries}


def provider_tags(kit: Kit) -> dict[str, str]:
    iam = kit.client("iam")
    return tags_of(
        iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=PROVIDER)["Tags"]
    )


def trusting_role(kit: Kit, name: str = DATA_TEAM) -> None:
    """Another team's IRSA role that trusts the cluster's provider."""
    statement = {
        "Effect": "Allow",
        "Principal": {"Federated": PROVIDER},
        "Action": "sts:AssumeRoleWithWebIdentity",
        "Condition": {"StringEquals": {f"{HOST}:sub": "system:serviceaccount:data:reader"}},
    }
    document = {"Version": "2012-10-17", "Statement": [statement]}
    kit.client("iam").create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))


def iam_entered(kit: Kit) -> Any:
    kit.preflight_done(ISSUER)
    ctx = kit.ctx("controller_iam")
    ControllerIamPhase().enter(ctx)
    return ctx


def later_state_file(kit: Kit) -> None:
    """The same deployment run from a new state file (the first one rolled back or lost)."""
    engine = kit.engine
    engine.state = new_state(engine.state.deployment, engine.config.settings(), engine.order)
    kit.preflight_done(ISSUER)


def found_iam(kit: Kit) -> list[inventory.Found]:
    """What `import` and the sweep find of IAM by the deployment's marks."""
    cluster = {"identity": {"oidc": {"issuer": ISSUER}}}
    return marked_iam(kit.ctx("controller_iam"), cluster)


# ---- the kept mark ------------------------------------------------------------------------------


def test_a_kept_mark_is_a_tag_value_iam_accepts() -> None:
    reason = 'IAM roles trust it for IRSA (a, "b"; c) & more ' + "x" * 300
    mark = kept_mark(reason)
    assert ALLOWED_VALUE.fullmatch(mark) and len(mark) == 256
    assert mark.startswith("IAM roles trust it for IRSA a b c more x")


def test_the_world_refuses_tag_values_iam_refuses(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        iam = kit.client("iam")
        iam.create_role(RoleName="r", AssumeRolePolicyDocument="{}")
        iam.tag_role(RoleName="r", Tags=[{"Key": "k", "Value": "fine: a/b=c+d@e-f_g.h"}])
        with pytest.raises(ClientError) as refused:
            iam.tag_role(RoleName="r", Tags=[{"Key": "k", "Value": "trusted by (a, b)"}])
        assert refused.value.response["Error"]["Code"] == "ValidationError"


# ---- the OIDC provider --------------------------------------------------------------------------


def test_a_provider_kept_for_another_teams_role_is_released(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = iam_entered(kit)
        assert ctx.owner.owns_tags(provider_tags(kit))
        trusting_role(kit)
        ControllerIamPhase().rollback(ctx)
        tags = provider_tags(kit)
        assert OWNER_TAG not in tags and STATE_TAG not in tags
        assert DATA_TEAM in tags[kept_tag_key(ctx.deployment)]
        (kept,) = ctx.record.kept
        assert kept["id"] == PROVIDER and DATA_TEAM in kept["reason"]
        assert ctx.record.resources == [] and ctx.record.intent is None
        assert "this state file's marks are off it" in kit.said()
        assert found_iam(kit) == []  # neither the sweep nor import counts it any more


def test_a_later_state_file_uses_a_released_provider_and_never_deletes_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        first = iam_entered(kit)
        trusting_role(kit)
        ControllerIamPhase().rollback(first)
        later_state_file(kit)
        ctx = iam_entered(kit)
        (provider,) = ctx.resources("iam:oidc-provider")
        assert not provider.created  # pre-existing: used, never deleted
        assert {f.identity for f in found_iam(kit)} == {ctx.owner.identity}
        kit.client("iam").delete_role(RoleName=DATA_TEAM)  # even once nothing else trusts it
        ControllerIamPhase().rollback(ctx)
        listed = kit.client("iam").list_open_id_connect_providers()["OpenIDConnectProviderList"]
        assert [p["Arn"] for p in listed] == [PROVIDER]
        assert ctx.record.kept == []


def test_a_release_a_crash_cut_short_is_recorded_with_its_reason(tmp_path: Path) -> None:
    """The marks came off, then the process died before the record said so: the next
    rollback finds the provider not ours, and records it as released, for its reason."""
    with phase_kit(tmp_path) as kit:
        ctx = iam_entered(kit)
        trusting_role(kit)
        iam = kit.client("iam")
        untag = iam.untag_open_id_connect_provider

        def crash_after(**params: Any) -> None:
            untag(**params)
            raise KeyboardInterrupt

        phase_iam = ctx.aws.iam
        original = phase_iam.untag_open_id_connect_provider
        phase_iam.untag_open_id_connect_provider = crash_after
        with pytest.raises(KeyboardInterrupt):
            ControllerIamPhase().rollback(ctx)
        phase_iam.untag_open_id_connect_provider = original
        (provider,) = ctx.resources("iam:oidc-provider")
        assert DATA_TEAM in provider.detail[RELEASING]  # the intent, saved before the calls
        ControllerIamPhase().rollback(ctx)
        (kept,) = ctx.record.kept
        assert DATA_TEAM in kept["reason"]
        assert OWNER_TAG not in provider_tags(kit)


# ---- the controller and the role it runs as -----------------------------------------------------


def installed_controller(kit: Kit) -> Any:
    """controller_iam entered, and the controller installed and available."""
    iam_ctx = iam_entered(kit)
    ctx = kit.ctx("controller")
    with pytest.raises(StillWaiting):
        ControllerPhase().enter(ctx)
    kit.make_available(*CONTROLLER)
    ControllerPhase().enter(ctx)
    return iam_ctx, ctx


def another_teams_ingress(kit: Kit) -> None:
    kit.namespace("team-data")
    kit.store.create(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {"name": "dashboard", "namespace": "team-data"},
            "spec": {"ingressClassName": "alb"},
        }
    )


def test_a_controller_kept_for_other_ingresses_is_released_and_adopted_later(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        _, ctx = installed_controller(kit)
        deployment = kit.store.get("apps/v1", "Deployment", *CONTROLLER)
        generation = deployment["metadata"]["generation"]
        another_teams_ingress(kit)
        ControllerPhase().rollback(ctx)
        assert ctx.record.resources == [] and ctx.record.kept
        deployment = kit.store.get("apps/v1", "Deployment", *CONTROLLER)
        labels = deployment["metadata"]["labels"]
        assert DEPLOYMENT_LABEL not in labels and STATE_LABEL not in labels
        annotations = deployment["metadata"]["annotations"]
        assert "team-data/dashboard" in annotations[KEPT_ANNOTATION_PREFIX + ctx.deployment]
        assert deployment["metadata"]["generation"] == generation  # no rollout
        assert marked_objects(ctx) + marked_ingress(ctx) == []
        later_state_file(kit)
        kit.done("preflight", vpc_id="vpc-0123")
        kit.done("controller_iam", role_arn="arn:aws:iam::123456789012:role/x")
        later = kit.ctx("controller")
        with kit.watching() as entering:
            ControllerPhase().enter(later)
        assert later.outputs["mode"] == "adopted" and entering.kube_writes == []


def test_the_role_a_kept_controller_runs_as_is_released_and_used_by_a_later_state_file(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path, crd_establish_seconds=0) as kit:
        iam_ctx, ctx = installed_controller(kit)
        another_teams_ingress(kit)
        ControllerPhase().rollback(ctx)
        ControllerIamPhase().rollback(iam_ctx)
        iam = kit.client("iam")
        role, policy = iam_ctx.outputs["role_name"], iam_ctx.outputs["policy_arn"]
        for tags in (
            iam.list_role_tags(RoleName=role)["Tags"],
            iam.list_policy_tags(PolicyArn=policy)["Tags"],
        ):
            assert OWNER_TAG not in tags_of(tags)
            assert "runs as this role" in tags_of(tags)[kept_tag_key(ctx.deployment)]
        assert found_iam(kit) == []
        later_state_file(kit)
        later = kit.ctx("controller_iam")
        plan = ControllerIamPhase().plan(later)
        assert [c.action for c in plan] == ["use"] * 4
        with kit.watching() as entering:
            ControllerIamPhase().enter(later)
        assert entering.aws_writes == []
        assert not any(r.created for r in later.record.resources)
        assert ControllerIamPhase().verify(later) is None


# ---- subnet tags --------------------------------------------------------------------------------


def test_subnet_tags_kept_for_other_load_balancers_are_released(tmp_path: Path) -> None:
    role = "kubernetes.io/role/elb"
    with phase_kit(tmp_path) as kit:
        ec2 = kit.client("ec2")
        network = eks_network(ec2)
        subnet = sorted(network.public.values())[0]
        kit.done("preflight", vpc_id=network.vpc_id, subnet_ids=[])
        ctx = kit.ctx("subnet_tags")
        # As enter tags a subnet: the tag, and the marker that says it is ours.
        ctx.confirm(ctx.intend(SUBNET_TAG, f"{subnet}/{role}", "tag", value="1"))
        marker = {marker_key(ctx.deployment): marker_value(ctx.owner.identity, [role])}
        ec2.create_tags(
            Resources=[subnet],
            Tags=[{"Key": k, "Value": v} for k, v in {role: "1", **marker}.items()],
        )
        kit.client("elbv2").create_load_balancer(
            Name="k8s-data-dashboard",
            Subnets=sorted(network.public.values())[:2],
            Tags=[{"Key": "elbv2.k8s.aws/cluster", "Value": CLUSTER}],
        )
        SubnetTagsPhase().rollback(ctx)
        (described,) = ec2.describe_subnets(SubnetIds=[subnet])["Subnets"]
        tags = tags_of(described["Tags"])
        assert tags[role] == "1"  # the load balancer still needs it
        assert marker_key(ctx.deployment) not in tags
        assert tags[kept_tag_key(ctx.deployment)].startswith(f"left {role}: load balancers")
        assert [k["id"] for k in ctx.record.kept] == [f"{subnet}/{role}"]
        assert marked_tags(ctx, network.vpc_id) == []


# ---- import -------------------------------------------------------------------------------------


def test_import_leaves_out_a_shared_thing_another_state_file_kept_with_its_marks() -> None:
    """A provider kept before releases existed still names the state file that made it: the
    lost state file only used it, so import rebuilds that one without it."""
    lost, earlier = "a" * 16, "b" * 16
    zone = inventory.Found("hosted_zone", "route53:hosted-zone", "Z1", lost)
    role = inventory.Found("controller_iam", "iam:role", "alb-controller-x", lost)
    provider = inventory.Found(
        "controller_iam", "iam:oidc-provider", PROVIDER, earlier, shared=True
    )
    assert inventory.for_import([zone, role, provider]) == ([zone, role], [provider])
    # Two state files' own things: import still refuses (one state file rebuilds one).
    theirs = inventory.Found("hosted_zone", "route53:hosted-zone", "Z2", earlier)
    assert inventory.for_import([zone, theirs, provider]) == ([zone, theirs, provider], [])
