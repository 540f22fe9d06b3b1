"""TargetGroupBindings: the Kubernetes side of a target group, as the controller keeps them.

For each backend of an Ingress the controller creates a TargetGroupBinding (CRD
`elbv2.k8s.aws/v1beta1`, shipped with its manifests) naming the target group and the
Service; its TargetGroupBinding reconciler then adds the finalizer `elbv2.k8s.aws/resources`
and registers the Service's endpoints as targets. When a binding is deleted, that reconciler
deregisters the targets and removes the finalizer, and only then does the binding go.

The emulator runs no pods, so `TargetBinder` registers made-up pod addresses: for ip targets,
two addresses from the VPC's private subnets (where the cluster's pods live) at the
Service's target port. While the CRD is not served (absent, or not yet Established), the
kind does not exist for the controller's client: `not_served(...)` is its error.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from botocore.exceptions import ClientError

from kube_api_emulator import ObjectStore
from orchestrator_sandbox.subnets import private_blocks

Obj = dict[str, Any]

BINDING = ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding")
BINDING_FINALIZER = "elbv2.k8s.aws/resources"
STACK_NAMESPACE_LABEL = "ingress.k8s.aws/stack-namespace"
STACK_NAME_LABEL = "ingress.k8s.aws/stack-name"
PODS_PER_SERVICE = 2
EVENT_SOURCE = "targetGroupBinding"  # the real reconciler's event recorder component


def served(store: ObjectStore, api_version: str, kind: str) -> bool:
    """Whether the API server serves the kind: its CRD exists and is Established."""
    resource = store.registry.by_kind(api_version, kind)
    if resource is None:
        return False
    name = f"{resource.plural}.{resource.group}"
    crd = store.get("apiextensions.k8s.io/v1", "CustomResourceDefinition", name)
    if crd is None:
        return True  # a built-in kind, served from the start
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)


def not_served(api_version: str, kind: str) -> str:
    """The error a controller-runtime client gives for a kind the API server does not serve."""
    return f'no matches for kind "{kind}" in version "{api_version}"'


def stack_labels(namespace: str, name: str) -> dict[str, str]:
    return {STACK_NAMESPACE_LABEL: namespace, STACK_NAME_LABEL: name}


def stack_selector(namespace: str, name: str) -> str:
    return ",".join(f"{k}={v}" for k, v in stack_labels(namespace, name).items())


def binding_manifest(
    name: str,
    stack: tuple[str, str],
    group_arn: str,
    target_type: str,
    service: str,
    port: int | str,
    vpc_id: str,
) -> Obj:
    """The TargetGroupBinding the controller creates for one backend of the Ingress `stack`
    (its namespace and name); it lives in the Service's namespace, the Ingress's."""
    return {
        "apiVersion": BINDING[0],
        "kind": BINDING[1],
        "metadata": {"name": name, "namespace": stack[0], "labels": stack_labels(*stack)},
        "spec": {
            "targetGroupARN": group_arn,
            "targetType": target_type,
            "serviceRef": {"name": service, "port": port},
            "ipAddressType": "ipv4",
            "vpcID": vpc_id,
        },
    }


def pod_addresses(blocks: list[str], namespace: str, service: str) -> list[str]:
    """Made-up, stable pod addresses for a Service: one in each of the first blocks."""
    digest = int(hashlib.sha256(f"{namespace}/{service}".encode()).hexdigest(), 16)
    addresses = []
    for block in blocks[:PODS_PER_SERVICE]:
        network = ipaddress.ip_network(block)
        usable = network.num_addresses - 5  # AWS keeps the first four and the last
        if usable > 0:
            addresses.append(str(network.network_address + 4 + digest % usable))
    return addresses


class TargetBinder:
    """The controller's TargetGroupBinding reconciler (see module doc)."""

    def __init__(self, store: ObjectStore, ec2: Any, elbv2: Any) -> None:
        self.store = store
        self.ec2 = ec2
        self.elbv2 = elbv2
        self._seen: dict[tuple[str, str], tuple[str, int]] = {}  # key -> (uid, generation)

    def tick(self) -> None:
        """Reconcile every binding that is new, changed or being deleted."""
        if not served(self.store, *BINDING):
            return
        bindings = self.store.list(*BINDING)
        for binding in bindings:
            meta = binding["metadata"]
            if meta.get("deletionTimestamp"):
                self.clean_up(binding)
                continue
            mark = (meta.get("uid", ""), int(meta.get("generation") or 1))
            if self._seen.get(_key(binding)) != mark and self._bind(binding):
                self._seen[_key(binding)] = mark
        live = {_key(b) for b in bindings}
        self._seen = {k: v for k, v in self._seen.items() if k in live}

    def clean_up(self, binding: Obj) -> None:
        """Deregister the binding's targets and let it go (a deleted binding only)."""
        meta = binding["metadata"]
        if BINDING_FINALIZER not in (meta.get("finalizers") or []):
            return
        group = (binding.get("spec") or {}).get("targetGroupARN", "")
        try:
            targets = self._registered(group)
            if targets:
                self.elbv2.deregister_targets(TargetGroupArn=group, Targets=targets)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TargetGroupNotFound":
                raise
        self.store.remove_finalizer(
            *BINDING, meta["name"], meta.get("namespace"), BINDING_FINALIZER
        )

    def _bind(self, binding: Obj) -> bool:
        """Finalizer, targets and observed generation; False (and an Event) on failure."""
        meta = binding["metadata"]
        self.store.add_finalizer(*BINDING, meta["name"], meta.get("namespace"), BINDING_FINALIZER)
        try:
            self._register(binding, binding.get("spec") or {})
        except (ClientError, LookupError) as exc:
            self.store.record_event(
                binding,
                "FailedReconcile",
                f"Failed reconcile due to {_describe(exc)}",
                type="Warning",
                component=EVENT_SOURCE,
            )
            return False
        status = {"observedGeneration": meta.get("generation", 1)}
        self.store.patch_status(*BINDING, meta["name"], meta.get("namespace"), status)
        self.store.record_event(
            binding, "SuccessfullyReconciled", "Successfully reconciled", component=EVENT_SOURCE
        )
        return True

    def _register(self, binding: Obj, spec: Obj) -> None:
        """Register the Service's (made-up) pods at its target port, ip targets only: nodes
        for instance targets do not exist here either, and nothing is registered."""
        if spec.get("targetType") != "ip":
            return
        namespace = binding["metadata"].get("namespace") or "default"
        reference = spec.get("serviceRef") or {}
        service = self.store.get("v1", "Service", reference.get("name", ""), namespace)
        if service is None:
            raise LookupError(f'services "{reference.get("name")}" not found')
        port = _target_port(service, reference.get("port"))
        blocks = private_blocks(self.ec2, spec.get("vpcID", ""))
        targets = [
            {"Id": ip, "Port": port} for ip in pod_addresses(blocks, namespace, reference["name"])
        ]
        if targets:
            self.elbv2.register_targets(TargetGroupArn=spec["targetGroupARN"], Targets=targets)

    def _registered(self, group: str) -> list[Obj]:
        """The group's registered targets (what DescribeTargetHealth lists without Targets)."""
        described = self.elbv2.describe_target_health(TargetGroupArn=group)
        return [
            {"Id": d["Target"]["Id"], "Port": d["Target"]["Port"]}
            for d in described["TargetHealthDescriptions"]
        ]


def _target_port(service: Obj, port: Any) -> int:
    """The port the pods listen on. A named targetPort would be resolved against the pods'
    container ports; there are no pods here, so the Service port stands in for it."""
    for entry in (service.get("spec") or {}).get("ports") or []:
        if port in (entry.get("port"), entry.get("name")):
            target = entry.get("targetPort", entry["port"])
            return int(target) if str(target).isdigit() else int(entry["port"])
    raise LookupError(f"unable to find port {port} on service {service['metadata']['name']}")


def _key(binding: Obj) -> tuple[str, str]:
    meta = binding["metadata"]
    return meta.get("namespace") or "default", meta["name"]


def _describe(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        return f"{error.get('Code', 'Error')}: {error.get('Message', exc)}"
    return str(exc.args[0] if exc.args else exc)
