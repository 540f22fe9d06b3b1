"""Who owns a resource: the deployment and the state file that made it.

Everything a deployment creates carries two marks, as AWS tags or Kubernetes labels: the
deployment's id and the identity of the state file that made it. A resource is ours only
if both match: the same config run from a second state file (another directory, another
laptop) is the same deployment but not the same owner, and never claims, changes or
deletes what the first one made. A state file older than identities (`pre_identity`)
also owns what carries its deployment's tag and no identity at all.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

OWNER_TAG = "orchestrator:deployment"
STATE_TAG = "orchestrator:state"
DEPLOYMENT_LABEL = "orchestrator.dev/deployment"
STATE_LABEL = "orchestrator.dev/state"
MANAGED_BY = {"app.kubernetes.io/managed-by": "orchestrator"}

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

    def _owns(self, deployment: str | None, identity: str | None) -> bool:
        if deployment != self.deployment:
            return False
        return identity == self.identity or (identity is None and self.pre_identity)

    def _other(self, deployment: str | None, identity: str | None) -> str | None:
        if deployment != self.deployment or self._owns(deployment, identity):
            return None
        return identity or ""


def describe_identity(identity: str) -> str:
    return f"state file {identity}" if identity else "a state file from before identities"
