"""A neighbour: another EKS cluster in the production cluster's VPC, with a controller of its own.

Many accounts run several clusters in one VPC, and every AWS Load Balancer Controller in it
discovers its load balancers' subnets among the same subnets: a tag one deployment adds or
removes changes what the others find. The neighbour's controller (v3, default feature
gates) resolves, on every pass, the subnets of an internet-facing ALB exactly as it would
for a new Ingress (subnets.discover: role-tagged subnets if any carries the role tag, else
by reachability; other clusters' subnets out; one locale). Each change of outcome goes to
the world's event log (events.py), instantaneous: `subnets.resolved` with the subnet ids,
or `subnets.unresolved` with the controller's message ("... unable to resolve at least one
subnet ..."), so that a test can check the neighbour never lost its subnets while a
deployment ran and rolled back. In process, `outcomes` keeps the same record.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from orchestrator_sandbox import events
from orchestrator_sandbox.albmodel import ModelError
from orchestrator_sandbox.reconciler import Reconciler
from orchestrator_sandbox.seed import EKS_SERVICE_TRUST, KUBERNETES_VERSION
from orchestrator_sandbox.subnets import discover

NEIGHBOUR = "kube-eks-neighbour"
SCHEME = "internet-facing"
RESOLVED = "subnets.resolved"
UNRESOLVED = "subnets.unresolved"


@dataclass(frozen=True)
class Outcome:
    """One resolution: the subnets chosen, or the controller's message."""

    subnet_ids: tuple[str, ...] = ()
    error: str | None = None

    @property
    def kind(self) -> str:
        return UNRESOLVED if self.error else RESOLVED


def seed_neighbour(eks: Any, iam: Any, subnet_ids: list[str]) -> dict[str, Any]:
    """The neighbour's EKS cluster, on some of the production VPC's subnets."""
    role_arn = iam.create_role(
        RoleName=f"{NEIGHBOUR}-cluster-role",
        AssumeRolePolicyDocument=json.dumps(EKS_SERVICE_TRUST),
    )["Role"]["Arn"]
    cluster = eks.create_cluster(
        name=NEIGHBOUR,
        version=KUBERNETES_VERSION,
        roleArn=role_arn,
        resourcesVpcConfig={"subnetIds": subnet_ids},
    )["cluster"]
    return {"cluster": NEIGHBOUR, "cluster_arn": cluster["arn"], "subnet_ids": subnet_ids}


class NeighbourController(Reconciler):
    """Resolves the neighbour's subnets every `interval` seconds (see the module doc)."""

    name = "neighbour controller"

    def __init__(
        self,
        ec2: Any,
        vpc_id: str,
        cluster: str = NEIGHBOUR,
        interval: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ec2 = ec2
        self.vpc_id = vpc_id
        self.cluster = cluster
        self.interval = interval
        self.clock = clock
        self.outcomes: list[Outcome] = []  # each change of outcome, oldest first
        self._lock = threading.Lock()

    def tick(self) -> None:
        with self._lock:
            outcome = self.resolve()
            if self.outcomes and self.outcomes[-1] == outcome:
                return
            self.outcomes.append(outcome)
            now = self.clock()
            fields: dict[str, Any] = {"cluster": self.cluster, "subnets": list(outcome.subnet_ids)}
            if outcome.error:
                fields["error"] = outcome.error
            events.record(outcome.kind, self.cluster, now, now, **fields)

    def resolve(self) -> Outcome:
        try:
            chosen = discover(self.ec2, self.vpc_id, self.cluster, SCHEME)
        except ModelError as failed:
            return Outcome(error=failed.message)
        return Outcome(subnet_ids=tuple(s["SubnetId"] for s in chosen))

    def failures(self) -> list[str]:
        return [o.error for o in self.outcomes if o.error]
