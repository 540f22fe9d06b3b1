"""What the AWS Load Balancer Controller makes for an Ingress, and how it deploys and deletes
it: its stack deployer, through the EC2 and ELBv2 APIs and the Kubernetes store.

Deploying a stack runs the controller's synthesizers in its order: security groups (the
stack's managed frontend group, `k8s-<ns>-<name>-<hash>`, with the listen ports open; and
the cluster's shared backend group, `k8s-traffic-<cluster>-<hash>`; both go on the ALB),
the target group, the load balancer, its listeners, the TargetGroupBinding; then, in
reverse, it deletes what the stack no longer has: bindings, target groups, security groups.
Everything is found by its tags (`elbv2.k8s.aws/cluster`, `ingress.k8s.aws/stack`,
`ingress.k8s.aws/resource`) and bindings by their labels, as the controller finds them, so
whatever an interrupted deploy or teardown left is picked up by the next.

Tearing a stack down is deploying nothing: the load balancer (its listeners go with it),
the bindings (each deleted, its targets deregistered and its finalizer removed), the target
groups, then the security groups, which EC2 refuses to delete while the load balancer's
network interfaces drain (elbphysics): the error is raised, and the caller retries.

CreateLoadBalancer returns at once with the load balancer `provisioning`, as on AWS; the
provisioner notes when it made each (`provisioning`), and the caller finishes provisioning
(`activate`, through moto's backend) once AWS would have. Also done through moto's
backends: ACM's InUseBy naming the load balancer that uses a certificate.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from kube_api_emulator import ObjectStore
from orchestrator_sandbox.albmodel import (
    IngressModel,
    ModelError,
    ServiceTarget,
    backend_group_name,
)
from orchestrator_sandbox.targets import (
    BINDING,
    TargetBinder,
    binding_manifest,
    not_served,
    served,
    stack_selector,
)

Obj = dict[str, Any]

CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"
RESOURCE_TAG = "ingress.k8s.aws/resource"
BACKEND_RESOURCE_TAG = "elbv2.k8s.aws/resource"
FRONTEND_GROUP = "ManagedLBSecurityGroup"
FRONTEND_DESCRIPTION = "[k8s] Managed SecurityGroup for LoadBalancer"
BACKEND_GROUP = "backend-sg"
BACKEND_DESCRIPTION = "[k8s] Shared Backend SecurityGroup for LoadBalancer"
ANYWHERE = "0.0.0.0/0"
FIELD_MANAGER = "controller"
TAGS_PER_CALL = 20  # DescribeTags takes at most 20 ARNs
# The controller's target group health check, where the Ingress does not say otherwise.
HEALTH_CHECK = {
    "HealthCheckProtocol": "HTTP",
    "HealthCheckIntervalSeconds": 15,
    "HealthCheckTimeoutSeconds": 5,
    "HealthyThresholdCount": 2,
    "UnhealthyThresholdCount": 2,
    "Matcher": {"HttpCode": "200"},
}


@dataclass(frozen=True)
class Plan:
    """What the precondition checks found that deploying needs."""

    vpc_id: str
    subnets: tuple[str, ...]
    target: ServiceTarget | None  # the primary backend; None without a backend


@dataclass(frozen=True)
class Deployed:
    """The load balancer a deploy left the stack with."""

    balancer_arn: str
    dns_name: str


@dataclass(frozen=True)
class Provisioning:
    """A load balancer this provisioner made that is not active yet."""

    created: float  # on the provisioner's clock
    certificates: tuple[str, ...]  # its listeners' at creation


class AlbProvisioner:
    def __init__(
        self,
        ec2: Any,
        elbv2: Any,
        store: ObjectStore,
        binder: TargetBinder,
        cluster: str,
        region: str,
        account: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ec2 = ec2
        self.elbv2 = elbv2
        self.store = store
        self.binder = binder
        self.cluster = cluster
        self.region = region
        self.account = account
        self.clock = clock
        self.provisioning: dict[str, Provisioning] = {}  # by load balancer ARN

    # ---- deploy -------------------------------------------------------------------------------

    def deploy(self, model: IngressModel, plan: Plan) -> Deployed:
        """Make AWS and the bindings match the stack (see module doc); ModelError if not."""
        try:
            frontend = self._ensure_frontend_group(model, plan.vpc_id)
            backend = self._ensure_backend_group(plan.vpc_id)
            group_arn = None
            if plan.target is not None:
                group_arn = self._ensure_target_group(model, plan.target, plan.vpc_id)
            balancer = self._ensure_balancer(model, plan, [frontend, backend])
            arn = balancer["LoadBalancerArn"]
            self._ensure_listeners(arn, model, group_arn)
            mark_in_use(self.account, self.region, arn, model.https_certificates)
            self._ensure_binding(model, plan, group_arn)
            # What the stack no longer has goes, in the reverse order.
            self._delete_bindings(model.namespace, model.name, keep=group_arn)
            self._delete_target_groups(model.stack, keep=group_arn)
            self._delete_frontend_groups(model.stack, keep=frontend)
        except ClientError as exc:
            raise deploy_error(exc) from None
        return Deployed(arn, balancer["DNSName"])

    def _ensure_frontend_group(self, model: IngressModel, vpc_id: str) -> str:
        tags = self._tags(model, FRONTEND_GROUP)
        found = self._frontend_groups(model.stack, vpc_id)
        if found:
            group = found[0]
            self._retag_group(group, tags)
        else:
            group = self.ec2.create_security_group(
                GroupName=model.security_group_name(self.cluster),
                Description=FRONTEND_DESCRIPTION,
                VpcId=vpc_id,
                TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
            )
            group = {"GroupId": group["GroupId"], "IpPermissions": []}
        self._open_ports(group, {port for _, port in model.listen_ports})
        return group["GroupId"]

    def _open_ports(self, group: Obj, ports: set[int]) -> None:
        """Exactly the listen ports open to anywhere, over TCP."""
        open_ports = set()
        for permission in group.get("IpPermissions", []):
            cidrs = {r.get("CidrIp") for r in permission.get("IpRanges", [])}
            if permission.get("IpProtocol") == "tcp" and ANYWHERE in cidrs:
                open_ports.add(permission.get("FromPort"))
        for port in sorted(ports - open_ports):
            self.ec2.authorize_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=[_permission(port)]
            )
        for port in sorted(open_ports - ports):
            self.ec2.revoke_security_group_ingress(
                GroupId=group["GroupId"], IpPermissions=[_permission(port)]
            )

    def _ensure_backend_group(self, vpc_id: str) -> str:
        """The cluster's shared backend security group, made by the first stack that needs it."""
        found = self._backend_groups(vpc_id)
        if found:
            return found[0]["GroupId"]
        tags = {CLUSTER_TAG: self.cluster, BACKEND_RESOURCE_TAG: BACKEND_GROUP}
        return self.ec2.create_security_group(
            GroupName=backend_group_name(self.cluster),
            Description=BACKEND_DESCRIPTION,
            VpcId=vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": _tag_list(tags)}],
        )["GroupId"]

    def _ensure_target_group(self, model: IngressModel, target: ServiceTarget, vpc_id: str) -> str:
        name = target.group_name(self.cluster, model)
        tags = self._tags(model, target.resource_id(model))
        health = {
            "HealthCheckPath": model.healthcheck_path or "/",
            "HealthCheckPort": model.healthcheck_port or "traffic-port",
        }
        for group, group_tags in self._target_groups(model.stack):
            # A changed port or target type changes the name: then a new group replaces it.
            if (
                group["TargetGroupName"] == name
                and group_tags.get(RESOURCE_TAG) == tags[RESOURCE_TAG]
            ):
                arn = group["TargetGroupArn"]
                if any(group.get(k) != v for k, v in health.items()):
                    self.elbv2.modify_target_group(TargetGroupArn=arn, **health)
                self._retag(arn, group_tags, tags)
                return arn
        return self.elbv2.create_target_group(
            Name=name,
            Protocol="HTTP",
            ProtocolVersion="HTTP1",
            Port=target.group_port(model.target_type),
            VpcId=vpc_id,
            TargetType=model.target_type,
            Tags=_tag_list(tags),
            **HEALTH_CHECK,
            **health,
        )["TargetGroups"][0]["TargetGroupArn"]

    def _ensure_balancer(self, model: IngressModel, plan: Plan, groups: list[str]) -> Obj:
        name = model.balancer_name(self.cluster)
        tags = self._tags(model, "LoadBalancer")
        kept = None
        for balancer in self.balancers(model.stack):
            if balancer["LoadBalancerName"] == name and kept is None:
                kept = balancer
            else:
                # Its scheme changed (the name follows it), and a scheme cannot change.
                self._delete_balancer(balancer["LoadBalancerArn"])
        if kept is None:
            kept = self.elbv2.create_load_balancer(
                Name=name,
                Subnets=list(plan.subnets),
                SecurityGroups=groups,
                Scheme=model.scheme,
                Type="application",
                IpAddressType="ipv4",
                Tags=_tag_list(tags),
            )["LoadBalancers"][0]
            created = Provisioning(self.clock(), model.https_certificates)
            self.provisioning[kept["LoadBalancerArn"]] = created
        else:
            self._update_balancer(kept, plan, groups, tags)
        self._apply_attributes(kept["LoadBalancerArn"], dict(model.attributes))
        return kept

    def _update_balancer(self, balancer: Obj, plan: Plan, groups: list[str], tags: Obj) -> None:
        arn = balancer["LoadBalancerArn"]
        subnets = {zone["SubnetId"] for zone in balancer.get("AvailabilityZones", [])}
        if subnets != set(plan.subnets):
            self.elbv2.set_subnets(LoadBalancerArn=arn, Subnets=list(plan.subnets))
        if set(balancer.get("SecurityGroups", [])) != set(groups):
            self.elbv2.set_security_groups(LoadBalancerArn=arn, SecurityGroups=groups)
        self._retag(arn, self._elbv2_tags([arn]).get(arn, {}), tags)

    def _apply_attributes(self, arn: str, wanted: dict[str, str]) -> None:
        described = self.elbv2.describe_load_balancer_attributes(LoadBalancerArn=arn)
        live = {a["Key"]: a["Value"] for a in described["Attributes"]}
        changed = [{"Key": k, "Value": v} for k, v in wanted.items() if live.get(k) != v]
        if changed:
            self.elbv2.modify_load_balancer_attributes(LoadBalancerArn=arn, Attributes=changed)

    def _ensure_listeners(self, balancer_arn: str, model: IngressModel, group: str | None) -> None:
        """One listener per listen port, as the model says; no others."""
        listed = self.elbv2.describe_listeners(LoadBalancerArn=balancer_arn)["Listeners"]
        existing = {listener["Port"]: listener for listener in listed}
        for protocol, port in model.listen_ports:
            wanted = _listener_settings(model, protocol, group)
            listener = existing.pop(port, None)
            if listener is None:
                listener = self.elbv2.create_listener(
                    LoadBalancerArn=balancer_arn, Port=port, **wanted
                )["Listeners"][0]
            elif _listener_differs(listener, wanted):
                self.elbv2.modify_listener(ListenerArn=listener["ListenerArn"], Port=port, **wanted)
            if protocol == "HTTPS":
                self._sync_sni_certificates(listener["ListenerArn"], model.certificates[1:])
        for listener in existing.values():
            self.elbv2.delete_listener(ListenerArn=listener["ListenerArn"])

    def _sync_sni_certificates(self, listener_arn: str, wanted: tuple[str, ...]) -> None:
        # A listener has one default certificate; the others are served by SNI.
        described = self.elbv2.describe_listener_certificates(ListenerArn=listener_arn)
        live = [c["CertificateArn"] for c in described["Certificates"] if not c.get("IsDefault")]
        extra = [arn for arn in live if arn not in wanted]
        missing = [arn for arn in wanted if arn not in live]
        if extra:
            self.elbv2.remove_listener_certificates(
                ListenerArn=listener_arn, Certificates=[{"CertificateArn": a} for a in extra]
            )
        if missing:
            self.elbv2.add_listener_certificates(
                ListenerArn=listener_arn, Certificates=[{"CertificateArn": a} for a in missing]
            )

    def _ensure_binding(self, model: IngressModel, plan: Plan, group_arn: str | None) -> None:
        existing = self.bindings(model.namespace, model.name)
        if group_arn is None or plan.target is None:
            return
        target = plan.target
        wanted = binding_manifest(
            target.group_name(self.cluster, model),
            (model.namespace, model.name),
            group_arn,
            model.target_type,
            target.service,
            target.port,
            plan.vpc_id,
        )
        for binding in existing:
            if (binding.get("spec") or {}).get("targetGroupARN") == group_arn:
                if _binding_differs(binding, wanted):
                    self.store.apply(wanted, FIELD_MANAGER, force=True)
                return
        self.store.create(wanted)

    # ---- tear down ------------------------------------------------------------------------------

    def tear_down(self, namespace: str, name: str) -> None:
        """Delete the stack of the Ingress `namespace/name` (see module doc); ModelError if
        something cannot go yet."""
        stack = f"{namespace}/{name}"
        try:
            for balancer in self.balancers(stack):
                self._delete_balancer(balancer["LoadBalancerArn"])
            self._delete_bindings(namespace, name, keep=None)
            self._delete_target_groups(stack, keep=None)
            self._delete_frontend_groups(stack, keep=None)
        except ClientError as exc:
            raise deploy_error(exc) from None

    def release_backend_group(self) -> None:
        """Delete the cluster's backend security group (when no Ingress needs it any more)."""
        try:
            for group in self._backend_groups(None):
                self._delete_group(group["GroupId"])
        except ClientError as exc:
            raise deploy_error(exc) from None

    def _delete_balancer(self, arn: str) -> None:
        _gone_ok(self.elbv2.delete_load_balancer, LoadBalancerArn=arn)
        self.provisioning.pop(arn, None)
        mark_in_use(self.account, self.region, arn, ())

    def _delete_bindings(self, namespace: str, name: str, keep: str | None) -> None:
        """Delete the stack's other bindings, and wait until each is gone: its reconciler
        deregisters its targets and removes its finalizer."""
        for binding in self.bindings(namespace, name):
            if (binding.get("spec") or {}).get("targetGroupARN") == keep:
                continue
            meta = binding["metadata"]
            where = (meta["name"], meta.get("namespace"))
            self.store.delete(*BINDING, *where)
            deleting = self.store.get(*BINDING, *where)
            if deleting is not None:
                self.binder.clean_up(deleting)
            if self.store.get(*BINDING, *where) is not None:
                raise ModelError(
                    "deploy",
                    "failed to wait targetGroupBinding deletion: timed out waiting for the "
                    "condition",
                )

    def _delete_target_groups(self, stack: str, keep: str | None) -> None:
        for group, _ in self._target_groups(stack):
            if group["TargetGroupArn"] != keep:
                _gone_ok(self.elbv2.delete_target_group, TargetGroupArn=group["TargetGroupArn"])

    def _delete_frontend_groups(self, stack: str, keep: str | None) -> None:
        for group in self._frontend_groups(stack, None):
            if group["GroupId"] != keep:
                self._delete_group(group["GroupId"])

    def _delete_group(self, group_id: str) -> None:
        try:
            _gone_ok(self.ec2.delete_security_group, GroupId=group_id)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            raise ModelError(
                "deploy",
                f"failed to delete securityGroup: {error.get('Code')}: {error.get('Message')}",
            ) from None

    # ---- reading the stack back -------------------------------------------------------------

    def balancers(self, stack: str) -> list[Obj]:
        """The stack's load balancers, found by their tags."""
        paginator = self.elbv2.get_paginator("describe_load_balancers")
        found = [b for page in paginator.paginate() for b in page["LoadBalancers"]]
        tags = self._elbv2_tags([b["LoadBalancerArn"] for b in found])
        return [b for b in found if self._in_stack(tags.get(b["LoadBalancerArn"], {}), stack)]

    def bindings(self, namespace: str, name: str) -> list[Obj]:
        """The stack's TargetGroupBindings, by their labels; ModelError if the kind is not
        served (the controller's client cannot even list them then)."""
        if not served(self.store, *BINDING):
            raise ModelError("deploy", not_served(*BINDING))
        return self.store.list(*BINDING, label_selector=stack_selector(namespace, name))

    def _target_groups(self, stack: str) -> list[tuple[Obj, dict[str, str]]]:
        paginator = self.elbv2.get_paginator("describe_target_groups")
        found = [g for page in paginator.paginate() for g in page["TargetGroups"]]
        tags = self._elbv2_tags([g["TargetGroupArn"] for g in found])
        return [
            (g, tags.get(g["TargetGroupArn"], {}))
            for g in found
            if self._in_stack(tags.get(g["TargetGroupArn"], {}), stack)
        ]

    def _frontend_groups(self, stack: str, vpc_id: str | None) -> list[Obj]:
        return self._groups(
            vpc_id, {CLUSTER_TAG: self.cluster, STACK_TAG: stack, RESOURCE_TAG: FRONTEND_GROUP}
        )

    def _backend_groups(self, vpc_id: str | None) -> list[Obj]:
        return self._groups(
            vpc_id, {CLUSTER_TAG: self.cluster, BACKEND_RESOURCE_TAG: BACKEND_GROUP}
        )

    def _groups(self, vpc_id: str | None, tags: dict[str, str]) -> list[Obj]:
        filters = [{"Name": f"tag:{k}", "Values": [v]} for k, v in tags.items()]
        if vpc_id:
            filters.append({"Name": "vpc-id", "Values": [vpc_id]})
        return self.ec2.describe_security_groups(Filters=filters)["SecurityGroups"]

    def _elbv2_tags(self, arns: list[str]) -> dict[str, dict[str, str]]:
        tags = {}
        for start in range(0, len(arns), TAGS_PER_CALL):
            chunk = arns[start : start + TAGS_PER_CALL]
            for described in self.elbv2.describe_tags(ResourceArns=chunk)["TagDescriptions"]:
                tags[described["ResourceArn"]] = _tag_dict(described.get("Tags", []))
        return tags

    def _in_stack(self, tags: dict[str, str], stack: str) -> bool:
        return tags.get(CLUSTER_TAG) == self.cluster and tags.get(STACK_TAG) == stack

    # ---- tags -----------------------------------------------------------------------------------

    def _tags(self, model: IngressModel, resource: str) -> dict[str, str]:
        tags = {CLUSTER_TAG: self.cluster, STACK_TAG: model.stack, RESOURCE_TAG: resource}
        tags.update(model.tags)
        return tags

    def _retag(self, arn: str, live: dict[str, str], wanted: dict[str, str]) -> None:
        changed = {k: v for k, v in wanted.items() if live.get(k) != v}
        stale = [k for k in live if k not in wanted and not k.startswith("aws:")]
        if changed:
            self.elbv2.add_tags(ResourceArns=[arn], Tags=_tag_list(changed))
        if stale:
            self.elbv2.remove_tags(ResourceArns=[arn], TagKeys=stale)

    def _retag_group(self, group: Obj, wanted: dict[str, str]) -> None:
        live = _tag_dict(group.get("Tags", []))
        changed = {k: v for k, v in wanted.items() if live.get(k) != v}
        stale = [k for k in live if k not in wanted and not k.startswith("aws:")]
        if changed:
            self.ec2.create_tags(Resources=[group["GroupId"]], Tags=_tag_list(changed))
        if stale:
            self.ec2.delete_tags(Resources=[group["GroupId"]], Tags=[{"Key": k} for k in stale])

    # ---- moto ---------------------------------------------------------------------------------

    def activate(self, balancer_arn: str) -> bool:
        """Finish provisioning (elbphysics keeps a new ALB `provisioning` until then); whether
        the load balancer was provisioning."""
        from moto.elbv2.models import elbv2_backends

        from orchestrator_sandbox.elbphysics import finish_provisioning

        self.provisioning.pop(balancer_arn, None)
        balancer = elbv2_backends[self.account][self.region].load_balancers.get(balancer_arn)
        return balancer is not None and finish_provisioning(balancer)


# ---- helpers -----------------------------------------------------------------------------------


def mark_in_use(
    account: str, region: str, balancer_arn: str, certificates: tuple[str, ...]
) -> None:
    """Make ACM's InUseBy name the ALB on exactly `certificates`.

    moto records the listener's ARN when a listener is created, and nothing on changes or
    deletions; ACM names the load balancer, and forgets it when it stops using the cert."""
    from moto.acm.models import acm_backends

    backend = acm_backends[account][region]
    listener_prefix = balancer_arn.replace(":loadbalancer/", ":listener/") + "/"
    for bundle in list(backend._certificates.values()):
        users = [
            user
            for user in bundle.in_use_by
            if user != balancer_arn and not user.startswith(listener_prefix)
        ]
        if bundle.arn in certificates:
            users.append(balancer_arn)
        bundle.in_use_by[:] = users


def deploy_error(exc: ClientError) -> ModelError:
    error = exc.response.get("Error", {})
    return ModelError("deploy", f"{error.get('Code', 'Error')}: {error.get('Message', exc)}")


def _listener_settings(model: IngressModel, protocol: str, group: str | None) -> Obj:
    actions = [{"Type": "forward", "TargetGroupArn": group}] if group else [_fixed_response(404)]
    if protocol == "HTTP" and model.ssl_redirect is not None:
        actions = [_redirect_to_https(model.ssl_redirect)]
    settings: Obj = {"Protocol": protocol, "DefaultActions": actions}
    if protocol == "HTTPS":
        settings["Certificates"] = [{"CertificateArn": model.certificates[0]}]
        settings["SslPolicy"] = model.ssl_policy
    return settings


def _listener_differs(live: Obj, wanted: Obj) -> bool:
    def summary(listener: Obj) -> tuple[Any, ...]:
        certificates = [c["CertificateArn"] for c in listener.get("Certificates", [])]
        actions = [_action_key(a) for a in listener.get("DefaultActions", [])]
        return listener["Protocol"], actions, certificates[:1], listener.get("SslPolicy")

    return summary(live) != summary(wanted)


def _action_key(action: Obj) -> tuple[Any, ...]:
    redirect = action.get("RedirectConfig") or {}
    fixed = action.get("FixedResponseConfig") or {}
    return (
        action.get("Type"),
        action.get("TargetGroupArn"),
        redirect.get("Protocol"),
        str(redirect.get("Port", "")),
        redirect.get("StatusCode"),
        fixed.get("StatusCode"),
    )


def _binding_differs(live: Obj, wanted: Obj) -> bool:
    labels = (live.get("metadata") or {}).get("labels") or {}
    mine = {k: labels.get(k) for k in wanted["metadata"]["labels"]}
    return live.get("spec") != wanted["spec"] or mine != wanted["metadata"]["labels"]


def _permission(port: int) -> Obj:
    return {
        "IpProtocol": "tcp",
        "FromPort": port,
        "ToPort": port,
        "IpRanges": [{"CidrIp": ANYWHERE}],
    }


def _tag_list(tags: dict[str, str]) -> list[Obj]:
    return [{"Key": k, "Value": v} for k, v in tags.items()]


def _tag_dict(tags: list[Obj]) -> dict[str, str]:
    return {t["Key"]: t.get("Value", "") for t in tags}


_NOT_FOUND = {
    "LoadBalancerNotFound",
    "ListenerNotFound",
    "TargetGroupNotFound",
    "InvalidGroup.NotFound",
    "InvalidGroupId.NotFound",
}


def _gone_ok(call: Any, **kwargs: Any) -> None:
    try:
        call(**kwargs)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _NOT_FOUND:
            raise


def _fixed_response(code: int) -> Obj:
    return {
        "Type": "fixed-response",
        "FixedResponseConfig": {"StatusCode": str(code), "ContentType": "text/plain"},
    }


def _redirect_to_https(port: int) -> Obj:
    return {
        "Type": "redirect",
        "RedirectConfig": {"Protocol": "HTTPS", "Port": str(port), "StatusCode": "HTTP_301"},
    }
