"""Status conditions written by the control plane's controllers, in their real wording.

A CustomResourceDefinition's names are accepted at once (NamesAccepted) and it is
Installing until the establishing controller sets Established; once deleted, the CRD
finalizer reports its progress as Terminating. A Namespace being deleted carries the
namespace controller's five deletion conditions, naming the content and the finalizers
that remain.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

Condition = dict[str, str]

NAMES_ACCEPTED = ("NamesAccepted", "True", "NoConflicts", "no conflicts found")
INSTALLING = ("Established", "False", "Installing", "the initial names have been accepted")
ESTABLISHED = (
    "Established",
    "True",
    "InitialNamesAccepted",
    "the initial names have been accepted",
)
DELETION_PENDING = (
    "Terminating",
    "True",
    "InstanceDeletionPending",
    "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
)
DELETION_IN_PROGRESS = (
    "Terminating",
    "True",
    "InstanceDeletionInProgress",
    "CustomResource deletion is in progress",
)
DELETION_COMPLETED = ("Terminating", "False", "InstanceDeletionCompleted", "removed all instances")
NEVER_ESTABLISHED = ("Terminating", "False", "NeverEstablished", "resource was never established")


def condition(spec: tuple[str, str, str, str], now: str) -> Condition:
    type_, status, reason, message = spec
    return {
        "type": type_,
        "status": status,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_condition(conditions: list[Condition], new: Condition) -> list[Condition]:
    """Conditions with `new` in place of its type; the transition time moves only when the
    status does (as apiextensions' SetCRDCondition and the namespace controller do)."""
    result = copy.deepcopy(conditions)
    for existing in result:
        if existing.get("type") == new["type"]:
            if existing.get("status") != new["status"] or not existing.get("lastTransitionTime"):
                existing["lastTransitionTime"] = new["lastTransitionTime"]
            existing.update(status=new["status"], reason=new["reason"], message=new["message"])
            return result
    return [*result, dict(new)]


def is_true(obj: Mapping[str, Any] | None, type_: str) -> bool:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return any(c.get("type") == type_ and c.get("status") == "True" for c in conditions)


def namespace_deletion(
    old: list[Condition],
    remaining: Mapping[str, int],
    finalizers: Mapping[str, int],
    now: str,
) -> list[Condition]:
    """The namespace controller's conditions once it has deleted what it could.

    `remaining`: objects left per resource (`ingresses.networking.k8s.io`); `finalizers`:
    objects still held per finalizer.
    """
    specs = [
        (
            "NamespaceDeletionDiscoveryFailure",
            "False",
            "ResourcesDiscovered",
            "All resources successfully discovered",
        ),
        (
            "NamespaceDeletionGroupVersionParsingFailure",
            "False",
            "ParsedGroupVersions",
            "All legacy kube types successfully parsed",
        ),
        (
            "NamespaceDeletionContentFailure",
            "False",
            "ContentDeleted",
            "All content successfully deleted, may be waiting on finalization",
        ),
        _content_remaining(remaining),
        _finalizers_remaining(finalizers),
    ]
    result = old
    for spec in specs:
        result = set_condition(result, condition(spec, now))
    return result


def _content_remaining(remaining: Mapping[str, int]) -> tuple[str, str, str, str]:
    if not remaining:
        return (
            "NamespaceContentRemaining",
            "False",
            "ContentRemoved",
            "All content successfully removed",
        )
    listed = ", ".join(f"{r} has {n} resource instances" for r, n in sorted(remaining.items()))
    return (
        "NamespaceContentRemaining",
        "True",
        "SomeResourcesRemain",
        f"Some resources are remaining: {listed}",
    )


def _finalizers_remaining(finalizers: Mapping[str, int]) -> tuple[str, str, str, str]:
    if not finalizers:
        return (
            "NamespaceFinalizersRemaining",
            "False",
            "ContentHasNoFinalizers",
            "All content-preserving finalizers finished",
        )
    listed = ", ".join(f"{f} in {n} resource instances" for f, n in sorted(finalizers.items()))
    return (
        "NamespaceFinalizersRemaining",
        "True",
        "SomeFinalizersRemain",
        f"Some content in the namespace has finalizers remaining: {listed}",
    )
