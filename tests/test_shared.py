"""Shared things a rollback leaves in place while something not ours uses them: the IAM
OIDC provider other IRSA roles trust, the load balancer controller other Ingresses need
(with the role it runs as), and a root-zone validation record another certificate shares.
Each phase runs in process against moto and a Kubernetes API emulator."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, phase_kit

from orchestrator.builders.records import record_set
from orchestrator.errors import PhaseError
from orchestrator.ownership import Owner
from orchestrator.states.certificates import CertificatesPhase
from orchestrator.states.controller import ControllerPhase, controller_users, served_by_controller
from orchestrator.states.controller_iam import ControllerIamPhase, trusts_provider

ISSUER = "https://oidc.eks.us-west-2.amazonaws.com/id/CAFE"
PROVIDER = f"arn:aws:iam::{ACCOUNT}:oidc-provider/oidc.eks.us-west-2.amazonaws.com/id/CAFE"
DEPLOYMENT = "platform-example-com-0123abcd"


def irsa_trust(provider: str, subject: str) -> dict[str, Any]:
    host = provider.split("oidc-provider/", 1)[1]
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {"StringEquals": {f"{host}:sub": subject}},
            }
        ],
    }


def test_trust_policies_name_their_provider_as_a_federated_principal() -> None:
    assert trusts_provider(irsa_trust(PROVIDER, "x"), PROVIDER)
    assert trusts_provider(json.dumps(irsa_trust(PROVIDER, "x")), PROVIDER)
    assert not trusts_provider(irsa_trust(PROVIDER + "X", "x"), PROVIDER)
    ec2 = {"Statement": {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"}}}
    assert not trusts_provider(ec2, PROVIDER)


def test_what_uses_the_controller_besides_us() -> None:
    owner = Owner(DEPLOYMENT, "0123456789abcdef")
    ours = owner.labels

    def ingress(ns: str, name: str, cls: str | None, labels: dict[str, str] | None = None):
        return {
            "metadata": {"namespace": ns, "name": name, "labels": labels or {}},
            "spec": {"ingressClassName": cls} if cls else {},
        }

    classes = [
        {"metadata": {"name": "internal-alb"}, "spec": {"controller": "ingress.k8s.aws/alb"}},
        {"metadata": {"name": "nginx"}, "spec": {"controller": "k8s.io/ingress-nginx"}},
    ]
    ingresses = [
        ingress("istio-system", "istio-ingress", "alb", ours),
        ingress("team-data", "dashboard", "alb"),
        # The same deployment's Ingress, made from another state file: not ours either.
        ingress(
            "istio-system", "istio-ingress-2", "alb", {**ours, "orchestrator.dev/state": "f" * 16}
        ),
        ingress("team-ml", "api", "internal-alb"),
        ingress("web", "site", "nginx"),
        {
            "metadata": {
                "namespace": "old",
                "name": "legacy",
                "annotations": {"kubernetes.io/ingress.class": "alb"},
            },
            "spec": {},
        },
    ]
    bindings = [
        {
            "metadata": {
                "namespace": "istio-system",
                "name": "k8s-istiosys-istioing-1",
                "labels": {
                    "ingress.k8s.aws/stack-namespace": "istio-system",
                    "ingress.k8s.aws/stack-name": "istio-ingress",
                },
            }
        },
        {"metadata": {"namespace": "team-ml", "name": "hand-made"}},
    ]
    services = [
        {
            "metadata": {"namespace": "a", "name": "nlb"},
            "spec": {"type": "LoadBalancer", "loadBalancerClass": "service.k8s.aws/nlb"},
        },
        {"metadata": {"namespace": "a", "name": "classic"}, "spec": {"type": "LoadBalancer"}},
        {"metadata": {"namespace": "a", "name": "plain"}, "spec": {"type": "ClusterIP"}},
    ]
    assert controller_users(
        owner, classes, ingresses, bindings, services, ("istio-system", "istio-ingress")
    ) == [
        "Ingress team-data/dashboard",
        "Ingress istio-system/istio-ingress-2",
        "Ingress team-ml/api",
        "Ingress old/legacy",
        "TargetGroupBinding team-ml/hand-made",
        "Service a/nlb",
    ]
    legacy = {
        "metadata": {
            "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb-ip"}
        },
        "spec": {"type": "LoadBalancer"},
    }
    assert served_by_controller(legacy)


# ---- the OIDC provider and the controller's role ------------------------------------------------


def iam_done(kit: Any) -> Any:
    kit.preflight_done(ISSUER)
    ctx = kit.ctx("controller_iam")
    ControllerIamPhase().enter(ctx)
    return ctx


def test_rollback_keeps_an_oidc_provider_we_made_while_another_role_trusts_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = iam_done(kit)
        iam = kit.client("iam")
        assert [
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        ] == [PROVIDER]
        iam.create_role(
            RoleName="data-team-s3-reader",
            AssumeRolePolicyDocument=json.dumps(
                irsa_trust(PROVIDER, "system:serviceaccount:team-data:s3-reader")
            ),
        )
        ControllerIamPhase().rollback(ctx)
        providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        assert [p["Arn"] for p in providers] == [PROVIDER]
        assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == ["data-team-s3-reader"]
        (kept,) = ctx.record.kept
        assert kept["id"] == PROVIDER and "data-team-s3-reader" in kept["reason"]
        assert ctx.record.resources == []
        assert "left iam:oidc-provider" in kit.said()


def test_rollback_deletes_the_oidc_provider_we_made_when_nothing_else_trusts_it(
    tmp_path: Path,
) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = iam_done(kit)
        ControllerIamPhase().rollback(ctx)
        iam = kit.client("iam")
        assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] == []
        assert iam.list_roles()["Roles"] == [] and ctx.record.kept == []


def test_an_adopted_provider_that_does_not_accept_sts_fails_at_once(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        kit.client("iam").create_open_id_connect_provider(
            Url=ISSUER, ClientIDList=["kubernetes"], ThumbprintList=["9" * 40]
        )
        kit.preflight_done(ISSUER)
        with pytest.raises(PhaseError) as failed:
            ControllerIamPhase().enter(kit.ctx("controller_iam"))
        assert "does not accept the audience sts.amazonaws.com" in failed.value.message
        assert "add-client-id-to-open-id-connect-provider" in failed.value.hint
        assert kit.client("iam").list_roles()["Roles"] == []  # nothing made


def test_a_controller_left_in_place_keeps_the_role_it_runs_as(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = iam_done(kit)
        role_arn = ctx.outputs["role_arn"]
        kit.store.create(
            {
                "apiVersion": "v1",
                "kind": "ServiceAccount",
                "metadata": {
                    "name": "aws-load-balancer-controller",
                    "namespace": "kube-system",
                    "annotations": {"eks.amazonaws.com/role-arn": role_arn},
                },
            }
        )
        kit.store.create(
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "aws-load-balancer-controller", "namespace": "kube-system"},
                "spec": {
                    "selector": {"matchLabels": {"app": "x"}},
                    "template": {
                        "metadata": {"labels": {"app": "x"}},
                        "spec": {"containers": [{"name": "c", "image": "i"}]},
                    },
                },
            }
        )
        ControllerIamPhase().rollback(ctx)
        iam = kit.client("iam")
        assert [r["RoleName"] for r in iam.list_roles()["Roles"]] == [ctx.outputs["role_name"]]
        assert iam.list_open_id_connect_providers()["OpenIDConnectProviderList"] != []
        kinds = sorted(k["kind"] for k in ctx.record.kept)
        assert kinds == [
            "iam:oidc-provider",
            "iam:policy",
            "iam:role",
            "iam:role-policy-attachment",
        ]


def test_the_controller_stays_while_another_ingress_uses_it(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = kit.ctx("controller")
        ctx.outputs.update(mode="installed", deployment="kube-system/aws-load-balancer-controller")
        object_id = "apps/v1/Deployment/kube-system/aws-load-balancer-controller"
        ctx.confirm(ctx.intend("kubernetes:object", object_id, "apply"))
        kit.store.create(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-data"}}
        )
        kit.store.create(
            {
                "apiVersion": "networking.k8s.io/v1",
                "kind": "Ingress",
                "metadata": {"name": "dashboard", "namespace": "team-data"},
                "spec": {"ingressClassName": "alb"},
            }
        )
        ControllerPhase().rollback(ctx)
        (kept,) = ctx.record.kept
        assert kept["id"] == object_id
        assert kept["reason"] == (
            "the AWS Load Balancer Controller is still used by Ingress team-data/dashboard"
        )


# ---- validation records -------------------------------------------------------------------------


def test_a_root_zone_validation_record_another_certificate_shares_is_kept(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        route53, acm = kit.client("route53"), kit.client("acm")
        root = route53.create_hosted_zone(Name="example.com", CallerReference="root")
        root_id = root["HostedZone"]["Id"].split("/")[-1]
        theirs = acm.request_certificate(DomainName="*.example.com", ValidationMethod="DNS")
        ours = acm.request_certificate(
            DomainName="*.example.com",
            ValidationMethod="DNS",
            Tags=kit.ctx("certificates").owner_tags,
        )
        record = acm.describe_certificate(CertificateArn=ours["CertificateArn"])["Certificate"][
            "DomainValidationOptions"
        ][0]["ResourceRecord"]
        kit.done("hosted_zone", zone_id="ZSUB")
        ctx = kit.ctx("certificates")
        wanted = record_set(record["Name"], "CNAME", [record["Value"]], 300)
        resource = ctx.intend(
            "route53:record",
            f"{root_id}/x/CNAME",
            "UPSERT",
            zone=root_id,
            rrset=wanted,
            purpose="v",
        )
        route53.change_resource_record_sets(
            HostedZoneId=root_id,
            ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": wanted}]},
        )
        ctx.confirm(resource)
        CertificatesPhase().rollback(ctx)
        names = [
            r["Name"]
            for r in route53.list_resource_record_sets(HostedZoneId=root_id)["ResourceRecordSets"]
        ]
        assert record["Name"] in names
        (kept,) = ctx.record.kept
        assert theirs["CertificateArn"] in kept["reason"]
        assert ours["CertificateArn"] not in kept["reason"]
