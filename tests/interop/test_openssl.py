"""Real ``openssl s_client`` verifies every TLS service of a world against its exported CA."""

from __future__ import annotations

import subprocess

import pytest

from tests.cli._up import UpProcess
from tests.conftest import require_program

pytestmark = pytest.mark.interop


def s_client(world: UpProcess, host: str, port: int, *args: str,
             ca: bool = True) -> subprocess.CompletedProcess[str]:
    program = require_program("openssl")
    command = [program, "s_client", "-connect", world.server(host, port),
               "-verify_return_error", "-servername", host, "-crlf", "-ign_eof", *args]
    if ca:
        command += ["-CAfile", world.ca_file]
    return subprocess.run(command, input="QUIT\n", capture_output=True, text=True,
                          timeout=30)


def test_starttls_smtp_on_25_verifies(world: UpProcess) -> None:
    done = s_client(world, "mail.anotherdomain.org", 25, "-starttls", "smtp",
                    "-verify_hostname", "mail.anotherdomain.org")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout
    assert "CN = mail.anotherdomain.org" in done.stdout
    assert "221 2.0.0 Bye" in done.stdout  # the SMTP session went on inside TLS


def test_starttls_smtp_on_587_verifies(world: UpProcess) -> None:
    done = s_client(world, "mail.example.com", 587, "-starttls", "smtp")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout


def test_implicit_tls_on_465_verifies(world: UpProcess) -> None:
    done = s_client(world, "mail.example.com", 465)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout
    assert "220 mail.example.com ESMTP Postfix" in done.stdout  # greeting only after TLS


def test_stls_pop3_on_110_verifies(world: UpProcess) -> None:
    done = s_client(world, "mail.anotherdomain.org", 110, "-starttls", "pop3")
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr
    assert "Verify return code: 0 (ok)" in done.stdout
    assert "POP3 server signing off" in done.stdout  # QUIT answered inside TLS


def test_without_the_world_ca_verification_fails(world: UpProcess) -> None:
    done = s_client(world, "mail.anotherdomain.org", 25, "-starttls", "smtp", ca=False)
    assert done.returncode != 0
    assert "Verify return code: 0 (ok)" not in done.stdout
    assert "verify error" in done.stdout + done.stderr
