"""The course and the hardening tests where only 127.0.0.1 can be bound (a Mac's way).

``SIMSMTP_LOOPBACK=single`` makes this machine behave like a Mac without loopback
aliases: every host's sockets share 127.0.0.1. The course notebooks 00-08 then run under
strict nbval against their stored outputs, which were made on Linux (one address per
host), so a lesson that teaches differently fails here; only ports (sanitized for every
run) and the shared transport address a certificate also names may differ
(``notebooks/nbval_sanitize_shared_loopback.cfg``, which ``notebooks/conftest.py`` adds
wherever hosts share 127.0.0.1).
The hardening tests (with AUTH), and the world's SPF/DKIM/DMARC and attack tests, run the
same way. Both run in a child pytest, because the setting
must reach the notebooks' kernels and every world the tests boot.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simsmtp.net.addresses import LOOPBACK_ENV

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]*_*.ipynb"))


def _child_pytest(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, LOOPBACK_ENV: "single",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=900, check=False)


def _failures(result: subprocess.CompletedProcess[str]) -> str:
    return (result.stdout[-6000:] + result.stderr[-2000:]).strip()


def test_the_course_notebooks_teach_the_same_on_one_shared_address() -> None:
    assert len(NOTEBOOKS) >= 9, NOTEBOOKS
    # notebooks/conftest.py adds nbval_sanitize_shared_loopback.cfg by itself here.
    result = _child_pytest(*(str(n.relative_to(ROOT)) for n in NOTEBOOKS))
    assert result.returncode == 0, _failures(result)
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_hardening_and_mail_auth_tests_pass_on_one_shared_address() -> None:
    result = _child_pytest("tests/hardening", "tests/net/test_single_loopback.py",
                           "tests/net/test_mailauth_world.py", "tests/net/test_attacks.py")
    assert result.returncode == 0, _failures(result)
    assert " passed" in result.stdout and "failed" not in result.stdout
