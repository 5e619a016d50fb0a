"""The attacks on the path between two MTAs: a passive eavesdropper and an active attacker
that strips STARTTLS. Pure tests of the stripper (bytes in, bytes out), then the running
seed world with the attacker in front of mail.anotherdomain.org."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from simsmtp.capture.path import connections_between, view_path
from simsmtp.net.attacker import (
    STARTTLS_UNAVAILABLE,
    StartTLSStripper,
    explain,
    strip_starttls_lines,
)
from simsmtp.net.network import Network
from simsmtp.net.session import TLS_NOT_OFFERED
from simsmtp.net.tap import Tap
from simsmtp.world import World
from simsmtp.world.scenario import seed_message
from tests.conftest import require_program

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
SENDER, TARGET = "mail.example.com", "mail.anotherdomain.org"
BODY_LINE = "Just a reminder about our meeting tomorrow at 10 AM."

EHLO_REPLY = (b"250-mail.anotherdomain.org\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n"
              b"250-STARTTLS\r\n250-ENHANCEDSTATUSCODES\r\n250 CHUNKING\r\n")


def _lines(reply: bytes) -> list[bytes]:
    return reply.splitlines(keepends=True)


def _well_formed(reply: bytes) -> bool:
    """RFC 5321 §4.2.1: one code throughout, "-" on every line but the last, " " on it."""
    lines = _lines(reply)
    return (all(line.endswith(b"\r\n") for line in lines)
            and len({line[:3] for line in lines}) == 1
            and all(line[3:4] == b"-" for line in lines[:-1])
            and lines[-1][3:4] == b" ")


# ------------------------------------------------------------------------------ the EHLO edit

def test_strip_removes_a_middle_starttls_line_and_keeps_the_rest_exact() -> None:
    new, removed = strip_starttls_lines(_lines(EHLO_REPLY))
    assert removed == [b"250-STARTTLS\r\n"]
    assert b"".join(new) == EHLO_REPLY.replace(b"250-STARTTLS\r\n", b"")
    assert _well_formed(b"".join(new))


@pytest.mark.parametrize(("reply", "expected"), [
    # STARTTLS last: the line before it becomes the final "250 " line
    (b"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", b"250-mx\r\n250 PIPELINING\r\n"),
    # STARTTLS the only extension: the greeting line is left, final
    (b"250-mx\r\n250 STARTTLS\r\n", b"250 mx\r\n"),
    # keywords are case-insensitive (RFC 5321 §2.4), and may carry trailing spaces
    (b"250-mx\r\n250-starttls \r\n250 8BITMIME\r\n", b"250-mx\r\n250 8BITMIME\r\n"),
])
def test_strip_keeps_the_reply_well_formed(reply: bytes, expected: bytes) -> None:
    new, removed = strip_starttls_lines(_lines(reply))
    assert b"".join(new) == expected
    assert len(removed) == 1
    assert _well_formed(b"".join(new))


def test_strip_never_touches_the_first_line_nor_a_reply_without_starttls() -> None:
    reply = _lines(b"250-STARTTLS\r\n250 8BITMIME\r\n")  # a host called STARTTLS
    assert strip_starttls_lines(reply) == (reply, [])
    plain = _lines(b"250-mx\r\n250 8BITMIME\r\n")
    assert strip_starttls_lines(plain) == (plain, [])


# ------------------------------------------------------------------------------ the relay core

def _converse(stripper: StartTLSStripper, script: list[tuple[str, bytes]]) -> tuple[bytes,
                                                                                     bytes]:
    """Feed ("c"|"s", bytes) in order; return (what the server got, what the client got)."""
    to_server, to_client = b"", b""
    for who, data in script:
        if who == "c":
            stripper.from_client(data)
        else:
            stripper.from_server(data)
        to_server += stripper.to_server()
        to_client += stripper.to_client()
    return to_server, to_client


SESSION: list[tuple[str, bytes]] = [
    ("s", b"220 mail.anotherdomain.org ESMTP Postfix\r\n"),
    ("c", b"EHLO mail.example.com\r\n"),
    ("s", EHLO_REPLY),
    ("c", b"MAIL FROM:<alice@example.com>\r\nRCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n"),
    ("s", b"250 2.1.0 Ok\r\n250 2.1.5 Ok\r\n354 End data with <CR><LF>.<CR><LF>\r\n"),
    # content that looks like commands and like an EHLO reply must pass untouched
    ("c", b"Subject: x\r\n\r\nSTARTTLS\r\n250-STARTTLS\r\n..\r\n.\r\n"),
    ("s", b"250 2.0.0 Ok: queued as ABC\r\n"),
    ("c", b"QUIT\r\n"),
    ("s", b"221 2.0.0 Bye\r\n"),
]


def test_stripper_edits_only_the_ehlo_reply() -> None:
    stripper = StartTLSStripper()
    to_server, to_client = _converse(stripper, SESSION)
    client_bytes = b"".join(d for w, d in SESSION if w == "c")
    server_bytes = b"".join(d for w, d in SESSION if w == "s")
    assert to_server == client_bytes  # every command and the content, byte for byte
    assert to_client == server_bytes.replace(b"250-STARTTLS\r\n", b"", 1)
    (action,) = stripper.history
    assert (action.action, action.line) == ("strip_starttls", "250-STARTTLS")
    assert "250-STARTTLS" in action.before and "STARTTLS" not in action.after


def test_stripper_gives_the_same_bytes_when_fed_one_byte_at_a_time() -> None:
    trickle = [(who, data[i:i + 1]) for who, data in SESSION for i in range(len(data))]
    whole = _converse(StartTLSStripper(), SESSION)
    assert _converse(StartTLSStripper(), trickle) == whole


def test_starttls_sent_anyway_is_answered_454_in_order_and_never_forwarded() -> None:
    stripper = StartTLSStripper()
    to_server, to_client = _converse(stripper, [
        ("s", b"220 mx ESMTP\r\n"),
        ("c", b"EHLO a\r\n"),
        ("s", b"250-mx\r\n250 STARTTLS\r\n"),
        ("c", b"NOOP\r\nSTARTTLS\r\n"),  # pipelined: the 454 must wait for NOOP's reply
    ])
    assert to_server == b"EHLO a\r\nNOOP\r\n"
    assert to_client == b"220 mx ESMTP\r\n250 mx\r\n"
    stripper.from_server(b"250 2.0.0 Ok\r\n")
    assert stripper.to_client() == b"250 2.0.0 Ok\r\n" + STARTTLS_UNAVAILABLE.to_bytes()
    assert STARTTLS_UNAVAILABLE.to_bytes() == \
        b"454 4.7.0 TLS not available due to local problem\r\n"
    assert [a.action for a in stripper.history] == ["strip_starttls", "starttls_refused"]
    stripper.from_client(b"MAIL FROM:<a@b>\r\n")  # the session goes on in plaintext
    assert stripper.to_server() == b"MAIL FROM:<a@b>\r\n"


def test_forward_mode_lets_starttls_through_and_then_copies_tls_blindly() -> None:
    stripper = StartTLSStripper(strip=False, on_starttls="forward")
    records = b"\x16\x03\x01\x00\x05hello\r\n250-STARTTLS\r\n"
    to_server, to_client = _converse(stripper, [
        ("s", b"220 mx ESMTP\r\n"),
        ("c", b"EHLO a\r\n"),
        ("s", b"250-mx\r\n250 STARTTLS\r\n"),
        ("c", b"STARTTLS\r\n"),
        ("s", b"220 2.0.0 Ready to start TLS\r\n"),
        ("c", records),
        ("s", records),
    ])
    assert to_server == b"EHLO a\r\nSTARTTLS\r\n" + records
    assert to_client == (b"220 mx ESMTP\r\n250-mx\r\n250 STARTTLS\r\n"
                         b"220 2.0.0 Ready to start TLS\r\n" + records)
    assert stripper.passthrough
    assert [a.action for a in stripper.history] == ["starttls_forwarded"]


def test_bdat_chunks_and_refused_data_are_followed() -> None:
    stripper = StartTLSStripper()
    to_server, to_client = _converse(stripper, [
        ("s", b"220 mx\r\n"),
        ("c", b"BDAT 10 LAST\r\nSTARTTLS\r\n"),  # RFC 3030 §2: ten octets of content
        ("s", b"250 2.0.0 Ok\r\n"),
        ("c", b"DATA\r\n"),
        ("s", b"554 5.5.1 Error: no valid recipients\r\n"),
        ("c", b"STARTTLS\r\n"),  # DATA failed: this is a command again
    ])
    assert to_server == b"BDAT 10 LAST\r\nSTARTTLS\r\nDATA\r\n"
    assert to_client.endswith(b"554 5.5.1 Error: no valid recipients\r\n"
                              + STARTTLS_UNAVAILABLE.to_bytes())


def test_unknown_on_starttls_is_refused() -> None:
    with pytest.raises(ValueError, match="on_starttls"):
        StartTLSStripper(on_starttls="ignore")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ the path view

def test_path_view_picks_connections_between_the_two_addresses_only() -> None:
    tap = Tap()
    for conn_id, client, server in [(1, "127.0.0.2", "127.0.0.3"),
                                    (2, "127.0.0.3", "127.0.0.2"),
                                    (3, "127.0.0.1", "127.0.0.3")]:
        tap.open(conn_id, client=(client, 40000 + conn_id), server=(server, 25),
                 service="smtp")
        tap.data(conn_id, "s2c", b"220 mx ESMTP\r\n")
        tap.data(conn_id, "c2s", b"EHLO a\r\nMAIL FROM:<x@y>\r\n")
        tap.data(conn_id, "s2c", b"250 mx\r\n250 2.1.0 Ok\r\n")
    assert [c.id for c in connections_between(tap, {"127.0.0.2"}, {"127.0.0.3"})] == [1, 2]
    view = view_path(tap, {"127.0.0.2"}, {"127.0.0.3"}, names=("a", "b"))
    assert [(leg.client, leg.server) for leg in view.legs] == [("a", "b"), ("b", "a")]
    assert view.findings.mail_from == [(1, "x@y"), (2, "x@y")]
    assert "still open" in view.report() and "in clear" in view.report()


# ------------------------------------------------------------------------------ the world

def _start(outbound_tls: str = "opportunistic") -> Iterator[Network]:
    world = World.seed_world()
    world.host(SENDER).policy.outbound_tls = outbound_tls
    with world.start(storage="memory") as net:
        yield net


@pytest.fixture
def net() -> Iterator[Network]:
    yield from _start()


@pytest.fixture
def strict_net() -> Iterator[Network]:
    yield from _start("required")


def _send(net: Network) -> None:
    """Alice submits the seed message; the agent does everything that is due now."""
    steps = net.submit(seed_message(net.world), sender=ALICE, recipients=BOB, user=ALICE,
                       password="wonderland")
    assert steps[-2].code == 250
    assert net.wait(net.idle, 10)
    assert net.wait(lambda: all(c.closed_at is not None for c in net.tap.connections()
                                if c.transport == "tcp"), 5)


def _kinds(net: Network, prefix: str) -> list[str]:
    return [e.kind for e in net.world.trace.events(prefix)]


def test_opportunistic_sender_falls_back_and_the_eavesdropper_reads_everything(
        net: Network) -> None:
    eve = net.eavesdropper(between=(SENDER, TARGET))
    mallory = net.strip_starttls(target=TARGET)
    _send(net)
    assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
    seen = eve.findings()
    assert (ALICE in [a for _, a in seen.mail_from]) and (BOB in [a for _, a in seen.rcpt_to])
    assert any(BODY_LINE in m.body and m.header("Subject") == "Meeting Tomorrow"
               for m in seen.messages)
    assert not seen.tls  # no TLS anywhere on the path
    assert BODY_LINE in eve.report() and "Verdict: mail crossed this path in clear" in \
        eve.report()
    # a real connection pair: the sender's leg (recorded by Mallory), the leg to the MX
    ((sender_leg, mx_leg),) = mallory.pairs()
    assert mx_leg is not None and {sender_leg, mx_leg} == set(seen.connections)
    caps = {conn: [c for i, c in seen.capabilities if i == conn] for conn in (sender_leg,
                                                                                mx_leg)}
    assert "STARTTLS" in caps[mx_leg] and "STARTTLS" not in caps[sender_leg]
    (stripped,) = net.world.trace.events("attack.strip_starttls")
    assert stripped.host == "mitm"
    assert (stripped.data["conn"], stripped.data["upstream_conn"], stripped.data["line"]) == \
        (sender_leg, mx_leg, "250-STARTTLS")
    fallback = net.world.trace.events("tls.fallback")
    assert fallback and "did not offer STARTTLS" in fallback[0].data["reason"]


def test_the_stripped_ehlo_reply_on_the_wire_is_well_formed_and_lacks_starttls(
        net: Network) -> None:
    mallory = net.strip_starttls(target=TARGET)
    _send(net)
    ((sender_leg, mx_leg),) = mallory.pairs()
    assert mx_leg is not None

    def ehlo_reply(conn_id: int) -> bytes:
        replies = net.tap.stream(conn_id, "s2c").split(b"\r\n", 1)[1]  # after the greeting
        return replies[:replies.index(b"250 ") + replies[replies.index(b"250 "):].index(
            b"\r\n") + 2]

    stripped, original = ehlo_reply(sender_leg), ehlo_reply(mx_leg)
    assert b"STARTTLS" in original and b"STARTTLS" not in stripped.upper()
    assert _well_formed(stripped) and _well_formed(original)
    assert stripped == original.replace(b"250-STARTTLS\r\n", b"")
    # everything else went through unchanged, both ways
    assert net.tap.stream(sender_leg, "c2s") == net.tap.stream(mx_leg, "c2s")


def test_required_tls_sender_defers_and_the_trace_says_why(strict_net: Network) -> None:
    net = strict_net
    eve = net.eavesdropper(between=(SENDER, TARGET))
    mallory = net.strip_starttls(target=TARGET)
    _send(net)
    assert net.mailbox(BOB) == []
    (failed,) = net.world.trace.events("tls.required_failed")
    assert failed.data["reason"] == TLS_NOT_OFFERED
    (deferred,) = net.world.trace.events("delivery.deferred")
    assert (deferred.data["reason"], deferred.data["status"]) == (TLS_NOT_OFFERED, "4.7.4")
    assert "attack.strip_starttls" in _kinds(net, "attack")
    seen = eve.findings()
    assert not seen.messages and not seen.mail_from and not seen.in_clear
    # off the path again, the retry goes straight to the MX and uses TLS
    mallory.stop()
    assert "attack.stopped" in _kinds(net, "attack") and not net.redirects
    net.fast_forward(deferred.data["retry_in"])
    assert net.wait(net.idle, 10)
    assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
    assert net.world.trace.events("tls.started")


def test_without_the_attacker_the_same_delivery_uses_tls_and_shows_no_body(
        net: Network) -> None:
    eve = net.eavesdropper(between=(SENDER, TARGET))
    _send(net)
    assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
    assert not net.world.trace.events("attack")
    seen = eve.findings()
    assert len(seen.connections) == 1
    assert not seen.messages and not seen.mail_from and not seen.rcpt_to
    assert not seen.in_clear
    (tls,) = seen.tls
    assert tls.sni == TARGET and tls.offered_suites and tls.application_records > 0
    (conn_id,) = seen.connections
    assert ("STARTTLS" in [c for i, c in seen.capabilities if i == conn_id])
    report = eve.report()
    assert BODY_LINE not in report and "Verdict: only what TLS leaks" in report
    assert f"SNI (in clear): {TARGET}" in report


def test_a_refused_starttls_is_a_downgrade_too(net: Network) -> None:
    net.strip_starttls(target=TARGET, strip=False, on_starttls="refuse")
    _send(net)
    (refused,) = net.world.trace.events("attack.starttls_refused")
    assert refused.data["reply"] == str(STARTTLS_UNAVAILABLE)
    (fallback,) = net.world.trace.events("tls.fallback")
    assert "454 4.7.0" in fallback.data["reason"]
    assert any(BODY_LINE in m.body for m in net.eavesdropper(between=(SENDER, TARGET))
               .findings().messages)


def test_a_relay_that_lets_starttls_through_reads_nothing(net: Network) -> None:
    mallory = net.strip_starttls(target=TARGET, strip=False, on_starttls="forward")
    _send(net)
    assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
    assert [a.action for a in mallory.actions] == ["starttls_forwarded"]
    seen = net.eavesdropper(between=(SENDER, TARGET)).findings()
    assert len(seen.tls) == 2 and not seen.in_clear  # both legs: records only


def test_eavesdropper_updates_report_each_finished_connection_once(net: Network) -> None:
    eve = net.eavesdropper(between=(SENDER, TARGET))
    assert eve.updates() == [] and "Nothing crossed this path yet." in eve.report()
    net.strip_starttls(target=TARGET)
    _send(net)
    fresh = eve.updates()
    assert len(fresh) == 2 and all(leg.findings.messages for leg in fresh)
    assert eve.updates() == []


def test_stopping_the_world_takes_the_attacker_down() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        mallory = net.strip_starttls(target=TARGET)
        assert net.redirects == {TARGET: mallory.address[1]}
        assert mallory.address[0] == net.address(TARGET, 25)[0]
    assert not mallory.running
    assert [e.kind for e in world.trace.events("attack")] == ["attack.started",
                                                             "attack.stopped"]


def test_the_explanation_names_the_real_defences() -> None:
    text = explain()
    for needle in ("plaintext", "opportunistic", "MTA-STS", "RFC 8461", "DANE", "RFC 7672",
                   "TLSA", "DNSSEC", "REQUIRETLS", "RFC 8689"):
        assert needle in text


@pytest.mark.interop
def test_the_attacked_capture_opens_in_tshark_with_the_body_visible(
        net: Network, tmp_path: Path) -> None:
    tshark = require_program("tshark")
    from simsmtp.capture.pcap import export_pcap

    net.strip_starttls(target=TARGET)
    _send(net)
    path = tmp_path / "attacked.pcap"
    export_pcap(net.tap, path)

    def run(*args: str) -> str:
        done = subprocess.run([tshark, "-r", str(path), *args], capture_output=True,
                              text=True, timeout=60, check=True)
        return done.stdout

    message = run("-Y", "imf", "-O", "imf")
    assert BODY_LINE in message and "Subject: Meeting Tomorrow" in message
    fields = run("-Y", "smtp", "-T", "fields", "-e", "tcp.stream", "-e", "smtp.command_line",
                 "-e", "smtp.rsp.parameter")
    assert "MAIL FROM:<alice@example.com>" in fields
    streams: dict[str, str] = {}
    for line in fields.splitlines():
        stream, _, rest = line.partition("\t")
        streams[stream] = streams.get(stream, "") + rest
    # both legs are SMTP on port 25 from mail.example.com; STARTTLS is offered on one only
    legs = [s for s in streams.values() if "EHLO mail.example.com" in s]
    assert len(legs) == 2 and all("CHUNKING" in s and "DATA" in s for s in legs)
    assert sorted("STARTTLS" in s for s in legs) == [False, True]
    assert run("-Y", "tcp.analysis.flags").strip() == ""
