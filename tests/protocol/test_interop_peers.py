"""The sans-IO cores against the reference peers, over real loopback sockets.

A minimal driver (the project's listener) serves a bare :class:`ServerConnection` / POP3
core with the default (seed) configuration, and the standard library's ``smtplib`` and
``poplib`` talk to it; the client core talks to ``aiosmtpd`` and to Postfix's ``smtp-sink``.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme

from simsmtp.net.listener import serve
from simsmtp.net.loop import EventLoopThread
from simsmtp.net.stepper import SMTPStepper
from simsmtp.net.tap import Tap
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.mailbox import MemoryMailbox
from simsmtp.protocol.pop3 import POP3Config, POP3ServerConnection
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.server import ServerConfig, ServerConnection
from simsmtp.protocol.session import Envelope, Session
from tests.conftest import require_program

SEED_MESSAGE = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@anotherdomain.org>\r\n"
                b"Subject: Meeting Tomorrow\r\n\r\nHi Bob,\r\n\r\n"
                b"Just a reminder about our meeting tomorrow at 10 AM.\r\n\r\n"
                b"Best regards,\r\nAlice\r\n")

#: What the seed transcript's server says, line by line (TLS off).
SEED_SERVER_LINES = [
    r"220 mail\.anotherdomain\.org ESMTP Postfix",
    r"250-mail\.anotherdomain\.org", r"250-PIPELINING", r"250-SIZE 52428800", r"250-VRFY",
    r"250-ETRN", r"250-ENHANCEDSTATUSCODES", r"250-8BITMIME", r"250-DSN", r"250 CHUNKING",
    r"250 2\.1\.0 Ok",
    r"250 2\.1\.5 Ok",
    r"354 End data with <CR><LF>\.<CR><LF>",
    r"250 2\.0\.0 Ok: queued as [0-9A-F]{10}",
    r"221 2\.0\.0 Bye",
]


class Keeper(Handler):
    """Keeps every message, authenticates alice."""

    def __init__(self) -> None:
        self.messages: list[Envelope] = []

    def handle_AUTH(self, session: Session, mechanism: str, username: str,
                    password: str) -> bool:
        return (username, password) == ("alice@example.com", "wonderland")

    def handle_DATA(self, session: Session, envelope: Envelope) -> Reply | None:
        self.messages.append(envelope)
        return None


@pytest.fixture
def loop() -> Iterator[EventLoopThread]:
    with EventLoopThread(name="interop") as thread:
        yield thread


def _serve_smtp(loop: EventLoopThread, config: ServerConfig, handler: Handler,
                tap: Tap | None = None) -> tuple[str, int]:
    def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServerConnection:
        return ServerConnection(handler, config, Session(peer=peer, local=local))

    listener = serve(loop, "127.0.0.1", factory=factory, service="smtp", tap=tap)
    return listener.address


def test_smtplib_drives_the_seed_dialogue_and_gets_the_seed_lines(
        loop: EventLoopThread) -> None:
    tap = Tap()
    handler = Keeper()
    ip, port = _serve_smtp(loop, ServerConfig(), handler, tap)
    import smtplib

    with smtplib.SMTP(ip, port, local_hostname="mail.example.com") as client:
        client.sendmail("alice@example.com", ["bob@anotherdomain.org"], SEED_MESSAGE)
    time.sleep(0.05)
    conn = tap.connections()[0].id
    server_lines = tap.stream(conn, "s2c").decode().split("\r\n")[:-1]
    assert len(server_lines) == len(SEED_SERVER_LINES)
    for line, pattern in zip(server_lines, SEED_SERVER_LINES, strict=True):
        assert re.fullmatch(pattern, line), (line, pattern)
    client_lines = tap.stream(conn, "c2s").decode().split("\r\n")
    assert client_lines[:4] == ["ehlo mail.example.com",
                                f"mail FROM:<alice@example.com> size={len(SEED_MESSAGE)}",
                                "rcpt TO:<bob@anotherdomain.org>", "data"]
    assert handler.messages[0].content == SEED_MESSAGE


def test_smtplib_starttls_login_and_send_message(
        loop: EventLoopThread, ca: trustme.CA, client_context: ssl.SSLContext) -> None:
    handler = Keeper()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    # smtplib checks the certificate against the address it connected to
    ca.issue_cert("mail.anotherdomain.org", "127.0.0.1").configure_cert(server_context)
    config = ServerConfig(tls_context=server_context, auth_enabled=True)
    ip, port = _serve_smtp(loop, config, handler)
    import smtplib

    message = EmailMessage()
    message["From"] = "Alice <alice@example.com>"
    message["To"] = "Bob <bob@anotherdomain.org>"
    message["Subject"] = "Meeting Tomorrow"
    message.set_content("See you at 10.")
    with smtplib.SMTP(ip, port, local_hostname="mail.example.com") as client:
        client.ehlo()
        assert client.has_extn("starttls") and not client.has_extn("auth")
        client.starttls(context=client_context)
        client.ehlo()
        assert not client.has_extn("starttls") and client.has_extn("auth")
        assert client.login("alice@example.com", "wonderland")[0] == 235
        assert client.send_message(message) == {}
    stored = handler.messages[0]
    assert stored.mail_from == "alice@example.com"
    assert b"Subject: Meeting Tomorrow" in stored.content


def test_poplib_with_stls_retrieves_and_deletes(
        loop: EventLoopThread, ca: trustme.CA, client_context: ssl.SSLContext) -> None:
    import poplib

    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("mail.anotherdomain.org", "127.0.0.1").configure_cert(server_context)
    box = MemoryMailbox([SEED_MESSAGE, b"Subject: second\r\n\r\n.dot line\r\n"])

    def authenticate(user: str, password: str) -> MemoryMailbox | None:
        return box if (user, password) == ("bob", "builder") else None

    config = POP3Config(hostname="mail.anotherdomain.org", tls_context=server_context)
    listener = serve(loop, "127.0.0.1", service="pop3",
                     factory=lambda *, peer, local: POP3ServerConnection(authenticate, config))
    client = poplib.POP3(*listener.address, timeout=5)
    assert "STLS" in client.capa()
    client.stls(context=client_context)
    client.user("bob")
    client.pass_("builder")
    assert client.stat() == (2, len(SEED_MESSAGE) + len(b"Subject: second\r\n\r\n.dot line\r\n"))
    lines = client.retr(2)[1]
    assert lines[-1] == b".dot line"  # byte-stuffed on the wire, unstuffed by poplib
    client.dele(1)
    client.quit()
    assert len(box.list_messages()) == 1


# --- our client core against the reference servers ---------------------------------------

def _free_port() -> int:
    """A port that was free a moment ago: only for a program that cannot bind port 0 and
    say which port it got (smtp-sink); see :func:`_start_sink` for the race."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _aiosmtpd_controller(handler: object, **kwargs: Any) -> Any:
    """aiosmtpd's Controller on a port the kernel picks, read back from the bound socket
    (a port probed free and bound later may be taken by another process meanwhile)."""
    from aiosmtpd.controller import Controller

    class EphemeralController(Controller):  # type: ignore[misc]
        async def _bind(self) -> Any:
            server = await self.loop.create_server(self._factory_invoker, host=self.hostname,
                                                   port=0, ssl=self.ssl_context)
            self.port = server.sockets[0].getsockname()[1]
            return server

        def _create_server(self) -> Any:
            return self._bind()

    return EphemeralController(handler, hostname="127.0.0.1", **kwargs)


def _start_sink(sink: str, directory: Path) -> tuple[subprocess.Popen[bytes], int]:
    """Start smtp-sink on a free port and make sure the port is really its own.

    smtp-sink binds the port it is given, so the port is probed free first; another
    process may take it meanwhile. Then smtp-sink fails to bind and exits, and what
    answers on the port is not an SMTP server: try another port (a few times).
    """
    as_root = ["-u", "nobody"] if os.geteuid() == 0 else []  # it refuses to run as root
    for _attempt in range(5):
        port = _free_port()
        process = subprocess.Popen([sink, *as_root, "-c", "-d", str(directory / "%M."),
                                    f"127.0.0.1:{port}", "10"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        greeting = b""
        deadline = time.monotonic() + 30  # a bound for a busy machine, not a measure
        while process.poll() is None and time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
                    greeting = probe.recv(5)
                break
            except OSError:
                time.sleep(0.05)  # smtp-sink is still starting: poll its port
        if process.poll() is None and greeting.startswith(b"220"):
            return process, port
        process.terminate()
        process.wait(5)
    raise AssertionError("smtp-sink never got a port of its own")


def test_client_core_against_aiosmtpd(server_context: ssl.SSLContext,
                                      client_context: ssl.SSLContext) -> None:
    class Collect:
        def __init__(self) -> None:
            self.envelopes: list[object] = []

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            self.envelopes.append(envelope)
            return "250 OK"

    handler = Collect()
    controller = _aiosmtpd_controller(handler, tls_context=server_context,
                                      require_starttls=False)
    controller.start()
    try:
        with SMTPStepper(("127.0.0.1", controller.port), local_name="mail.example.com",
                         tls_context=client_context,
                         server_hostname="mail.anotherdomain.org") as session:
            assert session.connect().code == 220
            assert session.ehlo().code == 250
            assert "STARTTLS" in session.extensions
            session.starttls()
            assert session.tls_active
            assert session.ehlo().code == 250
            steps = session.transaction("alice@example.com",
                                        ["bob@anotherdomain.org", "carol@anotherdomain.org"],
                                        SEED_MESSAGE + b".hidden line\r\nbare\nLF\r\n")
            assert [s.code for s in steps] == [250, 250, 250, 354, 250]
    finally:
        controller.stop()
    envelope = handler.envelopes[0]
    assert envelope.mail_from == "alice@example.com"  # type: ignore[attr-defined]
    assert envelope.rcpt_tos == ["bob@anotherdomain.org",  # type: ignore[attr-defined]
                                 "carol@anotherdomain.org"]
    content = envelope.original_content  # type: ignore[attr-defined]
    assert content.endswith(b".hidden line\r\nbare\r\nLF\r\n")  # unstuffed, CRLF only
    assert b"\n" not in content.replace(b"\r\n", b"")


def test_client_core_against_postfix_smtp_sink() -> None:
    sink = require_program("smtp-sink", "postfix")
    # smtp-sink drops privileges before it writes the dumps: a directory anyone can reach
    tmp_path = Path(tempfile.mkdtemp(prefix="simsmtp-sink-"))
    tmp_path.chmod(0o777)
    process, port = _start_sink(sink, tmp_path)
    try:
        with SMTPStepper(("127.0.0.1", port), local_name="mail.example.com") as session:
            assert session.connect().code == 220
            assert session.ehlo().code == 250
            assert "PIPELINING" in session.extensions
            for _ in range(3):
                steps = session.transaction("alice@example.com", "bob@anotherdomain.org",
                                            SEED_MESSAGE)
                assert [s.code for s in steps] == [250, 250, 354, 250]
        dumped = sorted(tmp_path.iterdir())
        assert len(dumped) == 3
        assert all(b"Subject: Meeting Tomorrow" in p.read_bytes() for p in dumped)
    finally:
        process.terminate()
        process.wait(5)
        shutil.rmtree(tmp_path, ignore_errors=True)
