"""The completion scripts: `python -m orchestrator ...`, as the README runs it, completes
as `orchestrator ...` does; after `sandbox` its actions, after `outputs` the outputs'
names. Bash is driven for real; zsh's script is checked for its binding."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from orchestrator import cli
from orchestrator.outputs import KNOWN


def script(shell: str, capsys: pytest.CaptureFixture[str]) -> str:
    assert cli.main(["completion", shell]) == 0
    return capsys.readouterr().out


def bash_offers(script: str, line: str) -> list[str]:
    """What bash offers for the last word of `line`, through the function the script binds
    to the line's first word (as bash itself chooses it)."""
    words = line.split(" ")
    program = (
        f"source /dev/stdin <<'SCRIPT'\n{script}\nSCRIPT\n"
        f"COMP_WORDS=({line}); COMP_CWORD={len(words) - 1}; COMP_LINE='{line}'; "
        "COMP_POINT=${#COMP_LINE}; "
        f'bound=$(complete -p {words[0]}); bound=${{bound##*-F }}; "${{bound%% *}}"; '
        'echo "${COMPREPLY[@]}"'
    )
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


@pytest.mark.parametrize(
    "program", ["orchestrator", "python -m orchestrator", "python3 -m orchestrator"]
)
def test_bash_completes_the_command_however_it_is_run(
    program: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bash = script("bash", capsys)
    assert bash_offers(bash, f"{program} ro") == ["rollback"]
    assert bash_offers(bash, f"{program} rollback --to certificates_") == ["certificates_issued"]
    assert bash_offers(bash, f"{program} sandbox ") == ["up", "down", "status"]
    assert bash_offers(bash, f"{program} outputs ") == list(KNOWN)
    assert bash_offers(bash, f"{program} outputs name") == ["name_servers"]
    assert bash_offers(bash, f"{program} plan --det") == ["--detailed-exitcode"]
    assert bash_offers(bash, f"{program} resume --allow") == ["--allow-downgrade"]


def test_bash_leaves_other_python_lines_alone(capsys: pytest.CaptureFixture[str]) -> None:
    bash = script("bash", capsys)
    assert bash_offers(bash, "python -m orch") == ["orchestrator"]
    assert bash_offers(bash, "python setup.py ro") == []  # the shell's own (files) then


def test_zsh_binds_python_m_orchestrator_and_offers_sandbox_and_outputs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    zsh = script("zsh", capsys)
    assert "compdef _orchestrator_python_m python python3" in zsh
    assert "(up down status)" in zsh and "name_servers" in zsh
    # Sourced, not only evaluated, the script registers itself (the README sources it).
    assert "[[ $zsh_eval_context[-1] == eval ]]" not in zsh
    if shutil.which("zsh"):
        checked = subprocess.run(["zsh", "-n"], input=zsh, capture_output=True, text=True)
        assert checked.returncode == 0, checked.stderr


def test_tcsh_offers_sandbox_and_outputs(capsys: pytest.CaptureFixture[str]) -> None:
    tcsh = script("tcsh", capsys)
    assert "n/sandbox/(up down status)/" in tcsh and "name_servers" in tcsh
