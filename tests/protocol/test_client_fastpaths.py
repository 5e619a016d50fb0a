"""The client core's cheaper paths keep its behaviour: SIZE counted from the stuffed wire
form, paths remembered by the grammar per its flags, replies read in place from one buffer."""

from __future__ import annotations

import pytest

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.events import (
    NEED_DATA,
    ConnectionClosed,
    Data,
    Ehlo,
    MailFrom,
    Message,
    Noop,
    RcptTo,
    ReplyReceived,
)


def greeted(ehlo: bytes) -> ClientConnection:
    client = ClientConnection(ClientConfig(hostname="client.example.com"))
    client.receive_data(b"220 mx ESMTP\r\n")
    client.next_event()
    client.send(Ehlo())
    client.receive_data(ehlo)
    assert isinstance(client.next_event(), ReplyReceived)
    client.data_to_send()
    return client


def at_message(client: ClientConnection) -> None:
    for command in (MailFrom("a@x.org"), RcptTo("b@y.org"), Data()):
        client.send(command)
    client.receive_data(b"250 ok\r\n250 ok\r\n354 go\r\n")
    while client.next_event() is not NEED_DATA:
        pass
    client.data_to_send()


# 19 octets once normalised; 25 on the wire with three stuffed dots and ".CRLF" (RFC 1870 §4:
# SIZE counts neither stuffed dots nor the terminator).
DOTTED = b".a\r\n..b\n\r\n.\r\nxyz"


@pytest.mark.parametrize(("limit", "accepted"), [(19, True), (18, False)])
def test_size_counts_the_message_not_its_stuffed_dots(limit: int, accepted: bool) -> None:
    client = greeted(b"250-mx\r\n250-PIPELINING\r\n250 SIZE " + str(limit).encode() + b"\r\n")
    at_message(client)
    if accepted:
        client.send(Message(DOTTED))
        assert client.data_to_send() == b"..a\r\n...b\r\n\r\n..\r\nxyz\r\n.\r\n"
    else:
        with pytest.raises(LocalProtocolError, match="19 octets exceeds"):
            client.send(Message(DOTTED))
        assert client.data_to_send() == b""


def test_without_a_size_limit_any_message_is_sent() -> None:
    client = greeted(b"250-mx\r\n250-PIPELINING\r\n250 SIZE 0\r\n")  # RFC 1870 §4: no limit
    at_message(client)
    client.send(Message(b"y" * 5000))
    assert client.data_to_send() == b"y" * 5000 + b"\r\n.\r\n"


def test_a_remembered_path_keeps_the_rules_of_its_command() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    client.send(MailFrom("Postmaster@x.org"))
    client.send(RcptTo("Postmaster"))  # RFC 5321 §4.5.1: RCPT TO:<Postmaster> is fine
    assert client.data_to_send() == b"MAIL FROM:<Postmaster@x.org>\r\nRCPT TO:<Postmaster>\r\n"
    client.receive_data(b"250 ok\r\n250 ok\r\n")
    client.next_event()
    client.next_event()
    other = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    with pytest.raises(LocalProtocolError):  # ... but not as a sender
        other.send(MailFrom("Postmaster"))
    other.send(MailFrom(""))  # the null sender
    assert other.data_to_send() == b"MAIL FROM:<>\r\n"


def test_a_bad_address_is_refused_every_time() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    for _ in range(2):
        with pytest.raises(LocalProtocolError):
            client.send(MailFrom("a@x.org>\r\nRCPT TO:<evil@y"))
    assert client.data_to_send() == b""


def test_pipelined_replies_in_one_read_then_a_reply_split_in_two() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Data())
    client.receive_data(b"250 2.1.0 Ok\r\n250-2.1.5 Ok\r\n250 2.1.5 really\r\n354 go\r\n25")
    events = [client.next_event() for _ in range(3)]
    assert [e.reply.code for e in events] == [250, 250, 354]
    assert events[1].reply.lines == ("2.1.5 Ok", "2.1.5 really")
    assert client.next_event() is NEED_DATA  # "25" waits for the rest of its line
    client.send(Message(b"hi"))
    client.receive_data(b"0 queued\r\n")
    event = client.next_event()
    assert isinstance(event, ReplyReceived) and event.command == Message(b"hi")
    assert event.reply.code == 250 and event.reply.lines == ("queued",)


def test_a_bad_line_after_good_replies_closes_only_when_reached() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    client.send(Noop())
    client.receive_data(b"250 ok\r\nnonsense\r\n")
    assert isinstance(client.next_event(), ReplyReceived)
    event = client.next_event()
    assert isinstance(event, ConnectionClosed) and "protocol error" in event.reason


def test_an_overlong_partial_line_is_refused_after_complete_ones() -> None:
    client = greeted(b"250-mx\r\n250 PIPELINING\r\n")
    client.send(Noop())
    client.receive_data(b"250 ok\r\n" + b"2" * 600)  # RFC 5321 §4.5.3.1.5: 512 octets
    assert isinstance(client.next_event(), ReplyReceived)
    event = client.next_event()
    assert isinstance(event, ConnectionClosed) and "longer than 512" in event.reason
