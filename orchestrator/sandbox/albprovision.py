"""What the AWS Load Balancer Controller makes for an Ingress, through the ELBv2 and EC2 APIs.

A security group, an application load balancer, a target group for the backend and one
listener per listen port, tagged as the real controller tags them. Two things moto does
not do by itself are done through its backends: finishing provisioning (`active`), and
ACM's InUseBy naming the load balancer that uses a certificate.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field, replace
from typing import Any

from botocore.exceptions import ClientError

from orchestrator.sandbox.albmodel import IngressModel, ModelError, resource_name

Obj = dict[str, Any]

CLUSTER_TAG = "elbv2.k8s.aws/cluster"
STACK_TAG = "ingress.k8s.aws/stack"
RESOURCE_TAG = "ingress.k8s.aws/resource"
_NOT_FOUND = {
    "LoadBalancerNotFound",
    "ListenerNotFound",
    "TargetGroupNotFound",
    "InvalidGroup.NotFound",
    "InvalidGroupId.NotFound",
}


@dataclass(frozen=True)
class Plan:
    """What the precondition checks found that provisioning needs."""

    vpc_id: str
    subnets: tuple[str, ...]
    port: int | None  # the primary backend's Service port; None without a backend


@dataclass
class Stack:
    """What was made for one Ingress (so only that is ever changed or deleted)."""

    model: IngressModel
    plan: Plan
    security_group: str | None = None
    balancer_arn: str | None = None
    dns_name: str = ""
    target_group_arn: str | None = None
    listeners: list[str] = field(default_factory=list)


class AlbProvisioner:
    def __init__(self, ec2: Any, elbv2: Any, cluster: str, region: str, account: str) -> None:
        self.ec2 = ec2
        self.elbv2 = elbv2
        self.cluster = cluster
        self.region = region
        self.account = account

    # ---- create ---------------------------------------------------------------------------------

    def provision(self, model: IngressModel, plan: Plan) -> Stack:
        """Security group, ALB, target group and listeners; all or nothing."""
        stack = Stack(model=model, plan=plan)
        try:
            stack.security_group = self._create_security_group(model, plan.vpc_id)
            balancer = self.elbv2.create_load_balancer(
                Name=model.balancer_name(self.cluster),
                Subnets=list(plan.subnets),
                SecurityGroups=[stack.security_group],
                Scheme=model.scheme,
                Type="application",
                IpAddressType="ipv4",
                Tags=self._tags(model, "LoadBalancer"),
            )["LoadBalancers"][0]
            stack.balancer_arn, stack.dns_name = balancer["LoadBalancerArn"], balancer["DNSName"]
            self._apply_attributes(stack)
            self._create_routing(stack)
        except ClientError as exc:
            self.tear_down(stack)
            raise deploy_error(exc) from None
        return stack

    def _create_security_group(self, model: IngressModel, vpc_id: str) -> str:
        group = self.ec2.create_security_group(
            GroupName=resource_name(model.namespace, model.name, self.cluster, model.stack, "sg"),
            Description="[k8s] Managed SecurityGroup for LoadBalancer",
            VpcId=vpc_id,
            TagSpecifications=[
                {
                    "ResourceType": "security-group",
                    "Tags": self._tags(model, "ManagedLBSecurityGroup"),
                }
            ],
        )["GroupId"]
        self._open_ports(group, model)
        return group

    def _open_ports(self, group: str, model: IngressModel) -> None:
        for _, port in model.listen_ports:
            permission = {
                "IpProtocol": "tcp",
                "FromPort": port,
                "ToPort": port,
                "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
            }
            with contextlib.suppress(ClientError):  # already open: InvalidPermission.Duplicate
                self.ec2.authorize_security_group_ingress(GroupId=group, IpPermissions=[permission])

    def _apply_attributes(self, stack: Stack) -> None:
        if stack.model.attributes:
            self.elbv2.modify_load_balancer_attributes(
                LoadBalancerArn=stack.balancer_arn,
                Attributes=[{"Key": k, "Value": v} for k, v in stack.model.attributes],
            )

    def _create_routing(self, stack: Stack) -> None:
        """The primary backend's target group, and one listener per listen port."""
        model = stack.model
        if model.backends and stack.plan.port is not None:
            stack.target_group_arn = self._create_target_group(stack)
            default = [{"Type": "forward", "TargetGroupArn": stack.target_group_arn}]
        else:
            default = [_fixed_response(404)]
        for protocol, port in model.listen_ports:
            options: Obj = {"DefaultActions": default}
            if protocol == "HTTP" and model.ssl_redirect is not None:
                options["DefaultActions"] = [_redirect_to_https(model.ssl_redirect)]
            if protocol == "HTTPS":
                options["Certificates"] = [{"CertificateArn": model.certificates[0]}]
                options["SslPolicy"] = model.ssl_policy
            listener = self.elbv2.create_listener(
                LoadBalancerArn=stack.balancer_arn, Protocol=protocol, Port=port, **options
            )["Listeners"][0]
            stack.listeners.append(listener["ListenerArn"])
            if protocol == "HTTPS":
                self._add_sni_certificates(listener["ListenerArn"], model)
        mark_in_use(self.account, self.region, stack.balancer_arn or "", model.https_certificates)

    def _create_target_group(self, stack: Stack) -> str:
        model, backend, port = stack.model, stack.model.backends[0], stack.plan.port
        options: Obj = {}
        if model.healthcheck_path:
            options["HealthCheckPath"] = model.healthcheck_path
        if model.healthcheck_port:
            options["HealthCheckPort"] = model.healthcheck_port
        identity = (self.cluster, model.stack, backend.service, str(port), model.target_type)
        group = self.elbv2.create_target_group(
            Name=resource_name(model.namespace, backend.service, *identity),
            Protocol="HTTP",
            Port=port,
            VpcId=stack.plan.vpc_id,
            TargetType=model.target_type,
            Tags=self._tags(model, _target_group_resource(model)),
            **options,
        )["TargetGroups"][0]
        return group["TargetGroupArn"]

    def _add_sni_certificates(self, listener_arn: str, model: IngressModel) -> None:
        # A listener has one default certificate; the others are served by SNI.
        if len(model.certificates) > 1:
            self.elbv2.add_listener_certificates(
                ListenerArn=listener_arn,
                Certificates=[{"CertificateArn": arn} for arn in model.certificates[1:]],
            )

    def _tags(self, model: IngressModel, resource: str) -> list[Obj]:
        tags = {CLUSTER_TAG: self.cluster, STACK_TAG: model.stack, RESOURCE_TAG: resource}
        tags.update(model.tags)
        return [{"Key": k, "Value": v} for k, v in tags.items()]

    # ---- change ---------------------------------------------------------------------------------

    def update(self, stack: Stack, model: IngressModel, plan: Plan) -> Stack:
        """The stack changed to `model`, in place where AWS allows it."""
        old = stack.model
        if old.scheme != model.scheme:
            # A load balancer's scheme cannot change: the controller replaces it.
            self.tear_down(stack)
            return self.provision(model, plan)
        new = replace(stack, model=model, plan=plan, listeners=list(stack.listeners))
        try:
            if stack.plan.subnets != plan.subnets:
                self.elbv2.set_subnets(
                    LoadBalancerArn=stack.balancer_arn, Subnets=list(plan.subnets)
                )
            if old.routing != model.routing or stack.plan.port != plan.port:
                self._delete_routing(stack)
                new.listeners, new.target_group_arn = [], None
                self._open_ports(stack.security_group or "", model)
                self._create_routing(new)
            elif (old.certificates, old.ssl_policy) != (model.certificates, model.ssl_policy):
                self._update_certificates(new)
            if old.attributes != model.attributes:
                self._apply_attributes(new)
            if old.tags != model.tags:
                self._retag(new)
        except ClientError as exc:
            raise deploy_error(exc) from None
        return new

    def _update_certificates(self, stack: Stack) -> None:
        model = stack.model
        for arn in stack.listeners:
            listener = self.elbv2.describe_listeners(ListenerArns=[arn])["Listeners"][0]
            if listener.get("Protocol") != "HTTPS":
                continue
            self.elbv2.modify_listener(
                ListenerArn=arn,
                Certificates=[{"CertificateArn": model.certificates[0]}],
                SslPolicy=model.ssl_policy,
            )
            self._add_sni_certificates(arn, model)
        mark_in_use(self.account, self.region, stack.balancer_arn or "", model.https_certificates)

    def _retag(self, stack: Stack) -> None:
        model = stack.model
        self.elbv2.add_tags(
            ResourceArns=[stack.balancer_arn], Tags=self._tags(model, "LoadBalancer")
        )
        if stack.target_group_arn:
            tags = self._tags(model, _target_group_resource(model))
            self.elbv2.add_tags(ResourceArns=[stack.target_group_arn], Tags=tags)
        if stack.security_group:
            tags = self._tags(model, "ManagedLBSecurityGroup")
            self.ec2.create_tags(Resources=[stack.security_group], Tags=tags)

    def activate(self, stack: Stack) -> None:
        """Finish provisioning: moto keeps a new ALB `provisioning` until something looks."""
        from moto.elbv2.models import elbv2_backends

        balancers = elbv2_backends[self.account][self.region].load_balancers
        balancer = balancers.get(stack.balancer_arn or "")
        if balancer is not None:
            balancer.activate()

    # ---- delete ---------------------------------------------------------------------------------

    def tear_down(self, stack: Stack) -> None:
        """Delete what `stack` holds, newest first; what is already gone is fine."""
        self._delete_routing(stack)
        if stack.balancer_arn:
            _gone_ok(self.elbv2.delete_load_balancer, LoadBalancerArn=stack.balancer_arn)
            mark_in_use(self.account, self.region, stack.balancer_arn, ())
        if stack.security_group:
            _gone_ok(self.ec2.delete_security_group, GroupId=stack.security_group)

    def _delete_routing(self, stack: Stack) -> None:
        for arn in stack.listeners:
            _gone_ok(self.elbv2.delete_listener, ListenerArn=arn)
        if stack.target_group_arn:
            _gone_ok(self.elbv2.delete_target_group, TargetGroupArn=stack.target_group_arn)


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


def _target_group_resource(model: IngressModel) -> str:
    backend = model.backends[0]
    return f"{model.stack}-{backend.service}:{backend.port}"


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
