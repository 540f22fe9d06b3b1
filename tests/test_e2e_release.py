"""End to end: what a rollback keeps for others is released, so a lost state file of a
later deployment can still be rebuilt.

The sandbox's data team has an IRSA role that trusts the cluster's OIDC provider. The first
state file creates the provider, and its `rollback --all` keeps it for that role: released,
it carries neither of the state file's marks, only why it was kept. A second state file
then uses it as pre-existing; that state file is lost, and `import --take-ownership`
rebuilds it (before, import refused: "resources made by several state files").
"""

from __future__ import annotations

from pathlib import Path

import pytest
from harness import World, left_behind, read_state

from orchestrator.ownership import OWNER_TAG, STATE_TAG, kept_tag_key


@pytest.mark.complete  # a world and six commands: CI runs it (`pytest --complete`)
def test_import_works_after_an_earlier_deployment_kept_the_shared_oidc_provider(
    world: World, tmp_path: Path
) -> None:
    config = str(world.config)
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()

    def cli(where: Path, *args: str) -> str:
        done = world.cli("--config", config, *args, cwd=where)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    cli(first, "run", "--until", "controller_iam")
    state = read_state(first / "state.json")
    provider = next(
        p["outputs"]["oidc_provider_arn"] for p in state["phases"] if p["name"] == "controller_iam"
    )
    # The preview says what rollback then does: the provider is left, the data team trusts it.
    asked = world.cli("--config", config, "rollback", "--all", cwd=first)
    assert asked.returncode == 2, asked.stdout + asked.stderr
    assert f"leave iam:oidc-provider {provider}: IAM roles trust it" in asked.stdout
    cli(first, "rollback", "--all", "--yes")
    iam = world.client("iam")
    tags = {
        t["Key"]: t["Value"]
        for t in iam.list_open_id_connect_provider_tags(OpenIDConnectProviderArn=provider)["Tags"]
    }
    data_team = world.info["seeded"]["data_team_role_arn"].rsplit("/", 1)[-1]
    assert OWNER_TAG not in tags and STATE_TAG not in tags
    assert data_team in tags[kept_tag_key(state["deployment"])]
    assert f"iam:oidc-provider {provider}" in cli(first, "status")

    cli(second, "run", "--until", "controller_iam")
    (second / "state.json").unlink()
    rebuilt = cli(second, "import", "--take-ownership")
    assert "iam:oidc-provider" not in rebuilt, "not this deployment's: used, never imported"
    cli(second, "rollback", "--all", "--yes")
    listed = iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
    assert provider in [p["Arn"] for p in listed], "still trusted by the data team's role"
    assert left_behind(world, second / "state.json") == []
