"""One live copy of a state: `state push` leaves the local file a pointer to S3 that every
command refuses, naming the S3 location; `state pull` writes a snapshot no command works
on until it is pushed; neither leaves a lock file. And the ways to a state that is not
there: a missing bucket, a malformed s3: location. In process, against moto's S3."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from moto import mock_aws

from orchestrator import cli
from orchestrator.errors import ExitCode
from orchestrator.states import phase_names
from orchestrator.store import StateStore, new_state

URL = "s3://team-state/kubeflow/state.json"
CONFIG = {
    "cluster": {"name": "kube-eks-cluster", "region": "us-west-2"},
    "route53": {
        "rootDomain": {"name": "example.com", "hostedZoneId": "Z0123456789ABCDEFGHIJ"},
        "subDomain": {"name": "platform.example.com", "subjectAlternativeNames": []},
    },
    "kubeflow": {"alb": {"scheme": "internet-facing"}},
}
KUBECONFIG = {
    "current-context": "eks",
    "contexts": [{"name": "eks", "context": {"cluster": "eks", "user": "eks"}}],
    "clusters": [{"name": "eks", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "eks", "user": {"token": "t"}}],
}


@pytest.fixture
def s3(moto_env: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """moto's S3 with the team's bucket; a config and a kubeconfig out of the way, so that
    a working command gets as far as the state."""
    (tmp_path.parent / "config.yaml").write_text(yaml.safe_dump(CONFIG))
    (tmp_path.parent / "kubeconfig").write_text(yaml.safe_dump(KUBECONFIG))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path.parent / "kubeconfig"))
    monkeypatch.chdir(tmp_path)
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="team-state")
        yield client


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out + err


def a_local_state(path: Path) -> Any:
    state = new_state("platform-example-com-0123abcd", {}, phase_names())
    StateStore(path).save(state)
    return state


def test_after_a_push_the_local_file_points_to_s3_and_every_command_refuses_it(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    local = tmp_path / "state.json"
    mine = a_local_state(local)
    with StateStore(local).locked("run"):  # as a local run leaves it
        pass
    code, said = run(capsys, "--state", URL, "state", "push", "state.json")
    assert code == ExitCode.OK, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]  # no lock file
    assert json.loads(local.read_text())["moved_to"] == URL
    pointer = local.read_bytes()
    config = str(tmp_path.parent / "config.yaml")
    working = [["run"], ["resume"], ["rollback", "--all", "--yes"], ["import"], ["plan"]]
    for command in [*working, ["status"], ["outputs"], ["state", "push", "state.json"]]:
        where = URL if command[0] == "state" else "state.json"
        code, said = run(capsys, "--config", config, "--state", where, *command)
        assert code == ExitCode.USAGE, (command, said)
        assert f"was pushed to {URL}" in said and f"--state {URL}" in said, (command, said)
        assert local.read_bytes() == pointer, command
        assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"], command
    there = json.loads(s3.get_object(Bucket="team-state", Key="kubeflow/state.json")["Body"].read())
    assert there["identity"] == mine.identity


def test_a_pull_writes_a_snapshot_that_commands_read_but_do_not_work_on(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_local_state(tmp_path / "first.json")
    assert run(capsys, "--state", URL, "state", "push", "first.json")[0] == ExitCode.OK
    code, said = run(capsys, "--state", URL, "state", "pull", "copy.json")
    assert code == ExitCode.OK, said
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.json", "first.json"]
    snapshot = (tmp_path / "copy.json").read_bytes()

    code, said = run(capsys, "--state", "copy.json", "status")
    assert code != ExitCode.USAGE, said  # readable
    config = str(tmp_path.parent / "config.yaml")
    code, said = run(capsys, "--config", config, "--state", "copy.json", "run")
    assert code == ExitCode.USAGE and f"is a snapshot of {URL}" in said, said
    assert (tmp_path / "copy.json").read_bytes() == snapshot
    assert not (tmp_path / "copy.json.lock").exists()

    # Pulled again over itself, and over the pushed file's pointer; not over a live state.
    assert run(capsys, "--state", URL, "state", "pull", "copy.json")[0] == ExitCode.OK
    assert run(capsys, "--state", URL, "state", "pull", "first.json")[0] == ExitCode.OK
    a_local_state(tmp_path / "live.json")
    code, said = run(capsys, "--state", URL, "state", "pull", "live.json")
    assert code == ExitCode.USAGE and "live.json is a live state file" in said, said

    # Pushed back explicitly, the snapshot is the live state again, in S3.
    code, said = run(capsys, "--state", URL, "state", "push", "copy.json")
    assert code == ExitCode.OK, said
    assert json.loads((tmp_path / "copy.json").read_text())["moved_to"] == URL
    body = s3.get_object(Bucket="team-state", Key="kubeflow/state.json")["Body"].read()
    assert "snapshot_of" not in json.loads(body)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.json", "first.json", "live.json"]


def test_a_snapshot_older_than_the_state_in_s3_is_not_pushed_over_it(
    s3: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_local_state(tmp_path / "first.json")
    assert run(capsys, "--state", URL, "state", "push", "first.json")[0] == ExitCode.OK
    assert run(capsys, "--state", URL, "state", "pull", "old.json")[0] == ExitCode.OK
    assert run(capsys, "--state", URL, "state", "pull", "new.json")[0] == ExitCode.OK
    assert run(capsys, "--state", URL, "state", "push", "new.json")[0] == ExitCode.OK
    code, said = run(capsys, "--state", URL, "state", "push", "old.json")
    assert code == ExitCode.USAGE and "has moved on since old.json was pulled" in said, said


def test_a_bucket_that_does_not_exist_is_named_not_taken_for_a_new_state(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    gone = "s3://no-such-bucket/kubeflow/state.json"
    for command in (["status"], ["outputs"], ["graph"], ["state", "pull", "x.json"]):
        code, said = run(capsys, "--state", gone, *command)
        assert code == ExitCode.USAGE, (command, said)
        assert "the bucket no-such-bucket does not exist" in said, (command, said)


def test_a_state_key_under_an_empty_prefix_is_named_as_such(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    s3.put_object(Bucket="team-state", Key="kubeflow/notes.txt", Body=b"x")
    code, said = run(capsys, "--state", "s3://team-state/kubeflw/state.json", "status")
    assert code == ExitCode.USAGE
    assert "nothing at all is under s3://team-state/kubeflw/: is the key right?" in said, said
    code, said = run(capsys, "--state", "s3://team-state/kubeflow/state.json", "status")
    assert code == ExitCode.USAGE and "nothing has run yet" in said and "key right" not in said


@pytest.mark.parametrize(
    "location", ["s3:/team-state/state.json", "S3://team-state/state.json", "s3:state.json"]
)
def test_a_malformed_s3_location_is_refused_not_taken_as_a_local_path(
    location: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, said = run(capsys, "--state", location, "status")
    assert code == ExitCode.USAGE and "not an S3 location; write s3://BUCKET/KEY" in said, said
    assert list(tmp_path.iterdir()) == []


def test_a_local_lock_is_waited_for_with_a_lock_timeout(tmp_path: Path) -> None:
    store = StateStore(tmp_path / "state.json")
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with StateStore(tmp_path / "state.json").locked("run"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=holder)
    thread.start()
    try:
        assert held.wait(10)
        refused = pytest.raises(Exception, match="locked by .*--lock-timeout DURATION waits")
        with refused, store.locked("resume", wait=0.2):
            pass
        threading.Timer(0.3, release.set).start()
        started = time.monotonic()
        with store.locked("resume", wait=10):
            assert time.monotonic() - started >= 0.25
    finally:
        release.set()
        thread.join()


@pytest.mark.parametrize(("text", "seconds"), [("90", 90), ("90s", 90), ("5m", 300), ("1h", 3600)])
def test_lock_timeout_durations_read_as_terraform_writes_them(text: str, seconds: float) -> None:
    assert cli.duration(text) == seconds


def test_force_unlock_of_a_local_state_breaks_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: Any
) -> None:
    monkeypatch.chdir(tmp_path)
    code, said = run(capsys, "force-unlock", "0123")
    assert code == ExitCode.USAGE and "nothing to break" in said, said


def test_force_unlock_breaks_the_s3_lock_named_by_the_refusal_and_no_other(
    s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    holder = {"id": "feedc0de", "command": "run", "user": "ci", "host": "runner-7", "pid": 4242}
    s3.put_object(Bucket="team-state", Key="kubeflow/state.json.lock", Body=json.dumps(holder))
    code, said = run(capsys, "--state", URL, "force-unlock", "0ddba11")
    assert code == ExitCode.USAGE and "lock ID feedc0de, not 0ddba11" in said, said
    assert s3.list_objects_v2(Bucket="team-state")["KeyCount"] == 1
    code, said = run(capsys, "--state", URL, "force-unlock", "feedc0de")
    assert code == ExitCode.OK and "broke the lock feedc0de of run of ci" in said, said
    assert s3.list_objects_v2(Bucket="team-state")["KeyCount"] == 0
