"""`import --from-setup-script`: what the old setup script made, found from its config's
written-back keys and its naming rules, each checked against what the script would have
made; with --take-ownership the matches (and only they) are marked and recorded, in the
phases that make such things. Seeded here as the script makes it: untagged, a random
CallerReference, an eksctl-style role, the kustomize controller's names."""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from phasekit import ACCOUNT, REGION, Kit, configured, eks_cluster, eks_network, phase_kit

from orchestrator import setup_script
from orchestrator.cli.entry import main
from orchestrator.cli.importing import take_over_setup_script
from orchestrator.config import load_config, written_back
from orchestrator.inventory import Inventory
from orchestrator.ownership import DEPLOYMENT_LABEL, OWNER_TAG, STATE_TAG, tag_map
from orchestrator.states import all_phases, certificates, controller, controller_iam, ingress
from orchestrator.store import StateStore

SUB = "platform.example.com"
HOST = f"kubeflow.{SUB}"
ALB_DNS = "k8s-istiosys-istioing-0123456789-1234567890.us-west-2.elb.amazonaws.com"
SA = "aws-load-balancer-controller"
PHASES = [p.name for p in all_phases()]
# The kustomize controller's --cluster-name: an env var from its ConfigMap.
CLUSTER_FROM = {
    "configMapKeyRef": {"name": "aws-load-balancer-controller-config", "key": "clusterName"}
}


@dataclass
class Seeded:
    """What the script made, as its config wrote it back."""

    root_zone: str
    zone: str
    certificate: str
    policy: str
    role: str
    written: dict[str, Any]


def seed_old_setup(kit: Kit) -> Seeded:
    """Make what the old script makes, as it makes it: nothing tagged."""
    network = eks_network(kit.client("ec2"))
    cluster = eks_cluster(kit, list(network.private.values()))
    route53, acm, iam = kit.client("route53"), kit.client("acm"), kit.client("iam")
    root = _zone(route53, "example.com")
    zone = _zone(route53, SUB)
    servers = route53.get_hosted_zone(Id=zone)["DelegationSet"]["NameServers"]
    _upsert(route53, root, SUB, "NS", servers)
    arn = acm.request_certificate(DomainName=f"*.{SUB}", ValidationMethod="DNS")["CertificateArn"]
    record = acm.describe_certificate(CertificateArn=arn)["Certificate"]
    validation = record["DomainValidationOptions"][0]["ResourceRecord"]
    _upsert(route53, zone, validation["Name"], "CNAME", [validation["Value"]])
    kit.acm_status(arn, "ISSUED")
    issuer = cluster.identity["oidc"]["issuer"] if hasattr(cluster, "identity") else None
    issuer = (
        issuer
        or kit.client("eks").describe_cluster(name="kube-eks-cluster")["cluster"]["identity"][
            "oidc"
        ]["issuer"]
    )
    host = issuer.removeprefix("https://")
    provider = iam.create_open_id_connect_provider(
        Url=issuer, ClientIDList=["sts.amazonaws.com"], ThumbprintList=["9" * 40]
    )["OpenIDConnectProviderArn"]
    policy = iam.create_policy(
        PolicyName=f"alb_ingress_controller_kube-eks-cluster{secrets.token_hex(3)}",
        PolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {"Effect": "Allow", "Action": "elasticloadbalancing:*", "Resource": "*"}
                ],
            }
        ),
    )["Policy"]["Arn"]
    role = "eksctl-kube-eks-cluster-addon-iamserviceaccount-kube-sy-Role1-ABC"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": provider},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:sub": f"system:serviceaccount:kube-system:{SA}",
                        f"{host}:aud": "sts.amazonaws.com",
                    }
                },
            }
        ],
    }
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps(trust))
    iam.attach_role_policy(RoleName=role, PolicyArn=policy)
    _kube_objects(kit, f"arn:aws:iam::{ACCOUNT}:role/{role}", arn)
    _upsert(route53, zone, HOST, "CNAME", [ALB_DNS])
    kit.configure(root_zone_id=root, subdomain_zone_id=zone)
    written = {
        "route53.subDomain.hostedZoneId": zone,
        f"route53.subDomain.{REGION}-certARN": arn,
        "kubeflow.alb.serviceAccount.name": SA,
        "kubeflow.alb.serviceAccount.policyArn": policy,
        "kubeflow.alb.dns": ALB_DNS,
    }
    return Seeded(root, zone, arn, policy, role, written)


def _zone(route53: Any, name: str) -> str:
    made = route53.create_hosted_zone(Name=name, CallerReference=secrets.token_hex(8))
    return str(made["HostedZone"]["Id"]).rsplit("/", 1)[-1]


def _upsert(route53: Any, zone: str, name: str, rtype: str, values: list[str]) -> None:
    rrset = {
        "Name": name,
        "Type": rtype,
        "TTL": 300,
        "ResourceRecords": [{"Value": v} for v in values],
    }
    route53.change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "UPSERT", "ResourceRecordSet": rrset}]},
    )


def _kube_objects(kit: Kit, role_arn: str, certificate: str) -> None:
    kit.namespace("kube-system")
    labels = {"kustomize.component": "aws-load-balancer-controller"}
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {
                "name": SA,
                "namespace": "kube-system",
                "labels": {"app.kubernetes.io/managed-by": "eksctl"},
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            },
        }
    )
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "aws-load-balancer-controller-config",
                "namespace": "kube-system",
                "labels": labels,
            },
            "data": {"clusterName": "kube-eks-cluster"},
        }
    )
    kit.store.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": "aws-load-balancer-webhook-service",
                "namespace": "kube-system",
                "labels": labels,
            },
            "spec": {"ports": [{"port": 443, "targetPort": 9443}], "selector": labels},
        }
    )
    kit.store.create(  # cert-manager's, for the kustomize Certificate: no kustomize label
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "aws-load-balancer-webhook-tls", "namespace": "kube-system"},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""},
        }
    )
    kit.store.create(
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {
                "name": "aws-load-balancer-controller",
                "namespace": "kube-system",
                "labels": labels,
            },
            "spec": {
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "serviceAccountName": SA,
                        "containers": [
                            {
                                "name": "controller",
                                "image": "public.ecr.aws/eks/aws-load-balancer-controller:v2.4.7",
                                "args": ["--cluster-name=$(CLUSTER_NAME)", "--ingress-class=alb"],
                                "env": [{"name": "CLUSTER_NAME", "valueFrom": CLUSTER_FROM}],
                            }
                        ],
                        "volumes": [
                            {
                                "name": "cert",
                                "secret": {"secretName": "aws-load-balancer-webhook-tls"},
                            }
                        ],
                    },
                },
            },
        }
    )
    kit.store.create(
        {
            "apiVersion": "networking.k8s.io/v1",
            "kind": "Ingress",
            "metadata": {
                "name": "istio-ingress",
                "namespace": "istio-system",
                "annotations": {
                    "kubernetes.io/ingress.class": "alb",
                    "alb.ingress.kubernetes.io/certificate-arn": certificate,
                },
            },
            "spec": {
                "rules": [
                    {
                        "http": {
                            "paths": [
                                {
                                    "path": "/*",
                                    "pathType": "ImplementationSpecific",
                                    "backend": {
                                        "service": {
                                            "name": "istio-ingressgateway",
                                            "port": {"number": 80},
                                        }
                                    },
                                }
                            ]
                        }
                    }
                ]
            },
        }
    )
    kit.store.patch_status(
        "networking.k8s.io/v1",
        "Ingress",
        "istio-ingress",
        "istio-system",
        {"loadBalancer": {"ingress": [{"hostname": ALB_DNS}]}},
    )


def old(kit: Kit, seeded: Seeded) -> setup_script.OldSetup:
    return setup_script.old_setup(kit.engine.config, seeded.written)


def statuses(findings: list[setup_script.Finding]) -> dict[str, str]:
    return {f.what: f.status for f in findings}


EVERY_CHECK = [
    "hosted zone",
    f"NS delegation of {SUB}",
    f"certificate *.{SUB}",
    "IAM policy",
    "IAM role",
    "controller's ServiceAccount",
    "controller Deployment",
    "controller's ConfigMap",
    "controller's Service",
    "controller's Secret",
    "Ingress",
    f"DNS record {HOST}",
]
# The kustomize install's objects the seed makes, besides its Deployment (all in kube-system).
KUSTOMIZE_OBJECTS = [
    ("ConfigMap", "aws-load-balancer-controller-config"),
    ("Service", "aws-load-balancer-webhook-service"),
    ("Secret", "aws-load-balancer-webhook-tls"),
]


def test_the_preview_finds_each_thing_the_script_made_and_writes_nothing(tmp_path: Path) -> None:
    with phase_kit(tmp_path, configured(root_zone_id="Z0")) as kit:
        seeded = seed_old_setup(kit)
        with kit.watching() as activity:
            findings = take_over_setup_script(kit.engine, old(kit, seeded), take_ownership=False)
        assert statuses(findings) == dict.fromkeys(EVERY_CHECK, setup_script.MATCHES)
        assert activity.aws_writes == [] and activity.kube_writes == []
        assert not (tmp_path / "state.json").exists()
        # The policy is found by the script's naming rule when the config does not name it.
        del seeded.written["kubeflow.alb.serviceAccount.policyArn"]
        (policy,) = [
            f
            for f in take_over_setup_script(kit.engine, old(kit, seeded), False)
            if f.what == "IAM policy"
        ]
        assert (policy.status, policy.id) == (setup_script.MATCHES, seeded.policy)


def test_take_ownership_marks_the_matches_and_writes_a_state_status_shows(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with phase_kit(tmp_path, configured(root_zone_id="Z0")) as kit:
        seeded = seed_old_setup(kit)
        take_over_setup_script(kit.engine, old(kit, seeded), take_ownership=True)
        owner = kit.owner
        route53, acm, iam = kit.client("route53"), kit.client("acm"), kit.client("iam")
        zone_tags = route53.list_tags_for_resource(
            ResourceType="hostedzone", ResourceId=seeded.zone
        )
        assert owner.owns_tags(zone_tags["ResourceTagSet"]["Tags"])
        cert_tags = tag_map(
            acm.list_tags_for_certificate(CertificateArn=seeded.certificate)["Tags"]
        )
        assert owner.owns_tags(cert_tags) and cert_tags[certificates.PURPOSE_TAG] == "subdomain"
        assert owner.owns_tags(iam.list_role_tags(RoleName=seeded.role)["Tags"])
        assert owner.owns_tags(iam.list_policy_tags(PolicyArn=seeded.policy)["Tags"])
        for api, kind, name, ns in [
            ("v1", "ServiceAccount", SA, "kube-system"),
            ("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system"),
            ("networking.k8s.io/v1", "Ingress", "istio-ingress", "istio-system"),
        ]:
            assert owner.owns_object(kit.store.get(api, kind, name, ns)), kind
        # Not the root zone: the script did not make it.
        root_tags = route53.list_tags_for_resource(
            ResourceType="hostedzone", ResourceId=seeded.root_zone
        )
        assert OWNER_TAG not in tag_map(root_tags["ResourceTagSet"].get("Tags", []))

        state = StateStore(tmp_path / "state.json").load(PHASES)
        recorded = {(p.name, r.kind, r.id) for p in state.phases for r in p.resources}
        assert ("hosted_zone", "route53:hosted-zone", seeded.zone) in recorded
        assert ("controller_iam", controller_iam.ROLE, seeded.role) in recorded
        assert ("controller_iam", controller_iam.POLICY, seeded.policy) in recorded
        assert ("certificates", certificates.KIND, seeded.certificate) in recorded
        assert {p for p, _, _ in recorded} == {
            "hosted_zone",
            "delegation",
            "certificates",
            "controller_iam",
            "controller",
            "ingress",
            "dns_record",
        }
        assert all(r.created for p in state.phases for r in p.resources)
        # What the phases find by the marks is what the take-over recorded in them.
        ctx = kit.ctx("preflight")
        by_marks = {(f.phase, f.kind, f.id) for f in Inventory(all_phases()).find(ctx)}
        searched = recorded - {("dns_record", k, i) for p, k, i in recorded if p == "dns_record"}
        searched -= {r for r in recorded if r[0] == "controller_iam"}  # the script's names
        assert searched <= by_marks

    capsys.readouterr()
    # Each phase that holds something taken over is where a crash would leave it: run enters
    # it again (and finds its own), rollback undoes it.
    assert main(["--state", str(tmp_path / "state.json"), "status"]) == 3
    shown = capsys.readouterr().out
    for phase in ("hosted_zone", "delegation", "certificates", "controller_iam", "ingress"):
        assert (
            f"{phase} " in shown and "in_progress" in shown.split(f"  {phase} ")[1].split("\n")[0]
        )
    assert "preflight            pending" in shown


def test_the_rest_of_the_scripts_controller_is_found_by_its_label_and_taken_over(
    tmp_path: Path,
) -> None:
    """Each object of the kustomize install (by its label) and the webhook Secret the
    Deployment mounts: taken over, recorded in the controller phase; what this tool's
    release also has is to be updated, the rest to go once the new controller runs. An
    object without the install's label is not looked at."""
    with phase_kit(tmp_path, configured(root_zone_id="Z0")) as kit:
        seeded = seed_old_setup(kit)
        kit.store.create(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "other", "namespace": "kube-system"},
                "spec": {"ports": [{"port": 443}]},
            }
        )
        findings = take_over_setup_script(kit.engine, old(kit, seeded), take_ownership=True)
        shown = {f.id: f.action for f in findings if f.what.startswith("controller's ")}
        ids = {kind: f"v1/{kind}/kube-system/{name}" for kind, name in KUSTOMIZE_OBJECTS}
        assert shown[ids["Service"]].endswith("run updates it to ours")
        for kind in ("ConfigMap", "Secret"):
            assert shown[ids[kind]].endswith("run deletes it once its own controller runs")
        assert "v1/Service/kube-system/other" not in shown
        for kind, name in KUSTOMIZE_OBJECTS:
            assert kit.owner.owns_object(kit.store.get("v1", kind, name, "kube-system")), kind
        state = StateStore(tmp_path / "state.json").load(PHASES)
        recorded = {r.id for r in state.phase("controller").resources if r.created}
        assert set(ids.values()) <= recorded


def test_the_certificates_taken_over_are_those_run_uses_none_requested(tmp_path: Path) -> None:
    """With the root-domain wildcard asked too (route53.rootDomain.wildcardCertificate),
    the script's root certificate is taken over with the subdomain's, and the certificates
    phase then uses both as they are: it requests none."""
    with phase_kit(tmp_path, configured(root_zone_id="Z0", root_wildcard_certificate=True)) as kit:
        seeded = seed_old_setup(kit)
        acm, route53 = kit.client("acm"), kit.client("route53")
        root = acm.request_certificate(DomainName="*.example.com", ValidationMethod="DNS")
        arn = root["CertificateArn"]
        option = acm.describe_certificate(CertificateArn=arn)["Certificate"]
        validation = option["DomainValidationOptions"][0]["ResourceRecord"]
        _upsert(route53, seeded.root_zone, validation["Name"], "CNAME", [validation["Value"]])
        kit.acm_status(arn, "ISSUED")
        seeded.written["route53.rootDomain.certARN"] = arn

        findings = take_over_setup_script(kit.engine, old(kit, seeded), take_ownership=True)
        assert statuses(findings)["certificate *.example.com"] == setup_script.MATCHES
        kit.done("hosted_zone", zone_id=seeded.zone)
        ctx = kit.ctx("certificates")
        with kit.watching() as activity:
            certificates.CertificatesPhase().enter(ctx)
        assert activity.calls("RequestCertificate") == []
        used = {c["purpose"]: c["arn"] for c in ctx.outputs["certificates"]}
        assert used == {"subdomain": seeded.certificate, "root": arn}


def spoil_zone(kit: Kit, seeded: Seeded) -> None:
    seeded.written["route53.subDomain.hostedZoneId"] = _zone(
        kit.client("route53"), "other.example.com"
    )
    kit.configure(subdomain_zone_id=seeded.written["route53.subDomain.hostedZoneId"])


def spoil_delegation(kit: Kit, seeded: Seeded) -> None:
    _upsert(kit.client("route53"), seeded.root_zone, SUB, "NS", ["ns1.elsewhere.net"])


def spoil_certificate_names(kit: Kit, seeded: Seeded) -> None:
    acm = kit.client("acm")
    other = acm.request_certificate(DomainName=f"www.{SUB}", ValidationMethod="DNS")[
        "CertificateArn"
    ]
    kit.acm_status(other, "ISSUED")
    seeded.written[f"route53.subDomain.{REGION}-certARN"] = other


def spoil_certificate_status(kit: Kit, seeded: Seeded) -> None:
    kit.acm_status(seeded.certificate, "PENDING_VALIDATION")


def spoil_trust(kit: Kit, seeded: Seeded) -> None:
    iam = kit.client("iam")
    trust = json.loads(
        json.dumps(iam.get_role(RoleName=seeded.role)["Role"]["AssumeRolePolicyDocument"])
    )
    for key in trust["Statement"][0]["Condition"]["StringEquals"]:
        if key.endswith(":sub"):
            trust["Statement"][0]["Condition"]["StringEquals"][key] = (
                "system:serviceaccount:default:other"
            )
    iam.update_assume_role_policy(RoleName=seeded.role, PolicyDocument=json.dumps(trust))


def spoil_attachment(kit: Kit, seeded: Seeded) -> None:
    kit.client("iam").detach_role_policy(RoleName=seeded.role, PolicyArn=seeded.policy)


def spoil_deployment(kit: Kit, seeded: Seeded) -> None:
    live = kit.store.get("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")
    live["spec"]["template"]["spec"]["containers"][0]["args"] = ["--cluster-name=another"]
    kit.store.delete("apps/v1", "Deployment", "aws-load-balancer-controller", "kube-system")
    live["metadata"] = {
        k: v for k, v in live["metadata"].items() if k in ("name", "namespace", "labels")
    }
    kit.store.create(live)


def spoil_cluster_config(kit: Kit, seeded: Seeded) -> None:
    name = "aws-load-balancer-controller-config"
    live = kit.store.get("v1", "ConfigMap", name, "kube-system")
    kit.store.delete("v1", "ConfigMap", name, "kube-system")
    kit.store.create(
        {
            **live,
            "metadata": {"name": name, "namespace": "kube-system"},
            "data": {"clusterName": "another"},
        }
    )


def spoil_ingress(kit: Kit, seeded: Seeded) -> None:
    kit.store.patch_status(
        "networking.k8s.io/v1",
        "Ingress",
        "istio-ingress",
        "istio-system",
        {"loadBalancer": {"ingress": [{"hostname": "another.elb.amazonaws.com"}]}},
    )


def spoil_alias(kit: Kit, seeded: Seeded) -> None:
    _upsert(kit.client("route53"), seeded.zone, HOST, "CNAME", ["elsewhere.example.net"])


@pytest.mark.parametrize(
    ("spoil", "differs"),
    [
        (spoil_zone, ["hosted zone"]),
        (spoil_delegation, [f"NS delegation of {SUB}"]),
        (spoil_certificate_names, [f"certificate *.{SUB}", "Ingress"]),
        (spoil_certificate_status, [f"certificate *.{SUB}", "Ingress"]),
        (spoil_trust, ["IAM role", "controller's ServiceAccount"]),
        (spoil_attachment, ["IAM role", "controller's ServiceAccount"]),
        (spoil_deployment, ["controller Deployment"]),
        (spoil_cluster_config, ["controller Deployment"]),
        (spoil_ingress, ["Ingress"]),
        (spoil_alias, [f"DNS record {HOST}"]),
    ],
    ids=lambda v: getattr(v, "__name__", ""),
)
def test_what_does_not_match_is_listed_and_left_alone(
    tmp_path: Path, spoil: Callable[[Kit, Seeded], None], differs: list[str]
) -> None:
    with phase_kit(tmp_path, configured(root_zone_id="Z0")) as kit:
        seeded = seed_old_setup(kit)
        spoil(kit, seeded)
        findings = take_over_setup_script(kit.engine, old(kit, seeded), take_ownership=True)
        found = statuses(findings)
        assert {w for w, s in found.items() if s != setup_script.MATCHES} >= set(differs), found
        for what in differs:
            assert found.get(what) in (setup_script.DIFFERS, setup_script.MISSING), (what, found)
        state = StateStore(tmp_path / "state.json").load(PHASES)
        recorded = {r.id for p in state.phases for r in p.resources}
        for finding in findings:
            if not finding.matches:
                assert finding.id not in recorded, finding
                assert not _marked(kit, finding), finding


def _marked(kit: Kit, finding: setup_script.Finding) -> bool:
    """Whether the thing a finding names carries any orchestrator mark."""
    if finding.id.startswith("arn:aws:acm"):
        got = kit.client("acm").list_tags_for_certificate(CertificateArn=finding.id).get("Tags", [])
        return OWNER_TAG in tag_map(got)
    if finding.id.startswith("arn:aws:iam") and ":policy/" in finding.id:
        return OWNER_TAG in tag_map(
            kit.client("iam").list_policy_tags(PolicyArn=finding.id)["Tags"]
        )
    if finding.what == "IAM role":
        return OWNER_TAG in tag_map(kit.client("iam").list_role_tags(RoleName=finding.id)["Tags"])
    if finding.what == "hosted zone":
        got = kit.client("route53").list_tags_for_resource(
            ResourceType="hostedzone", ResourceId=finding.id
        )
        return OWNER_TAG in tag_map(got["ResourceTagSet"].get("Tags", []))
    if finding.id.count("/") >= 3:
        *api, kind, ns, name = finding.id.split("/")
        live = kit.store.get("/".join(api), kind, name, ns or None) or {}
        return DEPLOYMENT_LABEL in ((live.get("metadata") or {}).get("labels") or {})
    return False


def test_the_kinds_are_the_phases_own() -> None:
    assert setup_script.CERTIFICATE_KIND == certificates.KIND
    assert setup_script.PURPOSE_TAG == certificates.PURPOSE_TAG
    assert (setup_script.POLICY_KIND, setup_script.ROLE_KIND, setup_script.ATTACHMENT_KIND) == (
        controller_iam.POLICY,
        controller_iam.ROLE,
        controller_iam.ATTACHMENT,
    )
    assert setup_script.OBJECT_KIND == controller.KIND == ingress.KIND


def test_the_written_back_keys_are_read_and_still_accepted(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        "cluster: {name: kube-eks-cluster, region: us-west-2}\n"
        "kubeflow:\n  alb:\n    dns: a.elb.amazonaws.com\n    scheme: internet-facing\n"
        "    serviceAccount: {name: aws-load-balancer-controller, namespace: kube-system,"
        " policyArn: 'arn:aws:iam::1:policy/p'}\n"
        "route53:\n  rootDomain: {name: example.com, hostedZoneId: Z1,"
        " certARN: 'arn:aws:acm:us-west-2:1:certificate/r'}\n"
        "  subDomain: {name: platform.example.com, hostedZoneId: Z2,"
        " us-west-2-certARN: 'arn:aws:acm:us-west-2:1:certificate/s',"
        " us-east-1-certARN: 'arn:aws:acm:us-east-1:1:certificate/e'}\n"
    )
    config = load_config(path)
    found = setup_script.old_setup(config, written_back(path))
    assert found.zone_id == "Z2"
    assert found.root_certificate == "arn:aws:acm:us-west-2:1:certificate/r"
    assert found.subdomain_certificates == (
        "arn:aws:acm:us-west-2:1:certificate/s",
        "arn:aws:acm:us-east-1:1:certificate/e",
    )
    assert found.policy_arn == "arn:aws:iam::1:policy/p"
    assert (found.service_account, found.alb_dns) == (
        "aws-load-balancer-controller",
        "a.elb.amazonaws.com",
    )
    assert STATE_TAG  # the marks used above are the ownership module's


def _config_file(tmp_path: Path, seeded: Seeded) -> Path:
    """The old script's config.yaml, as it left it: its own keys and those it wrote back."""
    path = tmp_path / "config.yaml"
    config = {
        "cluster": {"name": "kube-eks-cluster", "region": REGION},
        "kubeflow": {
            "alb": {
                "scheme": "internet-facing",
                "dns": seeded.written["kubeflow.alb.dns"],
                "serviceAccount": {
                    "name": SA,
                    "namespace": "kube-system",
                    "policyArn": seeded.written["kubeflow.alb.serviceAccount.policyArn"],
                },
            }
        },
        "route53": {
            "rootDomain": {"name": "example.com", "hostedZoneId": seeded.root_zone},
            "subDomain": {
                "name": SUB,
                "hostedZoneId": seeded.zone,
                f"{REGION}-certARN": seeded.certificate,
            },
        },
    }
    path.write_text(json.dumps(config))  # JSON is YAML
    return path


def test_the_command_previews_takes_over_once_and_answers_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with phase_kit(tmp_path, configured(root_zone_id="Z0")) as kit:
        seeded = seed_old_setup(kit)
        config, state = _config_file(tmp_path, seeded), tmp_path / "taken.json"
        words = ["--config", str(config), "--state", str(state), "import", "--from-setup-script"]
        capsys.readouterr()
        assert main([*words, "--json"]) == 0
        answer = json.loads(capsys.readouterr().out)
        assert {f["what"]: f["status"] for f in answer["findings"]} == dict.fromkeys(
            EVERY_CHECK, setup_script.MATCHES
        )
        assert answer["taken_over"] is False and not state.exists()

        assert main([*words, "--take-ownership"]) == 0
        shown = capsys.readouterr().out
        assert f"hosted zone {' ' * 20}"[:11] in shown and seeded.zone in shown
        assert f"wrote {state}" in shown and state.exists()
        zone_tags = kit.client("route53").list_tags_for_resource(
            ResourceType="hostedzone", ResourceId=seeded.zone
        )
        assert kit.owner.deployment == tag_map(zone_tags["ResourceTagSet"]["Tags"])[OWNER_TAG]

        # A second take-over finds a state file: refused, nothing changed.
        assert main([*words, "--take-ownership"]) == 2
        assert "exists" in capsys.readouterr().err
        # Plain `import` takes no --json.
        assert main(["--config", str(config), "import", "--json"]) == 2


def test_with_json_what_the_command_says_on_the_way_goes_to_stderr() -> None:
    """`import --json` answers one JSON object on stdout: a notice on the way (AWS's
    Throttling, retried) goes to stderr, so that stdout stays JSON."""
    import sys
    from types import SimpleNamespace

    from orchestrator.cli.entry import _reporter

    invocation: Any = SimpleNamespace(command="import", json=True)
    assert _reporter(invocation).out is sys.stderr
    invocation.json = False
    assert _reporter(invocation).out is sys.stdout
