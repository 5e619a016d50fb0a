"""Delivery status notifications (RFC 3464), parsed back with the email package."""

from __future__ import annotations

import email
import email.policy
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage, Message

import pytest

from simsmtp.world import RecipientFailure, compose_bounce

ARRIVAL = datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
NOW = ARRIVAL + timedelta(hours=5)
ORIGINAL = (b"From: Alice <alice@example.com>\r\nTo: bob@anotherdomain.org\r\n"
            b"Subject: Lunch?\r\nMessage-ID: <1@example.com>\r\n\r\n"
            b"Secret body line\r\n")
BOB = RecipientFailure("bob@anotherdomain.org", "5.1.1",
                       "smtp; 550 5.1.1 <bob@anotherdomain.org>: Recipient address rejected: "
                       "User unknown in local recipient table", "mail.anotherdomain.org")
CAROL = RecipientFailure("carol@nowhere.example", "5.1.2",
                         "X-Postfix; Host or domain name not found")


def bounce(**kw: object) -> bytes:
    args: dict[str, object] = dict(sender="alice@example.com", failures=[BOB, CAROL],
                                   reporting_mta="mail.example.com", arrival=ARRIVAL, now=NOW,
                                   message_id="<20250310140000.AAAAAAAAAA@mail.example.com>")
    args.update(kw)
    out = compose_bounce(ORIGINAL, **args)  # type: ignore[arg-type]
    assert out is not None
    return out


def parse(data: bytes) -> EmailMessage:
    msg = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def blocks(part: Message) -> list[Message]:
    payload = part.get_payload()
    assert isinstance(payload, list)
    return [block for block in payload if isinstance(block, Message)]


def test_top_level_headers() -> None:
    data = bounce()
    msg = parse(data)
    assert b"\r\nFrom: MAILER-DAEMON@mail.example.com (Mail Delivery System)\r\n" in data
    assert msg["From"].addresses[0].addr_spec == "MAILER-DAEMON@mail.example.com"
    assert msg["To"] == "alice@example.com"
    assert msg["Subject"] == "Undelivered Mail Returned to Sender"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert msg["Message-ID"] == "<20250310140000.AAAAAAAAAA@mail.example.com>"
    assert msg["Date"].datetime == NOW
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert [p.get_content_type() for p in msg.iter_parts()] == [
        "text/plain", "message/delivery-status", "text/rfc822-headers"]


def test_notification_text_in_postfixs_words() -> None:
    text = next(parse(bounce()).iter_parts()).get_content().replace("\r\n", "\n")
    assert text.startswith("This is the mail system at host mail.example.com.\n")
    assert ("I'm sorry to have to inform you that your message could not\n"
            "be delivered to one or more recipients. It's attached below.") in text
    assert text.endswith(
        "\n<bob@anotherdomain.org>: host mail.anotherdomain.org said: 550 5.1.1\n"
        "    <bob@anotherdomain.org>: Recipient address rejected: User unknown in local\n"
        "    recipient table\n\n"
        "<carol@nowhere.example>: Host or domain name not found\n")


def test_delivery_status_fields() -> None:
    status = list(parse(bounce()).iter_parts())[1]
    per_message, bob, carol = blocks(status)
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_message["X-Postfix-Sender"] == "rfc822; alice@example.com"
    assert per_message["Arrival-Date"] == "Mon, 10 Mar 2025 09:00:00 +0000"
    assert bob["Final-Recipient"] == "rfc822; bob@anotherdomain.org"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mail.anotherdomain.org"
    assert bob["Diagnostic-Code"] == BOB.diagnostic
    assert carol["Final-Recipient"] == "rfc822; carol@nowhere.example"
    assert carol["Status"] == "5.1.2"
    assert carol["Remote-MTA"] is None
    assert carol["Diagnostic-Code"] == CAROL.diagnostic


def test_original_headers_without_body() -> None:
    headers = list(parse(bounce()).iter_parts())[2]
    assert headers["Content-Description"] == "Undelivered Message Headers"
    content = headers.get_content()
    assert "Subject: Lunch?" in content and "Message-ID: <1@example.com>" in content
    assert "Secret body line" not in content


def test_crlf_and_deterministic() -> None:
    data = bounce()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert data == bounce()
    assert data != bounce(message_id="<other@mail.example.com>")
    assert b'boundary="' in data and b"/mail.example.com" in data


@pytest.mark.parametrize("sender", ["", "<>", " "])
def test_never_bounce_a_bounce(sender: str) -> None:
    assert compose_bounce(ORIGINAL, sender=sender, failures=[BOB],
                          reporting_mta="mail.example.com", arrival=ARRIVAL, now=NOW,
                          message_id="<x@y>") is None


def test_delay_warning() -> None:
    delayed = RecipientFailure("bob@anotherdomain.org", "4.4.1",
                               "X-Postfix; connect to mail.anotherdomain.org: Connection "
                               "refused", action="delayed")
    until = ARRIVAL + timedelta(days=5)
    msg = parse(bounce(failures=[delayed], will_retry_until=until, queue_id="0123456789"))
    assert msg["Subject"] == "Delayed Mail (still being retried)"
    text, status, headers = msg.iter_parts()
    body = text.get_content().replace("\r\n", "\n")
    assert "THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE." in body
    assert "could not be delivered for more than 5 hour(s)." in body
    assert "It will be retried until it is 5 day(s) old." in body
    per_message, bob = blocks(status)
    assert per_message["X-Postfix-Queue-ID"] == "0123456789"
    assert bob["Action"] == "delayed" and bob["Status"] == "4.4.1"
    assert bob["Will-Retry-Until"] == "Sat, 15 Mar 2025 09:00:00 +0000"
    assert headers["Content-Description"] == "Delayed Message Headers"
    assert str(msg.get_boundary()).startswith("0123456789.")


def test_non_ascii_original_headers_survive() -> None:
    original = "Subject: Café\r\nFrom: zoë@example.com\r\n\r\nbody".encode()
    out = compose_bounce(original, sender="zoë@example.com", failures=[BOB],
                         reporting_mta="mail.example.com", arrival=ARRIVAL, now=NOW,
                         message_id="<x@y>")
    assert out is not None
    headers = list(parse(out).iter_parts())[2]
    assert "Subject: Café" in headers.get_content()


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="RFC 3463"):
        RecipientFailure("bob@x", "550", "smtp; 550 no")
    with pytest.raises(ValueError, match="action"):
        RecipientFailure("bob@x", "5.0.0", "smtp; 550 no", action="lost")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one"):
        compose_bounce(ORIGINAL, sender="a@b", failures=[], reporting_mta="m", arrival=ARRIVAL,
                       now=NOW, message_id="<x@y>")
