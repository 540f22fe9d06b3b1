"""The world's tests stand on their own: the product's tests build on them (tests/harness.py
uses sandbox_support.py), never the reverse. In a whole-suite run both directories are on
sys.path, so an import of the product's test modules would pass there and fail in
`python -m pytest sandbox/tests`, or in the sandbox's own checkout."""

from __future__ import annotations

import ast
from pathlib import Path

HERE = Path(__file__).parent
PRODUCT_TESTS = HERE.parent.parent / "tests"


def imported(source: str) -> set[str]:
    """The top-level names of the modules a source imports."""
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


def product_test_modules() -> set[str]:
    return {path.stem for path in PRODUCT_TESTS.glob("*.py")} - {"conftest"}


def test_the_check_sees_an_import_of_the_product_tests() -> None:
    assert "harness" in product_test_modules()
    source = "import json\nfrom harness import World\nimport phasekit as kit\n"
    assert imported(source) & product_test_modules() == {"harness", "phasekit"}


def test_the_world_tests_import_nothing_of_the_product_tests() -> None:
    theirs = product_test_modules()
    found = {path.name: sorted(imported(path.read_text()) & theirs) for path in HERE.glob("*.py")}
    assert {name: modules for name, modules in found.items() if modules} == {}
