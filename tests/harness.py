"""Drive the real CLI against a sandbox world, and look at the world through its APIs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from orchestrator.sandbox import cloudtrail, world

REGION = "us-west-2"
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


def wait_for(condition: Callable[[], Any], *, timeout: float = 60, what: str = "condition") -> Any:
    """Poll `condition` until it is truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class World:
    """A running sandbox world in `directory`."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        exports, unsets = world.read_env(directory)
        env = {k: v for k, v in os.environ.items() if k not in unsets}
        env.update(exports)
        env.setdefault("ORCHESTRATOR_POLL_MAX_INTERVAL", "2")
        self.env = env
        self.info = json.loads((directory / "world.json").read_text())
        self.config = directory / "config.yaml"

    @classmethod
    def up(cls, directory: Path, acm_delay: float = 1.0, alb_delay: float = 1.0) -> World:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "sandbox",
                "up",
                "--dir",
                str(directory),
                "--acm-delay",
                str(acm_delay),
                "--alb-delay",
                str(alb_delay),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        return cls(directory)

    def down(self) -> None:
        world.down(self.directory)

    def cli(self, *args: str, cwd: Path, **kwargs: Any) -> subprocess.CompletedProcess[str]:
        return cli(*args, env=self.env, cwd=cwd, **kwargs)

    def start(self, *args: str, cwd: Path) -> subprocess.Popen[str]:
        return start(*args, env=self.env, cwd=cwd)

    def client(self, service: str, region: str = REGION) -> Any:
        return boto3.client(
            service,
            region_name=region,
            endpoint_url=self.info["endpoints"]["aws"],
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(user_agent_extra="test-harness"),
        )

    # ---- what the orchestrator did, per the world's CloudTrail ----------------------------------

    def calls(self) -> list[dict[str, Any]]:
        return [
            c
            for c in cloudtrail.read(self.directory / "cloudtrail.jsonl")
            if ORCHESTRATOR_AGENT in c["agent"]
        ]

    def writes(self) -> list[dict[str, Any]]:
        return [c for c in self.calls() if c["write"]]

    # ---- what exists ----------------------------------------------------------------------------

    @property
    def root_zone_id(self) -> str:
        return self.info["seeded"]["root_zone_id"]

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
