"""Acceptance on a real AWS account, opt-in, as Terraform providers' acceptance tests are.

    ORCHESTRATOR_LIVE_CONFIG=./config.yaml python -m pytest tests/test_live.py -n 0 -s

runs `run` with your own credentials and kubeconfig (the usual AWS and Kubernetes
settings), checks https://kubeflow.<subdomain>/ itself, runs `rollback --all`, and checks
that nothing tagged or labelled with the deployment is left, but what the state file
says was left in place on purpose (a shared OIDC provider, say). It creates real
resources for about 10-20 minutes; see the README for what it costs.

Without that variable the same test runs against a sandbox world and its config, so the
code path is exercised in CI.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from footprint import footprint, kept_ids
from harness import World, cli

from orchestrator import resolver
from orchestrator.config import load_config
from orchestrator.states.endpoint import tunnel

LIVE_CONFIG = os.environ.get("ORCHESTRATOR_LIVE_CONFIG")
LIVE_TIMEOUT = 3600.0  # ACM validation and ALB provisioning take minutes on AWS
SANDBOX_TIMEOUT = 300.0


@dataclass
class Target:
    """Where the acceptance test runs: a config, and the environment to run it in."""

    config: Path
    env: dict[str, str]
    timeout: float


@pytest.fixture
def target(tmp_path: Path) -> Iterator[Target]:
    if LIVE_CONFIG:
        yield Target(Path(LIVE_CONFIG).resolve(), dict(os.environ), LIVE_TIMEOUT)
        return
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3) as world:
        yield Target(world.config, world.env, SANDBOX_TIMEOUT)


def test_run_serve_and_rollback_leave_nothing_behind(
    target: Target, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = load_config(target.config)
    work = tmp_path / "work"
    work.mkdir()

    def orchestrator(*args: str) -> None:
        done = cli(
            "--config", str(target.config), *args, env=target.env, cwd=work, timeout=target.timeout
        )
        assert done.returncode == 0, f"{args}: {done.returncode}\n{done.stdout}\n{done.stderr}"

    orchestrator("run")
    state = json.loads((work / "state.json").read_text())
    endpoint = next(p for p in state["phases"] if p["name"] == "endpoint")["outputs"]
    if endpoint["http_status"] is None:  # an internal ALB: not reachable from here
        assert config.alb_scheme == "internal"
    else:
        assert https_status(config.kubeflow_host, target.env, monkeypatch) < 500

    orchestrator("rollback", "--all", "--yes")
    state = json.loads((work / "state.json").read_text())
    assert {p["status"] for p in state["phases"]} == {"rolled_back"}
    left = footprint(
        clients(target.env, config.region),
        kube_clients(target.env, config.kube_context),
        state["deployment"],
        regions=("us-east-1",),
        kept=kept_ids(state),
    )
    assert left == []


def https_status(host: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> int:
    """GET https://host/ as a browser would: DNS (through the resolvers the environment
    names, if any), a TLS handshake verified for `host` (with the environment's CA bundle,
    if any; through the environment's HTTPS proxy, if any), then the HTTP status."""
    if resolver.ENV in env:
        monkeypatch.setenv(resolver.ENV, env[resolver.ENV])
    (address, *_) = resolver.lookup(host, "A")
    context = ssl.create_default_context(cafile=env.get("SSL_CERT_FILE"))
    proxy = env.get("HTTPS_PROXY")
    with (
        tunnel(proxy, host, 443) if proxy else socket.create_connection((address, 443), 10) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        response = http.client.HTTPResponse(tls)  # type: ignore[arg-type]
        response.begin()
        return response.status


def clients(env: dict[str, str], region: str) -> Any:
    """boto3 clients from the target's environment (credentials, profile, endpoint)."""
    session = boto3.session.Session(
        aws_access_key_id=env.get("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=env.get("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=env.get("AWS_SESSION_TOKEN"),
        profile_name=env.get("AWS_PROFILE"),
    )
    endpoint = env.get("AWS_ENDPOINT_URL")
    made: dict[tuple[str, str], Any] = {}

    def client(service: str, in_region: str | None = None) -> Any:
        key = (service, in_region or region)
        if key not in made:
            made[key] = session.client(service, region_name=key[1], endpoint_url=endpoint)
        return made[key]

    return client


def kube_clients(env: dict[str, str], context: str | None) -> list[Any]:
    from kubernetes import config, dynamic

    api = config.new_client_from_config(config_file=env.get("KUBECONFIG"), context=context)
    return [dynamic.DynamicClient(api)]
