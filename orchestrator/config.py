"""The deployment's config file: load, validate, and derive the deployment's identity.

The format is a superset of the `config.yaml` people already have for the old setup
script. Keys that script wrote back (certificate ARNs, the ALB's DNS name, ...) are
accepted and ignored; any other unknown key is an error, because a misspelt optional
key silently ignored is worse than a refusal.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError

MAX_CONFIG_BYTES = 64 * 1024
SCHEMES = ("internet-facing", "internal")

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_ZONE_ID = re.compile(r"^[A-Z0-9]{1,32}$")
_CONTEXT = re.compile(r"^[^\s]{1,253}$")
# An image repository without tag or digest: registry host (with an optional port), then
# lowercase path components, as the OCI distribution spec allows them.
_IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$"
)
DEFAULT_CONTROLLER_IMAGE_REPOSITORY = "public.ecr.aws/eks/aws-load-balancer-controller"

# Keys the old setup script wrote into config.yaml; they describe its resources, not ours.
_LEGACY_KEYS = {
    "kubeflow.alb.dns",
    "kubeflow.alb.serviceAccount",
    "route53.rootDomain.certARN",
    "route53.subDomain.certARN",
}
_LEGACY_SUFFIX = "-certARN"

# Every key the file may hold, as dotted paths, with its expected type.
_SCHEMA: dict[str, type | tuple[type, ...]] = {
    "cluster": dict,
    "cluster.name": str,
    "cluster.region": str,
    "route53": dict,
    "route53.rootDomain": dict,
    "route53.rootDomain.name": str,
    "route53.rootDomain.hostedZoneId": (str, type(None)),
    "route53.rootDomain.wildcardCertificate": bool,
    "route53.subDomain": dict,
    "route53.subDomain.name": str,
    "route53.subDomain.hostedZoneId": (str, type(None)),
    "route53.subDomain.subjectAlternativeNames": (list, type(None)),
    "kubeflow": (dict, type(None)),
    "kubeflow.alb": (dict, type(None)),
    "kubeflow.alb.scheme": str,
    "kubeflow.alb.controller": (dict, type(None)),
    "kubeflow.alb.controller.imageRepository": (str, type(None)),
    "kubernetes": (dict, type(None)),
    "kubernetes.context": (str, type(None)),
}
_REQUIRED = ("cluster.name", "cluster.region", "route53.rootDomain.name", "route53.subDomain.name")
_TYPE_NAMES = {
    dict: "a mapping",
    list: "a list",
    str: "a string",
    bool: "true or false",
    int: "a number",
    float: "a number",
    type(None): "empty",
}


@dataclass(frozen=True)
class Config:
    cluster_name: str
    region: str
    root_domain: str
    root_zone_id: str | None
    subdomain: str
    subdomain_zone_id: str | None = None
    subject_alternative_names: tuple[str, ...] = ()
    root_wildcard_certificate: bool = False
    alb_scheme: str = "internet-facing"
    kube_context: str | None = None
    controller_image_repository: str = DEFAULT_CONTROLLER_IMAGE_REPOSITORY

    @property
    def deployment_id(self) -> str:
        """Stable name of this deployment: tags, tokens and labels are derived from it."""
        slug = re.sub(r"[^a-z0-9]+", "-", self.subdomain).strip("-")[:40].rstrip("-")
        digest = hashlib.sha256(
            f"{self.cluster_name}|{self.region}|{self.subdomain}".encode()
        ).hexdigest()[:8]
        return f"{slug}-{digest}"

    @property
    def kubeflow_host(self) -> str:
        return f"kubeflow.{self.subdomain}"

    def settings(self) -> dict[str, Any]:
        """The config as dotted keys, the form stored in the state file to explain changes."""
        return {
            "cluster.name": self.cluster_name,
            "cluster.region": self.region,
            "route53.rootDomain.name": self.root_domain,
            "route53.rootDomain.hostedZoneId": self.root_zone_id,
            "route53.rootDomain.wildcardCertificate": self.root_wildcard_certificate,
            "route53.subDomain.name": self.subdomain,
            "route53.subDomain.hostedZoneId": self.subdomain_zone_id,
            "route53.subDomain.subjectAlternativeNames": list(self.subject_alternative_names),
            "kubeflow.alb.scheme": self.alb_scheme,
            "kubeflow.alb.controller.imageRepository": self.controller_image_repository,
            "kubernetes.context": self.kube_context,
        }


# Settings added after state files were first written, with the value they had implicitly
# before: a state file without one was made with that value.
IMPLIED_SETTINGS: dict[str, Any] = {
    "kubeflow.alb.controller.imageRepository": DEFAULT_CONTROLLER_IMAGE_REPOSITORY,
}


def digest(settings: dict[str, Any], keys: tuple[str, ...]) -> str:
    """A digest of just the settings a phase depends on."""
    picked = {k: settings.get(k) for k in sorted(keys)}
    return hashlib.sha256(json.dumps(picked, sort_keys=True).encode()).hexdigest()[:16]


def load_config(path: str | Path) -> Config:
    """Read and validate a config file; raise UsageError naming every problem found."""
    path = Path(path)
    raw = _read(path)
    data = _parse_yaml(raw, path)
    problems = _check_shape(data)
    if problems:
        raise UsageError(_report(path, problems))
    config, problems = _build(data)
    if problems:
        raise UsageError(_report(path, problems))
    return config


def _report(path: Path, problems: list[str]) -> str:
    """One line for one problem; a line each under a heading for several."""
    if len(problems) == 1:
        return f"{path}: invalid config: {problems[0]}"
    head = f"{path}: invalid config ({len(problems)} problems)"
    return "\n".join([head, *(f"  - {p}" for p in problems)])


def _read(path: Path) -> str:
    if not path.exists():
        raise UsageError(f"{path}: config file not found (pass --config PATH)")
    if not path.is_file():
        raise UsageError(f"{path}: config path is not a regular file")
    try:
        size = path.stat().st_size
        if size > MAX_CONFIG_BYTES:
            raise UsageError(
                f"{path}: config file is {size} bytes; the limit is {MAX_CONFIG_BYTES}"
            )
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UsageError(f"{path}: config file is not UTF-8 text ({exc.reason})") from None
    except OSError as exc:
        raise UsageError(f"{path}: cannot read config file: {exc.strerror}") from None


def _parse_yaml(raw: str, path: Path) -> dict[str, Any]:
    import yaml

    try:
        # Anchors and aliases are how "billion laughs" documents blow up; a config needs none.
        for token in yaml.scan(raw, Loader=yaml.SafeLoader):
            if isinstance(token, yaml.AliasToken | yaml.AnchorToken):
                raise UsageError(
                    f"{path}: YAML anchors and aliases (&, *) are not allowed in the config "
                    f"(line {token.start_mark.line + 1})"
                )
        documents = list(yaml.safe_load_all(raw))
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where else ""
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise UsageError(f"{path}: config is not valid YAML{line}: {reason}") from None
    if len(documents) > 1:
        raise UsageError(f"{path}: config holds {len(documents)} YAML documents; expected one")
    data = documents[0] if documents else None
    if data is None:
        raise UsageError(f"{path}: config file is empty; expected keys cluster and route53")
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: config must be a mapping with keys cluster and route53, "
            f"got {_type_name(data)}"
        )
    return data


def _type_name(value: Any) -> str:
    for kind, name in _TYPE_NAMES.items():
        if type(value) is kind:
            return name
    return type(value).__name__


def _check_shape(data: dict[str, Any]) -> list[str]:
    """Unknown keys, wrong types and missing required keys, by dotted path."""
    problems: list[str] = []

    def walk(node: dict[Any, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if not isinstance(key, str):
                problems.append(f"{prefix or '(top level)'}: key {key!r} is not a string")
                continue
            if dotted in _LEGACY_KEYS or key.endswith(_LEGACY_SUFFIX):
                continue
            expected = _SCHEMA.get(dotted)
            if expected is None:
                problems.append(f"{dotted}: unknown key")
                continue
            kinds = expected if isinstance(expected, tuple) else (expected,)
            if type(value) not in kinds:
                wanted = " or ".join(_TYPE_NAMES[k] for k in kinds)
                problems.append(f"{dotted}: expected {wanted}, got {_type_name(value)}")
                continue
            if isinstance(value, dict):
                walk(value, dotted + ".")

    walk(data, "")
    missing: dict[str, list[str]] = {}
    for key in _REQUIRED:
        if _lookup(data, key) is None and not any(p.startswith(_parent(key)) for p in problems):
            # Name the outermost missing key once ("route53"), not each key under it.
            parts = key.split(".")
            absent = next(
                ".".join(parts[:i])
                for i in range(1, len(parts) + 1)
                if _lookup(data, ".".join(parts[:i])) is None
            )
            missing.setdefault(absent, []).append(key)
    for absent, keys in missing.items():
        needs = "" if keys == [absent] else f" (it must hold {', '.join(keys)})"
        problems.append(f"{absent}: required key is missing{needs}")
    return problems


def _parent(key: str) -> str:
    return key.rsplit(".", 1)[0]


def _lookup(data: dict[str, Any], dotted: str) -> Any:
    node: Any = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


def _build(data: dict[str, Any]) -> tuple[Config, list[str]]:
    problems: list[str] = []

    def name(key: str, *, wildcard: bool = False) -> str:
        value = _lookup(data, key)
        problem = dns_name_problem(value, wildcard=wildcard)
        if problem:
            problems.append(f"{key}: {value!r} {problem}")
        return normalize_name(value)

    root = name("route53.rootDomain.name")
    sub = name("route53.subDomain.name")
    if root and sub and not dns_name_problem(root) and not dns_name_problem(sub):
        if sub == root:
            problems.append(
                f"route53.subDomain.name: {sub!r} equals route53.rootDomain.name; "
                f"Kubeflow needs a subdomain of it, e.g. 'platform.{root}'"
            )
        elif not sub.endswith("." + root):
            problems.append(
                f"route53.subDomain.name: {sub!r} is not under route53.rootDomain.name {root!r}"
            )

    region = _lookup(data, "cluster.region")
    if not _REGION.match(region):
        problems.append(f"cluster.region: {region!r} is not an AWS region name like 'us-west-2'")
    cluster = _lookup(data, "cluster.name")
    if not _CLUSTER.match(cluster):
        problems.append(
            f"cluster.name: {cluster!r} is not an EKS cluster name "
            "(letters, digits, '-' and '_', at most 100, starting with a letter or digit)"
        )

    root_zone = _zone_id(data, "route53.rootDomain.hostedZoneId", problems)
    sub_zone = _zone_id(data, "route53.subDomain.hostedZoneId", problems)
    sans = _sans(data, root, sub, root_zone, problems)

    scheme = _lookup(data, "kubeflow.alb.scheme") or "internet-facing"
    if scheme not in SCHEMES:
        problems.append(f"kubeflow.alb.scheme: {scheme!r} must be one of {', '.join(SCHEMES)}")

    repository = _lookup(data, "kubeflow.alb.controller.imageRepository")
    if repository is None:
        repository = DEFAULT_CONTROLLER_IMAGE_REPOSITORY
    elif not _IMAGE_REPOSITORY.match(repository):
        problems.append(
            f"kubeflow.alb.controller.imageRepository: {repository!r} is not an image repository "
            "like 'registry.example.com/mirror/aws-load-balancer-controller' (no tag or digest: "
            "orchestrator pins the controller's version)"
        )

    context = _lookup(data, "kubernetes.context")
    if context is not None and not _CONTEXT.match(context):
        problems.append(f"kubernetes.context: {context!r} is not a kubeconfig context name")

    wildcard_root = bool(_lookup(data, "route53.rootDomain.wildcardCertificate"))
    if wildcard_root and not root_zone:
        problems.append(
            "route53.rootDomain.wildcardCertificate: needs route53.rootDomain.hostedZoneId, "
            "to place the certificate's validation record in the root zone"
        )

    config = Config(
        cluster_name=cluster,
        region=region,
        root_domain=root,
        root_zone_id=root_zone,
        subdomain=sub,
        subdomain_zone_id=sub_zone,
        subject_alternative_names=tuple(sans),
        root_wildcard_certificate=wildcard_root,
        alb_scheme=scheme,
        kube_context=context,
        controller_image_repository=repository,
    )
    return config, problems


def _zone_id(data: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = _lookup(data, key)
    if value is None or value == "":
        return None
    zone_id = value.removeprefix("/hostedzone/")
    if not _ZONE_ID.match(zone_id):
        problems.append(f"{key}: {value!r} is not a Route 53 hosted zone id like 'Z0123456789ABC'")
    return zone_id


def _sans(
    data: dict[str, Any], root: str, sub: str, root_zone: str | None, problems: list[str]
) -> list[str]:
    key = "route53.subDomain.subjectAlternativeNames"
    names: list[str] = []
    for i, value in enumerate(_lookup(data, key) or []):
        problem = dns_name_problem(value, wildcard=True)
        if problem:
            problems.append(f"{key}[{i}]: {value!r} {problem}")
            continue
        san = normalize_name(value)
        bare = san.removeprefix("*.")
        in_sub = bare == sub or bare.endswith("." + sub)
        in_root = bare == root or bare.endswith("." + root)
        if not in_sub and not (in_root and root_zone):
            where = "the subdomain or, with route53.rootDomain.hostedZoneId, the root domain"
            problems.append(f"{key}[{i}]: {value!r} is not within {where}")
            continue
        if san != f"*.{sub}" and san not in names:
            names.append(san)
    return names


def normalize_name(value: Any) -> str:
    return value.strip().rstrip(".").lower() if isinstance(value, str) else ""


def dns_name_problem(value: Any, *, wildcard: bool = False) -> str | None:
    """Why `value` is not a valid DNS name, or None. Names need at least two labels."""
    if not isinstance(value, str):
        return f"must be a string, got {_type_name(value)}"
    name = normalize_name(value)
    if not name:
        return "is empty"
    if not name.isascii():
        return "is not ASCII; write internationalised names in their xn-- (punycode) form"
    if len(name) > 253:
        return f"is {len(name)} characters long; DNS names are at most 253"
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        return "needs at least two labels, like 'example.com'"
    for label in labels:
        if not _LABEL.match(label):
            if len(label) > 63:
                return f"has a label of {len(label)} characters; labels are at most 63"
            return f"has an invalid label {label!r} (letters, digits and inner '-' only)"
    return None
