"""The deployment's state in S3, shared by a team: `--state s3://BUCKET/KEY`.

S3 is both the store and the lock, as Terraform's S3 backend uses it since S3 gained
conditional writes (no DynamoDB table):

- **The lock** is an object beside the state (`KEY.lock`), created only if there is none
  (`If-None-Match: *`). It names its holder (user, host, pid, command, since) and carries a
  lease: the holder rewrites it (`If-Match` its ETag) every third of the lease while the
  command runs, and deletes it on every way out that can. A second command finds it and
  exits 2 naming the holder; a lock whose lease ran out (its holder was killed, or lost
  the network) is taken over by a conditional write on its ETag, with a note.
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
import getpass
import json
import os
import re
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from orchestrator.aws import Aws, AwsClient, AwsError
from orchestrator.errors import StateConflict, StateWriteFailed, UsageError
from orchestrator.store import MAX_STATE_BYTES, S3_SCHEME, DeploymentState, decode_state, now

LEASE = 60.0  # seconds a lock stays valid without renewal; ORCHESTRATOR_S3_LEASE overrides
NOT_THERE = ("NoSuchKey", "404", "NotFound")
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
            if exc.code in NOT_THERE:
                return False
            raise _unusable(self.path, exc) from None
        return True

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
        condition = {"IfMatch": self._etag} if self._etag else {"IfNoneMatch": "*"}
        try:
            put = self.s3.put_object(
                Bucket=self.bucket,
                Key=self.key,
                Body=state.to_json().encode(),
                ContentType="application/json",
                **self._encryption(),
                **condition,
            )
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

    def check_held(self) -> None:
        """StateConflict if this command's lock was taken over (its renewal found it so)."""
        self._lease.check(self.path)

    def _encryption(self) -> dict[str, str]:
        if self.kms_key:
            return {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": self.kms_key}
        return {"ServerSideEncryption": "AES256"}

    # ---- the lock -----------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self, command: str) -> Iterator[str | None]:
        """Hold the lock for a command; yield a note if an expired holder's lock was taken."""
        self.check()
        note = self._acquire(command)
        self._warn_without_versioning()
        renewing = threading.Thread(target=self._renew, name="s3-lock-lease", daemon=True)
        renewing.start()
        try:
            yield note
        finally:
            self._lease.stop.set()
            renewing.join(timeout=10)
            self._release()

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
        current, etag = self._read_lock()
        if current is None:  # released between our write and our read: try once more
            return self._acquire(command)
        if float(current.get("expires", 0)) > time.time():
            raise UsageError(
                f"{self.path} is locked by {describe(current)}; only one command may work on "
                "a deployment at a time. Wait for it to finish, or stop it first."
            )
        try:
            put = self.s3.put_object(
                Bucket=self.bucket, Key=self.lock_key, Body=_dump(holder), IfMatch=etag,
                **self._encryption(),
            )  # fmt: skip
        except AwsError as exc:
            if exc.code in TAKEN:  # another command took it over first
                raise UsageError(f"{self.path} was just locked by another command") from None
            raise _unusable(self.path, exc) from None
        self._lease.hold(holder, put["ETag"])
        return (
            f"note: took over the lock of {describe(current)}, whose lease ran out "
            f"{time.time() - float(current.get('expires', 0)):.0f}s ago"
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
            "expires": time.time() + lease,
        }

    def _read_lock(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            got = self.s3.get_object(Bucket=self.bucket, Key=self.lock_key)
        except AwsError as exc:
            if exc.code in NOT_THERE:
                return None, None
            raise _unusable(self.path, exc) from None
        try:
            holder = json.loads(got["Body"].read())
        except (UnicodeDecodeError, json.JSONDecodeError):
            holder = {}
        return (holder if isinstance(holder, dict) else {}), got["ETag"]

    def _renew(self) -> None:
        """Rewrite the lock's lease every third of it, while the command runs."""
        lease = self._lease
        while not lease.stop.wait(lease.seconds / 3):
            holder = {**lease.holder, "expires": time.time() + lease.seconds}
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
        if self._lease.lost:
            return
        current, etag = self._read_lock()
        if current is not None and current.get("id") == self._lease.holder.get("id"):
            with contextlib.suppress(AwsError):
                self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key)

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


def _dump(holder: dict[str, Any]) -> bytes:
    return json.dumps(holder, indent=2).encode()


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


def _unusable(url: str, exc: AwsError) -> UsageError:
    return UsageError(f"{url}: cannot use the state in S3: {exc.code}: {exc.message}")


def _default_client() -> AwsClient:
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
    return Aws(region).client("s3", crash_points=False)
