"""An `alb` Ingress as the AWS Load Balancer Controller reads it: pure functions.

The Ingress's spec and `alb.ingress.kubernetes.io/*` annotations become an `IngressModel`;
what cannot be parsed is a `ModelError`, which the simulator turns into the Event the
real controller records ("Failed build model due to ...").

The controller plays the release its Deployment runs (`release_of`): a release older than
the one that brought a feature does not have it. An annotation it does not know, it ignores
without a word (it reads only the keys it knows), so what the user sees is the ALB without
that setting: `ssl-redirect` on a release before v2.2.0 leaves the HTTP listener forwarding.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

Obj = dict[str, Any]

PREFIX = "alb.ingress.kubernetes.io/"
DEFAULT_SSL_POLICY = "ELBSecurityPolicy-2016-08"

Release = tuple[int, int, int]
# The release that brought each feature an older one lacks (upstream's source at each tag):
# "ssl-redirect" joined pkg/annotations/constants.go in v2.2.0; subnet discovery by
# reachability (pkg/networking/subnet_resolver.go) in v2.13.0 (its docs say 2.12.1, a
# release never tagged); before it, only role-tagged subnets are candidates.
SSL_REDIRECT: Release = (2, 2, 0)
DISCOVERY_BY_REACHABILITY: Release = (2, 13, 0)
# A controller's release as its image tag names it (v2.4.0, v2.4.0-eksbuild.1).
_RELEASE = re.compile(r"^v?(\d+)\.(\d+)\.(\d+)(?:[-+].*)?$")
VERSION_LABEL = "app.kubernetes.io/version"  # Helm's chart puts the release here too


def release_of(deployment: Obj) -> Release | None:
    """The release the controller's Deployment runs: its container's image tag, else the
    version label Helm put on it; None if neither tells (an image by digest, `latest`)."""
    pod = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    names: list[str | None] = []
    for container in pod.get("containers") or []:
        image = str(container.get("image") or "")
        last = image.rsplit("/", 1)[-1]
        if "@" not in image and ":" in last:
            names.append(last.rsplit(":", 1)[-1])
    names.append(((deployment.get("metadata") or {}).get("labels") or {}).get(VERSION_LABEL))
    for name in names:
        found = _RELEASE.match(name or "")
        if found:
            major, minor, patch = (int(part) for part in found.groups())
            return major, minor, patch
    return None


def has(release: Release | None, feature: Release) -> bool:
    """Whether a controller of `release` has a feature; one of unknown release plays the
    newest, which has every feature."""
    return release is None or release >= feature


def shown(release: Release | None) -> str:
    return "v{}.{}.{}".format(*release) if release else "unknown"


class ModelError(Exception):
    """A reconcile failed at `stage` "build" or "deploy", because of `cause` (the Go error)."""

    def __init__(self, stage: str, cause: str) -> None:
        super().__init__(cause)
        self.stage = stage
        self.cause = cause

    @property
    def reason(self) -> str:
        return "FailedBuildModel" if self.stage == "build" else "FailedDeployModel"

    @property
    def message(self) -> str:
        return f"Failed {self.stage} model due to {self.cause}"


@dataclass(frozen=True)
class Backend:
    service: str
    port: int | str  # a number, or the name of one of the Service's ports


@dataclass(frozen=True)
class IngressModel:
    namespace: str
    name: str
    scheme: str
    target_type: str
    listen_ports: tuple[tuple[str, int], ...]
    certificates: tuple[str, ...]
    ssl_policy: str
    ssl_redirect: int | None
    healthcheck_path: str | None
    healthcheck_port: str | None
    attributes: tuple[tuple[str, str], ...]
    tags: tuple[tuple[str, str], ...]
    backends: tuple[Backend, ...]
    hosts: tuple[str, ...]

    @property
    def stack(self) -> str:
        """The controller's name for everything made for this Ingress: `<ns>/<name>`."""
        return f"{self.namespace}/{self.name}"

    @property
    def has_https(self) -> bool:
        return any(protocol == "HTTPS" for protocol, _ in self.listen_ports)

    @property
    def https_certificates(self) -> tuple[str, ...]:
        """The certificates the listeners use (none without an HTTPS listener)."""
        return self.certificates if self.has_https else ()

    def balancer_name(self, cluster: str) -> str:
        return resource_name(self.namespace, self.name, cluster, self.stack, self.scheme)

    def security_group_name(self, cluster: str) -> str:
        """The name of the stack's managed (frontend) security group."""
        return resource_name(self.namespace, self.name, cluster, self.stack)


@dataclass(frozen=True)
class ServiceTarget:
    """An Ingress backend resolved against its Service: what its target group is made of."""

    service: str
    namespace: str
    uid: str
    port: int | str  # as the Ingress names it (the TargetGroupBinding's serviceRef.port)
    target_port: int | str  # the Service's targetPort: a number, or a container port's name
    node_port: int | None

    def group_port(self, target_type: str) -> int | None:
        """The target group's port as the controller sets it: the node port for instance
        targets; for ip targets the target port, or 1 if it is named (not in the data path)."""
        if target_type == "instance":
            return self.node_port
        return self.target_port if isinstance(self.target_port, int) else 1

    def group_name(self, cluster: str, model: IngressModel) -> str:
        """The target group's name, which is also its TargetGroupBinding's."""
        port = self.group_port(model.target_type)
        identity = (cluster, model.stack, model.namespace, model.name, self.uid, str(self.port))
        protocol = (str(port), model.target_type, "HTTP", "HTTP1")
        return resource_name(self.namespace, self.service, *identity, *protocol)

    def resource_id(self, model: IngressModel) -> str:
        """The target group's `ingress.k8s.aws/resource` tag."""
        return f"{model.stack}-{self.service}:{self.port}"


def is_alb(ingress: Obj) -> bool:
    """Whether the Ingress is of class `alb` (spec.ingressClassName, or the old annotation)."""
    class_name = (ingress.get("spec") or {}).get("ingressClassName")
    if class_name is not None:
        return class_name == "alb"
    annotations = (ingress.get("metadata") or {}).get("annotations") or {}
    return annotations.get("kubernetes.io/ingress.class") == "alb"


def read_model(ingress: Obj, release: Release | None = None) -> IngressModel:
    """The Ingress's spec and annotations, as a controller of `release` (None: the newest)
    reads them; ModelError("build") for what cannot be parsed."""
    meta = ingress["metadata"]
    annotations = meta.get("annotations") or {}

    def annotation(key: str, default: str | None = None) -> str | None:
        return annotations.get(PREFIX + key, default)

    scheme = annotation("scheme", "internal")  # the controller's default
    if scheme not in ("internal", "internet-facing"):
        raise ModelError("build", f"unknown scheme: {scheme}")
    target_type = annotation("target-type", "instance")
    if target_type not in ("instance", "ip"):
        raise ModelError("build", f"unknown targetType: {target_type}")
    redirect = annotation("ssl-redirect") if has(release, SSL_REDIRECT) else None
    if redirect is not None and not redirect.strip().isdigit():
        raise ModelError("build", f'failed to parse int annotation, ssl-redirect: "{redirect}"')
    certificates = (annotation("certificate-arn") or "").split(",")
    rules = (ingress.get("spec") or {}).get("rules") or []
    return IngressModel(
        namespace=meta.get("namespace") or "default",
        name=meta["name"],
        scheme=scheme,
        target_type=target_type,
        listen_ports=parse_listen_ports(annotation("listen-ports")),
        certificates=tuple(arn.strip() for arn in certificates if arn.strip()),
        ssl_policy=annotation("ssl-policy") or DEFAULT_SSL_POLICY,
        ssl_redirect=int(redirect) if redirect is not None else None,
        healthcheck_path=annotation("healthcheck-path"),
        healthcheck_port=annotation("healthcheck-port"),
        attributes=parse_pairs(annotation("load-balancer-attributes")),
        tags=parse_pairs(annotation("tags")),
        backends=backends_of(ingress),
        hosts=tuple(rule["host"] for rule in rules if rule.get("host")),
    )


def parse_listen_ports(text: str | None) -> tuple[tuple[str, int], ...]:
    """`[{"HTTP": 80}, {"HTTPS": 443}]` as ((protocol, port), ...); HTTP 80 by default."""
    if not text:
        return (("HTTP", 80),)
    error = ModelError("build", f"failed to parse listen-ports configuration: `{text}`")
    try:
        entries = json.loads(text)
    except ValueError:
        raise error from None
    if not isinstance(entries, list) or not entries:
        raise error
    ports = []
    for entry in entries:
        if not isinstance(entry, dict):
            raise error
        for protocol, port in entry.items():
            if protocol not in ("HTTP", "HTTPS") or not isinstance(port, int):
                raise error
            ports.append((protocol, port))
    return tuple(dict.fromkeys(ports))


def parse_pairs(text: str | None) -> tuple[tuple[str, str], ...]:
    """`k=v,k2=v2` as ((k, v), ...)."""
    pairs = []
    for item in (text or "").split(","):
        key, _, value = item.partition("=")
        if key.strip():
            pairs.append((key.strip(), value.strip()))
    return tuple(pairs)


def backends_of(ingress: Obj) -> tuple[Backend, ...]:
    """The Services the Ingress sends traffic to, the default backend first."""
    spec = ingress.get("spec") or {}
    found = [spec.get("defaultBackend")]
    for rule in spec.get("rules") or []:
        found += [path.get("backend") for path in (rule.get("http") or {}).get("paths") or []]
    backends = []
    for backend in found:
        service = (backend or {}).get("service")
        if service and service.get("name"):
            port = service.get("port") or {}
            backends.append(Backend(service["name"], port.get("number") or port.get("name", "")))
    return tuple(dict.fromkeys(backends))


def service_target(service: Obj, backend: Backend, model: IngressModel) -> ServiceTarget:
    """The Service port a backend names (by number or by name), and where it leads."""
    meta = service.get("metadata") or {}
    for port in (service.get("spec") or {}).get("ports") or []:
        if backend.port in (port.get("port"), port.get("name")):
            # Kubernetes defaults a Service port's targetPort to the port itself.
            target = port.get("targetPort", port["port"])
            return ServiceTarget(
                service=backend.service,
                namespace=model.namespace,
                uid=meta.get("uid", ""),
                port=backend.port,
                target_port=int(target) if str(target).isdigit() else str(target),
                node_port=int(port["nodePort"]) if port.get("nodePort") else None,
            )
    raise ModelError(
        "build",
        f"ingress: {model.stack}: unable to find port {backend.port} on service "
        f"{model.namespace}/{backend.service}",
    )


def resource_name(namespace: str, name: str, *identity: str) -> str:
    """A name as the controller makes one: `k8s-<ns:8>-<name:8>-<10 hex>`, the hex from the
    SHA-256 of the identity's parts written one after another."""
    digest = hashlib.sha256("".join(identity).encode()).hexdigest()[:10]
    return f"k8s-{_alnum(namespace)[:8]}-{_alnum(name)[:8]}-{digest}"


def backend_group_name(cluster: str) -> str:
    """The name of the cluster's shared backend security group."""
    digest = hashlib.sha256(cluster.encode()).hexdigest()[:10]
    return f"k8s-traffic-{_alnum(cluster)[:232]}-{digest}"


def _alnum(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]", "", text)


def hostname_of(ingress: Obj) -> str | None:
    """The load balancer hostname in the Ingress status, if any."""
    entries = ((ingress.get("status") or {}).get("loadBalancer") or {}).get("ingress") or []
    return entries[0].get("hostname") if entries else None
