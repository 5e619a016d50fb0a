"""Property tests: nothing a peer sends makes a core raise, and the invariants hold."""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsmtp.protocol.client import ClientConnection
from simsmtp.protocol.events import (
    NEED_DATA,
    ConnectionEvent,
    Message,
)
from simsmtp.protocol.grammar import normalize_line_endings
from simsmtp.protocol.session import ServerState

from .conftest import Box, Server, pump, ready_for_content

REPLY_LINE = re.compile(rb"^\d{3}[ -]")
FAST = settings(max_examples=150, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])

VOCABULARY = [
    b"EHLO client.example.com\r\n", b"HELO x\r\n", b"MAIL FROM:<a@example.com>\r\n",
    b"MAIL FROM:<>\r\n", b"RCPT TO:<b@anotherdomain.org>\r\n", b"RCPT TO:<Postmaster>\r\n",
    b"DATA\r\n", b"RSET\r\n", b"NOOP\r\n", b"QUIT\r\n", b"VRFY bob\r\n", b"ETRN x.org\r\n",
    b"HELP\r\n", b"STARTTLS\r\n", b"AUTH PLAIN\r\n", b"AUTH LOGIN\r\n",
    b"AUTH PLAIN AGFsaWNlAHB3\r\n", b"YWxpY2U=\r\n", b"*\r\n", b"BDAT 3\r\nabc",
    b"BDAT 2 LAST\r\nxy", b"BDAT 5 LAST\r\n", b"Subject: x\r\n", b"\r\n", b".\r\n",
    b"..stuffed\r\n", b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\r\r\n", b"\x00", b"\xff\xfe",
    b"a" * 600, b"MAIL FROM:<a@x.org> SIZE=99999999999\r\n", b"FOOBAR\r\n",
    b"RCPT TO:<" + b"x" * 70 + b"@y.org>\r\n", b"mail from:<a@b.c> BODY=8BITMIME\r\n",
]


def check_server(server: Server, output: bytes) -> None:
    assert output == b"" or output.endswith(b"\r\n")
    for line in output.split(b"\r\n")[:-1]:
        assert REPLY_LINE.match(line) or re.fullmatch(rb"\d{3}", line), line
        assert len(line) + 2 <= 512
    events: list[ConnectionEvent] = server.events
    for earlier, later in itertools.pairwise(events):
        assert earlier.state_after is later.state_before
    assert isinstance(server.conn.state, ServerState)
    assert server.conn.closed == (server.conn.state is ServerState.CLOSED)


def check_reader(server: Server) -> None:
    """One state variable: what is read next follows the state (issue 14)."""
    conn = server.conn
    if conn.state is ServerState.DATA and conn.pending_reply is None:
        assert conn.receiving_content and conn._data is not None
    if conn.receiving_content:
        assert conn.state is ServerState.DATA or conn._chunk is not None


def run(server: Server, pieces: list[bytes]) -> None:
    output = b""
    for piece in filter(None, pieces):  # b"" would be EOF
        output += server.say(piece)
        check_reader(server)
    output += server.say(b"")
    check_server(server, output)
    assert server.conn.next_event() is NEED_DATA


@FAST
@given(st.lists(st.binary(max_size=300), max_size=12))
def test_random_bytes_never_raise(pieces: list[bytes]) -> None:
    run(Server(Box(users={"alice": "pw"}), auth_enabled=True, auth_plaintext=True,
               size_limit=2000), pieces)


@FAST
@given(st.lists(st.sampled_from(VOCABULARY), max_size=40), st.integers(1, 64))
def test_random_command_sequences_keep_states_consistent(words: list[bytes],
                                                         chunk: int) -> None:
    stream = b"".join(words)
    pieces = [stream[i:i + chunk] for i in range(0, len(stream), chunk)]
    server = Server(Box(users={"alice": "pw"}), auth_enabled=True, auth_plaintext=True,
                    size_limit=2000, smtputf8=True)
    run(server, pieces)
    for message in server.box.messages:
        content = message.content
        assert b"\r" not in content.replace(b"\r\n", b"")
        assert b"\n" not in content.replace(b"\r\n", b"")


@FAST
@given(st.binary(max_size=2000))
def test_client_content_round_trip(content: bytes) -> None:
    """Whatever the body, the client sends one message and the server stores it as the
    client normalised it (CRLF everywhere, dots unstuffed)."""
    server = Server(size_limit=0)
    client = ready_for_content(server)
    client.send(Message(content))
    wire = client.data_to_send()
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    server.conn.receive_data(wire)
    pump(client, server.conn)
    expected = normalize_line_endings(content)
    if any(len(line) > 998 for line in expected.split(b"\r\n")):
        assert server.box.messages == []  # the server refuses lines over 1000 octets
    else:
        assert [m.content for m in server.box.messages] == [expected]


@FAST
@given(st.lists(st.binary(max_size=200), max_size=10))
def test_client_never_raises_on_random_replies(pieces: list[bytes]) -> None:
    client = ClientConnection()
    for piece in filter(None, pieces):  # b"" would be EOF
        client.receive_data(piece)
        while client.next_event() is not NEED_DATA:
            pass
    client.receive_data(b"")
    while client.next_event() is not NEED_DATA:
        pass
    assert client.closed
