"""swaks-style transcripts from captured bytes: plaintext, STARTTLS, implicit TLS, POP3, DNS."""

from __future__ import annotations

import ssl

import pytest

from simsmtp.capture.tlsinspect import read_keylog
from simsmtp.capture.transcript import (
    distinct_connections,
    pair_turns,
    render_transcript,
    show_line,
    transcript,
    view_connection,
)
from simsmtp.net.tap import Tap
from tests.capture._scripted import (
    Wire,
    dns_mx,
    mirrored_smtp,
    new_tap,
    plain_smtp,
    pop3_session,
    smtps,
    starttls_smtp,
)


def test_plaintext_smtp_reads_like_swaks() -> None:
    tap = new_tap()
    conn = plain_smtp(tap)
    lines = transcript(tap, conn).splitlines()
    assert lines[:5] == [
        "=== Trying 127.0.0.3:42525...",
        "=== Connected to 127.0.0.3.",
        "<-  220 mail.anotherdomain.org ESMTP Postfix",
        " -> EHLO mail.example.com",
        "<-  250-mail.anotherdomain.org",
    ]
    assert " -> AUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdvbmRlcmxhbmQ=" in lines
    data = lines.index(" -> DATA")
    assert lines[data + 1] == "<-  354 End data with <CR><LF>.<CR><LF>"
    # The message content after 354, line by line, exactly as sent (dot-stuffed).
    assert lines[data + 2:data + 11] == [
        " -> From: Alice <alice@example.com>", " -> To: Bob <bob@anotherdomain.org>",
        " -> Subject: The secret picnic", " -> Date: Tue, 14 Nov 2023 22:13:20 +0000",
        " -> Message-ID: <1@example.com>", " -> ", " -> Meet me under the old oak at noon.",
        " -> ..and bring the cake.", " -> ."]
    assert lines[-3:] == [" -> QUIT", "<-  221 2.0.0 Bye",
                          "=== Connection closed with remote host."]


def test_error_replies_are_marked_and_lines_join_across_segments() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.s(b"220 mx ESMTP\r\n")
    wire.c(b"MAIL FROM:<a@")  # one line in three segments
    wire.c(b"example.com>")
    wire.c(b"\r\n")
    wire.s(b"550 5.7.1 Go away\r\n")
    wire.c(b"QUIT\n")  # bare LF: shown, not hidden
    wire.c(b"RSET")  # the capture ends mid-line
    lines = transcript(tap, wire.id).splitlines()
    assert lines[2:] == ["<-  220 mx ESMTP", " -> MAIL FROM:<a@example.com>",
                         "<** 550 5.7.1 Go away", " -> QUIT [bare LF]",
                         " -> RSET [no line end]"]
    wire.close(by="server")
    assert transcript(tap, wire.id).splitlines()[-1] == "=== Connection closed by remote host."


def test_show_line_escapes_control_bytes() -> None:
    assert show_line(b"a\x00b\rc\r\n") == "a\\x00b\\x0dc"
    assert show_line(b"caf\xc3\xa9\r\n") == "café"
    assert show_line(b"\xff\r\n") == "\\xff"


def test_starttls_without_keys_shows_only_record_summaries(world: tuple) -> None:
    ca, _ = world
    tap = new_tap()
    conn = starttls_smtp(tap, ca)
    text = transcript(tap, conn)
    lines = text.splitlines()
    start = lines.index("<-  220 2.0.0 Ready to start TLS")
    assert lines[start - 1] == " -> STARTTLS"
    assert lines[start + 1].startswith(" ~> [TLS record: handshake (ClientHello), ")
    assert lines[start + 2].startswith("<~  [TLS record: handshake (ServerHello), ")
    assert "=== TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384" in lines
    after = lines[start + 1:-1]
    assert all(line.startswith(("<~  [TLS record: ", " ~> [TLS record: ", "=== TLS "))
               for line in after)
    assert any(line.startswith("<~  [TLS record: application_data, ") for line in after)
    assert "MAIL FROM" not in text and "AUTH" not in text.split("STARTTLS")[-1]
    assert "alice" not in text


def test_starttls_with_the_key_log_reads_inside_in_wire_order(world: tuple) -> None:
    ca, keylog = world
    tap = new_tap()
    conn = starttls_smtp(tap, ca)
    lines = transcript(tap, conn, keylog=keylog).splitlines()
    started = lines.index("=== TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384")
    assert lines[started - 1] == "<-  220 2.0.0 Ready to start TLS"
    inside = lines[started + 2:]
    assert inside[:2] == [" ~> EHLO mail.example.com", "<~  250-mail.anotherdomain.org"]
    assert " ~> MAIL FROM:<alice@example.com>" in inside
    data = inside.index(" ~> DATA")
    assert inside[data + 1:data + 3] == ["<~  354 End data with <CR><LF>.<CR><LF>",
                                         " ~> From: Alice <alice@example.com>"]
    assert not any("[TLS record" in line for line in lines)
    assert inside[-1] == "=== Connection closed with remote host."


def test_supplied_plaintext_gives_the_same_transcript_as_the_key_log(world: tuple) -> None:
    ca, keylog = world
    tap = new_tap()
    conn = starttls_smtp(tap, ca, version=ssl.TLSVersion.TLSv1_2)
    record = tap.connection(conn)
    assert record is not None
    view = view_connection(record, tap.segments(conn), None)
    assert view.tls is not None and view.tls.certificates
    decrypted = view_connection(record, tap.segments(conn), read_keylog(keylog)).decryption
    assert decrypted is not None
    by_keys = transcript(tap, conn, keylog=keylog)
    by_plaintext = transcript(tap, conn, decrypted=decrypted.plaintext)
    assert by_keys == by_plaintext
    assert "=== TLS peer certificate (sent in clear): CN=mail.anotherdomain.org" in by_keys


def test_implicit_tls_starts_with_the_client_hello(world: tuple) -> None:
    ca, keylog = world
    tap = new_tap()
    conn = smtps(tap, ca)
    lines = transcript(tap, conn).splitlines()
    assert lines[2].startswith(" ~> [TLS record: handshake (ClientHello), ")
    assert not any(line.startswith("<-  ") for line in lines)
    opened = transcript(tap, conn, keylog=keylog).splitlines()
    assert opened[4] == "<~  220 mail.anotherdomain.org ESMTP Postfix"


def test_pop3_plain_and_with_stls(world: tuple) -> None:
    ca, _ = world
    tap = new_tap()
    plain = transcript(tap, pop3_session(tap)).splitlines()
    assert " -> PASS hunter2" in plain
    retr = plain.index(" -> RETR 1")
    assert plain[retr + 1:retr + 3] == ["<-  +OK 222 octets",
                                        "<-  From: Alice <alice@example.com>"]
    tls = transcript(tap, pop3_session(tap, ca, client=("127.0.0.2", 40009))).splitlines()
    assert tls[2:5] == ["<-  +OK POP3 server ready", " -> STLS", "<-  +OK Begin TLS negotiation"]
    assert tls[5].startswith(" ~> [TLS record: handshake (ClientHello)")
    assert not any("PASS" in line or "USER" in line for line in tls)


def test_dns_flow() -> None:
    tap = new_tap()
    dns_mx(tap)
    (conn,) = tap.connections()
    lines = transcript(tap, conn.id).splitlines()
    assert lines == [
        "=== UDP 127.0.0.2:53535 -> 127.0.0.53:42053 (dns)",
        " -> DNS query anotherdomain.org. MX (id 4242)",
        "<-  DNS response NOERROR for anotherdomain.org. MX: anotherdomain.org. 3600 IN MX "
        "10 mail.anotherdomain.org. (id 4242)",
    ]


def test_unknown_connection_raises() -> None:
    with pytest.raises(KeyError):
        transcript(Tap(), 99)


def test_render_transcript_takes_connection_and_segments() -> None:
    tap = new_tap()
    conn = plain_smtp(tap)
    record = tap.connection(conn)
    assert record is not None
    assert render_transcript(record, tap.segments(conn)) == transcript(tap, conn)


def test_both_ends_recorded_is_one_connection() -> None:
    tap = new_tap()
    listener_end, client_end = mirrored_smtp(tap)
    later = plain_smtp(tap, client=("127.0.0.2", 40077), server=("127.0.0.3", 42525))
    other = plain_smtp(tap, client=("127.0.0.9", 40001))
    # The client end duplicates the listener's recording; a later connection that reuses
    # the same addresses after the close is a different connection.
    assert [c.id for c in distinct_connections(tap)] == [listener_end, later, other]
    assert client_end not in [c.id for c in distinct_connections(tap)]


def test_pair_turns_pipelined_commands_bdat_and_pop3_multiline() -> None:
    client = (b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nBDAT 12 LAST\r\n"
              b"Subject: x\r\nQUIT\r\n")
    server = (b"220 hi\r\n250-hi\r\n250 CHUNKING\r\n250 ok\r\n250 ok\r\n250 ok\r\n221 bye\r\n")
    turns = pair_turns(client, server, "smtp")
    assert [(t.direction, t.kind, t.text) for t in turns] == [
        ("s2c", "reply", b"220 hi\r\n"),
        ("c2s", "command", b"EHLO c\r\n"), ("s2c", "reply", b"250-hi\r\n250 CHUNKING\r\n"),
        ("c2s", "command", b"MAIL FROM:<a@b>\r\n"), ("s2c", "reply", b"250 ok\r\n"),
        ("c2s", "command", b"RCPT TO:<c@d>\r\n"), ("s2c", "reply", b"250 ok\r\n"),
        ("c2s", "command", b"BDAT 12 LAST\r\n"), ("c2s", "content", b"Subject: x\r\n"),
        ("s2c", "reply", b"250 ok\r\n"),
        ("c2s", "command", b"QUIT\r\n"), ("s2c", "reply", b"221 bye\r\n"),
    ]
    pop = pair_turns(b"LIST\r\nLIST 1\r\nQUIT\r\n",
                   b"+OK\r\n+OK 2\r\n1 10\r\n2 20\r\n.\r\n+OK 1 10\r\n+OK bye\r\n", "pop3")
    assert [(t.kind, t.text) for t in pop] == [
        ("reply", b"+OK\r\n"), ("command", b"LIST\r\n"), ("reply", b"+OK 2\r\n"),
        ("content", b"1 10\r\n2 20\r\n.\r\n"), ("command", b"LIST 1\r\n"),
        ("reply", b"+OK 1 10\r\n"), ("command", b"QUIT\r\n"), ("reply", b"+OK bye\r\n")]
    refused = pair_turns(b"DATA\r\nQUIT\r\n", b"554 no valid recipients\r\n221 bye\r\n", "smtp",
                       server_first=False)
    assert [t.kind for t in refused] == ["command", "reply", "command", "reply"]
