"""End to end: a deployment the old setup script made (`sandbox up --setup-script`). A plain
`run` refuses it with no write; `import --from-setup-script` finds each thing the script
made from its written-back config and writes nothing; with --take-ownership it marks them
(tags and labels only) and writes a state file that `status` shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from harness import World

from orchestrator.errors import ExitCode
from orchestrator.ownership import OWNER_TAG, tag_map

TAKEN = {
    "hosted zone",
    "NS delegation of platform.example.com",
    "certificate *.platform.example.com",
    "IAM policy",
    "IAM role",
    "controller's ServiceAccount",
    "controller Deployment",
    "Ingress",
    "DNS record kubeflow.platform.example.com",
}


@pytest.mark.complete
def test_import_from_setup_script_previews_then_takes_over_with_marks_only(
    tmp_path: Path, workdir: Path
) -> None:
    with World.up(tmp_path / "world", acm_delay=0.3, alb_delay=0.3, setup_script=True) as world:
        made = world.setup_script
        config, state = made.config_path, str(workdir / "state.json")
        plain = str(workdir / "plain.json")
        refused = world.cli("--config", config, "--state", plain, "run", cwd=workdir)
        said = refused.stdout + refused.stderr
        assert refused.returncode == ExitCode.PHASE_FAILED and "runs v2.4.7" in said, said
        assert world.writes() == [] and world.kube_writes() == []

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
        # and the role; labels on the ServiceAccount, the controller and the Ingress.
        zone_tagging = f"POST /2013-04-01/tags/hostedzone/{made.zone_id}"
        assert sorted(c["action"] for c in world.writes()) == sorted(
            ["AddTagsToCertificate", zone_tagging, "TagPolicy", "TagRole"]
        )
        assert [e["method"] for e in world.kube_writes()] == ["PATCH"] * 3, world.kube_writes()
        tags = world.client("route53").list_tags_for_resource(
            ResourceType="hostedzone", ResourceId=made.zone_id
        )["ResourceTagSet"]["Tags"]
        assert OWNER_TAG in tag_map(tags)
        shown = world.cli("--state", state, "status", cwd=workdir)
        assert shown.returncode == 3 and "hosted_zone          in_progress" in shown.stdout
