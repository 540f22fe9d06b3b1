"""The house's shape: the engine imports no phase (only the CLI's wiring names them), and
what is found by the deployment's marks is what the phases say they make."""

from __future__ import annotations

import ast
from pathlib import Path

from phasekit import phase_kit

from orchestrator.inventory import Inventory
from orchestrator.phase import Found, Phase, PhaseContext, Search

PACKAGE = Path(__file__).resolve().parent.parent / "orchestrator"
PHASES = "orchestrator.states"
# The CLI's wiring: it builds the list of phases the engine is given.
WIRING = ("cli", "startup.py", "__main__.py")


def imported(source: str) -> set[str]:
    """Every module a Python source imports (`from a import b` counts as a and a.b)."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def engine_imports_of_phases(package: Path) -> list[str]:
    """`module: imported phase module` for each import of the phases outside the wiring."""
    found = []
    for path in sorted(package.rglob("*.py")):
        relative = path.relative_to(package)
        if relative.parts[0] in WIRING:
            continue
        names = {n for n in imported(path.read_text()) if n == PHASES or n.startswith(PHASES + ".")}
        # `from orchestrator.states.x import y`: name x, not y as well
        named = {n for n in names if n.rsplit(".", 1)[0] not in names}
        found += [f"{relative}: {name}" for name in sorted(named)]
    return found


def test_the_engine_imports_no_phase() -> None:
    assert engine_imports_of_phases(PACKAGE) == []


def test_the_check_sees_an_import_of_a_phase(tmp_path: Path) -> None:
    (tmp_path / "inventory.py").write_text("from orchestrator.states.ingress import NAME\n")
    (tmp_path / "machine.py").write_text("from orchestrator import states\n")
    (tmp_path / "cli").mkdir()
    (tmp_path / "cli" / "wiring.py").write_text("from orchestrator.states import all_phases\n")
    assert engine_imports_of_phases(tmp_path) == [
        "inventory.py: orchestrator.states.ingress",
        "machine.py: orchestrator.states",
    ]


class Marking(Phase):
    """A phase that makes one thing, found by what its marks say; it sees what the phases
    before it found."""

    def __init__(self, name: str, identity: str) -> None:
        self.name = name  # type: ignore[misc] - an instance's name, for two of them
        self.identity = identity
        self.saw: list[Found] = []

    def marked(self, ctx: PhaseContext, search: Search) -> list[Found]:
        self.saw = list(search.found)
        return [Found(self.name, "thing", self.name, self.identity)]


def test_inventory_finds_what_the_phases_it_is_given_say_they_made(tmp_path: Path) -> None:
    with phase_kit(tmp_path) as kit:
        ctx = kit.ctx("preflight")
        first, second = Marking("a", ctx.owner.identity), Marking("b", "f" * 16)
        found = Inventory([first, second]).find(ctx)
        assert [f.id for f in found] == ["a", "b"]
        assert second.saw == found[:1], "a phase sees what earlier phases found"
        assert Inventory.ours(ctx, found) == found[:1]
        assert Inventory.by_other_owners(ctx, found) == found[1:]
