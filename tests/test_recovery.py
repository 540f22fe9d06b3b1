"""A config mistake is fixed by fixing the config (issue 21), in process: a state that
holds nothing follows the corrected config; one that holds something is refused, naming
the rollback that undoes it with the settings it was made with; that rollback, and its
sweep, go on when the old cluster or region does not exist; a refused new state file is
not left behind."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
from phasekit import phase_kit
from test_engine import CONFIG, FakePhase, World, make

from orchestrator import cli, inventory
from orchestrator.cli import working
from orchestrator.config import Config
from orchestrator.errors import ExitCode, PhaseError, UsageError
from orchestrator.machine import (
    RECORDED,
    SETTING_FIELDS,
    check_state,
    holds_anything,
    recorded_config,
    repoint,
)
from orchestrator.ownership import OWNER_TAG, STATE_TAG
from orchestrator.phase import PhaseContext
from orchestrator.states import all_phases
from orchestrator.states.controller import ControllerPhase
from orchestrator.states.ingress import IngressPhase
from orchestrator.store import Resource, StateStore

NAMES = ["a", "b", "c"]
WRONG = dataclasses.replace(CONFIG, region="eu-west-1")


class Preflight(FakePhase):
    """Like preflight: reads the world, makes nothing; no cluster in the wrong region."""

    inputs = ("cluster.name", "cluster.region")

    def enter(self, ctx: PhaseContext) -> None:
        if ctx.config.region != CONFIG.region:
            raise PhaseError(f"EKS cluster not found in {ctx.config.region}", "check the config")
        ctx.outputs["thing"] = "checked"


def failed_in_preflight(tmp_path: Path) -> StateStore:
    """A run with the wrong region: preflight failed, nothing made."""
    world = World()
    engine = make(tmp_path, world)
    engine.phases["a"], engine.config = Preflight("a", world), WRONG
    engine.state.deployment, engine.state.settings = WRONG.deployment_id, WRONG.settings()
    with pytest.raises(Exception, match="not found in eu-west-1"):
        engine.forward()
    return StateStore(tmp_path / "state.json")


def phases() -> list[FakePhase]:
    world = World()
    return [Preflight("a", world), FakePhase("b", world), FakePhase("c", world)]


def test_a_state_that_holds_nothing_follows_the_corrected_config(tmp_path: Path) -> None:
    state = failed_in_preflight(tmp_path).load(NAMES)
    assert not holds_anything(state)
    identity = state.identity

    said = repoint(state, CONFIG, "state.json")
    assert said == (
        f"re-pointed state.json from deployment {WRONG.deployment_id} to "
        f"{CONFIG.deployment_id} (cluster.region: 'eu-west-1' -> 'us-west-2'): nothing had "
        f"been made for {WRONG.deployment_id}"
    )
    assert state.deployment == CONFIG.deployment_id
    assert state.settings == CONFIG.settings()
    assert state.identity == identity, "the file is the same file"
    assert {r.status for r in state.phases} == {"pending"}
    check_state(state, CONFIG, phases(), "state.json")  # no refusal
    assert repoint(state, CONFIG, "state.json") is None, "already this config's"


def test_a_state_that_holds_something_is_refused_naming_the_rollback(tmp_path: Path) -> None:
    state = failed_in_preflight(tmp_path).load(NAMES)
    state.phase("b").status = "done"
    state.phase("b").resources = [Resource("thing", "b", created=True)]
    assert repoint(state, CONFIG, "state.json") is None
    with pytest.raises(UsageError) as refused:
        check_state(state, CONFIG, phases(), "state.json")
    said = str(refused.value)
    assert "cluster.region: 'eu-west-1' -> 'us-west-2'" in said
    assert "what its phases made or adopted is still there (b)" in said
    assert f"`orchestrator rollback --all {RECORDED}`" in said
    assert state.deployment == WRONG.deployment_id, "left as it was"


def test_an_unfinished_rollback_is_not_re_pointed(tmp_path: Path) -> None:
    state = failed_in_preflight(tmp_path).load(NAMES)
    state.rollback_to = "*"  # its sweep may still find what carries the old id
    assert repoint(state, CONFIG, "state.json") is None
    with pytest.raises(UsageError, match="a rollback of it was interrupted") as refused:
        check_state(state, CONFIG, phases(), "state.json")
    assert f"`orchestrator rollback --all {RECORDED}`" in str(refused.value)


def test_the_pinned_setting_refusal_names_a_rollback_that_works_as_printed(
    tmp_path: Path,
) -> None:
    world = World()
    make(tmp_path, world).forward()
    state = StateStore(tmp_path / "state.json").load(NAMES)
    fakes = [FakePhase(n, world) for n in NAMES]
    moved_san = dataclasses.replace(CONFIG, subject_alternative_names=("*.apps.example.com",))
    fakes[1].inputs = ("route53.subDomain.subjectAlternativeNames",)
    with pytest.raises(UsageError, match="config changed since phase b") as refused:
        check_state(state, moved_san, fakes, "state.json")
    assert f"`orchestrator rollback --to a {RECORDED}`" in str(refused.value)
    # ... which uses the settings the state recorded, so its own check passes.
    check_state(state, recorded_config(moved_san, state), fakes, "state.json")


def test_the_recorded_config_is_the_one_the_state_was_made_with() -> None:
    made = Config(
        cluster_name="old",
        region="eu-west-1",
        root_domain="example.org",
        root_zone_id="Z9",
        subdomain="p.example.org",
        subdomain_zone_id="Z8",
        subject_alternative_names=("*.a.p.example.org",),
        root_wildcard_certificate=True,
        alb_scheme="internal",
        kube_context="ctx",
        controller_image_repository="mirror.example.org/alb",
        state_url="s3://bucket/key",
    )
    state = make_state(made)
    assert set(SETTING_FIELDS) == set(made.settings()), "every setting has its field"
    assert recorded_config(CONFIG, state) == dataclasses.replace(
        made, state_url=CONFIG.state_url
    ), "every setting back, where the state lives from the config"


def make_state(config: Config) -> Any:
    from orchestrator.store import new_state

    return new_state(config.deployment_id, config.settings(), NAMES)


# ---- the sweep without the cluster ------------------------------------------------------------


def test_the_sweep_finds_what_it_can_reach_when_the_cluster_does_not_exist(
    tmp_path: Path,
) -> None:
    """No EKS cluster of the config's name in its region: the sweep of `rollback --all`
    still removes what carries the deployment's marks (a zone, an OIDC provider found
    among the account's), says what it could not look for, and ends."""
    with phase_kit(tmp_path) as kit:
        kit.engine.inventory = inventory.Inventory(all_phases())
        owner = kit.owner
        marks = [
            {"Key": OWNER_TAG, "Value": owner.deployment},
            {"Key": STATE_TAG, "Value": owner.identity},
        ]
        route53, iam = kit.client("route53"), kit.client("iam")
        zone = route53.create_hosted_zone(Name="platform.example.com", CallerReference="x")
        zone_id = zone["HostedZone"]["Id"].removeprefix("/hostedzone/")
        route53.change_tags_for_resource(
            ResourceType="hostedzone", ResourceId=zone_id, AddTags=marks
        )
        ours = iam.create_open_id_connect_provider(
            Url="https://oidc.eks.eu-west-1.amazonaws.com/id/GONE",
            ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["a" * 40],
            Tags=marks,
        )["OpenIDConnectProviderArn"]
        theirs = iam.create_open_id_connect_provider(
            Url="https://oidc.eks.us-west-2.amazonaws.com/id/THEIRS",
            ClientIDList=["sts.amazonaws.com"],
            ThumbprintList=["b" * 40],
        )["OpenIDConnectProviderArn"]

        kit.engine.rollback(None)

        said = kit.said()
        assert "EKS cluster 'kube-eks-cluster' does not exist in us-west-2" in said
        assert route53.list_hosted_zones()["HostedZones"] == []
        providers = {
            p["Arn"] for p in iam.list_open_id_connect_providers()["OpenIDConnectProviderList"]
        }
        assert providers == {theirs}, f"{ours} swept, theirs untouched"
        assert kit.engine.state.rollback_to is None, "the rollback finished"


def test_without_the_cluster_an_unreachable_kubernetes_api_is_said_not_fatal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator.kube import KubeError

    def unreachable(*_: Any) -> list[Any]:
        raise KubeError("list", None, "Unreachable", "no route to host")

    with phase_kit(tmp_path) as kit:
        monkeypatch.setattr(ControllerPhase, "marked", unreachable)
        monkeypatch.setattr(IngressPhase, "marked", unreachable)
        assert kit.engine.look(inventory.Inventory(all_phases()).find) == []
        assert "Kubernetes API of the config's context could not be reached" in kit.said()


# ---- the CLI: a refused new state file, and rollback --recorded-settings -----------------------


def fake_command(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, config: Config, refuse: bool = False
) -> dict[str, Any]:
    """The CLI's run and rollback with fake phases, and what _engine was given."""
    world = World()
    fakes = [Preflight("a", world), FakePhase("b", world), FakePhase("c", world)]
    given: dict[str, Any] = {}

    class Others:
        """An inventory that finds another state file's resources."""

        @staticmethod
        def find(ctx: PhaseContext) -> list[Any]:
            return [inventory.Found("b", "thing", "b", "f" * 16)]

        @staticmethod
        def by_other_owners(ctx: PhaseContext, found: list[Any]) -> list[Any]:
            return found

        summary = staticmethod(inventory.summary)

    def prepare(args: Any) -> tuple[Config, list[FakePhase], StateStore]:
        return config, fakes, StateStore("state.json")

    def engine(args: Any, config: Config, phases: Any, store: Any, state: Any, *_: Any) -> Any:
        from orchestrator.machine import Engine

        given["config"] = config
        return Engine(
            phases, state, store, config, args.report, inventory=Others if refuse else None
        )

    monkeypatch.setattr(working, "_prepare", prepare)
    monkeypatch.setattr(working, "_engine", engine)
    monkeypatch.chdir(tmp_path)
    return given


def test_a_refused_new_state_file_is_not_left_behind(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake_command(monkeypatch, tmp_path, CONFIG, refuse=True)
    assert cli.main(["run"]) == ExitCode.USAGE
    assert "already has live resources made by another state file" in capsys.readouterr().err
    assert not (tmp_path / "state.json").exists(), "nothing was changed: no file either"


def test_rollback_with_the_recorded_settings_uses_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = failed_in_preflight(tmp_path)
    state = store.load(NAMES)
    state.phase("b").status = "done"
    state.phase("b").resources = [Resource("thing", "b", created=False)]  # adopted: left
    state.phase("b").outputs = {"thing": "b"}
    store.save(state)
    given = fake_command(monkeypatch, tmp_path, CONFIG)

    assert cli.main(["rollback", "--all", "--yes"]) == ExitCode.USAGE
    assert f"rollback --all {RECORDED}" in capsys.readouterr().err

    assert cli.main(["rollback", "--all", "--yes", RECORDED]) == ExitCode.OK
    out = capsys.readouterr().out
    assert "rolling back with the settings state.json recorded" in out
    assert "cluster.region 'eu-west-1'" in out
    assert given["config"] == WRONG
    assert not holds_anything(StateStore(tmp_path / "state.json").load(NAMES))

    # The deployment holds nothing now: the corrected config's run goes on.
    assert cli.main(["run"]) == ExitCode.OK
    assert "re-pointed state.json" in capsys.readouterr().out
    assert StateStore(tmp_path / "state.json").load(NAMES).deployment == CONFIG.deployment_id
