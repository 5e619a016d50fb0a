"""Hypothesis: command sequences and random bytes into the sans-IO IMAP server core.

As for the SMTP and POP3 cores (test_fuzz_cores.py): (1) nothing is ever raised, (2) the
states chain (each event's ``state_before`` is the previous ``state_after``) and ``closed``
agrees with the state, (3) the wire carries whole CRLF lines, every tagged reply is ``OK``,
``NO`` or ``BAD`` for a tag the client used, and (4) no password reaches an event. Whatever
happens, the messages are all still there unless the client itself expunged them. (A
line that a literal swallowed is no LOGIN any more, even if it says so.)
"""

from __future__ import annotations

import itertools
import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simsmtp.protocol.imap import (
    NEED_DATA,
    CommandReceived,
    IMAPConfig,
    IMAPServerConnection,
    IMAPState,
)
from simsmtp.protocol.imapaccount import MemoryAccount

FAST = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
MESSAGES = [b"Subject: one\r\nFrom: A <a@b.c>\r\n\r\nbody\r\n",
            b"Subject: two\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n--x\r\n"
            b"Content-Type: text/plain\r\n\r\npart\r\n--x--\r\n"]
WORDS = [b"a CAPABILITY", b"b LOGIN bob builder", b"b2 LOGIN bob wrong", b"c SELECT INBOX",
         b"c2 EXAMINE Junk", b"d FETCH 1:* (FLAGS UID ENVELOPE BODYSTRUCTURE)",
         b"e FETCH 1 BODY[]", b"e2 FETCH 2 (BODY.PEEK[1] BODY[2.MIME] BODY[TEXT]<1.3>)",
         b"f STORE 1 +FLAGS (\\Deleted)", b"f2 UID STORE 2 FLAGS.SILENT (\\Seen)",
         b"g SEARCH OR UNSEEN FROM a NOT SUBJECT two", b"h UID SEARCH ALL", b"i EXPUNGE",
         b"j COPY 1:2 Junk", b"k MOVE 2 Sent", b"l APPEND INBOX {5}", b"hello",
         b"l2 APPEND Junk (\\Seen) {4+}", b"abcd", b"m IDLE", b"DONE", b"n NOOP",
         b"o CREATE Work", b"p RENAME Work Play", b"q DELETE Play", b"r CLOSE",
         b"s UNSELECT", b"t STATUS INBOX (MESSAGES UIDNEXT UNSEEN)", b'u LIST "" *',
         b"v ENABLE IMAP4rev2", b"w ID NIL", b"x AUTHENTICATE PLAIN", b"*", b"AGJvYgBidWlsZGVy",
         b"y FETCH 9 FLAGS", b"z LOGOUT", b"bad", b"", b"a" * 70000, b"q {99999999}",
         b"t2 NOOP\n", b"t3 NO\x00OP", b"t4 \xff\xfe"]
_TAGGED = re.compile(rb"^([^ *+]+) (OK|NO|BAD) ")


def _run(stream: bytes, chunk: int) -> tuple[IMAPServerConnection, list[object], bytes,
                                             MemoryAccount]:
    account = MemoryAccount(MESSAGES, uidvalidity=7, now=lambda: 1796650000.0)
    conn = IMAPServerConnection(
        lambda user, password: account if (user, password) == ("bob", "builder") else None,
        IMAPConfig(allow_plaintext_auth=True, max_literal=1000))
    events: list[object] = []
    out = b""
    for piece in [stream[i:i + chunk] for i in range(0, len(stream), chunk)] + [b""]:
        conn.receive_data(piece)
        while (event := conn.next_event()) is not NEED_DATA:
            events.append(event)
        out += conn.data_to_send()
    return conn, events, out, account


def _check(conn: IMAPServerConnection, events: list[object], out: bytes,
           account: MemoryAccount, sent: bytes) -> None:
    assert conn.closed and conn.state is IMAPState.LOGOUT
    states = [(getattr(e, "state_before", None), getattr(e, "state_after", None))
              for e in events]
    assert all(after is before for (_, after), (before, _) in itertools.pairwise(states))
    assert out.endswith(b"\r\n") or out == b""
    for event in events:
        if isinstance(event, CommandReceived) and event.reply.tag not in ("+", "*"):
            assert event.reply.status in ("OK", "NO", "BAD")
            assert f"{event.reply.tag} {event.reply.status} ".encode() in out
    for line in out.split(b"\r\n"):
        match = _TAGGED.match(line)
        if match and not line.startswith(b"* "):
            assert match.group(1) in sent or match.group(1) == b"x"  # tags came from us
    for event in events:  # a LOGIN's password never reaches an event (nor its SASL twin)
        if isinstance(event, CommandReceived) and event.command in ("LOGIN", "AUTHENTICATE"):
            assert b"builder" not in event.line and b"AGJvYgBidWlsZGVy" not in event.line
    expunged = b"EXPUNGE" in sent or b"MOVE" in sent or b"CLOSE" in sent
    if not expunged:
        assert len(account.folder("INBOX").messages) >= len(MESSAGES)


@FAST
@given(st.lists(st.sampled_from(WORDS), max_size=30), st.integers(1, 64))
def test_imap_core_survives_any_command_sequence(words: list[bytes], chunk: int) -> None:
    stream = b"".join(w + b"\r\n" for w in words)
    conn, events, out, account = _run(stream, chunk)
    _check(conn, events, out, account, stream)


@FAST
@given(st.binary(max_size=400), st.integers(1, 32))
def test_imap_core_survives_random_bytes_after_login(junk: bytes, chunk: int) -> None:
    stream = b"a LOGIN bob builder\r\nb SELECT INBOX\r\n" + junk
    conn, events, out, account = _run(stream, chunk)
    _check(conn, events, out, account, stream)
