"""Start, find and stop the sandbox world, a detached process serving on loopback ports.

Its directory holds `pid`, `world.json` (endpoints; written last, so its presence means
ready), `env` (the settings to use it), `kubeconfig` (contexts `sandbox` and `staging`),
`config.yaml` and `config-staging.yaml` (the seeded deployments, one per cluster), the log,
`cloudtrail.jsonl` and `kube-audit.jsonl` (every AWS and Kubernetes API request the world
received, for tests and curiosity).
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from orchestrator.errors import UsageError
from orchestrator.sandbox import options

START_TIMEOUT = 90.0


def running(directory: Path) -> dict[str, Any] | None:
    """The world's endpoints if its process is alive, else None."""
    try:
        info = json.loads((directory / "world.json").read_text())
        pid = int((directory / "pid").read_text())
    except (OSError, ValueError):
        return None
    if info.get("pid") != pid or not _is_world_process(pid):
        return None
    return info


def _is_world_process(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        try:
            os.kill(pid, 0)
        except OSError:
            return False
        return True
    return b"orchestrator.sandbox.server" in cmdline


def up(
    directory: Path, settings: dict[str, float] | None = None, second_team: bool = False
) -> dict[str, Any]:
    """Start the world in `directory` unless it is already running there. `settings`: the
    delays of options.SETTINGS (by name) that differ from their defaults."""
    info = running(directory)
    if info is not None:
        return info
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "world.json").unlink(missing_ok=True)
    log = open(directory / "sandbox.log", "ab")  # noqa: SIM115 - handed to the child
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "orchestrator.sandbox.server",
            "--dir",
            str(directory),
            *options.as_arguments(settings or {}, second_team),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        cwd=os.getcwd(),
    )
    log.close()
    (directory / "pid").write_text(str(process.pid))
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        info = running(directory)
        if info is not None:
            return info
        if process.poll() is not None:
            raise UsageError(f"the sandbox world failed to start:\n{_tail(directory)}")
        time.sleep(0.1)
    process.kill()
    raise UsageError(
        f"the sandbox world did not start within {START_TIMEOUT:.0f}s:\n{_tail(directory)}"
    )


def ensure_up(directory: Path) -> dict[str, Any]:
    info = running(directory)
    if info is None:
        print(f"starting the sandbox world in {directory} ...", file=sys.stderr)
        info = up(directory)
    return info


def down(directory: Path) -> bool:
    """Stop the world; True if it was running."""
    info = running(directory)
    if info is None:
        return False
    pid = info["pid"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    for name in ("pid", "world.json"):
        (directory / name).unlink(missing_ok=True)
    return True


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
