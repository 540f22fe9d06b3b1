"""Config loading and validation (pure: no AWS)."""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from orchestrator.builders.controller_manifests import BUNDLED_VERSION, BUNDLED_VERSIONS
from orchestrator.config import (
    ACM_FIRST_NAME_MAX,
    ACM_NAMES_MAX,
    DNS_NAME_MAX,
    MAX_NESTING,
    Config,
    check_kube_context,
    dns_name_problem,
    load_config,
)
from orchestrator.errors import UsageError

BAD = sorted((Path(__file__).parent / "bad_inputs" / "configs").glob("*.yaml"))
# The bad-input e2e test runs in the sandbox, whose kubeconfig has these contexts.
SANDBOX_CONTEXTS = ("sandbox", "staging")

GOOD = """
cluster: {name: kube-eks-cluster, region: us-west-2}
route53:
  rootDomain: {name: Example.COM., hostedZoneId: /hostedzone/Z0123456789}
  subDomain:
    name: platform.example.com
    subjectAlternativeNames: ["*.platform.example.com"]
    certificateNames: ["platform.example.com", "platform.example.com"]
kubeflow:
  alb: {scheme: internal}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def config_with(
    *,
    sub: str = "platform.example.com",
    root: str = "example.com",
    sans: tuple[str, ...] = (),
    region: str = "us-west-2",
    cluster: str = "kube-eks-cluster",
) -> str:
    listed = ", ".join(f"'{name}'" for name in sans)
    return (
        f"cluster: {{name: '{cluster}', region: '{region}'}}\n"
        f"route53:\n  rootDomain: {{name: {root}, hostedZoneId: Z0123456789}}\n"
        f"  subDomain: {{name: {sub}, subjectAlternativeNames: [{listed}]}}\n"
    )


def refusal(tmp_path: Path, text: str) -> str:
    with pytest.raises(UsageError) as error:
        load_config(write(tmp_path, text))
    return str(error.value)


def write_kubeconfig(path: Path, contexts: tuple[str, ...], current: str | None = None) -> Path:
    """A kubeconfig with a context, cluster and user per name."""
    data: dict[str, object] = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": c, "cluster": {"server": f"https://{c}.test"}} for c in contexts],
        "users": [{"name": c, "user": {"token": "t"}} for c in contexts],
        "contexts": [{"name": c, "context": {"cluster": c, "user": c}} for c in contexts],
    }
    if current is not None:
        data["current-context"] = current
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def sandbox_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = write_kubeconfig(tmp_path / "kubeconfig", SANDBOX_CONTEXTS, current="sandbox")
    monkeypatch.setenv("KUBECONFIG", str(path))
    return path


def config(context: str | None = None) -> Config:
    return Config(
        cluster_name="kube-eks-cluster",
        region="us-west-2",
        root_domain="example.com",
        root_zone_id="Z0123456789",
        subdomain="platform.example.com",
        kube_context=context,
    )


def expectation(path: Path) -> str:
    first = path.read_bytes().splitlines()[0].decode()
    assert first.startswith("# expect: ")
    return first.removeprefix("# expect: ")


def test_a_good_config_is_normalised(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, GOOD))
    assert config.root_domain == "example.com"
    assert config.root_zone_id == "Z0123456789"
    assert config.subject_alternative_names == ("platform.example.com",)
    assert config.alb_scheme == "internal"
    assert config.kubeflow_host == "kubeflow.platform.example.com"


def test_the_deployment_id_is_stable_and_depends_on_identity(tmp_path: Path) -> None:
    one = load_config(write(tmp_path, GOOD)).deployment_id
    assert one == load_config(write(tmp_path, GOOD)).deployment_id
    assert one.startswith("platform-example-com-")
    other = load_config(write(tmp_path, GOOD.replace("us-west-2", "eu-west-1")))
    assert other.deployment_id != one


def test_keys_the_old_script_wrote_back_are_accepted(tmp_path: Path) -> None:
    legacy = (
        GOOD
        + """  alb:
    dns: abc.us-west-2.elb.amazonaws.com
    serviceAccount: {name: alb-ingress-controller, policyArn: arn:aws:iam::1:policy/x}
"""
    )
    legacy = legacy.replace("kubeflow:\n  alb: {scheme: internal}\n", "kubeflow:\n")
    legacy = legacy.replace(
        "    name: platform.example.com\n",
        "    name: platform.example.com\n    us-west-2-certARN: arn:x\n",
    )
    assert load_config(write(tmp_path, legacy)).alb_scheme == "internet-facing"


def test_every_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = GOOD.replace("us-west-2", "nowhere").replace("internal", "public")
    with pytest.raises(UsageError) as error:
        load_config(write(tmp_path, text))
    message = str(error.value)
    assert "cluster.region" in message and "kubeflow.alb.scheme" in message
    assert "2 problems" in message


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_configs_are_refused_naming_the_problem(path: Path, sandbox_kubeconfig: Path) -> None:
    """What the CLI checks before any call: the config, then its kube context."""
    with pytest.raises(UsageError) as error:
        check_kube_context(load_config(path))
    assert expectation(path) in str(error.value)
    assert "\n" not in str(error.value)


def test_a_directory_or_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a regular file"):
        load_config(tmp_path)
    with pytest.raises(UsageError, match="not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    "name, problem",
    [
        ("example.com", None),
        ("a.b.example.com", None),
        ("xn--bcher-kva.example", None),
        ("com", "at least two labels"),
        ("-bad.example.com", "invalid label"),
        ("bad-.example.com", "invalid label"),
        ("a..example.com", "invalid label"),
        ("*.example.com", "invalid label"),
        ("ex ample.com", "invalid label"),
        ("a" * 250 + ".com", "at most 253"),
        (42, "must be a string"),
    ],
)
def test_dns_name_syntax(name: object, problem: str | None) -> None:
    found = dns_name_problem(name)
    assert (found is None) if problem is None else (problem in found)


def test_wildcards_only_where_allowed() -> None:
    assert dns_name_problem("*.example.com", wildcard=True) is None
    assert dns_name_problem("a.*.example.com", wildcard=True) is not None


def test_newlines_do_not_slip_past_the_name_rules(tmp_path: Path) -> None:
    # `$` also matches before a final newline; every rule must match the whole value.
    assert "invalid label" in dns_name_problem("platform\n.example.com")
    assert "cluster.name" in refusal(tmp_path, GOOD.replace("kube-eks-cluster", '"kube\\n"'))
    zone = GOOD.replace("/hostedzone/Z0123456789", '"Z0123456789\\n"')
    assert "route53.rootDomain.hostedZoneId" in refusal(tmp_path, zone)
    context = GOOD + 'kubernetes: {context: "sandbox\\n"}\n'
    assert "kubernetes.context" in refusal(tmp_path, context)
    unknown = refusal(tmp_path, GOOD + '"kube\\nflow": {}\n')
    assert "'kube\\nflow': unknown key" in unknown and "\n" not in unknown


# ---- ACM's limits ---------------------------------------------------------------------------


def test_the_limits_are_botocores() -> None:
    """DNS_NAME_MAX and ACM_NAMES_MAX are in botocore's ACM model; the 64 is in its docs."""
    request = service_model("acm").operation_model("RequestCertificate").input_shape.members
    assert request["DomainName"].metadata["max"] == DNS_NAME_MAX
    assert request["SubjectAlternativeNames"].metadata["max"] == ACM_NAMES_MAX
    assert f"cannot exceed {ACM_FIRST_NAME_MAX} octets" in request["DomainName"].documentation


def test_the_subdomain_leaves_room_for_the_certificates_wildcard(tmp_path: Path) -> None:
    # '*.' + subdomain is the certificate's first name: ACM takes at most 64 characters.
    longest = "a" * (62 - len(".example.com")) + ".example.com"
    assert len(f"*.{longest}") == ACM_FIRST_NAME_MAX
    config = load_config(write(tmp_path, config_with(sub=longest)))
    assert dns_name_problem(config.kubeflow_host) is None
    message = refusal(tmp_path, config_with(sub="a" + longest))
    assert "route53.subDomain.name" in message and "at most 64" in message
    assert "at most 62" in message and "\n" not in message


def test_certificate_names_need_a_top_level_label_of_two_characters(tmp_path: Path) -> None:
    text = config_with(sub="platform.example.c", root="example.c")
    assert "route53.subDomain.name" in refusal(tmp_path, text)
    load_config(write(tmp_path, config_with(sub="platform.example.co", root="example.co")))


def test_at_most_99_alternative_names_besides_the_wildcard(tmp_path: Path) -> None:
    def sans(count: int) -> str:
        names = tuple(f"*.n{i}.platform.example.com" for i in range(count))
        # The wildcard is the certificate's first name whether listed or not.
        return config_with(sans=(*names, "*.platform.example.com"))

    assert len(load_config(write(tmp_path, sans(99))).subject_alternative_names) == 99
    message = refusal(tmp_path, sans(100))
    assert "route53.subDomain.subjectAlternativeNames" in message and "at most 100" in message


# ---- regions --------------------------------------------------------------------------------


def botocore_eks_regions() -> list[str]:
    import boto3

    session = boto3.session.Session()
    return [
        region
        for partition in session.get_available_partitions()
        for region in session.get_available_regions("eks", partition_name=partition)
    ]


def test_every_region_botocore_knows_for_eks_is_accepted(tmp_path: Path) -> None:
    regions = botocore_eks_regions()
    assert {"us-west-2", "cn-north-1", "us-gov-west-1"} <= set(regions)
    # (The isolated partitions need the controller's image repository named: below.)
    mirror = "kubeflow: {alb: {controller: {imageRepository: registry.example.com/lbc}}}\n"
    for region in regions:
        assert load_config(write(tmp_path, config_with(region=region) + mirror)).region == region


@pytest.mark.parametrize(
    "region, says",
    [
        ("xx-east-9", "is not an AWS region with EKS"),
        ("us-west", "is not an AWS region with EKS"),
        ("US-WEST-2", "is not an AWS region with EKS"),
        ("us-west-2 ", "is not an AWS region with EKS"),
        # Shaped like a region of the aws partition: maybe newer than this botocore.
        ("us-east-9", "upgrade boto3 and botocore"),
        ("cn-east-7", "upgrade boto3 and botocore"),
    ],
)
def test_regions_botocore_does_not_know_are_refused(tmp_path: Path, region: str, says: str) -> None:
    message = refusal(tmp_path, config_with(region=region))
    assert message.startswith(f"{tmp_path / 'config.yaml'}: invalid config: cluster.region: ")
    assert says in message


def test_a_5000_character_region_is_one_short_line(tmp_path: Path) -> None:
    message = refusal(tmp_path, config_with(region="us-" + "e" * 4995 + "-1"))
    assert "cluster.region" in message and "(5000 characters)" in message
    assert "\n" not in message and len(message) < 300


# ---- what AWS and Kubernetes get from the config ------------------------------------------------

EDGE_CASES = {
    "shortest": config_with(sub="a.b.co", root="b.co", cluster="a"),
    # 62 characters: the longest subdomain ACM's 64 for '*.<subdomain>' leaves.
    "longest": config_with(sub="z9-" * 15 + "z.xyz.example.com", cluster="A" + "b_-" * 33),
    "many short labels": config_with(
        sub=".".join("abcdefghijklmnopqrstuvwxyz") + ".co", root="z.co"
    ),
    "digits and punycode": config_with(sub="0.xn--bcher-kva.example", root="xn--bcher-kva.example"),
    "a slug cut at a hyphen": config_with(sub="a" * 39 + "-b.example.com"),
}


@functools.cache
def service_model(service: str) -> Any:
    import botocore.session

    return botocore.session.get_session().get_service_model(service)


def botocore_rule(service: str, shape: str) -> tuple[int, int, str]:
    """(min, max, pattern) of a botocore shape; `\\p{...}` classes narrowed to ASCII."""
    meta = service_model(service).shape_for(shape).metadata
    pattern = meta.get("pattern", "(?s:.*)")
    for unicode_class, ascii_class in (("\\p{L}", "A-Za-z"), ("\\p{Z}", " "), ("\\p{N}", "0-9")):
        pattern = pattern.replace(unicode_class, ascii_class)
    return meta.get("min", 0), meta["max"], pattern


def obeys(value: str, rule: tuple[int, int, str]) -> bool:
    low, high, pattern = rule
    return low <= len(value) <= high and re.fullmatch(pattern, value) is not None


@pytest.mark.parametrize("text", EDGE_CASES.values(), ids=EDGE_CASES.keys())
def test_every_derived_name_is_within_aws_rules(tmp_path: Path, text: str) -> None:
    """The names the phases derive from a valid config, against botocore's models (and the
    Kubernetes label rule): none of them can be refused after something was created."""
    from orchestrator.builders.subnets import cluster_tag
    from orchestrator.phase import OWNER_TAG
    from orchestrator.states.controller_iam import names
    from orchestrator.states.hosted_zone import caller_reference
    from orchestrator.states.subnet_tags import CONTROLLER_CLUSTER_TAG

    config = load_config(write(tmp_path, text))
    deployment = config.deployment_id
    role, policy = names(deployment)
    assert role == f"alb-controller-{deployment}"  # never cut short: two ids cannot collide
    assert obeys(role, botocore_rule("iam", "roleNameType"))
    assert obeys(policy, botocore_rule("iam", "policyNameType"))
    for service, key, value in (("acm", "TagKey", "TagValue"), ("elbv2", "TagKey", "TagValue")):
        assert obeys(OWNER_TAG, botocore_rule(service, key))
        assert obeys(deployment, botocore_rule(service, value))
    assert obeys(OWNER_TAG, botocore_rule("iam", "tagKeyType"))
    assert obeys(deployment, botocore_rule("iam", "tagValueType"))
    assert obeys(deployment, botocore_rule("route53", "TagValue"))
    # EC2's model gives tag keys a length only; its character rule is the other services'.
    assert obeys(cluster_tag(config.cluster_name), botocore_rule("ec2", "TagKey"))
    assert obeys(cluster_tag(config.cluster_name), botocore_rule("elbv2", "TagKey"))
    assert obeys(CONTROLLER_CLUSTER_TAG, botocore_rule("elbv2", "TagKey"))
    assert obeys(config.cluster_name, botocore_rule("elbv2", "TagValue"))
    assert obeys(config.cluster_name, botocore_rule("eks", "ClusterName"))
    assert obeys(caller_reference(deployment, "0" * 16), botocore_rule("route53", "Nonce"))
    comment = f"managed by orchestrator deployment {deployment}"
    assert obeys(comment, botocore_rule("route53", "ResourceDescription"))
    # Kubernetes label values: at most 63, alphanumerics at both ends, '-', '_', '.' inside.
    assert re.fullmatch(r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?", deployment)
    domain = botocore_rule("acm", "DomainNameString")
    assert obeys(f"*.{config.subdomain}", domain)
    assert len(f"*.{config.subdomain}") <= ACM_FIRST_NAME_MAX
    for name in (config.subdomain, config.kubeflow_host, *config.subject_alternative_names):
        assert obeys(name, domain) and dns_name_problem(name) is None


def test_the_edge_cases_are_at_the_edges(tmp_path: Path) -> None:
    longest = load_config(write(tmp_path, EDGE_CASES["longest"]))
    assert len(longest.subdomain) == ACM_FIRST_NAME_MAX - 2
    assert len(longest.cluster_name) == 100
    assert len(longest.deployment_id) == 49


# ---- YAML: duplicate keys and nesting ----------------------------------------------------------


@pytest.mark.parametrize(
    "text, says",
    [
        (
            GOOD + "cluster: {name: other, region: us-west-2}\n",
            "cluster: duplicate key (lines 2 and 11)",
        ),
        (
            GOOD.replace(
                "    name: platform.example.com\n",
                "    name: platform.example.com\n    name: other.example.com\n",
            ),
            "route53.subDomain.name: duplicate key (lines 6 and 7)",
        ),
        (
            GOOD.replace("{scheme: internal}", "{scheme: internal, scheme: internet-facing}"),
            "kubeflow.alb.scheme: duplicate key (twice on line 10)",
        ),
        # Quoting does not make another key.
        (GOOD.replace("kubeflow:", '"kubeflow": {}\nkubeflow:'), "kubeflow: duplicate key"),
        # Inside a list too (a mapping where a name belongs is refused later, but first this).
        (
            GOOD.replace('["*.platform.example.com"]', '["*.platform.example.com", {a: 1, a: 2}]'),
            "route53.subDomain.subjectAlternativeNames[1].a: duplicate key",
        ),
    ],
)
def test_duplicate_keys_are_refused_by_path_and_line(tmp_path: Path, text: str, says: str) -> None:
    message = refusal(tmp_path, text)
    assert says in message and "\n" not in message


def test_every_duplicate_key_is_named(tmp_path: Path) -> None:
    text = GOOD + "cluster: {}\nroute53: {}\n"
    message = refusal(tmp_path, text)
    assert "2 problems" in message
    assert "cluster: duplicate key" in message and "route53: duplicate key" in message


def nested(levels: int) -> str:
    """cluster.name as a list nested so the document is `levels` collections deep."""
    inner = levels - 2  # the top-level mapping and cluster's
    return GOOD.replace("{name: kube-eks-cluster,", "{name: " + "[" * inner + "]" * inner + ",")


def test_nesting_beyond_the_limit_is_refused_while_scanning(tmp_path: Path) -> None:
    assert "cluster.name: expected a string" in refusal(tmp_path, nested(MAX_NESTING))
    message = refusal(tmp_path, nested(MAX_NESTING + 1))
    assert f"nested more than {MAX_NESTING} levels deep (line 2)" in message


@pytest.mark.parametrize(
    "text",
    [
        "cluster: " + "[" * 20_000,
        "cluster: " + "{a: " * 10_000,
        "".join(f"{' ' * i}k{i}:\n" for i in range(300)),
        "- " * 20_000 + "x",
    ],
    ids=["flow lists", "flow mappings", "block mappings", "block lists"],
)
def test_deep_documents_end_quickly_in_one_line(
    tmp_path: Path, text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Quickly: the scan stops a few tokens past MAX_NESTING, and nothing composes the
    # document (unchecked, PyYAML's scanner takes ~15 s and its composer overflows).
    scanned = []
    scan = yaml.scan

    def counted(*args: Any, **kwargs: Any) -> Any:
        for token in scan(*args, **kwargs):
            scanned.append(token)
            yield token

    monkeypatch.setattr(yaml, "scan", counted)
    monkeypatch.setattr(yaml.SafeLoader, "get_single_node", lambda _: pytest.fail("composed"))
    message = refusal(tmp_path, text)
    assert "nested more than" in message and "\n" not in message
    assert len(scanned) <= 5 * MAX_NESTING  # of tens of thousands


# ---- the kubeconfig ---------------------------------------------------------------------------


def kube_refusal(context: str | None = None) -> str:
    with pytest.raises(UsageError) as error:
        check_kube_context(config(context))
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_context_in_the_kubeconfig_passes(sandbox_kubeconfig: Path) -> None:
    check_kube_context(config("staging"))
    check_kube_context(config(None))  # the current context, sandbox


def test_a_context_missing_from_the_kubeconfig_is_named_with_those_there(
    sandbox_kubeconfig: Path,
) -> None:
    message = kube_refusal("production")
    assert "kubernetes.context 'production' is not in the kubeconfig" in message
    assert str(sandbox_kubeconfig) in message and "its contexts: sandbox, staging" in message


def test_kubeconfig_files_merge_as_the_python_client_merges_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one = write_kubeconfig(tmp_path / "one", ("a",), current="a")
    two = write_kubeconfig(tmp_path / "two", ("b",))
    missing = tmp_path / "missing"
    monkeypatch.setenv("KUBECONFIG", f"{one}::{missing}:{two}")
    check_kube_context(config("b"))  # a context from the second file
    check_kube_context(config(None))  # the first file's current context
    # The last file that sets current-context wins.
    write_kubeconfig(two, ("b",), current="c")
    assert "current-context 'c'" in kube_refusal(None)
    message = kube_refusal("c")
    assert f"({one}, {two})" in message and "its contexts: a, b" in message


def test_without_kubeconfig_the_default_file_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    message = kube_refusal("a")
    assert f"no kubeconfig at {tmp_path}/.kube/config;" in message
    assert "aws eks update-kubeconfig --name kube-eks-cluster --region us-west-2" in message
    monkeypatch.setenv("KUBECONFIG", ":")
    assert "KUBECONFIG names no file" in kube_refusal("a")
    monkeypatch.delenv("KUBECONFIG")
    (tmp_path / ".kube").mkdir()
    write_kubeconfig(tmp_path / ".kube" / "config", ("a",))
    check_kube_context(config("a"))


def test_no_current_context_needs_kubernetes_context(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(write_kubeconfig(tmp_path / "k", ("a", "b"))))
    message = kube_refusal(None)
    assert "has no current-context" in message and "its contexts: a, b" in message
    check_kube_context(config("b"))


def test_a_context_whose_cluster_is_missing_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_kubeconfig(tmp_path / "k", ("a",), current="a")
    data = yaml.safe_load(path.read_text())
    data["contexts"][0]["context"]["cluster"] = "gone"
    path.write_text(yaml.safe_dump(data))
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert "context 'a' names cluster 'gone', which is not in the kubeconfig" in kube_refusal()


@pytest.mark.parametrize(
    "text, says",
    [
        ("", "is empty"),
        ("- a\n", "is not a mapping"),
        ("contexts: [\n", "is not valid YAML"),
        ("contexts: {a: 1}\n", "contexts is not a list of entries with a name"),
        ("contexts: [{context: {}}]\n", "contexts is not a list of entries with a name"),
        ("clusters: [x]\n", "clusters is not a list of entries with a name"),
        ("contexts: " + "[" * 20_000, "nested more than"),
        ("contexts: []\n", "it has no contexts"),
    ],
)
def test_an_unusable_kubeconfig_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str, says: str
) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(text)
    monkeypatch.setenv("KUBECONFIG", str(path))
    assert says in kube_refusal("a")


def test_an_unreadable_kubeconfig_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(tmp_path))  # a directory
    assert f"cannot read kubeconfig {tmp_path}" in kube_refusal("a")
    (tmp_path / "latin1").write_bytes(b"contexts: [{name: caf\xe9}]\n")
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "latin1"))
    assert "is not UTF-8" in kube_refusal("a")


def test_the_state_block_names_where_the_state_lives(tmp_path: Path) -> None:
    text = (
        config_with() + "state: {url: 's3://team-state/kubeflow/state.json', kmsKeyId: alias/tf}\n"
    )
    loaded = load_config(write(tmp_path, text))
    assert (loaded.state_url, loaded.state_kms_key) == (
        "s3://team-state/kubeflow/state.json",
        "alias/tf",
    )
    # Where the state lives is not a setting: moving it does not change the deployment.
    assert not any(key.startswith("state") for key in loaded.settings())
    assert "state.url: s3://Bad_Bucket/s.json: not an S3 bucket name" in refusal(
        tmp_path, config_with() + "state: {url: 's3://Bad_Bucket/s.json'}\n"
    )
    assert "state.kmsKeyId: needs state.url s3://" in refusal(
        tmp_path, config_with() + "state: {url: team.json, kmsKeyId: alias/tf}\n"
    )


# ---- what an old setup script's config means -------------------------------------------------


def test_a_bare_alternative_name_is_refused_saying_what_to_write_for_either_meaning(
    tmp_path: Path,
) -> None:
    message = refusal(tmp_path, config_with(sans=("apps.platform.example.com",)))
    assert "route53.subDomain.subjectAlternativeNames[0]" in message
    assert "'*.apps.platform.example.com'" in message  # what the old script requested
    assert "route53.subDomain.certificateNames" in message  # where the name itself goes
    assert len(message.splitlines()) <= 2


def test_wildcard_alternative_names_and_exact_certificate_names_are_both_taken(
    tmp_path: Path,
) -> None:
    text = config_with(sans=("*.apps.platform.example.com",)).replace(
        "subjectAlternativeNames:",
        "certificateNames: [platform.example.com, '*.apps.platform.example.com'], "
        "subjectAlternativeNames:",
    )
    config = load_config(write(tmp_path, text))
    assert config.subject_alternative_names == (
        "*.apps.platform.example.com",
        "platform.example.com",
    )
    # Recorded as the certificate's names, whichever key listed them: a state file made by an
    # earlier release (which took bare entries as names) matches the config rewritten with
    # certificateNames.
    recorded = config.settings()["route53.subDomain.subjectAlternativeNames"]
    assert recorded == ["*.apps.platform.example.com", "platform.example.com"]


# ---- the controller's image registry, by partition and region --------------------------------


@pytest.mark.parametrize(
    ("region", "repository"),
    [
        ("us-west-2", "public.ecr.aws/eks/aws-load-balancer-controller"),
        ("eu-west-1", "public.ecr.aws/eks/aws-load-balancer-controller"),
        (
            "cn-north-1",
            "918309763551.dkr.ecr.cn-north-1.amazonaws.com.cn/amazon/aws-load-balancer-controller",
        ),
        (
            "cn-northwest-1",
            "961992271922.dkr.ecr.cn-northwest-1.amazonaws.com.cn/amazon/"
            "aws-load-balancer-controller",
        ),
        (
            "us-gov-west-1",
            "013241004608.dkr.ecr.us-gov-west-1.amazonaws.com/amazon/aws-load-balancer-controller",
        ),
    ],
)
def test_the_controller_image_comes_from_a_registry_the_partition_serves(
    tmp_path: Path, region: str, repository: str
) -> None:
    config = load_config(write(tmp_path, config_with(region=region)))
    assert config.controller_image_repository == repository


def test_a_partition_without_a_known_registry_needs_the_repository_named(tmp_path: Path) -> None:
    message = refusal(tmp_path, config_with(region="us-iso-east-1"))
    assert "kubeflow.alb.controller.imageRepository" in message and "aws-iso" in message
    mirror = "registry.example.com/mirror/aws-load-balancer-controller"
    text = config_with(region="us-iso-east-1") + (
        f"kubeflow: {{alb: {{controller: {{imageRepository: {mirror}}}}}}}\n"
    )
    assert load_config(write(tmp_path, text)).controller_image_repository == mirror


def test_the_controller_version_is_a_bundled_release_defaulting_to_the_newest(
    tmp_path: Path,
) -> None:
    assert load_config(write(tmp_path, config_with())).controller_version == BUNDLED_VERSION
    for given, meant in (("v3.4.3", "v3.4.3"), ("3.4.3", "v3.4.3"), ("v3.5.0", "v3.5.0")):
        text = config_with() + f"kubeflow: {{alb: {{controller: {{version: '{given}'}}}}}}\n"
        assert load_config(write(tmp_path, text)).controller_version == meant
    message = refusal(
        tmp_path, config_with() + "kubeflow: {alb: {controller: {version: v2.4.0}}}\n"
    )
    assert "kubeflow.alb.controller.version: 'v2.4.0' is not a release" in message
    assert all(version in message for version in BUNDLED_VERSIONS)
