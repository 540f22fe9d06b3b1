"""controller_iam: the IAM side of the AWS Load Balancer Controller's IRSA.

The cluster's IAM OIDC provider (used if it exists, created only if missing), an IAM
policy with what the controller needs, and a role that only the controller's service
account can assume, with the policy attached. ARNs are built in the caller's partition.

The policy is the one the configured controller release needs (each bundled release
brings its own): a release that needs other permissions makes the policy's document change
to a new default version, before the controller is upgraded (the next phase), and plan
names the actions that change.

The OIDC provider is shared by nature: every IRSA role of the cluster (EBS CSI, Kubeflow's
S3 access, Karpenter, ...) trusts it. Rollback deletes one this deployment created only
while no role not ours trusts it, and keeps the role and policy while a controller left in
place (see the controller phase) still runs as that role.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import unquote

from orchestrator.aws import partition_of, tolerate
from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
    STS_AUDIENCE,
    controller_policy,
    oidc_provider_arn,
    permissions,
    policy_arn,
    trust_policy,
)
from orchestrator.builders.running_controller import controller_version, refuse_downgrade
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.ownership import (
    OWNER_TAG,
    STATE_TAG,
    describe_identity,
    kept_tag_key,
    released_by,
    tag_map,
)
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, DELETE, LEAVE, UPDATE, USE, Change, Undo
from orchestrator.store import Resource

OIDC = "iam:oidc-provider"
POLICY = "iam:policy"
ROLE = "iam:role"
ATTACHMENT = "iam:role-policy-attachment"
NO_ENTITY = "NoSuchEntity"  # IAM's answer for a role, policy or provider that does not exist
# IAM's answer to a create that an earlier attempt made before its answer was lost.
EXISTS = "EntityAlreadyExists"
# The root CA thumbprint IAM has long used for EKS OIDC issuers; IAM now verifies those
# issuers itself, but older API versions still ask for one.
EKS_OIDC_THUMBPRINT = "9e99a48a9960b14926bb7f3b02e22da2b0ab7280"


def names(deployment: str) -> tuple[str, str]:
    """(role name, policy name): IAM allows 64 characters for a role name."""
    base = f"alb-controller-{deployment}"[:64]
    return base, base


def same_document(a: Any, b: Any) -> bool:
    def decode(d):
        return json.loads(d) if isinstance(d, str) else d

    return json.dumps(decode(a), sort_keys=True) == json.dumps(decode(b), sort_keys=True)


class ControllerIamPhase(Phase):
    name = "controller_iam"
    title = "IAM OIDC provider, policy and IRSA role for the load balancer controller"
    inputs = ("cluster.name", "cluster.region")
    outputs = ("role_arn", "role_name", "policy_arn", "oidc_provider_arn")
    reads = ("preflight",)
    retires_after = "controller"

    def plan(self, ctx: PhaseContext) -> list[Change]:
        role_name, _ = names(ctx.deployment)
        why = f"replaced by this phase's: deleted once the controller runs as {role_name}"
        retired = [Change(DELETE, _described(r), why) for r in self._replaced(ctx)]
        return [*(change for change, _ in self._decide(ctx)), *retired]

    def retirement(self, ctx: PhaseContext) -> list[Undo]:
        """The IAM entities taken over from the old setup script (its policy, its eksctl
        role, their attachment), replaced by this phase's: once the controller runs as our
        role, each goes as a rollback would take it (left while the controller still runs
        as it, or if its tags say it is not ours)."""
        replaced = {r.id for r in self._replaced(ctx)}
        if not replaced:
            return []
        return [undo for undo in self.rollback_plan(ctx) if undo.resource.id in replaced]

    def _replaced(self, ctx: PhaseContext) -> list[Resource]:
        """What the record holds as ours that is not this phase's own role, policy or their
        attachment (the provider is the cluster's: never replaced)."""
        role_name, policy_name = names(ctx.deployment)

        def own(resource: Resource) -> bool:
            if resource.kind == ROLE:
                return resource.id == role_name
            if resource.kind == POLICY:
                return resource.id.endswith(f":policy/{policy_name}")
            return resource.id.split("|", 1)[0] == role_name

        return [r for kind in (ATTACHMENT, ROLE, POLICY) for r in ctx.owned(kind) if not own(r)]

    def enter(self, ctx: PhaseContext) -> None:
        decisions = self._decide(ctx)  # every look-up (and refusal) before the first write
        for _, apply in decisions:
            apply()
        preflight = ctx.earlier("preflight")
        issuer, account, partition = preflight["oidc_issuer"], preflight["account"], _partition(ctx)
        role_name, policy_name = names(ctx.deployment)
        ctx.outputs.update(
            role_arn=str(ctx.aws.iam.get_role(RoleName=role_name)["Role"]["Arn"]),
            role_name=role_name,
            policy_arn=policy_arn(account, policy_name, partition),
            oidc_provider_arn=oidc_provider_arn(account, issuer, partition),
        )

    def _decide(self, ctx: PhaseContext) -> list[tuple[Change, Callable[[], None]]]:
        """The one decision plan shows and enter applies: for the provider, the policy, the
        role and the attachment, what to do (a Change) and how (applied by enter only). A
        refusal (a PhaseError) stops both, in the same words."""
        preflight = ctx.earlier("preflight")
        issuer, account, partition = preflight["oidc_issuer"], preflight["account"], _partition(ctx)
        provider = oidc_provider_arn(account, issuer, partition)
        role_name, policy_name = names(ctx.deployment)
        arn = policy_arn(account, policy_name, partition)
        trust = trust_policy(oidc_provider_arn=provider, issuer=issuer)
        return [
            self._provider(ctx, provider, issuer),
            self._policy(ctx, arn, policy_name, partition),
            self._role(ctx, role_name, trust),
            self._attachment(ctx, role_name, arn, policy_name),
        ]

    # ---- OIDC provider ------------------------------------------------------------------------

    def _provider(
        self, ctx: PhaseContext, arn: str, issuer: str
    ) -> tuple[Change, Callable[[], None]]:
        iam = ctx.aws.iam
        listed = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        if not any(p["Arn"] == arn for p in listed):

            def create() -> None:
                with creating(ctx, OIDC, arn, "create OIDC provider"):
                    tolerate(
                        iam.create_open_id_connect_provider,
                        EXISTS,
                        Url=issuer,
                        ClientIDList=[STS_AUDIENCE],
                        ThumbprintList=[EKS_OIDC_THUMBPRINT],
                        Tags=ctx.owner_tags,
                    )

            return Change(CREATE, f"IAM OIDC provider {arn}", f"for {issuer}"), create
        _check_audience(ctx, arn)
        tags = iam_tags(ctx, OIDC, arn)

        def record() -> None:
            mine = ctx.find(OIDC, arn)
            if ctx.owner.owns_tags(tags):
                claim(ctx, OIDC, arn)
            elif mine is None or not mine.created:
                ctx.adopt(OIDC, arn)  # the cluster's provider already existed: never deleted

        return Change(USE, f"IAM OIDC provider {arn}", "the cluster's"), record

    # ---- policy -------------------------------------------------------------------------------

    def _policy(
        self, ctx: PhaseContext, arn: str, name: str, partition: str
    ) -> tuple[Change, Callable[[], None]]:
        iam = ctx.aws.iam
        document = controller_policy(partition, ctx.config.controller_version)
        current = tolerate(lambda: iam.get_policy(PolicyArn=arn)["Policy"], NO_ENTITY)
        if current is None:

            def create() -> None:
                with creating(ctx, POLICY, arn, f"create policy {name}"):
                    tolerate(
                        iam.create_policy,
                        EXISTS,
                        PolicyName=name,
                        PolicyDocument=json.dumps(document),
                        Description=f"AWS Load Balancer Controller, orchestrator deployment "
                        f"{ctx.deployment}",
                        Tags=ctx.owner_tags,
                    )

            return Change(CREATE, f"IAM policy {name}", "the controller's permissions"), create
        if not _ours_or_released(ctx, arn, iam_tags(ctx, POLICY, arn), "policy"):
            # used as it is, never changed or deleted
            return Change(USE, f"IAM policy {arn}", RELEASED), lambda: _adopt(ctx, POLICY, arn)
        version = iam.get_policy_version(PolicyArn=arn, VersionId=current["DefaultVersionId"])
        live = _document(version["PolicyVersion"]["Document"])
        if same_document(live, document):
            return Change(USE, f"IAM policy {arn}"), lambda: _claim(ctx, POLICY, arn)
        self._no_downgrade(ctx)

        def update() -> None:
            claim(ctx, POLICY, arn)
            self._new_version(ctx, arn, document)

        why = f"a new default version, for controller {ctx.config.controller_version}: "
        return Change(UPDATE, f"IAM policy {arn}", why + document_change(live, document)), update

    def _no_downgrade(self, ctx: PhaseContext) -> None:
        """The policy of an older release than our controller runs is not put in place
        unless asked for (the controller phase refuses the downgrade in the same words)."""
        kube = ctx.kube
        deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is not None and ctx.owner.owns_object(deployment):
            running = controller_version(deployment)
            refuse_downgrade(running, ctx.config.controller_version, ctx.allow_downgrade)

    def _new_version(self, ctx: PhaseContext, arn: str, document: dict[str, Any]) -> None:
        iam = ctx.aws.iam
        versions = list(iam.pages("list_policy_versions", PolicyArn=arn))
        old = [v for v in versions if not v["IsDefaultVersion"]]
        if len(versions) >= 5:  # IAM keeps at most five versions
            oldest = min(old, key=lambda v: v["CreateDate"])
            iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
        iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True
        )

    # ---- role ---------------------------------------------------------------------------------

    def _role(
        self, ctx: PhaseContext, name: str, trust: dict[str, Any]
    ) -> tuple[Change, Callable[[], None]]:
        iam = ctx.aws.iam
        current = tolerate(lambda: iam.get_role(RoleName=name)["Role"], NO_ENTITY)
        if current is None:

            def create() -> None:
                with creating(ctx, ROLE, name, f"create role {name}"):
                    tolerate(
                        iam.create_role,
                        EXISTS,
                        RoleName=name,
                        AssumeRolePolicyDocument=json.dumps(trust),
                        Description=f"AWS Load Balancer Controller (IRSA), orchestrator "
                        f"deployment {ctx.deployment}",
                        Tags=ctx.owner_tags,
                    )

            why = "IRSA, for the controller's service account"
            return Change(CREATE, f"IAM role {name}", why), create
        if not _ours_or_released(ctx, name, iam_tags(ctx, ROLE, name), "role"):
            # used as it is, never changed or deleted
            return Change(USE, f"IAM role {name}", RELEASED), lambda: _adopt(ctx, ROLE, name)
        if same_document(current["AssumeRolePolicyDocument"], trust):
            return Change(USE, f"IAM role {name}"), lambda: _claim(ctx, ROLE, name)

        def update() -> None:
            claim(ctx, ROLE, name)
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))

        return Change(UPDATE, f"IAM role {name}", "its trust policy"), update

    def _attachment(
        self, ctx: PhaseContext, role: str, policy_arn: str, policy: str
    ) -> tuple[Change, Callable[[], None]]:
        attached = tolerate(
            lambda: list(ctx.aws.iam.pages("list_attached_role_policies", RoleName=role)),
            NO_ENTITY,
        )
        rid = f"{role}|{policy_arn}"
        what = f"attachment of {policy} to {role}"
        if any(p["PolicyArn"] == policy_arn for p in attached or []):

            def record() -> None:
                if any(not r.created for r in ctx.resources(ROLE)):
                    ctx.adopt(ATTACHMENT, rid)  # a released role's: used as is, never detached
                else:
                    claim(ctx, ATTACHMENT, rid)

            return Change(USE, what), record

        def attach() -> None:
            with creating(ctx, ATTACHMENT, rid, "attach policy"):
                ctx.aws.iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)

        return Change(CREATE, what), attach

    # ---- verify and rollback ------------------------------------------------------------------

    def verify(self, ctx: PhaseContext) -> str | None:
        iam = ctx.aws.iam
        out = ctx.outputs
        replaced = self._replaced(ctx)
        if replaced:  # so that plan lists their deletes, which run makes after `controller`
            return (
                f"{_described(replaced[0])}, which it replaced, is still there: it goes once "
                f"the controller runs as {out['role_name']}"
            )
        providers = [
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ]
        if out["oidc_provider_arn"] not in providers:
            return f"OIDC provider {out['oidc_provider_arn']} is gone"
        audiences = iam.get_open_id_connect_provider(
            OpenIDConnectProviderArn=out["oidc_provider_arn"]
        ).get("ClientIDList", [])
        if STS_AUDIENCE not in audiences:
            return f"OIDC provider {out['oidc_provider_arn']} no longer accepts {STS_AUDIENCE}"
        policy = tolerate(iam.get_policy, NO_ENTITY, PolicyArn=out["policy_arn"])
        if policy is None:
            return f"policy {out['policy_arn']} is gone"
        drift = self._policy_drift(ctx, out["policy_arn"], policy["Policy"]["DefaultVersionId"])
        if drift:
            return drift
        role = tolerate(lambda: iam.get_role(RoleName=out["role_name"])["Role"], NO_ENTITY)
        if role is None:
            return f"role {out['role_name']} is gone"
        issuer = ctx.earlier("preflight")["oidc_issuer"]
        wanted = trust_policy(oidc_provider_arn=out["oidc_provider_arn"], issuer=issuer)
        if not same_document(role["AssumeRolePolicyDocument"], wanted):
            return f"role {out['role_name']}'s trust policy changed"
        attached = list(iam.pages("list_attached_role_policies", RoleName=out["role_name"]))
        if not any(p["PolicyArn"] == out["policy_arn"] for p in attached):
            return f"policy {out['policy_arn']} is no longer attached to {out['role_name']}"
        return None

    def _policy_drift(self, ctx: PhaseContext, arn: str, default_version: str) -> str | None:
        """Why our policy's document is not the one the configured controller release
        needs (another release's, or edited by hand); None if it is, or not ours to change."""
        if not any(r.id == arn for r in ctx.owned(POLICY)):
            return None
        version = ctx.aws.iam.get_policy_version(PolicyArn=arn, VersionId=default_version)
        live = _document(version["PolicyVersion"]["Document"])
        wanted = controller_policy(_partition(ctx), ctx.config.controller_version)
        if same_document(live, wanted):
            return None
        return (
            f"policy {arn} is not the one controller {ctx.config.controller_version} needs "
            f"(that one {document_change(live, wanted)})"
        )

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        return marked_iam(ctx, search.cluster)

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies, newest first:
        for each resource this deployment made, delete it, or leave it (and why). Read all
        before the first delete, as the preview reads it."""
        runs_as = controller_role(ctx)
        undos: list[Undo] = []
        for resource in ctx.owned(ATTACHMENT):
            role, policy_arn = resource.id.split("|", 1)
            if role == runs_as:
                undos.append(_leave(ctx, resource, _STILL_USED))
            elif not self._ours_or_gone(ctx, ROLE, role):
                undos.append(_leave(ctx, resource, _NOT_OURS))
            else:
                undos.append(Undo(resource, DELETE, "", self._detaching(ctx, resource)))
        kept_roles, deleted_roles = set(), set()
        for resource in ctx.owned(ROLE):
            if not self._ours_or_gone(ctx, ROLE, resource.id):
                undos.append(_leave(ctx, resource, _NOT_OURS))
                kept_roles.add(resource.id)
            elif resource.id == runs_as:
                undos.append(_release(ctx, ROLE, resource, _STILL_USED))
                kept_roles.add(resource.id)
            else:
                undos.append(Undo(resource, DELETE, "", self._deleting_role(ctx, resource)))
                deleted_roles.add(resource.id)
        for resource in ctx.owned(POLICY):
            if not self._ours_or_gone(ctx, POLICY, resource.id):
                undos.append(_leave(ctx, resource, _NOT_OURS))
                continue
            holders = [
                role
                for role in policy_roles(ctx, resource.id)
                if role in kept_roles or role == runs_as or not self._ours_or_gone(ctx, ROLE, role)
            ]
            if holders:
                reason = _STILL_USED if runs_as in holders else _USED_BY.format(", ".join(holders))
                undos.append(_release(ctx, POLICY, resource, reason))
            else:
                undos.append(Undo(resource, DELETE, "", self._deleting_policy(ctx, resource)))
        for resource in ctx.owned(OIDC):
            if not self._ours_or_gone(ctx, OIDC, resource.id):
                undos.append(_leave(ctx, resource, _NOT_OURS))
                continue
            trusting = roles_trusting(ctx, resource.id, exclude=deleted_roles)
            if trusting:
                shown = ", ".join(trusting[:5]) + (" and more" if len(trusting) > 5 else "")
                reason = f"IAM roles trust it for IRSA ({shown}); deleting it would break them"
                undos.append(_release(ctx, OIDC, resource, reason))
            else:
                undos.append(Undo(resource, DELETE, "", self._deleting_provider(ctx, resource)))
        return undos

    def _detaching(self, ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
        def detach() -> None:
            role, policy_arn = resource.id.split("|", 1)
            tolerate(ctx.aws.iam.detach_role_policy, NO_ENTITY, RoleName=role, PolicyArn=policy_arn)
            ctx.deleted(resource)

        return detach

    def _deleting_role(self, ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
        def delete() -> None:
            self._delete_role(ctx, resource.id)
            ctx.deleted(resource)

        return delete

    def _deleting_policy(self, ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
        def delete() -> None:
            # No role that stays uses it: the roles still attached carry our marks (a role
            # the state file did not name, edited to name another's): the sweep deletes them.
            for role in policy_roles(ctx, resource.id):
                tolerate(
                    ctx.aws.iam.detach_role_policy,
                    NO_ENTITY,
                    RoleName=role,
                    PolicyArn=resource.id,
                )
            self._delete_policy(ctx, resource.id)
            ctx.deleted(resource)

        return delete

    def _deleting_provider(self, ctx: PhaseContext, resource: Resource) -> Callable[[], None]:
        def delete() -> None:
            tolerate(
                ctx.aws.iam.delete_open_id_connect_provider,
                NO_ENTITY,
                OpenIDConnectProviderArn=resource.id,
            )
            ctx.deleted(resource)

        return delete

    def _ours_or_gone(self, ctx: PhaseContext, kind: str, rid: str) -> bool:
        """Whether the entity's tags name this deployment and state file (or it is gone:
        nothing to delete, which is fine)."""
        tags = tolerate(lambda: iam_tags(ctx, kind, rid), NO_ENTITY)
        return tags is None or ctx.owner.owns_tags(tags)

    def _delete_role(self, ctx: PhaseContext, name: str) -> None:
        """IAM refuses to delete a role with policies attached (DeleteConflict): whatever is
        still attached to our role (found by the sweep, its attachment not in the state)
        goes with it."""
        iam = ctx.aws.iam
        attached = tolerate(
            lambda: [*iam.pages("list_attached_role_policies", RoleName=name)], NO_ENTITY
        )
        for policy in attached or []:
            tolerate(
                iam.detach_role_policy, NO_ENTITY, RoleName=name, PolicyArn=policy["PolicyArn"]
            )
        tolerate(iam.delete_role, NO_ENTITY, RoleName=name)

    def _delete_policy(self, ctx: PhaseContext, arn: str) -> None:
        iam = ctx.aws.iam
        versions = tolerate(lambda: [*iam.pages("list_policy_versions", PolicyArn=arn)], NO_ENTITY)
        for version in versions or []:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        tolerate(iam.delete_policy, NO_ENTITY, PolicyArn=arn)


def _described(resource: Resource) -> str:
    if resource.kind == ATTACHMENT:
        role, policy = resource.id.split("|", 1)
        return f"IAM policy {policy} attached to role {role}"
    return f"IAM {'role' if resource.kind == ROLE else 'policy'} {resource.id}"


_NOT_OURS = "its tags say it is not this state file's"
RELEASED = "left by an earlier rollback of this deployment for the controller it left: used as is"
_USED_BY = "attached to IAM roles that stay ({}): detaching it would break them"
_STILL_USED = (
    "the AWS Load Balancer Controller left in place (still used by others) runs as this role"
)


def unmarking(ctx: PhaseContext, kind: str, rid: str) -> Callable[[str], None]:
    """How to release one of this phase's IAM entities (see PhaseContext.release): the kept
    mark on first, then this state file's marks off; tolerant of an entity gone since."""
    iam, ours = ctx.aws.iam, [OWNER_TAG, STATE_TAG]

    def unmark(mark: str) -> None:
        kept = [{"Key": kept_tag_key(ctx.deployment), "Value": mark}]
        if kind == ROLE:
            tolerate(iam.tag_role, NO_ENTITY, RoleName=rid, Tags=kept)
            tolerate(iam.untag_role, NO_ENTITY, RoleName=rid, TagKeys=ours)
        elif kind == POLICY:
            tolerate(iam.tag_policy, NO_ENTITY, PolicyArn=rid, Tags=kept)
            tolerate(iam.untag_policy, NO_ENTITY, PolicyArn=rid, TagKeys=ours)
        else:
            arn = {"OpenIDConnectProviderArn": rid}
            tolerate(iam.tag_open_id_connect_provider, NO_ENTITY, **arn, Tags=kept)
            tolerate(iam.untag_open_id_connect_provider, NO_ENTITY, **arn, TagKeys=ours)

    return unmark


def _leave(ctx: PhaseContext, resource: Resource, reason: str) -> Undo:
    return Undo(resource, LEAVE, reason, lambda: ctx.keep(resource, reason))


def _release(ctx: PhaseContext, kind: str, resource: Resource, reason: str) -> Undo:
    unmark = unmarking(ctx, kind, resource.id)
    return Undo(resource, LEAVE, reason, lambda: ctx.release(resource, reason, unmark))


def _adopt(ctx: PhaseContext, kind: str, rid: str) -> None:
    ctx.adopt(kind, rid)


def _claim(ctx: PhaseContext, kind: str, rid: str) -> None:
    claim(ctx, kind, rid)


def _partition(ctx: PhaseContext) -> str:
    """The partition of the caller's ARN (`aws`, `aws-cn`, `aws-us-gov`, ...)."""
    return partition_of(ctx.earlier("preflight")["caller_arn"])


def _ours_or_released(ctx: PhaseContext, rid: str, tags: list[dict[str, str]], what: str) -> bool:
    """An existing role or policy with our name: True if ours; False if an earlier rollback
    of this deployment released it (the controller it left runs as it): pre-existing, used
    as it is; else refuse."""
    if released_by(tags, ctx.deployment):
        return False
    other = ctx.owner.other_owner_of_tags(tags)
    if other is not None:
        raise PhaseError(
            f"the IAM {what} {rid.rsplit('/', 1)[-1]} belongs to this deployment's "
            f"{describe_identity(other)}, not to this one",
            "run orchestrator with that state file (--state PATH), or if it is lost, "
            "rebuild it with `orchestrator import`",
        )
    if not ctx.owner.owns_tags(tags):
        raise PhaseError(
            f"an IAM {what} named {rid.rsplit('/', 1)[-1]} already exists and was not created "
            f"by this deployment (no {OWNER_TAG}={ctx.deployment} tag)",
            f"delete or rename that {what} if it is stale, then run `orchestrator resume`",
        )
    return True


def _check_audience(ctx: PhaseContext, arn: str) -> None:
    """IRSA tokens are minted for sts.amazonaws.com; a provider that does not list it as a
    client id makes STS refuse them (InvalidIdentityToken), and the controller never works."""
    provider = ctx.aws.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=arn)
    audiences = provider.get("ClientIDList", [])
    if STS_AUDIENCE not in audiences:
        raise PhaseError(
            f"the cluster's IAM OIDC provider {arn} does not accept the audience {STS_AUDIENCE} "
            f"(its client ids: {', '.join(audiences) or 'none'}), so STS would refuse the "
            "controller's service account tokens",
            f"add it: `aws iam add-client-id-to-open-id-connect-provider "
            f"--open-id-connect-provider-arn {arn} --client-id {STS_AUDIENCE}`, then run "
            "`orchestrator resume`",
        )


def controller_role(ctx: PhaseContext) -> str | None:
    """The role name the controller in kube-system runs as, if it still runs there."""
    kube = ctx.kube
    if kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE) is None:
        return None
    account = kube.get("v1", "ServiceAccount", SERVICE_ACCOUNT, CONTROLLER_NAMESPACE) or {}
    annotations = (account.get("metadata") or {}).get("annotations") or {}
    arn = annotations.get(ROLE_ANNOTATION) or ""
    return arn.rsplit("/", 1)[-1] or None


def policy_roles(ctx: PhaseContext, arn: str) -> list[str]:
    """The roles a managed policy is attached to (none if it is gone)."""
    listed = tolerate(
        lambda: [
            r["RoleName"]
            for r in ctx.aws.iam.pages(
                "list_entities_for_policy", "PolicyRoles", PolicyArn=arn, EntityFilter="Role"
            )
        ],
        NO_ENTITY,
    )
    return listed or []


def trusts_provider(trust: Any, provider_arn: str) -> bool:
    """Whether a role's trust policy lets that OIDC provider's tokens in (IRSA)."""
    document = _document(trust)
    statements = document.get("Statement", [])
    for statement in statements if isinstance(statements, list) else [statements]:
        principal = statement.get("Principal") or {}
        federated = principal.get("Federated", []) if isinstance(principal, dict) else []
        if provider_arn in (federated if isinstance(federated, list) else [federated]):
            return True
    return False


def roles_trusting(ctx: PhaseContext, provider_arn: str, exclude: set[str]) -> list[str]:
    """Names of the account's roles that trust the provider, but for those just deleted (IAM
    may list a deleted role for a moment)."""
    return [
        role["RoleName"]
        for role in ctx.aws.iam.pages("list_roles", "Roles")
        if role["RoleName"] not in exclude
        and trusts_provider(role.get("AssumeRolePolicyDocument", {}), provider_arn)
    ]


def _document(value: Any) -> dict[str, Any]:
    """A policy document as IAM hands it out: decoded already, or URL-encoded JSON."""
    if isinstance(value, dict):
        return value
    return dict(json.loads(unquote(str(value))))


def document_change(live: dict[str, Any], wanted: dict[str, Any]) -> str:
    """What a new policy document changes of what the live one grants, briefly: the actions
    it adds and removes, or those whose resources or conditions change."""
    before, after = set(permissions(live)), set(permissions(wanted))
    old_actions = {row[1] for row in before}
    new_actions = {row[1] for row in after}
    parts = []
    if new_actions - old_actions:
        parts.append(f"adds {_few(new_actions - old_actions)}")
    if old_actions - new_actions:
        parts.append(f"removes {_few(old_actions - new_actions)}")
    reworded = {row[1] for row in before ^ after} & old_actions & new_actions
    if reworded:
        parts.append(f"changes the resources or conditions of {_few(reworded)}")
    return "; ".join(parts) or "grants the same (its statements are cut differently)"


def _few(actions: set[str], shown: int = 3) -> str:
    names = sorted(actions)
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def iam_tags(ctx: PhaseContext, kind: str, rid: str) -> list[dict[str, str]]:
    """The tags of one of the IAM entities this phase makes (NoSuchEntity if it is gone)."""
    iam = ctx.aws.iam
    if kind == ROLE:
        return list(iam.pages("list_role_tags", RoleName=rid))
    if kind == POLICY:
        return list(iam.pages("list_policy_tags", PolicyArn=rid))
    return list(iam.pages("list_open_id_connect_provider_tags", OpenIDConnectProviderArn=rid))


# ---- marks: what carries the deployment's tags (import, the sweep) ----------------------------


def marked_iam(ctx: PhaseContext, cluster: dict[str, Any] | None) -> list[Found]:
    """Our role and policy (by their names), the attachment, and the OIDC provider if ours
    (the cluster's; without the cluster, whichever of the account's carries our tags). The
    provider is shared: a rollback may leave it for others who use it."""
    iam = ctx.aws.iam
    identity_doc = ctx.aws.sts.get_caller_identity()
    account, partition = identity_doc["Account"], partition_of(identity_doc["Arn"])
    role, policy_name = names(ctx.deployment)
    policy = policy_arn(account, policy_name, partition)
    if cluster is not None:
        issuer = cluster["identity"]["oidc"]["issuer"]
        providers = [oidc_provider_arn(account, issuer, partition)]
    else:  # which provider was the cluster's is unknown: each one's tags say if it is ours
        listed = iam.list_open_id_connect_providers().get("OpenIDConnectProviderList", [])
        providers = [p["Arn"] for p in listed]
    found = []
    wanted = [(ROLE, role), (POLICY, policy), *((OIDC, arn) for arn in providers)]
    for kind, rid in wanted:
        tags = tolerate(iam_tags, NO_ENTITY, ctx=ctx, kind=kind, rid=rid)
        if tags is None:
            continue
        marks = tag_map(tags)
        if marks.get(OWNER_TAG) == ctx.deployment:
            shared = kind == OIDC
            found.append(Found("controller_iam", kind, rid, marks.get(STATE_TAG), shared=shared))
    if {f.kind for f in found} >= {ROLE, POLICY}:
        attached = iam.pages("list_attached_role_policies", RoleName=role)
        if any(p["PolicyArn"] == policy for p in attached):
            identity = next(f.identity for f in found if f.kind == ROLE)
            found.insert(0, Found("controller_iam", ATTACHMENT, f"{role}|{policy}", identity))
    return found
