"""Drive the real CLI against a sandbox world, and look at the world through its APIs.

It builds on the world's own test support (sandbox/tests/sandbox_support.py: starting a
world, its clients, waiting, the kubectl marker), whose names it also offers."""

from __future__ import annotations

import http.client
import json
import ssl
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import sandbox_support
from footprint import footprint as shared_footprint
from footprint import kept_ids
from sandbox_support import HARNESS_CONFIG as HARNESS_CONFIG
from sandbox_support import REGION as REGION
from sandbox_support import binding_crd as binding_crd
from sandbox_support import needs_kubectl as needs_kubectl
from sandbox_support import wait_for as wait_for

from orchestrator_sandbox import cloudtrail

SUBDOMAIN = "platform.example.com"
ORCHESTRATOR_AGENT = "orchestrator/"


def cli(
    *args: str, env: dict[str, str], cwd: Path, timeout: float = 180, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m orchestrator ARGS` as a user would, and capture what it says."""
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input,
    )


def start(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


class World(sandbox_support.World):
    """A running sandbox world in `directory`, as the world's own tests see it, and what the
    orchestrator did there: its CLI run against it, its calls, what exists."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.env.setdefault("ORCHESTRATOR_POLL_MAX_INTERVAL", "0.5")
        self.config = directory / "config.yaml"
        self.kube_clients: dict[str | None, Any] = {}

    def cli(
        self, *args: str, cwd: Path, env: dict[str, str] | None = None, **kwargs: Any
    ) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=env or self.env, cwd=cwd, **kwargs)

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return start(*args, env=self.env, cwd=cwd)

    def succeeds(self, *args: str, cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        """The CLI with the world's config, which must end 0 (else the test fails, showing
        what it said)."""
        done = self.cli("--config", str(self.config), *args, cwd=cwd, **kwargs)
        assert done.returncode == 0, done.stdout + done.stderr
        return done

    # ---- what the orchestrator did, per the world's CloudTrail ----------------------------------

    def calls(self) -> list[dict[str, Any]]:
        return [
            c
            for c in cloudtrail.read(self.directory / "cloudtrail.jsonl")
            if ORCHESTRATOR_AGENT in c["agent"]
        ]

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["write"]]

    def kube_calls(self) -> list[dict[str, Any]]:
        """Requests the orchestrator made to the world's Kubernetes API servers."""
        path = self.directory / "kube-audit.jsonl"
        if not path.exists():
            return []
        entries = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        return [e for e in entries if ORCHESTRATOR_AGENT in e.get("user_agent", "")]

    def kube_writes(self) -> list[dict[str, Any]]:
        return [e for e in self.kube_calls() if e["write"]]

    # ---- what exists ----------------------------------------------------------------------------

    def zones(self, name: str = SUBDOMAIN) -> list[dict[str, Any]]:
        zones = self.client("route53").list_hosted_zones()["HostedZones"]
        return [z for z in zones if z["Name"].rstrip(".") == name]

    def records(self, zone_id: str) -> list[dict[str, Any]]:
        paginator = self.client("route53").get_paginator("list_resource_record_sets")
        return [
            r
            for page in paginator.paginate(HostedZoneId=zone_id)
            for r in page["ResourceRecordSets"]
        ]

    def record(self, zone_id: str, name: str, rtype: str) -> dict[str, Any] | None:
        for rrset in self.records(zone_id):
            if rrset["Name"].rstrip(".").replace("\\052", "*") == name and rrset["Type"] == rtype:
                return rrset
        return None

    def certificates(self, domain: str = f"*.{SUBDOMAIN}") -> list[dict[str, Any]]:
        acm = self.client("acm")
        summaries = acm.list_certificates(
            CertificateStatuses=[
                "PENDING_VALIDATION",
                "ISSUED",
                "INACTIVE",
                "EXPIRED",
                "VALIDATION_TIMED_OUT",
                "REVOKED",
                "FAILED",
            ]
        )["CertificateSummaryList"]
        return [
            acm.describe_certificate(CertificateArn=s["CertificateArn"])["Certificate"]
            for s in summaries
            if s["DomainName"] == domain
        ]


def read_state(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def phase_status(path: Path, phase: str) -> str | None:
    try:
        state = read_state(path)
    except (OSError, ValueError):
        return None
    return next((p["status"] for p in state["phases"] if p["name"] == phase), None)


# ---- Kubernetes, through the official client ------------------------------------------------


CONTEXTS = ("sandbox", "staging")  # the world's two clusters


def kube_client(world_: World, context: str | None = None) -> Any:
    """The official client's dynamic client for one of the world's clusters, made once."""
    from kubernetes import config, dynamic

    if context not in world_.kube_clients:
        api = config.new_client_from_config(
            config_file=str(world_.directory / "kubeconfig"), context=context
        )
        world_.kube_clients[context] = dynamic.DynamicClient(api)
    return world_.kube_clients[context]


def kube_get(
    client: Any, api_version: str, kind: str, name: str, namespace: str | None = None
) -> dict[str, Any] | None:
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    try:
        resource = client.resources.get(api_version=api_version, kind=kind)
        return resource.get(name=name, namespace=namespace).to_dict()
    except (NotFoundError, ResourceNotFoundError):
        return None


def footprint(world_: World, deployment: str, kept: list[str] | tuple[str, ...] = ()) -> list[str]:
    """Everything in AWS and Kubernetes that carries this deployment's id, but what a
    rollback left in place on purpose (`kept`: ids from the state file, see kept_ids)."""

    def client(service: str, region: str = REGION) -> Any:
        return world_.client(service, region)

    kubes = [kube_client(world_, context) for context in CONTEXTS]
    return shared_footprint(client, kubes, deployment, kept=kept)


def left_behind(world_: World, state_path: Path) -> list[str]:
    """What a rolled-back deployment left, but what its state says it kept on purpose."""
    state = read_state(state_path)
    return footprint(world_, state["deployment"], kept_ids(state))


# ---- the endpoint, as a user's browser reaches it ---------------------------------------------


def https_status(world_: World, host: str, timeout: float = 5.0) -> int:
    """GET https://HOST/ as a browser in the world would: through the world's proxy
    (HTTPS_PROXY, which resolves the name in the world's DNS), trusting the world's CA
    (SSL_CERT_FILE), on a new connection; the HTTP status (redirects not followed). Raises
    OSError or ssl.SSLError if no answer comes."""
    proxy = urlsplit(world_.env["HTTPS_PROXY"])
    context = ssl.create_default_context(cafile=world_.env["SSL_CERT_FILE"])
    assert proxy.hostname is not None
    connection = http.client.HTTPSConnection(
        proxy.hostname, proxy.port, timeout=timeout, context=context
    )
    connection.set_tunnel(host, 443)
    try:
        connection.request("GET", "/", headers={"User-Agent": "test-harness-probe"})
        return connection.getresponse().status
    finally:
        connection.close()


class EndpointProbe:
    """GETs https://HOST/ every `every` seconds on a thread, from `with` to its end, and
    records each failure (an error, or HTTP 500 and up: the ALB's own 502/503/504) with
    its time since the start."""

    def __init__(self, world_: World, host: str, every: float = 0.05) -> None:
        self.world, self.host, self.every = world_, host, every
        self.requests = 0
        self.failures: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def __enter__(self) -> EndpointProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _loop(self) -> None:
        started = time.monotonic()
        while not self._stop.is_set():
            try:
                status = https_status(self.world, self.host)
                failure = f"HTTP {status}" if status >= 500 else None
            except (OSError, ssl.SSLError, http.client.HTTPException) as exc:
                failure = f"{type(exc).__name__}: {exc}"
            self.requests += 1
            if failure:
                self.failures.append((round(time.monotonic() - started, 2), failure))
            self._stop.wait(self.every)
