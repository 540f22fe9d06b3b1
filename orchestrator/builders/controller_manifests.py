"""The AWS Load Balancer Controller's Kubernetes objects and IAM documents, built (pure).

The objects come from the template `manifests/<version>/aws-load-balancer-controller.yaml`
and the controller's permissions from `manifests/<version>/iam-policy.json`, both package
data, one pair per controller release this tool bundles (each made from the upstream
release it names); this module fills in what differs per cluster and deployment and puts
the objects in apply order.
"""

from __future__ import annotations

import base64
import copy
import json
from collections.abc import Iterator
from functools import cache
from importlib import resources
from typing import Any

import yaml

CONTROLLER_NAMESPACE = "kube-system"
CONTROLLER_NAME = "aws-load-balancer-controller"
SERVICE_ACCOUNT = "aws-load-balancer-controller"
WEBHOOK_SERVICE = "aws-load-balancer-webhook-service"
TLS_SECRET = "aws-load-balancer-tls"
ROLE_ANNOTATION = "eks.amazonaws.com/role-arn"
STS_AUDIENCE = "sts.amazonaws.com"

TEMPLATE = "aws-load-balancer-controller.yaml"
POLICY = "iam-policy.json"

# The controller releases bundled (a directory of manifests each), oldest first; the
# newest is what `kubeflow.alb.controller.version` defaults to.
BUNDLED_VERSIONS = ("v3.4.3", "v3.5.0")
BUNDLED_VERSION = BUNDLED_VERSIONS[-1]

# Definitions before the objects that use them, identity before the workload that runs as
# it, the workload before the webhooks that call it, the class last. Rollback reverses it.
APPLY_ORDER = (
    "CustomResourceDefinition",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Role",
    "RoleBinding",
    "Secret",
    "Service",
    "Deployment",
    "PodDisruptionBudget",
    "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration",
    "IngressClassParams",
    "IngressClass",
)

Obj = dict[str, Any]


def kinds() -> list[tuple[str, str]]:
    """(apiVersion, kind) of every object the controller is made of, in apply order, in
    any bundled version: read from the templates themselves, so that what the sweep looks
    for cannot drift from them."""
    objects = [o for version in BUNDLED_VERSIONS for o in _template(version)]
    objects.sort(key=lambda o: APPLY_ORDER.index(o["kind"]))
    return list(dict.fromkeys((o["apiVersion"], o["kind"]) for o in objects))


def controller_manifests(
    *,
    cluster_name: str,
    region: str,
    vpc_id: str,
    role_arn: str,
    labels: dict[str, str],
    webhook_ca_pem: str,
    webhook_cert_pem: str,
    webhook_key_pem: str,
    image_repository: str | None = None,
    replicas: int = 2,
    version: str = BUNDLED_VERSION,
) -> list[Obj]:
    """Every object the controller `version` needs, for this cluster, in the order to
    apply them."""
    objects = sorted(_template(version), key=lambda o: APPLY_ORDER.index(o["kind"]))
    ca_bundle = _b64(webhook_ca_pem)
    tls = {"ca.crt": webhook_ca_pem, "tls.crt": webhook_cert_pem, "tls.key": webhook_key_pem}
    for obj in objects:
        _add_labels(obj["metadata"], labels)
        kind = obj["kind"]
        if kind == "ServiceAccount":
            obj["metadata"].setdefault("annotations", {})[ROLE_ANNOTATION] = role_arn
        elif kind == "Secret":
            obj["data"] = {key: _b64(value) for key, value in tls.items()}
        elif kind == "Deployment":
            _fill_deployment(obj, labels, replicas, cluster_name, region, vpc_id)
            if image_repository:
                _use_repository(obj, image_repository)
        elif kind.endswith("WebhookConfiguration"):
            for webhook in obj["webhooks"]:
                webhook["clientConfig"]["caBundle"] = ca_bundle
    return objects


def _fill_deployment(
    deployment: Obj, labels: dict[str, str], replicas: int, cluster: str, region: str, vpc: str
) -> None:
    spec = deployment["spec"]
    spec["replicas"] = replicas
    template_meta = spec["template"]["metadata"]
    # The selector is immutable once created, so deployment labels stay out of it; they go
    # on the pods, but never over the labels the selector (and the webhooks) match on.
    selector = spec["selector"]["matchLabels"]
    template_meta["labels"] = {**template_meta.get("labels", {}), **labels, **selector}
    container = spec["template"]["spec"]["containers"][0]
    container["args"] = [
        f"--cluster-name={cluster}",
        f"--aws-region={region}",
        f"--aws-vpc-id={vpc}",
        *container.get("args", []),
    ]


def keeping_selector(deployment: Obj, live: Obj | None) -> Obj:
    """The Deployment as it can be written over `live`, one another install created (the
    old setup script's kustomize): a Deployment's selector is immutable, so the one it
    was created with stays, and the pods carry its labels too, so it goes on selecting
    them (and the webhook Service, made with that install, too). Ours as it is otherwise."""
    selector = (((live or {}).get("spec") or {}).get("selector") or {}).get("matchLabels")
    if not selector or selector == deployment["spec"]["selector"]["matchLabels"]:
        return deployment
    kept = copy.deepcopy(deployment)
    kept["spec"]["selector"] = {"matchLabels": dict(selector)}
    template_meta = kept["spec"]["template"]["metadata"]
    template_meta["labels"] = {**template_meta.get("labels", {}), **selector}
    return kept


def _use_repository(deployment: Obj, repository: str) -> None:
    """The pinned controller image, from `repository` (a mirror for clusters without
    internet egress, or a regional ECR): the tag stays the one the manifests were made for."""
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    tag = container["image"].rpartition(":")[2]
    container["image"] = f"{repository}:{tag}"


def _add_labels(metadata: Obj, labels: dict[str, str]) -> None:
    metadata["labels"] = {**metadata.get("labels", {}), **labels}


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _template(version: str = BUNDLED_VERSION) -> list[Obj]:
    """A fresh copy of the template's objects, so callers may change what they get."""
    return [doc for doc in yaml.safe_load_all(_package_text(version, TEMPLATE)) if doc]


@cache
def _package_text(version: str, name: str) -> str:
    if version not in BUNDLED_VERSIONS:
        raise ValueError(f"controller {version} is not bundled ({', '.join(BUNDLED_VERSIONS)})")
    # importlib.resources rather than a path next to __file__: works from a wheel or zip too.
    return (
        resources.files("orchestrator.builders")
        .joinpath("manifests", version, name)
        .read_text(encoding="utf-8")
    )


# ---- reading an existing controller --------------------------------------------------------


def cluster_name_of(deployment: Obj) -> str | None:
    """The `--cluster-name` a controller Deployment runs with (either flag form), if any."""
    pod_spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in pod_spec.get("containers") or []:
        words = [str(w) for w in (container.get("command") or []) + (container.get("args") or [])]
        for i, word in enumerate(words):
            if word.startswith("--cluster-name="):
                return word.partition("=")[2]
            if word == "--cluster-name" and i + 1 < len(words):
                return words[i + 1]
    return None


# ---- IAM -------------------------------------------------------------------------------------


def controller_policy(partition: str = "aws", version: str = BUNDLED_VERSION) -> Obj:
    """The identity policy with what the controller `version` needs on AWS (a fresh copy),
    its ARNs in `partition` (upstream ships the same policy per partition, only the ARNs
    differ)."""
    text = _package_text(version, POLICY)
    return json.loads(text.replace('"arn:aws:', f'"arn:{partition}:'))


Permission = tuple[str, str, str, str]  # (Effect, Action, Resource, Condition as JSON)


def permissions(document: Obj) -> list[Permission]:
    """A policy document's effective permissions, in a canonical form that does not depend
    on how its statements are cut (Sids, grouping, order): one (Effect, Action, Resource,
    Condition) per action and resource, the condition's values as sorted lists; an Allow
    under a condition is left out where the same Allow holds without one (it grants
    nothing more). Sorted."""
    rows = set(_rows(document))
    plain = {row[:3] for row in rows if row[3] == "{}"}
    return sorted(row for row in rows if row[3] == "{}" or row[:3] not in plain)


def _rows(document: Obj) -> Iterator[Permission]:
    for statement in _listed(document.get("Statement")):
        condition = {
            operator: {key: sorted(_listed(value)) for key, value in keys.items()}
            for operator, keys in (statement.get("Condition") or {}).items()
        }
        shown = json.dumps(condition, sort_keys=True)
        for action in _listed(statement.get("Action")):
            for resource in _listed(statement.get("Resource", "*")):
                yield statement["Effect"], action, resource, shown


def _listed(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [] if value is None else [value]


def issuer_host(issuer: str) -> str:
    """An OIDC issuer as IAM names it: no scheme, no trailing slash."""
    return issuer.removeprefix("https://").rstrip("/")


def oidc_provider_arn(account: str, issuer: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:oidc-provider/{issuer_host(issuer)}"


def policy_arn(account: str, name: str, partition: str = "aws") -> str:
    return f"arn:{partition}:iam::{account}:policy/{name}"


def trust_policy(
    *,
    oidc_provider_arn: str,
    issuer: str,
    namespace: str = CONTROLLER_NAMESPACE,
    service_account: str = SERVICE_ACCOUNT,
) -> Obj:
    """IRSA trust: only that one ServiceAccount's tokens, minted for STS, may assume the role."""
    host = issuer_host(issuer)
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": f"system:serviceaccount:{namespace}:{service_account}",
                        f"{host}:aud": STS_AUDIENCE,
                    }
                },
            }
        ],
    }
