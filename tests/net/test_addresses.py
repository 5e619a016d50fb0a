"""Loopback addresses for a world's hosts."""

from __future__ import annotations

import socket
import sys

import pytest

from simsmtp.net import addresses
from simsmtp.net.addresses import (
    AddressBook,
    allocate_addresses,
    bind_addresses,
    loopback_aliases_available,
)

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux") or addresses.single_loopback_forced(),
    reason="127/8 is routed to lo only on Linux by default (and not under "
           "SIMSMTP_LOOPBACK=single)")


@linux_only
def test_linux_routes_all_of_127_8():
    assert loopback_aliases_available()


@linux_only
def test_consecutive_addresses_from_the_default_base():
    assert allocate_addresses(3) == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]


@linux_only
def test_every_address_can_serve_tcp_on_an_ephemeral_port():
    hosts = allocate_addresses(4, base="127.0.9.1")
    assert len(set(hosts)) == 4
    sockets = []
    try:
        for ip in hosts:
            s = socket.socket()
            s.bind((ip, 0))
            s.listen()
            sockets.append(s)
            assert s.getsockname()[0] == ip and s.getsockname()[1] != 0
    finally:
        for s in sockets:
            s.close()


@linux_only
def test_base_is_chosen_by_the_caller_and_x_0_and_x_255_are_skipped():
    assert allocate_addresses(3, base="127.0.0.254") == ["127.0.0.254", "127.0.1.1",
                                                         "127.0.1.2"]
    assert allocate_addresses(2, base="127.0.3.0") == ["127.0.3.1", "127.0.3.2"]


def test_zero_hosts():
    assert allocate_addresses(0) == []


@pytest.mark.parametrize(("n", "base"), [
    (-1, "127.0.0.2"),
    (1, "10.0.0.1"),
    (1, "localhost"),
    (2, "127.255.255.254"),
])
def test_bad_requests_are_value_errors(n, base):
    with pytest.raises(ValueError):
        allocate_addresses(n, base=base)


def test_without_aliases_every_host_binds_127_0_0_1_and_keeps_its_address(monkeypatch):
    # macOS without `ifconfig lo0 alias`: only 127.0.0.1 can be bound.
    monkeypatch.setattr(addresses, "can_bind", lambda address: address == "127.0.0.1")
    ips = allocate_addresses(3)
    assert ips == ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
    assert bind_addresses(ips) == ["127.0.0.1"] * 3
    assert not loopback_aliases_available()


@linux_only
def test_with_aliases_every_host_binds_its_own_address():
    ips = allocate_addresses(3)
    assert bind_addresses(ips) == ips


def test_the_environment_forces_one_shared_address(monkeypatch):
    monkeypatch.setenv(addresses.LOOPBACK_ENV, "single")
    assert addresses.single_loopback_forced()
    assert addresses.can_bind("127.0.0.1")
    assert not addresses.can_bind("127.0.0.2")
    assert bind_addresses(["127.0.0.2", "127.0.0.3"]) == ["127.0.0.1", "127.0.0.1"]
    monkeypatch.setenv(addresses.LOOPBACK_ENV, "")
    assert not addresses.single_loopback_forced()


# ---------------------------------------------------------------- the address book

def _book() -> AddressBook:
    book = AddressBook(max_unseen=2)
    book.host("127.0.0.2", "127.0.0.1")  # mail.example.com, sharing 127.0.0.1
    book.host("127.0.0.3", "127.0.0.1")  # mail.anotherdomain.org
    return book


def test_a_listening_socket_is_its_hosts_and_is_reached_at_the_shared_address():
    book = _book()
    assert book.shared
    assert book.listening(("127.0.0.1", 4025), "127.0.0.3") == ("127.0.0.3", 4025)
    assert book.identify(("127.0.0.1", 4025)) == ("127.0.0.3", 4025)
    assert book.transport(("127.0.0.3", 4025)) == ("127.0.0.1", 4025)
    assert book.bind_ip("127.0.0.2") == "127.0.0.1"
    book.stopped_listening(("127.0.0.1", 4025))
    assert book.identify(("127.0.0.1", 4025)) == ("127.0.0.1", 4025)


def test_an_outgoing_socket_is_its_hosts_and_an_outside_client_keeps_its_address():
    book = _book()
    assert book.outgoing(("127.0.0.1", 50001), "127.0.0.2") == ("127.0.0.2", 50001)
    assert book.identify(("127.0.0.1", 50001)) == ("127.0.0.2", 50001)
    assert book.identify(("127.0.0.1", 50002)) == ("127.0.0.1", 50002)  # swaks, telnet
    book.closed(("127.0.0.1", 50001))  # looked up already: forgotten at once
    assert book.identify(("127.0.0.1", 50001)) == ("127.0.0.1", 50001)


def test_a_socket_that_closed_before_the_server_asked_is_still_known_once():
    book = _book()
    book.outgoing(("127.0.0.1", 50001), "127.0.0.2")
    book.closed(("127.0.0.1", 50001))
    assert book.identify(("127.0.0.1", 50001)) == ("127.0.0.2", 50001)
    assert book.identify(("127.0.0.1", 50001)) == ("127.0.0.1", 50001)


def test_unseen_closed_sockets_are_bounded_and_a_failed_connect_is_forgotten():
    book = _book()
    for port in (1, 2, 3):
        book.outgoing(("127.0.0.1", port), "127.0.0.2")
        book.closed(("127.0.0.1", port))
    assert book.identify(("127.0.0.1", 1)) == ("127.0.0.1", 1)  # the oldest went
    assert book.identify(("127.0.0.1", 3)) == ("127.0.0.2", 3)
    book.outgoing(("127.0.0.1", 9), "127.0.0.3")
    book.forget(("127.0.0.1", 9))
    assert book.identify(("127.0.0.1", 9)) == ("127.0.0.1", 9)


def test_registering_the_same_socket_twice_keeps_what_the_server_saw():
    book = _book()
    book.outgoing(("127.0.0.1", 7), "127.0.0.2")
    assert book.identify(("127.0.0.1", 7)) == ("127.0.0.2", 7)
    book.outgoing(("127.0.0.1", 7), "127.0.0.2")  # the channel, once connected
    book.closed(("127.0.0.1", 7))
    assert book.identify(("127.0.0.1", 7)) == ("127.0.0.1", 7)
