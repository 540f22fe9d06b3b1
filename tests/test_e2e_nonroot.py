"""The whole sandbox job as an ordinary user: no root, so no port below 1024, and nothing
on loopback but 127.0.0.1 (as on macOS). The endpoint check reaches the world's ALBs
through the proxy the world's env names (HTTPS_PROXY), as from behind an egress proxy.

Run as root (CI's container), it drops to `nobody` for the job; as anyone else, it runs
the job as that user.
"""

from __future__ import annotations

import os
import pwd
import shutil
import stat
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import phase_status

pytestmark = pytest.mark.complete  # a whole run with the world's default delays: CI only

REPOSITORY = Path(__file__).resolve().parents[1]
USER = "nobody"
TIMEOUT = 600.0
SELF_CHECK = (
    "import os, subprocess, sys, orchestrator_sandbox;"
    "subprocess.run([sys.executable, '-c', ''], check=True); print(os.geteuid())"
)


@pytest.fixture
def as_user() -> Iterator[tuple[list[str], Path]]:
    """The command prefix that runs a program as an unprivileged user, and a directory of
    that user's own to run it in."""
    workdir = Path(tempfile.mkdtemp(prefix="orchestrator-nonroot-"))
    try:
        if os.geteuid() != 0:
            yield [], workdir
            return
        user = pwd.getpwnam(USER)
        os.chown(workdir, user.pw_uid, user.pw_gid)
        interpreter = Path(os.path.realpath(sys.executable)).parent
        for path in (Path(sys.executable).parent, interpreter, Path(sys.prefix), REPOSITORY):
            _let_others_through(path)
        yield _drop_to(user), workdir
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _drop_to(user: pwd.struct_passwd) -> list[str]:
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--clear-groups"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    pytest.fail("running as root, and neither setpriv nor runuser is there to drop privileges")


def _let_others_through(path: Path) -> None:
    """Let other users traverse the temporary directories above the checkout and the venv
    (mkdtemp makes them 0700), so that `nobody` can run the venv's Python; outside the
    temporary directory nothing is changed."""
    temporary = Path(tempfile.gettempdir()).resolve()
    for directory in [path.resolve(), *path.resolve().parents]:
        if directory == temporary or temporary not in directory.parents:
            continue
        mode = directory.stat().st_mode
        if not mode & stat.S_IXOTH:
            directory.chmod(mode | stat.S_IXOTH)


def runs(
    prefix: list[str], python: str, env: dict[str, str], workdir: Path
) -> subprocess.CompletedProcess[str]:
    """Whether the user can run `python`, with the orchestrator importable, and it can
    start itself again (as the world's process does)."""
    return subprocess.run(
        [*prefix, python, "-c", SELF_CHECK], env=env, cwd=workdir, capture_output=True, text=True
    )


def python_for(prefix: list[str], env: dict[str, str], workdir: Path) -> str:
    """A Python the user can run with this environment's packages: this one, or, when it
    lives where the user may not go (pyenv under /root, say), a venv of the system's
    Python of the same version that reads this environment's site-packages."""
    if not prefix or runs(prefix, sys.executable, env, workdir).returncode == 0:
        return sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    candidates = (Path("/usr/bin") / version, Path("/usr/local/bin") / version)
    system = next((str(p) for p in candidates if p.exists()), None)
    if system is None:
        pytest.fail(f"{USER} cannot run {sys.executable}, and there is no system {version}")
    home = workdir / "venv"
    subprocess.run([system, "-m", "venv", "--without-pip", str(home)], check=True)
    purelib = Path(sysconfig.get_paths(vars={"base": str(home), "platbase": str(home)})["purelib"])
    ours = sysconfig.get_paths()["purelib"]
    _let_others_through(Path(ours))
    # addsitedir, not a plain path: the editable installs' own .pth files must run too.
    (purelib / "orchestrator-packages.pth").write_text(f"import site; site.addsitedir({ours!r})\n")
    return str(home / "bin" / "python")


def test_an_ordinary_user_runs_the_whole_sandbox_job(
    as_user: tuple[list[str], Path],
) -> None:
    prefix, workdir = as_user
    home = workdir / "home"
    home.mkdir()
    if prefix:
        shutil.chown(home, USER, pwd.getpwnam(USER).pw_gid)
    env = {
        **{k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")},
        "HOME": str(home),
        "ORCHESTRATOR_POLL_MAX_INTERVAL": "0.5",
    }

    python = python_for(prefix, env, workdir)

    def orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*prefix, python, "-m", "orchestrator", *args],
            env=env,
            cwd=workdir,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )

    probe = runs(prefix, python, env, workdir)
    assert probe.returncode == 0, f"{USER} cannot run {python}: {probe.stderr}"
    assert probe.stdout.strip() != "0"

    try:
        done = orchestrator("run", "--sandbox")
        assert done.returncode == 0, done.stdout + done.stderr
        assert phase_status(workdir / "state.json", "endpoint") == "done"
        # Titles name the deployment's own host, not a placeholder.
        assert "dns_record: alias record kubeflow.platform.example.com -> the ALB" in done.stdout
        undone = orchestrator("rollback", "--all", "--sandbox", "--yes")
        assert undone.returncode == 0, undone.stdout + undone.stderr
    finally:
        stopped = orchestrator("sandbox", "down")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
