"""Elastic Load Balancing's physics where moto is lenient: provisioning, security groups
held by load balancers, the health of newly registered targets, and the tags of what is gone.

- A new load balancer stays `provisioning` until `finish_provisioning` is called for it (the
  world's load balancer controller simulator does, `alb_delay` after creating it, as AWS
  takes minutes). moto makes one `active` whenever it is described.
- DeleteLoadBalancer: ACM forgets the load balancer as a user of its certificates.
- DeleteSecurityGroup: EC2 refuses (DependencyViolation, "resource sg-... has a dependent
  object") while a load balancer uses the group, and for `sg_drain_seconds` after that
  load balancer was deleted, while its network interfaces drain; also while a network
  interface moto knows of carries the group. moto deletes such a group at once.
- DescribeTargetHealth: a registered target is `initial` (Elb.RegistrationInProgress) until
  the load balancer forwarding to its group is active and `target_health_seconds` have
  passed since then (or since the target was registered, if later); then `healthy`. A
  target of a group no load balancer forwards to is `unused` (Target.NotInUse). moto calls
  every registered target healthy at once. The first time a target is found healthy is a
  `targets.healthy` event of the world's event log (events.py), over its computed times.
- DescribeTags: the whole request fails (LoadBalancerNotFound, TargetGroupNotFound,
  ListenerNotFound, RuleNotFound) if any ARN in it names nothing, as when a load balancer
  or target group was deleted after it was listed (a controller tearing a stack down).
  moto answers every ARN, even one of a resource deleted (with the tags it had).

`make_elb_physical(...)` installs this into moto's backends, which serve both the world's
moto server and `mock_aws` in the same process; calling it again changes the settings.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from orchestrator_sandbox import events

SG_DRAIN_SECONDS = 90.0  # EC2 typically frees a deleted ALB's interfaces after a minute or two
TARGET_HEALTH_SECONDS = 30.0  # the controller's health checks: every 15 s, healthy after 2
# The kinds of ELBv2 resource whose DescribeTags fails when one is gone (moto knows them all).
TAGGED_KINDS = ("loadbalancer", "targetgroup", "listener", "listener-rule")


@dataclass
class _Physics:
    sg_drain_seconds: float = SG_DRAIN_SECONDS
    target_health_seconds: float = TARGET_HEALTH_SECONDS
    clock: Callable[[], float] = time.monotonic
    # security group id -> when the interfaces of the deleted load balancer that used it go
    draining: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # False: the patches act as moto's own methods (see make_elb_lenient).
    enforced: bool = True


_physics = _Physics()


def make_elb_physical(
    sg_drain_seconds: float = SG_DRAIN_SECONDS,
    target_health_seconds: float = TARGET_HEALTH_SECONDS,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Install the rules above into moto (once) and set how long things take."""
    global _physics
    _physics = _Physics(sg_drain_seconds, target_health_seconds, clock)
    _patch_security_groups()
    _patch_target_health()
    _patch_describe_tags()


def make_elb_lenient() -> None:
    """moto's own behaviour again, for whatever runs next in this process (in-process tests
    share moto's classes): the patches stay installed but step aside."""
    global _physics
    _physics = _Physics(enforced=False)


# ---- security groups ---------------------------------------------------------------------------


def _patch_security_groups() -> None:
    from moto.ec2.exceptions import DependencyViolationError
    from moto.ec2.models.security_groups import SecurityGroupBackend
    from moto.elbv2.models import ELBv2Backend

    delete_group = SecurityGroupBackend.delete_security_group
    if getattr(delete_group, "sandbox_patched", False):
        return
    delete_balancer = ELBv2Backend.delete_load_balancer

    def delete_security_group(
        self: Any, name: str | None = None, group_id: str | None = None
    ) -> None:
        group = self.get_security_group_by_name_or_id(group_id or name)
        if _physics.enforced and group is not None and _has_dependents(self, group.id):
            raise DependencyViolationError(f"resource {group.id} has a dependent object")
        return delete_group(self, name, group_id)

    def delete_load_balancer(self: Any, arn: str) -> None:
        balancer = self.load_balancers.get(arn)
        if balancer is not None and _physics.enforced:
            physics = _physics
            with physics.lock:
                until = physics.clock() + physics.sg_drain_seconds
                for group_id in balancer.security_groups or []:
                    physics.draining[group_id] = max(until, physics.draining.get(group_id, until))
        delete_balancer(self, arn)
        # ACM stops naming a deleted load balancer among a certificate's users, whoever
        # deleted it (moto only ever adds to InUseBy).
        from orchestrator_sandbox.albprovision import mark_in_use

        mark_in_use(self.account_id, self.region_name, arn, ())

    delete_security_group.sandbox_patched = True  # type: ignore[attr-defined]
    SecurityGroupBackend.delete_security_group = delete_security_group
    ELBv2Backend.delete_load_balancer = delete_load_balancer


def _has_dependents(ec2_backend: Any, group_id: str) -> bool:
    """Whether a load balancer, a draining load balancer's interface or another network
    interface still holds the group."""
    from moto.elbv2.models import elbv2_backends

    balancers = elbv2_backends[ec2_backend.account_id][ec2_backend.region_name].load_balancers
    # Copies: moto's server threads may change these while this one reads them.
    if any(group_id in (b.security_groups or []) for b in list(balancers.values())):
        return True
    physics = _physics
    with physics.lock:
        if physics.draining.get(group_id, float("-inf")) > physics.clock():
            return True
    interfaces = ec2_backend.get_all_network_interfaces()
    return any(group_id in {g.id for g in eni.group_set} for eni in interfaces)


# ---- tags ------------------------------------------------------------------------------------


def _patch_describe_tags() -> None:
    from moto.elbv2.models import ELBv2Backend

    describe_tags = ELBv2Backend.describe_tags
    if getattr(describe_tags, "sandbox_patched", False):
        return

    def strict_describe_tags(self: Any, resource_arns: list[str]) -> dict[str, dict[str, str]]:
        if _physics.enforced:
            for arn in resource_arns:
                if any(f":{kind}/" in arn for kind in TAGGED_KINDS):
                    self._get_resource_by_arn(arn)  # raises the NotFound of the ARN's kind
        return describe_tags(self, resource_arns)

    strict_describe_tags.sandbox_patched = True  # type: ignore[attr-defined]
    ELBv2Backend.describe_tags = strict_describe_tags


# ---- target health -----------------------------------------------------------------------------


def _patch_target_health() -> None:
    from moto.elbv2.models import FakeLoadBalancer, FakeTargetGroup

    health_for = FakeTargetGroup.health_for
    if getattr(health_for, "sandbox_patched", False):
        return
    register = FakeTargetGroup.register
    activate = FakeLoadBalancer.activate

    def register_targets(self: Any, targets: list[dict[str, Any]]) -> None:
        new = [t["Id"] for t in targets if t["Id"] not in self.targets]
        register(self, targets)
        registered = self.__dict__.setdefault("sandbox_registered_at", {})
        for target_id in new:  # registered again after a deregistration: initial again
            registered[target_id] = _physics.clock()

    def hold_provisioning(self: Any) -> None:
        """moto calls this whenever a load balancer is described: it stays as it is."""
        if not _physics.enforced:
            activate(self)

    def target_health(self: Any, target: dict[str, Any], ec2_backend: Any) -> Any:
        status = health_for(self, target, ec2_backend)
        if status.status != "healthy" or not _physics.enforced:
            return status  # not registered, or a stopped instance: moto's answer stands
        return _settling(self, status) or status

    target_health.sandbox_patched = True  # type: ignore[attr-defined]
    FakeTargetGroup.health_for = target_health
    FakeTargetGroup.register = register_targets
    FakeLoadBalancer.activate = hold_provisioning


def finish_provisioning(balancer: Any) -> bool:
    """Make a `provisioning` moto load balancer `active`, as AWS does when it has made it;
    whether it was provisioning."""
    if balancer.state != "provisioning":
        return False
    balancer.state = "active"
    balancer.sandbox_active_since = _physics.clock()
    return True


def _settling(group: Any, status: Any) -> Any | None:
    """The state of a registered target that is not healthy yet; None once it is."""
    from moto.elbv2.models import FakeHealthStatus

    balancers = _balancers_forwarding_to(group)
    if not balancers:
        return FakeHealthStatus(
            status.instance_id,
            status.port,
            status.health_check_port,
            "unused",
            "Target.NotInUse",
            "Target group is not configured to receive traffic from the load balancer",
        )
    active = [
        (b.__dict__.get("sandbox_active_since", float("-inf")), b.arn)
        for b in balancers
        if b.state == "active"
    ]
    registered = group.__dict__.get("sandbox_registered_at", {}).get(status.instance_id)
    physics = _physics
    if active:
        active_since, balancer_arn = min(active)
        start = max(active_since, registered if registered is not None else float("-inf"))
        if physics.clock() - start >= physics.target_health_seconds:
            _note_healthy(group, status.instance_id, start, balancer_arn)
            return None
    return FakeHealthStatus(
        status.instance_id,
        status.port,
        status.health_check_port,
        "initial",
        "Elb.RegistrationInProgress",
        "Target registration is in progress",
    )


def _note_healthy(group: Any, target_id: str, start: float, balancer_arn: str) -> None:
    """Record the target's `targets.healthy` event, the first time it is found healthy."""
    if not math.isfinite(start):
        return  # made active by hand (a test), not by provisioning: no wait to record
    noted: set[tuple[str, float]] = group.__dict__.setdefault("sandbox_healthy_noted", set())
    with _physics.lock:
        if (target_id, start) in noted:
            return
        noted.add((target_id, start))
    ended = start + _physics.target_health_seconds
    after = [events.event_id("alb.active", balancer_arn)]
    events.record("targets.healthy", f"{group.arn}/{target_id}", start, ended, after)


def _balancers_forwarding_to(group: Any) -> list[Any]:
    """The load balancers with a listener whose actions forward to the target group."""
    from moto.elbv2.models import elbv2_backends

    backend = elbv2_backends[group.account_id][group.region_name]
    found = []
    for balancer in list(backend.load_balancers.values()):
        actions = [
            action
            for listener in list(balancer.listeners.values())
            for rule in listener.rules.values()
            for action in rule.actions
        ]
        if any(
            group.arn in backend._get_target_group_arns_from(action_data=a.data) for a in actions
        ):
            found.append(balancer)
    return found
