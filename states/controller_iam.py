"""controller_iam: the IAM side of the AWS Load Balancer Controller's IRSA.

The cluster's IAM OIDC provider (used if it exists, created only if missing), an IAM
policy with what the controller needs, and a role that only the controller's service
account can assume, with the policy attached.
"""

from __future__ import annotations

import json
from typing import Any

from orchestrator.errors import PhaseError
from orchestrator.phase import OWNER_TAG, Phase, PhaseContext
from states.controller_manifests import (
    STS_AUDIENCE,
    controller_policy,
    oidc_provider_arn,
    trust_policy,
)

OIDC = "iam:oidc-provider"
POLICY = "iam:policy"
ROLE = "iam:role"
ATTACHMENT = "iam:role-policy-attachment"
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
    outputs = ("role_arn", "policy_arn", "oidc_provider_arn")

    def enter(self, ctx: PhaseContext) -> None:
        preflight = ctx.earlier("preflight")
        issuer = preflight["oidc_issuer"]
        provider = self._oidc_provider(ctx, oidc_provider_arn(preflight["account"], issuer), issuer)
        role_name, policy_name = names(ctx.deployment)
        policy_arn = self._policy(
            ctx, f"arn:aws:iam::{preflight['account']}:policy/{policy_name}", policy_name
        )
        trust = trust_policy(oidc_provider_arn=provider, issuer=issuer)
        role_arn = self._role(ctx, role_name, trust)
        self._attach(ctx, role_name, policy_arn)
        ctx.outputs.update(
            role_arn=role_arn,
            role_name=role_name,
            policy_arn=policy_arn,
            oidc_provider_arn=provider,
        )

    # ---- OIDC provider ------------------------------------------------------------------------

    def _oidc_provider(self, ctx: PhaseContext, arn: str, issuer: str) -> str:
        iam = ctx.aws.iam
        existing = [
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ]
        mine = ctx.find(OIDC, arn)
        if arn in existing:
            tags = iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=arn)["Tags"]
            if _ours(tags, ctx.deployment):
                ctx.confirm(mine or ctx.intend(OIDC, arn, "record own OIDC provider"))
            elif mine is None or not mine.created:
                ctx.adopt(OIDC, arn)  # the cluster's provider already existed: never deleted
            return arn
        resource = mine if mine and mine.created else ctx.intend(OIDC, arn, "create OIDC provider")
        self._create_provider(ctx, issuer)
        ctx.confirm(resource)
        return arn

    def _create_provider(self, ctx: PhaseContext, issuer: str) -> None:
        from orchestrator.aws import AwsError

        try:
            ctx.aws.iam.create_open_id_connect_provider(
                Url=issuer,
                ClientIDList=[STS_AUDIENCE],
                ThumbprintList=[EKS_OIDC_THUMBPRINT],
                Tags=ctx.owner_tags,
            )
        except AwsError as exc:
            if exc.code != "EntityAlreadyExists":  # our earlier attempt went through
                raise

    # ---- policy -------------------------------------------------------------------------------

    def _policy(self, ctx: PhaseContext, arn: str, name: str) -> str:
        iam = ctx.aws.iam
        document = controller_policy()
        current = _get(lambda: iam.get_policy(PolicyArn=arn)["Policy"])
        if current is None:
            resource = ctx.find(POLICY, arn) or ctx.intend(POLICY, arn, f"create policy {name}")
            _tolerate_exists(
                lambda: iam.create_policy(
                    PolicyName=name,
                    PolicyDocument=json.dumps(document),
                    Description=f"AWS Load Balancer Controller, orchestrator deployment "
                    f"{ctx.deployment}",
                    Tags=ctx.owner_tags,
                )
            )
            ctx.confirm(resource)
            return arn
        self._claim(ctx, POLICY, arn, iam.list_policy_tags(PolicyArn=arn)["Tags"], "policy")
        version = iam.get_policy_version(PolicyArn=arn, VersionId=current["DefaultVersionId"])
        if not same_document(version["PolicyVersion"]["Document"], document):
            self._new_version(ctx, arn, document)
        return arn

    def _new_version(self, ctx: PhaseContext, arn: str, document: dict[str, Any]) -> None:
        iam = ctx.aws.iam
        versions = iam.list_policy_versions(PolicyArn=arn)["Versions"]
        old = [v for v in versions if not v["IsDefaultVersion"]]
        if len(versions) >= 5:  # IAM keeps at most five versions
            oldest = min(old, key=lambda v: v["CreateDate"])
            iam.delete_policy_version(PolicyArn=arn, VersionId=oldest["VersionId"])
        iam.create_policy_version(
            PolicyArn=arn, PolicyDocument=json.dumps(document), SetAsDefault=True
        )

    # ---- role ---------------------------------------------------------------------------------

    def _role(self, ctx: PhaseContext, name: str, trust: dict[str, Any]) -> str:
        iam = ctx.aws.iam
        current = _get(lambda: iam.get_role(RoleName=name)["Role"])
        if current is None:
            resource = ctx.find(ROLE, name) or ctx.intend(ROLE, name, f"create role {name}")
            _tolerate_exists(
                lambda: iam.create_role(
                    RoleName=name,
                    AssumeRolePolicyDocument=json.dumps(trust),
                    Description=f"AWS Load Balancer Controller (IRSA), orchestrator deployment "
                    f"{ctx.deployment}",
                    Tags=ctx.owner_tags,
                )
            )
            ctx.confirm(resource)
            return iam.get_role(RoleName=name)["Role"]["Arn"]
        self._claim(ctx, ROLE, name, iam.list_role_tags(RoleName=name)["Tags"], "role")
        if not same_document(current["AssumeRolePolicyDocument"], trust):
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=json.dumps(trust))
        return current["Arn"]

    def _attach(self, ctx: PhaseContext, role: str, policy_arn: str) -> None:
        attached = ctx.aws.iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
        rid = f"{role}|{policy_arn}"
        if any(p["PolicyArn"] == policy_arn for p in attached):
            ctx.confirm(ctx.find(ATTACHMENT, rid) or ctx.intend(ATTACHMENT, rid, "record"))
            return
        resource = ctx.find(ATTACHMENT, rid) or ctx.intend(ATTACHMENT, rid, "attach policy")
        ctx.aws.iam.attach_role_policy(RoleName=role, PolicyArn=policy_arn)
        ctx.confirm(resource)

    def _claim(
        self, ctx: PhaseContext, kind: str, rid: str, tags: list[dict[str, str]], what: str
    ) -> None:
        """An existing role or policy with our name: ours if tagged so, else refuse."""
        if not _ours(tags, ctx.deployment):
            raise PhaseError(
                f"an IAM {what} named {rid.rsplit('/', 1)[-1]} already exists and was not created "
                f"by this deployment (no {OWNER_TAG}={ctx.deployment} tag)",
                f"delete or rename that {what} if it is stale, then run `orchestrator resume`",
            )
        resource = ctx.find(kind, rid)
        if resource is None or not resource.confirmed:
            ctx.confirm(resource or ctx.intend(kind, rid, f"record own {what}"))

    # ---- verify and rollback ------------------------------------------------------------------

    def verify(self, ctx: PhaseContext) -> str | None:
        iam = ctx.aws.iam
        out = ctx.outputs
        providers = [
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ]
        if out["oidc_provider_arn"] not in providers:
            return f"OIDC provider {out['oidc_provider_arn']} is gone"
        if _get(lambda: iam.get_policy(PolicyArn=out["policy_arn"])) is None:
            return f"policy {out['policy_arn']} is gone"
        role = _get(lambda: iam.get_role(RoleName=out["role_name"])["Role"])
        if role is None:
            return f"role {out['role_name']} is gone"
        issuer = ctx.earlier("preflight")["oidc_issuer"]
        wanted = trust_policy(oidc_provider_arn=out["oidc_provider_arn"], issuer=issuer)
        if not same_document(role["AssumeRolePolicyDocument"], wanted):
            return f"role {out['role_name']}'s trust policy changed"
        attached = iam.list_attached_role_policies(RoleName=out["role_name"])["AttachedPolicies"]
        if not any(p["PolicyArn"] == out["policy_arn"] for p in attached):
            return f"policy {out['policy_arn']} is no longer attached to {out['role_name']}"
        return None

    def rollback(self, ctx: PhaseContext) -> None:
        iam = ctx.aws.iam
        for resource in ctx.owned(ATTACHMENT):
            role, policy_arn = resource.id.split("|", 1)
            _gone_ok(lambda r=role, p=policy_arn: iam.detach_role_policy(RoleName=r, PolicyArn=p))
            ctx.forget(resource)
        for resource in ctx.owned(ROLE):
            _gone_ok(lambda r=resource.id: iam.delete_role(RoleName=r))
            ctx.forget(resource)
        for resource in ctx.owned(POLICY):
            self._delete_policy(ctx, resource.id)
            ctx.forget(resource)
        for resource in ctx.owned(OIDC):
            _gone_ok(
                lambda a=resource.id: iam.delete_open_id_connect_provider(
                    OpenIDConnectProviderArn=a
                )
            )
            ctx.forget(resource)

    def _delete_policy(self, ctx: PhaseContext, arn: str) -> None:
        iam = ctx.aws.iam
        versions = _get(lambda: iam.list_policy_versions(PolicyArn=arn)["Versions"]) or []
        for version in versions:
            if not version["IsDefaultVersion"]:
                iam.delete_policy_version(PolicyArn=arn, VersionId=version["VersionId"])
        _gone_ok(lambda: iam.delete_policy(PolicyArn=arn))


def _ours(tags: list[dict[str, str]], deployment: str) -> bool:
    return any(t["Key"] == OWNER_TAG and t["Value"] == deployment for t in tags)


def _get(read: Any) -> Any:
    """The result of an IAM read, or None if the entity does not exist."""
    from orchestrator.aws import AwsError

    try:
        return read()
    except AwsError as exc:
        if exc.code == "NoSuchEntity":
            return None
        raise


def _gone_ok(delete: Any) -> None:
    _get(delete)


def _tolerate_exists(create: Any) -> None:
    """A create that may have gone through on an earlier attempt whose answer was lost."""
    from orchestrator.aws import AwsError

    try:
        create()
    except AwsError as exc:
        if exc.code != "EntityAlreadyExists":
            raise
