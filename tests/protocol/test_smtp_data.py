"""Server core: DATA framing, SMTP smuggling, stray CR/LF, size and line limits, BDAT."""

from __future__ import annotations

import pytest

from simsmtp.protocol.events import (
    Bdat,
    BdatChunkReceived,
    CommandReceived,
    MessageReceived,
)
from simsmtp.protocol.session import ServerState as S
from simsmtp.protocol.smtpbody import DataReader

from .conftest import Server, codes


def ready(**config: object) -> Server:
    """A server at the 354, waiting for content."""
    server = Server(**config)
    server.ehlo()
    out = server.say(b"MAIL FROM:<a@example.com>\r\nRCPT TO:<v@anotherdomain.org>\r\nDATA\r\n")
    assert codes(out) == [250, 250, 354]
    return server


def body(x: bytes) -> bytes:
    """The-Login's smuggling payload shape around an injected sequence ``x``."""
    return (b"From: a@example.com\r\nTo: v@anotherdomain.org\r\nSubject: t\r\n\r\nline1" + x
            + b"mail FROM:<smuggled@evil.test>\r\nrcpt TO:<v@anotherdomain.org>\r\ndata\r\n"
            b"From: smuggled@evil.test\r\n\r\nSMUGGLED\r\n.\r\n")


FAKE_EODS = [b"\n.\n", b"\n.\r\n", b"\r.\r\n", b"\r\n.\n", b"\r.\r", b"\r.\n", b"\n.\r",
             b"\r\n.\r", b"\r\n.\r\r\n", b"\r\r\n.\r\r\n", b"\r\n\x00.\r\n", b"\r\n.\x00\r\n"]


@pytest.mark.parametrize("x", FAKE_EODS, ids=repr)
def test_fake_end_of_data_never_ends_the_message(x: bytes) -> None:
    server = ready()
    events, out = server.feed(body(x))
    assert out.count(b"\r\n") == 1 and out.startswith(b"250 2.0.0 Ok: queued as ")
    assert [type(e) for e in events] == [MessageReceived]
    assert len(server.box.messages) == 1
    content = server.box.messages[0].content
    assert b"SMUGGLED" in content and b"mail FROM:<smuggled@evil.test>" in content
    assert server.box.messages[0].mail_from == "a@example.com"
    # what is stored never holds a bare CR or LF
    assert b"\r" not in content.replace(b"\r\n", b"") and b"\n" not in content.replace(
        b"\r\n", b"")
    assert server.state is S.GREETED
    assert not any(isinstance(e, CommandReceived) for e in events)


def test_aiosmtpd_smuggling_regression() -> None:
    """Port of aiosmtpd's test_smtpsmuggling (CVE-2024-27305)."""
    server = ready()
    server.feed(b"From: a@example.com\r\nTo: v@anotherdomain.org\r\nSubject: A test\r\n"
                b"\r\nTesting\n.\r\nNO SMUGGLING\n\r\n.\r\n")
    assert len(server.box.messages) == 1
    assert b"NO SMUGGLING" in server.box.messages[0].content


def test_genuine_terminator() -> None:
    server = ready()
    _events, out = server.feed(b"Subject: ok\r\n\r\nbody\r\n.\r\n")
    assert codes(out) == [250]
    assert server.box.messages[0].content == b"Subject: ok\r\n\r\nbody\r\n"


def test_terminator_split_across_reads() -> None:
    server = ready()
    outputs = [server.say(piece) for piece in (b"hello\r", b"\n.", b"\r", b"\n")]
    assert outputs[:3] == [b"", b"", b""] and codes(outputs[3]) == [250]
    assert server.box.messages[0].content == b"hello\r\n"


def test_empty_message_right_after_354() -> None:
    server = ready()
    _events, out = server.feed(b".\r\n")
    assert codes(out) == [250]
    assert server.box.messages[0].content == b""


def test_stray_cr_and_lf_become_spaces() -> None:
    server = ready()
    server.feed(b"l1\nl2\rl3\r\nend\r\r\n\nx\r\n.\r\n")
    assert server.box.messages[0].content == b"l1 l2 l3\r\nend \r\n x\r\n"


def test_dot_unstuffing() -> None:
    server = ready()
    server.feed(b"..\r\n...x\r\n..hidden\r\n.single\r\n.\r\n")
    assert server.box.messages[0].content == b".\r\n..x\r\n.hidden\r\nsingle\r\n"


def test_nul_bytes_are_kept_as_content() -> None:
    server = ready()
    server.feed(b"a\x00b\r\n\x00.\r\n.\r\n")
    assert server.box.messages[0].content == b"a\x00b\r\n\x00.\r\n"


def test_commands_pipelined_behind_the_message_run_after_it() -> None:
    server = ready()
    out = server.say(b"one\r\n.\r\nMAIL FROM:<x@y.org>\r\nRCPT TO:<v@anotherdomain.org>\r\n"
                     b"DATA\r\ntwo\r\n.\r\n")
    assert codes(out) == [250, 250, 250, 354, 250]
    assert [m.content for m in server.box.messages] == [b"one\r\n", b"two\r\n"]


def test_data_sent_without_waiting_for_354_is_processed_in_order() -> None:
    server = Server()
    server.ehlo()
    out = server.say(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<v@y.org>\r\n"
                     b"DATA\r\nSubject: x\r\n\r\nbody\r\n.\r\n")
    assert codes(out) == [250, 250, 354, 250]
    assert len(server.box.messages) == 1


# --- limits in DATA ------------------------------------------------------------------------

def test_text_line_of_1000_octets_is_accepted() -> None:
    server = ready()
    server.feed(b"a" * 998 + b"\r\n.\r\n")
    assert len(server.box.messages) == 1
    server2 = ready()
    server2.feed(b"." + b"a" * 998 + b"\r\n.\r\n")  # the stuffed dot does not count
    assert len(server2.box.messages) == 1


def test_a_5000_octet_line_is_accepted_and_kept_whole_as_postfix_does() -> None:
    # Postfix 3.7.11 (measured) answers 250 2.0.0 Ok: queued as ...: it chops lines at
    # line_length_limit (2048) and joins them again on delivery, so the message is intact.
    server = ready()
    long_line = b"".join(b"%04d" % i for i in range(1250))  # 5000 octets, all different
    assert server.say(b"Subject: wide\r\n\r\n" + long_line + b"\r\nafter\r\n") == b""
    events, out = server.feed(b".\r\n")
    assert out.startswith(b"250 2.0.0 Ok: queued as ")
    assert isinstance(events[0], MessageReceived) and events[0].accepted
    assert server.box.messages[0].content == (
        b"Subject: wide\r\n\r\n" + long_line + b"\r\nafter\r\n")


def test_a_long_line_arriving_in_many_reads_is_joined_and_unstuffed_once() -> None:
    server = ready()
    server.say(b"first\r\n")
    server.say(b"." * 2 + b"a" * 1500)  # a stuffed dot, then a line begun
    for _ in range(5):
        assert server.say(b"b" * 1500) == b""
        assert len(server.conn._in) <= 1
    server.say(b"\r")
    server.say(b"\n..\r\n")  # a stuffed "." line after the long one
    out = server.say(b".\r\n")
    assert out.startswith(b"250 ")
    assert server.box.messages[0].content == (
        b"first\r\n." + b"a" * 1500 + b"b" * 7500 + b"\r\n.\r\n")


def test_a_dot_after_an_overlong_partial_line_is_not_end_of_data() -> None:
    server = ready()
    server.say(b"c" * 2000)
    assert server.say(b".\r\n") == b""  # the "." continues the long line
    out = server.say(b".\r\n")
    assert out.startswith(b"250 ")
    assert server.box.messages[0].content == b"c" * 2000 + b".\r\n"


def test_a_long_line_counts_against_the_size_limit_as_it_arrives() -> None:
    server = ready(size_limit=10_000)
    for _ in range(100):
        server.say(b"b" * 10_000)
        assert len(server.conn._in) <= 1
        reader = server.conn._data
        assert reader is not None and len(reader._partial or b"") <= 10_000
    assert server.say(b"\r\n.\r\n") == b"552 5.3.4 Error: too much mail data\r\n"
    assert server.box.messages == []
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_actual_size_over_limit_despite_small_declared_size() -> None:
    server = Server(size_limit=100)
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org> SIZE=10\r\nRCPT TO:<v@y.org>\r\nDATA\r\n")
    for _ in range(10):
        assert server.say(b"x" * 18 + b"\r\n") == b""
        assert server.conn._data is not None
        assert sum(len(p) for p in server.conn._data._lines) <= 100
    events, out = server.feed(b".\r\n")
    assert out == b"552 5.3.4 Error: too much mail data\r\n"
    assert server.box.messages == [] and events[0].envelope.content == b""
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"


def test_message_of_exactly_the_size_limit_is_accepted() -> None:
    server = ready(size_limit=100)
    server.feed(b"x" * 98 + b"\r\n.\r\n")
    assert len(server.box.messages) == 1


def test_size_limit_with_a_long_line_in_one_read() -> None:
    server = ready(size_limit=3000)
    assert server.say(b"x" * 1200 + b"\r\n" + b"y\r\n" * 2000 + b".\r\n") == (
        b"552 5.3.4 Error: too much mail data\r\n")
    server2 = ready(size_limit=3000)
    assert server2.say(b"x" * 2500 + b"\r\n.\r\n").startswith(b"250 ")


def test_huge_data_keeps_memory_bounded_and_session_usable() -> None:
    server = ready(size_limit=1000)
    line = b"z" * 78 + b"\r\n"
    for _ in range(200):
        assert server.say(line * 10) == b""
    assert server.conn._data is not None and server.conn._data._lines == []
    assert codes(server.say(b".\r\nNOOP\r\n")) == [552, 250]


# --- BDAT (RFC 3030) -----------------------------------------------------------------------

def bdat_ready(**config: object) -> Server:
    server = Server(**config)
    server.ehlo()
    server.say(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<v@y.org>\r\n")
    return server


def test_bdat_chunks() -> None:
    server = bdat_ready()
    events, out = server.feed(b"BDAT 5\r\nabcde")
    assert out == b"250 2.0.0 Ok: 5 bytes\r\n"
    assert isinstance(events[0], BdatChunkReceived) and events[0].size == 5
    assert events[0].command == Bdat(b"abcde", False)
    assert server.state is S.BDAT
    events, out = server.feed(b"BDAT 3 LAST\r\nxyz")
    assert out.startswith(b"250 2.0.0 Ok: queued as ")
    assert isinstance(events[0], MessageReceived) and events[0].via == "BDAT"
    assert server.box.messages[0].content == b"abcdexyz"
    assert server.box.messages[0].chunks == 2
    assert server.state is S.GREETED


def test_bdat_chunk_is_raw_no_dot_handling() -> None:
    server = bdat_ready()
    chunk = b"a\r\n.\r\nMAIL FROM:<e@v.test>\r\n..x\r\n"
    out = server.say(b"BDAT %d LAST\r\n" % len(chunk) + chunk)
    assert codes(out) == [250]
    assert server.box.messages[0].content == chunk


def test_bdat_chunk_arriving_byte_by_byte_then_a_command() -> None:
    server = bdat_ready()
    server.say(b"BDAT 4 last\r\n")
    assert server.say(b"ab") == b"" and server.say(b"c") == b""
    out = server.say(b"dNOOP\r\n")
    assert codes(out) == [250, 250]
    assert server.box.messages[0].content == b"abcd"


def test_bdat_zero_last_and_stray_cr_lf_policy() -> None:
    server = bdat_ready()
    server.say(b"BDAT 6\r\nl1\nl2\r")
    server.say(b"BDAT 0 LAST\r\n")
    assert server.box.messages[0].content == b"l1 l2 "
    server2 = bdat_ready()
    server2.say(b"BDAT 3\r\nab\r")  # a CRLF split between two chunks is a real CRLF
    server2.say(b"BDAT 1 LAST\r\n\n")
    assert server2.box.messages[0].content == b"ab\r\n"


def test_bdat_after_last_is_503_and_its_octets_are_discarded() -> None:
    server = bdat_ready()
    server.say(b"BDAT 1 LAST\r\nx")
    events, out = server.feed(b"BDAT 4 LAST\r\nNOOP")
    assert out == b"503 5.5.1 Error: need RCPT command\r\n"
    assert events[0].command == Bdat(b"", True)
    assert server.say(b"NOOP\r\n") == b"250 2.0.0 Ok\r\n"  # still in sync
    assert len(server.box.messages) == 1


def test_data_after_bdat_is_503() -> None:
    server = bdat_ready()
    server.say(b"BDAT 2\r\nab")
    assert server.say(b"DATA\r\n") == b"503 5.5.1 Error: DATA after BDAT\r\n"
    assert server.state is S.BDAT


def test_bdat_before_mail_discards_octets() -> None:
    server = Server()
    server.ehlo()
    assert server.say(b"BDAT 6\r\nRSET\r\n") == b"503 5.5.1 Error: need RCPT command\r\n"
    assert server.conn.session.junk_commands == 0  # the RSET inside was data


def test_bdat_chunk_over_the_size_limit_is_read_and_discarded() -> None:
    server = bdat_ready(size_limit=10)
    _events, out = server.feed(b"BDAT 20\r\n" + b"Q" * 20)
    assert out == b"552 5.3.4 Chunk exceeds message size limit\r\n"
    assert server.state is S.GREETED and server.conn._bdat_parts == []
    # a chunk already in the pipeline after the failed one is discarded too
    out = server.say(b"BDAT 3 LAST\r\nRST" + b"NOOP\r\n")
    assert codes(out) == [503, 250]
    assert server.box.messages == []


def test_cumulative_bdat_size() -> None:
    server = bdat_ready(size_limit=10)
    assert codes(server.say(b"BDAT 6\r\n123456")) == [250]
    assert codes(server.say(b"BDAT 6 LAST\r\n123456")) == [552]
    assert server.box.messages == []


@pytest.mark.parametrize("line", [b"BDAT\r\n", b"BDAT x\r\n", b"BDAT 5 FIRST\r\n",
                                  b"BDAT -1\r\n"])
def test_bdat_syntax_errors_consume_nothing(line: bytes) -> None:
    server = bdat_ready()
    out = server.say(line + b"NOOP\r\n")
    assert codes(out) == [501, 250]
    assert out.startswith(b"501 5.5.4 Syntax: BDAT count [LAST]")


def test_pipelined_bdat_transaction_in_one_write() -> None:
    server = Server()
    server.ehlo()
    out = server.say(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<v@y.org>\r\nBDAT 3\r\nabcBDAT 2 LAST\r\n"
                     b"deQUIT\r\n")
    assert codes(out) == [250, 250, 250, 250, 221]
    assert server.box.messages[0].content == b"abcde"


def test_eof_inside_a_chunk_stores_nothing() -> None:
    server = bdat_ready()
    events, _ = server.feed(b"BDAT 10 LAST\r\nabc")
    events, _ = server.feed(b"")
    assert "discarded" in events[-1].reason
    assert server.box.messages == []


@pytest.mark.parametrize("cut", [1, 2, 3, 5, 7, 1000])
def test_the_data_reader_alone_in_any_pieces(cut: int) -> None:
    """The content reader, bytes in and message out, whatever the reads are cut into."""
    wire = b"Subject: t\r\n\r\n..dot\r\nline\n.\n\r\n.\r\nQUIT\r\n"
    reader, buf, done = DataReader(0), bytearray(), False
    for i in range(0, len(wire), cut):
        buf += wire[i:i + cut]
        if reader.read(buf):
            done = True
            break
    assert done and reader.error is None
    assert reader.content() == b"Subject: t\r\n\r\n.dot\r\nline\n.\n\r\n"
    rest = bytes(buf) + wire[i + cut:]
    assert rest == b"QUIT\r\n"
