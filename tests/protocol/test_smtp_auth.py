"""AUTH (RFC 4954) PLAIN and LOGIN in the server core and driven by the client core."""

from __future__ import annotations

import base64
import ssl

import pytest

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.events import (
    Auth,
    AuthStep,
    Ehlo,
    MailFrom,
    RawLine,
    ReplyReceived,
    ReplySent,
    StartTLS,
)
from simsmtp.protocol.grammar import MAX_SASL_LINE
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.session import ClientState as C
from simsmtp.protocol.session import ServerState as S

from .conftest import SERVER_NAME, Box, Server, codes, connect, pump

PASSWORD = "s3cret-Pa55"
USERS = {"alice": PASSWORD}


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


PLAIN_OK = b64(b"\0alice\0" + PASSWORD.encode())
PLAIN_BAD = b64(b"\0alice\0wrong")


def auth_server(**config: object) -> Server:
    options: dict[str, object] = {"auth_enabled": True, "auth_plaintext": True}
    options.update(config)
    server = Server(Box(users=USERS), **options)
    server.ehlo()
    return server


def no_secret_in(*objects: object) -> None:
    text = "\n".join(repr(o) + str(o) for o in objects)
    assert PASSWORD not in text
    assert PLAIN_OK.decode() not in text
    assert b64(PASSWORD.encode()).decode() not in text


def test_plain_with_initial_response() -> None:
    server = auth_server()
    events, out = server.feed(b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
    assert out == b"235 2.7.0 Authentication successful\r\n"
    assert server.conn.session.authenticated_user == "alice"
    assert server.conn.session.auth_mechanism == "PLAIN"
    assert events[0].line == b"AUTH PLAIN ***" and events[0].command == Auth("PLAIN")
    assert events[0].command.password == ""
    assert server.box.calls == ["AUTH PLAIN alice"]
    no_secret_in(server.events, server.conn.session)


def test_plain_with_334_prompt() -> None:
    server = auth_server()
    events, out = server.feed(b"AUTH PLAIN\r\n")
    # RFC 4954 §4: "334" SP [base64] CRLF: the space stays when the challenge is empty
    assert out == b"334 \r\n" and server.state is S.AUTH
    events, out = server.feed(PLAIN_OK + b"\r\n")
    assert out.startswith(b"235 ")
    assert isinstance(events[0], AuthStep) and events[0].line == b"***"
    assert events[0].state_before is S.AUTH and events[0].state_after is S.GREETED
    no_secret_in(server.events)


def test_login_exchange() -> None:
    server = auth_server()
    assert server.say(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert server.say(b64(b"alice") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert server.say(b64(PASSWORD.encode()) + b"\r\n") == (
        b"235 2.7.0 Authentication successful\r\n")
    no_secret_in(server.events)


def test_login_with_initial_user_name() -> None:
    server = auth_server()
    assert server.say(b"AUTH LOGIN " + b64(b"alice") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert server.say(b64(PASSWORD.encode()) + b"\r\n").startswith(b"235")


def test_wrong_credentials() -> None:
    server = auth_server()
    assert server.say(b"AUTH PLAIN " + PLAIN_BAD + b"\r\n") == (
        b"535 5.7.8 Error: authentication failed: authentication failure\r\n")
    assert not server.conn.session.authenticated and server.state is S.GREETED


def test_proxy_authorization_identity_is_refused() -> None:
    server = auth_server()
    token = b64(b"bob\0alice\0" + PASSWORD.encode())
    assert server.say(b"AUTH PLAIN " + token + b"\r\n").startswith(b"535 5.7.8")


@pytest.mark.parametrize("lines, reply", [
    ([b"AUTH PLAIN not-b64!\r\n"], b"501 5.5.2 Error: cannot decode base64\r\n"),
    ([b"AUTH PLAIN " + b64(b"\0onlylogin") + b"\r\n"],
     b"501 5.5.2 Error: malformed SASL response\r\n"),
    ([b"AUTH LOGIN\r\n", b"*\r\n"], b"501 5.7.0 Authentication aborted\r\n"),
    ([b"AUTH PLAIN\r\n", b"*\r\n"], b"501 5.7.0 Authentication aborted\r\n"),
    ([b"AUTH LOGIN\r\n", b"%%%\r\n"], b"501 5.5.2 Error: cannot decode base64\r\n"),
    ([b"AUTH LOGIN\r\n", "é\r\n".encode()], b"501 5.5.2 Error: cannot decode base64\r\n"),
    ([b"AUTH FOO\r\n"], b"504 5.5.4 Unrecognized authentication type\r\n"),
    ([b"AUTH\r\n"], b"501 5.5.4 Syntax: AUTH mechanism [response]\r\n"),
    ([b"AUTH PLAIN a b\r\n"], b"501 5.5.4 Syntax: AUTH mechanism [response]\r\n"),
])
def test_malformed_exchanges(lines: list[bytes], reply: bytes) -> None:
    server = auth_server()
    out = b"".join(server.say(line) for line in lines)
    assert out.endswith(reply)
    assert server.state is S.GREETED and not server.conn.session.authenticated
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"  # back to commands


def test_mechanism_not_offered_is_504() -> None:
    server = auth_server(auth_mechanisms=("PLAIN",))
    assert b"250-AUTH PLAIN\r\n" in server.events[-1].reply.to_bytes()
    assert server.say(b"AUTH LOGIN\r\n") == b"504 5.5.4 Unrecognized authentication type\r\n"


def test_auth_over_plaintext_refused_with_538() -> None:
    server = Server(Box(users=USERS), auth_enabled=True)
    assert b"AUTH" not in server.ehlo()
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"538 5.7.11 Encryption required for requested authentication mechanism\r\n")
    assert server.box.calls == []


def test_auth_not_enabled() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"503 5.5.1 Error: authentication not enabled\r\n")


def test_auth_during_a_transaction_is_503() -> None:
    server = auth_server()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"503 5.5.1 Error: MAIL transaction in progress\r\n")


def test_second_auth_is_503_and_rset_keeps_authentication() -> None:
    server = auth_server()
    server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"503 5.5.1 Error: already authenticated\r\n")
    server.say(b"RSET\r\n")
    assert server.conn.session.authenticated
    assert server.say(b"AUTH LOGIN\r\n") == b"503 5.5.1 Error: already authenticated\r\n"


def test_auth_ordering() -> None:
    server = Server(Box(users=USERS), auth_enabled=True, auth_plaintext=True)
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"503 5.5.1 Error: send HELO/EHLO first\r\n")
    server.say(b"HELO x\r\n")
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n") == (
        b"500 5.5.2 Error: command not recognized\r\n")


def test_authentication_required() -> None:
    server = auth_server(auth_required=True)
    for line in (b"MAIL FROM:<a@x.org>\r\n", b"RCPT TO:<b@y.org>\r\n", b"DATA\r\n",
                 b"VRFY a\r\n", b"HELP\r\n", b"ETRN x.org\r\n", b"BDAT 0 LAST\r\n"):
        assert server.say(line) == b"530 5.7.0 Authentication required\r\n"
    assert codes(server.say(b"NOOP\r\nRSET\r\n")) == [250, 250]
    server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
    assert server.say(b"RCPT TO:<b@y.org>\r\n") == b"503 5.5.1 Error: need MAIL command\r\n"
    assert server.say(b"MAIL FROM:<a@x.org>\r\n") == b"250 2.1.0 Ok\r\n"


def test_overlong_auth_response_line() -> None:
    server = auth_server()
    server.say(b"AUTH PLAIN\r\n")
    for _ in range(10):
        assert server.say(b"A" * 10_000) == b""
        assert len(server.conn._in) <= MAX_SASL_LINE  # RFC 4954 §4, discarded past it
    events, out = server.feed(b"\r\n")
    assert out == b"500 5.5.6 Authentication Exchange line is too long\r\n"
    assert isinstance(events[0], AuthStep) and server.state is S.GREETED
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_auth_response_line_limit_is_12288_octets() -> None:
    server = auth_server()
    server.say(b"AUTH PLAIN\r\n")
    line = b"A" * 12284 + b"\r\n"  # valid base64 (of zero octets), 12286 octets
    assert server.say(line) == b"501 5.5.2 Error: malformed SASL response\r\n"
    server.say(b"AUTH PLAIN\r\n")
    too_long = b"A" * 12287 + b"\r\n"
    assert server.say(too_long) == b"500 5.5.6 Authentication Exchange line is too long\r\n"


def test_brute_force_is_cut_off() -> None:
    server = auth_server()
    out = server.say(b"AUTH PLAIN " + PLAIN_BAD + b"\r\n" * 1)
    out += server.say(b"AUTH PLAIN " + PLAIN_BAD + b"\r\n")
    assert codes(out) == [535, 535] and not server.conn.closed
    events, out = server.feed(b"AUTH PLAIN " + PLAIN_BAD + b"\r\n")
    assert codes(out) == [535, 421]
    assert out.endswith(b"421 4.7.0 mail.anotherdomain.org Error: too many failed "
                        b"authentication attempts\r\n")
    assert isinstance(events[-1], ReplySent) and server.conn.closed


def test_handler_exception_in_auth_is_a_failure() -> None:
    class Broken(Handler):
        def handle_AUTH(self, session, mechanism, username, password):  # type: ignore[no-untyped-def]
            raise RuntimeError("directory down")

    server = Server(Broken(), auth_enabled=True, auth_plaintext=True)
    server.ehlo()
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n").startswith(b"535")
    assert isinstance(server.conn.handler_errors[0], RuntimeError)


def test_default_handler_authenticates_nobody() -> None:
    server = Server(Handler(), auth_enabled=True, auth_plaintext=True)
    server.ehlo()
    assert server.say(b"AUTH PLAIN " + PLAIN_OK + b"\r\n").startswith(b"535")


# --- the client drives the exchange --------------------------------------------------------

def client_for(server: Server) -> ClientConnection:
    client = ClientConnection(ClientConfig(hostname="client.example.com"))
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    return client


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_client_drives_auth(mechanism: str) -> None:
    server = Server(Box(users=USERS), auth_enabled=True, auth_plaintext=True)
    client = client_for(server)
    assert client.extensions["AUTH"] == "PLAIN LOGIN"
    client.send(Auth(mechanism, "alice", PASSWORD))
    client_events, server_events = pump(client, server.conn)
    replies = [e.reply.code for e in client_events if isinstance(e, ReplyReceived)]
    assert replies == ([235] if mechanism == "PLAIN" else [334, 334, 235])
    assert client.authenticated and client.state is C.GREETED
    assert server.conn.session.authenticated_user == "alice"
    no_secret_in(client_events, server_events, client.pending, server.conn.session)
    client.send(MailFrom("alice@example.com"))


def test_client_auth_failure() -> None:
    server = Server(Box(users=USERS), auth_enabled=True, auth_plaintext=True)
    client = client_for(server)
    client.send(Auth("LOGIN", "alice", "nope"))
    client_events, _ = pump(client, server.conn)
    assert client_events[-1].reply.code == 535
    assert client_events[-1].state_after is C.GREETED and not client.authenticated
    assert "nope" not in repr(client_events)


def test_client_long_plain_credentials_use_the_334_prompt() -> None:
    long_password = "p" * 600
    server = Server(Box(users={"alice": long_password}), auth_enabled=True,
                    auth_plaintext=True)
    client = client_for(server)
    client.send(Auth("PLAIN", "alice", long_password))
    assert client.data_to_send() == b"AUTH PLAIN\r\n"
    server.conn.receive_data(b"AUTH PLAIN\r\n")
    client_events, _ = pump(client, server.conn)
    assert [e.reply.code for e in client_events] == [334, 235]


def test_client_refuses_unoffered_mechanism_and_second_auth() -> None:
    server = Server(Box(users=USERS), auth_enabled=True, auth_plaintext=True,
                    auth_mechanisms=("PLAIN",))
    client = client_for(server)
    with pytest.raises(LocalProtocolError, match="LOGIN"):
        client.send(Auth("LOGIN", "alice", PASSWORD))
    client.send(Auth("PLAIN", "alice", PASSWORD))
    pump(client, server.conn)
    with pytest.raises(LocalProtocolError, match="already authenticated") as info:
        client.send(Auth("PLAIN", "alice", PASSWORD))
    assert PASSWORD not in str(info.value)


def test_client_cancels_on_an_unreadable_challenge() -> None:
    client = ClientConnection()
    client.receive_data(b"220 mx\r\n250-mx\r\n250 AUTH LOGIN\r\n")
    client.next_event()
    client.send(Ehlo("c"))
    client.next_event()
    client.send(Auth("LOGIN", "alice", PASSWORD))
    client.data_to_send()
    client.receive_data(b"334 !!!\r\n")
    client.next_event()
    assert client.data_to_send() == b"*\r\n"


def test_raw_auth_lines_are_masked_and_tracked() -> None:
    server = Server(Box(users=USERS), auth_enabled=True, auth_plaintext=True)
    client = client_for(server)
    client.send(RawLine(b"AUTH PLAIN"))
    events, _ = pump(client, server.conn)
    assert client.state is C.AUTH
    client.send(RawLine(PLAIN_OK))
    events, _ = pump(client, server.conn)
    assert events[-1].reply.code == 235 and client.state is C.GREETED
    assert RawLine(b"AUTH PLAIN " + PLAIN_OK).__repr__() == "RawLine(b'AUTH PLAIN ***')"
    no_secret_in(events, server.events)


def test_auth_after_starttls_end_to_end(server_context: ssl.SSLContext,
                                        client_context: ssl.SSLContext) -> None:
    server = Server(Box(users=USERS), tls_context=server_context, auth_enabled=True)
    client = ClientConnection(ClientConfig(tls_context=client_context,
                                           server_hostname=SERVER_NAME))
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    assert "AUTH" not in client.extensions
    client.send(StartTLS())
    pump(client, server.conn)
    client.send(Ehlo())
    pump(client, server.conn)
    assert client.extensions["AUTH"] == "PLAIN LOGIN"
    client.send(Auth("PLAIN", "alice", PASSWORD))
    pump(client, server.conn)
    assert client.authenticated and server.conn.session.authenticated_user == "alice"
    assert server.conn.session.tls is not None


@pytest.mark.parametrize("config", [
    {"require_tls": True, "auth_enabled": True},  # 530 before STARTTLS (submission)
    {"auth_enabled": False},                      # 503: AUTH not enabled
])
def test_a_refused_auth_line_never_carries_its_secret(
        config: dict[str, object], server_context: ssl.SSLContext) -> None:
    from simsmtp.protocol.events import NEED_DATA, CommandReceived
    from simsmtp.protocol.server import ServerConfig, ServerConnection

    server = ServerConnection(Handler(), ServerConfig(tls_context=server_context, **config))
    server.receive_data(b"EHLO client\r\nAUTH PLAIN " + PLAIN_OK + b"\r\n")
    events = []
    while (event := server.next_event()) is not NEED_DATA:
        events.append(event)
    auth = [e for e in events if isinstance(e, CommandReceived)][-1]
    assert auth.reply.code >= 500
    assert auth.line == b"AUTH PLAIN ***"
    assert PLAIN_OK not in repr(events).encode()
