"""The product installs alone: its wheel carries neither the sandbox world nor the
Kubernetes API emulator nor a top-level `states`, and without the sandbox the commands
that need it say what to install."""

from __future__ import annotations

import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from orchestrator import cli
from orchestrator.builders.controller_manifests import BUNDLED_VERSIONS
from orchestrator.errors import ExitCode

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        ["sandbox", "up"],
        ["sandbox", "status", "--dir", "x"],
        ["run", "--sandbox"],
        ["rollback", "--all", "--yes", "--sandbox"],
    ],
)
def test_without_the_sandbox_its_commands_say_what_to_install(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr("importlib.metadata.entry_points", lambda **_: [])
    assert cli.main(argv) == ExitCode.USAGE
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error: the sandbox world is not installed: pip install kubeflow-alb")


@pytest.mark.complete
def test_a_production_wheel_installs_alone_without_the_sandbox(tmp_path: Path) -> None:
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(tmp_path), str(REPO)],
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    (wheel,) = tmp_path.glob("kubeflow_alb_orchestrator-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith("-info")}
    assert tops == {"orchestrator"}
    assert "orchestrator/states/ingress.py" in names
    for version in BUNDLED_VERSIONS:
        for name in ("aws-load-balancer-controller.yaml", "iam-policy.json"):
            assert f"orchestrator/builders/manifests/{version}/{name}" in names
    assert not [n for n in names if "sandbox" in n.split("/")[-1] or "kube_api" in n]

    home = tmp_path / "venv"
    venv.create(home, with_pip=True)
    python = str(home / "bin" / "python")
    installed = subprocess.run(
        [python, "-m", "pip", "install", "-q", "-c", str(REPO / "constraints.txt"), str(wheel)],
        capture_output=True,
        text=True,
    )
    assert installed.returncode == 0, installed.stderr

    def orchestrator(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [python, "-m", "orchestrator", *args], capture_output=True, text=True, cwd=tmp_path
        )

    assert orchestrator("--help").returncode == 0
    for module in ("moto", "orchestrator_sandbox", "kube_api_emulator", "states"):
        found = subprocess.run([python, "-c", f"import {module}"], capture_output=True, cwd=home)
        assert found.returncode != 0, f"{module} is importable from a production install"
    up = orchestrator("sandbox", "up")
    assert up.returncode == ExitCode.USAGE
    assert up.stderr.strip().splitlines() == [
        "error: the sandbox world is not installed: pip install kubeflow-alb-sandbox "
        "(in a checkout of this repository: pip install -e ./kube-api-emulator -e ./sandbox)"
    ]
