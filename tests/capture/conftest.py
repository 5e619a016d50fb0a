"""Fixtures of the capture tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from simsmtp.net.ca import CertificateAuthority
from tests.capture._scripted import make_ca


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertificateAuthority, Path]:
    """A world CA (for the scripted TLS sessions) and the key log it writes."""
    directory = tmp_path_factory.mktemp("ca")
    return make_ca(directory, keylog=directory / "keys.log"), directory / "keys.log"
