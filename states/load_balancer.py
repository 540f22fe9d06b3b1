"""load_balancer: wait for the controller's ALB (Ingress hostname, then ALB `active`).

While waiting, the Ingress's latest Kubernetes Event is the wait's detail, so `status`
shows why no ALB appears (e.g. the controller's FailedBuildModel message). An ALB that
is `active_impaired` (it cannot scale or route in some zone) serves, so the run goes on,
but says so loudly rather than wait or hide it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import WAIT, Change
from orchestrator.states.ingress import NAME, NAMESPACE
from orchestrator.store import elapsed_since

WAIT_LIMIT = 1800
SERVING = ("active", "active_impaired")
# Seconds of silence on the Ingress after which the wait suggests the controller is down.
QUIET_LIMIT = 120


def hostname_of(ingress: dict[str, Any] | None) -> str | None:
    entries = (((ingress or {}).get("status") or {}).get("loadBalancer") or {}).get("ingress")
    return (entries or [{}])[0].get("hostname")


def latest_event(events: list[dict[str, Any]]) -> str | None:
    """The newest event as "Type Reason: message", preferring warnings of the same age."""
    if not events:
        return None
    newest = max(
        events,
        key=lambda e: (
            e.get("lastTimestamp") or e.get("eventTime") or "",
            e.get("type") == "Warning",
        ),
    )
    message = " ".join((newest.get("message") or "").split())
    return f"{newest.get('type', 'Normal')} {newest.get('reason')}: {message}"


class LoadBalancerPhase(Phase):
    name = "load_balancer"
    title = "wait for the controller's ALB to be active"
    inputs = ("kubeflow.alb.scheme",)
    outputs = ("hostname", "load_balancer_arn", "canonical_hosted_zone_id")
    reads = ()

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [
            Change(
                WAIT,
                f"for the ALB of Ingress {NAMESPACE}/{NAME} to be active",
                "the controller makes it",
            )
        ]

    def enter(self, ctx: PhaseContext) -> None:
        balancer = ctx.wait_until(
            f"the ALB of Ingress {NAMESPACE}/{NAME}", lambda: self._active(ctx), limit=WAIT_LIMIT
        )
        ctx.outputs.update(
            hostname=balancer["DNSName"],
            load_balancer_arn=balancer["LoadBalancerArn"],
            load_balancer_name=balancer["LoadBalancerName"],
            canonical_hosted_zone_id=balancer["CanonicalHostedZoneId"],
            scheme=balancer["Scheme"],
        )

    def _active(self, ctx: PhaseContext) -> dict[str, Any] | None:
        ingress = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        hostname = hostname_of(ingress)
        if hostname is None:
            events = ctx.kube.events_for("Ingress", NAME, NAMESPACE)
            ctx.note(latest_event(events) or quiet_controller(ctx.record.waiting_since))
            return None
        balancer = find_by_dns_name(ctx, hostname)
        if balancer is None:
            ctx.note(f"Ingress has hostname {hostname}, but no such load balancer exists yet")
            return None
        state = balancer["State"]
        if state["Code"] == "failed":
            raise PhaseError(
                f"ALB {balancer['LoadBalancerName']} failed: "
                f"{state.get('Reason', 'no reason given')}",
                "look at the controller's logs and the Ingress events, fix the "
                "cause, then run `orchestrator resume`",
            )
        if state["Code"] not in SERVING:
            ctx.note(f"ALB {balancer['LoadBalancerName']} is {state['Code']}")
            return None
        if state["Code"] == "active_impaired":
            ctx.say(impaired_warning(balancer))
        return balancer

    def verify(self, ctx: PhaseContext) -> str | None:
        ingress = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        if hostname_of(ingress) != ctx.outputs["hostname"]:
            return "the Ingress points at another load balancer"
        balancer = find_by_dns_name(ctx, ctx.outputs["hostname"])
        if balancer is None or balancer["State"]["Code"] not in SERVING:
            return f"ALB {ctx.outputs['hostname']} is not active"
        if balancer["State"]["Code"] == "active_impaired":
            ctx.say(impaired_warning(balancer))
        return None


def quiet_controller(waiting_since: str | None) -> str:
    """What a wait says while the controller has not reported on the Ingress: normal for
    a while; past QUIET_LIMIT, a sign that it does not run."""
    quiet = elapsed_since(waiting_since) or 0.0
    if quiet < QUIET_LIMIT:
        return "the controller has not reported on the Ingress yet"
    return (
        f"the controller has not reported on the Ingress in {quiet:.0f}s: check that it runs "
        "(kubectl -n kube-system get deployment aws-load-balancer-controller)"
    )


def impaired_warning(balancer: dict[str, Any]) -> str:
    state = balancer["State"]
    return (
        f"warning: ALB {balancer['LoadBalancerName']} is active_impaired"
        f"{': ' + state['Reason'] if state.get('Reason') else ''}; it serves, but not in "
        "every Availability Zone: look at the ALB in the EC2 console and the AWS Health "
        "Dashboard"
    )


def find_by_dns_name(ctx: PhaseContext, hostname: str) -> dict[str, Any] | None:
    wanted = hostname.rstrip(".").lower().removeprefix("dualstack.")
    for balancer in ctx.aws.elbv2.pages("describe_load_balancers", "LoadBalancers"):
        if balancer["DNSName"].rstrip(".").lower() == wanted:
            return balancer
    return None
