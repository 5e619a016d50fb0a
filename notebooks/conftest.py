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

Where every host shares 127.0.0.1 (macOS; ``SIMSMTP_LOOPBACK=single``), the rules of
``nbval_sanitize_shared_loopback.cfg`` are added: the stored outputs come from Linux.

The README's test command reaches this directory through ``testpaths`` in pyproject.toml.
"""

from __future__ import annotations

import atexit
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest

SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
#: Added where the world's hosts share 127.0.0.1 (see the file).
SANITIZE_SHARED = Path(__file__).with_name("nbval_sanitize_shared_loopback.cfg")
_combined: list[str] = []


def _sanitize_file() -> str:
    """``nbval_sanitize.cfg``, plus ``nbval_sanitize_shared_loopback.cfg`` where only
    127.0.0.1 can be bound (the two joined in a temporary file, made once)."""
    from simsmtp.net.addresses import loopback_aliases_available

    if loopback_aliases_available():
        return str(SANITIZE)
    if not _combined:
        directory = tempfile.mkdtemp(prefix="nbval-sanitize-")
        atexit.register(shutil.rmtree, directory, True)
        combined = Path(directory) / "sanitize.cfg"
        combined.write_text(SANITIZE.read_text() + "\n" + SANITIZE_SHARED.read_text())
        _combined.append(str(combined))
    return _combined[0]


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> Any:
    if file_path.suffix != ".ipynb":
        return None
    option = parent.config.option
    if getattr(option, "nbval_sanitize_with", None) is None:
        option.nbval_sanitize_with = _sanitize_file()
    if not getattr(option, "nbval_kernel_name", None):
        option.nbval_current_env = True
    if getattr(option, "nbval", False) or getattr(option, "nbval_lax", False):
        return None  # nbval's own hook collects it
    from nbval.plugin import IPyNbFile

    return IPyNbFile.from_parent(parent, path=file_path)
