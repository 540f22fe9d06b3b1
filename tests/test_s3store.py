"""The state in S3, in process against moto's S3 (which honours conditional writes):
saves conditional on the ETag last read or written, the lock object and its lease,
encryption at rest, and the warning for a bucket without versions."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import DEFAULT_ACCOUNT_ID
from moto.s3.models import s3_backends

from orchestrator import s3store
from orchestrator.aws import Aws
from orchestrator.errors import StateConflict, UsageError
from orchestrator.s3store import S3StateStore, parse_url
from orchestrator.store import new_state

URL = "s3://team-state/kubeflow/state.json"
PHASES = ["preflight", "hosted_zone"]


@pytest.fixture
def s3(moto_env: str) -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket="team-state")
        yield client


def store(warnings: list[str] | None = None) -> S3StateStore:
    said = warnings if warnings is not None else []
    return S3StateStore(URL, client=lambda: Aws("us-east-1").client("s3"), warn=said.append)


def a_state() -> Any:
    return new_state("platform-example-com-0123abcd", {}, PHASES)


LOCK = "kubeflow/state.json.lock"


def age(key: str, seconds: float) -> None:
    """Time passes on S3's side: the object was last written `seconds` earlier."""
    fake = s3_backends[DEFAULT_ACCOUNT_ID]["aws"].get_object("team-state", key)
    assert fake is not None
    fake.last_modified -= timedelta(seconds=seconds)


def lock_of(s3: Any) -> dict[str, Any]:
    return dict(json.loads(s3.get_object(Bucket="team-state", Key=LOCK)["Body"].read()))


def test_a_saved_state_reads_back_and_is_encrypted_at_rest(s3: Any) -> None:
    mine = store()
    assert not mine.exists()
    mine.save(a_state())
    assert mine.exists()
    again = store().load(PHASES)
    assert again.deployment == "platform-example-com-0123abcd" and again.revision == 1
    head = s3.head_object(Bucket="team-state", Key="kubeflow/state.json")
    assert head["ServerSideEncryption"] == "AES256"


def test_a_writer_that_read_an_older_state_cannot_overwrite_the_newer(s3: Any) -> None:
    store().save(a_state())
    first, second = store(), store()
    stale, fresh = first.load(PHASES), second.load(PHASES)
    second.save(fresh)
    with pytest.raises(StateConflict, match="changed by another command"):
        first.save(stale)
    # Nor can a second new state replace one that exists.
    with pytest.raises(StateConflict):
        store().save(a_state())
    assert store().load(PHASES).revision == 2


def test_a_save_interrupted_after_s3_took_it_is_not_taken_for_another_commands(
    s3: Any,
) -> None:
    """Ctrl-C after the write reached S3 but before its answer was read: the save that
    then records the interrupt recognises its own write and goes on."""
    mine = store()
    mine.save(a_state())
    state = mine.load(PHASES)
    real = mine.s3

    class Interrupted:
        def __getattr__(self, name: str) -> Any:
            return getattr(real, name)

        def put_object(self, **kwargs: Any) -> Any:
            real.put_object(**kwargs)
            raise KeyboardInterrupt

    mine._s3 = Interrupted()  # type: ignore[assignment]
    with pytest.raises(KeyboardInterrupt):
        mine.save(state)
    mine._s3 = real
    state.phase("preflight").status = "failed"
    mine.save(state)
    assert store().load(PHASES).phase("preflight").status == "failed"
    # Another command's write is still refused.
    other = store()
    theirs = other.load(PHASES)
    other.save(theirs)
    with pytest.raises(StateConflict):
        mine.save(state)


def test_a_second_command_is_refused_naming_the_holder_and_the_lock_goes_with_the_first(
    s3: Any,
) -> None:
    first = store()
    with first.locked("run") as note:
        assert note is None
        with (
            pytest.raises(UsageError, match=r"locked by run of .* on .* \(pid \d+"),
            store().locked("rollback"),
        ):
            pass
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="team-state").get("Contents", [])]
    assert "kubeflow/state.json.lock" not in keys
    with store().locked("resume") as note:  # free again
        assert note is None


def test_an_expired_lease_is_taken_over_with_a_note_and_its_holder_cannot_save(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    store().save(a_state())
    gone = store()
    state = gone.load(PHASES)
    # A holder killed with -9: its lock stays, its lease runs out.
    holder = {"id": "dead", "command": "run", "user": "ci", "host": "runner-7", "pid": 4242,
              "since": "2026-11-26T00:00:00Z", "lease": 1, "expires": time.time() - 5}  # fmt: skip
    s3.put_object(Bucket="team-state", Key="kubeflow/state.json.lock", Body=json.dumps(holder))
    age(LOCK, 5)  # by S3's clock, its lease ended seconds ago
    taker = store()
    with taker.locked("resume") as note:
        assert note is not None and "took over the lock of run of ci on runner-7" in note
        taker.save(taker.load(PHASES))
        with pytest.raises(StateConflict):
            gone.save(state)  # what it read is no longer there


def test_a_lock_taken_over_stops_the_holder_before_its_next_save(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ORCHESTRATOR_S3_LEASE", "1")
    store().save(a_state())
    slow = store()
    with slow.locked("run"):
        state = slow.load(PHASES)
        # Another command takes the lock over (as if slow's renewals had stopped).
        live = json.loads(
            s3.get_object(Bucket="team-state", Key="kubeflow/state.json.lock")["Body"].read()
        )
        live.update(id="other", command="resume", expires=time.time() + 60)
        s3.put_object(Bucket="team-state", Key="kubeflow/state.json.lock", Body=json.dumps(live))
        deadline = time.monotonic() + 10
        while slow._lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(StateConflict, match="lock was lost"):
            slow.check_held()  # what each poll of a long wait asks
        with pytest.raises(StateConflict, match="lock was lost"):
            slow.save(state)
    # Its way out leaves the other command's lock alone.
    assert (
        json.loads(
            s3.get_object(Bucket="team-state", Key="kubeflow/state.json.lock")["Body"].read()
        )["id"]
        == "other"
    )


def test_a_bucket_without_versions_is_warned_of(s3: Any) -> None:
    warnings: list[str] = []
    with store(warnings).locked("run"):
        pass
    assert any("does not keep versions" in w for w in warnings)
    s3.put_bucket_versioning(Bucket="team-state", VersioningConfiguration={"Status": "Enabled"})
    warnings.clear()
    with store(warnings).locked("run"):
        pass
    assert warnings == []


@pytest.mark.parametrize(
    "url", ["s3://Bad_Bucket/state.json", "s3://team-state", "s3://team-state/dir/"]
)
def test_a_bad_url_is_refused_before_any_call(url: str) -> None:
    with pytest.raises(UsageError, match="s3://"):
        parse_url(url)


def test_a_configured_kms_key_encrypts_the_state_and_its_lock(s3: Any) -> None:
    key = boto3.client("kms", region_name="us-east-1").create_key()["KeyMetadata"]["KeyId"]
    mine = S3StateStore(URL, kms_key=key, client=lambda: Aws("us-east-1").client("s3"))
    with mine.locked("run"):
        lock = s3.head_object(Bucket="team-state", Key="kubeflow/state.json.lock")
        mine.save(a_state())
    head = s3.head_object(Bucket="team-state", Key="kubeflow/state.json")
    for encrypted in (head, lock):
        assert encrypted["ServerSideEncryption"] == "aws:kms"
        assert encrypted["SSEKMSKeyId"].endswith(key)


def test_the_states_own_writes_are_not_crash_points(
    s3: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    """The failpoints count the deployment's mutating calls; the state is saved between
    them, in S3 as in a local file, so the crash sweep has the same points for both."""
    from orchestrator import failpoints

    log = tmp_path / "failpoints.log"
    monkeypatch.setattr(failpoints, "_log", str(log))
    monkeypatch.setattr(failpoints, "_active", True)
    monkeypatch.setattr(failpoints, "_count", 0)
    shared = S3StateStore(URL)  # the client the CLI gives it
    with shared.locked("run"):
        shared.save(a_state())
    assert not log.exists()
    Aws("us-east-1").client("s3").put_object(Bucket="team-state", Key="other", Body=b"x")
    assert log.read_text().split() == ["1", "s3:PutObject"]


def test_a_lease_is_judged_by_s3s_clock_not_the_readers(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reader whose clock runs an hour ahead (and the holder's `expires`, by its own
    clock, long past) does not take over a lock S3 saw written a moment ago; once S3's
    clock says the lease is over, it does."""
    monkeypatch.setattr(s3store, "_local_time", lambda: time.time() + 3600)
    holder = {"id": "feedc0de", "command": "run", "user": "ci", "host": "runner-7",
              "pid": 4242, "since": "2026-11-26T00:00:00Z", "lease": 60,
              "expires": time.time() - 3600}  # fmt: skip
    s3.put_object(Bucket="team-state", Key=LOCK, Body=json.dumps(holder))
    ends = r"its lease ends at \d{4}-\d\d-\d\dT[\d:]+Z \(S3's clock, (5\d|60)s from now\)"
    refused = pytest.raises(UsageError, match=f"locked by run of ci.*lock ID feedc0de; {ends}")
    with refused, store().locked("resume"):
        pass
    age(LOCK, 62)
    with store().locked("resume") as note:
        assert note is not None and "took over the lock of run of ci" in note


def test_release_deletes_only_the_lock_as_this_command_wrote_it(s3: Any) -> None:
    """Between the holder's last renewal and its way out, another command took the lock
    over (the holder frozen past its lease): the holder's release leaves that lock."""
    mine = store()
    delete = mine.s3.delete_object

    def taken_over_first(**kwargs: Any) -> Any:  # the other's write lands just before
        taken = {**lock_of(s3), "id": "other", "command": "resume"}
        s3.put_object(Bucket="team-state", Key=LOCK, Body=json.dumps(taken))
        return delete(**kwargs)

    setattr(mine.s3, "delete_object", taken_over_first)  # noqa: B010 - over __getattr__
    with mine.locked("run"):
        pass
    assert lock_of(s3)["id"] == "other"


def test_with_a_lock_timeout_a_second_command_waits_for_the_lock_then_goes_on(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3store, "POLL", 0.05)
    first = store()
    looks: list[float] = []
    real_read = S3StateStore._read_lock

    def read_then_release(self: S3StateStore) -> Any:
        looks.append(time.monotonic())
        seen = real_read(self)
        if len(looks) == 3:  # the holder finishes while the second one waits
            first._lease.stop.set()
            first._release()
        return seen

    with first.locked("run"):
        monkeypatch.setattr(S3StateStore, "_read_lock", read_then_release)
        with pytest.raises(UsageError, match="locked by run"), store().locked("resume", wait=0):
            pass
        looks.clear()
        with store().locked("resume", wait=30) as note:
            assert note is None
            assert lock_of(s3)["command"] == "resume"
    assert len(looks) >= 3


def test_a_lock_timeout_that_runs_out_is_refused_naming_the_holder(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(s3store, "POLL", 0.05)
    with store().locked("run"):
        started = time.monotonic()
        with pytest.raises(UsageError, match="locked by run"), store().locked("resume", 0.3):
            pass
        assert time.monotonic() - started >= 0.3


def test_force_unlock_breaks_the_named_lock_only(s3: Any) -> None:
    holder = {"id": "feedc0de", "command": "run", "user": "ci", "host": "runner-7",
              "pid": 4242, "since": "2026-11-26T00:00:00Z", "lease": 60}  # fmt: skip
    s3.put_object(Bucket="team-state", Key=LOCK, Body=json.dumps(holder))
    with pytest.raises(UsageError, match="lock ID feedc0de, not 0123: nothing was unlocked"):
        store().force_unlock("0123")
    assert lock_of(s3)["id"] == "feedc0de"
    assert "broke the lock feedc0de of run of ci" in store().force_unlock("feedc0de")
    with pytest.raises(UsageError, match="not locked"):
        store().force_unlock("feedc0de")
    with store().locked("resume") as note:
        assert note is None


def test_a_missing_bucket_is_named_by_every_way_in(s3: Any) -> None:
    gone = S3StateStore("s3://no-such-bucket/kubeflow/state.json",
                        client=lambda: Aws("us-east-1").client("s3"))  # fmt: skip
    for attempt in (gone.exists, lambda: gone.locked("run").__enter__()):
        with pytest.raises(UsageError, match="the bucket no-such-bucket does not exist"):
            attempt()
