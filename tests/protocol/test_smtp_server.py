"""Server core: greeting, EHLO, every command, sequence, syntax, limits, error counting."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from simsmtp.protocol.errors import LocalProtocolError, RemoteProtocolError
from simsmtp.protocol.events import (
    NEED_DATA,
    CommandReceived,
    ConnectionClosed,
    ConnectionOpened,
    Etrn,
    Helo,
    MailFrom,
    MessageReceived,
    Noop,
    RcptTo,
    ReplySent,
    Vrfy,
)
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.persona import Persona
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.server import ServerConfig, ServerConnection, queue_id_generator
from simsmtp.protocol.session import Envelope, Session
from simsmtp.protocol.session import ServerState as S

from .conftest import Box, Server, codes

EHLO_LINES = [b"250-mail.anotherdomain.org", b"250-PIPELINING", b"250-SIZE 52428800",
              b"250-VRFY", b"250-ETRN", b"250-ENHANCEDSTATUSCODES", b"250-8BITMIME",
              b"250-DSN", b"250 CHUNKING"]


def in_transaction(server: Server) -> None:
    server.ehlo()
    assert server.say(b"MAIL FROM:<alice@example.com>\r\n") == b"250 2.1.0 Ok\r\n"
    assert server.say(b"RCPT TO:<bob@anotherdomain.org>\r\n") == b"250 2.1.5 Ok\r\n"


# --- greeting and EHLO ---------------------------------------------------------------------

def test_greeting_is_ready_at_once_and_is_the_first_event() -> None:
    server = Server()
    assert server.greeting == b"220 mail.anotherdomain.org ESMTP Postfix\r\n"
    assert isinstance(server.events[0], ConnectionOpened)
    assert server.state is S.CONNECTED


def test_ehlo_reply_line_for_line() -> None:
    server = Server()
    out = server.ehlo()
    assert out.split(b"\r\n")[:-1] == EHLO_LINES
    assert server.state is S.GREETED
    assert server.conn.session.helo_name == "client.example.com"
    assert server.conn.session.esmtp


def test_ehlo_extension_order_with_everything_on(server_context: object) -> None:
    server = Server(tls_context=server_context, auth_enabled=True, auth_plaintext=True,
                    smtputf8=True, size_limit=0)
    lines = server.ehlo().split(b"\r\n")[1:-1]
    assert [line[4:] for line in lines] == [
        b"PIPELINING", b"SIZE", b"VRFY", b"ETRN", b"STARTTLS", b"AUTH PLAIN LOGIN",
        b"ENHANCEDSTATUSCODES", b"8BITMIME", b"DSN", b"SMTPUTF8", b"CHUNKING"]


def test_auth_not_advertised_over_plaintext_unless_allowed() -> None:
    assert b"AUTH" not in Server(auth_enabled=True).ehlo()
    assert b"250-AUTH PLAIN LOGIN" in Server(auth_enabled=True, auth_plaintext=True).ehlo()
    assert b"AUTH" not in Server(auth_plaintext=True).ehlo()


def test_helo_reply_and_no_extensions() -> None:
    server = Server()
    events, out = server.feed(b"HELO client.example.com\r\n")
    assert out == b"250 mail.anotherdomain.org\r\n"
    assert events[0].command == Helo("client.example.com")
    assert not server.conn.session.esmtp


@pytest.mark.parametrize("line", [b"EHLO\r\n", b"HELO\r\n", b"EHLO   \r\n"])
def test_hello_without_argument_is_501(line: bytes) -> None:
    server = Server()
    out = server.say(line)
    verb = line[:4]
    assert out == b"501 Syntax: " + verb + b" hostname\r\n"  # Postfix 3.7.11, word for word
    assert server.state is S.CONNECTED


def test_lower_case_commands_are_accepted() -> None:
    server = Server()
    assert server.say(b"ehlo x\r\n").startswith(b"250-")
    assert server.say(b"mail from:<a@example.com>\r\n") == b"250 2.1.0 Ok\r\n"
    assert server.say(b"rcpt to:<b@example.com>\r\n") == b"250 2.1.5 Ok\r\n"
    assert server.say(b"rset\r\n") == b"250 2.0.0 Ok\r\n"


def test_handler_can_refuse_the_connection_with_554() -> None:
    class Refuse(Handler):
        def handle_CONNECT(self, session: Session) -> Reply | None:
            return Reply(554, "5.7.1 No SMTP service here")

    server = Server(Refuse())
    assert server.greeting == b"554 5.7.1 No SMTP service here\r\n"
    assert server.say(b"EHLO x\r\n").startswith(b"503 ")  # RFC 5321 §3.1
    assert server.say(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
    assert server.conn.closed


def test_handler_421_greeting_closes() -> None:
    class Busy(Handler):
        def handle_CONNECT(self, session: Session) -> Reply | None:
            return Reply(421, "4.7.0 busy")

    server = Server(Busy())
    assert server.greeting == b"421 4.7.0 busy\r\n"
    assert server.conn.closed
    assert server.say(b"EHLO x\r\n") == b""


# --- the transaction -----------------------------------------------------------------------

def test_full_transaction_events_and_states() -> None:
    server = Server()
    in_transaction(server)
    events, out = server.feed(b"DATA\r\n")
    assert out == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert server.state is S.DATA
    events, out = server.feed(b"Subject: t\r\n\r\nhello\r\n.\r\n")
    assert len(events) == 1 and isinstance(events[0], MessageReceived)
    msg = events[0]
    assert msg.accepted and msg.state_before is S.DATA and msg.state_after is S.GREETED
    assert out == f"250 2.0.0 Ok: queued as {msg.envelope.queue_id}\r\n".encode()
    assert msg.envelope.mail_from == "alice@example.com"
    assert msg.envelope.rcpt_tos == ["bob@anotherdomain.org"]
    assert msg.envelope.content == b"Subject: t\r\n\r\nhello\r\n"
    assert server.box.messages == [msg.envelope]
    assert server.say(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
    assert server.conn.closed


def test_states_chain_through_every_event() -> None:
    server = Server()
    in_transaction(server)
    server.say(b"DATA\r\nx\r\n.\r\nNOOP\r\nQUIT\r\n")
    for earlier, later in zip(server.events, server.events[1:], strict=False):
        assert earlier.state_after is later.state_before


def test_queue_ids_are_postfix_like_and_reproducible() -> None:
    ids = queue_id_generator(7)
    first = [ids() for _ in range(3)]
    again = queue_id_generator(7)
    assert first == [again() for _ in range(3)]
    assert all(len(i) == 10 and i == i.upper() and int(i, 16) >= 0 for i in first)
    server = Server(queue_ids=iter(["ABCDEF0123"]).__next__)
    in_transaction(server)
    assert server.say(b"DATA\r\nx\r\n.\r\n").endswith(b"250 2.0.0 Ok: queued as ABCDEF0123\r\n")


@pytest.mark.parametrize("line, reply", [
    (b"MAIL FROM:<a@x.org>\r\n", b"503 5.5.1 Error: send HELO/EHLO first\r\n"),
    (b"RCPT TO:<a@x.org>\r\n", b"503 5.5.1 Error: send HELO/EHLO first\r\n"),
    (b"DATA\r\n", b"503 5.5.1 Error: send HELO/EHLO first\r\n"),
    (b"ETRN example.org\r\n", b"503 5.5.1 Error: send HELO/EHLO first\r\n"),
])
def test_commands_before_helo_get_503(line: bytes, reply: bytes) -> None:
    server = Server()
    events, out = server.feed(line)
    assert out == reply
    assert events[0].command is None and server.state is S.CONNECTED


def test_sequence_errors() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"RCPT TO:<b@y.org>\r\n") == b"503 5.5.1 Error: need MAIL command\r\n"
    assert server.say(b"DATA\r\n") == b"503 5.5.1 Error: need RCPT command\r\n"
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"DATA\r\n") == b"503 5.5.1 Error: need RCPT command\r\n"
    assert server.say(b"MAIL FROM:<a@x.org>\r\n") == b"503 5.5.1 Error: nested MAIL command\r\n"
    assert server.say(b"ETRN example.org\r\n") == (
        b"503 5.5.1 Error: MAIL transaction in progress\r\n")


def test_data_after_all_recipients_were_refused_is_554() -> None:
    server = Server(Box(unknown=("nobody@anotherdomain.org",)))
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"RCPT TO:<nobody@anotherdomain.org>\r\n").startswith(b"550 5.1.1")
    assert server.state is S.MAIL
    assert server.say(b"DATA\r\n") == b"554 5.5.1 Error: no valid recipients\r\n"


@pytest.mark.parametrize("reset", [b"RSET\r\n", b"EHLO again.example.com\r\n",
                                   b"HELO again.example.com\r\n"])
def test_rset_and_ehlo_clear_the_transaction(reset: bytes) -> None:
    server = Server()
    in_transaction(server)
    assert server.say(reset).startswith(b"250")
    assert server.state is S.GREETED
    assert server.conn.envelope.mail_from is None and server.conn.envelope.rcpt_tos == []
    assert server.say(b"DATA\r\n") == b"503 5.5.1 Error: need RCPT command\r\n"
    assert server.box.messages == []


def test_rset_before_helo_and_noop_everywhere() -> None:
    server = Server()
    assert server.say(b"RSET\r\n") == b"250 2.0.0 Ok\r\n"
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"
    events, out = server.feed(b"NOOP hello there\r\n")
    assert out == b"250 2.0.0 Ok\r\n" and events[0].command == Noop("hello there")
    assert server.state is S.CONNECTED


@pytest.mark.parametrize("line, usage", [(b"DATA FOOBAR\r\n", b"DATA"),
                                         (b"QUIT x\r\n", b"QUIT"),
                                         (b"RSET now\r\n", b"RSET")])
def test_arguments_where_none_belong_are_501(line: bytes, usage: bytes) -> None:
    server = Server()
    in_transaction(server)
    assert server.say(line) == b"501 5.5.4 Syntax: " + usage + b"\r\n"
    assert not server.conn.closed and server.state is S.RCPT


def test_starttls_with_an_argument_is_501_and_tls_does_not_start() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"STARTTLS now\r\n") == b"501 5.5.4 Syntax: STARTTLS\r\n"
    assert server.state is S.GREETED and not server.conn.tls_active


def test_unknown_and_empty_commands_never_close_the_session() -> None:
    server = Server()
    events, out = server.feed(b"FOOBAR\r\n")
    # Postfix 3.7.11 (measured): 500, as RFC 5321 §4.2.4 says for an unrecognized command
    assert out == b"500 5.5.2 Error: command not recognized\r\n"
    assert events[0].command is None and events[0].line == b"FOOBAR"
    assert server.say(b"\r\n") == b"500 5.5.2 Error: bad syntax\r\n"
    assert server.say(b"   \r\n") == b"500 5.5.2 Error: bad syntax\r\n"
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"
    assert not server.conn.closed


def test_expn_and_turn_are_not_recognized() -> None:
    server = Server()
    server.ehlo()
    assert codes(server.say(b"EXPN staff\r\nTURN\r\n")) == [500, 500]


def test_foo_bar_gets_postfix_s_500() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"FOO bar\r\n") == b"500 5.5.2 Error: command not recognized\r\n"
    assert server.state is S.GREETED


def test_quit_closes_and_nothing_after_it_is_executed() -> None:
    server = Server()
    server.ehlo()
    events, out = server.feed(b"QUIT\r\nNOOP\r\nMAIL FROM:<a@b.org>\r\n")
    assert out == b"221 2.0.0 Bye\r\n"
    assert [type(e) for e in events] == [CommandReceived]
    assert server.conn.closed and server.state is S.CLOSED
    assert server.say(b"NOOP\r\n") == b""


def test_help_is_not_recognized_as_by_postfix() -> None:
    server = Server()
    server.ehlo()
    out = server.say(b"HELP\r\n")
    assert out == b"500 5.5.2 Error: command not recognized\r\n"  # Postfix 3.7.11
    assert server.say(b"HELP MAIL\r\n") == b"500 5.5.2 Error: command not recognized\r\n"
    assert server.state is S.GREETED and not server.conn.closed


def test_disable_vrfy_command() -> None:
    server = Server(disable_vrfy_command=True)
    out = server.say(b"EHLO client.example.org\r\n")
    assert b"250-VRFY" not in out and b"250-ETRN" in out
    assert server.say(b"VRFY bob@anotherdomain.org\r\n") == (
        b"502 5.5.1 VRFY command is disabled\r\n")
    assert b"250-VRFY\r\n" in Server().say(b"EHLO client.example.org\r\n")


def test_vrfy_default_and_syntax() -> None:
    server = Server()
    events, out = server.feed(b"VRFY alice\r\n")
    assert out == b"252 2.0.0 alice\r\n" and events[0].command == Vrfy("alice")
    assert server.say(b"VRFY\r\n") == b"501 5.5.4 Syntax: VRFY address\r\n"


def test_etrn_default_and_syntax() -> None:
    server = Server()
    server.ehlo()
    events, out = server.feed(b"ETRN @example.org\r\n")
    assert out == b"250 Queuing started\r\n" and events[0].command == Etrn("@example.org")
    assert server.say(b"ETRN\r\n") == b"501 5.5.4 Syntax: ETRN domain\r\n"
    assert server.say(b"ETRN bad..domain\r\n") == b"501 5.5.4 Syntax: ETRN domain\r\n"


def test_handler_replies_replace_the_defaults() -> None:
    class Strict(Handler):
        def handle_MAIL(self, session, envelope, address, params):  # type: ignore[no-untyped-def]
            return Reply(550, "5.7.1 go away") if address.endswith("evil.test") else None

        def handle_VRFY(self, session, arg):  # type: ignore[no-untyped-def]
            return Reply(550, "5.1.1 no")

        def handle_ETRN(self, session, arg):  # type: ignore[no-untyped-def]
            return Reply(458, f"Unable to queue messages for node {arg}")

        def handle_EHLO(self, session, hostname):  # type: ignore[no-untyped-def]
            return Reply(550, "5.7.1 bad name") if hostname == "bad" else None

    server = Server(Strict())
    assert server.say(b"EHLO bad\r\n") == b"550 5.7.1 bad name\r\n"
    assert server.state is S.CONNECTED
    server.ehlo()
    assert server.say(b"MAIL FROM:<x@evil.test>\r\n") == b"550 5.7.1 go away\r\n"
    assert server.state is S.GREETED
    assert server.say(b"VRFY bob\r\n") == b"550 5.1.1 no\r\n"
    assert server.say(b"ETRN example.org\r\n") == (
        b"458 Unable to queue messages for node example.org\r\n")


def test_handler_exception_becomes_451_never_250() -> None:
    class Broken(Handler):
        def handle_DATA(self, session, envelope):  # type: ignore[no-untyped-def]
            raise OSError("disk full")

    server = Server(Broken())
    in_transaction(server)
    events, out = server.feed(b"DATA\r\nhello\r\n.\r\n")
    assert out.endswith(b"451 4.3.0 Error: internal error\r\n")
    assert not events[-1].accepted and events[-1].envelope.content == b""
    assert isinstance(server.conn.handler_errors[0], OSError)
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_handler_451_at_end_of_data_is_passed_on() -> None:
    class Disk(Handler):
        def handle_DATA(self, session, envelope):  # type: ignore[no-untyped-def]
            return Reply(451, "4.3.0 Error: queue file write error")

    server = Server(Disk())
    in_transaction(server)
    out = server.say(b"DATA\r\nhello\r\n.\r\n")
    assert out.endswith(b"451 4.3.0 Error: queue file write error\r\n")
    assert server.conn.session.messages == 0


# --- addresses and parameters --------------------------------------------------------------

@pytest.mark.parametrize("line, reply", [
    (b"MAIL FROM:\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL FROM: Anne <anne@example.com>\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL TO:<a@x.org>\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL FROM:<a@x.org\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL FROM:<a@x.org>SIZE=1\r\n", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL FROM:<a@x.org> FOO=BAR\r\n", b"555 5.5.4 Unsupported option: FOO=BAR\r\n"),
    (b"MAIL FROM:<a@x.org> SIZE=abc\r\n", b"501 5.5.4 Bad message size syntax\r\n"),
    (b"MAIL FROM:<a@x.org> SIZE\r\n", b"501 5.5.4 Bad message size syntax\r\n"),
    (b"MAIL FROM:<a@x.org> BODY=BINARYMIME\r\n", b"501 5.5.4 Bad BODY parameter syntax\r\n"),
    (b"MAIL FROM:<a@x.org> RET=ALL\r\n", b"501 5.5.4 Bad RET parameter syntax\r\n"),
    (b"MAIL FROM:<a@x.org> ENVID=a+zz\r\n", b"501 5.5.4 Bad ENVID parameter syntax\r\n"),
    (b"MAIL FROM:<a@x.org> SMTPUTF8\r\n", b"555 5.5.4 Unsupported option: SMTPUTF8\r\n"),
    (b"MAIL FROM:<a@x.org> AUTH=<>\r\n", b"555 5.5.4 Unsupported option: AUTH=<>\r\n"),
    (b"MAIL FROM:<a@x.org> SIZE=1 SIZE=2\r\n", b"501 5.5.4 Error: bad parameter syntax\r\n"),
    (b"MAIL FROM:<a@@x.org>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (b"MAIL FROM:<a b@x.org>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (b"MAIL FROM:<a@x..org>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
    (b"MAIL FROM:<Postmaster>\r\n", b"501 5.1.7 Bad sender address syntax\r\n"),
])
def test_mail_syntax_errors(line: bytes, reply: bytes) -> None:
    server = Server()
    server.ehlo()
    _events, out = server.feed(line)
    assert out == reply
    assert server.state is S.GREETED
    assert server.conn.envelope.mail_from is None


def test_mail_params_are_parsed_into_the_envelope() -> None:
    server = Server()
    server.ehlo()
    events, out = server.feed(b"MAIL FROM:<a@x.org> SIZE=1000 BODY=8bitmime RET=HDRS "
                              b"ENVID=QQ+2B1\r\n")
    assert out == b"250 2.1.0 Ok\r\n"
    assert events[0].command == MailFrom("a@x.org", {"SIZE": "1000", "BODY": "8bitmime",
                                                     "RET": "HDRS", "ENVID": "QQ+2B1"})
    env = server.conn.envelope
    assert (env.declared_size, env.body, env.ret, env.envid) == (1000, "8BITMIME", "HDRS",
                                                                  "QQ+1")
    events, out = server.feed(b"RCPT TO:<b@y.org> NOTIFY=SUCCESS,FAILURE "
                              b"ORCPT=rfc822;b+40y.org\r\n")
    assert out == b"250 2.1.5 Ok\r\n"
    assert env.notify(0) == ("SUCCESS", "FAILURE")
    assert env.orcpt(0) == ("rfc822", "b@y.org")
    assert events[0].command == RcptTo("b@y.org", {"NOTIFY": "SUCCESS,FAILURE",
                                                   "ORCPT": "rfc822;b+40y.org"})


def test_null_sender_and_source_route() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"MAIL FROM:<>\r\n") == b"250 2.1.0 Ok\r\n"
    assert server.conn.envelope.mail_from == ""
    # RFC 5321 §3.6.1: the route is ignored, the mail goes to the last element
    assert server.say(b"RCPT TO:<@relay.invalid,@b.example:user@anotherdomain.org>\r\n") == (
        b"250 2.1.5 Ok\r\n")
    assert server.conn.envelope.rcpt_tos == ["user@anotherdomain.org"]


@pytest.mark.parametrize("line", [b"RCPT TO:<b@y.org> NOTIFY=NEVER,SUCCESS\r\n",
                                  b"RCPT TO:<b@y.org> NOTIFY=SOMETIMES\r\n",
                                  b"RCPT TO:<b@y.org> NOTIFY=\r\n",
                                  b"RCPT TO:<b@y.org> ORCPT=b@y.org\r\n"])
def test_bad_dsn_rcpt_parameters(line: bytes) -> None:
    server = Server()
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(line).startswith(b"501 5.5.4 ")
    assert server.conn.envelope.rcpt_tos == []


@pytest.mark.parametrize("line, reply", [
    (b"RCPT TO:\r\n", b"501 5.5.4 Syntax: RCPT TO:<address>\r\n"),
    (b"RCPT TO:<>\r\n", b"501 5.1.3 Bad recipient address syntax\r\n"),
    (b"RCPT TO:<b@y.org> FOO\r\n", b"555 5.5.4 Unsupported option: FOO\r\n"),
    (b"RCPT TO:<relaytest@relay.invalid@[127.0.0.9]>\r\n",
     b"501 5.1.3 Bad recipient address syntax\r\n"),
    (b"RCPT TO:<relay.invalid!relaytest>\r\n", b"501 5.1.3 Bad recipient address syntax\r\n"),
])
def test_rcpt_syntax_errors(line: bytes, reply: bytes) -> None:
    server = Server()
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(line) == reply
    assert server.state is S.MAIL


def test_local_part_domain_and_path_limits() -> None:
    server = Server()
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"RCPT TO:<" + b"a" * 64 + b"@example.com>\r\n") == b"250 2.1.5 Ok\r\n"
    assert server.say(b"RCPT TO:<" + b"a" * 65 + b"@example.com>\r\n") == (
        b"553 5.1.3 Error: local part longer than 64 octets\r\n")
    long_path = b"RCPT TO:<u@" + b"a." * 130 + b"com>\r\n"
    assert server.say(long_path) == b"501 5.1.3 Error: path too long\r\n"
    assert server.conn.envelope.rcpt_tos == ["a" * 64 + "@example.com"]
    server.say(b"RSET\r\n")
    assert server.say(b"MAIL FROM:<" + b"s" * 65 + b"@x.org>\r\n") == (
        b"553 5.1.7 Error: local part longer than 64 octets\r\n")


def test_domain_over_255_octets() -> None:
    from simsmtp.protocol.grammar import GrammarError, parse_path

    domain = ".".join(["a" * 60] * 5)  # 304 octets; the path limit would catch it too
    with pytest.raises(GrammarError) as info:
        parse_path(f"<u@{domain}>")
    assert info.value.kind in ("domain", "path")
    server = Server()
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(f"RCPT TO:<u@{domain}>\r\n".encode())[:3] in (b"501", b"553")


def test_postmaster_is_always_accepted() -> None:
    class Nobody(Handler):
        def handle_RCPT(self, session, envelope, address, params):  # type: ignore[no-untyped-def]
            return Reply(550, "5.1.1 nobody here")

    server = Server(Nobody())
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    assert server.say(b"RCPT TO:<Postmaster>\r\n") == b"250 2.1.5 Ok\r\n"
    assert server.say(b"RCPT TO:<pOsTmAsTeR>\r\n") == b"250 2.1.5 Ok\r\n"
    assert server.say(b"RCPT TO:<bob@anotherdomain.org>\r\n") == b"550 5.1.1 nobody here\r\n"
    # the default handler accepts postmaster@<domain> like any valid recipient
    default = Server()
    default.ehlo()
    default.say(b"MAIL FROM:<a@x.org>\r\n")
    assert default.say(b"RCPT TO:<POSTMASTER@anotherdomain.org>\r\n") == b"250 2.1.5 Ok\r\n"


def test_100_recipients_accepted_and_limit_is_orderly() -> None:
    server = Server(max_recipients=100)
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\n")
    out = server.say(b"".join(b"RCPT TO:<u%d@anotherdomain.org>\r\n" % i for i in range(101)))
    assert codes(out) == [250] * 100 + [452]
    assert out.endswith(b"452 4.5.3 Error: too many recipients\r\n")
    out = server.say(b"DATA\r\nhello\r\n.\r\n")
    assert codes(out) == [354, 250]
    assert len(server.box.messages[0].rcpt_tos) == 100


def test_max_recipients_below_100_is_refused() -> None:
    with pytest.raises(ValueError, match=r"4\.5\.3\.1\.8"):
        ServerConfig(max_recipients=99)
    with pytest.raises(ValueError):
        ServerConfig(hard_error_limit=1)


def test_declared_size() -> None:
    server = Server(size_limit=9999)
    assert b"250-SIZE 9999" in server.ehlo()
    assert server.say(b"MAIL FROM:<a@x.org> SIZE=10000\r\n") == (
        b"552 5.3.4 Message size exceeds fixed limit\r\n")
    assert server.state is S.GREETED
    assert server.say(b"MAIL FROM:<a@x.org> SIZE=9999\r\n") == b"250 2.1.0 Ok\r\n"


def test_non_ascii_commands_refused_without_smtputf8() -> None:
    server = Server()
    server.ehlo()
    events, out = server.feed("MAIL FROM:<jé@x.org>\r\n".encode())
    assert out == b"500 5.5.2 Error: non-ASCII character received\r\n"
    assert events[0].command is None and server.state is S.GREETED


def test_smtputf8_transaction() -> None:
    server = Server(smtputf8=True)
    assert b"250-SMTPUTF8" in server.ehlo()
    assert server.say("MAIL FROM:<jé@x.org>\r\n".encode()) == (
        b"553 5.6.7 Error: non-ASCII address needs SMTPUTF8\r\n")
    assert server.say("MAIL FROM:<jé@x.org> SMTPUTF8\r\n".encode()) == b"250 2.1.0 Ok\r\n"
    assert server.conn.envelope.smtputf8
    assert server.say("RCPT TO:<ü@bücher.example>\r\n".encode()) == b"250 2.1.5 Ok\r\n"
    assert server.conn.envelope.rcpt_tos == ["ü@bücher.example"]
    assert server.say(b"NOOP \xff\xfe\r\n") == b"500 5.5.2 Error: invalid UTF-8 received\r\n"


def test_nul_in_a_command_is_refused() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"MAIL FROM:<a@x.org>\x00\r\n") == (
        b"500 5.5.2 Error: NUL character received\r\n")
    assert server.state is S.GREETED


# --- line limits and line endings ----------------------------------------------------------

def test_command_line_of_exactly_512_octets_is_accepted() -> None:
    server = Server()
    line = b"NOOP " + b"x" * 505 + b"\r\n"
    assert len(line) == 512
    assert server.say(line) == b"250 2.0.0 Ok\r\n"


def test_command_line_of_513_octets_is_refused_and_session_goes_on() -> None:
    server = Server()
    events, out = server.feed(b"a" * 511 + b"\r\n")
    assert out == b"500 5.5.2 Error: command too long\r\n"
    assert events[0].command is None and len(events[0].line) == 512
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_overlong_noop_is_not_executed() -> None:
    server = Server()
    assert server.say(b"NOOP " + b"x" * 506 + b"\r\n") == b"500 5.5.2 Error: command too long\r\n"
    assert server.conn.session.junk_commands == 0


def test_megabyte_line_without_crlf_keeps_memory_bounded() -> None:
    server = Server()
    for _ in range(100):
        assert server.say(b"a" * 10_000) == b""
        assert len(server.conn._in) <= 1  # discarded as it comes
    out = server.say(b"a" * 1001 + b"\r\n")
    assert out == b"500 5.5.2 Error: command too long\r\n"  # ONE reply
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"
    # in one piece, too
    server2 = Server()
    assert codes(server2.say(b"a" * 1_000_000 + b"\r\nNOOP\r\n")) == [500, 250]
    assert len(server2.conn._in) == 0


def test_crlf_split_across_reads_of_an_overlong_line() -> None:
    server = Server()
    assert server.say(b"a" * 600 + b"\r") == b""
    assert server.say(b"\nNOOP\r\n") == b"500 5.5.2 Error: command too long\r\n250 2.0.0 Ok\r\n"


def test_bare_lf_command_is_refused_and_never_executed() -> None:
    server = Server()
    assert server.say(b"NOOP\n") == b""  # not a line yet: only CRLF ends a line
    events, out = server.feed(b"\r\n")
    assert out == b"500 5.5.2 Error: bare <LF> received\r\n"
    assert events[0].command is None and server.conn.session.junk_commands == 0
    server.ehlo()
    assert server.say(b"MAIL FROM:<a@x.org>\nRCPT TO:<b@y.org>\r\n") == (
        b"500 5.5.2 Error: bare <LF> received\r\n")
    assert server.state is S.GREETED


def test_bare_cr_command_is_refused() -> None:
    server = Server()
    assert server.say(b"NOOP\rNOOP\r\n") == b"500 5.5.2 Error: bare <CR> received\r\n"


def test_command_split_over_many_reads() -> None:
    server = Server()
    out = b"".join(server.say(bytes([b])) for b in b"EHLO x\r\nNOOP\r\n")
    assert codes(out) == [250, 250]


# --- pipelining ----------------------------------------------------------------------------

def test_pipelined_envelope_is_answered_in_order() -> None:
    server = Server()
    server.ehlo()
    events, out = server.feed(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@anotherdomain.org>\r\n"
                              b"RCPT TO:<c@anotherdomain.org>\r\nDATA\r\n")
    assert out == (b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n250 2.1.5 Ok\r\n"
                   b"354 End data with <CR><LF>.<CR><LF>\r\n")
    assert [e.state_after for e in events] == [S.MAIL, S.RCPT, S.RCPT, S.DATA]


def test_next_event_gives_one_event_per_call() -> None:
    server = Server()
    server.conn.receive_data(b"EHLO x\r\nNOOP\r\nNOOP\r\n")
    first = server.conn.next_event()
    assert isinstance(first, CommandReceived) and first.command is not None
    assert server.conn.data_to_send().startswith(b"250-mail.anotherdomain.org")
    assert server.conn.next_event().reply.code == 250
    assert server.conn.next_event().reply.code == 250
    assert server.conn.next_event() is NEED_DATA


def test_whole_session_in_one_write() -> None:
    server = Server()
    out = server.say(b"EHLO x\r\nMAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\n"
                     b"hi\r\n.\r\nMAIL FROM:<c@x.org>\r\nRCPT TO:<d@y.org>\r\nDATA\r\n"
                     b"second\r\n.\r\nQUIT\r\n")
    assert codes(out) == [250, 250, 250, 354, 250, 250, 250, 354, 250, 221]
    assert [m.content for m in server.box.messages] == [b"hi\r\n", b"second\r\n"]


# --- error limits --------------------------------------------------------------------------

def test_hard_error_limit_421_and_close() -> None:
    server = Server()
    out = b""
    for i in range(19):
        out += server.say(b"BOGUS%d\r\n" % i)
    assert codes(out) == [500] * 19 and not server.conn.closed
    events, out = server.feed(b"BOGUS19\r\n")
    assert out == (b"500 5.5.2 Error: command not recognized\r\n"
                   b"421 4.7.0 mail.anotherdomain.org Error: too many errors\r\n")
    assert isinstance(events[-1], ReplySent) and events[-1].state_after is S.CLOSED
    assert server.conn.closed
    assert server.say(b"NOOP\r\n") == b""


def test_first_unknown_command_never_closes_even_with_the_smallest_limit() -> None:
    server = Server(hard_error_limit=2)
    assert server.say(b"BOGUS\r\n") == b"500 5.5.2 Error: command not recognized\r\n"
    assert not server.conn.closed


def test_soft_error_limit_sets_a_delay_hint() -> None:
    server = Server(soft_error_limit=3, error_sleep_time=0.5)
    delays = [server.feed(b"BOGUS\r\n")[0][0].delay for _ in range(4)]
    assert delays == [0.0, 0.0, 0.5, 0.5]
    assert server.conn.session.delay == 0.5
    assert server.feed(b"NOOP\r\n")[0][0].delay == 0.5  # every reply is slowed down


def test_junk_commands_count_as_errors_past_the_limit() -> None:
    server = Server(junk_command_limit=3, hard_error_limit=3)
    out = server.say(b"NOOP\r\n" * 3)
    assert codes(out) == [250] * 3 and server.conn.session.error_count == 0
    out = server.say(b"NOOP\r\nNOOP\r\nNOOP\r\n")
    assert codes(out) == [250, 250, 250, 421]
    assert server.conn.closed


def test_delivered_message_resets_the_junk_count() -> None:
    server = Server()
    in_transaction(server)
    server.say(b"NOOP\r\nRSET\r\n")
    assert server.conn.session.junk_commands == 2
    server.say(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<b@y.org>\r\nDATA\r\nx\r\n.\r\n")
    assert server.conn.session.junk_commands == 0


# --- unsolicited replies, EOF, misuse ------------------------------------------------------

def test_send_timeout_421_closes_the_connection() -> None:
    server = Server()
    server.ehlo()
    server.conn.send_timeout()
    assert server.conn.data_to_send() == (
        b"421 4.4.2 mail.anotherdomain.org Error: timeout exceeded\r\n")
    assert server.conn.closed
    event = server.conn.next_event()
    assert isinstance(event, ReplySent) and event.state_before is S.GREETED
    with pytest.raises(LocalProtocolError):
        server.conn.send_shutdown()


def test_send_shutdown_during_data_stores_nothing() -> None:
    server = Server()
    in_transaction(server)
    server.say(b"DATA\r\nhalf a mess")
    server.conn.send_shutdown()
    assert server.conn.data_to_send() == (
        b"421 4.3.2 mail.anotherdomain.org Service shutting down\r\n")
    server.feed(b"age\r\n.\r\n")
    assert server.box.messages == []


def test_eof_mid_data_stores_nothing() -> None:
    server = Server()
    in_transaction(server)
    events, _ = server.feed(b"DATA\r\nhalf a message\r\n")
    events, out = server.feed(b"")
    assert out == b""
    assert isinstance(events[-1], ConnectionClosed)
    assert "discarded" in events[-1].reason and events[-1].state_before is S.DATA
    assert server.box.messages == [] and server.conn.closed
    assert server.conn.next_event() is NEED_DATA  # ConnectionClosed only once


def test_eof_after_complete_commands_processes_them_first() -> None:
    server = Server()
    server.conn.receive_data(b"EHLO x\r\nQUIT\r\n")
    server.conn.receive_data(b"")
    events = [server.conn.next_event() for _ in range(3)]
    assert [type(e) for e in events] == [CommandReceived, CommandReceived, ConnectionClosed]
    assert server.conn.next_event() is NEED_DATA


def test_data_after_eof_is_our_mistake() -> None:
    server = Server()
    server.conn.receive_data(b"")
    server.conn.receive_data(b"")  # repeating EOF is fine
    with pytest.raises(LocalProtocolError):
        server.conn.receive_data(b"NOOP\r\n")


def test_default_construction_works() -> None:
    conn = ServerConnection()
    assert conn.data_to_send() == b"220 mail.anotherdomain.org ESMTP Postfix\r\n"
    assert isinstance(conn.next_event(), ConnectionOpened)


def test_persona_overrides() -> None:
    server = Server(hostname="mx.example.net", software="Exim",
                    replies={"ok": (250, "OK, fine"),
                             "greeting": (220, "{host} ESMTP {software} 4.97")})
    assert server.greeting == b"220 mx.example.net ESMTP Exim 4.97\r\n"
    assert server.say(b"NOOP\r\n") == b"250 OK, fine\r\n"


def test_every_reply_line_fits_in_512_octets() -> None:
    server = Server()
    out = server.say(b"VRFY " + b"x" * 500 + b"\r\n")
    assert out.startswith(b"252 2.0.0 xxx") and all(
        len(line) + 2 <= 512 for line in out.split(b"\r\n"))


def test_session_repr_has_no_secrets_and_separates_envelope() -> None:
    server = Server()
    in_transaction(server)
    assert server.conn.session.helo_name == "client.example.com"
    assert server.conn.session.peer == ("127.0.0.9", 40000)
    assert not hasattr(server.conn.session, "envelope")


# --- one state variable, one reply path (issue 14) ------------------------------------------

def test_a_persona_override_that_changes_a_code_is_refused() -> None:
    """A reply's code moves the state (RFC 5321 §4.2): a persona changes words, not codes.
    ``data_go`` as 554 once left the state at RCPT and the reader reading message content,
    so the next QUIT was swallowed as content."""
    with pytest.raises(ValueError, match=r"data_go.*354.*554"):
        ServerConfig(replies={"data_go": (554, "5.5.1 no data today")})
    with pytest.raises(ValueError, match=r"help.*500.*214"):
        ServerConfig(replies={"help": (214, "2.0.0 Commands")})
    with pytest.raises(ValueError, match=r"no_such_key"):
        ServerConfig(replies={"no_such_key": (250, "2.0.0 Ok")})
    ServerConfig(replies={"data_go": (354, "Go ahead, end with <CRLF>.<CRLF>")})  # words: fine


def test_the_reader_follows_the_state_whatever_the_reply() -> None:
    """Whatever code DATA's reply has, what is read next is derived from the state the reply
    led to: after a refused DATA, QUIT is a command (221), not message content."""

    class Refusing(Persona):  # a reply no configuration check foresaw
        def reply(self, key: str, **fields: object) -> Reply:
            if key == "data_go":
                return Reply(554, "5.5.1 no data today")
            return super().reply(key, **fields)

    server = Server()
    server.ehlo()
    assert codes(server.say(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<v@anotherdomain.org>\r\n")
                 ) == [250, 250]
    server.conn.persona = Refusing(server.conn.persona.hostname)
    assert server.say(b"DATA\r\n") == b"554 5.5.1 no data today\r\n"
    assert server.state is S.RCPT and not server.conn.receiving_content
    assert server.say(b"QUIT\r\n") == b"221 2.0.0 Bye\r\n"
    assert server.conn.closed


def test_a_server_may_answer_help_with_214_through_its_handler() -> None:
    class Helpful(Handler):
        def handle_HELP(self, session: Session, arg: str) -> Reply | None:
            return Reply(214, "2.0.0 Commands: EHLO MAIL RCPT DATA QUIT")

    server = Server(Helpful())
    assert server.say(b"HELP\r\n") == b"214 2.0.0 Commands: EHLO MAIL RCPT DATA QUIT\r\n"
    assert server.state is S.CONNECTED


@pytest.mark.parametrize(("line", "expected"), [
    (b"MAIL FROM:a@example.com", b"501 5.5.4 Syntax: MAIL FROM:<address>\r\n"),
    (b"MAIL FROM:<a@example.com> FOO=1", b"555 5.5.4 Unsupported option: FOO=1\r\n"),
    (b"RSET now", b"501 5.5.4 Syntax: RSET\r\n"),
    (b"FOO", b"500 5.5.2 Error: command not recognized\r\n"),
], ids=repr)
def test_a_peers_grammar_error_is_raised_inside_and_answered_in_one_place(
        line: bytes, expected: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    """The core raises RemoteProtocolError where the peer breaks the grammar; _command turns
    it into the reply (the state stays) and it never reaches the caller."""
    raised: list[RemoteProtocolError] = []
    real = ServerConnection._execute

    def spy(self: ServerConnection, raw: bytes) -> object:
        try:
            return real(self, raw)
        except RemoteProtocolError as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(ServerConnection, "_execute", spy)
    server = Server()
    server.ehlo()
    events, out = server.feed(line + b"\r\n")
    assert out == expected
    assert len(raised) == 1 and raised[0].key is not None
    assert [type(e) for e in events] == [CommandReceived] and events[0].command is None
    assert server.state is S.GREETED


def test_a_handler_raising_remote_protocol_error_is_a_handler_bug() -> None:
    """Only the core's own grammar checks speak for the peer: a hook that raises is 451."""
    class Broken(Handler):
        def handle_MAIL(self, session: Session, envelope: Envelope, address: str,
                        params: Mapping[str, str | None]) -> Reply | None:
            raise RemoteProtocolError("not the peer's fault", "mail_syntax")

    server = Server(Broken())
    server.ehlo()
    assert server.say(b"MAIL FROM:<a@example.com>\r\n").startswith(b"451 4.3.0")
    assert isinstance(server.conn.handler_errors[0], RemoteProtocolError)
