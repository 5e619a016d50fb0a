"""What the servers' protocol events say in the trace, and which replies the anvil counts
as a failed login: SMTP, POP3 and IMAP told apart by their types."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from simsmtp.net.servertrace import login_failed, record_event, reply_of
from simsmtp.protocol import events as smtp
from simsmtp.protocol import imap, pop3
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.session import ServerState
from simsmtp.trace import Trace


def info(service: str = "smtp") -> SimpleNamespace:
    return SimpleNamespace(id=7, service=service, peer=("127.0.0.9", 40000),
                           host_name="mx.example.org")


@pytest.mark.parametrize(("reply", "failed"), [
    (Reply(535, "5.7.8 Error: authentication failed: authentication failure"), True),
    (Reply(235, "2.7.0 Authentication successful"), False),
    (Reply(550, "5.1.1 <x@example.org>: Recipient address rejected"), False),
    (pop3.POP3Reply(False, "[AUTH] Authentication failed."), True),
    (pop3.POP3Reply(False, "[IN-USE] Mailbox is locked by another POP3 session."), False),
    (pop3.POP3Reply(True, "Logged in."), False),
    (imap.IMAPReply("a1", "NO", "[AUTHENTICATIONFAILED] Authentication failed."), True),
    (imap.IMAPReply("a1", "OK", "Logged in"), False),
    (None, False),
])
def test_login_failed_knows_each_protocols_refusal(reply: object, failed: bool) -> None:
    assert login_failed(reply) is failed  # type: ignore[arg-type]


def test_reply_of_reads_the_reply_of_events_that_carry_one() -> None:
    reply = Reply(250, "2.1.0 Ok")
    event = smtp.CommandReceived(command=None, line=b"NOOP", reply=reply)
    assert reply_of(event) is reply
    assert reply_of(smtp.TLSStarted(version="TLSv1.3", cipher="x")) is None
    assert reply_of(smtp.NEED_DATA) is None
    assert reply_of("not an event") is None


def test_an_smtp_command_becomes_command_and_reply_with_states() -> None:
    trace = Trace()
    event = smtp.CommandReceived(command=None, line=b"MAIL FROM:<a@example.com>",
                                 reply=Reply(250, "2.1.0 Ok"),
                                 state_before=ServerState.GREETED,
                                 state_after=ServerState.MAIL)
    record_event(trace, info(), event, set())
    command, reply = trace.events()
    assert (command.kind, reply.kind) == ("smtp.command", "smtp.reply")
    assert command.host == "mx.example.org"
    assert command.data["line"] == "MAIL FROM:<a@example.com>"
    assert command.data["state_before"] == "GREETED"
    assert command.data["state_after"] == "MAIL"
    assert reply.data["code"] == 250 and reply.data["peer"] == "127.0.0.9:40000"


def test_a_pop3_command_keeps_its_body_lines() -> None:
    trace = Trace()
    event = pop3.CommandReceived(command="LIST", line=b"LIST",
                                 reply=pop3.POP3Reply(True, "2 messages"),
                                 body_lines=("1 120", "2 200"), body_line_count=2)
    record_event(trace, info("pop3"), event, set())
    command, reply = trace.events()
    assert (command.kind, reply.kind) == ("pop3.command", "pop3.reply")
    assert reply.data["lines"] == ["1 120", "2 200"] and reply.data["line_count"] == 2
    assert reply.data["state_before"] is None  # no state given: None, not a crash


def test_an_imap_update_and_the_tls_connections_followed() -> None:
    trace = Trace()
    conns: set[int] = set()
    record_event(trace, info("imaps"), smtp.TLSStarted(version="TLSv1.3", cipher="c"), conns)
    assert conns == {7}
    update = imap.UpdateSent(reply=imap.IMAPReply("*", "", "2 EXISTS"),
                             lines=("* 2 EXISTS",), reason="idle")
    record_event(trace, info("imaps"), update, conns)
    record_event(trace, info("imaps"), smtp.ConnectionClosed(reason="client"), conns)
    assert [e.kind for e in trace.events()] == ["tls.handshake", "imap.update", "imap.closed"]
    assert trace.events("imap.update")[0].data["tls"] is True
    assert conns == set()


def test_a_switched_off_trace_still_follows_tls_and_records_nothing() -> None:
    trace = Trace()
    trace.enabled = False
    conns: set[int] = set()
    record_event(trace, info(), smtp.TLSStarted(version="TLSv1.3", cipher="c"), conns)
    assert conns == {7}
    record_event(trace, info(), smtp.ConnectionClosed(reason="client"), conns)
    assert conns == set() and trace.events() == []


def test_what_is_not_a_connection_event_records_nothing() -> None:
    trace = Trace()
    record_event(trace, info(), smtp.NEED_DATA, set())
    record_event(trace, info(), object(), set())
    assert trace.events() == []
