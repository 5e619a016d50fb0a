"""IMAP on the wire: the eavesdropper reads a LOGIN in clear (atoms, quoted strings,
literals), AUTHENTICATE PLAIN, the messages fetched and appended; after STARTTLS only TLS
records; the transcript pairs IMAP commands with their tagged replies."""

from __future__ import annotations

import base64
import imaplib
import ssl
from collections.abc import Iterator

import pytest

from simsmtp.capture.eavesdropper import eavesdrop
from simsmtp.capture.transcript import pair_turns, transcript
from simsmtp.net.network import Network
from simsmtp.world import World
from tests.capture._scripted import Wire, new_tap

MX = "mail.anotherdomain.org"
MSG = b"Subject: The secret picnic\r\nFrom: alice@example.com\r\n\r\nBring the cake.\r\n"


@pytest.fixture
def net() -> Iterator[Network]:
    world = World.seed_world()
    world.host(MX).policy.pop3_plaintext = True  # a sniffing lesson: logins in clear
    with world.start(storage="memory") as running:
        yield running


def _imap_conns(net: Network) -> list[int]:
    return [c.id for c in net.tap.connections() if c.service in ("imap", "imaps")]


def test_a_login_in_clear_shows_the_password_and_the_messages(net: Network) -> None:
    m = imaplib.IMAP4(*net.address(MX, 143), timeout=10)
    m.login("bob", "builder")
    m.append("INBOX", None, None, MSG)
    m.select("INBOX")
    m.fetch("1", "(BODY[])")
    m.logout()
    [conn] = _imap_conns(net)
    findings = eavesdrop(net.tap, conn)
    (cred,) = findings.credentials
    assert (cred.mechanism, cred.username, cred.password) == ("IMAP LOGIN", "bob", "builder")
    assert findings.banners[0][1].startswith("* OK [CAPABILITY IMAP4rev1")
    assert [(s.direction, s.header("Subject")) for s in findings.messages] == [
        ("c2s", "The secret picnic"), ("s2c", "The secret picnic")]
    assert "Password for bob: builder (sent in clear, IMAP LOGIN)" in findings.report()
    text = transcript(net.tap, conn)
    assert ' -> ' in text and 'LOGIN bob "builder"' in text  # the wire, as it was
    assert "OK [READ-WRITE] Select completed." in text


def test_after_starttls_the_password_is_not_on_the_wire(net: Network) -> None:
    m = imaplib.IMAP4(*net.address(MX, 143), timeout=10)
    m.starttls(ssl_context=ssl.create_default_context(cafile=str(net.ca_file)))
    m.login("bob", "builder")
    m.logout()
    [conn] = _imap_conns(net)
    findings = eavesdrop(net.tap, conn)
    assert findings.credentials == [] and findings.tls and not findings.tls[0].decrypted
    raw = b"".join(s.data for s in net.tap.segments(conn))
    assert b"builder" not in raw


def test_quoted_literal_and_sasl_logins_on_a_scripted_wire() -> None:
    tap = new_tap()
    wire = Wire(tap, service="imap")
    wire.s("* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] Dovecot ready.")
    wire.c('a LOGIN "bob" {8}')
    wire.s("+ OK")
    wire.c(b'pa ss"wd\r\n')  # 8 octets: a literal can hold spaces and quotes
    wire.s("a NO [AUTHENTICATIONFAILED] Authentication failed.")
    wire.c('b LOGIN "carol \\"c\\"" "secret"')
    wire.s("b NO [AUTHENTICATIONFAILED] Authentication failed.")
    wire.c("c AUTHENTICATE PLAIN")
    wire.s("+ ")
    wire.c(base64.b64encode(b"\0dave\0sasl-pw").decode())
    wire.s("c OK Logged in")
    creds = [(c.mechanism, c.username, c.password) for c in eavesdrop(tap).credentials]
    assert creds == [("IMAP LOGIN", "bob", 'pa ss"wd'), ("IMAP LOGIN", 'carol "c"', "secret"),
                     ("PLAIN", "dave", "sasl-pw")]


def test_imap_turns_pair_commands_with_their_tagged_replies() -> None:
    client = b"a SELECT INBOX\r\nb FETCH 1 BODY[]\r\nc APPEND INBOX {5}\r\nhello\r\n"
    server = (b"* OK ready\r\n* 1 EXISTS\r\na OK [READ-WRITE] Select completed.\r\n"
              b"* 1 FETCH (BODY[] {8}\r\nb OK x\r\n)\r\nb OK Fetch completed.\r\n+ OK\r\n"
              b"c OK [APPENDUID 1 2] Append completed.\r\n")
    turns = [(t.direction, t.kind, t.text) for t in pair_turns(client, server, "imap")]
    assert turns == [
        ("s2c", "reply", b"* OK ready\r\n"),
        ("c2s", "command", b"a SELECT INBOX\r\n"),
        ("s2c", "reply", b"* 1 EXISTS\r\na OK [READ-WRITE] Select completed.\r\n"),
        ("c2s", "command", b"b FETCH 1 BODY[]\r\n"),
        ("s2c", "reply", b"* 1 FETCH (BODY[] {8}\r\n"),
        ("s2c", "content", b"b OK x\r\n"),  # a literal that looks like a reply is content
        ("s2c", "reply", b")\r\nb OK Fetch completed.\r\n"),
        ("c2s", "command", b"c APPEND INBOX {5}\r\nhello\r\n"),
        ("s2c", "reply", b"+ OK\r\n"),
        ("s2c", "reply", b"c OK [APPENDUID 1 2] Append completed.\r\n")]
