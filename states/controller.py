"""controller: the AWS Load Balancer Controller running in kube-system.

If a controller already runs there and this deployment did not install it, it is
adopted: checked (it must serve this cluster), used, never changed or deleted.
Otherwise the project's own manifests are applied with server-side apply: the CRDs
first, then, once the API server has Established them (their kinds are not served
before), everything else; the phase waits for the Deployment to be available. An object
of those manifests that already exists without our label (CRDs left by an earlier
install, say) is used as it is, unless it cannot work as it is (object_verdict): a
ServiceAccount naming another role, a webhook Secret or webhook configuration of another
install's CA. Those an earlier install left (nothing not ours runs as the ServiceAccount or
mounts the Secret) are taken over, and said; those a controller not ours uses are refused.
The webhook certificate is checked as the API server would check it: signed by the CA of
the webhook configurations, in date, for the webhook Service's name.

The controller is shared by nature: once installed, any Ingress of class `alb`, any
TargetGroupBinding or load-balancer Service in the cluster may depend on it. Rollback
leaves what it installed in place while anything not ours uses it, and says so;
otherwise it waits until the controller has released the cluster's shared backend
security group before deleting it (deleted, the controller could never release it), and
deletes the group itself once nothing the controller finalizes is left (a controller
started after the last Ingress was being deleted never releases it).

The controller runs the release `kubeflow.alb.controller.version` names (one this tool
bundles). Another release asked of our own controller is an upgrade in place: the CRDs
first, waited Established, then the RBAC, webhook and other objects that change, the
Deployment last, then the wait for its rollout to end (every replica the new release's)
and the webhook certificate checked as the API server checks it; objects that do not
change are used as they are. The IAM policy the new release needs was put in place by
controller_iam, the phase before. An older release than ours runs is refused unless the
operator asks for the downgrade (`--allow-downgrade`).

Plan and enter share one decision (`_decide`), and the rollback preview and rollback
another (`rollback_plan`), the backend security group included.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator.aws import tolerate
from orchestrator.builders.controller_manifests import (
    CONTROLLER_NAME,
    CONTROLLER_NAMESPACE,
    ROLE_ANNOTATION,
    SERVICE_ACCOUNT,
    TLS_SECRET,
    WEBHOOK_SERVICE,
    cluster_name_of,
    controller_manifests,
    keeping_selector,
    kinds,
)
from orchestrator.builders.ingress import NAME, NAMESPACE
from orchestrator.builders.running_controller import (
    available,
    controller_version,
    parse_version,
    refuse_downgrade,
    shown_version,
)
from orchestrator.builders.webhook_tls import serving_problem, webhook_certificates
from orchestrator.creating import claim, creating
from orchestrator.errors import PhaseError
from orchestrator.kube import tolerate_not_found
from orchestrator.ownership import DEPLOYMENT_LABEL, STATE_LABEL, Owner, not_ours, released_metadata
from orchestrator.phase import Found, Phase, PhaseContext, Search
from orchestrator.planning import CHECK, CREATE, DELETE, LEAVE, UPDATE, USE, WAIT, Change, Undo
from orchestrator.store import Resource

KIND = "kubernetes:object"
CRD = "CustomResourceDefinition"
ALB_CONTROLLER_CLASS = "ingress.k8s.aws/alb"  # IngressClass spec.controller
NLB_SERVICE_CLASS = "service.k8s.aws/nlb"  # Service spec.loadBalancerClass
LEGACY_SERVICE_TYPES = ("external", "nlb-ip")  # service.beta.kubernetes.io/aws-load-balancer-type
TARGET_GROUP_BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
STACK_LABELS = ("ingress.k8s.aws/stack-namespace", "ingress.k8s.aws/stack-name")
CLUSTER_TAG = "elbv2.k8s.aws/cluster"
RESOURCE_TAG = "elbv2.k8s.aws/resource"
BACKEND_SG = "backend-sg"  # the controller's shared backend security group, one per cluster
SECURITY_GROUP = "ec2:security-group"  # the backend group, as the rollback preview names it
BACKEND_WHY = (
    "the cluster's backend security group the controller made: the controller deletes it as "
    "it finalizes the last Ingress, else rollback does once nothing it finalizes is left"
)
# The controller's finalizers on what it makes load balancers for (its shared_constants).
INGRESS_FINALIZER = "ingress.k8s.aws/resources"  # an Ingress of no explicit group
GROUP_FINALIZER = "group.ingress.k8s.aws/"  # + the group's name
SERVICE_FINALIZER = "service.k8s.aws/resources"
TLS_KEYS = ("ca.crt", "tls.crt", "tls.key")  # the webhook Secret's data
WEBHOOK_KINDS = ("MutatingWebhookConfiguration", "ValidatingWebhookConfiguration")
# What the install does with one of its objects (object_verdict), besides CREATE, UPDATE
# (ours: applied again where it changed) and USE (another's, or ours unchanged, used as it
# is): take over a leftover.
TAKE_OVER = "take over"
# What an upgrade creates as a dry run to know the new pods answer the webhooks: an Ingress
# of the controller's class (its validating webhook is called for it); a name the API
# server makes up, so that no Ingress of that name is in the way.
WEBHOOK_PROBE = {
    "apiVersion": "networking.k8s.io/v1",
    "kind": "Ingress",
    "metadata": {"generateName": "orchestrator-webhook-probe-", "namespace": CONTROLLER_NAMESPACE},
    "spec": {
        "ingressClassName": "alb",
        "defaultBackend": {"service": {"name": WEBHOOK_SERVICE, "port": {"number": 443}}},
    },
}
# One thing the phase does (a Change, for plan; None: record-keeping plan does not show)
# and how (applied by enter only).
Decision = tuple[Change | None, Callable[[], None]]
# Kinds no release is made of, but an earlier install taken over may hold (the old setup
# script's kustomize ConfigMap): searched by marks too, until the phase deletes them.
TAKEN_OVER_KINDS = (("v1", "ConfigMap"),)
# Objects an earlier install leaves that cannot work as they are: the ServiceAccount names
# that install's role, and the Secret's certificate must be signed by the webhooks' CA.
LEFTOVER_KINDS = ("ServiceAccount", "Secret", *WEBHOOK_KINDS)


def object_id(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return "/".join((obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"]))


def parse_object_id(rid: str) -> tuple[str, str, str | None, str]:
    """(apiVersion, kind, namespace, name) of an object id; apiVersion may hold a '/'."""
    *version, kind, namespace, name = rid.split("/")
    return "/".join(version), kind, namespace or None, name


def condition_true(obj: dict[str, Any] | None, kind: str) -> bool:
    """Whether the object's status has condition `kind` with status True."""
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == kind and c.get("status") == "True" for c in conditions)


def failure_of(deployment: dict[str, Any] | None) -> str | None:
    """Why a Deployment is not available, from its conditions, if it says."""
    for condition in ((deployment or {}).get("status") or {}).get("conditions") or []:
        if condition.get("status") == "True" and condition.get("type") == "ReplicaFailure":
            return condition.get("message")
        if condition.get("type") == "Available" and condition.get("status") == "False":
            return condition.get("message")
    return None


class ControllerPhase(Phase):
    name = "controller"
    title = "install (or adopt) the AWS Load Balancer Controller"
    inputs = (
        "cluster.name",
        "cluster.region",
        "kubernetes.context",
        "kubeflow.alb.controller.imageRepository",
    )
    outputs = ("mode", "deployment")
    reads = ("preflight", "controller_iam")

    def plan(self, ctx: PhaseContext) -> list[Change]:
        return [change for change, _ in self._decide(ctx) if change is not None]

    def enter(self, ctx: PhaseContext) -> None:
        for _, apply in self._decide(ctx):  # every read and refusal before the first write
            apply()

    def restorable(self, ctx: PhaseContext) -> bool:
        """Whether this deployment installed the controller and can install it again (what
        that takes is known: after `import` it is not until `run` has checked the phases)."""
        deployment = f"apps/v1/Deployment/{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
        return (
            ctx.outputs.get("mode") == "installed"
            and any(r.id == deployment for r in ctx.owned(KIND))
            and bool(ctx.earlier("controller_iam").get("role_arn"))
            and bool(ctx.earlier("preflight").get("vpc_id"))
        )

    def restore(self, ctx: PhaseContext) -> None:
        """Bring back the controller this phase installed (deleted by hand, say): the ingress
        rollback needs it to finish tearing the ALB down. Installed again, never adopted."""
        for _, apply in self._installing(ctx):
            apply()

    def _decide(self, ctx: PhaseContext) -> list[Decision]:
        """The one decision plan lists and enter applies: use the controller someone else
        installed, or install ours (each object, the waits, the webhook check); then wait for
        it to be available. A refusal (a PhaseError) stops both, in the same words, before
        the first write."""
        existing = ctx.kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if existing is not None and not ctx.owner.owns_object(existing):
            return [self._adopting(ctx, existing), self._until_available(ctx)]
        running = controller_version(existing)
        refuse_downgrade(running, ctx.config.controller_version, ctx.allow_downgrade)
        # A rollout not ended is an upgrade still under way (resumed after its wait gave up:
        # the Deployment already names the new release while old pods keep it available).
        if running is not None and (
            running != parse_version(ctx.config.controller_version) or not rolled_out(existing)
        ):
            return self._upgrading(ctx, shown_version(running))
        return self._installing(ctx)

    def _adopting(self, ctx: PhaseContext, deployment: dict[str, Any]) -> Decision:
        cluster = cluster_name_of(deployment)
        if cluster != ctx.config.cluster_name:
            raise PhaseError(
                f"an AWS Load Balancer Controller already runs in {CONTROLLER_NAMESPACE} for "
                f"cluster {cluster!r}, not {ctx.config.cluster_name!r}; orchestrator will not "
                "change or replace a controller it did not install",
                "fix that controller's --cluster-name (or remove it), then run "
                "`orchestrator resume`",
            )

        def adopt() -> None:
            ctx.adopt(KIND, object_id(deployment))
            ctx.outputs["mode"] = "adopted"
            ctx.say(
                f"using the AWS Load Balancer Controller already in {CONTROLLER_NAMESPACE} "
                "(not installed by orchestrator, so never changed or deleted by it)"
            )

        what = f"the AWS Load Balancer Controller in {CONTROLLER_NAMESPACE}"
        return Change(USE, what, f"already installed, for cluster {cluster!r}"), adopt

    def _manifests(self, ctx: PhaseContext, tls: tuple[str, str, str]) -> list[dict[str, Any]]:
        ca, cert, key = tls
        role_arn = (
            ctx.earlier("controller_iam").get("role_arn") or "(the role controller_iam makes)"
        )
        return controller_manifests(
            cluster_name=ctx.config.cluster_name,
            region=ctx.config.region,
            vpc_id=ctx.earlier("preflight")["vpc_id"],
            role_arn=role_arn,
            labels=ctx.owner.labels,
            webhook_ca_pem=ca,
            webhook_cert_pem=cert,
            webhook_key_pem=key,
            image_repository=ctx.config.controller_image_repository,
            version=ctx.config.controller_version,
        )

    def _installing(self, ctx: PhaseContext) -> list[Decision]:
        """Our install: the CRDs first, then (once the API server serves their kinds) the
        rest, then the webhook certificate checked, then the wait for the Deployment. Every
        object's verdict is read before the first write: a refusal leaves the cluster as it
        was."""
        tls, renewal = self._webhook_tls(ctx)
        manifests = self._manifests(ctx, tls)
        users = functools.cache(lambda: workloads_using_controller_identity(ctx))
        objects = [(obj, self._object(ctx, obj, users, renewal)) for obj in manifests]
        definitions = [obj["metadata"]["name"] for obj in manifests if obj["kind"] == CRD]
        return [
            *(decision for obj, decision in objects if obj["kind"] == CRD),
            self._until_established(ctx, definitions),
            *(decision for obj, decision in objects if obj["kind"] != CRD),
            self._webhook_check(ctx, webhook_configurations(manifests), renewal),
            self._until_available(ctx),
            self._until_webhooks_answer(ctx),
            *self._retiring(ctx, manifests),
        ]

    def _upgrading(self, ctx: PhaseContext, running: str) -> list[Decision]:
        """Our controller, running another release than the config asks, upgraded in place:
        the CRDs, waited Established; the objects that change (RBAC, webhooks, ...); the
        Deployment last, its old pods serving the webhooks until the new ones are ready;
        then the wait for the rollout to end, and the webhook certificate checked as the API
        server checks it. Every verdict is read before the first write."""
        tls, renewal = self._webhook_tls(ctx)
        manifests = self._manifests(ctx, tls)
        users = functools.cache(lambda: workloads_using_controller_identity(ctx))
        upgrade = f"the AWS Load Balancer Controller {running} → {ctx.config.controller_version}"
        objects = [(obj, self._object(ctx, obj, users, renewal, upgrade)) for obj in manifests]
        definitions = [obj["metadata"]["name"] for obj in manifests if obj["kind"] == CRD]
        rest = [(obj, decision) for obj, decision in objects if obj["kind"] != CRD]
        rest.sort(key=lambda pair: pair[0]["kind"] == "Deployment")  # the Deployment last
        return [
            *(decision for obj, decision in objects if obj["kind"] == CRD),
            self._until_established(ctx, definitions),
            *(decision for _, decision in rest),
            self._until_rolled_out(ctx),
            self._webhook_check(ctx, webhook_configurations(manifests), renewal),
            self._until_webhooks_answer(ctx),
            *self._retiring(ctx, manifests),
        ]

    def _object(
        self,
        ctx: PhaseContext,
        obj: dict[str, Any],
        users: Callable[[], list[str]],
        renewal: str | None,
        upgrade: str = "",
    ) -> Decision:
        """What the install does with one object of the controller's (object_verdict), and
        how: not one that is another's and works as it is; a leftover taken over is ours
        from then on; one of ours as it should be is left as it is. `upgrade`: the release
        change, which the Deployment's change names."""
        meta = obj["metadata"]
        current = ctx.kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
        rid = object_id(obj)
        mine = ctx.find(KIND, rid)
        # A Deployment another install made (taken over) keeps its selector, and is
        # replaced whole, not applied: apply keeps what that install set and ours lacks.
        kept = keeping_selector(obj, current) if obj["kind"] == "Deployment" else obj
        written_over, obj = kept is not obj, kept
        verdict = object_verdict(
            ctx, obj, current, mine is not None and mine.created, users, renewal
        )
        if verdict.action == USE:
            change = Change(USE, described(obj), verdict.why)
            return change, lambda: _adopt(ctx, rid)  # someone else's: used as is, never deleted
        if verdict.action == UPDATE and current is not None:
            differs = difference(obj, current)
            if differs is None:
                return Change(USE, described(obj), "ours, unchanged"), lambda: _claim(ctx, rid)
            why = upgrade if upgrade and obj["kind"] == "Deployment" else verdict.why
            verdict = Verdict(UPDATE, why or f"changed at {differs}")
        if verdict.action == TAKE_OVER:
            change = Change(UPDATE, described(obj), f"take over: {verdict.why}")
        else:
            change = Change(verdict.action, described(obj), verdict.why)

        def apply() -> None:
            used = ctx.find(KIND, rid)
            if used is not None and not used.created:
                ctx.forget(used)  # an earlier run used it as it was; this one applies it
            with creating(ctx, KIND, rid, f"apply {obj['kind']} {meta['name']}"):
                if verdict.action == TAKE_OVER and other_secret_type(obj, current):
                    # A Secret's type cannot change: the leftover goes, ours replaces it.
                    ctx.kube.delete("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE)
                if written_over and current is not None:
                    ctx.kube.replace(obj, current["metadata"]["resourceVersion"])
                else:
                    ctx.kube.apply(obj)
            if verdict.action == TAKE_OVER:
                ctx.say(
                    f"took over {described(obj)}: {verdict.why}; it is this deployment's now "
                    "(labelled so, and deleted on rollback)"
                )

        return change, apply

    def _retiring(self, ctx: PhaseContext, manifests: list[dict[str, Any]]) -> list[Decision]:
        """What this deployment applied that the configured release does not have (the old
        setup script's install, taken over: its ConfigMap, its RBAC under other names, its
        webhook Secret): deleted last, once the new controller runs without them. Only
        what its labels still say is ours; one gone already leaves the record."""
        decisions: list[Decision] = []
        for resource, live in self._retired(ctx, manifests):
            if live is None:
                decisions.append((None, functools.partial(ctx.forget, resource)))
                continue
            what = described(live)
            why = f"an earlier install's; controller {ctx.config.controller_version} has none"
            decisions.append((Change(DELETE, what, why), _retire(ctx, resource, what)))
        return decisions

    def _retired(
        self, ctx: PhaseContext, manifests: list[dict[str, Any]]
    ) -> list[tuple[Resource, dict[str, Any] | None]]:
        """Each object this deployment applied that is not among `manifests`, as it is now
        (None: gone), if it is gone or still ours."""
        wanted = {object_id(obj) for obj in manifests}
        found = []
        for resource in ctx.owned(KIND):
            if resource.id in wanted:
                continue
            api_version, kind, namespace, name = parse_object_id(resource.id)
            live = ctx.kube.get(api_version, kind, name, namespace)
            if live is None or ctx.owner.owns_object(live):
                found.append((resource, live))
        return found

    def _until_established(self, ctx: PhaseContext, names: list[str]) -> Decision:
        """The API server serves a CRD's kind only once the CRD is Established."""
        kube = ctx.kube
        what = "the controller's CustomResourceDefinitions to be Established"

        def established() -> bool | None:
            pending = [
                n
                for n in names
                if not condition_true(kube.get("apiextensions.k8s.io/v1", CRD, n), "Established")
            ]
            if pending:
                ctx.note(f"not yet Established: {', '.join(pending)}")
                return None
            kube.forget_discovery()  # discovery read before now does not know the new kinds
            return True

        def wait() -> None:
            ctx.wait_until(what, established, limit=300)

        return Change(WAIT, f"for {what}"), wait

    def _webhook_check(
        self, ctx: PhaseContext, configurations: list[tuple[str, str, str]], renewal: str | None
    ) -> Decision:
        """The webhook certificate checked as the API server would check it, once applied:
        never leave the webhooks and the Secret disagreeing unsaid."""

        def check() -> None:
            if renewal:
                ctx.say(
                    f"Secret {CONTROLLER_NAMESPACE}/{TLS_SECRET}: its certificate {renewal}; a "
                    "new webhook certificate and CA were applied to it and to the webhook "
                    "configurations"
                )
            problem = webhook_trust_problem(ctx.kube, configurations)
            if problem:
                hint = "something changed them meanwhile: run `orchestrator resume`"
                raise PhaseError(problem, hint)
            ctx.outputs["mode"] = "installed"

        what = f"the webhook certificate in Secret {CONTROLLER_NAMESPACE}/{TLS_SECRET}"
        return Change(CHECK, what, "signed by the CA the webhook configurations trust"), check

    def _webhook_tls(self, ctx: PhaseContext) -> tuple[tuple[str, str, str], str | None]:
        """The webhook's certificates, and why new ones replace our Secret's (if they do):
        kept from our Secret while sound, so re-applying changes nothing; new ones
        otherwise. They live only in the cluster."""
        secret = ctx.kube.get("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE)
        kept, renewal = kept_webhook_tls(ctx.owner, secret)
        return (kept or webhook_certificates()), renewal

    def _until_rolled_out(self, ctx: PhaseContext) -> Decision:
        """An upgrade's rollout ends when every replica runs the new release and is
        available (as `kubectl rollout status` judges it): until then old pods may still
        answer the webhooks."""
        kube = ctx.kube
        version = ctx.config.controller_version
        what = (
            f"Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_NAME} to roll out controller {version}"
        )

        def ready() -> bool | None:
            deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
            if rolled_out(deployment) and controller_version(deployment) == parse_version(version):
                return True
            ctx.note(failure_of(deployment) or rollout_progress(deployment))
            return None

        def wait() -> None:
            ctx.outputs["deployment"] = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
            ctx.wait_until(what, ready, limit=900)

        return Change(WAIT, f"for {what}"), wait

    def _until_webhooks_answer(self, ctx: PhaseContext) -> Decision:
        """Once its Deployment is available (after an upgrade: rolled out), the controller's
        pods answer its admission webhooks, which every later write of an Ingress goes
        through: an Ingress of class alb, created as a dry run (nothing is written), goes
        through the API server's call of the controller's webhook, answered or not."""
        what = "the controller's pods to answer its admission webhooks"

        def answered() -> bool | None:
            failure = ctx.kube.webhook_failure(WEBHOOK_PROBE)
            if failure is None:
                return True
            ctx.note(failure)
            return None

        def wait() -> None:
            ctx.wait_until(what, answered, limit=300)

        return Change(WAIT, f"for {what}", "a dry-run Ingress of class alb"), wait

    def _until_available(self, ctx: PhaseContext) -> Decision:
        kube = ctx.kube
        what = f"Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_NAME} to be available"

        def ready() -> bool | None:
            deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
            if available(deployment):
                return True
            ctx.note(failure_of(deployment) or "pods not available yet")
            return None

        def wait() -> None:
            ctx.outputs["deployment"] = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"
            ctx.wait_until(what, ready, limit=900)

        return Change(WAIT, f"for {what}"), wait

    def verify(self, ctx: PhaseContext) -> str | None:
        kube = ctx.kube
        deployment = kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is None:
            return f"Deployment {ctx.outputs['deployment']} is gone"
        if not available(deployment):
            return f"Deployment {ctx.outputs['deployment']} is not available"
        if ctx.outputs["mode"] == "adopted":
            return None
        for resource in ctx.owned(KIND):
            api_version, kind, namespace, name = parse_object_id(resource.id)
            if kube.get(api_version, kind, name, namespace) is None:
                return f"{kind} {name} is gone"
        account = kube.get("v1", "ServiceAccount", SERVICE_ACCOUNT, CONTROLLER_NAMESPACE) or {}
        annotation = ((account.get("metadata") or {}).get("annotations") or {}).get(ROLE_ANNOTATION)
        if annotation != ctx.earlier("controller_iam")["role_arn"]:
            return f"ServiceAccount {SERVICE_ACCOUNT} is not annotated with the controller role"
        webhooks = [
            (version, kind, name)
            for version, kind, _, name in map(parse_object_id, (r.id for r in ctx.owned(KIND)))
            if kind in WEBHOOK_KINDS
        ]
        return webhook_trust_problem(kube, webhooks) or self._release_drift(ctx, deployment)

    def _release_drift(self, ctx: PhaseContext, deployment: dict[str, Any]) -> str | None:
        """How what runs differs from what the configured release asks: its version, else
        the Deployment (image, args), the CRDs or the webhook configurations."""
        wanted = ctx.config.controller_version
        running = controller_version(deployment)
        if running != parse_version(wanted):
            shown = shown_version(running) if running else "an unknown release"
            return f"it runs {shown}, the config asks for {wanted}"
        secret = ctx.kube.get("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE)
        tls = secret_pems(secret)
        if tls is None:
            return None  # the webhook trust check above says what is wrong with it
        manifests = self._manifests(ctx, tls)
        for obj in manifests:
            if obj["kind"] not in (CRD, "Deployment", *WEBHOOK_KINDS):
                continue
            meta = obj["metadata"]
            live = ctx.kube.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace"))
            if obj["kind"] == "Deployment":
                obj = keeping_selector(obj, live)
            differs = difference(obj, live) if live is not None else "it is gone"
            if differs:
                return f"{described(obj)} is not as controller {wanted} has it ({differs})"
        for _, live in self._retired(ctx, manifests):
            if live is not None:
                return f"{described(live)} is no part of controller {wanted}: still there"
        return None

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        return marked_objects(ctx)

    def rollback(self, ctx: PhaseContext) -> None:
        for undo in self.rollback_plan(ctx):
            undo.apply()

    def rollback_plan(self, ctx: PhaseContext) -> list[Undo]:
        """The one decision the rollback preview shows and rollback applies, newest first:
        all that this deployment applied is left (released) while anything not ours uses
        the controller; else the cluster's backend security group goes first (see
        _wait_backend_released), then each object, deleted, or left if its labels say it is
        not ours. Read all before the first delete, as the preview reads it."""
        owned = list(reversed(ctx.owned(KIND)))
        if not owned:
            return []
        users = users_not_ours(ctx)
        if users:
            shown = ", ".join(users[:5]) + (f" and {len(users) - 5} more" if len(users) > 5 else "")
            reason = f"the AWS Load Balancer Controller is still used by {shown}"
            # One release for them all: one kept mark, one line said.
            release = functools.cache(
                lambda: ctx.release(owned, reason, lambda mark: release_objects(ctx, owned, mark))
            )
            return [Undo(resource, LEAVE, reason, release) for resource in owned]
        released = functools.cache(lambda: self._wait_backend_released(ctx))
        undos = [
            Undo(Resource(SECURITY_GROUP, group, created=True), DELETE, BACKEND_WHY, released)
            for group in backend_security_groups(ctx)
        ]
        for resource in owned:
            api_version, kind, namespace, name = parse_object_id(resource.id)
            live = ctx.kube.get(api_version, kind, name, namespace)
            if live is not None and not ctx.owner.owns_object(live):
                undos.append(_leave(ctx, resource, not_ours(ctx.owner, kind, live)))
            else:
                undos.append(Undo(resource, DELETE, "", _deleting(ctx, resource, released)))
        return undos

    def _wait_backend_released(self, ctx: PhaseContext) -> None:
        """The controller deletes the cluster's backend security group as it finalizes the
        last Ingress or Service that used it, before it removes that one's finalizer; deleted
        before that, the controller could never, and the group would leak. Once nothing
        carries its finalizers, it never will: a run of the controller that started when
        the last Ingress was already being deleted (the ingress rollback's reinstall) never
        knew the group, whose id it keeps only in memory. Then the group is deleted here, as
        soon as EC2 lets it go (a deleted ALB's network interfaces hold it for a while)."""
        said: list[str] = []

        def released() -> bool | None:
            left = backend_security_groups(ctx)
            if not left:
                return True
            holders = finalized_by_controller(ctx)
            if holders:
                running = available(
                    ctx.kube.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
                )
                ctx.note(
                    f"backend security group {', '.join(left)} still there, for "
                    + ", ".join(holders)
                    + ("" if running else "; the controller is not running to finalize them")
                )
                return None
            if not said:
                said.append("told")
                ctx.say(
                    f"deleting the cluster's backend security group {', '.join(left)}: nothing "
                    "the controller finalizes is left, so the controller will not delete it"
                )
            for group in left:
                tolerate(
                    ctx.aws.ec2.delete_security_group,
                    "InvalidGroup.NotFound",
                    "DependencyViolation",
                    GroupId=group,
                )
            left = backend_security_groups(ctx)
            ctx.note(f"backend security group {', '.join(left)} still held (draining)")
            return None if left else True

        ctx.wait_until(
            "the controller to release the cluster's backend security group", released, limit=900
        )


def release_objects(ctx: PhaseContext, resources: list[Resource], mark: str) -> None:
    """Take this state file's labels off the objects it applied (those still ours) and say
    why they stay: a later deployment then adopts the controller as one it did not install.
    The pods keep theirs: the Deployment's template is left as it is, so nothing restarts."""
    metadata = released_metadata(ctx.deployment, mark)
    for resource in resources:
        api_version, kind, namespace, name = parse_object_id(resource.id)
        if ctx.owner.owns_object(ctx.kube.get(api_version, kind, name, namespace)):
            ctx.kube.patch_metadata(api_version, kind, name, namespace, **metadata)


def _leave(ctx: PhaseContext, resource: Resource, reason: str) -> Undo:
    return Undo(resource, LEAVE, reason, lambda: ctx.keep(resource, reason))


def _deleting(
    ctx: PhaseContext, resource: Resource, released: Callable[[], None]
) -> Callable[[], None]:
    def delete() -> None:
        released()  # the controller lets its backend security group go before it goes
        api_version, kind, namespace, name = parse_object_id(resource.id)
        ctx.kube.delete(api_version, kind, name, namespace)
        ctx.deleted(resource)

    return delete


def _retire(ctx: PhaseContext, resource: Resource, what: str) -> Callable[[], None]:
    def retire() -> None:
        api_version, kind, namespace, name = parse_object_id(resource.id)
        ctx.kube.delete(api_version, kind, name, namespace)
        release = ctx.config.controller_version
        ctx.say(f"deleted {what}: an earlier install's, which controller {release} does not have")
        ctx.forget(resource)

    return retire


def _adopt(ctx: PhaseContext, rid: str) -> None:
    ctx.adopt(KIND, rid)


def _claim(ctx: PhaseContext, rid: str) -> None:
    """Ours and as it should be: recorded as ours (after `import`, say), not applied."""
    used = ctx.find(KIND, rid)
    if used is not None and not used.created:
        ctx.forget(used)
    claim(ctx, KIND, rid)


# ---- what runs, against what the configured release asks ---------------------------------------


def difference(wanted: Any, live: Any, path: str = "") -> str | None:
    """Where `live` differs from what applying `wanted` would make it: the first field of
    `wanted` whose value `live` does not hold (what the API server adds is not compared);
    None if none does."""
    if isinstance(wanted, dict):
        if not isinstance(live, dict):
            return None if not wanted and live is None else path or "the object"
        for key, value in wanted.items():
            found = difference(value, live.get(key), f"{path}.{key}" if path else key)
            if found:
                return found
        return None
    if isinstance(wanted, list):
        if not isinstance(live, list) or len(live) != len(wanted):
            return None if not wanted and live is None else path
        for index, (item, held) in enumerate(zip(wanted, live, strict=True)):
            found = difference(item, held, f"{path}[{index}]")
            if found:
                return found
        return None
    return None if wanted == live or (wanted in ("", None) and live is None) else path


def rolled_out(deployment: dict[str, Any] | None) -> bool:
    """Whether a Deployment's rollout has ended, as `kubectl rollout status` judges it:
    its latest generation seen, every replica updated and available, no old one left."""
    if not available(deployment):
        return False
    status = (deployment or {}).get("status") or {}
    wanted = ((deployment or {}).get("spec") or {}).get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    return (
        updated >= wanted
        and (status.get("replicas") or 0) <= updated
        and (status.get("availableReplicas") or 0) >= updated
    )


def rollout_progress(deployment: dict[str, Any] | None) -> str:
    status = (deployment or {}).get("status") or {}
    wanted = ((deployment or {}).get("spec") or {}).get("replicas", 1)
    return f"{status.get('updatedReplicas') or 0} of {wanted} replicas updated"


# ---- leftovers of an earlier install, and the webhook certificate -----------------------------


@dataclass(frozen=True)
class Verdict:
    action: str  # CREATE, UPDATE (ours: applied again if changed), TAKE_OVER or USE
    why: str = ""


def object_verdict(
    ctx: PhaseContext,
    obj: dict[str, Any],
    current: dict[str, Any] | None,
    applied: bool,
    users: Callable[[], list[str]],
    renewal: str | None,
) -> Verdict:
    """What the install does with one of its objects, which the cluster holds as `current`
    (`applied`: this deployment applied it before; `users`: the workloads not ours that
    use the controller's identity; `renewal`: why our Secret's certificate is replaced).
    Raises PhaseError where a controller not ours uses what would have to change."""
    if current is None:
        return Verdict(CREATE)
    if applied or ctx.owner.owns_object(current):
        if obj["kind"] == "Secret" and renewal:
            return Verdict(UPDATE, f"a new webhook certificate: the one there {renewal}")
        return Verdict(UPDATE)  # applied again if it differs from what it should be
    kind = obj["kind"]
    works = kind == "ServiceAccount" and role_of(current) == role_of(obj)
    if kind not in LEFTOVER_KINDS or works:
        return Verdict(USE, "exists, not ours")
    running = users()
    if running:
        raise PhaseError(*refusal(obj, current, running))
    return Verdict(TAKE_OVER, leftover_reason(obj, current))


def leftover_reason(obj: dict[str, Any], current: dict[str, Any]) -> str:
    kind = obj["kind"]
    if kind == "ServiceAccount":
        named = role_of(current) or "no role"
        return (
            f"left by an earlier install, nothing runs as it; it names {named}, the "
            f"controller needs {role_of(obj)}"
        )
    head = "left by an earlier install, no controller uses it"
    if kind == "Secret":
        return f"{head}; its certificate is replaced by one signed by the CA the webhooks get"
    return f"{head}; its webhooks get the CA that signed the Secret's certificate"


def other_secret_type(obj: dict[str, Any], current: dict[str, Any] | None) -> bool:
    return obj["kind"] == "Secret" and current is not None and current.get("type") != obj["type"]


def refusal(obj: dict[str, Any], current: dict[str, Any], users: list[str]) -> tuple[str, str]:
    """The message and hint of a PhaseError: a controller not ours uses `current`."""
    kind = obj["kind"]
    what = f"{kind} {_name(current)}"
    if kind == "ServiceAccount":
        what += f" names {role_of(current) or 'no role'} (not {role_of(obj)})"
    else:
        what += " cannot be used as it is"
    shown_users = ", ".join(users[:3]) + (f" and {len(users) - 3} more" if len(users) > 3 else "")
    return (
        f"{what}, is not this deployment's, and {shown_users} uses it: another AWS Load "
        f"Balancer Controller runs in {CONTROLLER_NAMESPACE} under another name; orchestrator "
        "will not change what another controller uses",
        f"remove that controller (its workload and this {kind}), then run `orchestrator "
        f"resume`; or run it as Deployment {CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}, which "
        "orchestrator then uses as it is",
    )


def role_of(obj: dict[str, Any]) -> str | None:
    return ((obj.get("metadata") or {}).get("annotations") or {}).get(ROLE_ANNOTATION)


def described(obj: dict[str, Any]) -> str:
    return f"{obj['kind']} {_name(obj)}"


def workloads_using_controller_identity(ctx: PhaseContext) -> list[str]:
    """Deployments and Pods not ours in the controller's namespace that run as its
    ServiceAccount or mount its webhook Secret: a controller someone else runs."""
    found = []
    for api_version, kind in (("apps/v1", "Deployment"), ("v1", "Pod")):
        for item in ctx.kube.list(api_version, kind, CONTROLLER_NAMESPACE):
            spec = item.get("spec") or {}
            pod = ((spec.get("template") or {}).get("spec") or {}) if kind != "Pod" else spec
            if not ctx.owner.owns_object(item) and uses_controller_identity(pod):
                found.append(f"{kind} {_name(item)}")
    return found


def uses_controller_identity(pod: dict[str, Any]) -> bool:
    account = pod.get("serviceAccountName") or pod.get("serviceAccount")
    secrets = {(v.get("secret") or {}).get("secretName") for v in pod.get("volumes") or []}
    return account == SERVICE_ACCOUNT or TLS_SECRET in secrets


def secret_pems(secret: dict[str, Any] | None) -> tuple[str, str, str] | None:
    """The webhook Secret's (ca, cert, key) PEMs, or None if it holds no readable set."""
    data = (secret or {}).get("data") or {}
    try:
        ca, cert, key = (base64.b64decode(data[k]).decode() for k in TLS_KEYS)
    except (KeyError, ValueError, TypeError):
        return None
    return ca, cert, key


def kept_webhook_tls(
    owner: Owner, secret: dict[str, Any] | None
) -> tuple[tuple[str, str, str] | None, str | None]:
    """The certificates of our webhook Secret if sound (kept), else None and why not (None
    too where there is no Secret of ours: new ones, nothing to say)."""
    if secret is None or not owner.owns_object(secret):
        return None, None
    pems = secret_pems(secret)
    if pems is None:
        return None, "cannot be read"
    problem = serving_problem(*pems)
    return (None, problem) if problem else (pems, None)


def webhook_configurations(manifests: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (obj["apiVersion"], obj["kind"], obj["metadata"]["name"])
        for obj in manifests
        if obj["kind"] in WEBHOOK_KINDS
    ]


def webhook_trust_problem(kube: Any, configurations: list[tuple[str, str, str]]) -> str | None:
    """Why the API server would refuse the certificate the controller serves its webhooks
    with (the Secret's), as each webhook configuration's caBundle has it; None if it would
    not. Checked by the product itself: a refusal shows only when an Ingress is made."""
    where = f"the webhook certificate in Secret {CONTROLLER_NAMESPACE}/{TLS_SECRET}"
    pems = secret_pems(kube.get("v1", "Secret", TLS_SECRET, CONTROLLER_NAMESPACE))
    if pems is None:
        return f"{where} is missing or cannot be read"
    problem = serving_problem(*pems)
    if problem:
        return f"{where} {problem}"
    for api_version, kind, name in configurations:
        for webhook in (kube.get(api_version, kind, name) or {}).get("webhooks") or []:
            client = webhook.get("clientConfig") or {}
            if (client.get("service") or {}).get("name") != WEBHOOK_SERVICE:
                continue
            try:
                ca = base64.b64decode(client.get("caBundle") or "").decode()
            except ValueError:
                ca = ""
            problem = serving_problem(ca, pems[1])
            if problem:
                return (
                    f"{where} {problem} ({kind} {name}, webhook {webhook.get('name')}): the API "
                    "server would refuse every call to it (x509: certificate signed by "
                    "unknown authority)"
                )
    return None


# ---- who else uses the controller ------------------------------------------------------------


def ingress_class_of(ingress: dict[str, Any]) -> str | None:
    """spec.ingressClassName, or the older annotation."""
    name = (ingress.get("spec") or {}).get("ingressClassName")
    if name:
        return str(name)
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return annotations.get("kubernetes.io/ingress.class")


def served_by_controller(service: dict[str, Any]) -> bool:
    """A Service the AWS Load Balancer Controller makes an NLB for."""
    spec = service.get("spec") or {}
    if spec.get("type") != "LoadBalancer":
        return False
    annotations = (service.get("metadata") or {}).get("annotations") or {}
    return (
        spec.get("loadBalancerClass") == NLB_SERVICE_CLASS
        or annotations.get("service.beta.kubernetes.io/aws-load-balancer-type")
        in LEGACY_SERVICE_TYPES
    )


def _name(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    return f"{meta.get('namespace')}/{meta.get('name')}" if meta.get("namespace") else meta["name"]


def controller_users(
    owner: Owner,
    classes: list[dict[str, Any]],
    ingresses: list[dict[str, Any]],
    bindings: list[dict[str, Any]],
    services: list[dict[str, Any]],
    our_stack: tuple[str, str],
) -> list[str]:
    """What, of the cluster's objects, depends on the controller and is not this
    deployment's: Ingresses of a class it serves, TargetGroupBindings of other stacks, and
    Services it makes load balancers for."""
    served = {"alb"} | {
        c["metadata"]["name"]
        for c in classes
        if (c.get("spec") or {}).get("controller") == ALB_CONTROLLER_CLASS
    }
    users = [
        f"Ingress {_name(i)}"
        for i in ingresses
        if ingress_class_of(i) in served and not owner.owns_object(i)
    ]
    for binding in bindings:
        labels = (binding.get("metadata") or {}).get("labels") or {}
        if tuple(labels.get(k) for k in STACK_LABELS) != our_stack:
            users.append(f"TargetGroupBinding {_name(binding)}")
    users += [f"Service {_name(s)}" for s in services if served_by_controller(s)]
    return users


def users_not_ours(ctx: PhaseContext) -> list[str]:
    kube = ctx.kube
    bindings = kube.list(*TARGET_GROUP_BINDING) if kube.served(*TARGET_GROUP_BINDING) else []
    return controller_users(
        ctx.owner,
        kube.list("networking.k8s.io/v1", "IngressClass"),
        kube.list("networking.k8s.io/v1", "Ingress"),
        bindings,
        kube.list("v1", "Service"),
        (NAMESPACE, NAME),
    )


def cluster_vpc(ctx: PhaseContext) -> str:
    """The cluster's VPC: as preflight saw it, or (preflight rolled back: the final sweep
    of a rollback, a state made by import) as EKS says now."""
    known = ctx.earlier("preflight").get("vpc_id")
    if known:
        return str(known)
    cluster = ctx.aws.eks.describe_cluster(name=ctx.config.cluster_name)["cluster"]
    return str(cluster["resourcesVpcConfig"]["vpcId"])


def finalized_by_controller(ctx: PhaseContext) -> list[str]:
    """The Ingresses and Services that carry the controller's finalizers: it still has to
    finalize them (and may then release the backend security group)."""
    kube = ctx.kube
    found = [
        f"Ingress {_name(i)}"
        for i in kube.list("networking.k8s.io/v1", "Ingress")
        if any(f == INGRESS_FINALIZER or f.startswith(GROUP_FINALIZER) for f in _finalizers(i))
    ]
    found += [
        f"Service {_name(s)}"
        for s in kube.list("v1", "Service")
        if SERVICE_FINALIZER in _finalizers(s)
    ]
    return found


def _finalizers(obj: dict[str, Any]) -> list[str]:
    return list((obj.get("metadata") or {}).get("finalizers") or [])


def backend_security_groups(ctx: PhaseContext) -> list[str]:
    """The cluster's backend security group(s) the controller made, by their tags."""
    groups = ctx.aws.ec2.pages(
        "describe_security_groups",
        "SecurityGroups",
        Filters=[
            {"Name": "vpc-id", "Values": [cluster_vpc(ctx)]},
            {"Name": f"tag:{CLUSTER_TAG}", "Values": [ctx.config.cluster_name]},
            {"Name": f"tag:{RESOURCE_TAG}", "Values": [BACKEND_SG]},
        ],
    )
    return [g["GroupId"] for g in groups]


# ---- marks: what carries the deployment's labels (import, the sweep) --------------------------


def marked_objects(ctx: PhaseContext) -> list[Found]:
    """The controller's objects, of every kind it is made of, by the deployment's label.
    Shared: a rollback leaves the controller while others' Ingresses use it."""
    selector = f"{DEPLOYMENT_LABEL}={ctx.deployment}"
    found = []
    for api_version, kind in [*kinds(), *TAKEN_OVER_KINDS]:
        # A kind not served (a CRD's, deleted) has nothing of ours.
        listing = functools.partial(ctx.kube.list, api_version, kind, label_selector=selector)
        listed = tolerate_not_found(listing)
        for obj in listed or []:
            obj = {**obj, "apiVersion": api_version, "kind": kind}
            identity = ((obj.get("metadata") or {}).get("labels") or {}).get(STATE_LABEL)
            found.append(Found("controller", KIND, object_id(obj), identity, shared=True))
    return found
