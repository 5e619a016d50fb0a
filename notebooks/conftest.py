"""Strict nbval for the course notebooks, as part of the plain ``python -m pytest``.

Every ``*.ipynb`` here is collected by nbval *without* any command-line flag: each code
cell is run in a fresh kernel and its outputs are compared with the stored ones
(``--nbval`` semantics: strict, not ``--nbval-lax``), after the substitutions in
``nbval_sanitize.cfg`` (ephemeral ports, DNS ids, timings, temporary paths).

Why a plugin here rather than ``addopts = "--nbval"`` in pyproject.toml: ``--nbval``
applies to every pytest run (a developer's ``pytest tests/protocol`` would need nbval
installed), and ``--nbval-sanitize-with`` takes a path relative to the *current*
directory, so ``pytest`` run from another directory would fail to find the file. This
plugin finds the file next to itself and uses the kernel of the Python running pytest (so
a virtualenv without a registered ``python3`` kernel works too). Explicit options still
win: ``pytest --nbval notebooks/00_start_here.ipynb --nbval-sanitize-with other.cfg``,
``--nbval-lax`` and ``--nbval-kernel-name`` behave as documented by nbval.

The README's test command reaches this directory through ``testpaths`` in pyproject.toml.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.suffix != ".ipynb":
        return None
    option = parent.config.option
    if getattr(option, "nbval_sanitize_with", None) is None:
        option.nbval_sanitize_with = str(SANITIZE)
    if not getattr(option, "nbval_kernel_name", None):
        option.nbval_current_env = True
    if getattr(option, "nbval", False) or getattr(option, "nbval_lax", False):
        return None  # nbval's own hook collects it
    from nbval.plugin import IPyNbFile

    return IPyNbFile.from_parent(parent, path=file_path)
