"""The ui package stays on top: nothing below imports it, and it loads its heavy parts late."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import simsmtp

ROOT = Path(simsmtp.__file__).parent


def _loaded_after(code: str) -> set[str]:
    script = code + "\nimport sys\nprint(' '.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         check=True).stdout
    return set(out.split())


def test_import_simsmtp_loads_no_ui_no_widgets_no_plots() -> None:
    loaded = _loaded_after("import simsmtp, simsmtp.world, simsmtp.net.network")
    assert "simsmtp.ui" not in loaded
    assert "ipywidgets" not in loaded
    assert "matplotlib" not in loaded


def test_import_ui_loads_neither_ipywidgets_nor_matplotlib_until_used() -> None:
    loaded = _loaded_after("import simsmtp.ui")
    assert "ipywidgets" not in loaded
    assert "matplotlib" not in loaded
    loaded = _loaded_after("from simsmtp import ui\nui.journey_text\nui.trace_rows")
    assert "matplotlib" not in loaded and "ipywidgets" not in loaded


def test_no_lower_layer_imports_ui() -> None:
    offenders = [str(path.relative_to(ROOT)) for path in ROOT.rglob("*.py")
                 if "ui" not in path.relative_to(ROOT).parts[:1]
                 and ("simsmtp.ui" in path.read_text() or "from .ui" in path.read_text()
                      or "from ..ui" in path.read_text())]
    assert offenders == []


def test_ui_exports_resolve() -> None:
    from simsmtp import ui

    for name in ui.__all__:
        assert getattr(ui, name) is not None
