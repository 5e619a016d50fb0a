"""Scripted captures for the capture-analysis tests: real bytes, real TLS, no sockets.

A :class:`Wire` plays both ends of one connection and records every byte into a
:class:`~simsmtp.net.tap.Tap` exactly as a listener would. After :meth:`Wire.starttls` the
bytes are real TLS records made by two ``ssl`` objects over memory BIOs (the project's
:class:`~simsmtp.protocol.tls.TLSLayer`), with certificates from the world CA, so key logs,
record annotation, entropy and tshark all see a genuine handshake.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path

import dns.message
import dns.rrset

from simsmtp.net.ca import CertificateAuthority
from simsmtp.net.tap import Tap
from simsmtp.protocol.tls import TLSLayer
from simsmtp.traffic import Address

START = 1_700_000_000.0


class Clock:
    """A deterministic clock: every reading is one millisecond after the last."""

    def __init__(self, start: float = START) -> None:
        self.now = start

    def __call__(self) -> float:
        self.now += 0.001
        return self.now


def new_tap() -> Tap:
    """A tap with a deterministic clock."""
    return Tap(clock=Clock())


class Wire:
    """Both ends of one TCP connection, recording into ``tap``."""

    def __init__(self, tap: Tap, *, client: Address = ("127.0.0.2", 40001),
                 server: Address = ("127.0.0.3", 42525), service: str = "smtp",
                 host: str = "mail.anotherdomain.org") -> None:
        self.tap = tap
        self.id = tap.new_conn_id()
        tap.open(self.id, "tcp", client=client, server=server, service=service, host=host)
        self.client_tls: TLSLayer | None = None
        self.server_tls: TLSLayer | None = None

    # -- plaintext or TLS, whichever is on ------------------------------------------------
    def c(self, data: bytes | str) -> None:
        """The client sends ``data`` (a str gets CRLF appended)."""
        raw = data.encode() + b"\r\n" if isinstance(data, str) else data
        if self.client_tls is None:
            self.tap.data(self.id, "c2s", raw)
            return
        assert self.server_tls is not None
        self.client_tls.send(raw)
        wire = self.client_tls.data_to_send()
        self.tap.data(self.id, "c2s", wire)
        assert self.server_tls.receive(wire) == raw

    def s(self, data: bytes | str) -> None:
        """The server sends ``data`` (a str gets CRLF appended)."""
        raw = data.encode() + b"\r\n" if isinstance(data, str) else data
        if self.server_tls is None:
            self.tap.data(self.id, "s2c", raw)
            return
        assert self.client_tls is not None
        self.server_tls.send(raw)
        wire = self.server_tls.data_to_send()
        self.tap.data(self.id, "s2c", wire)
        assert self.client_tls.receive(wire) == raw

    def starttls(self, ca: CertificateAuthority, hostname: str = "mail.anotherdomain.org",
                 version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3,
                 ciphers: str | None = None) -> None:
        """Run a real TLS handshake, recording each flight as it would cross the wire."""
        server_ctx = ca.server_context(hostname)
        server_ctx.maximum_version = version
        if ciphers:  # TLS 1.2 suites (OpenSSL names)
            server_ctx.set_ciphers(ciphers)
        client_ctx = ca.client_context()
        client_ctx.maximum_version = version
        self.client_tls = TLSLayer(client_ctx, server_side=False, server_hostname=hostname)
        self.server_tls = TLSLayer(server_ctx, server_side=True)
        self.client_tls.start()
        for _ in range(10):
            out = self.client_tls.data_to_send()
            if out:
                self.tap.data(self.id, "c2s", out)
                assert self.server_tls.receive(out) == b""
            back = self.server_tls.data_to_send()
            if back:
                self.tap.data(self.id, "s2c", back)
                assert self.client_tls.receive(back) == b""
            if not out and not back and self.client_tls.handshake_complete \
                    and self.server_tls.handshake_complete:
                break
        assert self.client_tls.handshake_complete and self.server_tls.handshake_complete

    def close(self, by: str = "client") -> None:
        """End the connection (TCP FIN)."""
        self.tap.close(self.id, by=by)


MESSAGE = (
    "From: Alice <alice@example.com>\r\n"
    "To: Bob <bob@anotherdomain.org>\r\n"
    "Subject: The secret picnic\r\n"
    "Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n"
    "Message-ID: <1@example.com>\r\n"
    "\r\n"
    "Meet me under the old oak at noon.\r\n"
    "..and bring the cake.\r\n"
)

EHLO_REPLY = ["250-mail.anotherdomain.org", "250-PIPELINING", "250-SIZE 10240000",
              "250-STARTTLS", "250-AUTH PLAIN LOGIN", "250-ENHANCEDSTATUSCODES",
              "250 8BITMIME"]
EHLO_REPLY_TLS = [line for line in EHLO_REPLY if "STARTTLS" not in line]


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def smtp_session(wire: Wire, *, auth: str | None = "PLAIN", message: str = MESSAGE) -> None:
    """EHLO, optional AUTH, one transaction, QUIT (whatever TLS state the wire is in)."""
    wire.c("EHLO mail.example.com")
    for line in (EHLO_REPLY_TLS if wire.client_tls else EHLO_REPLY):
        wire.s(line)
    if auth == "PLAIN":
        wire.c("AUTH PLAIN " + b64("\0alice@example.com\0wonderland"))
        wire.s("235 2.7.0 Authentication successful")
    elif auth == "PLAIN-334":
        wire.c("AUTH PLAIN")
        wire.s("334 ")
        wire.c(b64("\0alice@example.com\0wonderland"))
        wire.s("235 2.7.0 Authentication successful")
    elif auth == "LOGIN":
        wire.c("AUTH LOGIN")
        wire.s("334 VXNlcm5hbWU6")
        wire.c(b64("alice@example.com"))
        wire.s("334 UGFzc3dvcmQ6")
        wire.c(b64("wonderland"))
        wire.s("235 2.7.0 Authentication successful")
    wire.c("MAIL FROM:<alice@example.com>")
    wire.s("250 2.1.0 Ok")
    wire.c("RCPT TO:<bob@anotherdomain.org>")
    wire.s("250 2.1.5 Ok")
    wire.c("DATA")
    wire.s("354 End data with <CR><LF>.<CR><LF>")
    wire.c(message.encode() + b".\r\n")
    wire.s("250 2.0.0 Ok: queued as 4BqXyZ1abc")
    wire.c("QUIT")
    wire.s("221 2.0.0 Bye")


def plain_smtp(tap: Tap, auth: str | None = "PLAIN", **kw: object) -> int:
    """A complete plaintext SMTP session; returns the connection id."""
    wire = Wire(tap, **kw)  # type: ignore[arg-type]
    wire.s("220 mail.anotherdomain.org ESMTP Postfix")
    smtp_session(wire, auth=auth)
    wire.close()
    return wire.id


def starttls_smtp(tap: Tap, ca: CertificateAuthority, *, auth: str | None = "PLAIN",
                  version: ssl.TLSVersion = ssl.TLSVersion.TLSv1_3, ciphers: str | None = None,
                  **kw: object) -> int:
    """EHLO, STARTTLS, then the whole session inside real TLS."""
    wire = Wire(tap, **kw)  # type: ignore[arg-type]
    wire.s("220 mail.anotherdomain.org ESMTP Postfix")
    wire.c("EHLO mail.example.com")
    for line in EHLO_REPLY:
        wire.s(line)
    wire.c("STARTTLS")
    wire.s("220 2.0.0 Ready to start TLS")
    wire.starttls(ca, version=version, ciphers=ciphers)
    smtp_session(wire, auth=auth)
    wire.close()
    return wire.id


def smtps(tap: Tap, ca: CertificateAuthority, **kw: object) -> int:
    """Implicit TLS (port 465): TLS from the first byte, then the greeting."""
    kw.setdefault("service", "smtps")
    wire = Wire(tap, **kw)  # type: ignore[arg-type]
    wire.starttls(ca)
    wire.s("220 mail.anotherdomain.org ESMTP Postfix")
    smtp_session(wire, auth="PLAIN")
    wire.close()
    return wire.id


def pop3_session(tap: Tap, ca: CertificateAuthority | None = None, **kw: object) -> int:
    """POP3 USER/PASS and a RETR; with ``ca``, STLS first (so nothing is in clear)."""
    kw.setdefault("service", "pop3")
    kw.setdefault("server", ("127.0.0.3", 42110))
    wire = Wire(tap, **kw)  # type: ignore[arg-type]
    wire.s("+OK POP3 server ready")
    if ca is not None:
        wire.c("STLS")
        wire.s("+OK Begin TLS negotiation")
        wire.starttls(ca)
    wire.c("USER bob")
    wire.s("+OK")
    wire.c("PASS hunter2")
    wire.s("+OK 1 messages")
    wire.c("RETR 1")
    wire.s(b"+OK 222 octets\r\n" + MESSAGE.encode() + b".\r\n")  # already dot-stuffed
    wire.c("QUIT")
    wire.s("+OK Bye")
    wire.close()
    return wire.id


def dns_mx(tap: Tap, client: Address = ("127.0.0.2", 53535),
           server: Address = ("127.0.0.53", 42053)) -> None:
    """A real MX query and its answer, recorded as two UDP datagrams."""
    query = dns.message.make_query("anotherdomain.org", "MX")
    query.id = 4242
    response = dns.message.make_response(query)
    response.answer.append(dns.rrset.from_text("anotherdomain.org.", 3600, "IN", "MX",
                                               "10 mail.anotherdomain.org."))
    tap.datagram(client, server, query.to_wire(), "c2s")
    tap.datagram(client, server, response.to_wire(), "s2c")


def make_ca(directory: Path, keylog: Path | None = None) -> CertificateAuthority:
    return CertificateAuthority(directory, keylog=keylog)


def mirrored_smtp(tap: Tap, client: Address = ("127.0.0.2", 40077),
                  server: Address = ("127.0.0.3", 42525)) -> tuple[int, int]:
    """One plaintext SMTP connection recorded by both of its ends (a world's outbound
    client and its listener share the tap): two connection ids, the same addresses."""
    listener_id, client_id = tap.new_conn_id(), tap.new_conn_id()
    tap.open(listener_id, client=client, server=server, service="smtp", host="mx")
    tap.open(client_id, client=client, server=server, service="smtp", host="outbound")
    script = [("s2c", b"220 mx ESMTP\r\n"), ("c2s", b"EHLO out\r\n"), ("s2c", b"250 mx\r\n"),
              ("c2s", b"AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=\r\n"),
              ("s2c", b"235 2.7.0 Ok\r\n"), ("c2s", b"QUIT\r\n"), ("s2c", b"221 Bye\r\n")]
    for direction, data in script:
        tap.data(listener_id, direction, data)  # type: ignore[arg-type]
        tap.data(client_id, direction, data)  # type: ignore[arg-type]
    tap.close(client_id, by="client")
    tap.close(listener_id, by="client")
    return listener_id, client_id
