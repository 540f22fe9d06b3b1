"""Config loading and validation (pure: no AWS)."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.config import dns_name_problem, load_config
from orchestrator.errors import UsageError

BAD = sorted((Path(__file__).parent / "bad_inputs" / "configs").glob("*.yaml"))

GOOD = """
cluster: {name: kube-eks-cluster, region: us-west-2}
route53:
  rootDomain: {name: Example.COM., hostedZoneId: /hostedzone/Z0123456789}
  subDomain:
    name: platform.example.com
    subjectAlternativeNames: ["*.platform.example.com", "platform.example.com",
                              "platform.example.com"]
kubeflow:
  alb: {scheme: internal}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


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
def test_bad_configs_are_refused_naming_the_problem(path: Path) -> None:
    with pytest.raises(UsageError) as error:
        load_config(path)
    assert expectation(path) in str(error.value)


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
