"""Issue 13, break 2: a login must not lend a domain.

A submission server authenticates the users of its own domains only, and refuses an
envelope sender or a ``From:`` domain the logged-in user does not own (Postfix
``reject_sender_login_mismatch``), so it never DKIM-signs a forgery with its domain's key.
``policy.reject_sender_login_mismatch = false`` shows what a careless provider lets
through.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.model import User

from .conftest import (
    ALICE,
    ALICE_PASSWORD,
    BOB,
    SUBMISSION,
    Wire,
    code,
    codes,
    hardening_world,
    send_recv,
    smtp,
    starttls,
    token,
)

CAROL, CAROL_PASSWORD = "carol@example.com", "hearts"
MALLORY, MALLORY_PASSWORD = "mallory@evil.example", "spoofer"


def identity_world(**submission: object) -> World:
    world = hardening_world(submission=dict(submission))
    world.domains["example.com"].users["carol"] = User(CAROL, "Carol", CAROL_PASSWORD)
    return world


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    with identity_world().start() as running:
        yield running


def login(net: Network, user: str, password: str, port: int = 587) -> tuple[Wire, bytes]:
    """A TLS session on ``port`` of mail.example.com and the reply to AUTH PLAIN."""
    wire = smtp(net, SUBMISSION, port)
    starttls(net, wire, SUBMISSION)
    plain = base64.b64encode(f"\0{user}\0{password}".encode())
    (reply,) = send_recv(wire, b"AUTH PLAIN " + plain + b"\r\n")
    return wire, reply


def letter(sender: str, mark: str) -> bytes:
    return (f"From: {sender}\r\nTo: {BOB}\r\nSubject: identity {mark}\r\n\r\n"
            f"hello {mark}\r\n.\r\n").encode()


def queued(net: Network, mark: str) -> list[str]:
    """Queue ids of the accepted messages holding ``mark`` (as the trace shows them)."""
    return [e["queue_id"] for e in net.world.trace.events("smtp.message")
            if e["accepted"] and mark.encode() in e["content"]]


def test_a_user_of_another_domain_cannot_log_in(net: Network) -> None:
    """mallory@evil.example is a user of the world, not of example.com: 535 at
    mail.example.com, on 587 and on 465 alike (the POP3 login already worked so)."""
    wire, reply = login(net, MALLORY, MALLORY_PASSWORD)
    with wire:
        assert reply.startswith(b"535 5.7.8"), reply
        (mail,) = send_recv(wire, b"MAIL FROM:<mallory@evil.example>\r\n")
        assert code(mail) == 530  # still not authenticated
    wire, reply = login(net, "mallory", MALLORY_PASSWORD)  # unqualified: example.com's
    with wire:
        assert reply.startswith(b"535 5.7.8"), reply


def test_the_seed_path_still_works(net: Network) -> None:
    mark = token()
    wire, reply = login(net, ALICE, ALICE_PASSWORD)
    with wire:
        assert code(reply) == 235
        replies = send_recv(wire, f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
                            .encode(), replies=3)
        assert codes(replies) == [250, 250, 354]
        (final,) = send_recv(wire, letter(f"Alice <{ALICE}>", mark), timeout=30)
        assert code(final) == 250, final
    assert queued(net, mark)
    assert [e["domain"] for e in net.world.trace.events("auth.sign")][-1] == "example.com"


def test_a_user_cannot_send_as_another_user(net: Network) -> None:
    """Postfix's words exactly; nothing of the transaction is accepted."""
    wire, reply = login(net, CAROL, CAROL_PASSWORD)
    with wire:
        assert code(reply) == 235
        (mail,) = send_recv(wire, f"MAIL FROM:<{ALICE}>\r\n".encode())
        assert mail == (b"553 5.7.1 <alice@example.com>: Sender address rejected: not owned "
                        b"by user carol@example.com\r\n")
        (rcpt,) = send_recv(wire, f"RCPT TO:<{BOB}>\r\n".encode())
        assert code(rcpt) == 503  # no transaction
        (own,) = send_recv(wire, f"MAIL FROM:<{CAROL}>\r\n".encode())
        assert code(own) == 250
        rset, null = send_recv(wire, b"RSET\r\nMAIL FROM:<>\r\n", replies=2)
        assert codes([rset, null]) == [250, 250]  # null sender: auto-replies, RFC 3834


def test_a_from_header_of_another_domain_is_refused_and_not_signed(net: Network) -> None:
    mark = token()
    signed_before = len(net.world.trace.events("auth.sign"))
    wire, reply = login(net, ALICE, ALICE_PASSWORD)
    with wire:
        assert code(reply) == 235
        send_recv(wire, f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n".encode(),
                  replies=3)
        (final,) = send_recv(wire, letter("The Bank <security@anotherdomain.org>", mark))
        assert final == (b"550 5.7.1 From: domain anotherdomain.org rejected: not owned by "
                         b"user alice@example.com\r\n")
    assert not queued(net, mark)
    assert len(net.world.trace.events("auth.sign")) == signed_before


def test_the_check_can_be_switched_off_to_show_a_careless_provider() -> None:
    """``reject_sender_login_mismatch = false``: Carol sends as Alice, and the message
    leaves signed by example.com (the opposite of the lesson, on purpose)."""
    mark = token()
    with identity_world(reject_sender_login_mismatch=False).start() as net:
        wire, reply = login(net, CAROL, CAROL_PASSWORD)
        with wire:
            assert code(reply) == 235
            replies = send_recv(wire, f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n"
                                .encode(), replies=3)
            assert codes(replies) == [250, 250, 354]
            (final,) = send_recv(wire, letter(f"Alice <{ALICE}>", mark), timeout=30)
            assert code(final) == 250, final
        assert queued(net, mark)
        assert net.world.trace.events("auth.sign")[-1]["domain"] == "example.com"
