"""course.py, the README's two commands: a venv, a clear stop on an old Python, root."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _course(tmp_path: Path) -> ModuleType:
    shutil.copy(ROOT / "course.py", tmp_path / "course.py")
    spec = importlib.util.spec_from_file_location("course", tmp_path / "course.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_an_old_python_stops_at_once_with_a_clear_message(tmp_path: Path) -> None:
    shutil.copy(ROOT / "course.py", tmp_path / "course.py")
    pretend = ("import runpy, sys; sys.version_info = (3, 10, 13, 'final', 0); "
               "sys.argv = ['course.py']; runpy.run_path('course.py', run_name='__main__')")
    done = subprocess.run([sys.executable, "-c", pretend], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1
    assert "simsmtp needs Python 3.11 or newer; this is Python 3.10" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / ".venv").exists()   # nothing installed, nothing searched


def _commands(course: ModuleType, monkeypatch: pytest.MonkeyPatch, argv: list[str],
              root: bool) -> list[list[str]]:
    ran: list[list[str]] = []

    def run(command: list[str]) -> None:
        ran.append(command)
        raise SystemExit(0)

    for name in ("make_venv", "lab_settings"):
        monkeypatch.setattr(course, name, lambda: None)
    monkeypatch.setattr(course, "install", lambda requirements: ran.append(["install",
                                                                            requirements]))
    monkeypatch.setattr(course, "run", run)
    monkeypatch.setattr(course.subprocess, "call", lambda command, **kw: ran.append(command))
    monkeypatch.setattr(os, "geteuid", lambda: 0 if root else 1000)
    with pytest.raises(SystemExit):
        course.main(argv)
    return ran


def test_the_course_opens_notebook_zero_in_the_venv(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    course = _course(tmp_path)
    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "00_start_here.ipynb").write_text("{}")
    ran = _commands(course, monkeypatch, ["--no-browser"], root=False)
    assert ran[0] == ["install", "requirements.txt"]
    trust, lab = ran[1], ran[2]
    assert trust[1:4] == ["-m", "jupyter", "trust"] and trust[-1].endswith("00_start_here.ipynb")
    assert lab[0] == course.venv_python() and lab[1:4] == ["-m", "jupyter", "lab"]
    assert lab[4] == os.path.join("notebooks", "00_start_here.ipynb")
    assert "--allow-root" not in lab and lab[-1] == "--no-browser"


def test_as_root_jupyterlab_is_allowed_to_start(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    course = _course(tmp_path)
    (tmp_path / "notebooks").mkdir()
    ran = _commands(course, monkeypatch, [], root=True)
    assert "--allow-root" in ran[-1]


def test_the_tests_run_in_the_same_venv(tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    course = _course(tmp_path)
    ran: Any = _commands(course, monkeypatch, ["test", "-x", "tests/ui"], root=False)
    assert ran == [["install", "requirements-dev.txt"],
                   [course.venv_python(), "-m", "pytest", "-x", "tests/ui"]]


def test_ci_runs_exactly_the_readmes_test_command() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "```sh\npython3 course.py test\n```" in readme
    assert "```sh\npython3 course.py\n```" in readme
    assert ci.rstrip().splitlines()[-1] == "python3 course.py test"
