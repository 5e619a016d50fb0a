"""Loopback addresses for a world's hosts."""

from __future__ import annotations

import socket
import sys

import pytest

from simsmtp.net import addresses
from simsmtp.net.addresses import allocate_addresses, loopback_aliases_available

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="127/8 is routed to lo only on Linux by default")


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


def test_without_aliases_every_host_shares_127_0_0_1(monkeypatch):
    # macOS without `ifconfig lo0 alias`: only 127.0.0.1 can be bound.
    monkeypatch.setattr(addresses, "can_bind", lambda address: address == "127.0.0.1")
    assert allocate_addresses(3) == ["127.0.0.1"] * 3
    assert not loopback_aliases_available()

