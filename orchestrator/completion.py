"""Shell completion scripts: shtab's, generated from the command line's own definition,
and a binding for `python -m orchestrator ...`, which is how the README runs it.

shtab binds the program's name (`orchestrator`, the console script) only. A shell
completes a command line by its first word, here `python`: the binding below hands a
line that reads `python -m orchestrator ...` to the orchestrator's completion, as if the
first three words were `orchestrator`, and any other python line to python's own
completion (bash-completion's or zsh's `_python`, when the shell has one).
"""

from __future__ import annotations

import argparse

# The interpreters the binding answers for, by the name typed.
PYTHONS = ("python", "python3")

_BASH = f"""
# `python -m orchestrator ...` completes as `orchestrator ...`; other python lines as before.
_orchestrator_python_m() {{
  if [[ ${{COMP_WORDS[1]-}} == -m && ${{COMP_WORDS[2]-}} == orchestrator ]] &&
     [[ $COMP_CWORD -gt 2 ]]; then
    local -a words=(orchestrator "${{COMP_WORDS[@]:3}}")
    local cword=$((COMP_CWORD - 2))
    local -a COMP_WORDS=("${{words[@]}}")
    local COMP_CWORD=$cword
    _shtab_orchestrator
  elif [[ ${{COMP_WORDS[1]-}} == -m && $COMP_CWORD -eq 2 ]]; then
    COMPREPLY=($(compgen -W orchestrator -- "${{COMP_WORDS[2]}}"))
  elif declare -F _python >/dev/null; then
    _python "$@"
  fi
}}
complete -o bashdefault -o default -F _orchestrator_python_m {" ".join(PYTHONS)}
"""

# Only when the script is sourced or evaluated: installed in $fpath as _orchestrator, zsh
# binds it to `orchestrator` alone (its #compdef line), and python keeps its own.
_ZSH_SOURCED = "[[ $zsh_eval_context[-1] != loadautofunc ]]"
_ZSH = f"""
# `python -m orchestrator ...` completes as `orchestrator ...`; other python lines as before.
_orchestrator_python_m() {{
  if [[ $words[2] == -m && $words[3] == orchestrator ]] && (( CURRENT > 3 )); then
    words=(orchestrator "${{(@)words[4,-1]}}")
    (( CURRENT -= 2 ))
    _shtab_orchestrator
  elif (( $+functions[_python] )); then
    _python "$@"
  else
    _files
  fi
}}
if {_ZSH_SOURCED}; then
  compdef _orchestrator_python_m {" ".join(PYTHONS)}
fi
"""
# shtab's script registers itself only when evaluated (`eval "$(...)"`), and when sourced
# (`source <(...)`, as the README has it) runs the completion function outside any
# completion, which fails: it is sourced or evaluated unless zsh autoloads it from $fpath.
_ZSH_SHTAB_SOURCED = ("[[ $zsh_eval_context[-1] == eval ]]", _ZSH_SOURCED)


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell` (bash, zsh or tcsh); tcsh's binds `orchestrator`
    only."""
    import shtab

    generated = shtab.complete(parser, shell=shell)
    if shell == "zsh":
        generated = generated.replace(*_ZSH_SHTAB_SOURCED)
    return generated + {"bash": _BASH, "zsh": _ZSH}.get(shell, "")
