"""Each phase declares what it reads, and the declarations hold.

The phases are declared once (orchestrator.states.PHASES); each declares the earlier
phases whose outputs it reads (`reads`) and the outputs it must have once done
(`outputs`, which check_state holds a state file to; `optional_outputs` for those only
some modes write). A scan of each phase's module checks that every output key it reads,
its own or an earlier phase's, is declared there, so a state file missing one is refused
up front instead of failing with a KeyError half-way.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass

import pytest

from orchestrator.phase import Phase
from orchestrator.states import PHASES, all_phases, phase_class, phase_names

OWN = ""  # the phase's own outputs, in what `Read.phase` names


@dataclass(frozen=True)
class Read:
    phase: str  # whose outputs: OWN, or an earlier phase's name
    key: str
    optional: bool  # read with .get(): the key may be missing


# What a phase may ask of an earlier phase it declares it reads: its outputs, and (for a
# rollback that needs its work back) what it made, whether it can restore it, and to do so.
ASKS = ("earlier", "made_by", "can_restore", "restore")


def earlier_phase(node: ast.AST) -> str | None:
    """ "x" for `ctx.earlier("x")` (or another of ASKS)."""
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in ASKS
        and node.args
        and isinstance(node.args[0], ast.Constant)
    ):
        return str(node.args[0].value)
    return None


def own_outputs(node: ast.AST) -> bool:
    """`ctx.outputs`."""
    return (
        isinstance(node, ast.Attribute)
        and node.attr == "outputs"
        and isinstance(node.value, ast.Name)
        and node.value.id == "ctx"
    )


def whose(node: ast.AST, aliases: dict[str, str]) -> str | None:
    """Whose outputs an expression is: OWN, an earlier phase's name, or None (not outputs)."""
    if own_outputs(node):
        return OWN
    if isinstance(node, ast.Name):
        return aliases.get(node.id)
    return earlier_phase(node)


def constant(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def scan(source: str) -> tuple[set[str], set[Read]]:
    """(the phases `ctx.earlier` names, the output keys read) in a module's source."""
    tree = ast.parse(source)
    earlier = {p for node in ast.walk(tree) if (p := earlier_phase(node)) is not None}
    reads: set[Read] = set()
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.Lambda):
            continue
        # `preflight = ctx.earlier("preflight")`, `out = ctx.outputs`: names for outputs.
        aliases: dict[str, str] = {}
        for node in ast.walk(function):
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, phase = node.targets[0], whose(node.value, {})
                if isinstance(target, ast.Name) and phase is not None:
                    aliases[target.id] = phase
        for node in ast.walk(function):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                phase, key = whose(node.value, aliases), constant(node.slice)
                if phase is not None and key is not None:
                    reads.add(Read(phase, key, optional=False))
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "get"
                and node.args
            ):
                phase, key = whose(node.func.value, aliases), constant(node.args[0])
                if phase is not None and key is not None:
                    reads.add(Read(phase, key, optional=True))
    return earlier, reads


def declared(phase: type[Phase], optional: bool) -> set[str]:
    keys = set(phase.outputs)
    return keys | set(getattr(phase, "optional_outputs", ())) if optional else keys


@pytest.mark.parametrize("name", PHASES)
def test_every_output_read_is_declared(name: str) -> None:
    phase = phase_class(name)
    earlier, reads = scan(inspect.getsource(inspect.getmodule(phase)))  # type: ignore[arg-type]
    assert earlier == set(phase.reads), f"{name}: reads {sorted(earlier)}"  # type: ignore[attr-defined]
    for read in reads:
        owner = phase if read.phase == OWN else phase_class(read.phase)
        assert read.key in declared(owner, read.optional), (
            f"{name} reads {owner.name}'s output {read.key!r}, which {owner.name} does not "
            f"declare in its {'outputs or optional_outputs' if read.optional else 'outputs'}"
        )


@pytest.mark.parametrize("name", PHASES)
def test_a_phase_reads_only_earlier_phases(name: str) -> None:
    for earlier in phase_class(name).reads:  # type: ignore[attr-defined]
        assert PHASES.index(earlier) < PHASES.index(name), f"{name} reads {earlier}"


def test_the_phases_come_from_the_one_declaration() -> None:
    phases = all_phases()
    assert [p.name for p in phases] == phase_names() == list(PHASES)
    for phase in phases:
        assert type(phase).__module__ == f"orchestrator.states.{phase.name}"
        assert not set(getattr(phase, "optional_outputs", ())) & set(phase.outputs)


def test_the_scan_sees_aliases_gets_and_subscripts() -> None:
    source = """
def enter(self, ctx):
    preflight = ctx.earlier("preflight")
    out = ctx.outputs
    return preflight["vpc_id"], out.get("mode"), ctx.earlier("hosted_zone").get("zone_id")
"""
    earlier, reads = scan(source)
    assert earlier == {"preflight", "hosted_zone"}
    assert reads == {
        Read("preflight", "vpc_id", optional=False),
        Read(OWN, "mode", optional=True),
        Read("hosted_zone", "zone_id", optional=True),
    }
