"""CATALOGUE.md D45-D54 end to end: AUTH on the seed world's submission port 587 (and 465).

AUTH is neither offered nor accepted before TLS unless the world allows plaintext AUTH
(RFC 4954 §4); the error replies of RFC 4954; a brute-force limit (``421`` after a few
failures); and no password, plain or base64, in any trace event's text or in any log.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import poplib
import smtplib
import ssl
from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB_PASSWORD,
    MX,
    SUBMISSION,
    Wire,
    client_context,
    code,
    codes,
    hardening_world,
    send_recv,
    smtp,
    starttls,
)


def b64(data: bytes) -> bytes:
    return base64.b64encode(data)


PLAIN_OK = b64(f"\0{ALICE}\0{ALICE_PASSWORD}".encode())
PLAIN_BAD = b64(f"\0{ALICE}\0not-{ALICE_PASSWORD}".encode())


def submission(net: Network) -> Wire:
    """A session on 587 inside TLS, after EHLO."""
    wire = smtp(net, SUBMISSION, 587)
    starttls(net, wire, SUBMISSION)
    return wire


def test_d45_no_auth_over_plaintext_on_587(net: Network) -> None:
    with smtp(net, SUBMISSION, 587, ehlo=False) as wire:
        (ehlo,) = send_recv(wire, b"EHLO t\r\n")
        assert b"AUTH" not in ehlo
        (reply,) = send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")
        assert reply.startswith(b"530 5.7.0")  # TLS first (RFC 3207 §4, RFC 4954 §4)
        starttls(net, wire, SUBMISSION)
        (ehlo,) = send_recv(wire, b"EHLO t\r\n")
        assert b"250-AUTH PLAIN LOGIN" in ehlo
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [235]


@pytest.fixture(scope="module")
def plaintext_auth() -> Iterator[Network]:
    with hardening_world(submission={"auth_plaintext": True}).start() as running:
        yield running


def test_d45_a_world_may_allow_plaintext_auth(plaintext_auth: Network) -> None:
    with smtp(plaintext_auth, SUBMISSION, 587, ehlo=False) as wire:
        assert b"250-AUTH PLAIN LOGIN" in send_recv(wire, b"EHLO t\r\n")[0]
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [235]


def test_d45_port_25_never_offers_auth(net: Network) -> None:
    with smtp(net, MX, 25, ehlo=False) as wire:
        starttls(net, wire, MX)
        assert b"AUTH" not in send_recv(wire, b"EHLO t\r\n")[0]
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [503]


def test_d46_wrong_credentials_get_535_and_stay_unauthenticated(net: Network) -> None:
    with submission(net) as wire:
        (reply,) = send_recv(wire, b"AUTH PLAIN " + PLAIN_BAD + b"\r\n")
        assert reply.startswith(b"535 5.7.8")  # RFC 4954 §6
        assert send_recv(wire, b"MAIL FROM:<alice@example.com>\r\n")[0].startswith(
            b"530 5.7.0 Authentication required")


@pytest.mark.parametrize(("exchange", "expected"), [
    ([b"AUTH PLAIN not-b64!\r\n"], b"501 5.5.2"),
    ([b"AUTH PLAIN " + b64(b"\0onlylogin") + b"\r\n"], b"501 5.5.2"),
    ([b"AUTH LOGIN\r\n", b"*\r\n"], b"501 5.7.0"),
    ([b"AUTH FOO\r\n"], b"504 5.5.4"),
], ids=["bad-base64", "cannot-split", "cancelled", "unknown-mechanism"])
def test_d47_malformed_exchanges(net: Network, exchange: list[bytes], expected: bytes) -> None:
    with submission(net) as wire:
        for step in exchange[:-1]:
            assert code(send_recv(wire, step)[0]) == 334
        assert send_recv(wire, exchange[-1])[0].startswith(expected)
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]


def test_d48_auth_during_a_transaction_gets_503(net: Network) -> None:
    with submission(net) as wire:
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [235]
        assert codes(send_recv(wire, b"MAIL FROM:<alice@example.com>\r\n")) == [250]
        assert send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")[0].startswith(
            b"503 5.5.1 Error: MAIL transaction in progress")  # RFC 4954 §4
        assert codes(send_recv(wire, b"RCPT TO:<bob@anotherdomain.org>\r\n")) == [250]


def test_d49_second_auth_gets_503_even_after_rset(net: Network) -> None:
    with submission(net) as wire:
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [235]
        assert send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")[0].startswith(
            b"503 5.5.1 Error: already authenticated")  # RFC 4954 §4
        assert codes(send_recv(wire, b"RSET\r\nAUTH LOGIN\r\n", replies=2)) == [250, 503]
        assert codes(send_recv(wire, b"MAIL FROM:<alice@example.com>\r\n")) == [250]


def test_d50_auth_before_ehlo_and_after_helo(net: Network) -> None:
    with smtp(net, SUBMISSION, 587) as wire:
        starttls(net, wire, SUBMISSION)  # ends with EHLO; a new TLS session forgets it:
    with smtp(net, SUBMISSION, 587) as wire:
        assert codes(send_recv(wire, b"STARTTLS\r\n")) == [220]
        wire.starttls(client_context(net), SUBMISSION)
        assert send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")[0].startswith(
            b"503 5.5.1 Error: send HELO/EHLO first")
        assert codes(send_recv(wire, b"HELO t\r\n")) == [250]
        assert code(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")[0]) == 500  # ESMTP only


@pytest.mark.parametrize("command", [b"MAIL FROM:<alice@example.com>\r\n",
                                     b"RCPT TO:<bob@anotherdomain.org>\r\n", b"DATA\r\n",
                                     b"VRFY bob\r\n", b"HELP\r\n"])
def test_d51_authentication_is_required_on_submission(net: Network, command: bytes) -> None:
    with submission(net) as wire:
        assert send_recv(wire, command)[0].startswith(b"530 5.7.0 Authentication required")
        assert codes(send_recv(wire, b"AUTH PLAIN " + PLAIN_OK + b"\r\n")) == [235]
        if command.startswith(b"RCPT"):
            assert codes(send_recv(wire, command)) == [503]  # now: need MAIL
        elif not command.startswith(b"DATA"):
            # HELP: 500, as Postfix (it implements no HELP); VRFY bob: 550 5.1.1 here
            # (bob@example.com does not exist: VRFY runs the recipient checks, as Postfix's)
            assert code(send_recv(wire, command)[0]) in (250, 252, 500, 550)


def test_d52_overlong_auth_response_gets_500_and_memory_stays_bounded(net: Network) -> None:
    with submission(net) as wire:
        assert codes(send_recv(wire, b"AUTH PLAIN\r\n")) == [334]
        (reply,) = send_recv(wire, b"A" * 100_000 + b"\r\n")
        assert reply.startswith(b"500 5.5.6")  # RFC 4954 §4
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]


def test_d53_brute_force_gets_421_after_three_failures(net: Network) -> None:
    with submission(net) as wire:
        for _ in range(3):  # the catalogue's 25 attempts end at the third
            (reply,) = send_recv(wire, b"AUTH PLAIN " + PLAIN_BAD + b"\r\n")
            assert reply.startswith(b"535 5.7.8")
        farewell = wire.read_reply()
        assert farewell.startswith(b"421 4.7.0") and b"authentication" in farewell
        assert wire.read_until_closed() == b""  # and the connection is closed


def test_d54_passwords_never_in_the_trace_or_the_logs(net: Network,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "Sw0rdfish-Secret"
    user = net.world.user(ALICE)
    assert user is not None
    user.password = secret
    try:
        forms = [secret, secret.encode().hex(), b64(secret.encode()).decode(),
                 b64(f"\0{ALICE}\0{secret}".encode()).decode()]
        context = client_context(net)
        for mechanism in ("PLAIN", "LOGIN"):
            for password in (secret, secret + "x"):  # a success and a failure each
                with smtplib.SMTP(*net.address(SUBMISSION, 587)) as client:
                    client.starttls(context=context)
                    client.ehlo()
                    client.user, client.password = ALICE, password
                    auth = client.auth_plain if mechanism == "PLAIN" else client.auth_login
                    with contextlib.suppress(smtplib.SMTPAuthenticationError):
                        client.auth(mechanism, auth)
        with smtplib.SMTP_SSL(*net.address(SUBMISSION, 465), context=context) as client:
            client.login(ALICE, secret)
        pop = poplib.POP3(*net.address(MX, 110))
        pop.stls(context=ssl.create_default_context(cafile=str(net.ca_file)))
        pop.user("bob")
        pop.pass_(BOB_PASSWORD)
        pop.quit()
        forms.append(BOB_PASSWORD)
        texts = [event.text() for event in net.world.trace.events()]
        assert any("AUTH" in text for text in texts)  # the exchanges are in the trace ...
        leaks = [text for text in texts if any(form in text for form in forms)]
        assert leaks == []  # ... but never a password
        assert not any(form in caplog.text for form in forms)
    finally:
        user.password = ALICE_PASSWORD
