"""The controller's AWS identity: IAM Roles for Service Accounts, as STS and IAM judge it.

A pod's ServiceAccount annotated with a role ARN gets a web identity token from the
cluster's OIDC issuer; STS exchanges it for the role's credentials only if IAM has an
OIDC provider for that issuer and the role's trust policy lets that provider's token for
that ServiceAccount in. Then IAM decides each action by the role's policies. Failures
are `ModelError("deploy", ...)` worded as the controller's AWS SDK reports them.
"""

from __future__ import annotations

import fnmatch
import json
import time
from typing import Any
from urllib.parse import unquote

from orchestrator_sandbox.albmodel import ModelError

Obj = dict[str, Any]
AUDIENCE = "sts.amazonaws.com"
WEB_IDENTITY_ACTION = "sts:AssumeRoleWithWebIdentity"


# ---- policy evaluation (pure) ------------------------------------------------------------------


def document(value: Any) -> Obj:
    """A policy document as IAM returns it: already decoded, or URL-encoded JSON."""
    if isinstance(value, dict):
        return value
    return json.loads(unquote(value))


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _matches(patterns: Any, action: str) -> bool:
    # IAM action names are case-insensitive and take `*` and `?` wildcards.
    return any(fnmatch.fnmatchcase(action.lower(), str(p).lower()) for p in _listed(patterns))


def policy_decision(documents: list[Obj], action: str) -> str | None:
    """ "deny" if a statement denies `action`, else "allow" if one allows it, else None.

    Resources and conditions of identity policies are not evaluated."""
    decision = None
    for statement in (s for d in documents for s in _listed(d.get("Statement", []))):
        if "Action" in statement:
            hit = _matches(statement["Action"], action)
        else:
            hit = "NotAction" in statement and not _matches(statement["NotAction"], action)
        if hit and statement.get("Effect") == "Deny":
            return "deny"
        if hit and statement.get("Effect") == "Allow":
            decision = "allow"
    return decision


def trust_allows(trust: Obj, provider_arn: str, issuer_host: str, subject: str) -> bool:
    """Whether a role's trust policy lets `subject`'s web identity token assume it."""
    for statement in _listed(trust.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        if not _matches(statement.get("Action", []), WEB_IDENTITY_ACTION):
            continue
        principal = statement.get("Principal") or {}
        federated = principal.get("Federated", []) if isinstance(principal, dict) else []
        if provider_arn not in _listed(federated):
            continue
        if _token_conditions_hold(statement.get("Condition") or {}, issuer_host, subject):
            return True
    return False


def _token_conditions_hold(conditions: Obj, issuer_host: str, subject: str) -> bool:
    """The token's `sub` (required) and `aud` (if tested) claims pass the conditions."""
    claims = {f"{issuer_host}:sub": subject, f"{issuer_host}:aud": AUDIENCE}
    subject_checked = False
    for operator, tests in conditions.items():
        for key, expected in (tests or {}).items():
            if key not in claims:
                continue
            if operator == "StringEquals":
                ok = claims[key] in _listed(expected)
            elif operator == "StringLike":
                ok = any(fnmatch.fnmatchcase(claims[key], str(e)) for e in _listed(expected))
            else:
                continue
            if not ok:
                return False
            subject_checked |= key.endswith(":sub")
    return subject_checked


# ---- the checks, against IAM and EKS ----------------------------------------------------------


class ControllerIdentity:
    """Whether a ServiceAccount's role can be assumed, and what it may do."""

    def __init__(self, iam: Any, eks: Any, cluster: str, account: str) -> None:
        self.iam = iam
        self.eks = eks
        self.cluster = cluster
        self.account = account
        # The SDK names an IRSA session after the time it assumed the role.
        self.session_name = str(time.time_ns())

    def assume(self, namespace: str, service_account: str, role_arn: str | None) -> str:
        """The role name STS would give the ServiceAccount's pods credentials for."""
        if not role_arn:
            # No token is mounted, and no other credentials are found.
            raise ModelError(
                "deploy",
                "NoCredentialProviders: no valid providers in chain. Deprecated.\n"
                "\tFor verbose messaging see aws.Config.CredentialsChainVerboseErrors",
            )
        cluster = self.eks.describe_cluster(name=self.cluster)["cluster"]
        issuer = cluster["identity"]["oidc"]["issuer"]
        issuer_host = issuer.removeprefix("https://")
        provider_arn = f"arn:aws:iam::{self.account}:oidc-provider/{issuer_host}"
        providers = self.iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        if provider_arn not in {p["Arn"] for p in providers}:
            raise _web_identity_error(
                "InvalidIdentityToken: No OpenIDConnect provider found in your account for "
                + issuer
            )
        # The pod's token is minted for sts.amazonaws.com: STS checks that the provider
        # lists that audience among its client ids.
        provider = self.iam.get_open_id_connect_provider(OpenIDConnectProviderArn=provider_arn)
        if AUDIENCE not in provider.get("ClientIDList", []):
            raise _web_identity_error("InvalidIdentityToken: Incorrect token audience")
        role = self._role(role_arn)
        subject = f"system:serviceaccount:{namespace}:{service_account}"
        trust = document(role["AssumeRolePolicyDocument"]) if role else {}
        if role is None or not trust_allows(trust, provider_arn, issuer_host, subject):
            raise _web_identity_error(
                f"AccessDenied: Not authorized to perform {WEB_IDENTITY_ACTION}"
            )
        return role["RoleName"]

    def require(self, role_name: str, action: str, resource: str) -> None:
        """ModelError unless the role's policies allow `action`."""
        decision = policy_decision(self.policies(role_name), action)
        if decision == "allow":
            return
        why = (
            "with an explicit deny in an identity-based policy"
            if decision == "deny"
            else f"because no identity-based policy allows the {action} action"
        )
        raise ModelError(
            "deploy",
            f"AccessDenied: User: arn:aws:sts::{self.account}:assumed-role/{role_name}/"
            f"{self.session_name} is not authorized to perform: {action} on resource: "
            f"{resource} {why}",
        )

    def policies(self, role_name: str) -> list[Obj]:
        """The role's inline policies and the default versions of its attached ones."""
        iam = self.iam
        documents = []
        for name in iam.list_role_policies(RoleName=role_name)["PolicyNames"]:
            policy = iam.get_role_policy(RoleName=role_name, PolicyName=name)
            documents.append(document(policy["PolicyDocument"]))
        for item in iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]:
            policy = iam.get_policy(PolicyArn=item["PolicyArn"])["Policy"]
            version = iam.get_policy_version(
                PolicyArn=item["PolicyArn"], VersionId=policy["DefaultVersionId"]
            )["PolicyVersion"]
            documents.append(document(version["Document"]))
        return documents

    def _role(self, role_arn: str) -> Obj | None:
        if not role_arn.startswith(f"arn:aws:iam::{self.account}:role/"):
            return None
        try:
            role = self.iam.get_role(RoleName=role_arn.rsplit("/", 1)[-1])["Role"]
        except self.iam.exceptions.NoSuchEntityException:
            return None
        return role if role["Arn"] == role_arn else None  # the path must match too


def _web_identity_error(cause: str) -> ModelError:
    return ModelError(
        "deploy", f"WebIdentityErr: failed to retrieve credentials\ncaused by: {cause}"
    )
