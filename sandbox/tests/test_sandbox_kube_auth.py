"""The Kubernetes emulator as EKS presents itself: HTTPS under a per-cluster CA, short-lived
cluster-bound tokens from an exec credential plugin, and 401 for anything else."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from kubernetes import client, config, dynamic, watch
from sandbox_support import needs_kubectl

from kube_api_emulator import (
    ClusterAccess,
    ClusterTls,
    KubeApiServer,
    write_kubeconfig_contexts,
)
from orchestrator_sandbox import kubetoken
from orchestrator_sandbox.kubetoken import ClusterTokens

CLUSTER = "kube-eks-cluster"
SECRET = b"0123456789abcdef0123456789abcdef"


class Clock:
    def __init__(self, now: float = 1_700_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def wait_for(condition: Callable[[], Any], timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"condition not met within {timeout}s")


class EksLike:
    """An HTTPS API server with its own CA and token authentication, and its kubeconfig."""

    def __init__(self, directory: Path, ttl: float, tokens: ClusterTokens | None = None) -> None:
        self.directory = directory
        self.tls = ClusterTls.issue()
        self.tokens = tokens or ClusterTokens.in_directory(directory, ttl=ttl)
        self.seen: list[tuple[str, str | None]] = []  # (token, user) per request
        self.audited: list[dict[str, Any]] = []
        authenticate = self.tokens.authenticator(CLUSTER)

        def recording(token: str) -> str | None:
            user = authenticate(token)
            self.seen.append((token, user))
            return user

        self.server = KubeApiServer(
            tls=self.tls.server_context(), authenticator=recording, audit=self.audited.append
        )
        self.kubeconfig = directory / "kubeconfig"

    def __enter__(self) -> EksLike:
        self.server.start()
        access = ClusterAccess(
            self.server.url,
            ca_pem=self.tls.ca_pem,
            exec_args=kubetoken.exec_args(self.directory, CLUSTER),
        )
        write_kubeconfig_contexts(self.kubeconfig, {"sandbox": access})
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.server.stop()

    def request(self, path: str, token: str | None, ca_pem: str | None = None) -> tuple[int, Any]:
        context = ssl.create_default_context(cadata=ca_pem or self.tls.ca_pem)
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(self.server.url + path, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=5, context=context) as response:
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())


@pytest.fixture
def eks(tmp_path: Path) -> Iterator[EksLike]:
    with EksLike(tmp_path, ttl=900) as world:
        yield world


# --- tokens -------------------------------------------------------------------------------------


def test_tokens_are_bound_to_a_cluster_and_expire() -> None:
    clock = Clock()
    tokens = ClusterTokens(SECRET, ttl=900, clock=clock)
    token, expires = tokens.issue(CLUSTER)
    assert token.startswith("k8s-aws-v1.") and "=" not in token
    assert expires == clock.now + 900
    assert tokens.verify(token, CLUSTER)
    assert not tokens.verify(token, "kube-eks-staging")
    assert not ClusterTokens(b"another world's secret", clock=clock).verify(token, CLUSTER)
    clock.now += 899
    assert tokens.verify(token, CLUSTER)
    clock.now += 1
    assert not tokens.verify(token, CLUSTER)


@pytest.mark.parametrize(
    "garbage", ["", "k8s-aws-v1.", "k8s-aws-v1.!!!", "Bearer x", "k8s-aws-v1.aGk"]
)
def test_malformed_tokens_are_refused(garbage: str) -> None:
    assert not ClusterTokens(SECRET).verify(garbage, CLUSTER)


def test_a_tampered_token_is_refused() -> None:
    tokens = ClusterTokens(SECRET)
    token, _ = tokens.issue(CLUSTER)
    url = base64.urlsafe_b64decode(token[len("k8s-aws-v1.") :] + "==").decode()
    later = url.replace("X-Sandbox-Expires=", "X-Sandbox-Expires=9")
    forged = "k8s-aws-v1." + base64.urlsafe_b64encode(later.encode()).decode().rstrip("=")
    assert not tokens.verify(forged, CLUSTER)


def test_the_world_keeps_its_secret_private_and_its_ttl_for_the_plugin(tmp_path: Path) -> None:
    first = ClusterTokens.in_directory(tmp_path, ttl=380)
    key_file = tmp_path / kubetoken.KEY_FILE
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    token, _ = first.issue(CLUSTER)
    again = ClusterTokens.in_directory(tmp_path)
    assert again.ttl == 380 and again.verify(token, CLUSTER)
    assert ClusterTokens.read(tmp_path).ttl == 380
    assert ClusterTokens.in_directory(tmp_path, ttl=900).verify(token, CLUSTER)
    assert ClusterTokens.read(tmp_path).ttl == 900


def run_plugin(directory: Path, cluster: str = CLUSTER) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *kubetoken.exec_args(directory, cluster)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_plugin_prints_an_exec_credential_like_aws_eks_get_token(tmp_path: Path) -> None:
    tokens = ClusterTokens.in_directory(tmp_path, ttl=900)
    before = time.time()
    result = run_plugin(tmp_path)
    assert result.returncode == 0, result.stderr
    credential = json.loads(result.stdout)
    assert credential["apiVersion"] == "client.authentication.k8s.io/v1beta1"
    assert credential["kind"] == "ExecCredential"
    status = credential["status"]
    assert tokens.verify(status["token"], CLUSTER)
    stamp = status["expirationTimestamp"]
    assert stamp.endswith("Z")
    reported = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    # 14 minutes out for a 15-minute token, as `aws eks get-token` reports it.
    assert before + 840 - 2 <= reported <= time.time() + 840


def test_the_plugin_fails_plainly_without_a_world(tmp_path: Path) -> None:
    result = run_plugin(tmp_path)
    assert result.returncode == 1
    assert "no sandbox token key" in result.stderr


def test_the_plugin_imports_little() -> None:
    heavy = ("boto3", "botocore", "kubernetes", "moto", "cryptography", "yaml", "urllib3")
    code = (
        "import sys, orchestrator_sandbox.kubetoken;"
        f"print([m for m in sys.modules if m.split('.')[0] in {heavy!r}])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


# --- TLS ----------------------------------------------------------------------------------------


def test_each_cluster_has_its_own_ca_and_a_certificate_for_loopback() -> None:
    first, second = ClusterTls.issue(), ClusterTls.issue()
    assert first.ca_pem != second.ca_pem
    cert = x509.load_pem_x509_certificate(first.cert_pem.encode())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
    assert {"kubernetes", "kubernetes.default", "kubernetes.default.svc"} <= set(
        sans.get_values_for_type(x509.DNSName)
    )
    ca = x509.load_pem_x509_certificate(first.ca_pem.encode())
    assert cert.issuer == ca.subject


def test_https_rejects_a_client_that_trusts_another_clusters_ca(eks: EksLike) -> None:
    token, _ = eks.tokens.issue(CLUSTER)
    assert eks.server.url.startswith("https://127.0.0.1:")
    assert eks.request("/version", token)[0] == 200
    with pytest.raises(urllib.error.URLError) as caught:
        eks.request("/version", token, ca_pem=ClusterTls.issue().ca_pem)
    assert isinstance(caught.value.reason, ssl.SSLCertVerificationError)


def test_a_stalled_handshake_does_not_hold_up_other_clients(eks: EksLike) -> None:
    token, _ = eks.tokens.issue(CLUSTER)
    host, port = eks.server.url.removeprefix("https://").split(":")
    with (
        socket.create_connection((host, int(port))) as stalled,
        socket.create_connection((host, int(port))) as broken,
    ):
        broken.sendall(b"GET / HTTP/1.1\r\n\r\n")  # plain HTTP on the TLS port
        started = time.monotonic()
        assert eks.request("/version", token)[0] == 200
        assert time.monotonic() - started < 2
        stalled.settimeout(0.1)
        with pytest.raises(TimeoutError):
            stalled.recv(1)  # still waiting on its own handshake, harmlessly


# --- authentication -----------------------------------------------------------------------------


def test_every_path_needs_a_token_this_cluster_accepts(eks: EksLike) -> None:
    unauthorized = {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": "Unauthorized",
        "reason": "Unauthorized",
        "code": 401,
    }
    staging, _ = ClusterTokens.in_directory(eks.directory).issue("kube-eks-staging")
    for path in ("/healthz", "/version", "/api", "/api/v1/namespaces"):
        assert eks.request(path, None) == (401, unauthorized), path
        assert eks.request(path, staging) == (401, unauthorized), path
        assert eks.request(path, "sandbox-token") == (401, unauthorized), path
    good, _ = eks.tokens.issue(CLUSTER)
    assert eks.request("/api/v1/namespaces", good)[0] == 200
    users = [(entry["path"], entry["status"], entry["user"]) for entry in eks.audited[-2:]]
    assert users == [
        ("/api/v1/namespaces", 401, None),
        ("/api/v1/namespaces", 200, "kubernetes-admin"),
    ]


def test_the_server_refuses_a_token_past_its_expiry(tmp_path: Path) -> None:
    clock = Clock(time.time())
    tokens = ClusterTokens(SECRET, ttl=900, clock=clock)
    with EksLike(tmp_path, ttl=900, tokens=tokens) as world:
        token, expires = tokens.issue(CLUSTER)
        clock.now = expires - 1
        assert world.request("/api", token)[0] == 200
        clock.now = expires
        status, body = world.request("/api", token)
        assert (status, body["reason"], body["message"]) == (401, "Unauthorized", "Unauthorized")


def test_the_python_client_works_through_the_kubeconfig(eks: EksLike) -> None:
    api = config.new_client_from_config(config_file=str(eks.kubeconfig))
    namespaces = dynamic.DynamicClient(api).resources.get(api_version="v1", kind="Namespace")
    assert "kube-system" in [n.metadata.name for n in namespaces.get().items]
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "made"}, "data": {"a": "b"}})
    assert eks.server.store.get("v1", "ConfigMap", "made") is not None
    assert all(user == "kubernetes-admin" for _, user in eks.seen)


def test_watches_stream_over_https(eks: EksLike) -> None:
    api = config.new_client_from_config(config_file=str(eks.kubeconfig))
    core = client.CoreV1Api(api)
    listed = core.list_namespaced_config_map("default")
    events = watch.Watch().stream(
        core.list_namespaced_config_map,
        "default",
        resource_version=listed.metadata.resource_version,
        timeout_seconds=5,
    )
    eks.server.store.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "w"}})
    first = next(events)
    events.close()
    assert (first["type"], first["object"].metadata.name) == ("ADDED", "w")


def test_a_long_lived_python_client_refreshes_its_token_through_the_plugin(
    tmp_path: Path,
) -> None:
    # Reported expiry = issue + ttl - 60; the client refreshes 300 s before that: ~2 s in.
    with EksLike(tmp_path, ttl=362) as world:
        api = config.new_client_from_config(config_file=str(world.kubeconfig))
        core = client.CoreV1Api(api)
        core.list_namespace()
        first = world.seen[-1][0]

        def refreshed() -> bool:
            core.list_namespace()
            return world.seen[-1][0] != first

        wait_for(refreshed, timeout=10)
        assert all(user == "kubernetes-admin" for _, user in world.seen)
        assert world.tokens.verify(first, CLUSTER)  # refreshed early, not because it expired


@needs_kubectl
def test_kubectl_works_through_the_kubeconfig(eks: EksLike, tmp_path: Path) -> None:
    env = {**os.environ, "HOME": str(tmp_path), "KUBECONFIG": str(eks.kubeconfig)}
    kubectl = [shutil.which("kubectl") or "kubectl", "--cache-dir", str(tmp_path / "cache")]
    result = subprocess.run(
        [*kubectl, "get", "namespaces", "-o", "name"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "namespace/kube-system" in result.stdout.split()
    assert eks.seen and all(user == "kubernetes-admin" for _, user in eks.seen)


# --- kubeconfig ---------------------------------------------------------------------------------


def test_the_kubeconfig_holds_the_ca_and_the_exec_plugin_as_eks_writes_them(
    eks: EksLike,
) -> None:
    assert stat.S_IMODE(eks.kubeconfig.stat().st_mode) == 0o600
    written = yaml.safe_load(eks.kubeconfig.read_text())
    cluster = written["clusters"][0]["cluster"]
    assert cluster["server"] == eks.server.url
    assert base64.b64decode(cluster["certificate-authority-data"]).decode() == eks.tls.ca_pem
    assert written["users"][0]["user"] == {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": sys.executable,
            "args": [
                "-m",
                "orchestrator_sandbox.kubetoken",
                "--dir",
                str(eks.directory),
                "--cluster",
                CLUSTER,
            ],
            "interactiveMode": "Never",
        }
    }


def test_plain_urls_keep_the_static_token_form(tmp_path: Path) -> None:
    path = tmp_path / "config"
    write_kubeconfig_contexts(
        path,
        {"a": "http://127.0.0.1:1", "b": ClusterAccess("http://127.0.0.1:2", token="t-b")},
        token="t",
    )
    users = {u["name"]: u["user"] for u in yaml.safe_load(path.read_text())["users"]}
    assert users == {"a": {"token": "t"}, "b": {"token": "t-b"}}
