"""Shared test helpers.

Tests that need a real outside program (swaks, dig, tshark, openssl, smtp-sink, chromium) call
:func:`require_program`: on a developer machine without it the test is skipped with the reason;
under CI (``CI=true``) a missing program is a failure, because CI installs them all.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"

#: For tests that kill a process with SIGKILL or read a child's pipe with ``selectors``:
#: Windows has neither (``up`` itself runs there; these ways of testing it do not).
posix_only = pytest.mark.skipif(os.name == "nt",
                                reason="needs POSIX signals (SIGKILL) and selectable pipes")


def require_program(name: str, package: str | None = None) -> str:
    """Return the path of ``name``; skip (or fail under CI) when it is not installed."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if path:
        return path
    reason = (f"{name} is not installed (Debian package {package or name}; "
              f"`bash .ci/run` installs it)")
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


@pytest.fixture
def fsynced(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path ``os.fsync`` is called on from now on, in order (files and directories,
    named through /proc/self/fd; skipped where there is no /proc). ``clear()`` it to start
    counting later."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to name file descriptors")
    synced: list[str] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)
    return synced
