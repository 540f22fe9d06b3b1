"""One decision per phase, end to end: after drifts by hand, the phases whose plan lists a
write are exactly the phases in which `run` then writes, and no other phase writes.

Each write is the world's own record of it (its CloudTrail and the Kubernetes API's audit
log), put in the phase `run --json` was in at that moment: phases enter one at a time,
and a phase's writes come after its `phase_started` event and before the next one.
"""

from __future__ import annotations

import bisect
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from harness import SUBDOMAIN, World, kube_client, read_state

from orchestrator.builders.controller_manifests import CONTROLLER_NAMESPACE, SERVICE_ACCOUNT
from orchestrator.planning import WRITES

HOST = f"kubeflow.{SUBDOMAIN}"


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def plans(world: World, workdir: Path) -> dict[str, dict[str, Any]]:
    """`plan --json`'s plan of each phase."""
    planned = world.cli("--config", str(world.config), "plan", "--json", cwd=workdir)
    events = json_events(planned.stdout)
    assert events[-1]["exit_code"] == 0, planned.stdout + planned.stderr
    return {e["phase"]: e for e in events if e["event"] == "plan"}


def planned_writers(plans: dict[str, dict[str, Any]]) -> set[str]:
    """The phases whose plan lists a create, update or delete."""
    return {
        phase
        for phase, plan in plans.items()
        if any(change["action"] in WRITES for change in plan["changes"])
    }


def seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def writers(events: list[dict[str, Any]], writes: list[dict[str, Any]]) -> dict[str, list[str]]:
    """Each write (its time as the world recorded it, after it was made) in the phase that
    had started last by then."""
    started = [(seconds(e["time"]), e["phase"]) for e in events if e["event"] == "phase_started"]
    times = [t for t, _ in started]
    found: dict[str, list[str]] = {}
    for write in writes:
        index = bisect.bisect_right(times, write["time"]) - 1
        phase = started[index][1] if index >= 0 else "(before any phase)"
        what = write.get("action") or f"{write.get('method')} {write.get('path')}"
        found.setdefault(phase, []).append(what)
    return found


def drift_by_hand(world: World, workdir: Path) -> None:
    """The kubeflow alias record deleted; the controller's ServiceAccount replaced by one
    without our labels (nor the role's annotation)."""
    phases = read_state(workdir / "state.json")["phases"]
    zone = next(p for p in phases if p["name"] == "hosted_zone")["outputs"]["zone_id"]
    alias = world.record(zone, HOST, "A")
    assert alias is not None
    world.client("route53").change_resource_record_sets(
        HostedZoneId=zone,
        ChangeBatch={"Changes": [{"Action": "DELETE", "ResourceRecordSet": alias}]},
    )
    accounts = kube_client(world).resources.get(api_version="v1", kind="ServiceAccount")
    accounts.delete(name=SERVICE_ACCOUNT, namespace=CONTROLLER_NAMESPACE)
    accounts.create(  # as `kubectl create serviceaccount` makes it
        namespace=CONTROLLER_NAMESPACE,
        body={
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": SERVICE_ACCOUNT, "namespace": CONTROLLER_NAMESPACE},
        },
    )


@pytest.mark.complete
def test_after_drifts_the_phases_that_plan_writes_are_the_phases_that_write(
    world: World, workdir: Path
) -> None:
    config = str(world.config)
    first = world.cli("--config", config, "run", cwd=workdir)
    assert first.returncode == 0, first.stdout + first.stderr
    drift_by_hand(world, workdir)

    aws, kube = len(world.writes()), len(world.kube_writes())
    planned = planned_writers(plans(world, workdir))  # a write of its own: before any phase
    assert {"dns_record", "controller"} <= planned, planned
    ran = world.cli("--config", config, "run", "--json", cwd=workdir)
    events = json_events(ran.stdout)
    assert events[-1]["exit_code"] == 0, ran.stdout + ran.stderr
    written = writers(events, world.writes()[aws:] + world.kube_writes()[kube:])
    assert set(written) == planned, f"planned writes in {planned}; run wrote {written}"

    after = plans(world, workdir)
    assert {phase: plan["status"] for phase, plan in after.items()} == dict.fromkeys(after, "done")
