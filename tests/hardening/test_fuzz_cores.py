"""Hypothesis: command sequences into the sans-IO SMTP client and POP3 server cores.

The existing property tests feed random bytes (tests/protocol/test_smtp_fuzz.py,
test_pop3.py); these drive the cores the way a program does, interleaving what we send
with what the peer says, and check that (1) nothing but :class:`LocalProtocolError` (our
own illegal request) is ever raised, (2) the states chain (each event's ``state_before`` is
the previous event's ``state_after``) and ``closed`` agrees with the state, and (3) every
byte put on the wire is well formed: CRLF-terminated lines, no bare CR or LF, replies that
start with a code or ``+OK``/``-ERR``.
"""

from __future__ import annotations

import contextlib
import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsmtp.protocol.client import ClientConnection
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.events import (
    NEED_DATA,
    Bdat,
    Data,
    Ehlo,
    Helo,
    MailFrom,
    Message,
    Noop,
    Quit,
    RawLine,
    RcptTo,
    Rset,
    Vrfy,
)
from simsmtp.protocol.mailbox import MemoryMailbox
from simsmtp.protocol.pop3 import (
    CommandReceived,
    ConnectionOpened,
    POP3Config,
    POP3ServerConnection,
    POP3State,
)
from simsmtp.protocol.session import ClientState

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

COMMANDS = [Ehlo("client.example.com"), Helo("client.example.com"), MailFrom("a@x.example"),
            MailFrom(""), RcptTo("b@y.example"), RcptTo("Postmaster"), Data(),
            Message(b"Subject: x\r\n\r\nbare\nLF\r.\r\n.dot\r\n"), Bdat(b"abc"),
            Bdat(b"xyz", last=True), Rset(), Noop(), Quit(), Vrfy("bob"),
            MailFrom("evil>\r\nRCPT TO:<x@y"), RcptTo("a@b\rc"), RawLine(b"NOOP")]
REPLIES = [b"220 mx.example ESMTP\r\n", b"250 ok\r\n",
           b"250-mx.example\r\n250-PIPELINING\r\n250-CHUNKING\r\n250 SIZE 100\r\n",
           b"354 go\r\n", b"221 bye\r\n", b"421 4.4.2 timeout\r\n", b"451 4.3.0 later\r\n",
           b"550 5.1.1 no\r\n", b"252 maybe\r\n", b"250 ok\r\n250 ok\r\n", b"250-x",
           b" trailing\r\n", b"garbage\r\n", b"\r\n", b"250\n", b"999 what\r\n"]
STEP = st.one_of(st.tuples(st.just("send"), st.sampled_from(COMMANDS)),
                 st.tuples(st.just("recv"), st.sampled_from(REPLIES)),
                 st.tuples(st.just("recv"), st.binary(max_size=40)))
_CRLF_LINES = re.compile(rb"(?:[^\r\n]*\r\n)*")


def _chained(events: list[object]) -> bool:
    states = [(getattr(e, "state_before", None), getattr(e, "state_after", None))
              for e in events]
    return all(after is before for (_, after), (before, _) in itertools.pairwise(states)
               if after is not None and before is not None)


@FAST
@given(st.lists(STEP, max_size=40))
def test_smtp_client_core_survives_any_conversation(steps: list[tuple[str, object]]) -> None:
    client = ClientConnection()
    events: list[object] = []
    wire = b""
    for kind, item in steps:
        if kind == "send":
            # refusing an illegal request is the one exception allowed
            with contextlib.suppress(LocalProtocolError):
                client.send(item)  # type: ignore[arg-type]
        else:
            assert isinstance(item, bytes)
            if item:  # b"" would be EOF
                client.receive_data(item)
        while (event := client.next_event()) is not NEED_DATA:
            events.append(event)
        wire += client.data_to_send()
    client.receive_data(b"")
    while (event := client.next_event()) is not NEED_DATA:
        events.append(event)
    assert client.closed and client.confirmed_state is ClientState.CLOSED
    assert _chained(events)
    assert _CRLF_LINES.fullmatch(wire)  # only whole CRLF lines went out
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")
    assert b"evil>" not in wire and b"a@b\rc" not in wire  # injection refused, not sent


POP3_WORDS = [b"USER bob\r\n", b"PASS builder\r\n", b"PASS wrong\r\n", b"STAT\r\n",
              b"LIST\r\n", b"LIST 1\r\n", b"RETR 1\r\n", b"TOP 1 0\r\n", b"DELE 1\r\n",
              b"UIDL\r\n", b"RSET\r\n", b"NOOP\r\n", b"CAPA\r\n", b"STLS\r\n", b"QUIT\r\n",
              b"APOP bob 0123\r\n", b"RETR 99\r\n", b"USER\r\n", b"\r\n", b"x" * 300 + b"\r\n"]
MULTILINE = {"CAPA", "UIDL", "LIST", "RETR", "TOP"}  # RFC 1939 §5-§7, RFC 2449 §5


@FAST
@given(st.lists(st.sampled_from(POP3_WORDS), max_size=30), st.integers(1, 16))
def test_pop3_server_core_keeps_a_consistent_state(words: list[bytes], chunk: int) -> None:
    box = MemoryMailbox([b"Subject: one\r\n\r\n.dot\r\nbody\r\n", b"Subject: two\r\n\r\nx\r\n"])
    conn = POP3ServerConnection(lambda user, password: box if (user, password) == (
        "bob", "builder") else None, POP3Config(hostname="mx.example",
                                                allow_plaintext_auth=True))
    stream = b"".join(words)
    events: list[object] = []
    out = b""
    for piece in [stream[i:i + chunk] for i in range(0, len(stream), chunk)] + [b""]:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
        out += conn.data_to_send()
    assert conn.closed and _chained(events)
    assert isinstance(conn.state, POP3State)
    assert _CRLF_LINES.fullmatch(out)
    lines = out.split(b"\r\n")[:-1]
    i = 0
    for event in events:  # each status line is the event's; bodies end with "." (§3)
        if isinstance(event, ConnectionOpened):
            first, multi = str(event.reply), False
        elif isinstance(event, CommandReceived):
            first = str(event.reply)
            multi = event.ok and event.command in MULTILINE and not (
                event.command in ("LIST", "UIDL") and b" " in event.line)
        else:
            continue
        assert lines[i] == first.encode() and first.startswith(("+OK", "-ERR")), lines[i]
        i += 1
        if multi:
            i = lines.index(b".", i) + 1
    assert all(line.startswith((b"+OK", b"-ERR")) for line in lines[i:])  # sign-offs
    assert b"builder" not in repr(events).encode()

