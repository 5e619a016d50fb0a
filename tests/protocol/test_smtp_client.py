"""Client core: validation, pipelining, reply parsing, message hygiene, and the seed dialogue
between the two cores."""

from __future__ import annotations

import pytest

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.errors import LocalProtocolError, RemoteProtocolError
from simsmtp.protocol.events import (
    NEED_DATA,
    Bdat,
    ConnectionClosed,
    ConnectionOpened,
    Data,
    Ehlo,
    Etrn,
    Helo,
    Help,
    MailFrom,
    Message,
    Noop,
    Quit,
    RawLine,
    RcptTo,
    ReplyReceived,
    Rset,
    StartTLS,
    Vrfy,
)
from simsmtp.protocol.session import ClientState as C
from simsmtp.protocol.session import ServerState as S
from simsmtp.protocol.session import allowed_verbs, transitions

from .conftest import Server, connect, drain, pump, ready_for_content

EHLO_REPLY = (b"250-mail.anotherdomain.org\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
              b"250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n")


def greeted(ehlo_reply: bytes = EHLO_REPLY) -> ClientConnection:
    """A client that has had its greeting and EHLO reply (fed by hand)."""
    client = ClientConnection(ClientConfig(hostname="client.example.com"))
    client.receive_data(b"220 mail.anotherdomain.org ESMTP Postfix\r\n")
    assert isinstance(client.next_event(), ConnectionOpened)
    client.send(Ehlo())
    assert client.data_to_send() == b"EHLO client.example.com\r\n"
    client.receive_data(ehlo_reply)
    event = client.next_event()
    assert isinstance(event, ReplyReceived) and event.command == Ehlo("client.example.com")
    return client


# --- the seed dialogue ---------------------------------------------------------------------

def test_seed_dialogue_between_the_two_cores() -> None:
    server = Server()
    client = ClientConnection(ClientConfig(hostname="mail.example.com"))
    transcript: list[bytes] = []

    def step() -> list[object]:
        out = client.data_to_send()
        transcript.append(b"C: " + out)
        server.conn.receive_data(out)
        drain(server.conn)
        reply = server.conn.data_to_send()
        transcript.append(b"S: " + reply)
        client.receive_data(reply)
        return drain(client)

    client.receive_data(server.greeting)
    assert drain(client)[0].reply.code == 220
    client.send(Ehlo())
    step()
    client.send(MailFrom("alice@example.com"))
    client.send(RcptTo("bob@anotherdomain.org"))
    client.send(Data())
    events = step()
    assert [e.reply.code for e in events] == [250, 250, 354]
    assert [e.state_after for e in events] == [C.MAIL, C.RCPT, C.MESSAGE]
    client.send(Message(b"From: alice@example.com\nTo: bob@anotherdomain.org\nSubject: Hello"
                        b"\n\nHi Bob!\n"))
    client.send(Quit())
    events = step()
    assert [e.reply.code for e in events] == [250, 221]
    assert client.closed and server.conn.closed
    assert transcript == [
        b"C: EHLO mail.example.com\r\n",
        b"S: 250-mail.anotherdomain.org\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-VRFY\r\n"
        b"250-ETRN\r\n250-ENHANCEDSTATUSCODES\r\n250-8BITMIME\r\n250-DSN\r\n250 CHUNKING\r\n",
        b"C: MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n",
        b"S: 250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n",
        b"C: From: alice@example.com\r\nTo: bob@anotherdomain.org\r\nSubject: Hello\r\n\r\n"
        b"Hi Bob!\r\n.\r\nQUIT\r\n",
        b"S: 250 2.0.0 Ok: queued as " + server.box.messages[0].queue_id.encode()
        + b"\r\n221 2.0.0 Bye\r\n",
    ]
    assert server.box.messages[0].content.endswith(b"Hi Bob!\r\n")


def test_extensions_are_parsed() -> None:
    client = greeted()
    assert client.extensions == {"PIPELINING": "", "SIZE": "1000", "ENHANCEDSTATUSCODES": "",
                                 "8BITMIME": "", "DSN": "", "CHUNKING": ""}
    assert client.state is C.GREETED


# --- state checks --------------------------------------------------------------------------

def test_commands_are_checked_against_the_table() -> None:
    client = ClientConnection()
    with pytest.raises(LocalProtocolError, match="not allowed in state CONNECTING"):
        client.send(Ehlo())
    client.receive_data(b"220 hi\r\n")
    client.next_event()
    with pytest.raises(LocalProtocolError) as info:
        client.send(RcptTo("b@y.org"))
    assert str(info.value).startswith("RCPT not allowed in state CONNECTED; allowed: EHLO, "
                                      "HELO, NOOP, RSET, VRFY, HELP, STARTTLS, QUIT")
    with pytest.raises(LocalProtocolError, match=r"<end-of-data> not allowed in state CONNECTED"):
        client.send(Message(b"x"))
    assert client.data_to_send() == b""


def test_without_pipelining_one_command_at_a_time() -> None:
    client = greeted(b"250-mx\r\n250 SIZE 100\r\n")
    client.send(MailFrom("a@x.org"))
    with pytest.raises(LocalProtocolError, match="PIPELINING"):
        client.send(RcptTo("b@y.org"))
    client.receive_data(b"250 ok\r\n")
    client.next_event()
    client.send(RcptTo("b@y.org"))
    assert client.data_to_send() == b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\n"


def test_pipelining_and_group_ends() -> None:
    client = greeted()
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(RcptTo("c@y.org"))
    client.send(Data())
    assert client.state is C.DATA and client.confirmed_state is C.GREETED
    assert len(client.pending) == 4
    with pytest.raises(LocalProtocolError, match="last command of a pipelined group"):
        client.send(Rset())
    client.receive_data(b"250 a\r\n250 b\r\n550 no\r\n354 go\r\n")
    events = drain(client)
    assert [(e.command.verb, e.reply.code, e.state_before, e.state_after) for e in events] == [
        ("MAIL", 250, C.GREETED, C.MAIL), ("RCPT", 250, C.MAIL, C.RCPT),
        ("RCPT", 550, C.RCPT, C.RCPT), ("DATA", 354, C.RCPT, C.MESSAGE)]
    assert client.state is C.MESSAGE
    client.send(Message(b"hi"))
    client.send(MailFrom("a@x.org"))  # content may lead a new group (RFC 2920 §3.1)


def test_failed_mail_rolls_the_pipelined_group_back() -> None:
    client = greeted()
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Data())
    client.receive_data(b"550 5.7.1 no\r\n503 5.5.1 need MAIL\r\n503 5.5.1 need RCPT\r\n")
    events = drain(client)
    assert [e.state_after for e in events] == [C.GREETED, C.GREETED, C.GREETED]
    assert client.state is C.GREETED and client.pending == ()
    client.send(MailFrom("a@x.org"))


def test_transitions_for_a_state_diagram() -> None:
    rows = transitions("client")
    assert (C.RCPT, "DATA", C.DATA, C.RCPT) in rows
    assert (C.RCPT, "DATA (3xx)", C.MESSAGE, C.RCPT) in rows
    server_rows = transitions("server")
    assert (S.RCPT, "DATA", S.DATA, S.RCPT) in server_rows
    assert (S.DATA, "<end-of-data>", S.GREETED, S.GREETED) in server_rows
    assert (S.GREETED, "AUTH (3xx)", S.AUTH, S.GREETED) in server_rows
    assert {r[0] for r in server_rows} == set(S) - {S.CLOSED}
    assert "QUIT" in allowed_verbs("server", S.BDAT)
    with pytest.raises(ValueError):
        transitions("relay")


# --- argument hygiene ----------------------------------------------------------------------

@pytest.mark.parametrize("command", [
    MailFrom("a@x>\r\nRCPT TO:<evil@y"),
    MailFrom("a@x.org\r\n"),
    MailFrom("a\x00@x.org"),
    MailFrom("<a@x.org>"),
    MailFrom("a@x.org", {"SIZE": "1\r\nRSET"}),
    MailFrom("a@x.org", {"BAD KEY": "1"}),
    RcptTo("b@y.org>\r\nDATA"),
    RcptTo(""),
    Ehlo("host\r\nMAIL FROM:<x@y>"),
    Ehlo("two words"),
    Vrfy("a\nb"),
    Etrn(""),
    Help("x\r\n"),
    Noop("\x00"),
], ids=repr)
def test_injection_attempts_are_refused_and_nothing_is_written(command: object) -> None:
    client = greeted()
    with pytest.raises(LocalProtocolError):
        client.send(command)  # type: ignore[arg-type]
    assert client.data_to_send() == b""
    assert client.pending == ()


def test_parameters_need_their_extension() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError, match="DSN"):
        client.send(MailFrom("a@x.org", {"RET": "HDRS"}))
    with pytest.raises(LocalProtocolError, match="SMTPUTF8"):
        client.send(MailFrom("jé@x.org", {"SMTPUTF8": None}))
    with pytest.raises(LocalProtocolError):
        client.send(MailFrom("jé@x.org"))  # non-ASCII needs SMTPUTF8
    client2 = greeted()
    client2.send(MailFrom("", {"SIZE": "100", "RET": "HDRS", "ENVID": "QQ+2B1"}))
    client2.send(RcptTo("Postmaster", {"NOTIFY": "SUCCESS,FAILURE",
                                       "ORCPT": "rfc822;b+40y.org"}))
    assert client2.data_to_send() == (
        b"MAIL FROM:<> SIZE=100 RET=HDRS ENVID=QQ+2B1\r\n"
        b"RCPT TO:<Postmaster> NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;b+40y.org\r\n")


def test_other_simple_commands() -> None:
    client = greeted()
    client.send(Vrfy("alice"))
    client.receive_data(b"252 2.0.0 alice\r\n")
    drain(client)
    client.send(Etrn("@example.org"))
    client.receive_data(b"250 Queuing started\r\n")
    drain(client)
    client.send(Help())
    client.receive_data(b"214 ok\r\n")
    drain(client)
    client.send(Noop("x"))
    assert client.data_to_send() == b"VRFY alice\r\nETRN @example.org\r\nHELP\r\nNOOP x\r\n"


# --- message content -----------------------------------------------------------------------

def at_message(client: ClientConnection) -> None:
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Data())
    client.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    drain(client)
    client.data_to_send()


def test_message_line_endings_are_normalised_and_dots_stuffed() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    at_message(client)
    client.send(Message(b"x\n.\r\nMAIL FROM:<e@v>\r\n\r.\r\nlast"))
    wire = client.data_to_send()
    assert wire == b"x\r\n..\r\nMAIL FROM:<e@v>\r\n\r\n..\r\nlast\r\n.\r\n"
    assert b"\r" not in wire.replace(b"\r\n", b"") and b"\n" not in wire.replace(b"\r\n", b"")


def test_hostile_body_reaches_the_server_as_one_message() -> None:
    server = Server()
    client = ready_for_content(server)
    client.send(Message(b"x\n.\r\nMAIL FROM:<e@v>\r\nRCPT TO:<evil@y>\r\nDATA\r\n\r.\r\nend\n"))
    pump(client, server.conn)
    assert len(server.box.messages) == 1
    assert server.box.messages[0].content == (
        b"x\r\n.\r\nMAIL FROM:<e@v>\r\nRCPT TO:<evil@y>\r\nDATA\r\n\r\n.\r\nend\r\n")


def test_dot_stuffing_round_trip() -> None:
    server = Server()
    client = ready_for_content(server)
    client.send(Message(b".\r\n..x\r\n.hidden\r\n"))
    assert client.data_to_send() == b"..\r\n...x\r\n..hidden\r\n.\r\n"
    server.conn.receive_data(b"..\r\n...x\r\n..hidden\r\n.\r\n")
    drain(server.conn)
    assert server.box.messages[0].content == b".\r\n..x\r\n.hidden\r\n"


def test_message_larger_than_size_is_never_sent() -> None:
    client = greeted()  # SIZE 1000
    with pytest.raises(LocalProtocolError, match="SIZE"):
        client.send(MailFrom("a@x.org", {"SIZE": "5000"}))
    at_message(client)
    with pytest.raises(LocalProtocolError, match="exceeds the server's SIZE"):
        client.send(Message(b"y" * 5000))
    assert client.data_to_send() == b""
    client.send(Message(b"y" * 998))  # exactly 1000 octets with its CRLF
    assert client.data_to_send().endswith(b"\r\n.\r\n")


def test_bdat_from_the_client() -> None:
    client = greeted()
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Bdat(b"abc\r\n"))
    client.send(Bdat(b"def\r\n", last=True))
    assert client.data_to_send().endswith(b"BDAT 5\r\nabc\r\nBDAT 5 LAST\r\ndef\r\n")
    with pytest.raises(LocalProtocolError, match="bare CR or LF"):
        greeted_at_rcpt().send(Bdat(b"a\nb"))
    no_chunking = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    no_chunking.send(MailFrom("a@x.org"))
    no_chunking.send(RcptTo("b@y.org"))
    with pytest.raises(LocalProtocolError, match="CHUNKING"):
        no_chunking.send(Bdat(b"x", last=True))


def greeted_at_rcpt() -> ClientConnection:
    client = greeted()
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    return client


def test_bdat_between_the_two_cores() -> None:
    server = Server()
    client = ClientConnection()
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Bdat(b"Subject: c\r\n"))
    client.send(Bdat(b"\r\n.\r\nbody\r\n", last=True))
    client_events, _ = pump(client, server.conn)
    assert [e.reply.code for e in client_events] == [250, 250, 250, 250]
    assert client.state is C.GREETED
    assert server.box.messages[0].content == b"Subject: c\r\n\r\n.\r\nbody\r\n"


def test_452_after_100_recipients_then_data_for_the_accepted() -> None:
    server = Server(max_recipients=100)
    client = ClientConnection()
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    client.send(MailFrom("a@x.org"))
    for i in range(101):
        client.send(RcptTo(f"u{i}@y.org"))
    client_events, _ = pump(client, server.conn)
    assert [e.reply.code for e in client_events][-2:] == [250, 452]
    assert client.state is C.RCPT
    client.send(Data())
    pump(client, server.conn)
    client.send(Message(b"hi"))
    pump(client, server.conn)
    assert len(server.box.messages[0].rcpt_tos) == 100


# --- replies -------------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"hello\r\n", b"25 short\r\n", b"250x\r\n",
                                     b"250-a\r\n354 b\r\n", b"2" * 600,
                                     b"250 a\nb\r\n", b"600 no\r\n"], ids=repr)
def test_malformed_replies_close_with_a_remote_error(garbage: bytes) -> None:
    client = greeted()
    client.send(Noop())
    client.receive_data(garbage)
    event = client.next_event()
    assert isinstance(event, ConnectionClosed) and "protocol error" in event.reason
    assert isinstance(client.error, RemoteProtocolError) and client.closed
    with pytest.raises(LocalProtocolError):
        client.send(Noop())


def test_reply_line_of_512_octets_is_fine() -> None:
    client = greeted()
    client.send(Noop())
    client.receive_data(b"250 " + b"x" * 506 + b"\r\n")
    assert client.next_event().reply.code == 250


def test_unsolicited_replies() -> None:
    client = greeted()
    client.receive_data(b"421 4.4.2 mx Error: timeout exceeded\r\n")
    event = client.next_event()
    assert isinstance(event, ReplyReceived) and event.command is None
    assert event.state_after is C.CLOSED and client.closed
    client2 = greeted()
    client2.receive_data(b"250 fake\r\n")
    event = client2.next_event()
    assert isinstance(event, ConnectionClosed) and "unsolicited" in event.reason


def test_greetings() -> None:
    refused = ClientConnection()
    refused.receive_data(b"554 5.3.2 no service\r\n")
    event = refused.next_event()
    assert isinstance(event, ConnectionOpened) and event.state_after is C.CONNECTED
    refused.send(Quit())
    busy = ClientConnection()
    busy.receive_data(b"421 4.7.0 busy\r\n")
    assert busy.next_event().state_after is C.CLOSED and busy.closed


def test_multiline_greeting_split_across_reads() -> None:
    client = ClientConnection()
    for piece in (b"220-mx ESMTP\r", b"\n220-more\r\n22", b"0 last\r\n"):
        client.receive_data(piece)
        event = client.next_event()
    assert event.reply.lines == ("mx ESMTP", "more", "last")


def test_eof_reports_unanswered_commands() -> None:
    client = greeted()
    client.send(Noop())
    client.receive_data(b"")
    event = client.next_event()
    assert isinstance(event, ConnectionClosed) and "1 command(s) unanswered" in event.reason
    assert client.next_event() is NEED_DATA


def test_helo_fallback_clears_extensions() -> None:
    client = greeted()
    client.send(Helo("c"))
    client.receive_data(b"250 mx\r\n")
    client.next_event()
    assert client.extensions == {}
    with pytest.raises(LocalProtocolError):
        client.send(StartTLS())  # no tls_context configured


def test_quit_closes_the_client() -> None:
    client = greeted()
    client.send(Quit())
    with pytest.raises(LocalProtocolError, match="QUIT must be the last command"):
        client.send(Noop())
    client.receive_data(b"221 2.0.0 Bye\r\n")
    assert client.next_event().state_after is C.CLOSED
    assert client.closed


# --- raw lines (the learner's console) -----------------------------------------------------

def test_raw_lines_are_sent_verbatim_and_tracked() -> None:
    server = Server()
    client = ClientConnection()
    connect(client, server)
    with pytest.raises(LocalProtocolError, match="CR or LF"):
        client.send(RawLine(b"NOOP\r\nRSET"))
    client.send(RawLine(b"rcpt to:<b@y.org>"))  # illegal here: the learner sees the 503
    events, _ = pump(client, server.conn)
    assert events[-1].reply.code == 503 and client.state is C.CONNECTED
    for line in (b"ehlo me", b"mail from:<a@x.org>", b"rcpt to:<b@y.org>", b"data"):
        client.send(RawLine(line))
        events, _ = pump(client, server.conn)
    assert client.state is C.MESSAGE and events[-1].reply.code == 354
    client.send(RawLine(b"Subject: typed"))
    client.send(RawLine(b""))
    client.send(RawLine(b"by hand"))
    assert client.pending == ()
    client.send(RawLine(b"."))
    events, _ = pump(client, server.conn)
    assert events[-1].reply.code == 250 and client.state is C.GREETED
    assert server.box.messages[0].content == b"Subject: typed\r\n\r\nby hand\r\n"
    client.send(RawLine(b"QUIT"))
    pump(client, server.conn)
    assert client.closed and server.conn.closed


def test_raw_overlong_line_reaches_the_server() -> None:
    server = Server()
    client = ClientConnection()
    connect(client, server)
    client.send(RawLine(b"NOOP " + b"x" * 600))
    events, _ = pump(client, server.conn)
    assert events[-1].reply.code == 500
