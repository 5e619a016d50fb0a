"""Issue 13, point 3: one client must not lock everyone out, within the limits.

Postfix's answers, end to end over loopback: a per-client connection count (one address
cannot take every slot), a per-client connection rate and a per-client failed-login rate
across connections (anvil(8): reconnecting after each ``421`` gains nothing), and stress
mode (shorter idle timeouts near the connection limit, so dripping idle connections are
cut soon). No test measures time: the anvil's clock is the test's, and the stress timeout
is short while the reads wait far longer.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from simsmtp.net.addresses import loopback_aliases_available
from simsmtp.net.network import Network

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    MX,
    SUBMISSION,
    Wire,
    client_context,
    code,
    codes,
    hardening_world,
    send_recv,
)

pytestmark = pytest.mark.skipif(not loopback_aliases_available(),
                                reason="needs several loopback addresses (127.0.0.x)")

#: The attacker's and the bystander's addresses (no host of the world has them).
ATTACKER, BYSTANDER = "127.0.0.201", "127.0.0.202"


class FakeClock:
    """The anvil's clock, moved by the test only."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def greeted(net: Network, source: str, host: str = MX, port: int = 25) -> Wire:
    wire = Wire.connect(net.address(host, port), source=source, timeout=30)
    greeting = wire.read_reply()
    assert code(greeting) == 220, greeting
    return wire


def served(net: Network, source: str) -> None:
    """A whole short session from ``source``: greeting, EHLO, NOOP, QUIT."""
    with greeted(net, source) as wire:
        replies = send_recv(wire, b"EHLO bystander.test\r\nNOOP\r\nQUIT\r\n", replies=3)
        assert codes(replies) == [250, 250, 221]


def refused(net: Network, source: str, host: str = MX, port: int = 25) -> bytes:
    with Wire.connect(net.address(host, port), source=source, timeout=30) as wire:
        return wire.read_until_closed()


@pytest.fixture
def limited() -> Iterator[Network]:
    world = hardening_world(mx={"max_per_client": 5, "max_connections": 20,
                                "max_connection_rate": 4, "anvil_rate_time_unit": 60.0},
                            submission={"max_auth_failure_rate": 5, "auth_failure_limit": 3})
    with world.start() as net:
        yield net


def test_one_address_at_its_maximum_leaves_room_for_the_others(limited: Network) -> None:
    net = limited
    net.anvil_of(MX).max_connection_rate = 0  # this test is about the count
    held = [greeted(net, ATTACKER) for _ in range(5)]
    for wire in held:
        wire.send(b"NO")  # drip: a line that never ends restarts no timer
    assert refused(net, ATTACKER) == (b"421 4.7.0 mail.anotherdomain.org Error: too many "
                                      b"connections from 127.0.0.201\r\n")
    served(net, BYSTANDER)
    for wire in held:
        wire.send(b"OP\r\n")  # the dripped line completes: each session still works
        assert code(wire.read_reply()) == 250
        wire.close()


def test_a_client_that_reconnects_too_fast_is_refused_for_the_window(
        limited: Network) -> None:
    net = limited
    clock = FakeClock()
    net.anvil_of(MX).clock = clock
    for _ in range(4):  # max_connection_rate = 4 in the window
        served(net, ATTACKER)
    assert refused(net, ATTACKER) == (b"421 4.7.0 mail.anotherdomain.org Error: too many "
                                      b"connections from 127.0.0.201\r\n")
    served(net, BYSTANDER)  # others are not affected
    clock.now += 61  # the window moved on
    served(net, ATTACKER)


def auth_plain(password: str) -> bytes:
    return b"AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0{password}".encode()) + b"\r\n"


def submission(net: Network, source: str) -> Wire:
    wire = greeted(net, source, SUBMISSION, 587)
    assert code(send_recv(wire, b"EHLO t\r\nSTARTTLS\r\n", replies=2)[1]) == 220
    wire.starttls(client_context(net), SUBMISSION)
    assert code(send_recv(wire, b"EHLO t\r\n")[0]) == 250
    return wire


def test_a_brute_force_is_cut_off_across_connections(limited: Network) -> None:
    """3 failures per connection (the per-session limit), 5 per window per address (the
    anvil): the attacker's next connection is refused, even with the right password;
    Alice, from elsewhere, logs in."""
    net = limited
    clock = FakeClock()
    net.anvil_of(SUBMISSION).clock = clock
    with submission(net, ATTACKER) as wire:
        replies = send_recv(wire, auth_plain("guess1") + auth_plain("guess2")
                            + auth_plain("guess3"), replies=4)
        assert codes(replies) == [535, 535, 535, 421]
    with submission(net, ATTACKER) as wire:
        replies = send_recv(wire, auth_plain("guess4") + auth_plain("guess5"), replies=2)
        assert codes(replies) == [535, 535]
    # five failures in the window: cut off at the door, the right password never tried
    assert refused(net, ATTACKER, SUBMISSION, 587) == (b"421 4.7.0 mail.example.com Error: "
                                                       b"too many errors\r\n")
    assert refused(net, ATTACKER, SUBMISSION, 465) == (b"421 4.7.0 mail.example.com Error: "
                                                       b"too many errors\r\n")
    with submission(net, BYSTANDER) as wire:
        assert code(send_recv(wire, auth_plain(ALICE_PASSWORD))[0]) == 235
    refusals = [e for e in net.world.trace.events("tcp.refused")
                if e["reason"] == "auth_failure_rate"]
    assert len(refusals) == 2
    clock.now += 61
    with submission(net, ATTACKER) as wire:
        assert code(send_recv(wire, auth_plain(ALICE_PASSWORD))[0]) == 235


def test_pop3_failed_logins_count_too() -> None:
    world = hardening_world(mx={"max_auth_failure_rate": 2})
    with world.start() as net:
        net.anvil_of(MX).clock = FakeClock()
        ip, port = net.address(MX, 110)
        for guess in ("guess1", "guess2"):
            with Wire.connect((ip, port), source=ATTACKER, timeout=30) as wire:
                assert wire.read_line().startswith(b"+OK")
                wire.send(b"STLS\r\n")
                assert wire.read_line().startswith(b"+OK")
                wire.starttls(client_context(net), MX)
                wire.send(f"USER bob\r\nPASS {guess}\r\n".encode())
                assert wire.read_line().startswith(b"+OK")
                assert wire.read_line() == b"-ERR [AUTH] Authentication failed.\r\n"
        assert refused(net, ATTACKER, MX, 110) == (b"-ERR [SYS/TEMP] Too many failed logins, "
                                                   b"try again later.\r\n")
        with Wire.connect((ip, port), source=BYSTANDER, timeout=30) as other:
            assert other.read_line().startswith(b"+OK")


def test_near_its_limit_the_service_cuts_idle_connections_soon() -> None:
    """Stress mode: with 4 of 5 slots taken (80 %), every idle timer becomes the short
    stress timeout (0.2 s here, 300 s otherwise), so dripping connections are cut with
    421 4.4.2 and the slots come free for others."""
    world = hardening_world(mx={"max_connections": 5, "max_per_client": 5,
                                "idle_timeout": 300.0, "stress_idle_timeout": 0.2})
    with world.start() as net:
        held = [greeted(net, ATTACKER) for _ in range(3)]
        for wire in held:
            wire.send(b"NO")
        held.append(greeted(net, ATTACKER))  # the fourth: stress mode begins
        for wire in held:  # waits up to 30 s; without stress mode it would be 300 s
            text = wire.read_until_closed(timeout=30)
            assert text == b"421 4.4.2 mail.anotherdomain.org Error: timeout exceeded\r\n"
        assert net.world.trace.events("listener.stress")
        served(net, BYSTANDER)
