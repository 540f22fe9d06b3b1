"""The persisted deployment state: schema, validation, atomic writes and the command lock.

The file is JSON, written as temp file + fsync + rename in the same directory (so a
crash leaves either the old or the new file, never half of one), mode 0600. A lock
file next to the file the path resolves to (`state.json.lock`, never removed) is held
with flock for a whole command; the kernel releases it when the holder dies, so a killed
run never blocks the next one. Two guards stand behind the lock, for when it is
sidestepped (the lock file deleted by hand, say): before each save the holder checks that
the lock file is still the one it locked, and each save checks that the file still holds
the revision this command last read or wrote, so nothing ever overwrites a newer state.

A state has one live copy. A file whose state was pushed to S3 (`state push`) keeps only
a pointer there, and one pulled from S3 (`state pull`) is a snapshot: every command refuses
to work on either, naming the S3 location, before it locks or writes anything.

Each state file has an identity, made when the file is created; it goes into every
ownership tag and label next to the deployment's id, so a second state file for the
same deployment never mistakes the first one's resources for its own.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import stat
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path

from orchestrator.errors import StateConflict, StateWriteFailed, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing: `status` loads this
if TYPE_CHECKING:
    from typing import Any, Protocol

SCHEMA_VERSION = 4


class PhaseStatus(StrEnum):
    """Where a phase is in its lifecycle. A str, so the state file and comparisons with
    plain strings keep working; the moves between them are declared in machine.py."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"  # being entered or rolled back (`action` says which)
    WAITING = "waiting"
    NEEDS_ACTION = "needs_action"
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"


STATUSES = tuple(PhaseStatus)
MAX_STATE_BYTES = 8 * 1024 * 1024
S3_SCHEME = "s3://"  # a state location with it names an object in S3 (s3store.py)


def is_s3(location: str | Path) -> bool:
    """Whether a state location is an S3 object rather than a local file. Here, not in
    s3store.py, so that deciding does not import boto3."""
    return str(location).startswith(S3_SCHEME)


def looks_like_s3(location: str | Path) -> bool:
    """Whether a location was meant for S3 but is not written s3://BUCKET/KEY (`s3:/b/k`,
    `S3://b/k`): refused, rather than taken as a local path."""
    return str(location).lower().startswith("s3:") and not is_s3(location)


class LockHeld(UsageError):
    """Another command holds the state's lock (and this one may wait for it)."""


# Top-level keys of a local file that is not a live state (see StateStore.marker):
MOVED_TO = "moved_to"  # left by `state push`: the state now lives at this S3 location
SNAPSHOT_OF = "snapshot_of"  # written by `state pull`: a copy, to read; the live one is there
LOCK_POLL = 0.2  # seconds between tries of a local lock being waited for (--lock-timeout)


ROLLBACK_ALL = "*"  # rollback_to while a `rollback --all` runs


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Fields:
    """Compared and shown by its fields, as a dataclass is. The records below are written
    out rather than made by @dataclass: importing dataclasses (with the inspect module it
    loads) cost `status`, which reads them and little else, a fifth of its time."""

    FIELDS: tuple[str, ...] = ()

    def _values(self) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in self.FIELDS)

    def __eq__(self, other: object) -> bool:  # and so, mutable, unhashable
        if type(other) is not type(self):
            return NotImplemented
        return self._values() == other._values()

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self.FIELDS)
        return f"{type(self).__name__}({shown})"


class Resource(_Fields):
    """Something a phase made or uses. Rollback deletes it only when `created`.

    `confirmed` is False while only the intent to create it is recorded: the process may
    have died before or after the AWS call, so rollback and re-entry must look it up.
    """

    FIELDS = ("kind", "id", "created", "confirmed", "detail")

    def __init__(
        self,
        kind: str,
        id: str,
        created: bool,
        confirmed: bool = True,
        detail: dict[str, Any] | None = None,
    ) -> None:
        self.kind = kind
        self.id = id
        self.created = created
        self.confirmed = confirmed
        self.detail: dict[str, Any] = {} if detail is None else detail

    def describe(self) -> str:
        """What it is, for people: a DNS record by its name and type, the rest by id."""
        rrset = self.detail.get("rrset")
        if self.kind == "route53:record" and isinstance(rrset, dict):
            return f"route53 record {str(rrset.get('Name', '')).rstrip('.')} {rrset.get('Type')}"
        if self.kind == "kubernetes:object":
            *_, kind, namespace, name = self.id.split("/")
            return f"{kind} {namespace}/{name}" if namespace else f"{kind} {name}"
        if self.kind == "ec2:subnet-tag":
            subnet, _, key = self.id.partition("/")
            return f"tag {key} on {subnet}"
        if not self.confirmed:
            return f"{self.kind} (a create whose answer was not recorded: {self.id})"
        return f"{self.kind} {self.id}"


class PhaseRecord(_Fields):
    """One phase's part of the state file. Its status and the fields that go with it (the
    times, error, the waiting fields, action, intent) are written by orchestrator/lifecycle.py
    alone: a move sets and clears them (a test holds every other module to it)."""

    FIELDS = (
        "name",
        "status",
        "outputs",
        "resources",
        "attempts",
        "started_at",
        "finished_at",
        "error",
        "waiting_for",
        "waiting_since",
        "waiting_detail",
        "action",
        "intent",
        "generation",
        "kept",
    )

    def __init__(
        self,
        name: str,
        status: PhaseStatus = PhaseStatus.PENDING,
        outputs: dict[str, Any] | None = None,
        resources: list[Resource] | None = None,
        attempts: int = 0,
        started_at: str | None = None,
        finished_at: str | None = None,
        error: str | None = None,
        waiting_for: str | None = None,
        waiting_since: str | None = None,
        waiting_detail: str | None = None,
        action: str | None = None,
        intent: str | None = None,
        generation: int = 0,
        kept: list[dict[str, str]] | None = None,
    ) -> None:
        self.name = name
        self.status = status
        self.outputs: dict[str, Any] = {} if outputs is None else outputs
        self.resources: list[Resource] = [] if resources is None else resources
        self.attempts = attempts
        self.started_at = started_at
        self.finished_at = finished_at
        self.error = error
        self.waiting_for = waiting_for
        self.waiting_since = waiting_since
        self.waiting_detail = waiting_detail
        self.action = action  # "enter", "rollback" or "import": what in_progress means
        self.intent = intent  # the mutating call about to be made, for the operator
        self.generation = generation  # bumped by each rollback: a new round's tokens differ
        # What the last rollback left in place on purpose (something not ours still uses
        # it): {"kind", "id", "reason"} each, shown by `status` until the phase is entered.
        self.kept: list[dict[str, str]] = [] if kept is None else kept


def new_identity() -> str:
    import secrets  # here: `status` never makes an identity, and importing costs ms

    return secrets.token_hex(8)


class DeploymentState(_Fields):
    FIELDS = (
        "deployment",
        "settings",
        "phases",
        "schema",
        "created_at",
        "updated_at",
        "rollback_to",
        "identity",
        "pre_identity",
        "revision",
        "made_with",
    )

    def __init__(
        self,
        deployment: str,
        settings: dict[str, Any],
        phases: list[PhaseRecord],
        schema: int = SCHEMA_VERSION,
        created_at: str | None = None,
        updated_at: str | None = None,
        rollback_to: str | None = None,
        identity: str | None = None,
        pre_identity: bool = False,
        revision: int = 0,
        made_with: dict[str, Any] | None = None,
    ) -> None:
        self.deployment = deployment
        self.settings = settings
        self.phases = phases
        self.schema = schema
        self.created_at: str = now() if created_at is None else created_at
        self.updated_at: str = now() if updated_at is None else updated_at
        self.rollback_to = rollback_to  # set while a rollback runs; a crash leaves it for resume
        # This state file's own identity, in every ownership tag and label it writes.
        self.identity: str = new_identity() if identity is None else identity
        # A file made before state files had identities: resources tagged with the deployment
        # and no identity at all were made by it.
        self.pre_identity = pre_identity
        self.revision = revision  # bumped by every save; a save never overwrites a newer one
        # How the state was made (the flags of the command that first saved it: config,
        # state, sandbox, sandbox_dir), so that a hint printed later, by `status` say, carries
        # them. None in a file from before it was recorded.
        self.made_with = made_with

    def phase(self, name: str) -> PhaseRecord:
        for record in self.phases:
            if record.name == name:
                return record
        raise KeyError(name)

    def to_json(self) -> str:
        # Field by field rather than dataclasses.asdict, which deep-copies everything: the
        # state is saved before and after every mutating call, so this is on the hot path.
        data = {
            **vars(self),
            "phases": [
                {**vars(p), "resources": [vars(r) for r in p.resources]} for p in self.phases
            ],
        }
        return json.dumps(data, indent=1) + "\n"


def new_state(deployment: str, settings: dict[str, Any], phase_names: list[str]) -> DeploymentState:
    return DeploymentState(deployment, dict(settings), [PhaseRecord(n) for n in phase_names])


if TYPE_CHECKING:  # a protocol is for type checkers: typing is not loaded to define it

    class Store(Protocol):
        """Where a deployment's state is kept, as the engine and the commands use it: a local
        file (StateStore), an object in S3 (S3StateStore), or plan's store that writes nothing."""

        @property
        def path(self) -> object: ...  # as shown in messages

        def exists(self) -> bool: ...

        def load(self, phase_names: list[str]) -> DeploymentState: ...

        def save(self, state: DeploymentState) -> None: ...

        def check_held(self) -> None: ...  # raises StateConflict if another took the lock

        def locked(
            self, command: str, wait: float = 0.0
        ) -> contextlib.AbstractContextManager[str | None]: ...

else:
    Store = object  # the engine imports it for its annotations alone


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)  # as given, for messages
        # Locks and writes go to the file the path resolves to, so two names for one file
        # (a symlink, ./state.json and state.json) share one lock.
        self.real = Path(os.path.realpath(self.path))
        # ("/" has no name: check() refuses it, as any directory.)
        self.lock_path = self.real.parent / f"{self.real.name or 'state'}.lock"
        self._revision: int | None = None  # of the file as this command last read or wrote it
        self._lock: tuple[int, int] | None = None  # (device, inode) of the lock file we hold

    def exists(self) -> bool:
        return self.real.exists()

    def check(self) -> None:
        """Refuse, before anything else happens, a path no state file can live at, and a
        file that is not the live state."""
        self.check_path()
        self.refuse_if_not_live()

    def check_path(self) -> None:
        """Refuse a path no state file can live at."""
        if self.real.is_dir() or str(self.path) in ("", "."):
            raise UsageError(f"{self.path}: the state path is a directory; name a file")
        if self.real.exists() and not self.real.is_file():
            raise UsageError(f"{self.path}: the state path is not a regular file")
        directory = self.real.parent
        if not directory.is_dir():
            raise UsageError(f"{directory}: the state file's directory does not exist")
        mode = directory.stat().st_mode
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise UsageError(
                f"{directory}: the state file's directory is writable by everyone, so others "
                "could replace the deployment's state; use a private directory (--state PATH)"
            )
        if not os.access(directory, os.W_OK | os.X_OK):
            raise UsageError(f"{directory}: the state file's directory is not writable")

    def marker(self) -> tuple[str, str] | None:
        """(MOVED_TO or SNAPSHOT_OF, the S3 location) if the file is not a live state: a
        pushed state's pointer, or a pulled snapshot. None for a state file, or none."""
        try:
            data = json.loads(self._read_bytes())
        except (UsageError, ValueError):
            return None  # no file, or not JSON: load() says what is wrong with it
        for key in (MOVED_TO, SNAPSHOT_OF):
            if isinstance(data, dict) and isinstance(data.get(key), str):
                return key, data[key]
        return None

    def refuse_if_not_live(self) -> None:
        """UsageError naming the S3 location, before anything is locked or written, if the
        file is a pushed state's pointer or a pulled snapshot: one state, one live copy."""
        marker = self.marker()
        if marker is None:
            return
        key, url = marker
        if key == MOVED_TO:
            raise UsageError(moved_message(self.path, url))
        raise UsageError(
            f"{self.path} is a snapshot of {url}, pulled to be read: nothing was changed. "
            f"Work on the live state (--state {url}), or make this copy the live one with "
            f"`orchestrator --state {url} state push {self.path}`"
        )

    def write_marker(self, key: str, url: str, state: DeploymentState | None = None) -> None:
        """Write the file as a pushed state's pointer (MOVED_TO), or as a snapshot of
        `state` (SNAPSHOT_OF) pulled from `url`; atomically, as a save is."""
        if key == MOVED_TO:
            data: dict[str, Any] = {MOVED_TO: url, "moved_at": now()}
            if state is not None:
                data.update(deployment=state.deployment, identity=state.identity)
            raw = json.dumps(data, indent=1) + "\n"
        else:
            assert state is not None
            raw = json.dumps({**json.loads(state.to_json()), SNAPSHOT_OF: url}, indent=1) + "\n"
        try:
            self._write(raw.encode())
        except OSError as exc:
            raise StateWriteFailed(self.path, exc.strerror or str(exc)) from None

    def remove_lock_file(self) -> None:
        """Remove the lock file, while holding it, of a file no command will lock again (a
        pushed state's pointer): one that waited on it finds it replaced, and looks again."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)

    def load(self, phase_names: list[str]) -> DeploymentState:
        """Read and validate the state file; raise UsageError, leaving the file as it is."""
        state = decode_state(
            self._read_bytes(),
            phase_names,
            self.path,
            "Restore it from a backup, or move it away to start a new deployment.",
        )
        self._revision = state.revision
        return state

    def _read_bytes(self) -> bytes:
        if self.real.is_dir():
            raise UsageError(f"{self.path}: state path is a directory, not a file")
        try:
            # Non-blocking, and only a regular file: a FIFO or device would hang the read.
            fd = os.open(self.real, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read state file: {exc.strerror}") from None
        with os.fdopen(fd, "rb") as fh:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise UsageError(f"{self.path}: the state path is not a regular file")
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise UsageError(f"{self.path}: state file is larger than {MAX_STATE_BYTES} bytes")
        return raw

    def save(self, state: DeploymentState) -> None:
        """Write the state atomically, unless another command wrote it since we read it."""
        self._check_lock()
        self._check_revision()
        state.updated_at = now()
        state.revision = (self._revision or 0) + 1
        data = state.to_json().encode()
        try:
            self._write(data)
        except OSError as exc:
            state.revision -= 1
            raise StateWriteFailed(self.path, exc.strerror or str(exc)) from None
        except BaseException:
            # Ctrl-C after the file was replaced (while its directory is synced, say): the
            # file holds our write, and the save that records the interrupt must not take it
            # for another command's.
            if _revision_of(self.real) == state.revision:
                self._revision = state.revision
            raise
        self._revision = state.revision

    def discard(self) -> None:
        """Remove the state file this command created and then refused to go on with (a
        second state file of a deployment): a refusal leaves no file behind."""
        self._check_lock()
        self._check_revision()
        self.real.unlink(missing_ok=True)
        _fsync_dir(self.real.parent)
        self._revision = None

    def _write(self, data: bytes) -> None:
        directory = self.real.parent
        import tempfile  # here, not at the top: `status` only reads

        fd, tmp = tempfile.mkstemp(prefix=f".{self.real.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.real)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def _check_revision(self) -> None:
        on_disk = _revision_of(self.real)
        if on_disk != self._revision:
            raise StateConflict(
                f"{self.path} was changed by another command while this one ran (revision "
                f"{on_disk}, this command had {self._revision}); nothing more was written. Run "
                "`orchestrator status` to see where the deployment is, then go on from there."
            )

    def check_held(self) -> None:
        """StateConflict if this command's lock is no longer its own (see _check_lock)."""
        self._check_lock()

    def _check_lock(self) -> None:
        """The lock file we hold must still be the one at the lock path: if it was deleted
        or replaced, another command may hold a lock of its own, so we stop writing."""
        if self._lock is None:
            return
        try:
            current = os.stat(self.lock_path)
        except OSError:
            current = None
        if current is None or (current.st_dev, current.st_ino) != self._lock:
            raise StateConflict(
                f"{self.lock_path} was removed or replaced while this command held it, so "
                "another command may be working on the deployment; nothing more was written. "
                "Run `orchestrator status`, then go on from there."
            )

    @contextlib.contextmanager
    def locked(self, command: str, wait: float = 0.0) -> Iterator[str | None]:
        """Hold the exclusive lock for a command, waiting up to `wait` seconds for another's;
        yield a note if a dead holder's lock was taken."""
        self.check()
        fd = self._acquire_within(wait)
        try:
            previous = _read_holder(fd)
            note = None
            if previous and not _pid_alive(previous.get("pid")):
                note = (
                    f"note: took over the lock left by {_describe_holder(previous)}, "
                    "which is no longer running"
                )
            _write_holder(fd, command)
            self._remove_stale_temp_files()
            try:
                yield note
            finally:
                os.ftruncate(fd, 0)
                self._lock = None
        finally:
            os.close(fd)

    def _acquire_within(self, wait: float) -> int:
        deadline = time.monotonic() + wait
        while True:
            try:
                return self._acquire()
            except LockHeld:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(LOCK_POLL, left))

    def _acquire(self) -> int:
        """flock the lock file, making sure the file we locked is the one at the path (it
        may be removed between our open and our flock)."""
        for _ in range(5):
            try:
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            except OSError as exc:
                reason = {errno.ELOOP: "a symlink", errno.EISDIR: "a directory"}.get(
                    exc.errno or 0, exc.strerror
                )
                raise UsageError(f"{self.lock_path}: cannot use the lock file: {reason}") from None
            info = os.fstat(fd)
            if not stat.S_ISREG(info.st_mode):
                os.close(fd)
                raise UsageError(f"{self.lock_path}: cannot use the lock file: not a regular file")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(_read_holder(fd))
                os.close(fd)
                raise LockHeld(
                    f"{self.path} is locked by {holder}; only one command may work on a "
                    "deployment at a time. Wait for it to finish (--lock-timeout DURATION "
                    "waits), or stop it (Ctrl-C) first."
                ) from None
            try:
                at_path = os.stat(self.lock_path)
            except OSError:
                at_path = None
            if at_path is not None and (at_path.st_dev, at_path.st_ino) == (
                info.st_dev,
                info.st_ino,
            ):
                self._lock = (info.st_dev, info.st_ino)
                return fd
            os.close(fd)  # locked a file that was just removed or replaced: again
        raise UsageError(f"{self.lock_path}: the lock file keeps being replaced; try again")

    def _remove_stale_temp_files(self) -> None:
        """Temp files a killed save left behind (we hold the lock: nobody is writing)."""
        for leftover in self.real.parent.glob(f".{self.real.name}.*.tmp"):
            with contextlib.suppress(OSError):
                leftover.unlink()


def _revision_of(path: Path) -> int | None:
    """The revision of the state file at `path` (0 for one from before revisions), or None
    if there is none."""
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(MAX_STATE_BYTES + 1))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return -1  # unreadable now: certainly not what this command last saw
    revision = data.get("revision", 0) if isinstance(data, dict) else -1
    return revision if isinstance(revision, int) else -1


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _read_holder(fd: int) -> dict[str, Any] | None:
    os.lseek(fd, 0, os.SEEK_SET)
    raw = os.read(fd, 4096)
    try:
        holder = json.loads(raw) if raw.strip() else None
    except json.JSONDecodeError:
        return None
    return holder if isinstance(holder, dict) else None


def _write_holder(fd: int, command: str) -> None:
    holder = {
        "pid": os.getpid(),
        "host": os.uname().nodename,  # socket.gethostname(), without importing socket
        "command": command,
        "since": now(),
        "argv": sys.argv[1:],
    }
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(holder).encode())
    os.fsync(fd)


def _describe_holder(holder: dict[str, Any] | None) -> str:
    if not holder:
        return "another orchestrator command"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} "
        f"(`{holder.get('command')}`, since {holder.get('since')})"
    )


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---- validation -------------------------------------------------------------------------

_PHASE_FIELDS = set(PhaseRecord.FIELDS)
# Fields older versions wrote and nothing reads any more: accepted, and dropped.
_RETIRED_PHASE_FIELDS = {"inputs_digest"}
_RESOURCE_FIELDS = set(Resource.FIELDS)


def decode_state(
    raw: bytes, phase_names: list[str], path: str | Path, restore: str
) -> DeploymentState:
    """A state from the bytes of a state file or object; UsageError if they are not one
    (`restore`: how to get a good one back, where it is kept)."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(
            f"{path}: state file is corrupted (not valid JSON: {exc}); it was left "
            f"untouched. {restore}"
        ) from None
    return parse_state(data, phase_names, path)


def parse_state(data: Any, phase_names: list[str], path: str | Path) -> DeploymentState:
    """Turn decoded JSON into a DeploymentState, or raise UsageError saying what is wrong."""

    def bad(problem: str) -> UsageError:
        return UsageError(
            f"{path}: invalid state file: {problem}. It was left untouched; restore it from a "
            "backup, or move it away to start over."
        )

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
    if isinstance(data.get(MOVED_TO), str):
        raise UsageError(moved_message(path, data[MOVED_TO]))
    schema = data.get("schema")
    if isinstance(schema, int) and schema > SCHEMA_VERSION:
        raise bad(
            f"schema version {schema} is newer than this orchestrator "
            f"understands ({SCHEMA_VERSION}); upgrade orchestrator"
        )
    if schema not in (*MIGRATIONS, SCHEMA_VERSION) or isinstance(schema, bool):
        raise bad(f"unknown schema version {schema!r} (expected {SCHEMA_VERSION})")
    for key, kind in (("deployment", str), ("settings", dict), ("phases", list)):
        if not isinstance(data.get(key), kind):
            raise bad(f"'{key}' is missing or not a {kind.__name__}")
    while data["schema"] != SCHEMA_VERSION:
        data = MIGRATIONS[data["schema"]](data, phase_names, bad)
    rollback_to = data.get("rollback_to")
    if rollback_to is not None and rollback_to not in (ROLLBACK_ALL, *phase_names):
        raise bad(f"'rollback_to' names unknown phase {rollback_to!r}")

    names = [p.get("name") if isinstance(p, dict) else None for p in data["phases"]]
    if names != phase_names:
        raise bad(f"phases are {names}, expected {phase_names} in that order")
    phases = [_parse_phase(p, bad) for p in data["phases"]]
    identity, revision = data.get("identity"), data.get("revision", 0)
    if not isinstance(identity, str) or not _IDENTITY.match(identity):
        raise bad(f"'identity' must be 16 hexadecimal digits, got {identity!r}")
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 0:
        raise bad(f"'revision' must be a whole number, got {revision!r}")
    for key in ("created_at", "updated_at"):
        if key in data and not _timestamp(data[key]):
            raise bad(f"'{key}' is not a time like 2026-01-31T12:00:00Z: {data[key]!r}")
    made_with = data.get("made_with")
    if made_with is not None and not _made_with(made_with):
        raise bad(
            f"'made_with' must map config, state, sandbox_dir to text and sandbox to "
            f"true or false, got {made_with!r}"
        )
    return DeploymentState(
        deployment=data["deployment"],
        settings=data["settings"],
        phases=phases,
        schema=SCHEMA_VERSION,
        created_at=str(data.get("created_at") or now()),
        updated_at=str(data.get("updated_at") or now()),
        rollback_to=rollback_to,
        identity=identity,
        pre_identity=bool(data.get("pre_identity", False)),
        revision=revision,
        made_with=made_with,
    )


_MADE_WITH_TEXT = ("config", "state", "sandbox_dir")


def _made_with(value: Any) -> bool:
    """Whether `value` is a record of the flags a state was made with (see made_with)."""
    if not isinstance(value, dict) or not set(value) <= {*_MADE_WITH_TEXT, "sandbox"}:
        return False
    texts = all(isinstance(value.get(key), str | None) for key in _MADE_WITH_TEXT)
    return texts and isinstance(value.get("sandbox", False), bool)


def moved_message(path: str | Path, url: str) -> str:
    return (
        f"{path} was pushed to {url} (`state push`) and is no longer the deployment's state: "
        f"nothing was changed. Use --state {url} (or state.url in the config)"
    )


def _v1_to_v2(data: dict[str, Any], phase_names: list[str], bad: Any) -> dict[str, Any]:
    """Schema 2 added the Kubernetes and load balancer phases (controller_iam ... endpoint)
    around the DNS and certificate ones of schema 1: they join as pending, in run order."""
    names = [p.get("name") if isinstance(p, dict) else None for p in data["phases"]]
    if names != [n for n in phase_names if n in names]:
        raise bad(f"phases are {names}, expected a subset of {phase_names} in that order")
    records = {p["name"]: p for p in data["phases"]}
    phases = [records.get(n, {"name": n, "status": "pending"}) for n in phase_names]
    return {**data, "schema": 2, "phases": phases}


def _v2_to_v3(data: dict[str, Any], phase_names: list[str], bad: Any) -> dict[str, Any]:
    """Schema 3 added each phase's `kept` list, empty until a rollback keeps something."""
    return {**data, "schema": 3}


def _v3_to_v4(data: dict[str, Any], phase_names: list[str], bad: Any) -> dict[str, Any]:
    """Schema 4 gave each state file an identity (and a revision). A file from before gets
    one now; what it made carries the deployment's tag but no identity, which it may
    still claim (pre_identity)."""
    return {**data, "schema": 4, "identity": new_identity(), "pre_identity": True}


# Each turns a state of that schema version into the next one.
MIGRATIONS: dict[int, Any] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}
_IDENTITY = re.compile(r"^[0-9a-f]{16}$")
_TIMESTAMP_FIELDS = ("started_at", "finished_at", "waiting_since")


# A time as this file writes them (see now()): 2026-01-31T12:00:00Z.
_TIME = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})Z")


def _time(stamp: str) -> datetime:
    """A time as this file writes them, in UTC; ValueError if `stamp` is not one (a 13th
    month, say). Read by hand, not by strptime: its module, and the calendar module that
    loads with it, cost `status` a millisecond."""
    found = _TIME.fullmatch(stamp)
    if found is None:
        raise ValueError(f"not a time like 2026-01-31T12:00:00Z: {stamp!r}")
    year, month, day, hour, minute, second = (int(part) for part in found.groups())
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def _timestamp(value: Any) -> bool:
    """Whether `value` is a time as this file writes them (see now())."""
    if not isinstance(value, str):
        return False
    try:
        _time(value)
    except ValueError:
        return False
    return True


def _parse_phase(raw: dict[str, Any], bad: Any) -> PhaseRecord:
    name = raw["name"]
    unknown = set(raw) - _PHASE_FIELDS - _RETIRED_PHASE_FIELDS
    if unknown:
        raise bad(f"phase {name}: unknown fields {sorted(unknown)}")
    if raw.get("status") not in STATUSES:
        raise bad(f"phase {name}: unknown status {raw.get('status')!r}")
    if not isinstance(raw.get("outputs", {}), dict):
        raise bad(f"phase {name}: outputs must be an object")
    resources = raw.get("resources", [])
    if not isinstance(resources, list) or not all(
        isinstance(r, dict) and {"kind", "id", "created"} <= set(r) <= _RESOURCE_FIELDS
        for r in resources
    ):
        raise bad(f"phase {name}: resources must be a list of {{kind, id, created, ...}}")
    kept = raw.get("kept", [])
    if not isinstance(kept, list) or not all(
        isinstance(k, dict) and set(k) == {"kind", "id", "reason"} for k in kept
    ):
        raise bad(f"phase {name}: kept must be a list of {{kind, id, reason}}")
    for key in _TIMESTAMP_FIELDS:
        if raw.get(key) is not None and not _timestamp(raw[key]):
            raise bad(f"phase {name}: '{key}' is not a time like 2026-01-31T12:00:00Z")
    if not isinstance(raw.get("attempts", 0), int) or not isinstance(raw.get("generation", 0), int):
        raise bad(f"phase {name}: attempts and generation must be integers")
    fields = {k: v for k, v in raw.items() if k not in ("resources", *_RETIRED_PHASE_FIELDS)}
    fields["status"] = PhaseStatus(raw["status"])
    return PhaseRecord(**fields, resources=[Resource(**r) for r in resources])


def elapsed_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    then = _time(stamp)
    return max(0.0, time.time() - then.timestamp())
