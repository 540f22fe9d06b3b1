"""The deployment's config file: load, validate, and derive the deployment's identity.

The format is a superset of the `config.yaml` people already have for the old setup
script. Keys that script wrote back (certificate ARNs, the ALB's DNS name, ...) are
accepted and ignored; any other unknown key is an error, because a misspelt optional
key silently ignored is worse than a refusal.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.builders.controller_manifests import BUNDLED_VERSION, BUNDLED_VERSIONS
from orchestrator.errors import UsageError
from orchestrator.store import is_s3

MAX_CONFIG_BYTES = 64 * 1024
# A config nests 4 levels deep (kubeflow.alb.controller.imageRepository). PyYAML's composer
# recurses once per level, so a document nested thousands deep ends in a RecursionError, and
# its scanner slows quadratically with flow nesting: refuse deep documents while scanning.
MAX_NESTING = 32
SCHEMES = ("internet-facing", "internal")

# DNS names: labels of 1 to 63 octets, at most 253 characters written without the final dot
# (255 octets on the wire). Route 53, "DNS domain name format"; ACM, RequestCertificate API
# reference (botocore's acm model: DomainNameString, max 253).
DNS_NAME_MAX = 253
DNS_LABEL_MAX = 63
# ACM, RequestCertificate API reference: "the length of the domain name (technically, the
# Common Name) that you provide cannot exceed 64 octets (characters), including periods"
# (RFC 5280); SANs may have 253. "The maximum number of domain names that you can add to an
# ACM certificate is 100" (botocore's acm model: DomainList, max 100).
ACM_FIRST_NAME_MAX = 64
ACM_NAMES_MAX = 100
# ACM's DomainName pattern ends in `(?!-)[A-Za-z0-9-]{1,62}[A-Za-z0-9]`: a top-level label of
# at least two characters (botocore's acm model: DomainNameString).
ACM_TOP_LABEL_MIN = 2
# Values quoted in messages are cut to this many characters: one readable line each.
_SHOWN_MAX = 80

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# EKS, CreateCluster: a name of 1 to 100 characters matching ^[0-9A-Za-z][A-Za-z0-9\-_]*
# (botocore's eks model). It also goes into the tag key kubernetes.io/cluster/<name>: 122
# characters at most, within the 128 tag keys allow.
_CLUSTER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,99}$")
_ZONE_ID = re.compile(r"^[A-Z0-9]{1,32}$")
_CONTEXT = re.compile(r"^[^\s]{1,253}$")
# An image repository without tag or digest: registry host (with an optional port), then
# lowercase path components, as the OCI distribution spec allows them.
_IMAGE_REPOSITORY = re.compile(
    r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[0-9]{1,5})?(/[a-z0-9]+([._-]+[a-z0-9]+)*)+$"
)
DEFAULT_CONTROLLER_IMAGE_REPOSITORY = "public.ecr.aws/eks/aws-load-balancer-controller"
# Where the controller's image comes from when imageRepository is not set. The chart's
# public.ecr.aws serves the `aws` partition only (ECR Public is not in GovCloud: "Amazon ECR
# in AWS GovCloud (US)", AWS GovCloud (US) User Guide; nor in China). Elsewhere it is the
# Amazon EKS add-on registry of the region, as AWS publishes them ("View Amazon container
# image registries for Amazon EKS add-ons", Amazon EKS User Guide, add-ons-images.html),
# under the path the controller's own install guide gives for them.
PUBLIC_REGISTRY_PARTITIONS = frozenset({"aws"})
REGIONAL_REGISTRIES = {
    "cn-north-1": "918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn",
    "cn-northwest-1": "961992271922.dkr.ecr.cn-northwest-1.amazonaws.com.cn",
    "us-gov-east-1": "151742754352.dkr.ecr.us-gov-east-1.amazonaws.com",
    "us-gov-west-1": "013241004608.dkr.ecr.us-gov-west-1.amazonaws.com",
}
REGIONAL_REPOSITORY_PATH = "amazon/aws-load-balancer-controller"

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
    "route53.subDomain.certificateNames": (list, type(None)),
    "kubeflow": (dict, type(None)),
    "kubeflow.alb": (dict, type(None)),
    "kubeflow.alb.scheme": str,
    "kubeflow.alb.controller": (dict, type(None)),
    "kubeflow.alb.controller.imageRepository": (str, type(None)),
    "kubeflow.alb.controller.version": (str, type(None)),
    "kubernetes": (dict, type(None)),
    "kubernetes.context": (str, type(None)),
    "state": (dict, type(None)),
    "state.url": (str, type(None)),
    "state.kmsKeyId": (str, type(None)),
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
    # The controller release to run: one this tool bundles. Not among the controller
    # phase's inputs: changing it upgrades the controller in place, it is no other deployment.
    controller_version: str = BUNDLED_VERSION
    # Where the state lives (`--state` wins), and the KMS key an S3 state is encrypted
    # with. Not settings: moving the state does not change the deployment.
    state_url: str | None = None
    state_kms_key: str | None = None

    @property
    def deployment_id(self) -> str:
        """Stable name of this deployment: tags, tokens and labels are derived from it.

        At most 49 characters of [a-z0-9-] (a 40-character slug, '-', 8 hex digits), so
        `alb-controller-<id>` fits IAM's 64 for a role name and the id fits tag values (256)
        and Kubernetes label values (63); tests/test_config.py checks every derived name.
        """
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
            # The certificate's names besides *.<subdomain>, from both keys that list them.
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


def written_back(path: str | Path) -> dict[str, Any]:
    """The keys the old setup script wrote into its config (ids and ARNs of what it made),
    as dotted keys: `load_config` accepts and ignores them; `import --from-setup-script`
    reads them. Only strings count: anything else was not written by the script."""
    path = Path(path)
    data = _parse_yaml(_read(path), path)
    found: dict[str, Any] = {}

    def walk(node: dict[Any, Any], prefix: str) -> None:
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if isinstance(value, dict):
                walk(value, f"{dotted}.")
            elif isinstance(value, str) and _written_by_script(dotted, str(key)):
                found[dotted] = value

    walk(data, "")
    return found


def _written_by_script(dotted: str, key: str) -> bool:
    return (
        key.endswith(_LEGACY_SUFFIX)
        or dotted == "route53.subDomain.hostedZoneId"
        or any(dotted == k or dotted.startswith(k + ".") for k in _LEGACY_KEYS)
    )


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
        problem = _scan_problem(raw, aliases=False)
        if problem:
            raise UsageError(f"{path}: {problem}")
        documents = _load_documents(raw)
    except yaml.YAMLError as exc:
        raise UsageError(f"{path}: config is not valid YAML{_yaml_error(exc)}") from None
    if len(documents) > 1:
        raise UsageError(f"{path}: config holds {len(documents)} YAML documents; expected one")
    data, duplicates = documents[0] if documents else (None, [])
    if duplicates:
        raise UsageError(_report(path, duplicates))
    if data is None:
        raise UsageError(f"{path}: config file is empty; expected keys cluster and route53")
    if not isinstance(data, dict):
        raise UsageError(
            f"{path}: config must be a mapping with keys cluster and route53, "
            f"got {_type_name(data)}"
        )
    return data


def _yaml_error(exc: Exception) -> str:
    """' at line N: what PyYAML found wrong', on one line."""
    where = getattr(exc, "problem_mark", None)
    line = f" at line {where.line + 1}" if where else ""
    reason = getattr(exc, "problem", None) or (str(exc).splitlines() or ["unknown error"])[0]
    return f"{line}: {reason}"


def _scan_problem(raw: str, *, aliases: bool) -> str | None:
    """Refuse deep nesting (and, unless `aliases`, anchors and aliases) from the tokens alone:
    the scanner does not recurse, and stopping at MAX_NESTING keeps it fast."""
    import yaml

    opening = (
        yaml.BlockMappingStartToken,
        yaml.BlockSequenceStartToken,
        yaml.FlowMappingStartToken,
        yaml.FlowSequenceStartToken,
    )
    closing = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)
    depth = 0
    for token in yaml.scan(raw, Loader=yaml.SafeLoader):
        line = token.start_mark.line + 1
        if not aliases and isinstance(token, yaml.AliasToken | yaml.AnchorToken):
            return f"YAML anchors and aliases (&, *) are not allowed in the config (line {line})"
        if isinstance(token, opening):
            depth += 1
            if depth > MAX_NESTING:
                return f"YAML nested more than {MAX_NESTING} levels deep (line {line})"
        elif isinstance(token, closing):
            depth -= 1
    return None


def _load_documents(raw: str) -> list[tuple[Any, list[str]]]:
    """Each document's data, with the keys it gives twice: SafeLoader keeps the last silently,
    so a repeated `name` would quietly make another deployment."""
    import yaml

    loader = yaml.SafeLoader(raw)
    try:
        documents = []
        while loader.check_node():
            node = loader.get_node()
            documents.append((loader.construct_document(node), _duplicate_keys(node)))
        return documents
    finally:
        loader.dispose()


def _duplicate_keys(root: Any) -> list[str]:
    """Keys given twice in one mapping, at any depth, by dotted path and line."""
    import yaml

    found: list[tuple[int, str]] = []
    pending = [(root, "")]
    while pending:
        node, where = pending.pop()
        if isinstance(node, yaml.SequenceNode):
            pending.extend((item, f"{where}[{i}]") for i, item in enumerate(node.value))
        if not isinstance(node, yaml.MappingNode):
            continue
        first: dict[tuple[str, str], int] = {}
        for key, value in node.value:
            dotted = f"{where}.{key.value}" if where else str(key.value)
            pending.append((value, dotted))
            if not isinstance(key, yaml.ScalarNode):
                continue
            line, identity = key.start_mark.line + 1, (key.tag, key.value)
            if identity in first:
                lines = f"lines {first[identity]} and {line}"
                if first[identity] == line:
                    lines = f"twice on line {line}"
                found.append((line, f"{_shown_key(dotted)}: duplicate key ({lines})"))
            else:
                first[identity] = line
    return [problem for _, problem in sorted(found)]


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
                problems.append(f"{_shown_key(dotted)}: unknown key")
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
            problems.append(f"{key}: {_shown(value)} {problem}")
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
        else:
            problems.extend(_certificate_name_problems(sub))

    region = _lookup(data, "cluster.region")
    problem = region_problem(region)
    region_ok = problem is None
    if problem:
        problems.append(f"cluster.region: {problem}")
    cluster = _lookup(data, "cluster.name")
    if not _CLUSTER.fullmatch(cluster):
        problems.append(
            f"cluster.name: {_shown(cluster)} is not an EKS cluster name "
            "(letters, digits, '-' and '_', at most 100, starting with a letter or digit)"
        )

    root_zone = _zone_id(data, "route53.rootDomain.hostedZoneId", problems)
    sub_zone = _zone_id(data, "route53.subDomain.hostedZoneId", problems)
    sans = _sans(data, root, sub, root_zone, problems)

    scheme = _lookup(data, "kubeflow.alb.scheme") or "internet-facing"
    if scheme not in SCHEMES:
        problems.append(
            f"kubeflow.alb.scheme: {_shown(scheme)} must be one of {', '.join(SCHEMES)}"
        )

    repository = _lookup(data, "kubeflow.alb.controller.imageRepository")
    if repository is None:
        repository = default_image_repository(region) if region_ok else None
        if repository is None and region_ok:
            problems.append(
                f"kubeflow.alb.controller.imageRepository: needed in {region} (partition "
                f"{partition_of(region)}), where public.ecr.aws is not served and AWS publishes "
                "no Amazon EKS registry orchestrator knows; name a repository of the "
                "controller's image that the cluster's nodes can pull from"
            )
        repository = repository or DEFAULT_CONTROLLER_IMAGE_REPOSITORY
    elif not _IMAGE_REPOSITORY.fullmatch(repository):
        problems.append(
            f"kubeflow.alb.controller.imageRepository: {_shown(repository)} is not an image "
            "repository like 'registry.example.com/mirror/aws-load-balancer-controller' "
            "(no tag or digest: orchestrator pins the controller's version)"
        )

    controller_version = _controller_version(data, problems)

    context = _lookup(data, "kubernetes.context")
    if context is not None and not _CONTEXT.fullmatch(context):
        problems.append(f"kubernetes.context: {_shown(context)} is not a kubeconfig context name")

    state_url, state_kms_key = _state(data, problems)

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
        controller_version=controller_version,
        state_url=state_url,
        state_kms_key=state_kms_key,
    )
    return config, problems


def _controller_version(data: dict[str, Any], problems: list[str]) -> str:
    """kubeflow.alb.controller.version: a release this tool bundles (`3.5.0` is `v3.5.0`)."""
    version = _lookup(data, "kubeflow.alb.controller.version")
    if version is None:
        return BUNDLED_VERSION
    named = version if version.startswith("v") else f"v{version}"
    if named not in BUNDLED_VERSIONS:
        problems.append(
            f"kubeflow.alb.controller.version: {_shown(version)} is not a release orchestrator "
            f"bundles ({', '.join(BUNDLED_VERSIONS)}; the default is {BUNDLED_VERSION})"
        )
        return BUNDLED_VERSION
    return named


def _state(data: dict[str, Any], problems: list[str]) -> tuple[str | None, str | None]:
    """state.url (a path, or s3://BUCKET/KEY) and state.kmsKeyId (an S3 state's only)."""
    url, kms_key = _lookup(data, "state.url") or None, _lookup(data, "state.kmsKeyId") or None
    if url is not None and is_s3(url):
        from orchestrator.s3store import s3_url_problem

        problem = s3_url_problem(url)
        if problem:
            problems.append(f"state.url: {problem}")
    elif kms_key is not None:
        problems.append("state.kmsKeyId: needs state.url s3://BUCKET/KEY (a KMS key encrypts S3)")
    return url, kms_key


def _zone_id(data: dict[str, Any], key: str, problems: list[str]) -> str | None:
    value = _lookup(data, key)
    if value is None or value == "":
        return None
    zone_id = value.removeprefix("/hostedzone/")
    if not _ZONE_ID.fullmatch(zone_id):
        problems.append(
            f"{key}: {_shown(value)} is not a Route 53 hosted zone id like 'Z0123456789ABC'"
        )
    return zone_id


SANS_KEY = "route53.subDomain.subjectAlternativeNames"
NAMES_KEY = "route53.subDomain.certificateNames"


def _sans(
    data: dict[str, Any], root: str, sub: str, root_zone: str | None, problems: list[str]
) -> list[str]:
    """The certificate's names besides `*.<subdomain>`, in the order listed.

    `subjectAlternativeNames` is the old setup script's key, and it requested `*.<entry>`
    for each entry; earlier releases of orchestrator took an entry as the name itself. A
    wildcard entry means the same to both and is taken as it is; a bare one is refused,
    saying what to write for either meaning: there is no guessing which was meant.
    `certificateNames` lists names exactly as they go on the certificate."""
    names: list[str] = []
    for key, wildcards_only in ((SANS_KEY, True), (NAMES_KEY, False)):
        for i, value in enumerate(_lookup(data, key) or []):
            problem = dns_name_problem(value, wildcard=True)
            if problem:
                problems.append(f"{key}[{i}]: {_shown(value)} {problem}")
                continue
            san = normalize_name(value)
            if wildcards_only and not san.startswith("*."):
                problems.append(
                    f"{key}[{i}]: {_shown(value)} is ambiguous: the old setup script requested "
                    f"'*.{san}' for it, earlier orchestrator releases the name itself; write "
                    f"'*.{san}' here for the first, or list '{san}' under {NAMES_KEY} for "
                    "the second"
                )
                continue
            bare = san.removeprefix("*.")
            in_sub = bare == sub or bare.endswith("." + sub)
            in_root = bare == root or bare.endswith("." + root)
            if not in_sub and not (in_root and root_zone):
                where = "the subdomain or, with route53.rootDomain.hostedZoneId, the root domain"
                problems.append(f"{key}[{i}]: {_shown(value)} is not within {where}")
                continue
            if san != f"*.{sub}" and san not in names:
                names.append(san)
    # The request names `*.<subdomain>` first, then these.
    if 1 + len(names) > ACM_NAMES_MAX:
        problems.append(
            f"{SANS_KEY} and {NAMES_KEY}: {len(names)} names besides '*.{sub}'; an ACM "
            f"certificate holds at most {ACM_NAMES_MAX} names, so list at most "
            f"{ACM_NAMES_MAX - 1}"
        )
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
    if len(name) > DNS_NAME_MAX:
        return f"is {len(name)} characters long; DNS names are at most {DNS_NAME_MAX}"
    labels = name.split(".")
    if wildcard and labels[0] == "*":
        labels = labels[1:]
    if len(labels) < 2:
        return "needs at least two labels, like 'example.com'"
    for label in labels:
        if not _LABEL.fullmatch(label):
            if len(label) > DNS_LABEL_MAX:
                return f"has a label of {len(label)} characters; labels are at most {DNS_LABEL_MAX}"
            return f"has an invalid label {label!r} (letters, digits and inner '-' only)"
    return None


def _certificate_name_problems(sub: str) -> list[str]:
    """ACM's rules for the certificate the certificates phase requests: `*.<subdomain>` first.
    (With wildcardCertificate it also requests `*.<root>`: shorter, same top-level label.)"""
    key, first = "route53.subDomain.name", f"*.{sub}"
    problems = []
    if len(first) > ACM_FIRST_NAME_MAX:
        problems.append(
            f"{key}: {sub!r} is {len(sub)} characters; ACM allows at most {ACM_FIRST_NAME_MAX} "
            f"for a certificate's first name, here '*.' and the subdomain, so the subdomain "
            f"can have at most {ACM_FIRST_NAME_MAX - 2}"
        )
    if len(sub.rsplit(".", 1)[-1]) < ACM_TOP_LABEL_MIN:
        problems.append(
            f"{key}: {sub!r} ends in a one-character label; ACM certificate names need a "
            f"top-level label of at least {ACM_TOP_LABEL_MIN} characters"
        )
    return problems


def region_problem(region: str) -> str | None:
    """Why `region` is not one where botocore knows EKS, or None."""
    known, patterns, version = _eks_regions()
    if region in known:
        return None
    # A region is one DNS label of its endpoints' names (eks.<region>.amazonaws.com), so one
    # longer than a label cannot be a new region, whatever the partitions' patterns allow.
    maybe_new = len(region) <= DNS_LABEL_MAX and any(re.fullmatch(p, region) for p in patterns)
    if maybe_new:
        return (
            f"{_shown(region)} is not a region where botocore {version} knows EKS; if it is "
            "a newer region, upgrade boto3 and botocore"
        )
    return f"{_shown(region)} is not an AWS region with EKS, like 'us-west-2'"


def default_image_repository(region: str) -> str | None:
    """The controller's image repository for a cluster in `region` when the config names
    none: the region's Amazon EKS registry, else public.ecr.aws where it is served."""
    if region in REGIONAL_REGISTRIES:
        return f"{REGIONAL_REGISTRIES[region]}/{REGIONAL_REPOSITORY_PATH}"
    if partition_of(region) in PUBLIC_REGISTRY_PARTITIONS:
        return DEFAULT_CONTROLLER_IMAGE_REPOSITORY
    return None


def partition_of(region: str) -> str:
    """The partition of a region botocore knows (region_problem is None for it)."""
    return str(_endpoints()[1].get_partition_for_region(region))


@functools.lru_cache(maxsize=1)
def data_loader() -> Any:
    """botocore's loader of its data files (endpoints, service models), as a session makes
    it (AWS_DATA_PATH honoured), one for the process: the region checks read the endpoint
    data through it and the AWS clients are made with it (orchestrator.aws), so that data,
    a few hundred kilobytes of JSON, is parsed once, not once each. Imported here, not at
    the top: only the region checks and the clients need it."""
    import botocore.session

    return botocore.session.get_session().get_component("data_loader")


@functools.lru_cache(maxsize=1)
def _endpoints() -> tuple[dict[str, Any], Any]:
    """The endpoint data botocore ships, and a resolver over it."""
    from botocore.regions import EndpointResolver

    endpoints = data_loader().load_data("endpoints")
    return endpoints, EndpointResolver(endpoints)


@functools.lru_cache(maxsize=1)
def _eks_regions() -> tuple[frozenset[str], tuple[str, ...], str]:
    """EKS's regions in every partition, and each partition's region pattern, from the
    endpoint data botocore ships: what Session.get_available_regions("eks", p) reads."""
    import botocore

    endpoints, resolver = _endpoints()
    known = frozenset(
        region
        for partition in resolver.get_available_partitions()
        for region in resolver.get_available_endpoints("eks", partition)
    )
    patterns = tuple(p["regionRegex"] for p in endpoints["partitions"] if "regionRegex" in p)
    return known, patterns, botocore.__version__


def _shown(value: Any) -> str:
    """A value quoted in a message, cut short: a 5,000-character value stays readable."""
    text = repr(value)
    if len(text) <= _SHOWN_MAX:
        return text
    size = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
    return f"{text[: _SHOWN_MAX - 3]}... ({size})"


def _shown_key(dotted: str) -> str:
    """A dotted key as written, unless it would break the line or run on."""
    return dotted if dotted.isprintable() and len(dotted) <= _SHOWN_MAX else _shown(dotted)


# ---- the kubeconfig ---------------------------------------------------------------------------

# Contexts listed in a message, at most: a kubeconfig may hold hundreds.
_CONTEXTS_SHOWN = 10


def kubeconfig_paths() -> list[Path]:
    """The files the official Python client reads: KUBECONFIG, a list joined with ':' (';' on
    Windows) whose entries may be missing, else ~/.kube/config."""
    listed = os.environ.get("KUBECONFIG") or "~/.kube/config"
    return [Path(entry).expanduser() for entry in listed.split(os.pathsep) if entry]


def check_kube_context(config: Config) -> None:
    """Refuse, before any AWS call, a kubernetes.context the kubeconfig does not hold (or, with
    none set, a kubeconfig without a usable current-context), naming the files read."""
    paths = kubeconfig_paths()
    found = [path for path in paths if path.exists()]
    if not found:
        where = f" at {', '.join(map(str, paths))}" if paths else ": KUBECONFIG names no file"
        raise UsageError(
            f"no kubeconfig{where}; set KUBECONFIG or run `aws eks update-kubeconfig "
            f"--name {config.cluster_name} --region {config.region}`"
        )
    read = ", ".join(map(str, found))
    contexts, clusters, current = _merged(found)
    wanted = config.kube_context
    if wanted is None:
        if not isinstance(current, str) or not current:
            raise UsageError(
                f"the kubeconfig ({read}) has no current-context and the config sets no "
                f"kubernetes.context; {_choose_from(contexts)}"
            )
        if current not in contexts:
            raise UsageError(
                f"the kubeconfig's current-context {_shown(current)} ({read}) is not one of its "
                f"contexts; set kubernetes.context in the config: {_choose_from(contexts)}"
            )
        wanted = current
    elif wanted not in contexts:
        raise UsageError(
            f"kubernetes.context {wanted!r} is not in the kubeconfig ({read}); "
            f"{_choose_from(contexts)}"
        )
    # The client looks the context's cluster up by name and fails without it.
    context = contexts[wanted]
    cluster = context.get("cluster") if isinstance(context, dict) else None
    if cluster not in clusters:
        raise UsageError(
            f"kubeconfig context {wanted!r} names cluster {_shown(cluster)}, which is not in "
            f"the kubeconfig ({read})"
        )


def _choose_from(contexts: dict[str, Any]) -> str:
    names = list(contexts)
    if not names:
        return "it has no contexts"
    more = len(names) - _CONTEXTS_SHOWN
    listed = ", ".join(names[:_CONTEXTS_SHOWN]) + (f" and {more} more" if more > 0 else "")
    return f"its contexts: {listed}"


def _merged(paths: list[Path]) -> tuple[dict[str, Any], set[str], Any]:
    """Contexts by name and cluster names across the files (the first of a name wins), and
    the current-context (the last file that sets one wins), as the official Python client
    merges them (kubernetes.config.kube_config.KubeConfigMerger)."""
    contexts: dict[str, Any] = {}
    clusters: set[str] = set()
    current = None
    for path in paths:
        data = _read_kubeconfig(path)
        for entry in _named_entries(data, "contexts", path):
            contexts.setdefault(entry["name"], entry.get("context"))
        clusters.update(entry["name"] for entry in _named_entries(data, "clusters", path))
        if "current-context" in data:
            current = data["current-context"]
    return contexts, clusters, current


def _named_entries(data: dict[str, Any], key: str, path: Path) -> list[dict[str, Any]]:
    entries = data.get(key) or []
    if not isinstance(entries, list) or not all(
        isinstance(entry, dict) and isinstance(entry.get("name"), str) for entry in entries
    ):
        raise UsageError(f"kubeconfig {path}: {key} is not a list of entries with a name")
    return entries


def _read_kubeconfig(path: Path) -> dict[str, Any]:
    import yaml

    try:
        raw = path.read_bytes().decode("utf-8")
        problem = _scan_problem(raw, aliases=True)
        if problem:
            raise UsageError(f"kubeconfig {path}: {problem}")
        data = yaml.safe_load(raw)
    except OSError as exc:
        raise UsageError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"kubeconfig {path} is not UTF-8 text ({exc.reason})") from None
    except yaml.YAMLError as exc:
        raise UsageError(f"kubeconfig {path} is not valid YAML{_yaml_error(exc)}") from None
    if data is None:
        raise UsageError(f"kubeconfig {path} is empty")
    if not isinstance(data, dict):
        raise UsageError(f"kubeconfig {path} is not a mapping (got {_type_name(data)})")
    return data
