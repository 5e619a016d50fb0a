"""CATALOGUE.md E55-E62 end to end: the 16 probes of nmap's smtp-open-relay script.

The MX of this world can relay (it has an outbound queue) but only for clients in its
``relay_networks`` (127.0.0.200/32 here) and authenticated ones (Postfix
``permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination``). The probes
come from 127.0.0.1: every one is refused and nothing is queued or stored. Trusted and
authenticated relaying, mail for the world's own domains and a source-routed local
recipient (delivered to the final address, RFC 5321 §3.6.1) still work.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    MX,
    SUBMISSION,
    code,
    codes,
    hardening_world,
    message,
    send_recv,
    smtp,
    starttls,
    stored,
    token,
)

TRUSTED = "127.0.0.200"

#: nmap smtp-open-relay.nse: (MAIL FROM, RCPT TO); S banner name, IP the MX's, D foreign.
PROBES = [
    ("<>", "<relaytest@D>"),
    ("<antispam@D>", "<relaytest@D>"),
    ("<antispam@S>", "<relaytest@D>"),
    ("<antispam@[IP]>", "<relaytest@D>"),
    ("<antispam@[IP]>", "<relaytest%D@[IP]>"),
    ("<antispam@[IP]>", "<relaytest%D@S>"),
    ("<antispam@[IP]>", '<"relaytest@D">'),
    ("<antispam@[IP]>", '<"relaytest%D">'),
    ("<antispam@[IP]>", "<relaytest@D@[IP]>"),
    ("<antispam@[IP]>", '<"relaytest@D"@[IP]>'),
    ("<antispam@[IP]>", "<relaytest@D@S>"),
    ("<antispam@[IP]>", "<@[IP]:relaytest@D>"),
    ("<antispam@[IP]>", "<@S:relaytest@D>"),
    ("<antispam@[IP]>", "<D!relaytest>"),
    ("<antispam@[IP]>", "<D!relaytest@[IP]>"),
    ("<antispam@[IP]>", "<D!relaytest@S>"),
]
CASES = {1: "e56_null_sender", 2: "e55_plain", 3: "e56_forged_banner",
         4: "e56_forged_literal", 5: "e57_percent", 6: "e57_percent", 7: "e58_quoted",
         8: "e58_quoted", 9: "e59_double_at", 10: "e58_quoted", 11: "e59_double_at",
         12: "e60_source_route", 13: "e60_source_route", 14: "e61_bang", 15: "e61_bang",
         16: "e61_bang"}


@pytest.fixture(scope="module")
def relay() -> Iterator[Network]:
    world = hardening_world(mx={"relay_networks": [f"{TRUSTED}/32"]})
    world.host(MX).roles.append("outbound")  # it could relay: only policy stops it
    with world.start() as running:
        yield running


def _fill(template: str, net: Network, foreign: str) -> str:
    ip = net.address(MX)[0]
    return template.replace("[IP]", f"[{ip}]").replace("S", MX).replace("D", foreign)


def _traces_of(net: Network, foreign: str) -> list[str]:
    return [e.text() for e in net.world.trace.events()
            if foreign in e.text() and not e.kind.startswith(("smtp.", "tcp.", "dns."))]


@pytest.mark.parametrize("number", range(1, 17), ids=[f"nmap{n}_{CASES[n]}" for n in CASES])
def test_e55_e61_open_relay_probe_is_refused(relay: Network, number: int) -> None:
    foreign = f"r{token()}.scanme.example"
    sender, rcpt = (_fill(t, relay, foreign) for t in PROBES[number - 1])
    with smtp(relay) as wire:
        assert codes(send_recv(wire, f"MAIL FROM:{sender}\r\n".encode())) == [250]
        (reply,) = send_recv(wire, f"RCPT TO:{rcpt}\r\n".encode())
        assert code(reply) >= 400, reply  # refused: 454 relay denied, 550, 501 or 553
        assert code(send_recv(wire, b"DATA\r\n")[0]) in (503, 554)
        assert codes(send_recv(wire, b"RSET\r\n")) == [250]
    assert _traces_of(relay, foreign) == []  # nothing queued, stored or delivered
    assert len(relay.queues[MX]) == 0


def test_e55_relay_denied_reply_is_postfix_defer_unauth_destination(relay: Network) -> None:
    with smtp(relay) as wire:
        send_recv(wire, b"MAIL FROM:<antispam@relay.invalid>\r\n")
        (reply,) = send_recv(wire, b"RCPT TO:<relaytest@relay.invalid>\r\n")
        assert reply == b"454 4.7.1 <relaytest@relay.invalid>: Relay access denied\r\n"


def test_e60_source_routed_local_recipient_is_delivered_to_the_final_address(
        relay: Network) -> None:
    mark = token()
    with smtp(relay) as wire:
        got = send_recv(wire, b"MAIL FROM:<a@relay.example>\r\n"
                              b"RCPT TO:<@relay.invalid,@other.invalid:bob@anotherdomain.org>\r\n"
                              b"DATA\r\n", replies=3)
        assert codes(got) == [250, 250, 354]
        assert codes(send_recv(wire, message(mark) + b".\r\n")) == [250]
    assert len(stored(relay, BOB, mark)) == 1
    (event,) = [e for e in relay.world.trace.events("smtp.message") if mark.encode()
                in e["content"]]
    assert event["recipients"] == [BOB]  # RFC 5321 §3.6.1: the route is dropped


def test_e62_trusted_network_may_relay(relay: Network) -> None:
    foreign = f"r{token()}.scanme.example"
    try:
        wire = smtp(relay, source=TRUSTED)
    except OSError as exc:  # pragma: no cover - a loopback with 127.0.0.1 only
        pytest.skip(f"cannot bind {TRUSTED}: {exc}")
    with wire:
        got = send_recv(wire, f"MAIL FROM:<>\r\nRCPT TO:<relaytest@{foreign}>\r\nDATA\r\n"
                        .encode(), replies=3)
        assert codes(got) == [250, 250, 354]
        assert codes(send_recv(wire, message(token()) + b".\r\n")) == [250]
    (queued,) = [e for e in relay.world.trace.events("queue.accepted", host=MX)
                 if e["recipients"] == [f"relaytest@{foreign}"]]
    assert queued["sender"] == ""


def test_e62_authenticated_submission_may_relay(relay: Network) -> None:
    import base64

    foreign = f"r{token()}.scanme.example"
    with smtp(relay, SUBMISSION, 587) as wire:
        starttls(relay, wire, SUBMISSION)
        plain = base64.b64encode(f"\0{ALICE}\0{ALICE_PASSWORD}".encode())
        assert codes(send_recv(wire, b"AUTH PLAIN " + plain + b"\r\n")) == [235]
        got = send_recv(wire, f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<relaytest@{foreign}>\r\n"
                              f"DATA\r\n".encode(), replies=3)
        assert codes(got) == [250, 250, 354]
        assert codes(send_recv(wire, message(token(), sender=ALICE) + b".\r\n")) == [250]
    assert [e for e in relay.world.trace.events("queue.accepted", host=SUBMISSION)
            if e["recipients"] == [f"relaytest@{foreign}"]]


def test_e62_the_worlds_own_domains_still_work_unauthenticated(relay: Network) -> None:
    mark = token()
    with smtp(relay) as wire:
        got = send_recv(wire, b"MAIL FROM:<antispam@relay.invalid>\r\n"
                              b"RCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n", replies=3)
        assert codes(got) == [250, 250, 354]
        assert codes(send_recv(wire, message(mark) + b".\r\n")) == [250]
    assert len(stored(relay, BOB, mark)) == 1
