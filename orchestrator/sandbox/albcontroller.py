"""A simulated AWS Load Balancer Controller: ALBs for `alb` Ingresses, with its preconditions.

It acts only while the Deployment `kube-system/aws-load-balancer-controller` is available
and serves this cluster, as only then does a controller run. For each Ingress of class
`alb` it builds a model (backend Services, certificates, subnets found by their tags) and
deploys it with the controller's IRSA credentials: the role must be assumable through the
cluster's OIDC provider and allow CreateLoadBalancer, and every certificate must be
ISSUED. A failure becomes a Warning Event on the Ingress, worded like the real
controller's, and is retried on the next pass. Once everything has held for `delay`
seconds, the ALB is made (albprovision) and its DNS name published in the Ingress status.
Later changes to the Ingress are applied to the ALB; when the Ingress goes, so does all
that was made for it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.sandbox.albmodel import (
    IngressModel,
    ModelError,
    hostname_of,
    is_alb,
    read_model,
    service_port,
)
from orchestrator.sandbox.albprovision import AlbProvisioner, Plan, Stack
from orchestrator.sandbox.deployments import is_available, service_account_of
from orchestrator.sandbox.irsa import ControllerIdentity
from orchestrator.sandbox.kubeapi import ObjectStore
from orchestrator.sandbox.reconciler import Reconciler

Obj = dict[str, Any]
Key = tuple[str, str]  # an Ingress's namespace and name

CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_NAME = "aws-load-balancer-controller"
INGRESS = ("networking.k8s.io/v1", "Ingress")
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
CREATE_ACTION = "elasticloadbalancing:CreateLoadBalancer"
EVENT_SOURCE = "ingress"  # the real controller's event recorder component
CLEANUP_AFTER = 0.5  # how long the controller's finalizer takes to act on a deletion


class AlbControllerSimulator(Reconciler):
    name = "alb controller"

    """Reconciles `alb` Ingresses into ALBs in moto every `interval` seconds (see module doc)."""

    def __init__(
        self,
        store: ObjectStore,
        clients: dict[str, Any],
        cluster: str,
        region: str,
        account: str,
        delay: float,
        interval: float = 0.25,
    ) -> None:
        """`clients`: boto3 clients for ec2, eks, iam, elbv2 and acm (the world's own)."""
        self.store = store
        self.ec2, self.eks, self.acm = clients["ec2"], clients["eks"], clients["acm"]
        self.cluster = cluster
        self.region = region
        self.account = account
        self.delay = delay
        self.interval = interval
        self.identity = ControllerIdentity(clients["iam"], self.eks, cluster, account)
        self.provisioner = AlbProvisioner(self.ec2, clients["elbv2"], cluster, region, account)
        self._stacks: dict[Key, Stack] = {}
        self._ready_since: dict[Key, float] = {}
        self._gone_since: dict[Key, float] = {}
        self._lock = threading.Lock()

    def tick(self) -> None:
        """One reconcile pass over every `alb` Ingress, and the stacks of those gone."""
        with self._lock:
            controller = self._running_controller()
            if controller is None:
                self._ready_since.clear()
                return  # no controller runs: nothing happens, not even Events
            ingresses = {_key(i): i for i in self.store.list(*INGRESS) if is_alb(i)}
            for key, ingress in ingresses.items():
                self._gone_since.pop(key, None)
                self._isolated(key, self._reconcile, key, ingress, controller)
            for key in [k for k in self._stacks if k not in ingresses]:
                self._isolated(key, self._clean_up, key)
            self._ready_since = {k: v for k, v in self._ready_since.items() if k in ingresses}

    @staticmethod
    def _isolated(key: Key, work: Callable[..., None], *args: Any) -> None:
        """Run one Ingress's work; its failure (say, AWS unreachable) must not stop the rest."""
        try:
            work(*args)
        except Exception as exc:  # noqa: BLE001 - retried on the next pass
            print(f"alb controller: {'/'.join(key)}: {exc!r}", flush=True)

    def _running_controller(self) -> Obj | None:
        deployment = self.store.get("apps/v1", "Deployment", CONTROLLER_NAME, CONTROLLER_NAMESPACE)
        if deployment is None or not is_available(deployment):
            return None
        cluster = _cluster_name_arg(deployment)
        if cluster is not None and cluster != self.cluster:
            return None  # it serves another cluster: this one's Ingresses are not its business
        return deployment

    # ---- one Ingress -------------------------------------------------------------------------

    def _reconcile(self, key: Key, ingress: Obj, controller: Obj) -> None:
        stack = self._stacks.get(key)
        try:
            model = read_model(ingress)
            if stack is not None and stack.model == model:
                self._settle(stack, ingress)
                return
            plan = self._check(model, controller)
            if stack is not None:
                self._stacks[key] = self.provisioner.update(stack, model, plan)
                self._report_success(self._stacks[key], ingress)
                return
            since = self._ready_since.setdefault(key, time.monotonic())
            if time.monotonic() - since >= self.delay:
                self._stacks[key] = self.provisioner.provision(model, plan)
                self._ready_since.pop(key, None)
                self._report_success(self._stacks[key], ingress)
        except ModelError as error:
            self._ready_since.pop(key, None)
            self.store.record_event(
                ingress, error.reason, error.message, type="Warning", component=EVENT_SOURCE
            )

    def _settle(self, stack: Stack, ingress: Obj) -> None:
        """Bring a new ALB to `active`, and keep the Ingress status naming it."""
        self.provisioner.activate(stack)
        if hostname_of(ingress) != stack.dns_name:
            self._publish(ingress, stack.dns_name)

    def _report_success(self, stack: Stack, ingress: Obj) -> None:
        self._publish(ingress, stack.dns_name)
        self.store.record_event(
            ingress, "SuccessfullyReconciled", "Successfully reconciled", component=EVENT_SOURCE
        )

    def _publish(self, ingress: Obj, hostname: str | None) -> None:
        meta = ingress["metadata"]
        entries = [{"hostname": hostname}] if hostname else None
        self.store.patch_status(
            *INGRESS, meta["name"], meta.get("namespace"), {"loadBalancer": {"ingress": entries}}
        )

    # ---- preconditions -------------------------------------------------------------------------

    def _check(self, model: IngressModel, controller: Obj) -> Plan:
        """Build the model, then check what deploying it takes; ModelError at the first miss."""
        port = self._backend_port(model)
        if model.has_https and not model.certificates:
            host = model.hosts[0] if model.hosts else ""
            raise ModelError(
                "build", f"ingress: {model.stack}: no certificate found for host: {host}"
            )
        vpc_id, subnets = self._discover_subnets(model.scheme)
        role = self.identity.assume(
            CONTROLLER_NAMESPACE, service_account_of(controller), self._role_arn(controller)
        )
        balancer = (
            f"arn:aws:elasticloadbalancing:{self.region}:{self.account}:loadbalancer/app/"
            f"{model.balancer_name(self.cluster)}/*"
        )
        self.identity.require(role, CREATE_ACTION, balancer)
        if len(subnets) < 2:
            raise ModelError(
                "deploy",
                "ValidationError: At least two subnets in two different Availability Zones "
                "must be specified",
            )
        self._check_certificates(model)
        return Plan(vpc_id, tuple(s["SubnetId"] for s in subnets), port)

    def _backend_port(self, model: IngressModel) -> int | None:
        """The primary backend's Service port number; every backend Service must exist."""
        numbers = []
        for backend in model.backends:
            service = self.store.get("v1", "Service", backend.service, model.namespace)
            if service is None:
                raise ModelError(
                    "build", f'ingress: {model.stack}: services "{backend.service}" not found'
                )
            numbers.append(service_port(service, backend, model))
        return numbers[0] if numbers else None

    def _discover_subnets(self, scheme: str) -> tuple[str, list[Obj]]:
        """The cluster's subnets tagged for the scheme and the cluster, one per zone."""
        internal = scheme == "internal"
        role_tag = "kubernetes.io/role/internal-elb" if internal else "kubernetes.io/role/elb"
        cluster_tag = f"kubernetes.io/cluster/{self.cluster}"
        ids = self.eks.describe_cluster(name=self.cluster)["cluster"]["resourcesVpcConfig"][
            "subnetIds"
        ]
        subnets = self.ec2.describe_subnets(SubnetIds=ids)["Subnets"] if ids else []
        tagged = [s for s in subnets if _tags(s).get(role_tag) in ("", "1")]
        matched = [s for s in tagged if _tags(s).get(cluster_tag) in ("shared", "owned")]
        if not matched:
            wanted = [role_tag] if not tagged else [role_tag, cluster_tag]
            raise ModelError(
                "build",
                "couldn't auto-discover subnets: unable to resolve at least one subnet "
                f"(0 match VPC and tags: [{' '.join(wanted)}])",
            )
        by_zone: dict[str, Obj] = {}
        for subnet in sorted(matched, key=lambda s: s["SubnetId"]):
            by_zone.setdefault(subnet["AvailabilityZone"], subnet)
        return matched[0]["VpcId"], list(by_zone.values())

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

    def _clean_up(self, key: Key) -> None:
        """The Ingress is gone (or no longer `alb`): delete its stack once the finalizer runs."""
        since = self._gone_since.setdefault(key, time.monotonic())
        if time.monotonic() - since < CLEANUP_AFTER:
            return
        self.provisioner.tear_down(self._stacks[key])  # if it fails, the next pass retries
        del self._stacks[key]
        self._gone_since.pop(key, None)
        ingress = self.store.get(*INGRESS, key[1], key[0])
        if ingress is not None and hostname_of(ingress):
            self._publish(ingress, None)


def _key(ingress: Obj) -> Key:
    meta = ingress["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def _tags(resource: Obj) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in resource.get("Tags", [])}


def _cluster_name_arg(deployment: Obj) -> str | None:
    """The `--cluster-name` the controller's containers are started with, if any.

    The simulator stands for the real controller, an outside program, so it reads its own
    flags rather than borrow the orchestrator's parser (states.controller_manifests)."""
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in spec.get("containers") or []:
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        for i, word in enumerate(words):
            if word.startswith("--cluster-name="):
                return word.partition("=")[2]
            if word == "--cluster-name" and i + 1 < len(words):
                return words[i + 1]
    return None
