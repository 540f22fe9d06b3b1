"""The deployment's state in S3, shared by a team: `--state s3://BUCKET/KEY`.

S3 is both the store and the lock, as Terraform's S3 backend uses it since S3 gained
conditional writes (no DynamoDB table):

- **The lock** is an object beside the state (`KEY.lock`), created only if there is none
  (`If-None-Match: *`). It names its holder (user, host, pid, command, since) and carries a
  lease: the holder rewrites it (`If-Match` its ETag) every third of the lease while the
  command runs, and deletes it (`If-Match` its ETag, so never another's lock) on every
  way out that can. A second command finds it and exits 2 naming the holder, its lock ID
  and when the lease ends, or waits for it (`--lock-timeout`); a lock whose lease ran out
  (its holder was killed, or lost the network) is taken over by a conditional write on
  its ETag, with a note. `force-unlock LOCK_ID` breaks a lock whose holder is known dead.
- **S3's clock** judges a lease, never a reader's or the holder's: a lease ends `lease`
  seconds after the lock object's Last-Modified, as told by the Date of S3's answer.
- **Each save** writes the state only if S3 still holds what this command last read or
  wrote (`If-Match` its ETag; `If-None-Match: *` for a new state), so a command that lost
  its lock can never overwrite a newer state: it stops with StateConflict instead.
- **Encryption at rest**: SSE-S3 unless a KMS key is configured (SSE-KMS).
- **History**: a bucket without versioning is warned of once per command, since versioning
  is what keeps the earlier states.

The same contract as the local StateStore (exists, check, load, save, locked), so the
engine and the CLI do not know which one they use.
"""

from __future__ import annotations

import contextlib
import email.utils
import getpass
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator.aws import Aws, AwsClient, AwsError
from orchestrator.errors import StateConflict, StateWriteFailed, UsageError
from orchestrator.store import (
    MAX_STATE_BYTES,
    S3_SCHEME,
    DeploymentState,
    LockHeld,
    decode_state,
    now,
)

LEASE = 60.0  # seconds a lock stays valid without renewal; ORCHESTRATOR_S3_LEASE overrides
NOT_THERE = ("NoSuchKey", "404", "NotFound")
NO_BUCKET = "NoSuchBucket"
POLL = 1.0  # seconds between looks at a lock being waited for (--lock-timeout)
# S3's times (Last-Modified, Date) are whole seconds, each cut down: a lease is judged over
# only when S3's times are a whole second past its end, so the cut-offs never end it early.
GRAIN = 1.0
TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def parse_url(url: str) -> tuple[str, str]:
    """(bucket, key) of `s3://BUCKET/KEY`; UsageError naming what is wrong."""
    problem = s3_url_problem(url)
    if problem:
        raise UsageError(problem)
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    return bucket, key


def s3_url_problem(url: str) -> str | None:
    """What is wrong with `url` as s3://BUCKET/KEY, or None."""
    bucket, _, key = url.removeprefix(S3_SCHEME).partition("/")
    if not _BUCKET.match(bucket):
        return f"{url}: not an S3 bucket name ({bucket!r}); expected s3://BUCKET/KEY"
    if not key or key.endswith("/"):
        return f"{url}: name the state object, as in s3://{bucket}/kubeflow/state.json"
    return None


def lease_seconds() -> float:
    try:
        return max(1.0, float(os.environ.get("ORCHESTRATOR_S3_LEASE", LEASE)))
    except ValueError:
        return LEASE


class S3StateStore:
    """The state object, its lock, and what this command last read or wrote of them."""

    def __init__(
        self,
        url: str,
        kms_key: str | None = None,
        client: Callable[[], AwsClient] | None = None,
        warn: Callable[[str], None] | None = None,
    ) -> None:
        self.path = url  # as shown in messages, like the local store's path
        self.bucket, self.key = parse_url(url)
        self.lock_key = f"{self.key}.lock"
        self.kms_key = kms_key
        self._client = client or _default_client
        self._warn = warn or (lambda message: print(message, file=sys.stderr))
        self._s3: AwsClient | None = None
        self._etag: str | None = None  # of the state as this command last read or wrote it
        self._unanswered: bytes | None = None  # a write sent, and not answered yet
        self._lease = _Lease()

    @property
    def s3(self) -> AwsClient:
        if self._s3 is None:
            self._s3 = self._client()
        return self._s3

    # ---- the state ----------------------------------------------------------------------

    def check(self) -> None:
        """The URL's shape only: nothing is asked of S3 before the config is checked."""
        parse_url(self.path)

    def exists(self) -> bool:
        try:
            self.s3.head_object(Bucket=self.bucket, Key=self.key)
        except AwsError as exc:
            if exc.code not in NOT_THERE:
                raise _unusable(self.path, exc) from None
            # A HEAD's 404 has no body to say whether the key or the bucket is missing.
            self._check_bucket()
            return False
        return True

    def missing_prefix(self) -> str | None:
        """The state key's prefix as s3://BUCKET/PREFIX/, if no object at all is under it
        (a mistyped key, rather than a deployment not started); else None."""
        prefix = self.key.rpartition("/")[0]
        if not prefix:
            return None
        try:
            found = self.s3.list_objects_v2(Bucket=self.bucket, Prefix=f"{prefix}/", MaxKeys=1)
        except AwsError:
            return None  # listing may be denied where reading the key is not: say nothing
        return None if found.get("KeyCount") else f"s3://{self.bucket}/{prefix}/"

    def _check_bucket(self) -> None:
        try:
            self.s3.head_bucket(Bucket=self.bucket)
        except AwsError as exc:
            if exc.code in NOT_THERE or exc.code == NO_BUCKET:
                raise _no_bucket(self.path) from None
            # Else (denied, say) the bucket may well be there: the lock's write will tell.

    def load(self, phase_names: list[str]) -> DeploymentState:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except AwsError as exc:
            raise _unusable(self.path, exc) from None
        raw = got["Body"].read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise UsageError(f"{self.path}: state is larger than {MAX_STATE_BYTES} bytes")
        restore = "Restore an earlier version of the object (bucket versioning)."
        state = decode_state(raw, phase_names, self.path, restore)
        self._etag = got["ETag"]
        return state

    def save(self, state: DeploymentState) -> None:
        """Write the state, unless S3 holds another than this command last read or wrote,
        or this command's lock was taken over."""
        self._lease.check(self.path)
        state.updated_at = now()
        state.revision = (state.revision or 0) + 1
        body = state.to_json().encode()
        cut_short, self._unanswered = self._unanswered, None  # a write Ctrl-C interrupted
        try:
            try:
                put = self._put(body)
            except AwsError as exc:
                if exc.code not in TAKEN or not self._landed(cut_short):
                    raise
                put = self._put(body)
        except AwsError as exc:
            state.revision -= 1
            if exc.code in TAKEN:
                raise StateConflict(
                    f"{self.path} was changed by another command while this one ran; "
                    "nothing more was written. Run `orchestrator status` to see where the "
                    "deployment is, then go on from there."
                ) from None
            raise StateWriteFailed(self.path, f"{exc.code}: {exc.message}") from None
        self._etag = put["ETag"]

    def _put(self, body: bytes) -> dict[str, Any]:
        """The conditional write; until S3 answers, `body` may or may not be there (Ctrl-C
        while it is sent), so it is kept to be recognised by the next save."""
        condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
        self._unanswered = body
        put = self.s3.put_object(
            Bucket=self.bucket,
            Key=self.key,
            Body=body,
            ContentType="application/json",
            **self._encryption(),
            **condition,
        )
        self._unanswered = None
        return put

    def _landed(self, sent: bytes | None) -> bool:
        """Whether S3 holds what this command's interrupted write sent (then the state is
        ours, not another command's: its ETag is taken and the save goes on)."""
        if sent is None:
            return False
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.key)
        except AwsError:
            return False
        if got["Body"].read(MAX_STATE_BYTES + 1) != sent:
            return False
        self._etag = got["ETag"]
        return True

    def check_held(self) -> None:
        """StateConflict if this command's lock was taken over (its renewal found it so)."""
        self._lease.check(self.path)

    def _encryption(self) -> dict[str, str]:
        if self.kms_key:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key}
        return {"ServerSideEncryption": "AES256"}

    # ---- the lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, command: str, wait: float = 0.0) -> Iterator[str | None]:
        """Hold the lock for a command, waiting up to `wait` seconds for another's; yield a
        note if an expired holder's lock was taken."""
        self.check()
        note = self._acquire_within(command, wait)
        self._warn_without_versioning()
        renewing = threading.Thread(target=self._renew, name="s3-lock-lease", daemon=True)
        renewing.start()
        try:
            yield note
        finally:
            self._lease.stop.set()
            renewing.join(timeout=10)
            self._release()

    def _acquire_within(self, command: str, wait: float) -> str | None:
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire(command)
            except LockHeld:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(POLL, left))  # the lock is in S3: looking is all we can do

    def _acquire(self, command: str) -> str | None:
        holder = self._holder(command)
        try:
            put = self.s3.put_object(
                Bucket=self.bucket, Key=self.lock_key, Body=_dump(holder), IfNoneMatch="*",
                **self._encryption(),
            )  # fmt: skip
            self._lease.hold(holder, put["ETag"])
            return None
        except AwsError as exc:
            if exc.code not in TAKEN:
                raise _unusable(self.path, exc) from None
        seen = self._read_lock()
        if seen is None:  # released between our write and our read: try once more
            return self._acquire(command)
        if not seen.ended:
            raise LockHeld(
                f"{self.path} is locked by {describe(seen.holder)}, lock ID "
                f"{seen.holder.get('id', '?')}; its lease ends at {_stamp(seen.ends)} "
                f"(S3's clock, {seen.ends - seen.s3_now:.0f}s from now) unless renewed. Only one "
                "command may work on a deployment at a time: wait for it to finish "
                "(--lock-timeout DURATION waits), or, if that command is known to be dead, "
                f"`orchestrator force-unlock {seen.holder.get('id', '?')}`"
            )
        try:
            put = self.s3.put_object(
                Bucket=self.bucket, Key=self.lock_key, Body=_dump(holder), IfMatch=seen.etag,
                **self._encryption(),
            )  # fmt: skip
        except AwsError as exc:
            if exc.code in TAKEN:  # another command took it over first
                raise LockHeld(f"{self.path} was just locked by another command") from None
            raise _unusable(self.path, exc) from None
        self._lease.hold(holder, put["ETag"])
        return (
            f"note: took over the lock of {describe(seen.holder)}, whose lease ran out "
            f"{seen.s3_now - seen.ends:.0f}s ago (S3's clock)"
        )

    def _holder(self, command: str) -> dict[str, Any]:
        lease = lease_seconds()
        return {
            "id": secrets.token_hex(8),
            "user": _user(),
            "host": os.uname().nodename,
            "pid": os.getpid(),
            "command": command,
            "since": now(),
            "lease": lease,
            "expires": _expires(lease),
        }

    def _read_lock(self) -> SeenLock | None:
        """The lock as S3 has it now, with S3's own time, or None if there is none."""
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.lock_key)
        except AwsError as exc:
            if exc.code in NOT_THERE:
                return None
            raise _unusable(self.path, exc) from None
        try:
            holder = json.loads(got["Body"].read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            holder = {}
        holder = holder if isinstance(holder, dict) else {}
        try:
            lease = max(1.0, float(holder.get("lease", LEASE)))
        except (TypeError, ValueError):
            lease = LEASE
        written = got["LastModified"].timestamp()
        return SeenLock(holder, got["ETag"], written + lease, self._s3_now(got))

    def _s3_now(self, answer: dict[str, Any]) -> float:
        """S3's time, from the Date of its answer. (Moto in process leaves the Date out of
        a GetObject's answer, but not out of a ListObjectsV2's.)"""
        date = _date_of(answer)
        if date is None:
            with contextlib.suppress(AwsError):
                listed = self.s3.list_objects_v2(
                    Bucket=self.bucket, Prefix=self.lock_key, MaxKeys=1
                )
                date = _date_of(listed)
        # A server that never says its time: this machine's clock is all there is.
        return _local_time() if date is None else date

    def _renew(self) -> None:
        """Rewrite the lock's lease every third of it, while the command runs."""
        lease = self._lease
        while not lease.stop.wait(lease.seconds / 3):
            holder = {**lease.holder, "expires": _expires(lease.seconds)}
            try:
                put = self.s3.put_object(
                    Bucket=self.bucket, Key=self.lock_key, Body=_dump(holder),
                    IfMatch=lease.etag, **self._encryption(),
                )  # fmt: skip
            except AwsError as exc:
                if exc.code in TAKEN or exc.code in NOT_THERE:
                    lease.lose("another command took the lock over")
                    return
                continue  # S3 unreachable for now: the lease has two thirds left
            lease.hold(holder, put["ETag"])

    def _release(self) -> None:
        """Delete our lock, only if S3 still has it as we last wrote it (If-Match): a lock
        another command took over in the meantime stays."""
        if self._lease.lost or self._lease.etag is None:
            return
        with contextlib.suppress(AwsError):  # gone or taken over, or S3 away: its lease ends
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=self._lease.etag)

    def force_unlock(self, lock_id: str) -> str:
        """Break the lock whose ID is `lock_id` (its holder known to be dead); UsageError,
        breaking nothing, if the lock there has another ID or there is none."""
        self.check()
        seen = self._read_lock()
        if seen is None:
            raise UsageError(f"{self.path} is not locked: nothing to unlock")
        held_by = str(seen.holder.get("id", ""))
        if held_by != lock_id:
            raise UsageError(
                f"{self.path} is locked by {describe(seen.holder)} with lock ID {held_by or '?'}"
                f", not {lock_id}: nothing was unlocked"
            )
        try:
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key, IfMatch=seen.etag)
        except AwsError as exc:
            if exc.code in TAKEN:  # renewed or taken over since we read it: not dead
                raise UsageError(
                    f"{self.path}: the lock {lock_id} changed while it was being broken (its "
                    "holder renewed it, or another took it): nothing was unlocked"
                ) from None
            raise _unusable(self.path, exc) from None
        return f"unlocked {self.path}: broke the lock {lock_id} of {describe(seen.holder)}"

    def _warn_without_versioning(self) -> None:
        with contextlib.suppress(AwsError):
            status = self.s3.get_bucket_versioning(Bucket=self.bucket).get("Status")
            if status != "Enabled":
                self._warn(
                    f"warning: bucket {self.bucket} does not keep versions, so an earlier "
                    "state cannot be restored; turn versioning on (aws s3api "
                    f"put-bucket-versioning --bucket {self.bucket} "
                    "--versioning-configuration Status=Enabled)"
                )


@dataclass(frozen=True)
class SeenLock:
    """A lock as read from S3: its holder, its ETag, and when its lease ends and what time
    it is, both by S3's clock."""

    holder: dict[str, Any]
    etag: str
    ends: float
    s3_now: float

    @property
    def ended(self) -> bool:
        return self.s3_now - self.ends >= GRAIN


class _Lease:
    """The lock this command holds: its holder, the ETag S3 gave it, and whether it was lost."""

    def __init__(self) -> None:
        self.holder: dict[str, Any] = {}
        self.etag: str | None = None
        self.seconds = LEASE
        self.lost: str | None = None
        self.stop = threading.Event()
        self._guard = threading.Lock()

    def hold(self, holder: dict[str, Any], etag: str) -> None:
        with self._guard:
            self.holder, self.etag, self.seconds = holder, etag, float(holder["lease"])

    def lose(self, why: str) -> None:
        with self._guard:
            self.lost = why

    def check(self, path: str) -> None:
        if self.lost:
            raise StateConflict(
                f"{path}: this command's lock was lost ({self.lost}); nothing more was "
                "written. Run `orchestrator status`, then go on from there."
            )


def describe(holder: dict[str, Any]) -> str:
    return (
        f"{holder.get('command', 'a command')} of {holder.get('user', '?')} on "
        f"{holder.get('host', '?')} (pid {holder.get('pid', '?')}, since "
        f"{holder.get('since', '?')})"
    )


def _local_time() -> float:
    """This machine's clock: only for what the holder writes for people (`expires`)."""
    return time.time()


def _expires(lease: float) -> float:
    """When others will have judged the lease over, by this machine's clock: for people
    and scripts reading the lock; no command decides by it. A grain for S3's cut-off
    times, and one for the write's way to S3 (which may cross into S3's next second)."""
    return _local_time() + lease + 2 * GRAIN


def _date_of(answer: dict[str, Any]) -> float | None:
    date = answer.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get("date")
    if not date:
        return None
    try:
        return email.utils.parsedate_to_datetime(date).timestamp()
    except (TypeError, ValueError):
        return None


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dump(holder: dict[str, Any]) -> bytes:
    return json.dumps(holder, indent=2).encode()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _unusable(url: str, exc: AwsError) -> UsageError:
    if exc.code == NO_BUCKET:
        return _no_bucket(url)
    return UsageError(f"{url}: cannot use the state in S3: {exc.code}: {exc.message}")


def _no_bucket(url: str) -> UsageError:
    return UsageError(
        f"{url}: the bucket {parse_url(url)[0]} does not exist; create it (with versioning "
        "on), or fix the state location"
    )


def _default_client() -> AwsClient:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Aws(region).client("s3", crash_points=False)
