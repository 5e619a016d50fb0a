"""The sans-IO POP3 server core: bytes in, bytes and events out (RFC 1939, 2449, 2595)."""

from __future__ import annotations

import ssl
import tracemalloc
from collections.abc import Iterable

import pytest
import trustme
from hypothesis import example, given, settings
from hypothesis import strategies as st

from simsmtp.protocol.errors import LocalProtocolError, TLSFailure
from simsmtp.protocol.events import ConnectionEvent
from simsmtp.protocol.mailbox import (
    Mailbox,
    MailboxError,
    MemoryMailbox,
    MessageInfo,
    is_valid_uid,
    to_crlf,
    to_lf,
)
from simsmtp.protocol.pop3 import (
    NEED_DATA,
    PLAINTEXT_DISALLOWED,
    CommandReceived,
    ConnectionClosed,
    ConnectionOpened,
    Disconnect,
    PlaintextDiscarded,
    POP3Config,
    POP3Event,
    POP3Reply,
    POP3ServerConnection,
    POP3State,
    TLSFailed,
    TLSStarted,
    allowed_commands,
    byte_stuff,
    transitions,
)
from simsmtp.protocol.tls import TLSLayer

AUTH = POP3State.AUTHORIZATION
TRANS = POP3State.TRANSACTION
PASSWORD = "s3cr3t-Pa55"

MSG1 = b"From: a@example.org\r\nSubject: one\r\n\r\nline 1\r\nline 2\r\nline 3\r\n"
MSG2 = b"From: b@example.org\r\nSubject: two\r\n\r\nhello\r\n"


# --- helpers -------------------------------------------------------------------------------


def make(messages: Iterable[bytes] = (MSG1, MSG2), *, box: Mailbox | None = None,
         **config: object) -> tuple[POP3ServerConnection, Mailbox]:
    """A connection whose only user is alice/PASSWORD; greeting already drained."""
    mailbox: Mailbox = box if box is not None else MemoryMailbox(messages)

    def authenticator(user: str, password: str) -> Mailbox | None:
        return mailbox if (user, password) == ("alice", PASSWORD) else None

    config.setdefault("allow_plaintext_auth", True)
    conn = POP3ServerConnection(authenticator, POP3Config(**config))  # type: ignore[arg-type]
    conn.data_to_send()
    assert isinstance(conn.next_event(), ConnectionOpened)
    return conn, mailbox


def drain(conn: POP3ServerConnection) -> list[POP3Event]:
    events: list[POP3Event] = []
    while (event := conn.next_event()) is not NEED_DATA:
        assert isinstance(event, ConnectionEvent)  # POP3Event is a union of its classes
        events.append(event)
    return events


def talk(conn: POP3ServerConnection, data: bytes) -> tuple[bytes, list[POP3Event]]:
    """Feed ``data``, handle everything, return (wire output, events)."""
    conn.receive_data(data)
    events = drain(conn)
    return conn.data_to_send(), events


def login(conn: POP3ServerConnection) -> None:
    out, _ = talk(conn, f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    assert b"maildrop has" in out
    assert conn.state is TRANS


def commands(events: Iterable[POP3Event]) -> list[CommandReceived]:
    return [e for e in events if isinstance(e, CommandReceived)]


# --- greeting, config ----------------------------------------------------------------------


def test_greeting_default_text_and_event() -> None:
    conn = POP3ServerConnection(lambda u, p: None, POP3Config(hostname="pop.example.org"))
    assert conn.data_to_send() == b"+OK pop.example.org POP3 server ready\r\n"
    event = conn.next_event()
    assert event == ConnectionOpened(state_before=AUTH, state_after=AUTH,
                                     reply=POP3Reply(True, "pop.example.org POP3 server ready"))
    assert str(event.reply) == "+OK pop.example.org POP3 server ready"
    assert conn.next_event() is NEED_DATA
    assert conn.state is AUTH and not conn.closed


def test_greeting_persona_is_configurable() -> None:
    conn = POP3ServerConnection(lambda u, p: None, POP3Config(greeting="Dovecot ready."))
    assert conn.data_to_send() == b"+OK Dovecot ready.\r\n"


# --- authorization -------------------------------------------------------------------------


def test_user_pass_moves_to_transaction_and_masks_password() -> None:
    conn, _ = make()
    out, events = talk(conn, f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    size = len(MSG1) + len(MSG2)
    assert out == (b"+OK\r\n"
                   + f"+OK alice's maildrop has 2 messages ({size} octets)\r\n".encode())
    user, pass_ = commands(events)
    assert (user.command, user.line, user.state_before, user.state_after) == (
        "USER", b"USER alice", AUTH, AUTH)
    assert (pass_.command, pass_.line, pass_.state_before, pass_.state_after) == (
        "PASS", b"PASS ***", AUTH, TRANS)
    assert pass_.ok and conn.user == "alice"
    assert all(PASSWORD not in repr(e) for e in events)
    assert PASSWORD not in repr(vars(conn))


def test_password_never_in_events_even_when_misplaced() -> None:
    conn, _ = make()
    _, events = talk(conn, f" PASS {PASSWORD}\r\nUSER x pass {PASSWORD}\r\n"
                           f"!PASS {PASSWORD}\r\nHELO x\r\n".encode())
    assert [(c.command, c.line) for c in commands(events)] == [
        ("", b"PASS ***"), ("USER", b"USER x pass ***"), ("!PASS", b"!PASS ***"),
        ("HELO", b"HELO x")]
    assert PASSWORD not in repr(events)


def test_commands_are_case_insensitive() -> None:
    conn, _ = make()
    talk(conn, f"user alice\r\npAsS {PASSWORD}\r\n".encode())
    assert conn.state is TRANS
    assert talk(conn, b"stat\r\n")[0].startswith(b"+OK 2 ")


def test_password_may_contain_spaces() -> None:
    seen: list[tuple[str, str]] = []

    def authenticator(user: str, password: str) -> Mailbox | None:
        seen.append((user, password))
        return MemoryMailbox()

    conn = POP3ServerConnection(authenticator, POP3Config(allow_plaintext_auth=True))
    conn.receive_data(b"USER bob\r\nPASS two words \r\n")
    drain(conn)
    assert seen == [("bob", "two words ")]  # RFC 1939 §7: spaces belong to the password


def test_wrong_password_then_limit_of_three_closes() -> None:
    conn, _ = make()
    for attempt in (1, 2):
        out, events = talk(conn, b"USER alice\r\nPASS wrong\r\n")
        assert out == b"+OK\r\n-ERR [AUTH] Authentication failed.\r\n", attempt
        assert commands(events)[-1].state_after is AUTH
    out, events = talk(conn, b"USER alice\r\nPASS wrong\r\n")
    assert out.startswith(b"+OK\r\n-ERR [AUTH] Authentication failed. Too many failures")
    assert commands(events)[-1].state_after is POP3State.CLOSED
    assert isinstance(events[-1], ConnectionClosed)
    assert conn.closed and conn.auth_failures == 3
    assert conn.errors == 0  # failed logins are counted apart


def test_pass_without_user_and_pass_not_immediately_after_user() -> None:
    conn, _ = make()
    assert talk(conn, f"PASS {PASSWORD}\r\n".encode())[0] == b"-ERR No username given.\r\n"
    out, _ = talk(conn, f"USER alice\r\nCAPA\r\nPASS {PASSWORD}\r\n".encode())
    assert out.endswith(b"-ERR No username given.\r\n")  # RFC 1939 §7: immediately after
    assert conn.state is AUTH


def test_plaintext_login_refused_when_not_allowed() -> None:
    conn, _ = make(allow_plaintext_auth=False)
    out, _ = talk(conn, f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    refusal = f"-ERR {PLAINTEXT_DISALLOWED}\r\n".encode()
    assert out == refusal * 2
    assert refusal == (b"-ERR [AUTH] Plaintext authentication disallowed on non-secure "
                       b"(SSL/TLS) connections.\r\n")
    assert conn.state is AUTH and conn.user is None
    capa = talk(conn, b"CAPA\r\n")[0]
    assert b"\r\nUSER\r\n" not in capa


def test_authenticator_error_is_a_temporary_failure() -> None:
    def broken(user: str, password: str) -> Mailbox | None:
        raise MailboxError("maildrop locked")

    conn = POP3ServerConnection(broken, POP3Config(allow_plaintext_auth=True))
    conn.data_to_send()
    out, _ = talk(conn, b"USER a\r\nPASS b\r\n")
    assert out == b"+OK\r\n-ERR [SYS/TEMP] maildrop locked\r\n"
    assert conn.auth_failures == 0 and conn.state is AUTH


def test_user_without_name() -> None:
    conn, _ = make()
    assert talk(conn, b"USER\r\n")[0] == b"-ERR No username given.\r\n"


# --- CAPA ----------------------------------------------------------------------------------


def test_capa_lists_capabilities_multiline() -> None:
    conn, _ = make(implementation="simsmtp")
    out, events = talk(conn, b"CAPA\r\n")
    assert out == (b"+OK Capability list follows\r\nCAPA\r\nTOP\r\nUIDL\r\nRESP-CODES\r\n"
                   b"AUTH-RESP-CODE\r\nPIPELINING\r\nUSER\r\nSASL PLAIN\r\n"
                   b"IMPLEMENTATION simsmtp\r\n.\r\n")
    assert str(commands(events)[0].reply) == "+OK Capability list follows"


def test_capa_takes_no_argument() -> None:
    conn, _ = make()
    assert talk(conn, b"CAPA x\r\n")[0] == b"-ERR Syntax error, usage: CAPA\r\n"


# --- TRANSACTION ---------------------------------------------------------------------------


def test_stat_list_uidl() -> None:
    conn, _ = make()
    login(conn)
    n1, n2 = len(MSG1), len(MSG2)
    assert talk(conn, b"STAT\r\n")[0] == f"+OK 2 {n1 + n2}\r\n".encode()
    assert talk(conn, b"LIST\r\n")[0] == (
        f"+OK 2 messages ({n1 + n2} octets)\r\n1 {n1}\r\n2 {n2}\r\n.\r\n".encode())
    assert talk(conn, b"LIST 2\r\n")[0] == f"+OK 2 {n2}\r\n".encode()
    assert talk(conn, b"UIDL\r\n")[0] == b"+OK unique-id listing follows\r\n1 1\r\n2 2\r\n.\r\n"
    assert talk(conn, b"UIDL 1\r\n")[0] == b"+OK 1 1\r\n"


def test_message_number_errors() -> None:
    conn, _ = make()
    login(conn)
    assert talk(conn, b"LIST 3\r\n")[0] == (
        b"-ERR no such message, only 2 messages in maildrop\r\n")
    assert talk(conn, b"RETR 0\r\n")[0] == (
        b"-ERR no such message, only 2 messages in maildrop\r\n")
    assert talk(conn, b"UIDL x\r\n")[0] == b"-ERR Invalid message number: x\r\n"
    assert talk(conn, b"DELE -1\r\n")[0] == b"-ERR Invalid message number: -1\r\n"
    assert talk(conn, "RETR \u00b2\r\n".encode())[0] == (
        "-ERR Invalid message number: \u00b2\r\n".encode())
    assert conn.state is TRANS and conn.errors == 5


def test_retr_sends_message_with_size() -> None:
    conn, _ = make()
    login(conn)
    out, events = talk(conn, b"RETR 2\r\n")
    assert out == f"+OK {len(MSG2)} octets\r\n".encode() + MSG2 + b".\r\n"
    assert str(commands(events)[0].reply) == f"+OK {len(MSG2)} octets"


def test_retr_byte_stuffs_lines_starting_with_dot() -> None:
    message = b"Subject: dots\r\n\r\n.hidden\r\n.\r\nmiddle . dot\r\n..two\r\nend"
    conn, _ = make([message])
    login(conn)
    out, _ = talk(conn, b"RETR 1\r\n")
    # the stored message lacks a final CRLF: RETR adds one before the terminating "."
    assert out == (f"+OK {len(message)} octets\r\n".encode()
                   + b"Subject: dots\r\n\r\n..hidden\r\n..\r\nmiddle . dot\r\n...two\r\nend\r\n"
                   b".\r\n")


def test_byte_stuff_first_line_and_empty() -> None:
    assert byte_stuff(b".start\r\nx\r\n") == b"..start\r\nx\r\n.\r\n"
    assert byte_stuff(b"") == b".\r\n"


def test_lf_only_mailbox_is_sent_with_crlf() -> None:
    conn, box = make([b"Subject: lf\n\nbody\n"])
    login(conn)
    assert box.list_messages()[0].size == len(b"Subject: lf\r\n\r\nbody\r\n")
    assert talk(conn, b"RETR 1\r\n")[0] == b"+OK 21 octets\r\nSubject: lf\r\n\r\nbody\r\n.\r\n"


def test_top_zero_gives_headers_and_blank_line_only() -> None:
    conn, _ = make()
    login(conn)
    out, _ = talk(conn, b"TOP 1 0\r\n")
    assert out == (b"+OK top of message follows\r\n"
                   b"From: a@example.org\r\nSubject: one\r\n\r\n.\r\n")


def test_top_n_lines_and_more_than_body() -> None:
    conn, _ = make()
    login(conn)
    assert talk(conn, b"TOP 1 2\r\n")[0] == (
        b"+OK top of message follows\r\nFrom: a@example.org\r\nSubject: one\r\n\r\n"
        b"line 1\r\nline 2\r\n.\r\n")
    assert talk(conn, b"TOP 1 99\r\n")[0] == b"+OK top of message follows\r\n" + MSG1 + b".\r\n"
    assert talk(conn, b"TOP 1 x\r\n")[0] == b"-ERR Invalid number of lines: x\r\n"
    assert talk(conn, b"TOP 1\r\n")[0] == b"-ERR Syntax error, usage: TOP msg n\r\n"


def test_top_message_without_body_and_without_headers() -> None:
    conn, _ = make([b"Subject: only headers\r\n", b"\r\nbody only\r\nmore\r\n"])
    login(conn)
    assert talk(conn, b"TOP 1 5\r\n")[0] == (
        b"+OK top of message follows\r\nSubject: only headers\r\n.\r\n")
    assert talk(conn, b"TOP 2 1\r\n")[0] == (
        b"+OK top of message follows\r\n\r\nbody only\r\n.\r\n")


def test_dele_hides_message_and_deletion_happens_only_at_quit() -> None:
    conn, box = make()
    assert isinstance(box, MemoryMailbox)
    login(conn)
    assert talk(conn, b"DELE 1\r\n")[0] == b"+OK message 1 deleted\r\n"
    assert talk(conn, b"DELE 1\r\n")[0] == b"-ERR message 1 already deleted\r\n"
    assert talk(conn, b"RETR 1\r\n")[0] == b"-ERR message 1 already deleted\r\n"
    assert talk(conn, b"STAT\r\n")[0] == f"+OK 1 {len(MSG2)}\r\n".encode()
    assert talk(conn, b"LIST\r\n")[0] == (
        f"+OK 1 messages ({len(MSG2)} octets)\r\n2 {len(MSG2)}\r\n.\r\n".encode())
    assert talk(conn, b"UIDL\r\n")[0] == b"+OK unique-id listing follows\r\n2 2\r\n.\r\n"
    assert len(box) == 2 and box.deleted == []  # nothing removed before QUIT
    out, events = talk(conn, b"QUIT\r\n")
    assert out == b"+OK localhost POP3 server signing off (1 messages left)\r\n"
    assert box.deleted == ["1"] and len(box) == 1
    quit_, closed = events
    assert isinstance(quit_, CommandReceived)
    assert (quit_.state_before, quit_.state_after) == (TRANS, POP3State.UPDATE)
    assert closed == ConnectionClosed(state_before=POP3State.UPDATE,
                                      state_after=POP3State.CLOSED, reason="QUIT")
    assert conn.closed and conn.next_event() is NEED_DATA


def test_quit_steps_through_update_one_event_at_a_time() -> None:
    conn, _ = make()
    login(conn)
    conn.receive_data(b"QUIT\r\n")
    assert isinstance(conn.next_event(), CommandReceived)
    assert conn.state is POP3State.UPDATE and not conn.closed
    assert isinstance(conn.next_event(), ConnectionClosed)
    assert conn.closed


def test_rset_undeletes() -> None:
    conn, box = make()
    assert isinstance(box, MemoryMailbox)
    login(conn)
    talk(conn, b"DELE 1\r\nDELE 2\r\n")
    assert talk(conn, b"STAT\r\n")[0] == b"+OK 0 0\r\n"
    size = len(MSG1) + len(MSG2)
    assert talk(conn, b"RSET\r\n")[0] == f"+OK maildrop has 2 messages ({size} octets)\r\n".encode()
    assert talk(conn, b"QUIT\r\n")[0].endswith(b"(2 messages left)\r\n")
    assert box.deleted == [] and len(box) == 2


def test_quit_deleting_everything_says_maildrop_empty() -> None:
    conn, box = make()
    assert isinstance(box, MemoryMailbox)
    login(conn)
    out, _ = talk(conn, b"DELE 1\r\nDELE 2\r\nQUIT\r\n")
    assert out.endswith(b"+OK localhost POP3 server signing off (maildrop empty)\r\n")
    assert len(box) == 0


def test_eof_without_quit_deletes_nothing() -> None:
    conn, box = make()
    assert isinstance(box, MemoryMailbox)
    login(conn)
    talk(conn, b"DELE 1\r\n")
    out, events = talk(conn, b"")
    assert out == b""
    assert events == [ConnectionClosed(state_before=TRANS, state_after=POP3State.CLOSED,
                                       reason="client closed the connection")]
    assert box.deleted == [] and conn.closed  # RFC 1939 §6: no UPDATE without QUIT


def test_quit_in_authorization_closes_without_update() -> None:
    conn, _ = make()
    out, events = talk(conn, b"QUIT\r\n")
    assert out == b"+OK localhost POP3 server signing off\r\n"
    assert [type(e) for e in events] == [CommandReceived, ConnectionClosed]
    assert commands(events)[0].state_after is POP3State.CLOSED
    assert conn.closed


def test_noop_and_pipelined_commands_answered_in_order() -> None:
    conn, _ = make()
    out, events = talk(conn, f"USER alice\r\nPASS {PASSWORD}\r\nNOOP\r\nSTAT\r\n".encode())
    lines = out.split(b"\r\n")
    assert lines[0] == b"+OK" and lines[1].startswith(b"+OK alice's")
    assert lines[2] == b"+OK" and lines[3].startswith(b"+OK 2 ")
    assert [c.command for c in commands(events)] == ["USER", "PASS", "NOOP", "STAT"]


def test_one_event_per_next_event_call() -> None:
    conn, _ = make()
    conn.receive_data(b"CAPA\r\nQUIT\r\n")
    first = conn.next_event()
    assert isinstance(first, CommandReceived) and first.command == "CAPA"
    assert conn.data_to_send().startswith(b"+OK Capability")
    second = conn.next_event()
    assert isinstance(second, CommandReceived) and second.command == "QUIT"


def test_partial_line_needs_data() -> None:
    conn, _ = make()
    conn.receive_data(b"NO")
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"OP\r")
    assert conn.next_event() is NEED_DATA
    assert talk(conn, b"\n")[0] == b"-ERR NOOP is not allowed in the AUTHORIZATION state " \
                                   b"(only in TRANSACTION)\r\n"


# --- errors, state table -------------------------------------------------------------------


def test_wrong_state_messages_come_from_the_table() -> None:
    conn, _ = make()
    assert talk(conn, b"STAT\r\n")[0] == (
        b"-ERR STAT is not allowed in the AUTHORIZATION state (only in TRANSACTION)\r\n")
    login(conn)
    assert talk(conn, b"USER bob\r\n")[0] == (
        b"-ERR USER is not allowed in the TRANSACTION state (only in AUTHORIZATION)\r\n")
    assert talk(conn, b"STLS\r\n")[0] == (
        b"-ERR STLS is not allowed in the TRANSACTION state (only in AUTHORIZATION)\r\n")
    assert conn.state is TRANS


def test_unknown_command_and_empty_line() -> None:
    conn, _ = make()
    out, events = talk(conn, b"HELO x\r\n\r\nAPOP alice 0123\r\n")
    assert out == b"-ERR Unknown command.\r\n" * 3
    assert [(c.command, c.line) for c in commands(events)] == [
        ("HELO", b"HELO x"), ("", b""), ("APOP", b"APOP ***")]


def test_syntax_errors_name_the_usage() -> None:
    conn, _ = make()
    login(conn)
    assert talk(conn, b"RETR\r\n")[0] == b"-ERR Syntax error, usage: RETR msg\r\n"
    assert talk(conn, b"LIST 1 2\r\n")[0] == b"-ERR Syntax error, usage: LIST [msg]\r\n"
    assert talk(conn, b"STAT x\r\n")[0] == b"-ERR Syntax error, usage: STAT\r\n"
    assert talk(conn, b"NOOP now\r\n")[0] == b"-ERR Syntax error, usage: NOOP\r\n"


def test_too_many_errors_closes_on_the_tenth() -> None:
    conn, _ = make()
    out, events = talk(conn, b"BAD\r\n" * 9)
    assert out == b"-ERR Unknown command.\r\n" * 9 and not conn.closed
    out, events = talk(conn, b"BAD\r\nNOOP\r\n")
    assert out == b"-ERR too many errors\r\n"
    assert commands(events)[0].state_after is POP3State.CLOSED
    assert events[-1] == ConnectionClosed(state_before=POP3State.CLOSED,
                                          state_after=POP3State.CLOSED,
                                          reason="too many errors")
    assert conn.closed and len(commands(events)) == 1  # NOOP after it is never read


def test_ordinary_errors_do_not_close() -> None:
    conn, _ = make()
    login(conn)
    out, _ = talk(conn, b"RETR 9\r\nDELE 9\r\nLIST 9\r\nNOOP\r\n")
    assert out.endswith(b"+OK\r\n") and conn.state is TRANS


def test_transition_table_is_data() -> None:
    table = transitions()
    assert all(t.state in POP3State and t.target in POP3State for t in table)
    edges = {(t.state, t.trigger, t.outcome): t.target for t in table}
    assert edges[(AUTH, "PASS", "+OK")] is TRANS
    assert edges[(AUTH, "PASS", "-ERR")] is AUTH
    assert edges[(AUTH, "STLS", "+OK")] is POP3State.TLS_HANDSHAKE
    assert edges[(POP3State.TLS_HANDSHAKE, "tls-established", "")] is AUTH
    assert edges[(TRANS, "QUIT", "")] is POP3State.UPDATE
    assert edges[(POP3State.UPDATE, "update-done", "")] is POP3State.CLOSED
    assert allowed_commands(AUTH) == ["CAPA", "USER", "PASS", "AUTH", "STLS", "QUIT"]
    assert allowed_commands(TRANS) == ["STAT", "LIST", "UIDL", "RETR", "TOP", "DELE", "RSET",
                                       "NOOP", "CAPA", "QUIT"]
    assert allowed_commands(POP3State.CLOSED) == []


# --- line framing --------------------------------------------------------------------------


def test_line_of_255_octets_is_accepted_256_is_too_long() -> None:
    conn, _ = make()
    ok_line = b"USER " + b"a" * 248 + b"\r\n"
    assert len(ok_line) == 255  # RFC 2449 §4: 255 octets including CRLF
    assert talk(conn, ok_line)[0] == b"+OK\r\n"
    long_line = b"USER " + b"a" * 249 + b"\r\n"
    out, events = talk(conn, long_line)
    assert out == b"-ERR line too long\r\n"
    assert commands(events)[0].command == ""
    assert talk(conn, b"CAPA\r\n")[0].startswith(b"+OK")


def test_too_long_line_split_over_many_reads() -> None:
    conn, _ = make()
    for _ in range(10):
        conn.receive_data(b"x" * 100)
        assert conn.next_event() is NEED_DATA
    conn.receive_data(b"x\r")
    assert conn.next_event() is NEED_DATA
    assert talk(conn, b"\nQUIT\r\n")[0] == (
        b"-ERR line too long\r\n+OK localhost POP3 server signing off\r\n")


def test_megabyte_without_crlf_keeps_memory_bounded() -> None:
    conn, _ = make()
    chunk = b"a" * 4096
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for _ in range(256):  # 1 MiB, no CRLF
            conn.receive_data(chunk)
            assert conn.next_event() is NEED_DATA
        grown = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert grown < 16_384
    out, _ = talk(conn, b"a" * 1001 + b"\r\nCAPA\r\n")
    assert out.startswith(b"-ERR line too long\r\n+OK Capability list follows\r\n")
    assert conn.errors == 1


def test_bare_lf_does_not_end_a_line_and_the_line_is_rejected() -> None:
    """Catalogue 29 (tests/hardening/CATALOGUE.md), strict as the SMTP core: only CRLF
    ends a line."""
    conn, _ = make()
    assert talk(conn, b"QUIT\n") == (b"", [])  # not a complete line: no reply
    out, events = talk(conn, b"\r\n")
    assert out == b"-ERR Bare LF in command line: lines must end with CRLF\r\n"
    assert not conn.closed and commands(events)[0].command == ""
    assert talk(conn, b"QUIT\r\n")[0].startswith(b"+OK")


def test_eof_after_bare_lf_line_executes_nothing() -> None:
    conn, _ = make()
    _, events = talk(conn, b"QUIT\n")
    _, events = talk(conn, b"")
    assert [type(e) for e in events] == [ConnectionClosed] and not commands(events)


def test_crlf_split_across_reads() -> None:
    conn, _ = make()
    assert talk(conn, b"CAPA\r") == (b"", [])
    assert talk(conn, b"\nNOOP")[0].startswith(b"+OK Capability list follows\r\n")
    conn2, _ = make()
    conn2.receive_data(b"x" * 300 + b"\r")  # too long, and its CR ends this read
    assert conn2.next_event() is NEED_DATA
    assert talk(conn2, b"\nCAPA\r\n")[0].startswith(
        b"-ERR line too long\r\n+OK Capability list follows\r\n")


def test_need_data_is_the_shared_sentinel() -> None:
    from simsmtp.protocol.events import NEED_DATA as SHARED

    assert NEED_DATA is SHARED


def test_bare_cr_and_control_characters_are_rejected() -> None:
    conn, _ = make()
    assert talk(conn, b"USER a\rb\r\n")[0] == (
        b"-ERR Bare CR in command line: lines must end with CRLF\r\n")
    assert talk(conn, b"USER a\x00b\r\n")[0] == b"-ERR Invalid characters in command line\r\n"
    assert talk(conn, b"USER \xff\r\n")[0] == b"-ERR Invalid characters in command line\r\n"
    assert conn.state is AUTH and conn.errors == 3


def test_data_after_eof_is_the_callers_mistake() -> None:
    conn, _ = make()
    conn.receive_data(b"")
    with pytest.raises(LocalProtocolError, match="after EOF"):
        conn.receive_data(b"NOOP\r\n")


def test_data_after_close_is_ignored() -> None:
    conn, _ = make()
    talk(conn, b"QUIT\r\n")
    conn.receive_data(b"NOOP\r\n")
    conn.receive_data(b"")
    assert conn.next_event() is NEED_DATA
    assert conn.data_to_send() == b""


# --- unsolicited -ERR ----------------------------------------------------------------------


def test_disconnect_sends_err_and_closes_without_update() -> None:
    conn, box = make()
    assert isinstance(box, MemoryMailbox)
    login(conn)
    talk(conn, b"DELE 1\r\n")
    conn.send(Disconnect("Disconnected for inactivity."))
    assert conn.data_to_send() == b"-ERR Disconnected for inactivity.\r\n"
    assert conn.closed
    assert drain(conn) == [ConnectionClosed(state_before=TRANS, state_after=POP3State.CLOSED,
                                            reason="Disconnected for inactivity.")]
    assert box.deleted == []
    with pytest.raises(LocalProtocolError):
        conn.send(Disconnect())


def test_send_rejects_other_events() -> None:
    conn, _ = make()
    with pytest.raises(LocalProtocolError):
        conn.send("QUIT")  # type: ignore[arg-type]


# --- mailbox failures ----------------------------------------------------------------------


class FlakyMailbox(MemoryMailbox):
    def get(self, uid: str) -> bytes:
        raise MailboxError("gone")

    def delete(self, uids: Iterable[str]) -> None:
        raise MailboxError("read-only file system")


def test_mailbox_errors_become_err_replies() -> None:
    conn, _ = make(box=FlakyMailbox([MSG1]))
    login(conn)
    assert talk(conn, b"RETR 1\r\n")[0] == b"-ERR [SYS/TEMP] message 1 is unavailable\r\n"
    assert talk(conn, b"TOP 1 0\r\n")[0] == b"-ERR [SYS/TEMP] message 1 is unavailable\r\n"
    out, events = talk(conn, b"DELE 1\r\nQUIT\r\n")
    assert out == b"+OK message 1 deleted\r\n-ERR some deleted messages not removed\r\n"
    assert conn.closed and isinstance(events[-1], ConnectionClosed)


class ListFailsMailbox(MemoryMailbox):
    def list_messages(self) -> list[MessageInfo]:
        raise MailboxError("locked")


def test_unreadable_maildrop_at_login() -> None:
    conn, _ = make(box=ListFailsMailbox())
    out, _ = talk(conn, f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    assert out == b"+OK\r\n-ERR [SYS/TEMP] unable to lock maildrop\r\n"
    assert conn.state is AUTH


# --- mailbox helpers -----------------------------------------------------------------------


def test_memory_mailbox_and_line_ending_helpers() -> None:
    box = MemoryMailbox({"abc": b"a\nb\rc\r\n"})
    assert box.get("abc") == b"a\r\nb\r\nc\r\n"
    assert box.list_messages() == [MessageInfo("abc", 9)]
    assert to_lf(b"a\r\nb\rc\n") == b"a\nb\nc\n" and to_crlf(b"a\n") == b"a\r\n"
    with pytest.raises(ValueError):
        box.add(b"x", "abc")
    with pytest.raises(ValueError):
        box.add(b"x", "has space")
    with pytest.raises(MailboxError):
        box.get("nope")
    assert is_valid_uid("x" * 70) and not is_valid_uid("x" * 71) and not is_valid_uid("")
    assert isinstance(box, Mailbox)


# --- STLS (RFC 2595) with real certificates -------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost").configure_cert(ctx)
    return ctx


@pytest.fixture
def client_tls(ca: trustme.CA) -> TLSLayer:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return TLSLayer(ctx, server_side=False, server_hostname="localhost")


def handshake(conn: POP3ServerConnection,
              client: TLSLayer) -> tuple[list[POP3Event], bytes]:
    """Run the TLS handshake; return the server's events and the plaintext the client got."""
    events: list[POP3Event] = []
    plaintext = b""
    client.start()
    for _ in range(20):
        to_server = client.data_to_send()
        if to_server:
            conn.receive_data(to_server)
        events += drain(conn)
        to_client = conn.data_to_send()
        if to_client:
            plaintext += client.receive(to_client)
        if not to_server and not to_client and client.handshake_complete:
            break
    return events, plaintext


def tls_talk(conn: POP3ServerConnection, client: TLSLayer,
             data: bytes) -> tuple[bytes, list[POP3Event]]:
    client.send(data)
    conn.receive_data(client.data_to_send())
    events = drain(conn)
    return client.receive(conn.data_to_send()), events


def test_stls_upgrade_then_login_inside_tls(server_context: ssl.SSLContext,
                                           client_tls: TLSLayer) -> None:
    conn, _ = make(allow_plaintext_auth=False, tls_context=server_context)
    capa = talk(conn, b"CAPA\r\n")[0]
    assert b"\r\nSTLS\r\n" in capa and b"\r\nUSER\r\n" not in capa
    out, events = talk(conn, b"STLS\r\n")
    assert out == b"+OK Begin TLS negotiation\r\n"
    assert commands(events)[0].state_after is POP3State.TLS_HANDSHAKE
    assert conn.state is POP3State.TLS_HANDSHAKE
    events, plaintext = handshake(conn, client_tls)
    started = [e for e in events if isinstance(e, TLSStarted)]
    assert len(started) == 1 and started[0].state_after is AUTH and started[0].version
    assert conn.secure and conn.state is AUTH
    assert plaintext == b""  # RFC 2595 §4: no new greeting
    capa, _ = tls_talk(conn, client_tls, b"CAPA\r\n")
    assert b"\r\nUSER\r\n" in capa and b"STLS" not in capa
    out, _ = tls_talk(conn, client_tls, f"USER alice\r\nPASS {PASSWORD}\r\n".encode())
    assert out.startswith(b"+OK\r\n+OK alice's maildrop has 2 messages")
    assert conn.state is TRANS
    out, events = tls_talk(conn, client_tls, b"QUIT\r\n")
    assert out.startswith(b"+OK localhost POP3 server signing off")
    assert conn.closed


def test_stls_twice_is_refused(server_context: ssl.SSLContext, client_tls: TLSLayer) -> None:
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    handshake(conn, client_tls)
    out, events = tls_talk(conn, client_tls, b"STLS\r\n")
    assert out == b"-ERR TLS is already active.\r\n"
    assert commands(events)[0].state_after is AUTH


def test_stls_without_tls_context() -> None:
    conn, _ = make()
    assert talk(conn, b"STLS\r\n")[0] == b"-ERR TLS support isn't enabled.\r\n"
    assert b"STLS" not in talk(conn, b"CAPA\r\n")[0]
    assert conn.state is AUTH


def test_stls_injection_is_discarded(server_context: ssl.SSLContext,
                                     client_tls: TLSLayer) -> None:
    """Catalogue 44 (CVE-2021-38084): STLS\\r\\nUSER victim\\r\\n in one write."""
    conn, _ = make(tls_context=server_context)
    out, events = talk(conn, b"STLS\r\nUSER victim\r\n")
    assert out == b"+OK Begin TLS negotiation\r\n"  # only +OK to STLS
    assert [c.command for c in commands(events)] == ["STLS"]
    discarded = [e for e in events if isinstance(e, PlaintextDiscarded)]
    assert discarded == [PlaintextDiscarded(state_before=POP3State.TLS_HANDSHAKE,
                                            state_after=POP3State.TLS_HANDSHAKE,
                                            data=b"USER victim\r\n")]
    events, plaintext = handshake(conn, client_tls)
    assert plaintext == b""  # nothing arrives until the client sends a command
    assert not commands(events)
    # USER was never executed: PASS now has no user to go with.
    out, events = tls_talk(conn, client_tls, b"PASS x\r\n")
    assert out == b"-ERR No username given.\r\n"


def test_stls_injection_masks_a_password(server_context: ssl.SSLContext) -> None:
    conn, _ = make(tls_context=server_context)
    _, events = talk(conn, f"STLS\r\nUSER alice\r\nPASS {PASSWORD}\r\nSTAT".encode())
    (discarded,) = [e for e in events if isinstance(e, PlaintextDiscarded)]
    assert discarded.data == b"USER alice\r\nPASS ***\r\nSTAT\r\n"  # the secret masked
    assert PASSWORD not in repr(events) and PASSWORD not in repr(vars(conn))
    assert conn.user is None and conn.state is POP3State.TLS_HANDSHAKE


def test_tls_handshake_failure_closes(server_context: ssl.SSLContext) -> None:
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    out, events = talk(conn, b"USER victim\r\nPASS guess\r\n" * 4)
    assert [type(e) for e in events] == [TLSFailed, ConnectionClosed]
    failed = events[0]
    assert isinstance(failed, TLSFailed)
    assert (failed.state_before, failed.state_after) == (POP3State.TLS_HANDSHAKE,
                                                         POP3State.CLOSED)
    assert b"+OK" not in out and b"-ERR" not in out  # never plaintext after STLS
    assert conn.closed


def test_untrusted_server_certificate_fails_on_both_sides(
        server_context: ssl.SSLContext) -> None:
    stranger = trustme.CA()  # the client trusts a different CA
    ctx = ssl.create_default_context()
    stranger.configure_trust(ctx)
    client = TLSLayer(ctx, server_side=False, server_hostname="localhost")
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    client.start()
    conn.receive_data(client.data_to_send())
    drain(conn)
    with pytest.raises(TLSFailure, match="CERTIFICATE_VERIFY_FAILED"):
        client.receive(conn.data_to_send())
    conn.receive_data(client.data_to_send())  # the client's alert
    events = drain(conn)
    assert [type(e) for e in events] == [TLSFailed, ConnectionClosed]


def test_garbage_after_handshake_is_a_tls_failure(server_context: ssl.SSLContext,
                                                   client_tls: TLSLayer) -> None:
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    handshake(conn, client_tls)
    out, events = talk(conn, b"\x17\x03\x03\x00\x05hello")  # a record that won't decrypt
    assert [type(e) for e in events] == [TLSFailed, ConnectionClosed]
    assert (events[0].state_before, events[0].state_after) == (AUTH, POP3State.CLOSED)
    assert b"-ERR" not in out and conn.closed


def test_client_close_notify_is_eof(server_context: ssl.SSLContext,
                                    client_tls: TLSLayer) -> None:
    conn, box = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    handshake(conn, client_tls)
    tls_talk(conn, client_tls, f"USER alice\r\nPASS {PASSWORD}\r\nDELE 1\r\n".encode())
    client_tls.close()
    _, events = talk(conn, client_tls.data_to_send())
    assert events == [ConnectionClosed(state_before=TRANS, state_after=POP3State.CLOSED,
                                       reason="client closed the connection")]
    assert isinstance(box, MemoryMailbox) and box.deleted == []


def test_eof_during_handshake_closes(server_context: ssl.SSLContext) -> None:
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    _, events = talk(conn, b"")
    assert events == [ConnectionClosed(state_before=POP3State.TLS_HANDSHAKE,
                                       state_after=POP3State.CLOSED,
                                       reason="client closed during the TLS handshake")]


def test_disconnect_during_handshake_writes_no_plaintext(
        server_context: ssl.SSLContext) -> None:
    conn, _ = make(tls_context=server_context)
    talk(conn, b"STLS\r\n")
    conn.send(Disconnect("Disconnected for inactivity."))
    assert conn.data_to_send() == b"" and conn.closed


# --- robustness ----------------------------------------------------------------------------

_TOKENS = [b"USER alice\r\n", f"PASS {PASSWORD}\r\n".encode(), b"PASS x\r\n", b"STAT\r\n",
           b"LIST\r\n", b"LIST 1\r\n", b"UIDL 2\r\n", b"RETR 1\r\n", b"TOP 2 1\r\n",
           b"DELE 1\r\n", b"RSET\r\n", b"NOOP\r\n", b"CAPA\r\n", b"STLS\r\n", b"QUIT\r\n",
           b"\r\n", b"\n", b"\r", b".", b"\x00", b"x" * 300, b"QUIT\n"]


@settings(max_examples=150, deadline=None)
@example(chunks=[b" ", f"PASS {PASSWORD}\r\n".encode()], with_tls=False)
@example(chunks=[b"!", f"PASS {PASSWORD}\r\n".encode()], with_tls=False)
@given(st.lists(st.one_of(st.binary(max_size=64), st.sampled_from(_TOKENS)), max_size=30),
       st.booleans())
def test_random_bytes_never_raise(chunks: list[bytes], with_tls: bool) -> None:
    ctx = _HYPOTHESIS_CONTEXT if with_tls else None
    conn, _ = make(tls_context=ctx)
    # b"" is EOF: only the last read may be empty (more data after it is the caller's
    # mistake, a LocalProtocolError, as for every core on the shared base)
    for chunk in [*(c for c in chunks if c), b""]:
        conn.receive_data(chunk)
        for event in drain(conn):
            if isinstance(event, CommandReceived):
                assert event.reply.status in ("+OK", "-ERR", "+")
                assert PASSWORD not in repr(event)
        out = conn.data_to_send()
        if conn.tls is None and out:
            assert out.endswith(b"\r\n")
    assert conn.closed
    assert conn.next_event() is NEED_DATA


def _server_context_for_hypothesis() -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("localhost").configure_cert(ctx)
    return ctx


_HYPOTHESIS_CONTEXT = _server_context_for_hypothesis()


# --- SASL AUTH (RFC 5034) and POP3S (RFC 8314) ------------------------------------------------


def b64(data: bytes) -> bytes:
    import base64

    return base64.b64encode(data)


PLAIN_OK = b64(b"\0alice\0" + PASSWORD.encode())


def test_auth_plain_with_initial_response_logs_in_and_masks_it() -> None:
    conn, _ = make()
    out, events = talk(conn, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
    assert out == b"+OK Logged in.\r\n"  # Dovecot's text
    assert conn.state is TRANS and conn.user == "alice"
    (event,) = commands(events)
    assert (event.command, event.line) == ("AUTH", b"AUTH PLAIN ***")
    assert event.state_before is AUTH and event.state_after is TRANS
    assert PLAIN_OK.decode() not in repr(events)
    assert talk(conn, b"STAT\r\n")[0].startswith(b"+OK 2 ")


def test_auth_plain_with_continuation_sends_plus_space_then_reads_the_response() -> None:
    conn, _ = make()
    out, events = talk(conn, b"AUTH PLAIN\r\n")
    assert out == b"+ \r\n"  # RFC 5034 §4: "+" SP, then the client's base64 line
    assert conn.state is AUTH and str(commands(events)[0].reply) == "+ "
    out, events = talk(conn, PLAIN_OK + b"\r\n")
    assert out == b"+OK Logged in.\r\n" and conn.state is TRANS
    assert commands(events)[0].line == b"***"
    assert PLAIN_OK.decode() not in repr(events)


def test_auth_cancel_bad_base64_wrong_password_and_unknown_mechanism() -> None:
    conn, _ = make()
    assert talk(conn, b"AUTH PLAIN\r\n*\r\n")[0] == (
        b"+ \r\n-ERR Authentication aborted by client.\r\n")
    assert talk(conn, b"AUTH PLAIN !!!\r\n")[0] == b"-ERR [AUTH] Invalid base64 in response\r\n"
    assert talk(conn, b"AUTH CRAM-MD5\r\n")[0] == (
        b"-ERR Unsupported authentication mechanism.\r\n")
    bad = b64(b"\0alice\0wrong")
    assert talk(conn, b"AUTH PLAIN " + bad + b"\r\n")[0] == (
        b"-ERR [AUTH] Authentication failed.\r\n")
    assert conn.state is AUTH and conn.auth_failures == 1


def test_auth_alone_lists_mechanisms_and_capa_names_sasl() -> None:
    conn, _ = make()
    assert talk(conn, b"AUTH\r\n")[0] == b"+OK\r\nPLAIN\r\n.\r\n"
    assert conn.state is AUTH
    assert b"\r\nSASL PLAIN\r\n" in talk(conn, b"CAPA\r\n")[0]  # RFC 5034 §6


def test_auth_refused_before_tls_like_user_pass() -> None:
    conn, _ = make(allow_plaintext_auth=False)
    out, _ = talk(conn, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
    assert out == f"-ERR {PLAINTEXT_DISALLOWED}\r\n".encode() and conn.state is AUTH
    assert b"SASL" not in talk(conn, b"CAPA\r\n")[0]


def test_three_failed_auths_close() -> None:
    conn, _ = make()
    bad = b"AUTH PLAIN " + b64(b"\0alice\0nope") + b"\r\n"
    out, _ = talk(conn, bad * 3)
    assert out.endswith(b"-ERR [AUTH] Authentication failed. Too many failures, bye.\r\n")
    assert conn.closed


def test_auth_plain_after_stls(server_context: ssl.SSLContext, client_tls: TLSLayer) -> None:
    conn, _ = make(allow_plaintext_auth=False, tls_context=server_context)
    talk(conn, b"STLS\r\n")
    handshake(conn, client_tls)
    capa, _ = tls_talk(conn, client_tls, b"CAPA\r\n")
    assert b"\r\nSASL PLAIN\r\n" in capa
    out, _ = tls_talk(conn, client_tls, b"AUTH PLAIN\r\n" + PLAIN_OK + b"\r\n")
    assert out == b"+ \r\n+OK Logged in.\r\n" and conn.state is TRANS


def test_pop3s_greets_inside_tls(server_context: ssl.SSLContext, client_tls: TLSLayer) -> None:
    mailbox = MemoryMailbox([MSG1])
    conn = POP3ServerConnection(lambda u, p: mailbox if p == PASSWORD else None,
                                POP3Config(tls_context=server_context, implicit_tls=True,
                                           greeting="Dovecot ready."))
    assert conn.state is POP3State.TLS_HANDSHAKE
    assert conn.next_event() is NEED_DATA and conn.data_to_send() == b""  # nothing in clear
    events, plaintext = handshake(conn, client_tls)
    assert [type(e) for e in events] == [TLSStarted, ConnectionOpened]
    assert plaintext == b"+OK Dovecot ready.\r\n" and conn.state is AUTH and conn.secure
    capa, _ = tls_talk(conn, client_tls, b"CAPA\r\n")
    assert b"STLS" not in capa and b"\r\nUSER\r\n" in capa  # RFC 8314: already secure
    out, _ = tls_talk(conn, client_tls, b"AUTH PLAIN " + PLAIN_OK + b"\r\nRETR 1\r\n")
    assert out.startswith(b"+OK Logged in.\r\n+OK ") and MSG1 in out


def test_pop3s_needs_a_tls_context() -> None:
    with pytest.raises(LocalProtocolError):
        POP3ServerConnection(lambda u, p: None, POP3Config(implicit_tls=True))
