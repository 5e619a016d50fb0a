"""Notebook execution time, each and in total (issue 7, item 6).

Every ``notebooks/*.ipynb`` is executed top to bottom in a fresh kernel with nbclient (what
``pytest --nbval`` runs too), one after another, and timed. Without notebooks the table
says "no notebooks yet".
"""

from __future__ import annotations

import time
from pathlib import Path

from .common import ROOT, Report, Table, fmt

#: Seconds one notebook may run before it counts as failed.
CELL_TIMEOUT = 120


def notebooks(directory: Path | None = None) -> list[Path]:
    """The notebooks, in the order of the journey (their numbered names)."""
    folder = directory or ROOT / "notebooks"
    return sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))


def execute(path: Path) -> float:
    """Run one notebook in a fresh kernel (not saved); the seconds it took."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    start = time.perf_counter()
    client.execute()
    return time.perf_counter() - start


def measure(report: Report, *, quick: bool = False, scale: float = 1.0,
            log: object = None, directory: Path | None = None) -> None:
    """Time every notebook (of ``directory``, default notebooks/); add the table to
    ``report``."""
    say = log if callable(log) else (lambda _text: None)
    table = Table("Notebook execution (fresh kernel each, top to bottom)",
                  ["notebook", "seconds"])
    found = notebooks(directory)
    if not found:
        table.notes.append("no notebooks yet")
        say("  no notebooks yet")
        report.tables.append(table)
        return
    total = 0.0
    for path in found:
        try:
            seconds = execute(path)
        except Exception as exc:
            table.rows.append([path.name, f"failed: {type(exc).__name__}: {str(exc)[:80]}"])
            continue
        total += seconds
        say(f"  {path.name}: {seconds:.1f} s")
        table.rows.append([path.name, fmt(seconds)])
    table.rows.append(["total", fmt(total)])
    report.tables.append(table)
