"""ingress: the Ingress the AWS Load Balancer Controller turns into the ALB.

HTTPS on 443 with the issued certificate and a TLS 1.2+ policy, HTTP on 80 redirected
to HTTPS, IP targets, invalid header fields dropped, everything to the Istio ingress
gateway. An Ingress of that name that this deployment did not create stops the run.

Rollback deletes the Ingress and waits for the controller's teardown, which runs in
stages: the load balancer and its listeners, then the TargetGroupBindings and target
groups, then the security groups (EC2 refuses while the load balancer's network
interfaces drain, which takes minutes), and only then the controller removes its
finalizer and the Ingress goes. Until all of that is gone the controller must keep
running, so the phases after this one (the controller, its IAM role) wait for it.

One decision each way: `_decide` is what plan lists and enter applies, `rollback_plan`
what the rollback preview shows (with what the delete sets off) and rollback applies.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from orchestrator.aws import elbv2_tags, tolerate
from orchestrator.builders.ingress import GATEWAY_SERVICE, NAME, NAMESPACE, OBJECT_ID
from orchestrator.builders.running_controller import controller_role, controller_running
from orchestrator.creating import creating
from orchestrator.errors import PhaseError
from orchestrator.kube import Webhook
from orchestrator.ownership import (
    DEPLOYMENT_LABEL,
    OWNER_TAG,
    STATE_LABEL,
    STATE_TAG,
    Owner,
    not_ours,
)
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CREATE, DELETE, LEAVE, UPDATE, WAIT, Change, Undo
from orchestrator.store import Resource

SSL_POLICY = "ELBSecurityPolicy-TLS13-1-2-2021-06"  # TLS 1.2 and 1.3 only
KIND = "kubernetes:object"
INGRESS = ("networking.k8s.io/v1", "Ingress")
TARGET_GROUP_BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"
STACK = f"{NAMESPACE}/{NAME}"  # the controller's name for what it makes for the Ingress
STACK_SELECTOR = f"ingress.k8s.aws/stack-namespace={NAMESPACE},ingress.k8s.aws/stack-name={NAME}"
INGRESS_FINALIZER = "ingress.k8s.aws/resources"
BINDING_FINALIZER = "elbv2.k8s.aws/resources"
# The kinds of the controller's that its admission webhooks guard, and the suffix of those
# webhooks' names (fixed in its chart, whatever the release is called).
WEBHOOKED = (("networking.k8s.io", "ingresses"), ("elbv2.k8s.aws", "targetgroupbindings"))
CONTROLLER_WEBHOOKS = ".elbv2.k8s.aws"
# Seconds between two reads of the stack in AWS while the teardown wait sees the Ingress
# stand (see TeardownProgress).
AWS_READ_INTERVAL = 10.0
# What the controller's Events say when its AWS identity fails: it can do nothing at all.
IDENTITY_FAILURES = (
    "WebIdentityErr",
    "NoCredentialProviders",
    "InvalidIdentityToken",
    "AccessDenied",
    "is not authorized to perform",
)
# Seconds a cause may stay after the controller's role was put back (IAM propagates).
CANNOT_ACT_GRACE = 30.0
# What AWS answers while something still holds what we delete: tried again next pass.
STILL_HELD = ("DependencyViolation", "ResourceInUse")
# What ELBv2 and EC2 answer for a load balancer, target group or security group that is
# gone already: nothing more to do.
GONE = (
    "LoadBalancerNotFound",
    "TargetGroupNotFound",
    "InvalidGroup.NotFound",
    "InvalidGroupId.NotFound",
)
# What deleting our Ingress sets off, as the rollback preview says it (see teardown).
TEARDOWN = "the controller then deletes the ALB, its listeners, target groups and security groups"
REINSTALL = (
    "the AWS Load Balancer Controller this deployment installed is not running: it is "
    "installed again for that (its own rollback removes it afterwards)"
)
BY_HAND = (
    "the AWS Load Balancer Controller is not running, and it is not this deployment's to "
    f"bring back: what it made for {STACK} (the ALB, its listeners, target groups and security "
    "groups) is deleted by its tags, and its finalizers removed"
)
# Why enter waits before it applies: applying over an Ingress being deleted changes nothing
# of that (see IngressPhase._wait_gone).
WAIT_WHY = "its rollback was interrupted: the controller tears its ALB down first"


def ingress_manifest(*, scheme: str, certificate_arns: list[str], owner: Owner) -> dict[str, Any]:
    prefix = "alb.ingress.kubernetes.io/"
    annotations = {
        prefix + "scheme": scheme,
        prefix + "target-type": "ip",
        prefix + "certificate-arn": ",".join(certificate_arns),
        prefix + "listen-ports": json.dumps([{"HTTP": 80}, {"HTTPS": 443}]),
        prefix + "ssl-redirect": "443",
        prefix + "ssl-policy": SSL_POLICY,
        prefix + "load-balancer-attributes": "routing.http.drop_invalid_header_fields.enabled=true",
        prefix + "healthcheck-path": "/healthz/ready",
        prefix + "healthcheck-port": "15021",  # the gateway's status port
        # The controller tags what it makes for the Ingress (ALB, target groups, security
        # groups) with these too, so they carry the deployment's and the state's marks.
        prefix + "tags": f"{OWNER_TAG}={owner.deployment},{STATE_TAG}={owner.identity}",
    }
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "Ingress",
        "metadata": {
            "name": NAME,
            "namespace": NAMESPACE,
            "labels": owner.labels,
            "annotations": annotations,
        },
        "spec": {
            "ingressClassName": "alb",
            "rules": [
                {
                    "http": {
                        "paths": [
                            {
                                "path": "/",
                                "pathType": "Prefix",
                                "backend": {
                                    "service": {"name": GATEWAY_SERVICE, "port": {"number": 80}}
                                },
                            }
                        ]
                    }
                }
            ],
        },
    }


def drift(live: dict[str, Any] | None, wanted: dict[str, Any]) -> str | None:
    """How the live Ingress differs from the one we apply, or None."""
    if live is None:
        return f"Ingress {NAMESPACE}/{NAME} is gone"
    annotations = (live.get("metadata") or {}).get("annotations") or {}
    for key, value in wanted["metadata"]["annotations"].items():
        if annotations.get(key) != value:
            return f"Ingress annotation {key} is {annotations.get(key)!r}, not {value!r}"
    spec = live.get("spec") or {}
    if spec.get("ingressClassName") != "alb" or spec.get("rules") != wanted["spec"]["rules"]:
        return "Ingress spec changed"
    return None


class IngressPhase(Phase):
    name = "ingress"
    title = f"Ingress {NAMESPACE}/{NAME} for the ALB"
    rollback_also = TEARDOWN  # what the preview says if rollback_plan cannot read
    inputs = ("kubeflow.alb.scheme", "route53.subDomain.name")
    outputs = ("ingress", "certificate_arn")
    reads = ("preflight", "controller_iam", "controller", "certificates_issued")

    def _wanted(self, ctx: PhaseContext) -> dict[str, Any]:
        arns = ctx.earlier("certificates_issued")["issued"]
        return ingress_manifest(
            scheme=ctx.config.alb_scheme, certificate_arns=arns, owner=ctx.owner
        )

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [change for change, _ in self._decide(ctx)]

    def enter(self, ctx: PhaseContext) -> None:
        for _, apply in self._decide(ctx):
            apply()
        ctx.outputs.update(
            ingress=STACK,
            certificate_arn=ctx.earlier("certificates_issued")["certificate_arn"],
        )

    def _decide(self, ctx: PhaseContext) -> list[tuple[Change, Callable[[], None]]]:
        """The one decision plan shows and enter applies: apply the Ingress (after waiting
        for one of ours being deleted to go). One of its name not ours stops both, in the
        same words, before any write."""
        live = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
        if live is not None and not ctx.owner.owns_object(live):
            raise PhaseError(
                f"Ingress {STACK} already exists and was not created by this "
                "deployment; orchestrator will not adopt, change or delete it",
                "delete or rename that Ingress if it is stale, then run `orchestrator resume`",
            )
        what = f"Ingress {STACK} ({ctx.config.alb_scheme} ALB, HTTPS with the certificates)"
        apply = partial(self._apply, ctx)
        if live is None:
            return [(Change(CREATE, what), apply)]
        if being_deleted(live):
            wait = Change(WAIT, f"Ingress {STACK} being deleted to go", WAIT_WHY)
            return [(wait, partial(self._wait_gone, ctx)), (Change(CREATE, what, "anew"), apply)]
        return [(Change(UPDATE, what, "applied again"), apply)]

    def _apply(self, ctx: PhaseContext) -> None:
        with creating(ctx, KIND, OBJECT_ID, "apply Ingress"):
            ctx.kube.apply(self._wanted(ctx))

    def _wait_gone(self, ctx: PhaseContext) -> None:
        """An Ingress being deleted stays so until the controller has torn its ALB down and
        removed its finalizer; applying over it changes nothing of that (the API server
        keeps it Terminating) and no ALB would ever be made for it. So the run waits for
        it to go, then makes it anew."""
        ctx.say(
            f"Ingress {STACK} is being deleted (its rollback was interrupted): waiting for "
            "the controller to finish, then making it anew"
        )

        def gone() -> bool | None:
            live = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
            if live is None:
                return True
            ctx.note("; ".join(kubernetes_leftovers(ctx, live)))
            return None

        ctx.wait_until(f"Ingress {STACK} being deleted to go", gone, limit=900)

    def verify(self, ctx: PhaseContext) -> str | None:
        live = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
        if live is not None and being_deleted(live):
            return f"Ingress {STACK} is being deleted"
        return drift(live, self._wanted(ctx))

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        return marked_ingress(ctx)

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies: delete the
        Ingress, saying what that sets off (see teardown), or leave it if its labels say it
        is not this state file's. Read before the delete, as the preview reads it."""
        undos = []
        for resource in ctx.owned(KIND):
            live = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
            if live is not None and not ctx.owner.owns_object(live):
                reason = not_ours(ctx.owner, "Ingress", live)
                undos.append(Undo(resource, LEAVE, reason, partial(ctx.keep, resource, reason)))
            else:
                why = teardown(ctx, live)
                undos.append(Undo(resource, DELETE, why, partial(self._delete, ctx, resource)))
        return undos

    def _delete(self, ctx: PhaseContext, resource: Resource) -> None:
        ctx.kube.delete(*INGRESS, NAME, NAMESPACE)
        self._wait_torn_down(ctx)
        ctx.deleted(resource)

    def _wait_torn_down(self, ctx: PhaseContext) -> None:
        """Wait for the controller's teardown. Without a running controller nothing would
        happen: the controller this deployment installed is brought back for it; one it
        did not install (adopted, now gone) is replaced by doing its teardown here."""
        said: set[str] = set()  # what the operator was told, told once

        def tell(what: str, message: str) -> None:
            if what not in said:
                said.add(what)
                ctx.say(message)

        progress = TeardownProgress(ctx)
        unable = ControllerUnable(ctx, tell)

        def torn_down() -> bool | None:
            left = progress()
            if not left:
                return True
            if ctx.kube.get(*INGRESS, NAME, NAMESPACE) is None:
                # No Ingress, no finalizer: no controller will ever clean these up.
                tell(
                    "orphans",
                    f"what the controller made for {STACK} outlived the Ingress: "
                    "deleting it by its tags",
                )
                clear_unanswered_webhooks(ctx, tell)
                tear_down_pass(ctx)
            elif controller_running(ctx.kube):
                unable.check()
            elif ctx.can_restore("controller"):
                if "reinstall" not in said:
                    tell(
                        "reinstall",
                        "the AWS Load Balancer Controller this deployment installed is not "
                        "running: installing it again to tear the ALB down (its own rollback "
                        "removes it afterwards)",
                    )
                    ctx.restore("controller")
            else:
                tell(
                    "by hand",
                    "the AWS Load Balancer Controller is not running, and it is not this "
                    f"deployment's to bring back: deleting what it made for {STACK} by its "
                    "tags, and removing its finalizers",
                )
                clear_unanswered_webhooks(ctx, tell)
                tear_down_pass(ctx)
            ctx.note(f"left: {'; '.join(left)}")
            return None

        ctx.wait_until(
            f"the controller to tear down what it made for Ingress {STACK}", torn_down, limit=900
        )


class ControllerUnable:
    """A running controller that cannot act on AWS (its IAM role deleted, its policy
    detached) says so only in Warning Events on the Ingress, and retries for ever: the
    teardown wait would last its whole limit for nothing. Once an Event since the deletion
    says so, this deployment's role and policy are put back by the controller_iam phase,
    through the engine (as the controller itself is reinstalled by its phase); if they are not
    this deployment's, or the cause stays CANNOT_ACT_GRACE seconds after, the rollback
    stops, naming the cause."""

    def __init__(
        self,
        ctx: PhaseContext,
        tell: Callable[[str, str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ctx = ctx
        self.tell = tell
        self.clock = clock
        self.put_back_at: str | None = None  # when the role was put back (cluster time)
        self.seen_since: float | None = None  # when a cause was first seen after that

    def check(self) -> None:
        ingress = self.ctx.kube.get(*INGRESS, NAME, NAMESPACE)
        since = (ingress or {}).get("metadata", {}).get("deletionTimestamp")
        cause = cannot_act(self.ctx, since, after=self.put_back_at)
        if cause is None:
            self.seen_since = None
            return
        role = controller_role(self.ctx.kube) or ""
        missing = bool(role) and not role_exists(self.ctx, role)
        if self.put_back_at is None and self._ours_to_put_back(role):
            gone = "is gone" if missing else "or its policy may have changed"
            self.tell(
                "put back role",
                f"the AWS Load Balancer Controller cannot act ({cause}): its IAM role {role} "
                f"{gone}; putting back the role and its policy so that it can tear the ALB "
                "down (the controller_iam rollback removes them afterwards)",
            )
            self.ctx.restore("controller_iam")
            self.put_back_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
            return
        if self.put_back_at is not None:
            # IAM is eventually consistent: a role just made may be refused a little while.
            self.seen_since = self.seen_since or self.clock()
            if self.clock() - self.seen_since < CANNOT_ACT_GRACE:
                return
        raise PhaseError(
            f"the AWS Load Balancer Controller cannot tear down what it made for {STACK}: "
            + (f"its IAM role {role} does not exist; " if missing else "")
            + f"its Events say: {cause}",
            (
                f"put back the IAM role {role} (policy attached, trusted by the cluster's OIDC "
                "provider)"
                if missing
                else "give the controller back what it needs to act"
            )
            + ", then run the rollback again; what it made carries this deployment's tags",
        )

    def _ours_to_put_back(self, role: str) -> bool:
        """This deployment made the role (controller_iam records a role by its name) and can
        make it again, with the controller it installed (see ControllerPhase.restorable)."""
        made = self.ctx.made_by("controller_iam")
        return self.ctx.can_restore("controller") and any(r.id == role for r in made)


def cannot_act(ctx: PhaseContext, since: str | None, after: str | None = None) -> str | None:
    """The latest Warning Event on the Ingress since `since` (and strictly after `after`)
    that says the controller's AWS identity fails, as "Reason: message"."""
    if since is None:
        return None
    for event in reversed(ctx.kube.events_for("Ingress", NAME, NAMESPACE)):
        stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
        message = " ".join((event.get("message") or "").split())
        if (
            event.get("type") == "Warning"
            and stamp >= since
            and (after is None or stamp > after)
            and any(word in message for word in IDENTITY_FAILURES)
        ):
            return f"{event.get('reason')}: {message}"
    return None


def role_exists(ctx: PhaseContext, role: str) -> bool:
    found = tolerate(lambda: ctx.aws.iam.get_role(RoleName=role), "NoSuchEntity")
    return found is not None


def teardown(ctx: PhaseContext, live: dict[str, Any] | None) -> str:
    """What deleting our Ingress (`live`; None: gone already) sets off, as _wait_torn_down
    does it: the controller's teardown while its finalizer holds the Ingress (the controller
    installed again first if it is ours and not running, else that teardown done here by the
    stack's tags); then whatever of the stack outlived the Ingress, deleted by its tags."""
    if live is not None and (live.get("metadata") or {}).get("finalizers"):
        if controller_running(ctx.kube):
            return TEARDOWN
        return f"{TEARDOWN}; {REINSTALL}" if ctx.can_restore("controller") else BY_HAND
    said = ["already gone"] if live is None else []
    left = kubernetes_leftovers(ctx, None) + aws_leftovers(ctx)
    if left:
        said.append(
            f"what the controller made for {STACK} outlived it and is deleted by its tags: "
            + ", ".join(left)
        )
        unanswered = not controller_running(ctx.kube) and blocking_webhooks(ctx)
        if unanswered and ctx.can_restore("controller"):
            said.append(
                "the AWS Load Balancer Controller this deployment installed is installed "
                "again meanwhile, to answer its admission webhooks"
            )
    return "; ".join(said)


def being_deleted(obj: dict[str, Any]) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def clear_unanswered_webhooks(ctx: PhaseContext, tell: Callable[[str, str], None]) -> None:
    """Let the API server admit the updates that remove the controller's finalizers by hand.

    The controller's admission webhooks (failurePolicy Fail) are called on every update of
    an Ingress or a TargetGroupBinding; with no controller running to answer them, the API
    server refuses those updates. The controller this deployment installed is brought back
    to answer them; the webhook configurations this deployment applied for one it cannot
    bring back (a state rebuilt by `import`) go first (the controller phase's rollback
    deletes them anyway; its enter applies them again); another's stop the rollback, with
    what to do."""
    if controller_running(ctx.kube):
        return
    blocking = blocking_webhooks(ctx)
    if blocking and ctx.can_restore("controller"):
        tell(
            "reinstall for webhooks",
            "the AWS Load Balancer Controller this deployment installed is not running: "
            "installing it again, to answer its admission webhooks while its finalizers are "
            "removed (its own rollback removes it afterwards)",
        )
        ctx.restore("controller")
        return
    theirs = list(
        dict.fromkeys(str(w) for w in blocking if not ctx.owner.owns_object(w.configuration))
    )
    if theirs:
        raise PhaseError(
            f"the AWS Load Balancer Controller is not running, and its admission "
            f"{', '.join(theirs)} (failurePolicy Fail; not this deployment's) would refuse the "
            f"updates that remove its finalizers from what it made for {STACK}",
            "bring that controller back (its Deployment available), or, if it is gone for good, "
            "delete those webhook configurations; then run `orchestrator resume`",
        )
    for kind, name in dict.fromkeys(
        (w.kind, w.configuration["metadata"]["name"]) for w in blocking
    ):
        tell(
            f"webhooks {kind}",
            f"deleting {kind} {name} (this deployment's): with no controller to answer its "
            "webhooks, the API server would refuse every update of an Ingress or "
            "TargetGroupBinding",
        )
        ctx.kube.delete("admissionregistration.k8s.io/v1", kind, name)


def blocking_webhooks(ctx: PhaseContext) -> list[Webhook]:
    """The controller's admission webhooks that fail an update of an Ingress or a
    TargetGroupBinding when no controller answers them."""
    return [
        webhook
        for group, resource in WEBHOOKED
        for webhook in ctx.kube.webhooks(group, resource, "UPDATE")
        if webhook.failure_policy != "Ignore" and webhook.name.endswith(CONTROLLER_WEBHOOKS)
    ]


def tear_down_pass(ctx: PhaseContext) -> None:
    """One pass of the controller's teardown of our stack, done by hand, in its order: the
    load balancer (its listeners go with it); then the TargetGroupBindings and target
    groups; then the security groups (EC2 refuses while the load balancer's network
    interfaces drain: the next pass tries again); then the Ingress's finalizer."""

    def attempt(call: Any, **kwargs: Any) -> None:
        tolerate(call, *GONE, *STILL_HELD, **kwargs)

    # Only what carries this deployment's and state file's tags (from the Ingress's `tags`
    # annotation, which the controller copies onto everything it makes for it).
    cluster, kube = ctx.config.cluster_name, ctx.kube
    balancers = stack_load_balancers(ctx, cluster, ours=True)
    for arn in balancers:
        attempt(ctx.aws.elbv2.delete_load_balancer, LoadBalancerArn=arn)
    if balancers:
        return
    if kube.served(*TARGET_GROUP_BINDING):
        for binding in kube.list(*TARGET_GROUP_BINDING, NAMESPACE, label_selector=STACK_SELECTOR):
            name = binding["metadata"]["name"]
            kube.remove_finalizer(*TARGET_GROUP_BINDING, name, NAMESPACE, BINDING_FINALIZER)
            kube.delete(*TARGET_GROUP_BINDING, name, NAMESPACE)
    groups = stack_target_groups(ctx, cluster, ours=True)
    for arn in groups:
        attempt(ctx.aws.elbv2.delete_target_group, TargetGroupArn=arn)
    if groups:
        return
    security_groups = stack_security_groups(ctx, cluster, ours=True)
    for group in security_groups:
        attempt(ctx.aws.ec2.delete_security_group, GroupId=group)
    if not security_groups:
        kube.remove_finalizer(*INGRESS, NAME, NAMESPACE, INGRESS_FINALIZER)


def stack_leftovers(ctx: PhaseContext) -> list[str]:
    """What the controller made for our Ingress and has not deleted yet, Ingress included."""
    ingress = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
    return kubernetes_leftovers(ctx, ingress) + aws_leftovers(ctx)


def kubernetes_leftovers(ctx: PhaseContext, ingress: dict[str, Any] | None) -> list[str]:
    """The Ingress (if it is not gone) and the stack's TargetGroupBindings."""
    kube = ctx.kube
    left = []
    if ingress is not None:
        finalizers = (ingress.get("metadata") or {}).get("finalizers") or []
        left.append(
            f"Ingress {STACK}"
            + (f" (Terminating, finalizers {', '.join(finalizers)})" if finalizers else "")
        )
    if kube.served(*TARGET_GROUP_BINDING):
        for binding in kube.list(*TARGET_GROUP_BINDING, NAMESPACE, label_selector=STACK_SELECTOR):
            left.append(f"TargetGroupBinding {NAMESPACE}/{binding['metadata']['name']}")
    return left


def aws_leftovers(ctx: PhaseContext) -> list[str]:
    """The stack's load balancers, target groups and security groups that carry our marks."""
    cluster = ctx.config.cluster_name
    balancers = stack_load_balancers(ctx, cluster, ours=True)
    groups = stack_target_groups(ctx, cluster, ours=True)
    left = [f"load balancer {arn.rsplit('/', 2)[-2]}" for arn in balancers]
    left += [f"target group {arn.rsplit('/', 2)[-2]}" for arn in groups]
    left += [f"security group {g}" for g in stack_security_groups(ctx, cluster, ours=True)]
    return left


class TeardownProgress:
    """What is left of our stack, read at each poll of the teardown wait.

    The controller removes the Ingress's finalizer last, once everything it made in AWS is
    gone: while the Ingress stands, the wait cannot be over, so only the Kubernetes API is
    read at every poll, and AWS every AWS_READ_INTERVAL, for what the wait shows. The ELB
    API's request budget is shared by every load balancer controller in the account (and
    a region-wide list plus DescribeTags costs a few calls); the teardown takes tens of
    seconds to minutes, and its end is seen at once all the same (the Ingress goes)."""

    def __init__(self, ctx: PhaseContext, clock: Callable[[], float] = time.monotonic) -> None:
        self.ctx = ctx
        self.clock = clock
        self.in_aws: list[str] = []
        self.read_at = -math.inf

    def __call__(self) -> list[str]:
        ingress = self.ctx.kube.get(*INGRESS, NAME, NAMESPACE)
        in_kubernetes = kubernetes_leftovers(self.ctx, ingress)
        now = self.clock()
        if ingress is None or now - self.read_at >= AWS_READ_INTERVAL:
            self.in_aws, self.read_at = aws_leftovers(self.ctx), now
        return in_kubernetes + self.in_aws


def _stack_tagged(
    ctx: PhaseContext, arns: list[str], cluster: str, ours: bool = False
) -> list[str]:
    """Those of the ELBv2 resources whose tags name our Ingress's stack in this cluster
    (and, if `ours`, this deployment and state file too); one gone meanwhile is left out."""
    tags_of = elbv2_tags(ctx.aws.elbv2, arns)
    return [
        arn
        for arn in arns
        if _in_stack(tags_of.get(arn), cluster) and (not ours or ctx.owner.owns_tags(tags_of[arn]))
    ]


def _in_stack(tags: dict[str, str] | None, cluster: str) -> bool:
    return tags is not None and tags.get(STACK_TAG) == STACK and tags.get(CLUSTER_TAG) == cluster


def _in_vpc(ctx: PhaseContext, resources: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The load balancers or target groups in the cluster's VPC, where the controller makes
    them (all of them, if the VPC is not known): fewer to DescribeTags in a shared region."""
    vpc_id = ctx.earlier("preflight").get("vpc_id")
    return [r for r in resources if vpc_id is None or r.get("VpcId") == vpc_id]


def _balancer_arns(ctx: PhaseContext) -> list[str]:
    balancers = ctx.aws.elbv2.pages("describe_load_balancers", "LoadBalancers")
    return [lb["LoadBalancerArn"] for lb in _in_vpc(ctx, balancers)]


def _target_group_arns(ctx: PhaseContext) -> list[str]:
    groups = ctx.aws.elbv2.pages("describe_target_groups", "TargetGroups")
    return [g["TargetGroupArn"] for g in _in_vpc(ctx, groups)]


def stack_tags(ctx: PhaseContext, cluster: str) -> list[dict[str, str]]:
    """The tags of everything the controller made for our Ingress's stack in this cluster."""
    tags_of = elbv2_tags(ctx.aws.elbv2, _balancer_arns(ctx) + _target_group_arns(ctx))
    found = [tags for tags in tags_of.values() if _in_stack(tags, cluster)]
    groups = ctx.aws.ec2.pages(
        "describe_security_groups",
        "SecurityGroups",
        Filters=[
            {"Name": f"tag:{STACK_TAG}", "Values": [STACK]},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
        ],
    )
    return found + [{t["Key"]: t.get("Value", "") for t in g.get("Tags", [])} for g in groups]


def stack_load_balancers(ctx: PhaseContext, cluster: str, ours: bool = False) -> list[str]:
    """ARNs of the load balancers the controller made for our Ingress (by its tags)."""
    return _stack_tagged(ctx, _balancer_arns(ctx), cluster, ours)


def stack_target_groups(ctx: PhaseContext, cluster: str, ours: bool = False) -> list[str]:
    return _stack_tagged(ctx, _target_group_arns(ctx), cluster, ours)


def stack_security_groups(ctx: PhaseContext, cluster: str, ours: bool = False) -> list[str]:
    groups = ctx.aws.ec2.pages(
        "describe_security_groups",
        "SecurityGroups",
        Filters=[
            {"Name": f"tag:{STACK_TAG}", "Values": [STACK]},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]},
        ],
    )
    return [g["GroupId"] for g in groups if not ours or ctx.owner.owns_tags(g.get("Tags", []))]


# ---- marks: what carries the deployment's labels and tags (import, the sweep) -----------------


def marked_ingress(ctx: PhaseContext) -> list[Found]:
    """The Ingress, by the deployment's label; once it is gone, what the controller made for
    it and still carries our tags (its ALB, target groups, security groups): this phase's
    rollback deletes such orphans by their tags. One find per state file named."""
    ingress = ctx.kube.get(*INGRESS, NAME, NAMESPACE)
    labels = ((ingress or {}).get("metadata") or {}).get("labels") or {}
    if labels.get(DEPLOYMENT_LABEL) == ctx.deployment:
        return [Found("ingress", KIND, OBJECT_ID, labels.get(STATE_LABEL))]
    if ingress is not None:
        return []
    orphans = {
        tags.get(STATE_TAG)
        for tags in stack_tags(ctx, ctx.config.cluster_name)
        if tags.get(OWNER_TAG) == ctx.deployment
    }
    return [Found("ingress", KIND, OBJECT_ID, identity) for identity in orphans]
