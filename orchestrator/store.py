"""The persisted deployment state: schema, validation, atomic writes and the command lock.

The file is JSON, written as temp file + fsync + rename in the same directory (so a
crash leaves either the old or the new file, never half of one), mode 0600. A lock
file next to it (`state.json.lock`) is held with flock for a whole command; the kernel
releases it when the holder dies, so a killed run never blocks the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError

SCHEMA_VERSION = 3
STATUSES = ("pending", "in_progress", "waiting", "needs_action", "done", "failed", "rolled_back")
MAX_STATE_BYTES = 8 * 1024 * 1024
ROLLBACK_ALL = "*"  # rollback_to while a `rollback --all` runs


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Resource:
    """Something a phase made or uses. Rollback deletes it only when `created`.

    `confirmed` is False while only the intent to create it is recorded: the process may
    have died before or after the AWS call, so rollback and re-entry must look it up.
    """

    kind: str
    id: str
    created: bool
    confirmed: bool = True
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass
class PhaseRecord:
    name: str
    status: str = "pending"
    outputs: dict[str, Any] = field(default_factory=dict)
    resources: list[Resource] = field(default_factory=list)
    attempts: int = 0
    started_at: str | None = None
    finished_at: str | None = None
    error: str | None = None
    waiting_for: str | None = None
    waiting_since: str | None = None
    waiting_detail: str | None = None
    action: str | None = None  # "enter" or "rollback" while the phase is being worked on
    intent: str | None = None  # the mutating call about to be made, for the operator
    inputs_digest: str | None = None  # digest of the settings the phase was done with
    generation: int = 0  # bumped by each rollback, so retry tokens of a new round differ
    # What the last rollback left in place on purpose (something not ours still uses it):
    # {"kind", "id", "reason"} each, shown by `status` until the phase is entered again.
    kept: list[dict[str, str]] = field(default_factory=list)


@dataclass
class DeploymentState:
    deployment: str
    settings: dict[str, Any]
    phases: list[PhaseRecord]
    schema: int = SCHEMA_VERSION
    created_at: str = field(default_factory=now)
    updated_at: str = field(default_factory=now)
    rollback_to: str | None = None  # set while a rollback runs; a crash leaves it for resume

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


class StateStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(self.path.name + ".lock")
        self._lock_fd: int | None = None

    def exists(self) -> bool:
        return self.path.exists()

    def load(self, phase_names: list[str]) -> DeploymentState:
        """Read and validate the state file; raise UsageError, leaving the file as it is."""
        raw = self._read_bytes()
        try:
            data = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UsageError(
                f"{self.path}: state file is corrupted (not valid JSON: {exc}); it was left "
                "untouched. Restore it from a backup, or move it away to start a new deployment."
            ) from None
        return parse_state(data, phase_names, self.path)

    def _read_bytes(self) -> bytes:
        if self.path.is_dir():
            raise UsageError(f"{self.path}: state path is a directory, not a file")
        try:
            with open(self.path, "rb") as fh:
                raw = fh.read(MAX_STATE_BYTES + 1)
        except OSError as exc:
            raise UsageError(f"{self.path}: cannot read state file: {exc.strerror}") from None
        if len(raw) > MAX_STATE_BYTES:
            raise UsageError(f"{self.path}: state file is larger than {MAX_STATE_BYTES} bytes")
        return raw

    def save(self, state: DeploymentState) -> None:
        state.updated_at = now()
        data = state.to_json().encode()
        directory = self.path.parent
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_dir(directory)

    def check_directory(self) -> None:
        """Refuse a directory others could swap the state file in (world-writable, no sticky
        bit), or one that does not exist."""
        directory = self.path.parent
        try:
            mode = directory.stat().st_mode
        except OSError:
            raise UsageError(f"{directory}: the state file's directory does not exist") from None
        if mode & stat.S_IWOTH and not mode & stat.S_ISVTX:
            raise UsageError(
                f"{directory}: the state file's directory is writable by everyone, so others "
                "could replace the deployment's state; use a private directory (--state PATH)"
            )

    @contextlib.contextmanager
    def locked(self, command: str) -> Iterator[str | None]:
        """Hold the exclusive lock for a command; yield a note if a dead holder's lock was taken."""
        self.check_directory()
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _describe_holder(_read_holder(fd))
                raise UsageError(
                    f"{self.path} is locked by {holder}; only one command may work on a "
                    "deployment at a time. Wait for it to finish, or stop it (Ctrl-C) first."
                ) from None
            previous = _read_holder(fd)
            note = None
            if previous and not _pid_alive(previous.get("pid")):
                note = (
                    f"note: took over the lock left by {_describe_holder(previous)}, "
                    "which is no longer running"
                )
            _write_holder(fd, command)
            self._lock_fd = fd
            try:
                yield note
            finally:
                os.ftruncate(fd, 0)
                self._lock_fd = None
        finally:
            os.close(fd)


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
        "host": socket.gethostname(),
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

_PHASE_FIELDS = {f for f in PhaseRecord.__dataclass_fields__}
_RESOURCE_FIELDS = {f for f in Resource.__dataclass_fields__}


def parse_state(data: Any, phase_names: list[str], path: Path) -> DeploymentState:
    """Turn decoded JSON into a DeploymentState, or raise UsageError saying what is wrong."""

    def bad(problem: str) -> UsageError:
        return UsageError(
            f"{path}: invalid state file: {problem}. It was left untouched; restore it from a "
            "backup, or move it away to start over."
        )

    if not isinstance(data, dict):
        raise bad("expected a JSON object")
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
    return DeploymentState(
        deployment=data["deployment"],
        settings=data["settings"],
        phases=phases,
        schema=SCHEMA_VERSION,
        created_at=str(data.get("created_at") or now()),
        updated_at=str(data.get("updated_at") or now()),
        rollback_to=rollback_to,
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


# Each turns a state of that schema version into the next one.
MIGRATIONS: dict[int, Any] = {1: _v1_to_v2, 2: _v2_to_v3}


def _parse_phase(raw: dict[str, Any], bad: Any) -> PhaseRecord:
    name = raw["name"]
    unknown = set(raw) - _PHASE_FIELDS
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
    if not isinstance(raw.get("attempts", 0), int) or not isinstance(raw.get("generation", 0), int):
        raise bad(f"phase {name}: attempts and generation must be integers")
    fields = {k: v for k, v in raw.items() if k != "resources"}
    return PhaseRecord(**fields, resources=[Resource(**r) for r in resources])


def elapsed_since(stamp: str | None) -> float | None:
    if not stamp:
        return None
    then = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return max(0.0, time.time() - then.timestamp())
