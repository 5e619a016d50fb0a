"""CATALOGUE.md B20-B30 end to end: SMTP smuggling and line-ending integrity on the seed MX.

Each fake end-of-data is sent in ONE write after the 354, followed by a complete smuggled
transaction (The-Login's payload shape, lower-case commands). Pass criteria (catalogue B):
exactly one final reply, never the ``250/250/354/250`` of a second transaction, exactly
one message stored, nothing from the smuggled sender, and what was smuggled is inside that
one message (with every stray CR/LF turned into a space).
"""

from __future__ import annotations

import pytest

from simsmtp.net.network import Network

from .conftest import BOB, codes, send_recv, senders, smtp, stored, token

FAKE_ENDS = {
    "b20_lf_dot_lf": b"\n.\n",
    "b21_lf_dot_crlf": b"\n.\r\n",
    "b22_cr_dot_crlf": b"\r.\r\n",
    "b23_crlf_dot_lf": b"\r\n.\n",
    "b24_cr_dot_cr": b"\r.\r",
    "b24_cr_dot_lf": b"\r.\n",
    "b24_lf_dot_cr": b"\n.\r",
    "b24_crlf_dot_cr": b"\r\n.\r",
    "b25_crlf_dot_crcrlf": b"\r\n.\r\r\n",
    "b25_crcrlf_dot_crcrlf": b"\r\r\n.\r\r\n",
    "b26_nul_before_dot": b"\r\n\x00.\r\n",
    "b26_nul_after_dot": b"\r\n.\x00\r\n",
}


def body(mark: str, fake_end: bytes, smuggler: str) -> bytes:
    """BODY(x) of catalogue B with a per-test smuggled sender."""
    return (f"From: a@relay.example\r\nTo: {BOB}\r\nSubject: t {mark}\r\n\r\nline1".encode()
            + fake_end
            + f"mail FROM:<{smuggler}>\r\nrcpt TO:<{BOB}>\r\ndata\r\nFrom: {smuggler}\r\n"
              f"\r\nSMUGGLED {mark}\r\n.\r\n".encode())


def transaction(net: Network, content: bytes) -> list[int]:
    """MAIL, RCPT, DATA, then ``content`` in one write; the codes of every reply seen."""
    with smtp(net) as wire:
        got = codes(send_recv(wire, b"MAIL FROM:<a@relay.example>\r\n"
                                    b"RCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n", replies=3))
        wire.send(content)
        got.append(int(wire.read_reply()[:3]))
        while not wire.silent():  # every further reply is evidence of a second transaction
            got.append(int(wire.read_reply()[:3]))
        got += codes(send_recv(wire, b"NOOP\r\n"))
    return got


@pytest.mark.parametrize("fake_end", FAKE_ENDS.values(), ids=FAKE_ENDS.keys())
def test_b20_b26_fake_end_of_data_smuggles_nothing(net: Network, fake_end: bytes) -> None:
    mark, smuggler = token(), f"smuggled-{token()}@evil.example"
    assert transaction(net, body(mark, fake_end, smuggler)) == [250, 250, 354, 250, 250]
    (message,) = stored(net, BOB, mark)  # exactly one message
    assert f"SMUGGLED {mark}".encode() in message  # the smuggled part stayed content
    assert smuggler not in senders(net)  # nobody sent as the smuggler
    # RFC 5322 §2.3 / Postfix cleanup_replace_stray_cr_lf: on disk (LF line endings) no
    # stray CR is left to carry a fake end-of-data to the next hop
    assert b"\r" not in message


def test_b21_aiosmtpd_regression_no_smuggling(net: Network) -> None:
    # aiosmtpd tests/test_smtpsmuggling.py (CVE-2024-27305), ported to raw bytes
    mark = token()
    content = (f"From: a@relay.example\r\nTo: {BOB}\r\nSubject: {mark}\r\n\r\n"
               "Testing\n.\r\nNO SMUGGLING\n\r\n.\r\n").encode()
    assert transaction(net, content) == [250, 250, 354, 250, 250]
    (message,) = stored(net, BOB, mark)
    assert b"NO SMUGGLING" in message


def test_b27_the_genuine_terminator_still_works(net: Network) -> None:
    mark = token()
    content = f"Subject: ok {mark}\r\n\r\nbody\r\n.\r\n".encode()
    assert transaction(net, content) == [250, 250, 354, 250, 250]
    (message,) = stored(net, BOB, mark)
    assert message.endswith(b"\n\nbody\n")


def test_b28_message_pipelined_past_data_is_processed_strictly_in_order(net: Network) -> None:
    # Our choice (catalogue 28, "minimally acceptable"): no Postfix 554 synchronization
    # error; the input is processed in order and never mis-framed.
    first, second = token(), token()
    with smtp(net) as wire:
        got = send_recv(wire, b"MAIL FROM:<a@relay.example>\r\nRCPT TO:<bob@anotherdomain.org>"
                              b"\r\nDATA\r\n" + f"Subject: {first}\r\n\r\nbody\r\n.\r\n".encode()
                        + b"MAIL FROM:<b@relay.example>\r\nRCPT TO:<bob@anotherdomain.org>"
                          b"\r\nDATA\r\n" + f"Subject: {second}\r\n\r\nbody\r\n.\r\n".encode(),
                        replies=8)
        assert codes(got) == [250, 250, 354, 250, 250, 250, 354, 250]
        assert wire.silent()
    assert len(stored(net, BOB, first)) == len(stored(net, BOB, second)) == 1


def test_b29_bare_lf_never_ends_a_command_line(net: Network) -> None:
    # Our policy: reject (RFC 5321 §4.1.1.4, Postfix smtpd_forbid_bare_newline = reject):
    # "NOOP\n" is not a line; when a CRLF finally comes, the line holding a bare LF is
    # refused and never executed.
    with smtp(net) as wire:
        wire.send(b"NOOP\n")
        assert wire.silent()
        (reply,) = send_recv(wire, b"\r\n")
        assert reply.startswith(b"500 5.5.2 Error: bare <LF> received")
        (reply,) = send_recv(wire, b"RSET\rNOOP\r\n")
        assert reply.startswith(b"500 5.5.2 Error: bare <CR> received")
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]


def test_b29_smuggled_command_behind_a_bare_lf_is_not_executed(net: Network) -> None:
    with smtp(net) as wire:
        (reply,) = send_recv(wire, b"NOOP\nMAIL FROM:<x@evil.example>\r\n")
        assert reply.startswith(b"500 5.5.2")
        assert codes(send_recv(wire, b"RCPT TO:<bob@anotherdomain.org>\r\n")) == [503]


def test_b30_stray_cr_and_lf_in_content_become_spaces(net: Network) -> None:
    # Our policy: accept, and replace each stray CR or LF by a space (Postfix
    # cleanup_replace_stray_cr_lf), so neither the stored nor a relayed copy has one.
    mark = token()
    content = f"Subject: {mark}\r\n\r\n".encode() + b"l1\nl2\rl3\r\n.\r\n"
    assert transaction(net, content) == [250, 250, 354, 250, 250]
    (message,) = stored(net, BOB, mark)
    assert message.endswith(b"\n\nl1 l2 l3\n") and b"\r" not in message
    (event,) = [e for e in net.world.trace.events("smtp.message")
                if mark.encode() in e["content"]]
    content_seen = event["content"]
    assert b"\r" not in content_seen.replace(b"\r\n", b"")
    assert b"\n" not in content_seen.replace(b"\r\n", b"")
