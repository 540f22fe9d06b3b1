"""load_balancer: wait for the controller to make the ALB (the Ingress hostname, and an ALB
by that name that has not failed).

The controller writes the hostname into the Ingress status as soon as it has created the
load balancer, which AWS then provisions for two or three minutes. This phase ends there,
so that `dns_record` writes the alias while the ALB provisions and Route 53's propagation
overlaps it; `endpoint` waits for the ALB to be `active` and its targets healthy.

While waiting, the Ingress's latest Kubernetes Event is the wait's detail, so `status`
shows why no ALB appears (e.g. the controller's FailedBuildModel message). An ALB that
is `active_impaired` (it cannot scale or route in some zone) serves, so the run goes on,
but says so loudly rather than wait or hide it.
"""

from __future__ import annotations

from typing import Any

from orchestrator.builders.alb import FAILED_HINT, failed
from orchestrator.builders.ingress import NAME, NAMESPACE
from orchestrator.errors import PhaseError
from orchestrator.phase import Phase, PhaseContext
from orchestrator.planning import WAIT, Change
from orchestrator.store import elapsed_since

WAIT_LIMIT = 1800
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
    title = "wait for the controller to make the ALB"
    inputs = ("kubeflow.alb.scheme",)
    outputs = ("hostname", "load_balancer_arn", "canonical_hosted_zone_id")
    reads = ()

    def plan(self, ctx: PhaseContext) -> list[Change]:
        """A wait; but an ALB that failed stops `run` here (no phase before this one makes
        another), so plan stops, in enter's words. An Ingress being deleted does not: the
        ingress phase before this one waits for it to go and makes it anew."""
        ingress = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        hostname = hostname_of(ingress)
        if hostname is not None and not being_deleted(ingress):
            self._balancer(ctx, hostname)
        return [
            Change(
                WAIT,
                f"for the controller to make the ALB of Ingress {NAMESPACE}/{NAME}",
                "the controller makes it",
            )
        ]

    def enter(self, ctx: PhaseContext) -> None:
        balancer = ctx.wait_until(
            f"the ALB of Ingress {NAMESPACE}/{NAME}", lambda: self._made(ctx), limit=WAIT_LIMIT
        )
        ctx.outputs.update(
            hostname=balancer["DNSName"],
            load_balancer_arn=balancer["LoadBalancerArn"],
            load_balancer_name=balancer["LoadBalancerName"],
            canonical_hosted_zone_id=balancer["CanonicalHostedZoneId"],
            scheme=balancer["Scheme"],
        )

    def _made(self, ctx: PhaseContext) -> dict[str, Any] | None:
        ingress = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        if being_deleted(ingress):
            # Its controller tears its ALB down: no ALB will ever be made for it.
            raise PhaseError(
                f"Ingress {NAMESPACE}/{NAME} is being deleted: the controller is tearing its "
                "ALB down, and will make none for it",
                "run `orchestrator run` again: the ingress phase waits for it to go, then "
                "makes it anew",
            )
        hostname = hostname_of(ingress)
        if hostname is None:
            events = ctx.kube.events_for("Ingress", NAME, NAMESPACE)
            ctx.note(latest_event(events) or quiet_controller(ctx.record.waiting_since))
            return None
        balancer = self._balancer(ctx, hostname)
        if balancer is None:
            ctx.note(f"Ingress has hostname {hostname}, but no such load balancer exists yet")
        return balancer

    def _balancer(self, ctx: PhaseContext, hostname: str) -> dict[str, Any] | None:
        """The ALB of that hostname, None if there is none yet; PhaseError if it failed."""
        balancer = find_by_dns_name(ctx, hostname)
        problem = failed(balancer) if balancer is not None else None
        if problem:
            raise PhaseError(problem, FAILED_HINT)
        return balancer

    def verify(self, ctx: PhaseContext) -> str | None:
        ingress = ctx.kube.get("networking.k8s.io/v1", "Ingress", NAME, NAMESPACE)
        if hostname_of(ingress) != ctx.outputs["hostname"]:
            return "the Ingress points at another load balancer"
        balancer = find_by_dns_name(ctx, ctx.outputs["hostname"])
        if balancer is None:
            return f"ALB {ctx.outputs['hostname']} does not exist"
        return failed(balancer)


def being_deleted(ingress: dict[str, Any] | None) -> bool:
    return bool(((ingress or {}).get("metadata") or {}).get("deletionTimestamp"))


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


def find_by_dns_name(ctx: PhaseContext, hostname: str) -> dict[str, Any] | None:
    wanted = hostname.rstrip(".").lower().removeprefix("dualstack.")
    for balancer in ctx.aws.elbv2.pages("describe_load_balancers", "LoadBalancers"):
        if balancer["DNSName"].rstrip(".").lower() == wanted:
            return balancer
    return None
