"""End to end: a deployment the old setup script made (`sandbox up --setup-script`), taken
over, completed and removed, in one world (issue 24's "Done when").

A plain `run` refuses it with no write; `import --from-setup-script` finds each thing the
script made from its written-back config and writes nothing; with --take-ownership it marks
them (tags and labels only) and writes a state file. `run` then ends 0 reusing the zone,
the certificate and the ALB, replaces the script's IAM role and policy and its controller
with this tool's, while the endpoint answers a probe every 50 ms without one failure; and
`rollback --all` removes what was taken over and nothing else (the world before the import,
listed, against the world after)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import CONTEXTS, REGION, EndpointProbe, World, https_status, kube_client, kube_get

from orchestrator.config import load_config
from orchestrator.errors import ExitCode
from orchestrator.failpoints import EXIT_CODE
from orchestrator.ownership import OWNER_TAG, tag_map

HOST = "kubeflow.platform.example.com"
KUBE_SYSTEM = "kube-system"
CONTROLLER = "aws-load-balancer-controller"
WEBHOOK = "aws-load-balancer-webhook"
RBAC = "rbac.authorization.k8s.io/v1"
ADMISSION = "admissionregistration.k8s.io/v1"
CRDS = "apiextensions.k8s.io/v1"
# The script's kustomize objects that this tool's manifests have no counterpart of (theirs
# are named otherwise): run removes them once it has replaced the controller.
OLD_ONLY = [
    (RBAC, "ClusterRole", f"{CONTROLLER}-role", None),
    (RBAC, "ClusterRoleBinding", f"{CONTROLLER}-rolebinding", None),
    (RBAC, "Role", f"{CONTROLLER}-leader-election-role", KUBE_SYSTEM),
    (RBAC, "RoleBinding", f"{CONTROLLER}-leader-election-rolebinding", KUBE_SYSTEM),
    ("v1", "ConfigMap", f"{CONTROLLER}-config", KUBE_SYSTEM),
    ("v1", "Secret", f"{WEBHOOK}-tls", KUBE_SYSTEM),
]
# The script's controller objects named as this tool's manifests name them: taken over,
# then this tool's; rollback removes them.
SAME_NAMES = [
    ("v1", "ServiceAccount", CONTROLLER, KUBE_SYSTEM),
    ("apps/v1", "Deployment", CONTROLLER, KUBE_SYSTEM),
    ("v1", "Service", f"{WEBHOOK}-service", KUBE_SYSTEM),
    (ADMISSION, "MutatingWebhookConfiguration", WEBHOOK, None),
    (ADMISSION, "ValidatingWebhookConfiguration", WEBHOOK, None),
    (CRDS, "CustomResourceDefinition", "targetgroupbindings.elbv2.k8s.aws", None),
    (CRDS, "CustomResourceDefinition", "ingressclassparams.elbv2.k8s.aws", None),
    ("networking.k8s.io/v1", "IngressClass", "alb", None),
    ("elbv2.k8s.aws/v1beta1", "IngressClassParams", "alb", None),
]
CONTROLLER_OBJECTS = OLD_ONLY + SAME_NAMES
# What import finds and takes over: a line each (the controller's objects a line a kind).
TAKEN = {
    "hosted zone",
    "NS delegation of platform.example.com",
    "certificate *.platform.example.com",
    "IAM policy",
    "IAM role",
    "controller Deployment",
    *(f"controller's {kind}" for _, kind, _, _ in CONTROLLER_OBJECTS if kind != "Deployment"),
    "Ingress",
    "DNS record kubeflow.platform.example.com",
}
# What the world's listing reads, per cluster (see inventory).
KINDS = [
    ("v1", "ServiceAccount"),
    ("v1", "ConfigMap"),
    ("v1", "Secret"),
    ("v1", "Service"),
    ("apps/v1", "Deployment"),
    ("policy/v1", "PodDisruptionBudget"),
    (RBAC, "ClusterRole"),
    (RBAC, "ClusterRoleBinding"),
    (RBAC, "Role"),
    (RBAC, "RoleBinding"),
    ("admissionregistration.k8s.io/v1", "MutatingWebhookConfiguration"),
    ("admissionregistration.k8s.io/v1", "ValidatingWebhookConfiguration"),
    ("apiextensions.k8s.io/v1", "CustomResourceDefinition"),
    ("networking.k8s.io/v1", "IngressClass"),
    ("networking.k8s.io/v1", "Ingress"),
    ("elbv2.k8s.aws/v1beta1", "IngressClassParams"),
    ("elbv2.k8s.aws/v1beta1", "TargetGroupBinding"),
]
CONTROLLER_TAG = "elbv2.k8s.aws/cluster"  # on what the load balancer controller makes


@pytest.mark.complete
def test_setup_script_deployment_taken_over_run_without_downtime_then_rolled_back(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, setup_script=True) as world:
        made = world.setup_script
        config, state = made.config_path, str(workdir / "state.json")
        refuses_a_plain_run(world, config, workdir)
        before = inventory(world)
        balancers = load_balancer_arns(world)
        certificates = certificate_arns(world)
        alb = script_alb(world, made.alb_dns)
        import_previews_then_takes_over(world, config, state, workdir)

        assert https_status(world, HOST) < 500, "the endpoint must answer before run"
        with EndpointProbe(world, HOST) as probe:
            ran = world.cli("--config", config, "--state", state, "run", cwd=workdir)
        assert ran.returncode == ExitCode.OK, ran.stdout + ran.stderr
        # No failure at any time, and enough requests that "none failed" means something.
        assert probe.failures == [], probe.failures
        assert probe.requests >= 10, probe.requests

        # Reused: one zone, no new certificate, the same ALB, the name pointing at it.
        assert zones_named(world, made.subdomain) == 1
        assert certificate_arns(world) == certificates
        assert load_balancer_arns(world) == balancers
        assert alias_target(world, made.zone_id) == made.alb_dns.lower()
        again = world.cli(
            "--config", config, "--state", state, "plan", "--detailed-exitcode", cwd=workdir
        )
        assert again.returncode == 0, again.stdout + again.stderr

        replaced_by_run(world, config, state, workdir)

        undone = world.cli(
            "--config", config, "--state", state, "rollback", "--all", "--yes", cwd=workdir
        )
        assert undone.returncode == ExitCode.OK, undone.stdout + undone.stderr
        removed_what_was_taken_over_only(world, before, alb)


# The take-over's own seams: where the run writes over the script's controller, deletes
# what it replaced, and turns the script's CNAME into an alias (failpoints by operation).
SEAMS = [
    "after:@kubernetes:replace Deployment",
    "after:@kubernetes:delete ConfigMap",
    "after:@iam:DetachRolePolicy",
    "before:@route53:ChangeResourceRecordSets",
]


@pytest.mark.complete
@pytest.mark.parametrize("seam", SEAMS)
def test_a_take_over_run_killed_at_its_seams_resumes_to_the_same_end(
    tmp_path: Path, workdir: Path, seam: str
) -> None:
    """Killed there (no clean-up, no state save), then resumed: the same end as an
    uninterrupted run, nothing made twice, and the endpoint answering throughout."""
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, setup_script=True) as world:
        made = world.setup_script
        config, state = made.config_path, str(workdir / "state.json")
        certificates, balancers = certificate_arns(world), load_balancer_arns(world)
        words = ["--config", config, "--state", state]
        taken = world.cli(*words, "import", "--from-setup-script", "--take-ownership", cwd=workdir)
        assert taken.returncode == ExitCode.OK, taken.stdout + taken.stderr

        killed_env = {**world.env, "ORCHESTRATOR_FAILPOINT": seam}
        with EndpointProbe(world, HOST) as probe:
            killed = world.cli(*words, "run", cwd=workdir, env=killed_env)
            assert killed.returncode == EXIT_CODE, killed.stdout + killed.stderr
            resumed = world.cli(*words, "resume", cwd=workdir)
        assert resumed.returncode == ExitCode.OK, resumed.stdout + resumed.stderr
        assert probe.failures == [] and probe.requests >= 10, (probe.failures, probe.requests)

        assert zones_named(world, made.subdomain) == 1
        assert certificate_arns(world) == certificates
        assert load_balancer_arns(world) == balancers
        assert alias_target(world, made.zone_id) == made.alb_dns.lower()
        replaced_by_run(world, config, state, workdir)
        again = world.cli(*words, "plan", "--detailed-exitcode", cwd=workdir)
        assert again.returncode == 0, again.stdout + again.stderr


def refuses_a_plain_run(world: World, config: str, workdir: Path) -> None:
    """`run` without the import stops at the old controller, writing nothing."""
    plain = str(workdir / "plain.json")
    refused = world.cli("--config", config, "--state", plain, "run", cwd=workdir)
    said = refused.stdout + refused.stderr
    assert refused.returncode == ExitCode.PHASE_FAILED and "runs v2.4.7" in said, said
    assert world.writes() == [] and world.kube_writes() == []


def import_previews_then_takes_over(world: World, config: str, state: str, workdir: Path) -> None:
    made = world.setup_script
    words = ["--config", config, "--state", state, "import", "--from-setup-script"]
    preview = world.cli(*words, "--json", cwd=workdir)
    assert preview.returncode == ExitCode.OK, preview.stdout + preview.stderr
    found = {f["what"]: f["status"] for f in json.loads(preview.stdout)["findings"]}
    assert {what for what, status in found.items() if status == "matches"} == TAKEN, found
    assert world.writes() == [] and world.kube_writes() == []
    assert not Path(state).exists()

    taken = world.cli(*words, "--take-ownership", cwd=workdir)
    assert taken.returncode == ExitCode.OK, taken.stdout + taken.stderr
    # Marks only: a tag on the zone (Route 53's REST call), the certificate, the policy
    # and the role; a label on each of the controller's objects and on the Ingress.
    zone_tagging = f"POST /2013-04-01/tags/hostedzone/{made.zone_id}"
    assert sorted(c["action"] for c in world.writes()) == sorted(
        ["AddTagsToCertificate", zone_tagging, "TagPolicy", "TagRole"]
    )
    patched = [e["method"] for e in world.kube_writes()]
    assert patched == ["PATCH"] * (len(CONTROLLER_OBJECTS) + 1), world.kube_writes()
    tags = world.client("route53").list_tags_for_resource(
        ResourceType="hostedzone", ResourceId=made.zone_id
    )["ResourceTagSet"]["Tags"]
    assert OWNER_TAG in tag_map(tags)
    shown = world.cli("--state", state, "status", cwd=workdir)
    assert shown.returncode == 3 and "hosted_zone          in_progress" in shown.stdout


def replaced_by_run(world: World, config: str, state: str, workdir: Path) -> None:
    """The script's IAM role and policy are gone, the controller runs this tool's release
    under this tool's role, and the script's own kustomize objects are gone."""
    made = world.setup_script
    iam = world.client("iam")
    roles = {
        r["RoleName"] for page in iam.get_paginator("list_roles").paginate() for r in page["Roles"]
    }
    policies = {
        p["Arn"]
        for page in iam.get_paginator("list_policies").paginate(Scope="Local")
        for p in page["Policies"]
    }
    assert made.role_name not in roles and made.policy_arn not in policies, (roles, policies)

    ours = world.cli("--state", state, "outputs", "controller_role_arn", cwd=workdir)
    assert ours.returncode == 0, ours.stdout + ours.stderr
    kube = kube_client(world)
    account = kube_get(kube, "v1", "ServiceAccount", CONTROLLER, KUBE_SYSTEM)
    assert account is not None
    annotation = account["metadata"]["annotations"]["eks.amazonaws.com/role-arn"]
    assert annotation == ours.stdout.strip() != made.role_arn

    wanted = load_config(config)
    deployment = kube_get(kube, "apps/v1", "Deployment", CONTROLLER, KUBE_SYSTEM)
    assert deployment is not None
    containers = deployment["spec"]["template"]["spec"]["containers"]
    image = f"{wanted.controller_image_repository}:{wanted.controller_version}"
    assert [c["image"] for c in containers] == [image]
    for container in containers:
        env = container.get("env") or []
        assert not [e for e in env if e["name"] == "CLUSTER_NAME"], env
        assert f"{CONTROLLER}-config" not in json.dumps(container), container
    # Nor does a new pod mount the script's webhook Secret, which run deletes.
    assert f"{WEBHOOK}-tls" not in json.dumps(deployment["spec"]["template"]["spec"]["volumes"])

    left = [(kind, name) for api, kind, name, ns in OLD_ONLY if kube_get(kube, api, kind, name, ns)]
    assert left == [], f"the old controller's objects left after run: {left}"


def removed_what_was_taken_over_only(world: World, before: set[str], alb: set[str]) -> None:
    """The world after rollback is the world before the import, without what was taken
    over and what the controller made for its Ingress (`alb`: the ALB and its target
    groups; the security groups), and with nothing added."""
    made = world.setup_script
    sub, root_zone = f"{made.subdomain}.", world.root_zone_id
    cluster = load_config(made.config_path).cluster_name
    controller_made = f"{CONTROLLER_TAG}={cluster}"  # the ALB's group, the backend group
    gone = {
        item
        for item in before
        if item.startswith(f"route53 {sub} ")  # the zone and every record in it
        or item.startswith(f"route53 example.com. record {sub} NS ")  # the delegation
        or (item.startswith("ec2 security-group ") and controller_made in item)
    }
    gone |= alb
    gone |= {
        f"acm {REGION} {made.certificate_arn}",
        f"iam role {made.role_name}",
        f"iam policy {made.policy_arn}",
        "kube sandbox Ingress istio-system/istio-ingress",
    }
    gone |= {f"kube sandbox {kind} {ns or ''}/{name}" for _, kind, name, ns in CONTROLLER_OBJECTS}
    gone |= {item for item in before if item.startswith("kube sandbox TargetGroupBinding ")}
    assert gone <= before, sorted(gone - before)  # each names something the world had
    assert len(alb) >= 2 and any(item.startswith("ec2 security-group ") for item in gone)

    after = inventory(world)
    assert sorted(after - before) == [], "left behind (not there before the import)"
    assert sorted(before - after - gone) == [], "removed, but not taken over"
    assert sorted(gone & after) == [], "taken over, but not removed"
    # Named, as the issue names them: what stays.
    kept = [
        f"acm {REGION} {made.root_certificate_arn}",  # never asked for, never taken over
        f"route53 example.com. zone {root_zone}",
        "iam oidc-provider",  # eksctl's
        "ec2 subnet-tag kubernetes.io/role/elb=1",  # the script's users' role tags
        "ec2 subnet-tag kubernetes.io/role/internal-elb=1",
        "ec2 subnet-tag kubernetes.io/cluster/",
    ]
    for prefix in kept:
        assert any(item.startswith(prefix) for item in after), prefix


# ---- the world, listed ---------------------------------------------------------------------


def inventory(world: World) -> set[str]:
    """One line per thing in the world's AWS and Kubernetes: zones and their records (with
    their values), certificates in every region, IAM roles, policies and OIDC providers,
    subnet tags, security groups (with their tags), load balancers and target groups, and
    the Kubernetes objects of KINDS in each cluster."""
    return aws_inventory(world) | kube_inventory(world)


def aws_inventory(world: World) -> set[str]:
    items: set[str] = set()
    route53 = world.client("route53")
    for page in route53.get_paginator("list_hosted_zones").paginate():
        for zone in page["HostedZones"]:
            zone_id = zone["Id"].split("/")[-1]
            items.add(f"route53 {zone['Name']} zone {zone_id}")
            for record in world.records(zone_id):
                values = sorted(v["Value"] for v in record.get("ResourceRecords", []))
                alias = record.get("AliasTarget", {}).get("DNSName", "")
                shown = f"route53 {zone['Name']} record {record['Name']} {record['Type']} "
                items.add(shown + (alias or " ".join(values)))
    for region in regions(world):
        items |= {f"acm {region} {arn}" for arn in certificate_arns(world, region)}
    iam = world.client("iam")
    for page in iam.get_paginator("list_roles").paginate():
        items |= {f"iam role {r['RoleName']}" for r in page["Roles"]}
    for page in iam.get_paginator("list_policies").paginate(Scope="Local"):
        items |= {f"iam policy {p['Arn']}" for p in page["Policies"]}
    providers = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    items |= {f"iam oidc-provider {p['Arn']}" for p in providers}
    ec2 = world.client("ec2")
    for page in ec2.get_paginator("describe_subnets").paginate():
        for subnet in page["Subnets"]:
            tags = subnet.get("Tags", [])
            items |= {f"ec2 subnet-tag {t['Key']}={t['Value']} {subnet['SubnetId']}" for t in tags}
    for page in ec2.get_paginator("describe_security_groups").paginate():
        for group in page["SecurityGroups"]:
            tags = sorted(f"{t['Key']}={t['Value']}" for t in group.get("Tags", []))
            items.add(f"ec2 security-group {group['GroupId']} {' '.join(tags)}")
    elbv2 = world.client("elbv2")
    items |= {f"elbv2 loadbalancer {arn}" for arn in load_balancer_arns(world)}
    for page in elbv2.get_paginator("describe_target_groups").paginate():
        items |= {f"elbv2 targetgroup {g['TargetGroupArn']}" for g in page["TargetGroups"]}
    return items


def kube_inventory(world: World) -> set[str]:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    items: set[str] = set()
    for context in CONTEXTS:
        kube = kube_client(world, None if context == "sandbox" else context)
        for api_version, kind in KINDS:
            try:
                found = kube.resources.get(api_version=api_version, kind=kind).get().to_dict()
            except (NotFoundError, ResourceNotFoundError):
                continue  # a kind whose CRD is not there
            for obj in found["items"]:
                meta = obj["metadata"]
                items.add(f"kube {context} {kind} {meta.get('namespace', '')}/{meta['name']}")
    return items


def regions(world: World) -> list[str]:
    """Every region the account has enabled (the config's and us-east-1 among them)."""
    listed = world.client("ec2").describe_regions(AllRegions=True)["Regions"]
    found = [r["RegionName"] for r in listed if r.get("OptInStatus") != "not-opted-in"]
    assert REGION in found and "us-east-1" in found, found
    return found


def certificate_arns(world: World, region: str | None = None) -> set[str]:
    """The ACM certificates' ARNs, in `region` or in every region the world has."""
    arns: set[str] = set()
    for name in [region] if region else regions(world):
        paginator = world.client("acm", name).get_paginator("list_certificates")
        pages = paginator.paginate()
        arns |= {c["CertificateArn"] for p in pages for c in p["CertificateSummaryList"]}
    return arns


def script_alb(world: World, dns: str) -> set[str]:
    """The inventory lines of the ALB named `dns` and of its target groups."""
    elbv2 = world.client("elbv2")
    balancers = elbv2.describe_load_balancers()["LoadBalancers"]
    arn = next(b["LoadBalancerArn"] for b in balancers if b["DNSName"] == dns)
    groups = elbv2.describe_target_groups(LoadBalancerArn=arn)["TargetGroups"]
    return {f"elbv2 loadbalancer {arn}"} | {
        f"elbv2 targetgroup {g['TargetGroupArn']}" for g in groups
    }


def load_balancer_arns(world: World) -> set[str]:
    paginator = world.client("elbv2").get_paginator("describe_load_balancers")
    return {b["LoadBalancerArn"] for page in paginator.paginate() for b in page["LoadBalancers"]}


def zones_named(world: World, name: str) -> int:
    """How many public hosted zones are named `name`: ListHostedZonesByName, every page."""
    route53, request, count = world.client("route53"), {"DNSName": name, "MaxItems": "1"}, 0
    while True:
        page = route53.list_hosted_zones_by_name(**request)
        zones = page["HostedZones"]
        count += sum(z["Name"] == f"{name}." and not z["Config"]["PrivateZone"] for z in zones)
        if not page.get("IsTruncated"):
            return count
        request = {
            "DNSName": page["NextDNSName"],
            "HostedZoneId": page["NextHostedZoneId"],
            "MaxItems": "1",
        }


def alias_target(world: World, zone_id: str) -> str | None:
    """The load balancer DNS name `kubeflow.<subdomain>` points at (alias A), lower-case."""
    record = world.record(zone_id, HOST, "A")
    if record is None or "AliasTarget" not in record:
        return None
    name = record["AliasTarget"]["DNSName"].rstrip(".").lower()
    return name.removeprefix("dualstack.")
