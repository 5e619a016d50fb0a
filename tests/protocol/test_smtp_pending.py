"""Server core: a handler that answers a message later (``handle_DATA`` -> PendingReply).

The network layer checks a message (SPF, DKIM, DMARC) on a worker thread; the core must
then read nothing more, keep pipelined commands for after the reply, report the message
once the reply is there, and drop the wait when the connection closes first.
"""

from __future__ import annotations

from concurrent.futures import Future

from simsmtp.protocol.events import CommandReceived, ConnectionClosed, MessageReceived
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.session import Envelope, Session
from simsmtp.protocol.session import ServerState as S

from .conftest import Server, codes, drain

MESSAGE = b"From: a@example.com\r\nSubject: t\r\n\r\nhello\r\n.\r\n"


class Later(Handler):
    """Answers every message with a future the test resolves by hand."""

    def __init__(self) -> None:
        self.futures: list[Future[Reply | None]] = []

    def handle_DATA(self, session: Session, envelope: Envelope) -> Future[Reply | None]:
        future: Future[Reply | None] = Future()
        self.futures.append(future)
        return future


def poll(server: Server) -> tuple[list[object], bytes]:
    """What the server has now that no new bytes came (the network layer's wake-up)."""
    events = drain(server.conn)
    server.events += events
    return list(events), server.conn.data_to_send()


def at_data(handler: Handler) -> Server:
    server = Server(handler)
    server.ehlo()
    out = server.say(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\nDATA\r\n")
    assert codes(out) == [250, 250, 354]
    return server


def test_the_reply_waits_for_the_handler_and_pipelined_commands_wait_behind_it() -> None:
    later = Later()
    server = at_data(later)
    events, out = server.feed(MESSAGE + b"NOOP\r\nMAIL FROM:<c@example.com>\r\n")
    assert (events, out) == ([], b"")  # nothing until the handler answers
    assert server.conn.pending_reply is later.futures[0]
    assert not server.conn.receiving_content
    events, out = server.feed(b"RSET\r\n")  # more input is kept, not read
    assert (events, out) == ([], b"")
    assert poll(server) == ([], b"")  # still not done
    later.futures[0].set_result(None)
    events, out = poll(server)
    assert codes(out) == [250, 250, 250, 250]
    assert out.startswith(b"250 2.0.0 Ok: queued as ")
    assert isinstance(events[0], MessageReceived) and events[0].reply.code == 250
    assert events[0].envelope.content == b"From: a@example.com\r\nSubject: t\r\n\r\nhello\r\n"
    assert [type(e) for e in events[1:]] == [CommandReceived] * 3
    assert server.conn.pending_reply is None
    assert server.state is S.GREETED  # RSET after MAIL


def test_a_refusal_given_later_is_sent_and_the_message_dropped() -> None:
    later = Later()
    server = at_data(later)
    server.feed(MESSAGE)
    later.futures[0].set_result(Reply(451, "4.7.1 try again later"))
    events, out = server.feed(b"")
    # b"" is EOF: the pending reply still comes first, then the close
    assert out == b"451 4.7.1 try again later\r\n"
    assert isinstance(events[0], MessageReceived) and events[0].envelope.content == b""
    assert isinstance(events[-1], ConnectionClosed)


def test_a_failed_handler_is_a_451_never_a_250() -> None:
    later = Later()
    server = at_data(later)
    server.feed(MESSAGE)
    later.futures[0].set_exception(RuntimeError("checker crashed"))
    events, out = server.feed(b"NOOP\r\n")
    assert codes(out) == [451, 250]
    assert isinstance(events[0], MessageReceived) and events[0].reply.code == 451
    assert isinstance(server.conn.handler_errors[0], RuntimeError)


def test_eof_while_waiting_reports_the_message_before_the_close() -> None:
    later = Later()
    server = at_data(later)
    server.feed(MESSAGE)
    events, out = server.feed(b"")
    assert (events, out) == ([], b"")  # EOF: still waiting, not closed yet
    later.futures[0].set_result(None)
    events, out = poll(server)
    assert [type(e) for e in events] == [MessageReceived, ConnectionClosed]
    assert out.startswith(b"250 2.0.0 Ok: queued as ")


def test_a_close_while_waiting_cancels_the_pending_reply() -> None:
    later = Later()
    server = at_data(later)
    server.feed(MESSAGE)
    server.conn.send_shutdown()  # 421 4.3.2: the world stops
    assert later.futures[0].cancelled()
    assert server.conn.pending_reply is None
    assert server.conn.data_to_send().startswith(b"421 4.3.2 ")
    assert server.conn.closed
