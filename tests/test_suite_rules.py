"""Rules the suite keeps, checked on its own source: a test that returns early passes
without checking anything, and a test bound to a private name of the package breaks on a
refactoring that changes no behaviour (or passes on one that does)."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

TESTS = Path(__file__).resolve().parent

#: Private names of other packages the harness needs (not this package's).
FOREIGN = {
    "_app_registry": "Sanic's registry of apps, reset around every test (sanic-ext does so too)",
    "_exit": "os._exit, ending a child process without cleanup",
}


def _sources() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(TESTS.rglob("*.py")):
        if "v010" not in path.parts:  # the 0.1.0 README's examples, as it wrote them
            yield path, ast.parse(path.read_text(), str(path))


def _own_body(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of a function's own body: not those of functions or classes inside it."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        yield child
        yield from _own_body(child)


def early_returns(tree: ast.AST) -> list[str]:
    """``return`` statements in the own body of every test function of ``tree``."""
    return [
        f"{node.lineno} {function.name}"
        for function in ast.walk(tree)
        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef))
        and function.name.startswith("test_")
        for node in _own_body(function)
        if isinstance(node, ast.Return)
    ]


def test_no_test_returns_early() -> None:
    """Where a test does not apply it is not collected there, or it says so with a skip."""
    found = [f"{path.name}:{where}" for path, tree in _sources() for where in early_returns(tree)]
    assert found == []


def defined_names(trees: list[ast.AST]) -> set[str]:
    """Functions, classes and ``self`` attributes the trees define: the tests' own names."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif (
                isinstance(node, ast.Attribute)
                and isinstance(node.ctx, ast.Store)
                and isinstance(node.value, ast.Name)
                and node.value.id == "self"
            ):
                names.add(node.attr)
    return names


def private_accesses(tree: ast.AST, own: set[str]) -> list[str]:
    """``obj._name`` that is neither the tests' own nor a listed foreign one, and imports of
    ``_name`` from the package."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            name = node.attr
            private = name.startswith("_") and not name.startswith("__")
            if private and name not in own and name not in FOREIGN:
                found.append(f"{node.lineno} .{name}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
            "sanic_synchro_ctx"
        ):
            found += [
                f"{node.lineno} import {alias.name}"
                for alias in node.names
                if alias.name.startswith("_")
            ]
    return found


def test_no_test_reaches_a_private_name_of_the_package() -> None:
    """Tests use the public API or a documented hook: no ``obj._name`` that is not the
    tests' own, no ``from sanic_synchro_ctx... import _name``."""
    sources = list(_sources())
    own = defined_names([tree for _, tree in sources])
    found = [
        f"{path.name}:{where}" for path, tree in sources for where in private_accesses(tree, own)
    ]
    assert found == []


PLANTED = """
from sanic_synchro_ctx.serializer import _import_orjson

class Helper:
    def __init__(self):
        self._mine = 1

def test_planted(ctx):
    assert Helper()._mine == 1
    if not ctx.interface.lists_keys:
        return
    ctx.interface._max_batch = 3

    def inner():
        return 1
"""


def test_the_rules_find_what_they_forbid() -> None:
    """The checks above find a planted early return and planted private accesses, and
    leave alone a helper's return and a test class's own private attribute."""
    tree = ast.parse(PLANTED)
    assert early_returns(tree) == ["11 test_planted"]
    assert private_accesses(tree, defined_names([tree])) == [
        "2 import _import_orjson",
        "12 ._max_batch",
    ]
