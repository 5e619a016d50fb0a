"""CATALOGUE.md F63-F71 (and C41) end to end: timeouts, error limits, connection caps,
bounded memory, vanishing clients and a graceful shutdown, on the seed MX.

The "tight" world gives the MX small limits through its policy: ``idle_timeout`` (a
world-file key) and the denial-of-service knobs the network reads from the policy when
present (``min_data_rate``, ``max_connections``, ``max_per_client``,
``error_sleep_time`` ...; see ``simsmtp/net/network.py``).
"""

from __future__ import annotations

import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simsmtp.net.network import Network
from simsmtp.net.queue import Queue
from simsmtp.net.store import MaildirStore

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    MX,
    SUBMISSION,
    Wire,
    client_context,
    code,
    codes,
    hardening_world,
    message,
    send_recv,
    smtp,
    stored,
    token,
)

TIMEOUT = 0.6
RATE = 500.0  # octets/s, Postfix smtpd_min_data_rate
TIGHT = {"idle_timeout": TIMEOUT, "min_data_rate": RATE, "max_connections": 5,
         "max_per_client": 3, "error_sleep_time": 0.01}
ENVELOPE = b"MAIL FROM:<a@relay.example>\r\nRCPT TO:<bob@anotherdomain.org>\r\nDATA\r\n"


@pytest.fixture(scope="module")
def tight() -> Iterator[Network]:
    with hardening_world(mx=TIGHT).start() as running:
        yield running


#: How long a test waits for the server's last words at most: a bound for a busy machine,
#: never a measure (the server's own timers decide when it speaks).
PATIENCE = 30.0


def _closed_with(wire: Wire) -> bytes:
    """What the server says before it closes (fails if it stays open :data:`PATIENCE`)."""
    return wire.read_until_closed(PATIENCE)


def test_f63_idle_timeout_says_421_4_4_2_then_closes(tight: Network) -> None:
    with smtp(tight) as wire:
        start = time.monotonic()
        said = _closed_with(wire)
        assert said == f"421 4.4.2 {MX} Error: timeout exceeded\r\n".encode()
        assert time.monotonic() - start >= TIMEOUT * 0.9  # not before the timeout


def test_f63_idle_timeout_defaults_to_300_seconds(net: Network) -> None:
    assert net.world.host(MX).policy.idle_timeout == 300  # RFC 5321 §4.5.3.2.7


def test_f64_slowloris_on_a_command_line_is_cut_at_the_deadline(tight: Network) -> None:
    with smtp(tight) as wire:
        said = b""
        for byte in b"MAIL FROM:<slow@loris.example>" * 4:
            try:
                wire.send(bytes([byte]))
            except OSError:
                break
            if not wire.silent(TIMEOUT * 0.8):  # one byte every 0.8 x timeout, no CRLF
                said = _closed_with(wire)
                break
        # cut before the trickle ended: trickled bytes never extend the session (each came
        # sooner than the timeout, so extending would never have cut it)
        assert said.startswith(b"421 4.4.2")


def test_f65_slow_data_is_cut_by_the_minimum_data_rate(tight: Network) -> None:
    mark = token()
    with smtp(tight) as wire:
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        said = b""
        for byte in message(mark, body="x" * 200):  # 20 octets/s, far below 500
            try:
                wire.send(bytes([byte]))
            except OSError:
                break
            if not wire.silent(0.05):
                said = _closed_with(wire)
                break
        assert said.startswith(b"421 4.4.2")  # cut before the message was all sent
    assert stored(tight, BOB, mark) == []  # nothing stored


def test_f65_data_above_the_minimum_rate_outlasts_the_idle_timeout(tight: Network) -> None:
    # regression: content reads never moved the idle timer, so the whole DATA phase had
    # to fit in idle_timeout; now each read buys len/RATE seconds (Postfix)
    mark = token()
    with smtp(tight) as wire:
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        start = time.monotonic()
        wire.send(message(mark))
        while time.monotonic() - start < 2.5 * TIMEOUT:  # 1000 octets/s, 2x the rate
            wire.send(b"y" * 98 + b"\r\n")
            assert wire.silent(0.1)
        assert codes(send_recv(wire, b".\r\n")) == [250]
    assert len(stored(tight, BOB, mark)) == 1


def test_f66_too_many_errors_get_421_4_7_0_and_a_close(tight: Network) -> None:
    with smtp(tight) as wire:
        assert codes(send_recv(wire, b"BOGUS0\r\n")) == [500]  # RFC 5321 §3.8: no close
        wire.send(b"".join(b"BOGUS%d\r\n" % i for i in range(1, 25)))
        said = _closed_with(wire).split(b"\r\n")[:-1]
        # hard limit 20 (Postfix smtpd_hard_error_limit): 20 x 500, then the 421
        assert [line[:3] for line in said] == [b"500"] * 19 + [b"421"]
        assert said[-1] == f"421 4.7.0 {MX} Error: too many errors".encode()


def test_f66_past_the_soft_error_limit_every_reply_is_delayed() -> None:
    sleep = 0.3  # Postfix smtpd_error_sleep_time (1 s by default)
    with hardening_world(mx={"error_sleep_time": sleep}).start() as net, smtp(net) as wire:
        for _ in range(9):  # smtpd_soft_error_limit 10: the first nine errors are prompt
            assert codes(send_recv(wire, b"BOGUS\r\n")) == [500]
        start = time.monotonic()
        assert codes(send_recv(wire, b"BOGUS\r\nNOOP\r\n", replies=2)) == [500, 250]
        assert time.monotonic() - start >= 2 * sleep * 0.9  # both replies held back


def test_f67_junk_commands_count_as_errors_past_the_junk_limit(tight: Network) -> None:
    with smtp(tight) as wire:
        wire.send(b"NOOP\r\n" * 125)
        said = _closed_with(wire).split(b"\r\n")[:-1]
        # Postfix smtpd_junk_command_limit 100: then each NOOP is an error (still 250)
        assert [line[:3] for line in said] == [b"250"] * 120 + [b"421"]
        assert b"too many errors" in said[-1]


def test_f68_per_client_connection_cap(tight: Network) -> None:
    wires = [smtp(tight, ehlo=False) for _ in range(3)]
    try:
        with Wire.connect(tight.address(MX)) as extra:
            assert _closed_with(extra) == (
                f"421 4.7.0 {MX} Error: too many connections from 127.0.0.1\r\n".encode())
        with smtp(tight, ehlo=False, source="127.0.0.201") as other:  # another client
            assert codes(send_recv(other, b"NOOP\r\n")) == [250]
        for wire in wires:  # the sessions already open are unaffected
            assert codes(send_recv(wire, b"NOOP\r\n")) == [250]
    finally:
        for wire in wires:
            wire.close()


def test_f68_total_connection_cap(tight: Network) -> None:
    wires = [smtp(tight, ehlo=False, source=f"127.0.0.{210 + i}") for i in range(5)]
    try:
        with Wire.connect(tight.address(MX), source="127.0.0.220") as extra:
            said = _closed_with(extra)
            assert said.startswith(b"421 4.7.0") and b"too many connections" in said
    finally:
        for wire in wires:
            wire.close()
    assert tight.wait(lambda: _accepts(tight))


def _accepts(net: Network) -> bool:
    try:
        with Wire.connect(net.address(MX)) as wire:
            return code(wire.read_reply()) == 220
    except (OSError, ValueError):
        return False


def test_f68_default_per_client_cap_is_50(net: Network) -> None:
    wires = [smtp(net, ehlo=False) for _ in range(50)]
    try:
        with Wire.connect(net.address(MX)) as extra:
            assert _closed_with(extra).startswith(b"421 4.7.0")
        mark = token()
        for wire in wires[:2]:  # two sessions in a transaction at the same time
            assert codes(send_recv(wire, b"EHLO t\r\n" + ENVELOPE, replies=4)) == \
                [250, 250, 250, 354]
        assert codes(send_recv(wires[0], message(mark) + b".\r\n")) == [250]
        assert codes(send_recv(wires[1], message(mark) + b".\r\n")) == [250]  # concurrent
        assert len(stored(net, BOB, mark)) == 2
    finally:
        for wire in wires:
            wire.close()


@pytest.fixture(scope="module")
def uncaptured() -> Iterator[Network]:
    # capture off: the tap keeps every byte by design; the server itself is measured
    with hardening_world(mx={"size_limit": 1_000_000}).start(capture=False) as running:
        yield running


def test_f69_huge_data_gets_552_with_bounded_memory(uncaptured: Network) -> None:
    block = b"".join(b"%078d\r\n" % i for i in range(800))  # 64000 octets of 80-col lines
    mark = token()
    with smtp(uncaptured) as wire:
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        tracemalloc.start()
        try:
            wire.send(message(mark))
            for _ in range(160):  # 10.2 MB: ten times the 1 MB limit
                wire.send(block)
            (reply,) = send_recv(wire, b".\r\n", timeout=30)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply.startswith(b"552 5.3.4")  # after the terminator (RFC 5321 §4.5.3.1.9)
        assert peak < 3_000_000, peak  # O(limit), not O(what was sent)
        assert codes(send_recv(wire, b"NOOP\r\n")) == [250]
    assert stored(uncaptured, BOB, mark) == []


@pytest.mark.parametrize("how", ["reset", "close"])
@pytest.mark.parametrize("where", ["mid-data", "mid-command"])
def test_f70_client_vanishing_stores_nothing(net: Network, how: str, where: str) -> None:
    mark = token()
    wire = smtp(net)
    port = wire.sock.getsockname()[1]
    if where == "mid-data":
        assert codes(send_recv(wire, ENVELOPE, replies=3)) == [250, 250, 354]
        wire.send(message(mark)[:40])
    else:
        wire.send(b"MAIL FROM:<vanish" + mark.encode())
    time.sleep(0.05)
    wire.abort() if how == "reset" else wire.close()

    def closed_events() -> list[Any]:
        return [e for e in net.world.trace.events("smtp.closed", host=MX)
                if e["peer"].endswith(f":{port}")]

    assert net.wait(lambda: bool(closed_events()), PATIENCE)  # the session is over, released
    (closed,) = closed_events()
    assert ("discarded" in closed["reason"]) == (where == "mid-data")  # RFC 5321 §4.1.1.10
    assert stored(net, BOB, mark) == []
    with smtp(net) as again:
        assert codes(send_recv(again, b"NOOP\r\n")) == [250]


def test_c41_tls_handshake_that_never_comes_is_timed_out(tight: Network) -> None:
    with smtp(tight) as wire:
        assert codes(send_recv(wire, b"STARTTLS\r\n")) == [220]
        assert _closed_with(wire) == b""  # closed; no plaintext mid-handshake


def test_f71_graceful_shutdown_says_421_to_everyone_and_keeps_the_queue(
        tmp_path: Path) -> None:
    import smtplib

    mark, partial = token(), token()
    net = hardening_world().start(directory=tmp_path)
    with net:
        net.take_down(MX)  # the submitted message stays in mail.example.com's queue
        with smtplib.SMTP(*net.address(SUBMISSION, 587)) as client:
            client.starttls(context=client_context(net))
            client.login(ALICE, ALICE_PASSWORD)
            client.sendmail(ALICE, [BOB], message(mark, sender=ALICE))
        assert net.wait(lambda: net.idle() and bool(net.world.trace.events("delivery.deferred")))
        net.bring_up(MX)
        idle = smtp(net)
        busy = smtp(net)
        assert codes(send_recv(busy, ENVELOPE, replies=3)) == [250, 250, 354]
        busy.send(message(partial)[:60])
        pop = Wire.connect(net.address(MX, 110))
        assert pop.read_line().startswith(b"+OK")
        time.sleep(0.05)
    # leaving the block stopped the world (RFC 5321 §3.8: 421 before closing)
    assert _closed_with(idle) == f"421 4.3.2 {MX} Service shutting down\r\n".encode()
    said = _closed_with(busy)
    assert said.startswith(b"421 4.3.2") and b"250" not in said
    assert _closed_with(pop).startswith(b"-ERR")
    for wire in (idle, busy, pop):
        wire.close()
    queue = Queue(tmp_path / "queue" / SUBMISSION)
    queue.load()
    (queued,) = queue.messages()  # the accepted mail survived the stop
    assert mark.encode() in queued.message and queued.recipients[0].address == BOB
    mail = MaildirStore(tmp_path / "mail")
    assert all(partial.encode() not in mail.get_bytes(BOB, k) for k in mail.keys(BOB))
