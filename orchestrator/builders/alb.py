"""The ALB the controller makes for the Ingress, as AWS describes it: whether it failed,
and whether it serves yet. The load_balancer phase waits for it to be made, the endpoint
phase for it to serve; both read it here, neither imports the other."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from orchestrator.aws import tolerate
from orchestrator.errors import PhaseError

if TYPE_CHECKING:
    from orchestrator.phase import PhaseContext

SERVING = ("active", "active_impaired")
MADE = ("provisioning", *SERVING)  # states of an ALB that exists and has not failed


FAILED_HINT = (
    "look at the controller's logs and the Ingress events, fix the cause, then run "
    "`orchestrator resume`"
)


def failed(balancer: dict[str, Any]) -> str | None:
    """What is wrong with an ALB that AWS could not provision (`failed`), or None."""
    state = balancer["State"]
    if state["Code"] in MADE:
        return None
    return f"ALB {balancer['LoadBalancerName']} failed: {state.get('Reason', 'no reason given')}"


def serving_problem(ctx: PhaseContext, balancer_arn: str, warned: set[str]) -> str | None:
    """Why the ALB does not serve yet (it still provisions, or is gone), or None once it is
    active; PhaseError if it failed. An `active_impaired` ALB serves, and is warned of once
    per `warned` (the polls of one wait share it)."""
    found = tolerate(
        ctx.aws.elbv2.describe_load_balancers,
        "LoadBalancerNotFound",
        LoadBalancerArns=[balancer_arn],
    )
    if not found or not found["LoadBalancers"]:
        return f"ALB {balancer_arn} does not exist"
    balancer = found["LoadBalancers"][0]
    problem = failed(balancer)
    if problem:
        raise PhaseError(problem, FAILED_HINT)
    code = balancer["State"]["Code"]
    if code not in SERVING:
        return f"ALB {balancer['LoadBalancerName']} is {code}"
    if code == "active_impaired" and balancer_arn not in warned:
        warned.add(balancer_arn)
        ctx.say(impaired_warning(balancer))
    return None


def impaired_warning(balancer: dict[str, Any]) -> str:
    state = balancer["State"]
    return (
        f"warning: ALB {balancer['LoadBalancerName']} is active_impaired"
        f"{': ' + state['Reason'] if state.get('Reason') else ''}; it serves, but not in "
        "every Availability Zone: look at the ALB in the EC2 console and the AWS Health "
        "Dashboard"
    )
