"""Issue 13, break 1: one message must not freeze the world.

A message with thousands of ``DKIM-Signature`` fields used to be re-parsed once per
signature, every signature verified, on the event loop that serves every host of the
world. Now the message is parsed once, at most five signatures are verified (OpenDKIM's
``MaximumSignaturesToVerify``; the rest are reported), and the checks run beside the loop
with a budget in time: past it, ``451 4.7.1`` and an honest ``temperror``.

No test here measures time. The slow check is made slow on purpose and held by a gate the
test opens only after the other clients were served, so the order of the replies is the
proof: with the checks on the loop, the other clients would wait for the gate.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from simsmtp.net import authpolicy
from simsmtp.net.network import Network
from simsmtp.world.mailauth import MAX_SIGNATURES_TO_VERIFY, sign
from simsmtp.world.mailauth import dkim as dkim_module

from .conftest import (
    BOB,
    MX,
    Wire,
    code,
    hardening_world,
    send_recv,
    smtp,
    token,
)

#: The number of signatures of the issue's bomb.
BOMB = 3000


def bomb(net: Network, mark: str, signatures: int = BOMB) -> bytes:
    """A message from alice@example.com to Bob carrying ``signatures`` copies of a real
    example.com DKIM signature (an attacker copies one; verifying it is the costly part)."""
    body = (f"From: Alice <alice@example.com>\r\nTo: {BOB}\r\nSubject: bomb {mark}\r\n"
            f"Date: Mon, 10 Mar 2025 09:00:00 +0000\r\nMessage-ID: <{mark}@bomb.test>\r\n"
            f"\r\nhello {mark}\r\n").encode()
    key = net.world.dkim_key("example.com")
    assert key is not None
    signed = sign(body, "example.com", "mail", key, timed=False)
    header = signed[:len(signed) - len(body)]
    return header * signatures + body


def open_transaction(net: Network) -> Wire:
    """A client at Bob's MX with MAIL, RCPT and DATA said: its next write is the message."""
    wire = smtp(net)
    replies = send_recv(wire, f"MAIL FROM:<alice@example.com>\r\nRCPT TO:<{BOB}>\r\n"
                              "DATA\r\n".encode(), replies=3)
    assert [code(r) for r in replies] == [250, 250, 354], replies
    return wire


class Gate:
    """Holds every mail check (on its worker thread) until :meth:`open` is called."""

    def __init__(self) -> None:
        self.opened = threading.Event()
        self.entered = threading.Event()

    def wrap(self, real: Callable[..., Any]) -> Callable[..., Any]:
        def gated(*args: Any, **kwargs: Any) -> Any:
            self.entered.set()
            self.opened.wait(30)  # never forever, even when the test fails
            return real(*args, **kwargs)

        return gated

    def open(self) -> None:
        self.opened.set()


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    gate = Gate()
    monkeypatch.setattr(authpolicy, "evaluate", gate.wrap(authpolicy.evaluate))
    try:
        yield gate
    finally:
        gate.open()


@pytest.fixture
def world_net() -> Iterator[Network]:
    with hardening_world().start() as running:
        yield running


def test_a_dkim_bomb_leaves_the_world_serving_others(world_net: Network, gate: Gate) -> None:
    """While the 3,000-signature message is checked, another client's NOOP and a POP3
    greeting are answered before that message's final reply."""
    net = world_net
    mark = token()
    other = smtp(net)  # connected before: its NOOP comes while the bomb is checked
    sender = open_transaction(net)
    sender.send(bomb(net, mark) + b".\r\n")
    assert gate.entered.wait(30), "the check never started"
    # The check is running (held at the gate): the world must still answer.
    (noop,) = send_recv(other, b"NOOP\r\n")
    assert noop.startswith(b"250 2.0.0 Ok")
    pop3 = Wire.connect(net.address(MX, 110))
    greeting = pop3.read_line()
    assert greeting.startswith(b"+OK")
    assert sender.silent(), "the final reply came before the check finished"
    gate.open()
    final = sender.read_reply(timeout=30)
    assert code(final) == 250, final  # signed by example.com: DKIM and DMARC pass
    # The order, as the world recorded it: NOOP answered, POP3 greeted, then the message.
    events = net.world.trace.events()
    noop_at = next(i for i, e in enumerate(events) if e.kind == "smtp.command"
                   and e.get("line") == "NOOP")
    pop3_at = next(i for i, e in enumerate(events) if e.kind == "pop3.reply")
    message_at = next(i for i, e in enumerate(events) if e.kind == "smtp.message"
                      and e.data.get("accepted"))
    assert noop_at < message_at and pop3_at < message_at
    for wire in (other, sender, pop3):
        wire.close()


def test_the_bomb_is_parsed_once_and_five_signatures_are_verified(
        world_net: Network, monkeypatch: pytest.MonkeyPatch) -> None:
    net = world_net
    import dkim as dkimpy

    parses: list[int] = []
    verifies: list[int] = []
    real_init, real_verify = dkimpy.DKIM.__init__, dkimpy.DKIM.verify

    def counting_init(self: Any, *args: Any, **kwargs: Any) -> None:
        parses.append(1)
        real_init(self, *args, **kwargs)

    def counting_verify(self: Any, *args: Any, **kwargs: Any) -> Any:
        verifies.append(1)
        return real_verify(self, *args, **kwargs)

    mark = token()
    message = bomb(net, mark)  # signing parses too: before the counting starts
    monkeypatch.setattr(dkimpy.DKIM, "__init__", counting_init)
    monkeypatch.setattr(dkimpy.DKIM, "verify", counting_verify)
    with open_transaction(net) as sender:
        (final,) = send_recv(sender, message + b".\r\n", timeout=30)
    assert code(final) == 250, final
    assert (len(parses), len(verifies)) == (1, MAX_SIGNATURES_TO_VERIFY)
    results = [e.data for e in net.world.trace.events("auth.dkim")]
    assert len(results) == MAX_SIGNATURES_TO_VERIFY + 1
    assert [r["result"] for r in results] == ["pass"] * MAX_SIGNATURES_TO_VERIFY + ["policy"]
    skipped = BOMB - MAX_SIGNATURES_TO_VERIFY
    assert results[-1]["reason"] == f"{skipped} more not verified (limit 5)"
    (verdict,) = net.world.trace.events("auth.verdict")
    stored = net.store.get_bytes(BOB, net.store.keys(BOB)[-1])
    assert mark.encode() in stored
    header = stored.split(b"\r\n\r\n", 1)[0].split(b"DKIM-Signature", 1)[0]
    # the stored Authentication-Results says so, in one entry, not 2,995
    assert header.count(b"dkim=pass") == MAX_SIGNATURES_TO_VERIFY
    assert header.count(b"dkim=policy") == 1
    assert b"dmarc=pass" in header and verdict["action"] == "inbox"


def test_verify_all_caps_and_reports_the_rest() -> None:
    """The pure function: a signature past the cap never counts, even a good one."""
    results = dkim_module.verify_all(
        b"DKIM-Signature: v=1; a=rsa-sha256; d=a.example; s=x; h=from; bh=AA==; b=AA==\r\n"
        * 3 + b"From: a@a.example\r\n\r\nbody\r\n", lambda name: None, max_signatures=2)
    assert [r.result for r in results] == ["permerror", "permerror", "policy"]
    assert results[-1].reason == "1 more not verified (limit 2)"


def test_past_the_budget_the_mx_says_451_with_temperror(gate: Gate) -> None:
    world = hardening_world(mx={"mailauth_timeout": 0.05})
    with world.start() as net:
        mark = token()
        with open_transaction(net) as sender:
            # held at the gate far past its 0.05 s budget: no reply can be a 250
            (final,) = send_recv(sender, bomb(net, mark, 10) + b".\r\n", timeout=30)
            assert final.startswith(b"451 4.7.1 Error: the SPF, DKIM and DMARC checks took "
                                    b"longer than 0.05 s; try again later"), final
            (noop,) = send_recv(sender, b"NOOP\r\n")  # the session goes on
            assert code(noop) == 250
        gate.open()
        (verdict,) = net.world.trace.events("auth.verdict")
        assert verdict["action"] == "defer"
        assert "spf=temperror" in verdict["authentication_results"]
        assert "dkim=temperror" in verdict["authentication_results"]
        assert "dmarc=temperror" in verdict["authentication_results"]
        assert not [k for k in net.store.keys(BOB)
                    if mark.encode() in net.store.get_bytes(BOB, k)]


def test_past_the_budget_a_report_only_mx_delivers_with_temperror(gate: Gate) -> None:
    world = hardening_world(mx={"mailauth_timeout": 0.05, "mailauth": "report"})
    with world.start() as net:
        mark = token()
        with open_transaction(net) as sender:
            (final,) = send_recv(sender, bomb(net, mark, 2) + b".\r\n", timeout=30)
        assert code(final) == 250, final
        gate.open()
        stored = [net.store.get_bytes(BOB, k) for k in net.store.keys(BOB)]
        (message,) = [m for m in stored if mark.encode() in m]
        assert b"\nAuthentication-Results: mail.anotherdomain.org;\n\tspf=temperror" in message
        assert b"dkim=temperror" in message and b"dmarc=temperror" in message


def test_a_client_gone_while_its_message_is_checked_changes_nothing_for_others(
        world_net: Network, gate: Gate) -> None:
    """The client vanishes after the final dot; the check ends; the world goes on."""
    net = world_net
    mark = token()
    sender = open_transaction(net)
    sender.send(bomb(net, mark, 2) + b".\r\n")
    assert gate.entered.wait(30)
    sender.abort()
    gate.open()
    with smtp(net) as other:
        (noop,) = send_recv(other, b"NOOP\r\n")
        assert code(noop) == 250
    assert not net.world.trace.events("net.error")
    with Wire.connect(net.address(MX, 110)) as pop3:
        assert pop3.read_line().startswith(b"+OK")
