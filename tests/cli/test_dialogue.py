"""simsmtp.capture.dialogue: trace events in, swaks notation out (pure)."""

from __future__ import annotations

from simsmtp.capture.dialogue import connections, render_dialogue
from simsmtp.trace import Trace

MX = "mail.anotherdomain.org"


def smtp(trace: Trace, kind: str, conn: int = 4, tls: bool = False, **data: object) -> None:
    trace.record(kind, MX, conn=conn, service="smtp", peer="127.0.0.2:50000", tls=tls, **data)


def seed_connection(trace: Trace, conn: int = 4) -> None:
    trace.record("tcp.connect", MX, service="smtp", conn=conn, peer="127.0.0.2:50000",
                 local="127.0.0.3:40000")
    smtp(trace, "smtp.reply", conn, text="220 mail.anotherdomain.org ESMTP Postfix")
    smtp(trace, "smtp.command", conn, line="EHLO mail.example.com")
    smtp(trace, "smtp.reply", conn, text="250-mail.anotherdomain.org\n250 CHUNKING", code=250)
    smtp(trace, "smtp.command", conn, line="STARTTLS")
    smtp(trace, "smtp.reply", conn, text="220 2.0.0 Ready to start TLS", code=220)
    smtp(trace, "tls.handshake", conn, version="TLSv1.3", cipher="TLS_AES_256_GCM_SHA384")
    smtp(trace, "smtp.command", conn, True, line="MAIL FROM:<alice@example.com>")
    smtp(trace, "smtp.reply", conn, True, text="250 2.1.0 Ok", code=250)
    smtp(trace, "smtp.command", conn, True, line="RCPT TO:<nobody@anotherdomain.org>")
    smtp(trace, "smtp.reply", conn, True, text="550 5.1.1 <nobody@anotherdomain.org>: "
         "Recipient address rejected", code=550)
    smtp(trace, "smtp.command", conn, True, line="RCPT TO:<bob@anotherdomain.org>")
    smtp(trace, "smtp.reply", conn, True, text="250 2.1.5 Ok", code=250)
    smtp(trace, "smtp.command", conn, True, line="DATA")
    smtp(trace, "smtp.reply", conn, True, text="354 End data with <CR><LF>.<CR><LF>", code=354)
    smtp(trace, "smtp.message", conn, True, size=30, via="DATA",
         content=b"Subject: hi\r\n\r\n.hidden dot\r\nbye\r\n")
    smtp(trace, "smtp.reply", conn, True, text="250 2.0.0 Ok: queued as 0B13A6B11A", code=250)
    smtp(trace, "smtp.command", conn, True, line="QUIT")
    smtp(trace, "smtp.reply", conn, True, text="221 2.0.0 Bye", code=221)
    trace.record("tcp.close", MX, service="smtp", conn=conn, by="server", error=None)


def test_a_tls_session_in_swaks_notation() -> None:
    trace = Trace()
    seed_connection(trace)
    text = render_dialogue(trace.events(), MX, 4, names={"127.0.0.2": "mail.example.com"})
    assert text.splitlines() == [
        "=== Trying mail.anotherdomain.org[127.0.0.3]:25...",
        "=== Connected to mail.anotherdomain.org. (the client is mail.example.com[127.0.0.2])",
        "<-  220 mail.anotherdomain.org ESMTP Postfix",
        " -> EHLO mail.example.com",
        "<-  250-mail.anotherdomain.org",
        "<-  250 CHUNKING",
        " -> STARTTLS",
        "<-  220 2.0.0 Ready to start TLS",
        "=== TLS started with cipher TLSv1.3:TLS_AES_256_GCM_SHA384",
        " ~> MAIL FROM:<alice@example.com>",
        "<~  250 2.1.0 Ok",
        " ~> RCPT TO:<nobody@anotherdomain.org>",
        "<~* 550 5.1.1 <nobody@anotherdomain.org>: Recipient address rejected",
        " ~> RCPT TO:<bob@anotherdomain.org>",
        "<~  250 2.1.5 Ok",
        " ~> DATA",
        "<~  354 End data with <CR><LF>.<CR><LF>",
        " ~> Subject: hi",
        " ~> ",
        " ~> ..hidden dot",  # dot-stuffed as on the wire (RFC 5321 §4.5.2)
        " ~> bye",
        " ~> .",
        "<~  250 2.0.0 Ok: queued as 0B13A6B11A",
        " ~> QUIT",
        "<~  221 2.0.0 Bye",
        "=== Connection closed with remote host.",
    ]


def test_only_the_chosen_connection_and_never_the_client_side() -> None:
    trace = Trace()
    seed_connection(trace, conn=4)
    seed_connection(trace, conn=5)
    trace.record("smtp.command", MX, conn=4, service="smtp", tls=False, line="NOOP",
                 role="client")
    trace.record("smtp.command", "other.host", conn=4, service="smtp", tls=False, line="RSET")
    text = render_dialogue(trace.events(), MX, 4)
    assert text.count("EHLO") == 1
    assert "NOOP" not in text and "RSET" not in text
    assert connections(trace.events(), MX) == [4, 5]
    assert connections(trace.events(), MX, "pop3") == []
    assert render_dialogue(trace.events(), MX, 99) == ""


def test_plaintext_errors_and_summarised_content() -> None:
    trace = Trace()
    smtp(trace, "smtp.reply", text="220 mx ESMTP")
    smtp(trace, "smtp.command", line="MAIL FROM:<a@b.example>")
    smtp(trace, "smtp.reply", text="450 4.7.1 Greylisted, try again later", code=450)
    smtp(trace, "smtp.message", size=1234, via="DATA", content=b"x\r\n")
    lines = render_dialogue(trace.events(), MX, 4, content=False).splitlines()
    assert lines == ["<-  220 mx ESMTP", " -> MAIL FROM:<a@b.example>",
                     "<** 450 4.7.1 Greylisted, try again later",
                     " -> [1234 octets of message content]", " -> ."]


def test_bdat_chunks_show_the_last_chunk_size() -> None:
    trace = Trace()
    smtp(trace, "smtp.command", line="BDAT 10")
    smtp(trace, "smtp.reply", text="250 2.0.0 Ok: 10 octets", code=250)
    smtp(trace, "smtp.message", size=14, via="BDAT", content=b"Subject: x\r\n\r\n")
    smtp(trace, "smtp.reply", text="250 2.0.0 Ok: queued as AAAAAAAAAA", code=250)
    lines = render_dialogue(trace.events(), MX, 4).splitlines()
    assert lines[2] == " -> BDAT 4 LAST"
    assert " -> ." not in lines  # RFC 3030 §2: no dot after BDAT
    assert lines[-1] == "<-  250 2.0.0 Ok: queued as AAAAAAAAAA"


def test_pop3_multiline_answers_and_errors() -> None:
    trace = Trace()

    def pop(kind: str, tls: bool = True, **data: object) -> None:
        trace.record(kind, MX, conn=7, service="pop3", peer="127.0.0.1:1", tls=tls, **data)

    trace.record("tcp.connect", MX, service="pop3", conn=7, peer="127.0.0.1:1",
                 local="127.0.0.3:2")
    pop("pop3.reply", False, text="+OK ready")
    pop("pop3.command", line="PASS ***")
    pop("pop3.reply", text="-ERR [AUTH] invalid password")
    pop("pop3.command", line="LIST 1")
    pop("pop3.reply", text="+OK 1 790")
    pop("pop3.command", line="RETR 1")
    pop("pop3.reply", text="+OK 790 octets")
    pop("pop3.command", line="QUIT")
    pop("pop3.reply", text="+OK bye")
    lines = render_dialogue(trace.events(), MX, 7).splitlines()
    assert lines[0] == "=== Trying mail.anotherdomain.org[127.0.0.3]:110..."
    assert lines[2:] == ["<-  +OK ready", " ~> PASS ***", "<~* -ERR [AUTH] invalid password",
                         " ~> LIST 1", "<~  +OK 1 790", " ~> RETR 1", "<~  +OK 790 octets",
                         "<~  [...]", "<~  .", " ~> QUIT", "<~  +OK bye"]
