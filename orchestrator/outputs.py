"""A deployment's outputs (`orchestrator outputs`): what its phases recorded that a person
or a script needs next, such as the URL, the ALB's DNS name, the certificate ARNs and the
zone's name servers. Read from the state file only: no AWS or Kubernetes call.

Only phases that are done count: a failed or waiting phase may still hold what an earlier
attempt recorded, which may no longer be true.
"""

from __future__ import annotations

from orchestrator.store import DeploymentState, PhaseStatus

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    Outputs = dict[str, dict[str, Any]]  # phase name -> its outputs


def _field(phase: str, key: str) -> Callable[[Outputs], Any]:
    return lambda done: done.get(phase, {}).get(key)


def _url(done: Outputs) -> str | None:
    if "url" in done.get("endpoint", {}):
        return str(done["endpoint"]["url"])
    name = done.get("dns_record", {}).get("name")  # served there, not yet checked
    return f"https://{name}/" if name else None


def _certificate_arns(done: Outputs) -> list[str] | None:
    certificates = done.get("certificates", {}).get("certificates")
    return [c["arn"] for c in certificates] if certificates else None


# name -> (the phase that records it, how to read it), in the order shown.
KNOWN: dict[str, tuple[str, Callable[[Outputs], Any]]] = {
    "url": ("dns_record", _url),
    "alb_dns_name": ("load_balancer", _field("load_balancer", "hostname")),
    "alb_arn": ("load_balancer", _field("load_balancer", "load_balancer_arn")),
    "alb_zone_id": ("load_balancer", _field("load_balancer", "canonical_hosted_zone_id")),
    "certificate_arn": ("certificates", _field("certificates", "certificate_arn")),
    "certificate_arns": ("certificates", _certificate_arns),
    "zone_id": ("hosted_zone", _field("hosted_zone", "zone_id")),
    "name_servers": ("hosted_zone", _field("hosted_zone", "name_servers")),
    "delegation": ("delegation", _field("delegation", "mode")),
    "controller_role_arn": ("controller_iam", _field("controller_iam", "role_arn")),
    "controller_policy_arn": ("controller_iam", _field("controller_iam", "policy_arn")),
    "oidc_provider_arn": ("controller_iam", _field("controller_iam", "oidc_provider_arn")),
    "tagged_subnet_ids": ("subnet_tags", _field("subnet_tags", "subnet_ids")),
    "controller": ("controller", _field("controller", "deployment")),
    "ingress": ("ingress", _field("ingress", "ingress")),
    "account": ("preflight", _field("preflight", "account")),
    "vpc_id": ("preflight", _field("preflight", "vpc_id")),
}


def collect(state: DeploymentState) -> dict[str, Any]:
    """Every known output: its value, or None while the phase recording it is not done."""
    done = {r.name: r.outputs for r in state.phases if r.status == PhaseStatus.DONE}
    return {name: read(done) or None for name, (_, read) in KNOWN.items()}


def lines(name: str, value: Any, width: int) -> list[str]:
    """`name  value`, a list one item a line under its name."""
    if isinstance(value, list):
        return [f"{name}:"] + [f"  {item}" for item in value]
    return [f"{name:<{width}}  {value}"]
