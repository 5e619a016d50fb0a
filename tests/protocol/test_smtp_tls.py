"""STARTTLS and implicit TLS in both cores, with real certificates (trustme)."""

from __future__ import annotations

import ssl

import pytest
import trustme

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.events import (
    Auth,
    CommandReceived,
    ConnectionClosed,
    ConnectionOpened,
    Data,
    Ehlo,
    MailFrom,
    Message,
    PlaintextDiscarded,
    Quit,
    RcptTo,
    ReplyReceived,
    Rset,
    StartTLS,
    TLSFailed,
    TLSStarted,
)
from simsmtp.protocol.session import ClientState as C
from simsmtp.protocol.session import ServerState as S
from simsmtp.protocol.tls import TLSLayer

from .conftest import SERVER_NAME, Box, Server, codes, connect, drain, pump


class TLSPeer:
    """A bare TLS client (no SMTP core) talking to a server core after its 220."""

    def __init__(self, server: Server, context: ssl.SSLContext) -> None:
        self.server = server
        self.tls = TLSLayer(context, server_side=False, server_hostname=SERVER_NAME)
        self.events: list[object] = []
        self.plaintext = b""
        self.tls.start()
        for _ in range(10):
            data = self.tls.data_to_send()
            out = self._feed(data) if data else server.conn.data_to_send()
            if out:
                self.plaintext += self.tls.receive(out)
            if self.tls.handshake_complete and not data and not out:
                break

    def _feed(self, data: bytes) -> bytes:
        events, out = self.server.feed(data)
        self.events += events
        return out

    def say(self, line: bytes) -> bytes:
        self.tls.send(line)
        out = self._feed(self.tls.data_to_send())
        return self.tls.receive(out)


def tls_server(server_context: ssl.SSLContext, **config: object) -> Server:
    return Server(tls_context=server_context, **config)


# --- server --------------------------------------------------------------------------------

def test_starttls_then_session_reset(server_context: ssl.SSLContext,
                                     client_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    assert b"250-STARTTLS" in server.ehlo()
    events, out = server.feed(b"STARTTLS\r\n")
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    assert events[0].state_after is S.TLS_HANDSHAKE
    peer = TLSPeer(server, client_context)
    started = [e for e in peer.events if isinstance(e, TLSStarted)]
    assert len(started) == 1 and started[0].version in ("TLSv1.2", "TLSv1.3")
    assert started[0].state_before is S.TLS_HANDSHAKE and started[0].state_after is S.CONNECTED
    assert peer.plaintext == b""  # nothing spoken before the client speaks
    assert server.conn.tls_active and server.conn.session.tls is not None
    # RFC 3207 §4.2: EHLO name forgotten, STARTTLS no longer offered
    assert server.conn.session.helo_name is None and server.state is S.CONNECTED
    assert peer.say(b"MAIL FROM:<a@x.org>\r\n") == b"503 5.5.1 Error: send HELO/EHLO first\r\n"
    ehlo = peer.say(b"EHLO again\r\n")
    assert ehlo.startswith(b"250-mail.anotherdomain.org") and b"STARTTLS" not in ehlo
    assert peer.say(b"STARTTLS\r\n") == b"554 5.5.1 Error: TLS already active\r\n"
    assert peer.say(b"MAIL FROM:<a@x.org>\r\n") == b"250 2.1.0 Ok\r\n"


def test_output_after_tls_is_records_not_plaintext(server_context: ssl.SSLContext,
                                                   client_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.say(b"STARTTLS\r\n")
    peer = TLSPeer(server, client_context)
    peer.tls.send(b"NOOP\r\n")
    out = peer._feed(peer.tls.data_to_send())
    assert b"250" not in out and out[:1] == b"\x17"  # a TLS application-data record
    assert peer.tls.receive(out) == b"250 2.0.0 Ok\r\n"


def test_plaintext_injection_is_discarded(server_context: ssl.SSLContext,
                                          client_context: ssl.SSLContext) -> None:
    """CVE-2011-0411: ``STARTTLS\\r\\nRSET\\r\\n`` in one segment."""
    server = tls_server(server_context)
    server.ehlo()
    events, out = server.feed(b"STARTTLS\r\nRSET\r\n")
    assert out == b"220 2.0.0 Ready to start TLS\r\n"  # exactly one reply
    discarded = [e for e in events if isinstance(e, PlaintextDiscarded)]
    assert len(discarded) == 1 and discarded[0].data == b"RSET\r\n"
    peer = TLSPeer(server, client_context)
    assert peer.plaintext == b""  # silence after the handshake: RSET was not executed
    assert not any(isinstance(e, CommandReceived) and isinstance(e.command, Rset)
                   for e in server.events)
    ehlo = peer.say(b"EHLO t\r\n")
    assert codes(ehlo) == [250] and b"STARTTLS" not in ehlo
    assert server.conn.session.junk_commands == 0


def test_injected_mail_never_survives(server_context: ssl.SSLContext,
                                      client_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.ehlo()
    server.say(b"STARTTLS\r\nMAIL FROM:<attacker@evil.test>\r\n")
    peer = TLSPeer(server, client_context)
    peer.say(b"EHLO t\r\n")
    assert peer.say(b"RCPT TO:<v@anotherdomain.org>\r\n") == (
        b"503 5.5.1 Error: need MAIL command\r\n")


def test_pre_handshake_silence(server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.ehlo()
    assert server.say(b"STARTTLS\r\nNOOP\r\n") == b"220 2.0.0 Ready to start TLS\r\n"
    assert server.conn.data_to_send() == b""
    assert server.state is S.TLS_HANDSHAKE


def test_starttls_is_refused_during_a_transaction(server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"STARTTLS\r\n") == b"503 5.5.1 Error: MAIL transaction in progress\r\n"


def test_tls_forgets_authentication(server_context: ssl.SSLContext,
                                    client_context: ssl.SSLContext) -> None:
    server = Server(Box(users={"alice": "pw"}), tls_context=server_context,
                    auth_enabled=True, auth_plaintext=True)
    server.ehlo()
    assert server.say(b"AUTH PLAIN AGFsaWNlAHB3\r\n").startswith(b"235")
    server.say(b"STARTTLS\r\n")
    TLSPeer(server, client_context)
    assert server.conn.session.authenticated_user is None


def test_starttls_without_a_certificate_is_454() -> None:
    server = Server()
    assert b"STARTTLS" not in server.ehlo()
    assert server.say(b"STARTTLS\r\n") == b"454 4.7.0 TLS not available due to local problem\r\n"
    assert server.state is S.GREETED


def test_starttls_before_ehlo_then_mail_needs_ehlo(server_context: ssl.SSLContext,
                                                   client_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    assert server.say(b"STARTTLS\r\n").startswith(b"220")
    peer = TLSPeer(server, client_context)
    assert peer.say(b"MAIL FROM:<a@x.org>\r\n").startswith(b"503")


def test_require_tls(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> None:
    server = tls_server(server_context, require_tls=True)
    for line in (b"HELO x\r\n", b"MAIL FROM:<a@x.org>\r\n", b"RCPT TO:<b@y.org>\r\n",
                 b"VRFY a\r\n", b"DATA\r\n", b"HELP\r\n", b"ETRN x.org\r\n"):
        assert server.say(line) == b"530 5.7.0 Must issue a STARTTLS command first\r\n"
    assert codes(server.say(b"NOOP\r\nEHLO x\r\nRSET\r\n")) == [250, 250, 250]
    server.say(b"STARTTLS\r\n")
    peer = TLSPeer(server, client_context)
    peer.say(b"EHLO x\r\n")
    assert peer.say(b"MAIL FROM:<a@x.org>\r\n") == b"250 2.1.0 Ok\r\n"
    assert peer.say(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"


def test_public_mx_does_not_require_tls(server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    assert b"250-STARTTLS" in server.ehlo()
    out = server.say(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\nhi\r\n.\r\n")
    assert codes(out) == [250, 250, 354, 250]


def test_garbage_handshake_closes(server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.ehlo()
    server.say(b"STARTTLS\r\n")
    events, out = server.feed(b"SOMEFAILINGHANDSHAKE\r\n")
    failed = [e for e in events if isinstance(e, TLSFailed)]
    assert len(failed) == 1 and failed[0].state_after is S.CLOSED
    assert server.conn.closed
    assert b"250" not in out
    assert server.say(b"NOOP\r\n") == b""


def test_eof_during_handshake(server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.say(b"STARTTLS\r\n")
    events, _ = server.feed(b"")
    assert isinstance(events[-1], ConnectionClosed) and server.conn.closed


def test_timeout_during_handshake_closes_without_plaintext(
        server_context: ssl.SSLContext) -> None:
    server = tls_server(server_context)
    server.say(b"STARTTLS\r\n")
    server.conn.send_timeout()
    assert server.conn.data_to_send() == b"" and server.conn.closed


def test_implicit_tls_server(server_context: ssl.SSLContext,
                             client_context: ssl.SSLContext) -> None:
    server = Server(tls_context=server_context, implicit_tls=True)
    assert server.greeting == b"" and server.state is S.TLS_HANDSHAKE
    peer = TLSPeer(server, client_context)
    assert peer.plaintext == b"220 mail.anotherdomain.org ESMTP Postfix\r\n"
    kinds = [type(e) for e in server.events]
    assert kinds == [TLSStarted, ConnectionOpened]
    ehlo = peer.say(b"EHLO x\r\n")
    assert b"STARTTLS" not in ehlo


# --- the two cores together ----------------------------------------------------------------

def test_client_and_server_starttls_end_to_end(tls_pair: tuple[ClientConnection, Server]) -> None:
    client, server = tls_pair
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    assert "STARTTLS" in client.extensions
    client.send(StartTLS())
    client_events, server_events = pump(client, server.conn)
    assert any(isinstance(e, TLSStarted) for e in client_events)
    assert any(isinstance(e, TLSStarted) for e in server_events)
    assert client.state is C.CONNECTED and client.extensions == {}
    client.send(Ehlo())
    pump(client, server.conn)
    assert "STARTTLS" not in client.extensions and "PIPELINING" in client.extensions
    client.send(MailFrom("alice@example.com"))
    client.send(RcptTo("bob@anotherdomain.org"))
    client.send(Data())
    pump(client, server.conn)
    client.send(Message(b"Subject: secret\r\n\r\nover TLS\r\n"))
    client.send(Quit())
    client_events, _ = pump(client, server.conn)
    assert [e.reply.code for e in client_events if isinstance(e, ReplyReceived)] == [250, 221]
    assert server.box.messages[0].content == b"Subject: secret\r\n\r\nover TLS\r\n"
    assert client.closed and server.conn.closed


def test_client_discards_injected_replies_after_220(server_context: ssl.SSLContext,
                                                    client_context: ssl.SSLContext) -> None:
    """CVE-2021-38371: ``220 go\\r\\n250-fake\\r\\n250 AUTH PLAIN\\r\\n`` in one segment."""
    client = ClientConnection(ClientConfig(tls_context=client_context,
                                           server_hostname=SERVER_NAME))
    client.receive_data(b"220 mx ESMTP\r\n")
    drain(client)
    client.send(Ehlo("c.example"))
    client.receive_data(b"250-mx\r\n250 STARTTLS\r\n")
    drain(client)
    client.send(StartTLS())
    assert client.data_to_send() == b"EHLO c.example\r\nSTARTTLS\r\n"
    client.receive_data(b"220 go\r\n250-fake\r\n250 AUTH PLAIN\r\n")
    events = drain(client)
    assert [type(e) for e in events] == [ReplyReceived, PlaintextDiscarded]
    assert events[1].data == b"250-fake\r\n250 AUTH PLAIN\r\n"
    assert client.state is C.TLS_HANDSHAKE
    # a real server-side TLS layer finishes the handshake
    tls = TLSLayer(server_context, server_side=True)
    hello = client.data_to_send()
    assert hello[:1] == b"\x16"  # a TLS handshake record: the ClientHello
    tls.receive(hello)
    for _ in range(5):
        client.receive_data(tls.data_to_send())
        events += drain(client)
        data = client.data_to_send()
        if not data:
            break
        tls.receive(data)
    assert any(isinstance(e, TLSStarted) for e in events)
    assert client.extensions == {}  # the fake AUTH was never believed
    with pytest.raises(Exception, match="AUTH"):
        client.send(Auth("PLAIN", "u", "p"))
    client.send(Ehlo("c.example"))
    assert tls.receive(client.data_to_send()) == b"EHLO c.example\r\n"


def test_client_refuses_a_wrong_certificate(client_context: ssl.SSLContext) -> None:
    other = trustme.CA()  # a certificate the client does not trust
    bad = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    other.issue_cert(SERVER_NAME).configure_cert(bad)
    server = Server(Box(users={"alice": "pw"}), tls_context=bad, auth_enabled=True)
    client = ClientConnection(ClientConfig(tls_context=client_context,
                                           server_hostname=SERVER_NAME))
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    client.send(StartTLS())
    client_events, _ = pump(client, server.conn)
    failed = [e for e in client_events if isinstance(e, TLSFailed)]
    assert len(failed) == 1 and "certificate" in failed[0].reason.lower()
    assert client.closed
    with pytest.raises(Exception, match="closed"):
        client.send(Auth("PLAIN", "alice", "pw"))
    assert server.box.calls == []  # no credentials ever reached the server


def test_client_refuses_a_wrong_name(server_context: ssl.SSLContext,
                                     client_context: ssl.SSLContext) -> None:
    server = Server(tls_context=server_context)
    client = ClientConnection(ClientConfig(tls_context=client_context,
                                           server_hostname="mail.example.com"))
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    client.send(StartTLS())
    client_events, _ = pump(client, server.conn)
    assert any(isinstance(e, TLSFailed) for e in client_events) and client.closed


def test_implicit_tls_client_and_server(server_context: ssl.SSLContext,
                                        client_context: ssl.SSLContext) -> None:
    server = Server(tls_context=server_context, implicit_tls=True)
    client = ClientConnection(ClientConfig(tls_context=client_context,
                                           server_hostname=SERVER_NAME, implicit_tls=True))
    assert client.state is C.TLS_HANDSHAKE
    client_events, _ = pump(client, server.conn)
    kinds = [type(e) for e in client_events]
    assert kinds == [TLSStarted, ConnectionOpened]
    assert client_events[0].state_after is C.CONNECTING
    assert client.state is C.CONNECTED
    client.send(Ehlo())
    pump(client, server.conn)
    assert "STARTTLS" not in client.extensions and client.tls_active
