"""Start, find and stop the sandbox world, a detached process serving on loopback ports.

Its directory holds `lock` (held while a process starts or stops the world), `pid`,
`world.json` (endpoints, the directory it serves and warnings for the user; written last,
so its presence means ready), `env` (the settings to use it), `kubeconfig` (contexts
`sandbox` and `staging`), `config.yaml` and `config-staging.yaml` (the seeded deployments,
one per cluster), the log, `cloudtrail.jsonl` and `kube-audit.jsonl` (every AWS and
Kubernetes API request the world received, for tests and curiosity), and
`world-events.jsonl` (every wait the world imposed: events.py).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from orchestrator.errors import Interrupted, UsageError
from orchestrator_sandbox import options

START_TIMEOUT = 90.0
STOP_TIMEOUT = 15.0
# Another process holds the directory's lock while it starts a world (at most START_TIMEOUT,
# then stops it if it failed) or stops one.
LOCK_TIMEOUT = START_TIMEOUT + 2 * STOP_TIMEOUT
SERVER = ("-m", "orchestrator_sandbox.server")
INTERRUPTS = (signal.SIGINT, signal.SIGTERM)


class StartInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during `up`, after up cleaned up: the message says what runs now.

    Still a KeyboardInterrupt, so that whatever stops on an interrupt stops on it too; an
    Interrupted, so that the command line tells the user about the world instead of a
    state file."""


def running(directory: Path) -> dict[str, Any] | None:
    """The world's endpoints if a world serving `directory` is ready there, else None."""
    directory = directory.resolve()
    pid = _world_pid(directory)
    try:
        info = json.loads((directory / "world.json").read_text())
    except (OSError, ValueError):
        return None
    # A copied directory's world.json names the directory it was copied from.
    if pid is None or info.get("pid") != pid or info.get("directory") != str(directory):
        return None
    return info


def up(
    directory: Path,
    settings: dict[str, float] | None = None,
    second_team: bool = False,
    profile: str | None = None,
    time_scale: float = 1.0,
    leftovers: bool = False,
    adopted_controller: str | None = None,
    setup_script: bool = False,
) -> dict[str, Any]:
    """Start the world in `directory` unless it is already running there. `settings`: the
    delays of options.SETTINGS (by name) that differ from their defaults; `profile` and
    `time_scale`: what they were made from (options.profile_settings), for world.json.

    Interrupted (Ctrl-C, SIGTERM), it stops the world it was starting and raises
    StartInterrupted."""
    directory = directory.resolve()
    directory.mkdir(parents=True, exist_ok=True)
    try:
        with _locked(directory):
            info = running(directory)
            if info is None:
                world_args = options.as_arguments(
                    settings or {},
                    second_team,
                    profile,
                    time_scale,
                    leftovers,
                    adopted_controller,
                    setup_script,
                )
                info = _start(directory, world_args)
    except StartInterrupted:
        raise
    except KeyboardInterrupt:
        # Before _start spawned a world, or as it returned one ready (between, it notes them).
        if running(directory) is not None:
            raise StartInterrupted(
                f"the sandbox world in {directory} runs; `orchestrator sandbox down --dir "
                f"{directory}` stops it"
            ) from None
        raise StartInterrupted(f"nothing was started in {directory}") from None
    warn(info)
    return info


def ensure_up(directory: Path) -> dict[str, Any]:
    info = running(directory)
    if info is None:
        print(f"starting the sandbox world in {directory} ...", file=sys.stderr)
        return up(directory)
    warn(info)
    return info


def warn(info: dict[str, Any]) -> None:
    """Print the world's warnings on stderr, one line each: the world runs detached, and
    what it says only in its log, nobody reads."""
    for warning in info.get("warnings", []):
        print(f"sandbox: warning: {warning}", file=sys.stderr)


def down(directory: Path) -> bool:
    """Stop the world serving `directory`, ready or still starting; True if one ran."""
    directory = directory.resolve()
    if not directory.is_dir():
        return False
    with _locked(directory):
        return _stop_world(directory)


@contextlib.contextmanager
def _locked(directory: Path) -> Iterator[None]:
    """Only one process at a time starts or stops the world in `directory`: a second `up`
    waits for the first and finds its world; a `down` waits for a start to end and stops
    what it started. The lock file is never removed: a process waiting on a removed file's
    lock would get a lock no one else sees."""
    with open(directory / "lock", "a") as lock:
        if not _try_lock(lock):
            print(
                f"waiting for another process starting or stopping the sandbox world in "
                f"{directory} ...",
                file=sys.stderr,
            )
            deadline = time.monotonic() + LOCK_TIMEOUT
            while not _try_lock(lock):
                if time.monotonic() > deadline:
                    raise UsageError(
                        f"another process is still starting or stopping the sandbox world in "
                        f"{directory} after {LOCK_TIMEOUT:.0f}s; try again when it is done"
                    )
                time.sleep(0.1)
        yield  # closing the file releases the lock


def _try_lock(lock: IO[str]) -> bool:
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _start(directory: Path, world_args: list[str]) -> dict[str, Any]:
    """Start a world and wait until it is ready; we hold the lock and none is ready.

    From before the world is spawned until it is ready or stopped, Ctrl-C and SIGTERM are
    noted, not raised: raised between two statements, one could leave a world running that
    no pid file names, or cut its clean-up short. The wait looks at them at each poll."""
    _stop_world(directory)  # one still starting for an `up` that was killed: no one waits on it
    with _interrupts_held() as interrupts:
        process = _spawn(directory, world_args)
        (directory / "pid").write_text(str(process.pid))
        try:
            return _wait_until_ready(directory, process, interrupts)
        except BaseException as error:
            _stop_child(process)
            _forget(directory)
            if isinstance(error, KeyboardInterrupt):
                raise StartInterrupted(
                    f"the sandbox world starting in {directory} was stopped; nothing runs there"
                ) from None
            raise


def _spawn(directory: Path, world_args: list[str]) -> subprocess.Popen[bytes]:
    """The world's process, in a session of its own: Ctrl-C at the terminal is ours to
    handle, not the world's. `world_args`: its settings (options.as_arguments)."""
    with open(directory / "sandbox.log", "ab") as log:
        return subprocess.Popen(
            [
                sys.executable,
                *SERVER,
                "--dir",
                str(directory),
                *world_args,
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            cwd=os.getcwd(),
        )


def _wait_until_ready(
    directory: Path, process: subprocess.Popen[bytes], interrupts: list[int]
) -> dict[str, Any]:
    """The world's endpoints once it is ready; KeyboardInterrupt once an interrupt is noted."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if interrupts:
            raise KeyboardInterrupt
        info = running(directory)
        if info is not None:
            return info
        if process.poll() is not None:
            raise UsageError(f"the sandbox world failed to start:\n{_tail(directory)}")
        time.sleep(0.1)
    raise UsageError(
        f"the sandbox world did not start within {START_TIMEOUT:.0f}s:\n{_tail(directory)}"
    )


@contextlib.contextmanager
def _interrupts_held() -> Iterator[list[int]]:
    """Note Ctrl-C and SIGTERM (unless ignored) instead of acting on them while the block
    runs; yields the signals that came. Only the main thread receives them, and only it can
    hold them."""
    received: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def note(signum: int, _frame: Any) -> None:
        received.append(signum)

    held = [signum for signum in INTERRUPTS if signal.getsignal(signum) is not signal.SIG_IGN]
    previous = {signum: signal.signal(signum, note) for signum in held}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _stop_child(process: subprocess.Popen[bytes]) -> None:
    """Stop a world we started (Popen's own calls: its pid cannot have been reused)."""
    process.terminate()
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _stop_world(directory: Path) -> bool:
    """Stop the process serving `directory`, ready or not, and forget the files that named
    it (or a dead world, or the world of the directory this one was copied from)."""
    pid = _world_pid(directory)
    if pid is not None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.05)
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    _forget(directory)
    return pid is not None


def _forget(directory: Path) -> None:
    for name in ("pid", "world.json"):
        (directory / name).unlink(missing_ok=True)


def _world_pid(directory: Path) -> int | None:
    """The pid in `directory`'s pid file, if that process is the world serving `directory`:
    not a dead world's pid since reused, nor, in a copied directory, the original's world."""
    try:
        pid = int((directory / "pid").read_text())
    except (OSError, ValueError):
        return None
    return pid if _serves(pid, directory) else None


def _serves(pid: int, directory: Path) -> bool:
    """Whether process `pid` is a world server started (by `_spawn`) for `directory`."""
    if not _alive(pid):
        return False
    if not Path("/proc/self").exists():
        return True  # no /proc (macOS): that it lives is all we can tell
    try:
        args = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    return args[1:5] == [*SERVER, "--dir", str(directory)]


def _alive(pid: int) -> bool:
    """Whether the process still runs; an exited one waiting to be reaped (zombie) does not."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True  # another user's process
        return True
    return "\nState:\tZ" not in status


def read_env(directory: Path) -> tuple[dict[str, str], list[str]]:
    """The variables `<dir>/env` exports, and those it unsets."""
    exports: dict[str, str] = {}
    unsets: list[str] = []
    for line in (directory / "env").read_text().splitlines():
        words = shlex.split(line, comments=True)
        if len(words) >= 2 and words[0] == "export" and "=" in words[1]:
            key, _, value = words[1].partition("=")
            exports[key] = value
        elif words and words[0] == "unset":
            unsets += words[1:]
    return exports, unsets


def apply_env(directory: Path) -> None:
    """Make this process use the world, as `source <dir>/env` does for a shell."""
    exports, unsets = read_env(directory)
    for key in unsets:
        os.environ.pop(key, None)
    os.environ.update(exports)


def describe(directory: Path, info: dict[str, Any]) -> str:
    lines = [f"sandbox world running in {directory} (pid {info['pid']})"]
    lines += [f"  {name}: {value}" for name, value in info.get("endpoints", {}).items()]
    return "\n".join(lines)


def _tail(directory: Path, lines: int = 20) -> str:
    try:
        text = (directory / "sandbox.log").read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])
