"""Issue 13, point 5: the POP3 maildrop lock.

RFC 1939 §8: the server SHOULD lock the maildrop while a session is in TRANSACTION, so two
sessions never see (and delete from) the same maildrop at once; the second is told
``-ERR [IN-USE] ...`` (RFC 2449 §8.1.2) and may log in once the first has ended, by QUIT
or by vanishing.
"""

from __future__ import annotations

import poplib
import socket
from collections.abc import Iterator

import pytest

from simsmtp.net.network import Network

from .conftest import BOB, BOB_PASSWORD, MX, client_context, hardening_world

IN_USE = b"-ERR [IN-USE] Mailbox is locked by another POP3 session."


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    with hardening_world().start() as running:
        yield running


def pop3(net: Network) -> poplib.POP3:
    """A POP3 session at Bob's server inside TLS (STLS), not logged in yet."""
    ip, port = net.address(MX, 110)
    session = poplib.POP3(ip, port, timeout=10)
    session.stls(client_context(net))
    return session


def login(session: poplib.POP3, user: str = BOB) -> bytes:
    session.user(user)
    try:
        return session.pass_(BOB_PASSWORD)
    except poplib.error_proto as exc:
        return bytes(exc.args[0])


def test_a_second_session_gets_in_use_until_the_first_quits(net: Network) -> None:
    first, second = pop3(net), pop3(net)
    assert login(first).startswith(b"+OK")
    assert login(second) == IN_USE
    assert login(second, "bob") == IN_USE  # the same maildrop by its short name
    first.quit()
    assert login(second).startswith(b"+OK")  # free again after QUIT (RFC 1939 §6)
    second.quit()


def test_a_wrong_password_never_learns_that_the_maildrop_is_open(net: Network) -> None:
    """The lock is checked after the password: IN-USE tells only the owner."""
    first, second = pop3(net), pop3(net)
    assert login(first).startswith(b"+OK")
    second.user(BOB)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        second.pass_("not-" + BOB_PASSWORD)
    first.quit()
    second.quit()


def test_a_session_that_vanishes_gives_the_maildrop_back(net: Network) -> None:
    first = pop3(net)
    assert login(first).startswith(b"+OK")
    first.sock.shutdown(socket.SHUT_RDWR)  # gone without QUIT: nothing is deleted, the
    first.close()                          # lock is released
    second = pop3(net)  # connects after the close: the server saw the close first
    assert login(second).startswith(b"+OK")
    second.quit()
    assert not net.world.trace.events("net.error")
