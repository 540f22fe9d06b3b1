"""The state file: atomic 0600 writes, validation that leaves bad files untouched, the lock."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.errors import StateConflict, UsageError
from orchestrator.store import SCHEMA_VERSION, PhaseStatus, StateStore, new_state

NAMES = ["a", "b"]


def fresh(tmp_path: Path) -> StateStore:
    store = StateStore(tmp_path / "state.json")
    store.save(new_state("dep", {"k": 1}, NAMES))
    return store


def test_saved_state_is_0600_and_round_trips(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    state = store.load(NAMES)
    state.phase("a").outputs["x"] = 1
    store.save(state)
    assert store.load(NAMES).phase("a").outputs == {"x": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["state.json"], "no temp files left behind"


@pytest.mark.parametrize(
    "mutate, problem",
    [
        (lambda d: d.update(schema=99), "newer than this orchestrator"),
        (lambda d: d.update(schema="1"), "unknown schema version"),
        (lambda d: d.pop("deployment"), "'deployment' is missing"),
        (lambda d: d["phases"].reverse(), "in that order"),
        (lambda d: d["phases"][0].update(status="dancing"), "unknown status"),
        (lambda d: d["phases"][0].update(resources=[{"kind": "x"}]), "resources must be"),
        (lambda d: d["phases"][0].update(extra=1), "unknown fields"),
        (lambda d: d.update(rollback_to="zzz"), "unknown phase"),
    ],
)
def test_invalid_state_is_refused_and_untouched(tmp_path: Path, mutate, problem: str) -> None:
    store = fresh(tmp_path)
    data = json.loads(store.path.read_text())
    mutate(data)
    store.path.write_text(json.dumps(data))
    before = store.path.read_bytes()
    with pytest.raises(UsageError, match=problem):
        store.load(NAMES)
    assert store.path.read_bytes() == before


def test_status_loads_as_the_enum_and_a_retired_field_is_dropped(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    data = json.loads(store.path.read_text())
    data["phases"][0].update(status="done", inputs_digest="0123456789abcdef")
    store.path.write_text(json.dumps(data))
    record = store.load(NAMES).phase("a")
    assert record.status is PhaseStatus.DONE and record.status == "done"
    store.save(store.load(NAMES))
    assert "inputs_digest" not in json.loads(store.path.read_text())["phases"][0]


def test_truncated_json_is_reported_as_corrupted(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    store.path.write_bytes(store.path.read_bytes()[:40])
    with pytest.raises(UsageError, match="corrupted"):
        store.load(NAMES)


HOLD = """
import sys, time
from orchestrator.store import StateStore
with StateStore(sys.argv[1]).locked("run"):
    print("held", flush=True)
    time.sleep(60)
"""


def test_the_lock_names_its_holder_and_a_dead_holders_lock_is_taken_over(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with (
            pytest.raises(UsageError, match=f"locked by pid {holder.pid}"),
            StateStore(path).locked("resume"),
        ):
            pass
    finally:
        holder.kill()
        holder.wait()
    with StateStore(path).locked("resume") as note:
        assert note is not None and f"pid {holder.pid}" in note
        assert json.loads(Path(str(path) + ".lock").read_text())["pid"] == os.getpid()


def test_a_schema_1_state_is_migrated_not_rejected(tmp_path: Path) -> None:
    from orchestrator.states import phase_names

    old = ["preflight", "hosted_zone", "delegation", "certificates", "certificates_issued"]
    data = json.loads(new_state("dep", {}, old).to_json())
    data["schema"] = 1
    data["phases"][1]["status"] = "done"
    data["phases"][1]["outputs"] = {"zone_id": "Z1", "name_servers": ["ns"]}
    path = tmp_path / "state.json"
    path.write_text(json.dumps(data))
    before = path.read_bytes()
    state = StateStore(path).load(phase_names())
    assert [p.name for p in state.phases] == phase_names()
    assert state.schema == SCHEMA_VERSION
    assert state.phase("hosted_zone").outputs["zone_id"] == "Z1"
    assert state.phase("controller_iam").status == "pending"
    assert path.read_bytes() == before, "migrated in memory; written on the next save"
    data["phases"].reverse()
    path.write_text(json.dumps(data))
    with pytest.raises(UsageError, match="in that order"):
        StateStore(path).load(phase_names())


def test_a_world_writable_state_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with (
        pytest.raises(UsageError, match="writable by everyone"),
        StateStore(shared / "state.json").locked("run"),
    ):
        pass
    shared.chmod(0o1777)  # sticky, like /tmp: others cannot replace our files
    with StateStore(shared / "state.json").locked("run"):
        pass


def test_a_save_never_overwrites_a_newer_state(tmp_path: Path) -> None:
    fresh(tmp_path)
    first, second = StateStore(tmp_path / "state.json"), StateStore(tmp_path / "state.json")
    mine, theirs = first.load(NAMES), second.load(NAMES)
    theirs.phase("a").status = "done"
    second.save(theirs)
    mine.phase("a").status = "rolled_back"
    with pytest.raises(StateConflict, match="changed by another command"):
        first.save(mine)
    assert StateStore(tmp_path / "state.json").load(NAMES).phase("a").status == "done"


def test_a_save_interrupted_after_its_write_is_not_taken_for_another_commands(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ctrl-C while the directory is synced, after the file was replaced: the save that
    then records the interrupt goes through (it once stopped as a conflict, exit 2)."""
    store = fresh(tmp_path)
    state = store.load(NAMES)
    state.phase("a").status = "in_progress"

    def interrupted(directory: Path) -> None:
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr("orchestrator.store._fsync_dir", interrupted)
        with pytest.raises(KeyboardInterrupt):
            store.save(state)
    state.phase("a").status = "failed"
    store.save(state)
    assert StateStore(tmp_path / "state.json").load(NAMES).phase("a").status == "failed"


def test_a_new_state_is_not_written_over_one_made_meanwhile(tmp_path: Path) -> None:
    late = StateStore(tmp_path / "state.json")
    assert not late.exists()
    fresh(tmp_path)  # another command made it first
    with pytest.raises(StateConflict):
        late.save(new_state("dep", {}, NAMES))


def test_a_removed_lock_file_stops_the_holder_at_its_next_save(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    store.load(NAMES)
    with store.locked("run"):
        state = store.load(NAMES)
        store.save(state)
        store.lock_path.unlink()
        with pytest.raises(StateConflict, match="removed or replaced"):
            store.save(state)
    with store.locked("run"):  # a new lock file, held by the next command
        store.save(store.load(NAMES))


def test_two_names_for_one_file_share_the_lock(tmp_path: Path) -> None:
    fresh(tmp_path)
    (tmp_path / "alias.json").symlink_to(tmp_path / "state.json")
    with (
        StateStore(tmp_path / "state.json").locked("run"),
        pytest.raises(UsageError, match="is locked by pid"),
        StateStore(tmp_path / "alias.json").locked("run"),
    ):
        pass


def test_temp_files_of_a_killed_save_are_removed_by_the_next_command(tmp_path: Path) -> None:
    store = fresh(tmp_path)
    leftover = tmp_path / ".state.json.k1ll3d.tmp"
    leftover.write_text("{")
    with store.locked("run"):
        pass
    assert not leftover.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json", "state.json.lock"]


def test_a_failed_write_leaves_the_last_state_whole(tmp_path: Path) -> None:
    """A full disk (here: the file size limit) fails the save in one line, exit 1, and the
    state file keeps what was saved last."""
    store = fresh(tmp_path)
    before = store.path.read_bytes()
    script = f"""
import resource, signal, sys
from orchestrator.store import StateStore
from orchestrator.errors import StateWriteFailed
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
store = StateStore({str(store.path)!r})
state = store.load({NAMES!r})
state.phase("a").outputs["big"] = "x" * 100_000
resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))
try:
    store.save(state)
except StateWriteFailed as exc:
    print(exc)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert "cannot write the state file" in done.stdout, done.stdout + done.stderr
    assert store.path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_fifo_is_refused_not_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "state.json")
    with pytest.raises(UsageError, match="not a regular file"):
        StateStore(tmp_path / "state.json").load(NAMES)


def test_a_directory_the_user_cannot_write_is_refused_up_front(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only directory fails before anything else happens, not at the first save."""
    tmp_path.chmod(0o555)
    if os.geteuid() == 0:  # root may write anyway: answer as an ordinary user is answered
        monkeypatch.setattr(os, "access", lambda path, mode: False)
    try:
        with (
            pytest.raises(UsageError, match="the state file's directory is not writable"),
            StateStore(tmp_path / "state.json").locked("run"),
        ):
            pass
    finally:
        tmp_path.chmod(0o755)
