"""A simulated AWS Load Balancer Controller: ALBs for `alb` Ingresses, as the real one makes
and deletes them.

It acts only while the Deployment `kube-system/aws-load-balancer-controller` is available
and serves this cluster (`--cluster-name`), as only then does a controller run; when it
stops, everything stops where it is, half-deleted stacks and Terminating Ingresses included.

For each `alb` Ingress it first adds the finalizer `ingress.k8s.aws/resources`, before any
AWS call. Then it builds a model (backend Services, certificates, subnets found as the real
controller finds them in its VPC, `--aws-vpc-id` or the cluster's: see subnets.py) and
checks what deploying it takes: the controller's IRSA credentials (the role must be
assumable through the cluster's OIDC provider and allow CreateLoadBalancer) and every
certificate ISSUED. A failure becomes a Warning Event on the Ingress worded like the real
controller's (FailedBuildModel / FailedDeployModel) and is retried on the next pass. Once
everything holds, the stack is deployed at once (albprovision: security groups, target
group, ALB, listeners, TargetGroupBinding) and the ALB's DNS name published in the Ingress
status right after, as the real controller does: CreateLoadBalancer returns a DNS name
while the ALB is still `provisioning`. AWS makes it `active` `delay` seconds after its
creation, whether a controller still runs or not (this simulator does that for AWS, on
each pass). Later changes to the Ingress are deployed in place.

When the Ingress is being deleted (or is gone, or no longer `alb`), it tears the stack down
in the real order, retrying while EC2 refuses to delete the security groups; deletes the
cluster's shared backend security group once no other Ingress needs it; and only then
removes its finalizer, which lets the Ingress go. Like the real controller, it deletes the
backend group only if this run of it has used it (the real one keeps its id in memory
from building an active Ingress's model, `pkg/networking/backend_sg_provider.go`): a
controller started when the last Ingress is already being deleted never releases it. It
also runs the controller's TargetGroupBinding reconciler (targets.py), which registers
made-up pod addresses.

It plays the release its Deployment runs (albmodel.release_of: the image tag, else Helm's
version label): an older release lacks what a newer one has (albmodel's feature table), as
the real one does: an annotation it does not know is ignored, without an Event, and the
ALB lacks that setting. Each start of a controller process (a new Deployment, or a new
generation of it) is a `controller.started` event in the world's log with the release it
runs (`version`); the real controller names its version in its log only, not in an Event.

Two waits go to the world's event log (events.py): `alb.active` (from the ALB's creation
to its activation, after the controller's rollout and its certificates' issue) and
`alb.teardown` (from when the controller first sees the Ingress being deleted to when it
removes its finalizer).
"""

from __future__ import annotations

import base64
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from kube_api_emulator import ObjectStore
from orchestrator_sandbox import events
from orchestrator_sandbox.albmodel import (
    DISCOVERY_BY_REACHABILITY,
    IngressModel,
    ModelError,
    Release,
    ServiceTarget,
    has,
    hostname_of,
    is_alb,
    read_model,
    release_of,
    service_target,
    shown,
)
from orchestrator_sandbox.albprovision import AlbProvisioner, Deployed, Plan
from orchestrator_sandbox.deployments import is_available, service_account_of
from orchestrator_sandbox.irsa import ControllerIdentity
from orchestrator_sandbox.reconciler import Reconciler
from orchestrator_sandbox.subnets import discover
from orchestrator_sandbox.targets import TargetBinder

Obj = dict[str, Any]
Key = tuple[str, str]  # an Ingress's namespace and name
Desired = tuple[IngressModel, ServiceTarget | None]  # what a deploy is made from

CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_NAME = "aws-load-balancer-controller"
CONTROLLER_SUBJECT = f"{CONTROLLER_NAMESPACE}/{CONTROLLER_NAME}"  # its events' subject
INGRESS = ("networking.k8s.io/v1", "Ingress")
FINALIZER = "ingress.k8s.aws/resources"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
CREATE_ACTION = "elasticloadbalancing:CreateLoadBalancer"
DELETE_ACTION = "elasticloadbalancing:DeleteLoadBalancer"
EVENT_SOURCE = "ingress"  # the real controller's event recorder component


class AlbControllerSimulator(Reconciler):
    """Reconciles `alb` Ingresses into ALBs in moto every `interval` seconds (see module doc)."""

    name = "alb controller"

    def __init__(
        self,
        store: ObjectStore,
        clients: dict[str, Any],
        cluster: str,
        region: str,
        account: str,
        delay: float,
        interval: float = 0.25,
        reconcile_delay: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`clients`: boto3 clients for ec2, eks, iam, elbv2 and acm (the world's own).
        `delay`: how long a new ALB stays `provisioning` before it is `active`;
        `reconcile_delay`: how long every precondition must hold before a new stack is
        deployed (the real controller's first deploy is a dozen AWS calls)."""
        self.store = store
        self.ec2, self.eks, self.acm = clients["ec2"], clients["eks"], clients["acm"]
        self.cluster = cluster
        self.region = region
        self.account = account
        self.delay = delay
        self.reconcile_delay = reconcile_delay
        self.interval = interval
        self.clock = clock
        self.identity = ControllerIdentity(clients["iam"], self.eks, cluster, account)
        self.binder = TargetBinder(store, self.ec2, clients["elbv2"])
        self.provisioner = AlbProvisioner(
            self.ec2, clients["elbv2"], store, self.binder, cluster, region, account, clock
        )
        self._deployed: dict[Key, tuple[Desired, Deployed]] = {}
        self._known: set[Key] = set()  # Ingresses whose stacks may exist in AWS
        self._deleting_since: dict[Key, float] = {}  # when each Terminating one was first seen
        self._ready_since: dict[Key, float] = {}  # when a new stack's preconditions first held
        self._errors: dict[Key, str] = {}
        # The controller process's memory: which run it is, and whether that run has used
        # the backend security group (only then does it ever delete it).
        self._process: tuple[str, int] | None = None
        self._backend_group_used = False
        self._lock = threading.Lock()

    def tick(self) -> None:
        """One reconcile pass over every Ingress, and the stacks of those gone."""
        with self._lock:
            controller = self._running_controller()
            self._remember_process(controller)
            # No controller runs: nothing happens, not even Events; but AWS goes on.
            if controller is not None:
                self._reconcile_all(controller)
            self._finish_provisioning()

    def _reconcile_all(self, controller: Obj) -> None:
        ingresses = {_key(i): i for i in self.store.list(*INGRESS)}
        for key, ingress in ingresses.items():
            if is_alb(ingress) and not _deleting(ingress):
                self._isolated(key, self._reconcile, key, ingress, controller)
            elif FINALIZER in _finalizers(ingress) or key in self._known:
                self._isolated(key, self._finalize, key, ingress, controller)
        for key in sorted(self._known - set(ingresses)):
            self._isolated(key, self._finalize, key, None, controller)
        self._deleting_since = {k: v for k, v in self._deleting_since.items() if k in ingresses}
        self._ready_since = {k: v for k, v in self._ready_since.items() if k in ingresses}
        self._isolated(("", "targetgroupbindings"), self.binder.tick)

    def _isolated(self, key: Key, work: Callable[..., None], *args: Any) -> None:
        """Run one Ingress's work; its failure (say, AWS unreachable, or a security group
        still in use) must not stop the rest. Each new failure is said once."""
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - retried on the next pass
            message = str(exc) if isinstance(exc, ModelError) else repr(exc)
            if self._errors.get(key) != message:
                print(f"alb controller: {'/'.join(key)}: {message}", flush=True)
            self._errors[key] = message
        else:
            self._errors.pop(key, None)

    def _remember_process(self, controller: Obj | None) -> None:
        """A controller that stops, or is replaced, forgets what it knew."""
        meta = (controller or {}).get("metadata") or {}
        process = (meta["uid"], int(meta.get("generation") or 0)) if controller else None
        if process != self._process:
            self._process = process
            self._backend_group_used = False
            if controller is not None:
                now = self.clock()
                version = shown(release_of(controller))
                events.record("controller.started", CONTROLLER_SUBJECT, now, now, version=version)

    def _running_controller(self) -> Obj | None:
        deployment = self.store.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is None or not is_available(deployment):
            return None
        cluster = container_flag(deployment, "--cluster-name", self.store)
        if cluster is not None and cluster != self.cluster:
            return None  # it serves another cluster: this one's Ingresses are not its business
        return deployment

    # ---- an active Ingress ----------------------------------------------------------------

    def _reconcile(self, key: Key, ingress: Obj, controller: Obj) -> None:
        meta = ingress["metadata"]
        if FINALIZER not in _finalizers(ingress):
            self.store.add_finalizer(*INGRESS, meta["name"], meta.get("namespace"), FINALIZER)
        self._known.add(key)
        try:
            model = read_model(ingress, release_of(controller))
            desired = (model, self._target(model))
            deployed = self._deployed.get(key)
            if deployed is not None and deployed[0] == desired:
                self._backend_group_used = True  # each model built of it asks for the group
                self._settle(deployed[1], ingress)
                return
            plan = self._check(model, desired[1], controller)
            if deployed is None and not self._held(key):
                return
            result = self.provisioner.deploy(model, plan)
            self._backend_group_used = True
        except ModelError as error:
            self._ready_since.pop(key, None)
            self.store.record_event(
                ingress, error.reason, error.message, type="Warning", component=EVENT_SOURCE
            )
            return
        self._deployed[key] = (desired, result)
        since = self._ready_since.pop(key, None)
        made = self.provisioner.provisioning.get(result.balancer_arn)
        if deployed is None and since is not None and made is not None:
            # Until CreateLoadBalancer: from there on, the ALB's provisioning is the wait.
            after = self._causes(model.https_certificates)
            events.record("alb.reconciled", result.balancer_arn, since, made.created, after)
        self._publish(ingress, result.dns_name)
        self.store.record_event(
            ingress, "SuccessfullyReconciled", "Successfully reconciled", component=EVENT_SOURCE
        )

    def _held(self, key: Key) -> bool:
        """Whether every precondition has held for `reconcile_delay` seconds."""
        since = self._ready_since.setdefault(key, self.clock())
        return self.clock() - since >= self.reconcile_delay

    def _causes(self, certificates: tuple[str, ...]) -> list[str]:
        """The world's events a new stack waited for: the controller's rollout and the
        issue of its certificates (those in the log)."""
        causes = [events.recorded("deployment.available", CONTROLLER_SUBJECT)]
        causes += [events.recorded("acm.issued", cert) for cert in certificates]
        return [cause for cause in causes if cause is not None]

    def _settle(self, deployed: Deployed, ingress: Obj) -> None:
        """Keep the Ingress status naming the ALB."""
        if hostname_of(ingress) != deployed.dns_name:
            self._publish(ingress, deployed.dns_name)

    def _finish_provisioning(self) -> None:
        """Make each ALB `active` once `delay` seconds have passed since its creation, as AWS
        does; each is an `alb.active` event."""
        for arn, made in list(self.provisioner.provisioning.items()):
            now = self.clock()
            if now - made.created < self.delay or not self.provisioner.activate(arn):
                continue
            after = self._causes(made.certificates)
            reconciled = events.recorded("alb.reconciled", arn)
            after += [reconciled] if reconciled else []
            events.record("alb.active", arn, made.created, now, after, cluster=self.cluster)

    def _publish(self, ingress: Obj, hostname: str | None) -> None:
        meta = ingress["metadata"]
        entries = [{"hostname": hostname}] if hostname else None
        self.store.patch_status(
            *INGRESS, meta["name"], meta.get("namespace"), {"loadBalancer": {"ingress": entries}}
        )

    # ---- building the model and checking the preconditions ---------------------------------

    def _target(self, model: IngressModel) -> ServiceTarget | None:
        """Every backend's Service and port must exist; the primary backend's target."""
        targets = []
        for backend in model.backends:
            service = self.store.get("v1", "Service", backend.service, model.namespace)
            if service is None:
                raise ModelError(
                    "build", f'ingress: {model.stack}: services "{backend.service}" not found'
                )
            targets.append(service_target(service, backend, model))
        if targets and targets[0].group_port(model.target_type) is None:
            raise ModelError(
                "build",
                "TargetGroup port is empty. When using Instance targets, your service be must "
                "of type 'NodePort' or 'LoadBalancer'",
            )
        return targets[0] if targets else None

    def _check(self, model: IngressModel, target: ServiceTarget | None, controller: Obj) -> Plan:
        """What deploying takes, checked in turn; ModelError at the first miss."""
        if model.has_https and not model.certificates:
            host = model.hosts[0] if model.hosts else ""
            raise ModelError(
                "build", f"ingress: {model.stack}: no certificate found for host: {host}"
            )
        vpc_id = self._vpc_id(controller)
        subnets = self._subnets(model, vpc_id, release_of(controller))
        role = self._credentials(controller)
        balancer = (
            f"arn:aws:elasticloadbalancing:{self.region}:{self.account}:loadbalancer/app/"
            f"{model.balancer_name(self.cluster)}/*"
        )
        self.identity.require(role, CREATE_ACTION, balancer)
        self._check_certificates(model)
        return Plan(vpc_id, subnets, target)

    def _subnets(
        self, model: IngressModel, vpc_id: str, release: Release | None
    ) -> tuple[str, ...]:
        """An existing ALB of the same scheme keeps its subnets; a new one discovers them."""
        for balancer in self.provisioner.balancers(model.stack):
            if balancer["Scheme"] == model.scheme:
                return tuple(zone["SubnetId"] for zone in balancer.get("AvailabilityZones", []))
        reachability = has(release, DISCOVERY_BY_REACHABILITY)
        chosen = discover(self.ec2, vpc_id, self.cluster, model.scheme, reachability)
        return tuple(s["SubnetId"] for s in chosen)

    def _vpc_id(self, controller: Obj) -> str:
        """`--aws-vpc-id`, else the VPC the controller runs in: its cluster's."""
        flagged = container_flag(controller, "--aws-vpc-id", self.store)
        if flagged:
            return flagged
        config = self.eks.describe_cluster(name=self.cluster)["cluster"]["resourcesVpcConfig"]
        if config.get("vpcId"):
            return config["vpcId"]
        subnet = self.ec2.describe_subnets(SubnetIds=config["subnetIds"][:1])["Subnets"][0]
        return subnet["VpcId"]

    def _credentials(self, controller: Obj) -> str:
        """The role the controller's pods get credentials for (ModelError if none)."""
        return self.identity.assume(
            CONTROLLER_NAMESPACE, service_account_of(controller), self._role_arn(controller)
        )

    def _role_arn(self, controller: Obj) -> str | None:
        name = service_account_of(controller)
        account = self.store.get("v1", "ServiceAccount", name, CONTROLLER_NAMESPACE) or {}
        return ((account.get("metadata") or {}).get("annotations") or {}).get(ROLE_ANNOTATION)

    def _check_certificates(self, model: IngressModel) -> None:
        for arn in model.https_certificates:
            try:
                cert = self.acm.describe_certificate(CertificateArn=arn)["Certificate"]
            except ClientError:
                raise ModelError(
                    "deploy", f"CertificateNotFound: Certificate '{arn}' not found"
                ) from None
            if cert.get("Status") != "ISSUED":
                raise ModelError(
                    "deploy",
                    f"UnsupportedCertificate: The certificate '{arn}' must have a fully-qualified "
                    "domain name, a supported signature, and a supported key size.",
                )

    # ---- deletion ------------------------------------------------------------------------------

    def _finalize(self, key: Key, ingress: Obj | None, controller: Obj) -> None:
        """The Ingress is being deleted, is gone, or is no longer `alb`: tear its stack down,
        then the backend security group if no one else needs it, then let the Ingress go.
        Any step that fails (ModelError) stops here, to be retried on the next pass."""
        if ingress is not None and _deleting(ingress):
            self._deleting_since.setdefault(key, self.clock())
        try:
            # Deleting takes the controller's AWS identity too, and its policy's leave.
            role = self._credentials(controller)
            for balancer in self.provisioner.balancers("/".join(key)):
                self.identity.require(role, DELETE_ACTION, balancer["LoadBalancerArn"])
        except ModelError as error:
            # As the real controller: the failed deploy of the emptied model is a Warning
            # Event on the Ingress, and the teardown is retried on the next pass.
            if ingress is not None:
                self.store.record_event(
                    ingress, error.reason, error.message, type="Warning", component=EVENT_SOURCE
                )
            raise
        self.provisioner.tear_down(*key)
        if self._backend_group_used and not self._backend_group_needed(key):
            self.provisioner.release_backend_group()
            self._backend_group_used = False
        self._deployed.pop(key, None)
        self._known.discard(key)
        if ingress is None:
            return
        meta = ingress["metadata"]
        if FINALIZER in _finalizers(ingress):
            self.store.remove_finalizer(*INGRESS, meta["name"], meta.get("namespace"), FINALIZER)
            since = self._deleting_since.pop(key, None)
            if since is not None:
                subject = "/".join(key)
                events.record("alb.teardown", subject, since, self.clock(), cluster=self.cluster)
        if not _deleting(ingress) and hostname_of(ingress):
            self._publish(ingress, None)

    def _backend_group_needed(self, leaving: Key) -> bool:
        """Whether another Ingress of the cluster that the controller manages stays."""
        return any(
            _key(i) != leaving
            and is_alb(i)
            and not _deleting(i)
            and (FINALIZER in _finalizers(i) or _key(i) in self._known)
            for i in self.store.list(*INGRESS)
        )


def _key(ingress: Obj) -> Key:
    meta = ingress["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def _finalizers(ingress: Obj) -> list[str]:
    return (ingress.get("metadata") or {}).get("finalizers") or []


def _deleting(ingress: Obj) -> bool:
    return bool((ingress.get("metadata") or {}).get("deletionTimestamp"))


def container_flag(deployment: Obj, flag: str, store: ObjectStore) -> str | None:
    """The value of a flag (`--name=value` or `--name value`) the Deployment's containers
    are started with, if any; its `$(VAR)` references expanded (from `store`) from the
    container's environment, as the kubelet does before it starts the container (the old
    setup script's controller takes `--cluster-name=$(CLUSTER_NAME)` from a ConfigMap).

    The simulator stands for the real controller, an outside program, so it reads its own
    flags rather than borrow the orchestrator's parser (its builders.controller_manifests)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    namespace = (deployment.get("metadata") or {}).get("namespace")
    for container in spec.get("containers") or []:
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        env = container_env(store, container, namespace)
        words = [expand(word, env) for word in words]
        for i, word in enumerate(words):
            if word.startswith(f"{flag}="):
                return word.partition("=")[2]
            if word == flag and i + 1 < len(words):
                return words[i + 1]
    return None


def container_env(store: ObjectStore, container: Obj, namespace: str | None) -> dict[str, str]:
    """The container's environment variables the kubelet can resolve: plain values and keys
    of ConfigMaps and Secrets that exist (a missing one would keep the pod from starting)."""
    env: dict[str, str] = {}
    for variable in container.get("env") or []:
        source = variable.get("valueFrom") or {}
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
        elif "configMapKeyRef" in source:
            ref = source["configMapKeyRef"]
            found = store.get("v1", "ConfigMap", ref.get("name", ""), namespace) or {}
            value = (found.get("data") or {}).get(ref.get("key", ""))
            if value is not None:
                env[variable["name"]] = str(value)
        elif "secretKeyRef" in source:
            ref = source["secretKeyRef"]
            found = store.get("v1", "Secret", ref.get("name", ""), namespace) or {}
            value = (found.get("data") or {}).get(ref.get("key", ""))
            if value is not None:
                env[variable["name"]] = base64.b64decode(value).decode()
    return env


_REFERENCE = re.compile(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


def expand(word: str, env: dict[str, str]) -> str:
    """`$(NAME)` replaced by NAME's value, `$$` by `$`; an unknown name stays as written."""

    def replace(found: re.Match[str]) -> str:
        name = found.group(1)
        if name is None:
            return "$"
        return env.get(name, found.group(0))

    return _REFERENCE.sub(replace, word)
