"""Does a phase do what it says it will? In the phase kit: plan (every write refused),
then enter with every AWS call and Kubernetes request recorded, and the writes enter made
must be exactly the changes plan listed; the rollback preview, then rollback, and what
rollback deleted and left must be exactly what the preview said.

Writes and changes are compared by what they touch (the OIDC provider, the policy, a
role, a certificate, a record, a Kubernetes object), as a set: a plan names a resource
once, enter may take several calls for it.
"""

from __future__ import annotations

from typing import Any

from phasekit import Kit

from orchestrator import calls, preview
from orchestrator.planning import WRITES, Change

# What each AWS write of the phases under test touches.
WRITTEN = {
    "CreateOpenIDConnectProvider": "OIDC provider",
    "CreatePolicy": "policy",
    "CreatePolicyVersion": "policy",
    "DeletePolicyVersion": "policy",
    "CreateRole": "role",
    "UpdateAssumeRolePolicy": "role",
    "AttachRolePolicy": "attachment",
    "RequestCertificate": "certificate",
    "DeleteCertificate": "certificate",
    "ChangeResourceRecordSets": "record",
    "CreateHostedZone": "hosted zone",
    "ChangeTagsForResource": "hosted zone",  # its tags: the zone is what it touches
    "DeleteHostedZone": "hosted zone",
    "CreateTags": "subnet tag",
    "DeleteTags": "subnet tag",
    "DeleteOpenIDConnectProvider": "OIDC provider",
    "TagOpenIDConnectProvider": "OIDC provider",
    "UntagOpenIDConnectProvider": "OIDC provider",
    "DeletePolicy": "policy",
    "TagPolicy": "policy",
    "UntagPolicy": "policy",
    "DeleteRole": "role",
    "TagRole": "role",
    "UntagRole": "role",
    "DetachRolePolicy": "attachment",
    "DeleteLoadBalancer": "load balancer",
    "DeleteTargetGroup": "target group",
    "DeleteSecurityGroup": "security group",
}
# The words in a planned change's `what` that name the same (first match wins).
PLANNED = (
    ("OIDC provider", "OIDC provider"),
    ("IAM policy", "policy"),
    ("IAM role", "role"),
    ("attachment of", "attachment"),
    ("hosted zone", "hosted zone"),
    (" on subnet-", "subnet tag"),
    ("validation record", "record"),
    ("ACM certificate", "certificate"),
    ("record", "record"),
)
KUBERNETES = "Kubernetes object"


def touched_by(change: Change) -> str:
    for words, touched in PLANNED:
        if words in change.what:
            return touched
    return KUBERNETES  # the rest of what phases plan are Kubernetes objects


def planned_writes(changes: list[Change]) -> set[str]:
    return {touched_by(c) for c in changes if c.action in WRITES}


def plan(kit: Kit, phase: Any) -> list[Change]:
    """The phase's plan, made as `orchestrator plan` makes it: writes refused."""
    with calls.read_only("plan"):
        return list(phase.plan(kit.ctx(phase.name)))


def check_enter_as_planned(kit: Kit, phase: Any) -> list[Change]:
    """Plan, then enter: what enter wrote is what plan listed. Returns the plan."""
    changes = plan(kit, phase)
    with kit.watching() as entering:
        phase.enter(kit.ctx(phase.name))
    written = set()
    for call in entering.aws_calls:
        if call.writes:
            assert call.operation in WRITTEN, f"{call.operation}: add what it touches"
            written.add(WRITTEN[call.operation])
    if entering.kube_writes:
        written.add(KUBERNETES)
    assert written == planned_writes(changes), (
        f"enter wrote {sorted(written)}; plan listed {[c.as_dict() for c in changes]}"
    )
    return changes


def check_rollback_as_previewed(kit: Kit, phase: Any) -> dict[str, set[str]]:
    """The phase's rollback preview, then its rollback: it deleted exactly what the
    preview said it would delete, and left what it said it would leave."""
    engine = kit.engine
    phases = list(engine.phases.values())
    before = phases[[p.name for p in phases].index(phase.name) - 1].name
    steps = [
        s
        for s in preview.rollback_steps(engine.state, phases, before, engine=engine)
        if s.phase == phase.name
    ]
    said = {action: {s.what for s in steps if s.action == action} for action in ("delete", "leave")}
    ctx = kit.ctx(phase.name)
    resources = [r.describe() for r in ctx.record.resources]
    heard = len(kit.said())
    phase.rollback(ctx)
    told = kit.said()[heard:]
    deleted = {what for what in resources if f"deleted {what}\n" in told + "\n"}
    done = {"delete": deleted, "leave": set(resources) - deleted}
    assert done == said, f"rollback did {done}; its preview said {said}"
    return said
