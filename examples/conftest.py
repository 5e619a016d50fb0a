"""Strict nbval for the example notebooks, as for the course's: the collection hook and the
sanitize file of ``notebooks/conftest.py`` (loaded from there, so both stay one)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

_SPEC = importlib.util.spec_from_file_location(
    "simsmtp_notebooks_conftest", Path(__file__).resolve().parents[1] / "notebooks" /
    "conftest.py")
assert _SPEC is not None and _SPEC.loader is not None
_COURSE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_COURSE)

pytest_collect_file = _COURSE.pytest_collect_file
