"""Real ``swaks`` against a running world: port 25 plain and STARTTLS, 465 implicit TLS with
AUTH, 587 STARTTLS then AUTH, and AUTH refused before STARTTLS on 587."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.cli._up import UpProcess
from tests.conftest import require_program

pytestmark = pytest.mark.interop

MX = "mail.anotherdomain.org"
SUBMISSION = "mail.example.com"
AUTH = ["--auth", "PLAIN", "--auth-user", "alice@example.com", "--auth-password", "wonderland"]


def swaks(server: str, *args: str, subject: str | None = None) -> subprocess.CompletedProcess[str]:
    program = require_program("swaks")
    command = [program, "--server", server, "--from", "alice@example.com",
               "--to", "bob@anotherdomain.org", "--timeout", "10", *args]
    if subject is not None:
        command += ["--header", f"Subject: {subject}"]
    return subprocess.run(command, capture_output=True, text=True, timeout=30)


def unique(what: str) -> str:
    return f"{what} {uuid.uuid4().hex[:12]}"


def as_alices_server(world: UpProcess) -> list[str]:
    """swaks options to speak as mail.example.com: from its address (so SPF, and with it
    DMARC, pass for alice@example.com, RFC 7208 / RFC 7489) and with its name."""
    host = world.info["hosts"][SUBMISSION]
    if "world_ip" in host:
        pytest.skip("the hosts share 127.0.0.1 here: a tool cannot speak from a host's "
                    "address (it is an outside client)")
    return ["--local-interface", host["ip"], "--helo", SUBMISSION]


def test_plaintext_to_port_25_is_delivered(world: UpProcess) -> None:
    subject = unique("swaks plain")
    done = swaks(world.server(MX, 25), *as_alices_server(world), subject=subject)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert "<-  220 mail.anotherdomain.org ESMTP Postfix" in lines
    assert " -> MAIL FROM:<alice@example.com>" in lines
    assert "<-  250 2.1.5 Ok" in lines
    assert any(line.startswith("<-  250 2.0.0 Ok: queued as ") for line in lines)
    assert not any(line.startswith((" ~>", "<~")) for line in lines)
    [message] = world.wait_for_subject(subject)
    assert message["Received"].startswith("from mail.example.com")


def test_starttls_to_port_25_verified_against_the_world_ca(world: UpProcess) -> None:
    subject = unique("swaks tls")
    done = swaks(world.server(MX, 25), *as_alices_server(world), "-tls", "--tls-verify",
                 "--tls-ca-path", world.ca_file, subject=subject)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert " -> STARTTLS" in lines and "<-  220 2.0.0 Ready to start TLS" in lines
    assert any(line.startswith("=== TLS started with cipher TLSv1.") for line in lines)
    assert " ~> MAIL FROM:<alice@example.com>" in lines
    assert any(line.startswith("<~  250 2.0.0 Ok: queued as ") for line in lines)
    [message] = world.wait_for_subject(subject)
    assert "with ESMTPS" in message["Received"]
    # the verification is real: without the world's CA the same command fails
    refused = swaks(world.server(MX, 25), "-tls", "--tls-verify")
    assert refused.returncode != 0
    assert "certificate verify failed" in refused.stdout + refused.stderr


def test_implicit_tls_on_465_with_auth_plain_relays_to_bob(world: UpProcess) -> None:
    subject = unique("swaks 465")
    done = swaks(world.server(SUBMISSION, 465), "--tlsc", *AUTH, subject=subject)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    greeting = lines.index("<~  220 mail.example.com ESMTP Postfix")
    assert any(line.startswith("=== TLS started") for line in lines[:greeting])
    assert "<~  235 2.7.0 Authentication successful" in lines
    assert any(line.startswith("<~  250 2.0.0 Ok: queued as ") for line in lines)
    [message] = world.wait_for_subject(subject)  # the outbound agent delivered it
    assert "Authenticated sender: alice@example.com" in str(message.get_all("Received"))


def test_starttls_then_auth_plain_on_587_relays_to_bob(world: UpProcess) -> None:
    subject = unique("swaks 587")
    done = swaks(world.server(SUBMISSION, 587), "-tls", *AUTH, subject=subject)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    assert lines.index(" -> STARTTLS") < lines.index(" ~> AUTH PLAIN "
                                                     "AGFsaWNlQGV4YW1wbGUuY29tAHdvbmRlcmxhbmQ=")
    assert "<~  250-AUTH PLAIN LOGIN" in lines  # offered only inside TLS (RFC 4954 §4)
    assert "<~  235 2.7.0 Authentication successful" in lines
    assert world.wait_for_subject(subject)


def test_587_refuses_auth_and_mail_before_starttls(world: UpProcess) -> None:
    server = world.server(SUBMISSION, 587)
    done = swaks(server, *AUTH)
    assert done.returncode != 0
    assert "<-  250-STARTTLS" in done.stdout
    assert "AUTH" not in done.stdout  # not even offered in plaintext
    assert "Host did not advertise authentication" in done.stderr + done.stdout
    # Without AUTH, MAIL is refused until STARTTLS (RFC 3207 §4: 530)
    done = swaks(server)
    assert done.returncode != 0
    assert "<** 530 5.7.0 Must issue a STARTTLS command first" in done.stdout.splitlines()
