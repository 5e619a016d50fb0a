"""The layers of DESIGN.md hold over every module, with no import circle anywhere.

A real import checker does it: import-linter's contracts in pyproject.toml (a ``layers``
contract over every top-level part of ``simsmtp``, and ``forbidden`` contracts for the pure
layers), and grimp's import graph for the circles and the purity rule, module by module.
Both read every import statement, those inside functions and under ``TYPE_CHECKING`` too.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from pathlib import Path

import grimp
import pytest

import simsmtp

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
#: What a pure layer never imports (DESIGN.md, "Rules that keep the house easy to live in").
IMPURE = frozenset({"socket", "threading", "asyncio", "ipywidgets", "matplotlib"})
#: The pure layers, and what each may import of IMPURE all the same.
PURE = {
    "simsmtp.protocol": frozenset(),
    "simsmtp.world": frozenset(),
    "simsmtp.capture": frozenset(),
    "simsmtp.traffic": frozenset(),
    # The trace is appended to from the world's threads: one Lock keeps its order.
    "simsmtp.trace": frozenset({"threading"}),
}


def _config() -> dict[str, object]:
    config: dict[str, object] = tomllib.loads(PYPROJECT.read_text())["tool"]["importlinter"]
    return config


def _exceptions() -> set[tuple[str, str]]:
    """The documented exceptions of the layers contract, as (importer, imported)."""
    contracts = _config()["contracts"]
    assert isinstance(contracts, list)
    (layers,) = [c for c in contracts if c["type"] == "layers"]
    pairs = (line.split("->") for line in layers.get("ignore_imports", []))
    return {(a.strip(), b.strip()) for a, b in pairs}


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    # the package this test imports is the one in this checkout (PYTHONPATH), so the
    # graph is of the code under test
    assert Path(simsmtp.__file__).resolve().parent == ROOT / "simsmtp", simsmtp.__file__
    return grimp.build_graph("simsmtp", include_external_packages=True,
                             exclude_type_checking_imports=False, cache_dir=None)


def _where(graph: grimp.ImportGraph, importer: str, imported: str) -> str:
    lines = graph.get_import_details(importer=importer, imported=imported)
    return ", ".join(f"l.{d['line_number']}" for d in lines) or "?"


def _internal(graph: grimp.ImportGraph) -> list[str]:
    return sorted(m for m in graph.modules if m == "simsmtp" or m.startswith("simsmtp."))


def test_the_checker_sees_imports_inside_functions_and_for_types(
        graph: grimp.ImportGraph) -> None:
    # World.start imports the Network inside the method and under TYPE_CHECKING: the one
    # documented exception, which only a checker that reads those imports can see
    assert graph.direct_import_exists(importer="simsmtp.world.model",
                                      imported="simsmtp.net.network")
    assert _exceptions() == {("simsmtp.world.model", "simsmtp.net.network")}


def test_the_graph_holds_every_module(graph: grimp.ImportGraph) -> None:
    package = ROOT / "simsmtp"
    on_disk = {".".join(("simsmtp", *f.relative_to(package).with_suffix("").parts))
               .removesuffix(".__init__") for f in package.rglob("*.py")}
    assert set(_internal(graph)) == on_disk


def test_the_import_contracts_hold(capsys: pytest.CaptureFixture[str]) -> None:
    from importlinter.cli import lint_imports

    status = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    report = capsys.readouterr().out
    assert status == 0, report
    assert "Contracts: 3 kept, 0 broken." in report, report


def test_the_pure_layers_import_no_io_or_screen(graph: grimp.ImportGraph) -> None:
    found = []
    for module in _internal(graph):
        package = next((p for p in PURE if module == p or module.startswith(p + ".")), None)
        if package is None:
            continue
        bad = {m.split(".")[0] for m in graph.find_modules_directly_imported_by(module)}
        for name in sorted(bad & IMPURE - PURE[package]):
            found.append(f"{module} imports {name} ({_where(graph, module, name)})")
    assert not found, "\n".join(found)


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (or a self-import),
    each sorted (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for start in sorted(edges):
        if start in index:
            continue
        work: list[tuple[str, Iterable[str]]] = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges.get(child, ())))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1 or node in edges.get(node, ()):
                        found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_cycles() -> None:
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a", "d"}, "e": {"f"}, "f": set()}
    assert sorted(_cycles(edges)) == [["a", "b", "c"], ["d"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere(graph: grimp.ImportGraph) -> None:
    modules = _internal(graph)
    exceptions = _exceptions()
    edges = {m: {i for i in graph.find_modules_directly_imported_by(m)
                 if i.startswith("simsmtp.") and (m, i) not in exceptions}
             for m in modules}
    report = []
    for component in _cycles(edges):
        inside = set(component)
        report.append(f"{len(component)} modules import each other in a circle:")
        report += [f"  {m} -> {i} ({_where(graph, m, i)})"
                   for m in component for i in sorted(edges[m] & inside)]
    assert not report, "\n".join(report)
