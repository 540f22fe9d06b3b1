"""Who owns a resource: the deployment and the state file that made it.

Everything a deployment creates carries two marks, as AWS tags or Kubernetes labels: the
deployment's id and the identity of the state file that made it. A resource is ours only
if both match: the same config run from a second state file (another directory, another
laptop) is the same deployment but not the same owner, and never claims, changes or
deletes what the first one made. A state file older than identities (`pre_identity`)
also owns what carries its deployment's tag and no identity at all.

What a rollback leaves because others still use it is released: it loses both marks (so
neither `import` nor the sweep counts it, and a later deployment finds it pre-existing:
used, never deleted) and gains a kept mark naming the deployment that left it and why.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OWNER_TAG = "orchestrator:deployment"
STATE_TAG = "orchestrator:state"
DEPLOYMENT_LABEL = "orchestrator.dev/deployment"
STATE_LABEL = "orchestrator.dev/state"
MANAGED_BY = {"app.kubernetes.io/managed-by": "orchestrator"}
# The mark on what a rollback left for others: a tag key per deployment that left it (a
# shared thing may be left by several), and an annotation on Kubernetes objects.
KEPT_TAG_PREFIX = "orchestrator:kept:"
KEPT_ANNOTATION_PREFIX = "orchestrator.dev/kept-"
# What IAM and ACM accept in a tag value (their API models' pattern, 256 characters);
# EC2 and Kubernetes accept more, so one kept mark fits everywhere.
_TAG_VALUE_REFUSED = re.compile(r"[^\w\s_.:/=+\-@]")
TAG_VALUE_LIMIT = 256

Tags = Mapping[str, str] | list[dict[str, str]]


def tag_map(tags: Tags | None) -> dict[str, str]:
    """AWS tags as a mapping, whichever form an API returned them in."""
    if tags is None:
        return {}
    if isinstance(tags, Mapping):
        return dict(tags)
    return {t["Key"]: t.get("Value", "") for t in tags}


@dataclass(frozen=True)
class Owner:
    deployment: str
    identity: str
    pre_identity: bool = False

    # ---- marks to write ---------------------------------------------------------------------

    @property
    def tags(self) -> list[dict[str, str]]:
        return [
            {"Key": OWNER_TAG, "Value": self.deployment},
            {"Key": STATE_TAG, "Value": self.identity},
        ]

    @property
    def labels(self) -> dict[str, str]:
        return {**MANAGED_BY, DEPLOYMENT_LABEL: self.deployment, STATE_LABEL: self.identity}

    # ---- marks to read ----------------------------------------------------------------------

    def owns_tags(self, tags: Tags | None) -> bool:
        found = tag_map(tags)
        return self._owns(found.get(OWNER_TAG), found.get(STATE_TAG))

    def owns_object(self, obj: Mapping[str, Any] | None) -> bool:
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        return self._owns(labels.get(DEPLOYMENT_LABEL), labels.get(STATE_LABEL))

    def other_owner_of_tags(self, tags: Tags | None) -> str | None:
        """The identity of another state file of this deployment that made it ("" if made
        before identities), or None if it is not this deployment's or is ours."""
        found = tag_map(tags)
        return self._other(found.get(OWNER_TAG), found.get(STATE_TAG))

    def other_owner_of_object(self, obj: Mapping[str, Any] | None) -> str | None:
        labels = ((obj or {}).get("metadata") or {}).get("labels") or {}
        return self._other(labels.get(DEPLOYMENT_LABEL), labels.get(STATE_LABEL))

    def owns_marks(self, deployment: str | None, identity: str | None) -> bool:
        """Whether a thing marked with this deployment and state file identity is ours (no
        identity: ours if this state file is from before identities)."""
        return self._owns(deployment, identity)

    def _owns(self, deployment: str | None, identity: str | None) -> bool:
        if deployment != self.deployment:
            return False
        return identity == self.identity or (identity is None and self.pre_identity)

    def _other(self, deployment: str | None, identity: str | None) -> str | None:
        if deployment != self.deployment or self._owns(deployment, identity):
            return None
        return identity or ""


def kept_tag_key(deployment: str) -> str:
    return KEPT_TAG_PREFIX + deployment


def released_metadata(deployment: str, mark: str) -> dict[str, dict[str, str | None]]:
    """The labels and annotations that release a Kubernetes object (None: removed)."""
    ours = (*MANAGED_BY, DEPLOYMENT_LABEL, STATE_LABEL)
    labels: dict[str, str | None] = dict.fromkeys(ours)
    return {"labels": labels, "annotations": {KEPT_ANNOTATION_PREFIX + deployment: mark}}


def kept_mark(reason: str) -> str:
    """Why it was kept, as a tag value AWS accepts: characters outside IAM's and ACM's tag
    pattern (commas, parentheses, quotes, ...) become spaces, and it is cut to 256."""
    plain = " ".join(_TAG_VALUE_REFUSED.sub(" ", reason).split())
    return plain[:TAG_VALUE_LIMIT].rstrip()


def released_by(tags: Tags | None, deployment: str) -> bool:
    """Whether a rollback of `deployment` left it for others (and nothing marks it ours)."""
    found = tag_map(tags)
    return kept_tag_key(deployment) in found and OWNER_TAG not in found


def describe_identity(identity: str) -> str:
    return f"state file {identity}" if identity else "a state file from before identities"


def not_ours(owner: Owner, kind: str, live: Mapping[str, Any]) -> str:
    """Why an object the state file lists is left: its labels name another owner."""
    other = owner.other_owner_of_object(live)
    whose = describe_identity(other) if other is not None else "someone else"
    return f"the {kind}'s labels say it belongs to {whose}, not this state file"
