"""CATALOGUE.md C31-C44 end to end: STARTTLS on the seed MX (25), submission (587), POP3
(110), and the outbound agent's own client against fake MX servers that misbehave.

Server side: plaintext pipelined behind STARTTLS/STLS is discarded (CVE-2011-0411,
CVE-2021-38084), the session is reset (RFC 3207 §4.2), STARTTLS is not offered twice.
Client side: the agent's real :class:`~simsmtp.protocol.client.ClientConnection` ignores a
response injected before the handshake (CVE-2021-38371) and, when TLS is required,
verifies the certificate.
"""

from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

from simsmtp.net.network import Network

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    BOB_PASSWORD,
    MX,
    SUBMISSION,
    Wire,
    client_context,
    code,
    codes,
    hardening_world,
    message,
    send_recv,
    smtp,
    starttls,
    token,
)


def _events(net: Network, wire: Wire, kind: str) -> list[Any]:
    ip, port = wire.sock.getsockname()[:2]
    return [e for e in net.world.trace.events(kind) if e.get("peer") == f"{ip}:{port}"]


def test_c31_starttls_injection(net: Network) -> None:
    with smtp(net) as wire:
        (ready,) = send_recv(wire, b"STARTTLS\r\nRSET\r\n")
        assert code(ready) == 220 and wire.buffer == bytearray()  # one reply, not two
        wire.starttls(client_context(net), MX)
        assert wire.silent()  # a 250 here would be the injected RSET executed
        (ehlo,) = send_recv(wire, b"EHLO t\r\n")
        assert code(ehlo) == 250 and b"STARTTLS" not in ehlo  # RFC 3207 §4.2
        lines = [e["line"] for e in _events(net, wire, "smtp.command")]
        assert "RSET" not in lines and lines[-1] == "EHLO t"
        assert [e["octets"] for e in _events(net, wire, "smtp.discarded")] == [6]


def test_c32_injected_mail_from_is_discarded(net: Network) -> None:
    with smtp(net) as wire:
        assert code(send_recv(wire, b"STARTTLS\r\nMAIL FROM:<attacker@evil.example>\r\n")[0]) \
            == 220
        wire.starttls(client_context(net), MX)
        assert codes(send_recv(wire, b"EHLO t\r\n")) == [250]
        (reply,) = send_recv(wire, b"RCPT TO:<bob@anotherdomain.org>\r\n")
        assert reply.startswith(b"503 5.5.1 Error: need MAIL")


def test_c33_nothing_is_answered_before_the_handshake(net: Network) -> None:
    with smtp(net) as wire:
        assert codes(send_recv(wire, b"STARTTLS\r\nNOOP\r\n")) == [220]
        assert wire.silent()  # waiting for a ClientHello, not answering NOOP
        wire.starttls(client_context(net), MX)
        assert codes(send_recv(wire, b"QUIT\r\n")) == [221]


def test_c34_session_state_is_forgotten_after_tls(net: Network) -> None:
    with smtp(net, ehlo=False) as wire:  # (a) STARTTLS before EHLO
        assert codes(send_recv(wire, b"STARTTLS\r\n")) == [220]
        wire.starttls(client_context(net), MX)
        assert send_recv(wire, b"MAIL FROM:<a@x.example>\r\n")[0].startswith(
            b"503 5.5.1 Error: send HELO/EHLO first")
    with smtp(net) as wire:  # (b, c) the EHLO name and a transaction are forgotten
        assert codes(send_recv(wire, b"MAIL FROM:<a@x.example>\r\n")) == [250]
        # our choice, as Postfix: no STARTTLS inside a transaction
        assert send_recv(wire, b"STARTTLS\r\n")[0].startswith(
            b"503 5.5.1 Error: MAIL transaction in progress")
        assert codes(send_recv(wire, b"RSET\r\nSTARTTLS\r\n", replies=2)) == [250, 220]
        wire.starttls(client_context(net), MX)
        assert codes(send_recv(wire, b"MAIL FROM:<a@x.example>\r\n")) == [503]  # no EHLO
        assert codes(send_recv(wire, b"EHLO t\r\n")) == [250]
        assert send_recv(wire, b"RCPT TO:<bob@anotherdomain.org>\r\n")[0].startswith(
            b"503 5.5.1 Error: need MAIL")
        assert send_recv(wire, b"MAIL FROM:<a@x.example>\r\nDATA\r\n", replies=2)[1] \
            .startswith(b"503 5.5.1 Error: need RCPT")


def test_c35_no_second_starttls(net: Network) -> None:
    with smtp(net) as wire:
        starttls(net, wire)
        (ehlo,) = send_recv(wire, b"EHLO t\r\n")
        assert b"STARTTLS" not in ehlo  # RFC 3207 §4.2
        assert send_recv(wire, b"STARTTLS\r\n")[0].startswith(
            b"554 5.5.1 Error: TLS already active")
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]  # still inside TLS


def test_c36_starttls_with_an_argument_gets_501(net: Network) -> None:
    with smtp(net) as wire:
        assert send_recv(wire, b"STARTTLS now\r\n")[0].startswith(b"501 5.5.4")  # RFC 3207 §4
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]  # still plaintext SMTP


@pytest.mark.parametrize("command", [b"HELO t\r\n", b"MAIL FROM:<alice@example.com>\r\n",
                                     b"RCPT TO:<bob@anotherdomain.org>\r\n", b"VRFY bob\r\n",
                                     b"DATA\r\n", b"HELP\r\n",
                                     b"AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=\r\n"])
def test_c37_submission_requires_starttls_first(net: Network, command: bytes) -> None:
    with smtp(net, SUBMISSION, 587, ehlo=False) as wire:
        assert codes(send_recv(wire, b"NOOP\r\nEHLO t\r\n", replies=2)) == [250, 250]
        assert send_recv(wire, command)[0].startswith(
            b"530 5.7.0 Must issue a STARTTLS command first")  # RFC 3207 §4
        assert codes(send_recv(wire, b"QUIT\r\n")) == [221]


def test_c38_public_mx_does_not_require_tls(net: Network) -> None:
    mark = token()
    with smtp(net, ehlo=False) as wire:
        (ehlo,) = send_recv(wire, b"EHLO t\r\n")
        assert b"250-STARTTLS" in ehlo  # offered, not required (RFC 3207 §4)
        assert codes(send_recv(wire, b"MAIL FROM:<a@relay.example>\r\nRCPT TO:<bob@another"
                                     b"domain.org>\r\nDATA\r\n", replies=3)) == [250, 250, 354]
        assert codes(send_recv(wire, message(mark) + b".\r\n")) == [250]
    assert len([k for k in net.store.keys(BOB)
                if mark.encode() in net.store.get_bytes(BOB, k)]) == 1


def test_c39_garbage_handshake_closes_cleanly(net: Network) -> None:
    with smtp(net) as wire:
        assert codes(send_recv(wire, b"STARTTLS\r\n")) == [220]
        wire.send(b"SOMEFAILINGHANDSHAKE\r\n")
        rest = wire.read_until_closed()
        assert rest[:1] in (b"", b"\x15")  # nothing, or a TLS alert record: no SMTP reply
        assert _events(net, wire, "tls.failed")
    with smtp(net) as again:  # the server goes on serving
        assert codes(send_recv(again, b"NOOP\r\n")) == [250]


@pytest.fixture(scope="module")
def plain() -> Iterator[Network]:
    with hardening_world(mx={"starttls": False}).start() as running:
        yield running


def test_c40_starttls_without_tls_gets_454(plain: Network) -> None:
    with smtp(plain, ehlo=False) as wire:
        assert b"STARTTLS" not in send_recv(wire, b"EHLO t\r\n")[0]
        assert send_recv(wire, b"STARTTLS\r\n")[0].startswith(
            b"454 4.7.0 TLS not available")  # RFC 3207 §4
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]


def test_c44_pop3_stls_injection(net: Network) -> None:
    with Wire.connect(net.address(MX, 110)) as wire:
        assert wire.read_line().startswith(b"+OK")
        wire.send(b"STLS\r\nUSER bob\r\n")
        assert wire.read_line().startswith(b"+OK") and wire.buffer == bytearray()
        wire.starttls(client_context(net), MX)
        assert wire.silent()  # the injected USER was discarded, not answered
        wire.send(f"USER bob\r\nPASS {BOB_PASSWORD}\r\n".encode())
        assert wire.read_line().startswith(b"+OK") and wire.read_line().startswith(b"+OK")
        wire.send(b"QUIT\r\n")
        assert wire.read_line().startswith(b"+OK")
        assert _events(net, wire, "pop3.discarded")


# --------------------------------------------------------------- the outbound client


class FakeMX:
    """A scripted MX on the real MX's address (which was taken down): it greets, offers
    STARTTLS, answers STARTTLS with ``reply`` in ONE segment, runs the TLS handshake with
    ``context``, then accepts one message. ``commands`` logs (tls?, line)."""

    def __init__(self, address: tuple[str, int], context: ssl.SSLContext,
                 reply: bytes = b"220 2.0.0 Ready to start TLS\r\n") -> None:
        self.context = context
        self.reply = reply
        self.commands: list[tuple[bool, str]] = []
        self.messages: list[bytes] = []
        self.errors: list[BaseException] = []
        self.server = socket.create_server(address)
        self.server.settimeout(0.05)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = self.server.accept()
                except TimeoutError:
                    continue
                with conn:
                    self._session(conn)
        except BaseException as exc:
            self.errors.append(exc)

    def _session(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        sock: Any = conn
        buf = b""
        tls = False
        sock.sendall(b"220 fake.mx ESMTP\r\n")
        while True:
            while b"\r\n" not in buf:
                try:
                    data = sock.recv(65536)
                except (ssl.SSLError, OSError):
                    return
                if not data:
                    return
                buf += data
            line, buf = buf.split(b"\r\n", 1)
            verb = line.decode().upper()
            self.commands.append((tls, line.decode()))
            if verb.startswith("EHLO"):
                exts = b"250 SIZE 1000000\r\n" if tls else b"250 STARTTLS\r\n"
                sock.sendall(b"250-fake.mx\r\n" + exts)
            elif verb == "STARTTLS":
                sock.sendall(self.reply)
                try:
                    sock = self.context.wrap_socket(conn, server_side=True)
                except (ssl.SSLError, OSError):
                    return
                tls, buf = True, b""
            elif verb.startswith(("MAIL", "RCPT")):
                sock.sendall(b"250 2.0.0 Ok\r\n")
            elif verb == "DATA":
                sock.sendall(b"354 go\r\n")
                while b"\r\n.\r\n" not in buf:
                    buf += sock.recv(65536)
                content, buf = buf.split(b"\r\n.\r\n", 1)
                self.messages.append(content)
                sock.sendall(b"250 2.0.0 Ok: queued as FAKE\r\n")
            elif verb == "QUIT":
                sock.sendall(b"221 2.0.0 Bye\r\n")
                return
            else:
                sock.sendall(b"502 5.5.2 Error: command not recognized\r\n")

    def close(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        self.server.close()


def _submit(net: Network, mark: str) -> None:
    import smtplib

    with smtplib.SMTP(*net.address(SUBMISSION, 587)) as client:
        client.starttls(context=client_context(net))
        client.login(ALICE, ALICE_PASSWORD)
        client.sendmail(ALICE, [BOB], message(mark, sender=ALICE))


def _with_fake_mx(net: Network, context: ssl.SSLContext, mark: str,
                  reply: bytes = b"220 2.0.0 Ready to start TLS\r\n") -> FakeMX:
    address = net.address(MX, 25)
    net.take_down(MX)
    fake = FakeMX(address, context, reply)
    try:
        _submit(net, mark)
        assert net.wait(lambda: net.idle() and bool(net.world.trace.events("delivery.attempt")))
        net.deliver()
    finally:
        fake.close()
    assert fake.errors == []
    return fake


def _rogue_context(name: str = MX) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert(name).configure_cert(context)
    return context


def test_c42_client_ignores_a_response_injected_before_the_handshake() -> None:
    mark = token()
    with hardening_world(submission={"outbound_tls": "required"}).start() as net:
        assert net.ca is not None
        fake = _with_fake_mx(net, net.ca.server_context(MX), mark,
                             reply=b"220 go\r\n250-fake\r\n250 AUTH PLAIN\r\n")
        trace = net.world.trace
        (discarded,) = trace.events("tls.plaintext_discarded")
        assert discarded["data"] == b"250-fake\r\n250 AUTH PLAIN\r\n"
        verbs = [(tls, line.split()[0].upper()) for tls, line in fake.commands]
        # EHLO again inside TLS, one transaction, never AUTH (the injected "AUTH PLAIN")
        assert verbs == [(False, "EHLO"), (False, "STARTTLS"), (True, "EHLO"), (True, "MAIL"),
                         (True, "RCPT"), (True, "DATA"), (True, "QUIT")]
        assert len(fake.messages) == 1 and mark.encode() in fake.messages[0]
        assert [e["recipient"] for e in trace.events("delivery.ok")] == [BOB]
        assert trace.events("tls.started")[0]["verified"] is True


@pytest.mark.parametrize("context", [_rogue_context(), None], ids=["untrusted-ca", "wrong-name"])
def test_c43_required_tls_verifies_the_certificate(context: ssl.SSLContext | None) -> None:
    mark = token()
    with hardening_world(submission={"outbound_tls": "required"}).start() as net:
        assert net.ca is not None
        context = context or net.ca.server_context(SUBMISSION)  # a cert for another name
        fake = _with_fake_mx(net, context, mark)
        trace = net.world.trace
        assert fake.messages == [] and all(not tls for tls, _ in fake.commands)
        assert "MAIL" not in {line.split()[0].upper() for _, line in fake.commands}
        (failed,) = trace.events("tls.required_failed")
        assert "CERTIFICATE_VERIFY_FAILED" in failed["reason"]
        assert [e["recipient"] for e in trace.events("delivery.deferred")] == [BOB]
        assert trace.events("delivery.ok") == [] and trace.events("delivery.bounce") == []


def test_c43_opportunistic_tls_goes_on_but_records_the_peer_unverified() -> None:
    mark = token()
    with hardening_world().start() as net:  # the seed: outbound_tls = "opportunistic"
        fake = _with_fake_mx(net, _rogue_context(), mark)
        assert len(fake.messages) == 1  # RFC 7435: encrypted, not authenticated
        (started,) = net.world.trace.events("tls.started")
        assert started["verified"] is False
