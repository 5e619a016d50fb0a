"""A running ``python -m simsmtp up --json`` for the interop tests (one per test module)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.cli._up import UpProcess


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UpProcess]:
    """The seed world served by a real ``up`` process; stopped with SIGTERM (exit 0)."""
    if os.name == "nt":
        pytest.skip("reads up's stdout with selectors (no pipes on Windows)")
    stderr = Path(tmp_path_factory.mktemp("up")) / "stderr.txt"
    up = UpProcess(stderr_path=stderr)
    yield up
    status = up.terminate(signal.SIGTERM)
    assert status == 0, up.stderr()
