"""The eavesdropper reads credentials, envelope and message in clear, and nothing after
STARTTLS but what TLS itself leaks."""

from __future__ import annotations

import base64
import ssl

import pytest

from simsmtp.capture.eavesdropper import eavesdrop
from tests.capture._scripted import (
    Wire,
    b64,
    mirrored_smtp,
    new_tap,
    plain_smtp,
    pop3_session,
    smtps,
    starttls_smtp,
)


@pytest.mark.parametrize("auth", ["PLAIN", "PLAIN-334"])
def test_auth_plain_is_decoded(auth: str) -> None:
    tap = new_tap()
    conn = plain_smtp(tap, auth=auth)
    findings = eavesdrop(tap)
    (cred,) = findings.credentials
    assert (cred.conn_id, cred.mechanism, cred.username, cred.password, cred.authzid) == \
        (conn, "PLAIN", "alice@example.com", "wonderland", "")
    assert base64.b64decode(cred.encoded) == b"\0alice@example.com\0wonderland"
    assert ("Password for alice@example.com: wonderland (decoded from base64 "
            "'AGFsaWNlQGV4YW1wbGUuY29tAHdvbmRlcmxhbmQ='") in findings.report()


def test_auth_login_username_and_password_are_decoded() -> None:
    tap = new_tap()
    plain_smtp(tap, auth="LOGIN")
    (cred,) = eavesdrop(tap).credentials
    assert (cred.mechanism, cred.username, cred.password) == \
        ("LOGIN", "alice@example.com", "wonderland")
    assert b64("wonderland") in cred.encoded


def test_auth_login_with_initial_response_cancel_and_cram_md5() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.s("220 mx ESMTP")
    wire.c("AUTH LOGIN " + b64("carol"))  # RFC 4954 §4: the user name as initial response
    wire.s("334 UGFzc3dvcmQ6")
    wire.c(b64("s3cret"))
    wire.s("235 2.7.0 Ok")
    wire.c("AUTH PLAIN")
    wire.s("334 ")
    wire.c("*")  # cancelled: nothing to read
    wire.s("501 5.7.0 Authentication aborted")
    wire.c("AUTH CRAM-MD5")
    wire.s("334 PDEyMzQ1QG14Pg==")
    wire.c(b64("dave 6b0a2f1bcd3e1f4a6b0a2f1bcd3e1f4a"))
    wire.s("235 2.7.0 Ok")
    findings = eavesdrop(tap)
    assert [(c.mechanism, c.username, c.password) for c in findings.credentials] == [
        ("LOGIN", "carol", "s3cret"), ("CRAM-MD5", "dave", None)]
    assert "the password itself is not on the wire" in findings.report()


def test_envelope_headers_body_ehlo_and_banner() -> None:
    tap = new_tap()
    conn = plain_smtp(tap)
    findings = eavesdrop(tap, conn)
    assert findings.banners == [(conn, "220 mail.anotherdomain.org ESMTP Postfix")]
    assert findings.ehlo_names == [(conn, "mail.example.com")]
    assert (conn, "STARTTLS") in findings.capabilities
    assert findings.mail_from == [(conn, "alice@example.com")]
    assert findings.rcpt_to == [(conn, "bob@anotherdomain.org")]
    (message,) = findings.messages
    assert message.header("subject") == "The secret picnic"
    assert message.header("From") == "Alice <alice@example.com>"
    assert message.header("Date") == "Tue, 14 Nov 2023 22:13:20 +0000"
    # Dot-stuffing undone (RFC 5321 §4.5.2): the sender's line was ".and bring the cake."
    assert message.body == "Meet me under the old oak at noon.\n.and bring the cake.\n"
    assert findings.in_clear and findings.tls == []
    report = findings.report()
    assert "MAIL FROM:<alice@example.com>" in report and "| Meet me under" in report


def test_bdat_chunks_are_joined() -> None:
    tap = new_tap()
    wire = Wire(tap)
    wire.s("220 mx ESMTP")
    wire.c("MAIL FROM:<a@example.com>")
    wire.s("250 Ok")
    chunk1, chunk2 = b"Subject: chunky\r\n\r\n", b"..not stuffed\r\n"
    wire.c(f"BDAT {len(chunk1)}".encode() + b"\r\n" + chunk1)
    wire.s("250 Ok")
    wire.c(f"BDAT {len(chunk2)} LAST".encode() + b"\r\n" + chunk2)
    wire.s("250 Ok")
    (message,) = eavesdrop(tap).messages
    assert message.header("Subject") == "chunky"
    assert message.body == "..not stuffed\n"  # BDAT content is never dot-stuffed


def test_pop3_user_pass_and_downloaded_message() -> None:
    tap = new_tap()
    conn = pop3_session(tap)
    findings = eavesdrop(tap)
    (cred,) = findings.credentials
    assert (cred.conn_id, cred.mechanism, cred.username, cred.password) == \
        (conn, "USER/PASS", "bob", "hunter2")
    assert findings.banners == [(conn, "+OK POP3 server ready")]
    (message,) = findings.messages
    assert message.direction == "s2c" and message.header("Subject") == "The secret picnic"
    assert message.body.endswith(".and bring the cake.\n")
    assert "Password for bob: hunter2 (sent in clear, USER/PASS)" in findings.report()


def test_pop3_capa_is_capabilities_not_a_message_and_headers_are_unfolded() -> None:
    tap = new_tap()
    wire = Wire(tap, service="pop3")
    wire.s("+OK ready")
    wire.c("CAPA")
    wire.s(b"+OK Capability list follows\r\nTOP\r\nSTLS\r\n.\r\n")
    wire.c("LIST")
    wire.s(b"+OK 1 messages\r\n1 120\r\n.\r\n")
    wire.c("TOP 1 0")
    wire.s(b"+OK\r\nReceived: from a\r\n\tby b; Mon, 10 Mar 2025 09:00:00 +0000\r\n"
           b"Subject: hi\r\n\r\n.\r\n")
    findings = eavesdrop(tap)
    assert findings.capabilities == [(wire.id, "TOP"), (wire.id, "STLS")]
    (message,) = findings.messages
    assert message.header("Received") == "from a by b; Mon, 10 Mar 2025 09:00:00 +0000"


def test_apop_shows_the_user_only() -> None:
    tap = new_tap()
    wire = Wire(tap, service="pop3")
    wire.s("+OK POP3 ready <1896.697170952@mx>")
    wire.c("APOP mrose c4c9334bac560ecc979e58001b3e22fb")
    wire.s("+OK maildrop has 1 message")
    (cred,) = eavesdrop(tap).credentials
    assert (cred.mechanism, cred.username, cred.password) == ("APOP", "mrose", None)


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_3, ssl.TLSVersion.TLSv1_2])
def test_nothing_readable_after_starttls(world: tuple, version: ssl.TLSVersion) -> None:
    ca, _ = world
    tap = new_tap()
    conn = starttls_smtp(tap, ca, version=version)
    findings = eavesdrop(tap)
    assert findings.credentials == [] and findings.passwords == []
    assert findings.mail_from == [] and findings.rcpt_to == [] and findings.messages == []
    assert not findings.in_clear
    # What crossed before STARTTLS is still there; TLS leaks its metadata.
    assert findings.ehlo_names == [(conn, "mail.example.com")]
    assert findings.banners == [(conn, "220 mail.anotherdomain.org ESMTP Postfix")]
    (seen,) = findings.tls
    assert seen.sni == "mail.anotherdomain.org"
    assert seen.application_records > 5 and seen.bytes > 1000 and not seen.decrypted
    assert seen.offered_suites[0] in ("TLS_AES_256_GCM_SHA384",
                                      "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384")
    if version == ssl.TLSVersion.TLSv1_2:
        assert seen.version == "TLS 1.2"
        assert seen.certificate is not None and "CN=mail.anotherdomain.org" in seen.certificate
    else:
        assert seen.version == "TLS 1.3" and seen.certificate is None
    report = findings.report()
    assert "only encrypted records remain" in report and "wonderland" not in report
    assert "SNI (in clear): mail.anotherdomain.org" in report


def test_pop3_stls_hides_the_password(world: tuple) -> None:
    ca, _ = world
    tap = new_tap()
    pop3_session(tap, ca)
    findings = eavesdrop(tap)
    assert findings.credentials == [] and findings.messages == []
    assert len(findings.tls) == 1


def test_with_the_key_log_the_eavesdropper_reads_inside_tls(world: tuple) -> None:
    ca, keylog = world
    tap = new_tap()
    starttls_smtp(tap, ca, auth="LOGIN")
    smtps(tap, ca, client=("127.0.0.2", 40011))
    findings = eavesdrop(tap, keylog=keylog)
    assert [(c.mechanism, c.password, c.inside_tls) for c in findings.credentials] == [
        ("LOGIN", "wonderland", True), ("PLAIN", "wonderland", True)]
    assert len(findings.messages) == 2 and all(m.inside_tls for m in findings.messages)
    assert all(seen.decrypted for seen in findings.tls)
    assert "[inside TLS, with the key log]" in findings.report()


def test_starttls_injection_is_read_in_clear(world: tuple) -> None:
    """CVE-2011-0411: what a MITM pipelines after STARTTLS crossed in clear."""
    ca, _ = world
    tap = new_tap()
    wire = Wire(tap)
    wire.s("220 mx ESMTP")
    wire.c(b"STARTTLS\r\nMAIL FROM:<attacker@evil.example>\r\n")
    wire.s("220 2.0.0 Ready to start TLS")
    wire.starttls(ca)
    wire.c("MAIL FROM:<alice@example.com>")
    wire.s("250 2.1.0 Ok")
    findings = eavesdrop(tap)
    assert findings.mail_from == [(wire.id, "attacker@evil.example")]


def test_a_connection_recorded_at_both_ends_is_read_once() -> None:
    tap = new_tap()
    listener_end, _ = mirrored_smtp(tap)
    findings = eavesdrop(tap)
    assert findings.connections == [listener_end]
    assert findings.passwords == ["wonderland"]


def test_unknown_connection_raises() -> None:
    with pytest.raises(KeyError):
        eavesdrop(new_tap(), 5)
