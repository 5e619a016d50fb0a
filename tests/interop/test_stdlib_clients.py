"""Python's own clients against a running world: smtplib (STARTTLS, login, send_message;
SMTP_SSL on 465) and poplib with ``stls()``."""

from __future__ import annotations

import poplib
import smtplib
import ssl
import uuid
from email.message import EmailMessage

import pytest

from tests.cli._up import UpProcess

SUBMISSION = "mail.example.com"
MX = "mail.anotherdomain.org"


def message(subject: str) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "Alice <alice@example.com>"
    msg["To"] = "Bob <bob@anotherdomain.org>"
    msg["Subject"] = subject
    msg.set_content("Hi Bob,\n\n.a line that starts with a dot\n")
    return msg


def context(world: UpProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=world.ca_file)


def test_smtplib_starttls_login_send_message_then_poplib_stls(world: UpProcess) -> None:
    subject = f"smtplib {uuid.uuid4().hex[:12]}"
    with smtplib.SMTP(*world.address(SUBMISSION, 587), local_hostname="alice-laptop",
                      timeout=10) as client:
        client.starttls(context=context(world))  # verifies mail.example.com's certificate
        client.login("alice@example.com", "wonderland")
        refused = client.send_message(message(subject))
    assert refused == {}
    [got] = world.wait_for_subject(subject)  # pop3_messages() uses poplib + stls()
    assert got["From"] == "Alice <alice@example.com>"
    assert ".a line that starts with a dot" in got.get_content()  # dot-stuffing undone


def test_smtplib_ssl_on_465(world: UpProcess) -> None:
    subject = f"smtps {uuid.uuid4().hex[:12]}"
    with smtplib.SMTP_SSL(*world.address(SUBMISSION, 465), context=context(world),
                          timeout=10) as client:
        client.login("alice@example.com", "wonderland")
        assert client.send_message(message(subject)) == {}
    assert world.wait_for_subject(subject)


def test_auth_before_starttls_on_587_gets_530(world: UpProcess) -> None:
    with smtplib.SMTP(*world.address(SUBMISSION, 587), timeout=10) as client:
        client.ehlo()
        assert not client.has_extn("auth")
        code, text = client.docmd("AUTH", "PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHdvbmRlcmxhbmQ=")
        assert code == 530  # RFC 3207 §4 / RFC 4954 §4: TLS first
        assert text.startswith(b"5.7.0")


def test_wrong_password_is_535(world: UpProcess) -> None:
    with smtplib.SMTP(*world.address(SUBMISSION, 587), timeout=10) as client:
        client.starttls(context=context(world))
        with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
            client.login("alice@example.com", "not-her-password")
    assert caught.value.smtp_code == 535  # RFC 4954 §6


def test_poplib_stls_list_and_uidl(world: UpProcess) -> None:
    client = poplib.POP3(*world.address(MX, 110), timeout=10)
    try:
        assert "STLS" in client.capa()  # RFC 2595 §4
        client.stls(context=context(world))
        client.user("bob")
        client.pass_("builder")
        count, size = client.stat()
        listing = client.list()[1]
        assert len(listing) == count
        assert sum(int(line.split()[1]) for line in listing) == size
        assert len(client.uidl()[1]) == count
        client.quit()
    finally:
        client.close()


def test_poplib_refuses_the_password_before_stls(world: UpProcess) -> None:
    client = poplib.POP3(*world.address(MX, 110), timeout=10)
    try:
        with pytest.raises(poplib.error_proto):
            client.user("bob")
            client.pass_("builder")
    finally:
        client.close()


def _auth_plain(client: poplib.POP3, user: str, password: str) -> bytes:
    """RFC 5034 AUTH PLAIN with the "+ " continuation, as getmail6 and fetchmail do it."""
    import base64

    client._putcmd("AUTH PLAIN")  # type: ignore[attr-defined]
    assert client._getline()[0] == b"+ "  # type: ignore[attr-defined]
    client._putcmd(base64.b64encode(f"\0{user}\0{password}".encode()).decode())  # type: ignore[attr-defined]
    return bytes(client._getresp())  # type: ignore[attr-defined]


def test_poplib_pop3_ssl_on_995_with_auth_plain(world: UpProcess) -> None:
    """What getmail6 (no STLS) needs: POP3S on 995 (RFC 8314 §3.3), SASL PLAIN (RFC 5034)."""
    client = poplib.POP3_SSL(*world.address(MX, 995), context=context(world), timeout=10)
    try:
        assert client.getwelcome().startswith(b"+OK ")
        capa = client.capa()
        assert capa["SASL"] == ["PLAIN"] and "STLS" not in capa
        assert _auth_plain(client, "bob", "builder") == b"+OK Logged in."
        count, _ = client.stat()
        assert len(client.uidl()[1]) == count
        client.quit()
    finally:
        client.close()


def test_poplib_auth_plain_after_stls_and_a_wrong_password(world: UpProcess) -> None:
    client = poplib.POP3(*world.address(MX, 110), timeout=10)
    try:
        client.stls(context=context(world))
        with pytest.raises(poplib.error_proto, match="Authentication failed"):
            _auth_plain(client, "bob", "not-his")
        assert _auth_plain(client, "bob", "builder") == b"+OK Logged in."
        client.quit()
    finally:
        client.close()
