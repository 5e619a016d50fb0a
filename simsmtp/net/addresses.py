"""Loopback addresses for the hosts of a world, and who is who when hosts share one.

Each host of a world gets its own ``127.0.0.x`` address, so a capture shows
``127.0.0.2 -> 127.0.0.3`` the way a learner expects two machines to look. On Linux the
whole of 127.0.0.0/8 is routed to the loopback interface (RFC 1122 §3.2.1.3 (g) reserves
the block for loopback), so any of those addresses can be bound without configuration.

Where only ``127.0.0.1`` exists (macOS without ``ifconfig lo0 alias``), every host's
sockets share ``127.0.0.1`` (its *transport* address) and the ephemeral ports keep them
apart. Each host still keeps its world address (its *identity*, what DNS, SPF,
``Received:``, relay permission and every view reason about): :class:`AddressBook`
remembers which host owns each listening socket and each outgoing socket of the world
(the client registers its socket's local ``(ip, port)`` before it connects), so a server
tells "mail.example.com at 127.0.0.2" from Alice's mail client at ``127.0.0.1`` whatever
address carried the bytes. A client from outside the world (swaks, telnet) is in no book:
it keeps its real address, which is never a host's.

``SIMSMTP_LOOPBACK=single`` in the environment makes this machine behave like a Mac
(only ``127.0.0.1`` can be bound), to try the lessons that way on Linux.

Ports are never chosen here: every listener binds port 0 and the kernel picks a free one,
so no root is needed and many worlds (one per notebook kernel) run side by side.
"""

from __future__ import annotations

import functools
import ipaddress
import os
import socket
import threading
from collections import OrderedDict
from typing import Any

#: The address every system has (RFC 1122 §3.2.1.3 (g)).
LOCALHOST = "127.0.0.1"
#: The default first address handed to a world's hosts.
DEFAULT_BASE = "127.0.0.2"

#: The environment variable that forces one shared loopback address (``single``), as on
#: a Mac without aliases; any other value (or none) probes the machine.
LOOPBACK_ENV = "SIMSMTP_LOOPBACK"

Address = tuple[str, int]

_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")
#: The last usable address of 127/8 (127.255.255.255 is its broadcast address).
_LAST = ipaddress.IPv4Address("127.255.255.254")


def single_loopback_forced() -> bool:
    """True when ``SIMSMTP_LOOPBACK=single`` asks for one shared address (a Mac's way)."""
    return os.environ.get(LOOPBACK_ENV, "").strip().lower() == "single"


def can_bind(address: str) -> bool:
    """True when a UDP socket can be bound to ``address`` on an ephemeral port.

    The machine's answer is cached: the loopback routing of a machine does not change
    while a notebook runs. Under ``SIMSMTP_LOOPBACK=single`` only ``127.0.0.1`` can.
    """
    if single_loopback_forced():
        return address == LOCALHOST
    return _can_bind(address)


@functools.lru_cache(maxsize=4096)
def _can_bind(address: str) -> bool:
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError:
        return False
    return True


def loopback_aliases_available(probe: str = DEFAULT_BASE) -> bool:
    """True when addresses of 127/8 other than 127.0.0.1 can be bound (Linux: always)."""
    return can_bind(probe)


def allocate_addresses(n: int, base: str = DEFAULT_BASE) -> list[str]:
    """Return ``n`` distinct loopback addresses for ``n`` hosts, starting at ``base``:
    the hosts' world addresses (their identities, whether or not they can be bound).

    Addresses are consecutive, skipping those whose last byte is 0 or 255 (they confuse
    learners who know them as network and broadcast addresses). The result is
    deterministic: the caller picks ``base`` (for example one per world) when it wants
    several worlds on one machine to show different addresses in Wireshark. Sharing is
    harmless otherwise, because ports are always ephemeral.

    Where they cannot all be bound (only 127.0.0.1 exists), :func:`bind_addresses` says
    what the hosts' sockets use instead.

    Args:
        n: how many hosts.
        base: the first address, inside 127.0.0.0/8.

    Raises:
        ValueError: ``n`` is negative, ``base`` is not a loopback address, or 127/8 has
            not ``n`` addresses left after ``base``.
    """
    if n < 0:
        raise ValueError(f"allocate_addresses: n must be >= 0, not {n}")
    try:
        first = ipaddress.IPv4Address(base)
    except ValueError:
        raise ValueError(f"allocate_addresses: base {base!r} is not an IPv4 address") from None
    if first not in _LOOPBACK_NET:
        raise ValueError(f"allocate_addresses: base {base} is not in 127.0.0.0/8")
    addresses: list[str] = []
    current = first
    while len(addresses) < n:
        if current > _LAST:
            raise ValueError(f"allocate_addresses: not {n} loopback addresses after {base}")
        if current.packed[-1] not in (0, 255):
            addresses.append(str(current))
        current += 1
    return addresses


def bind_addresses(addresses: list[str]) -> list[str]:
    """The transport address each of ``addresses`` binds its sockets to: itself where all
    of them can be bound (Linux), else ``127.0.0.1`` for all (a Mac: the hosts share it
    and differ by port; an :class:`AddressBook` keeps their identities)."""
    if all(can_bind(a) for a in addresses):
        return list(addresses)
    return [LOCALHOST] * len(addresses)


class AddressBook:
    """Who is who among the sockets of one world (see the module docstring).

    Thread-safe: the world's servers and agents use it on the event loop's thread, a
    stepper from the caller's. Every address it answers is an (ip, port) pair whose ip is
    a host's world address; the port stays the real one.

    Args:
        max_unseen: how many outgoing sockets that closed before any server of the world
            looked them up are remembered (oldest forgotten first).
    """

    def __init__(self, max_unseen: int = 256) -> None:
        self._lock = threading.Lock()
        self._bind: dict[str, str] = {}          # world ip -> transport ip
        self._listening: dict[Address, str] = {}  # transport (ip, port) -> world ip
        self._outgoing: dict[Address, list[Any]] = {}  # transport -> [world ip, seen]
        self._unseen: OrderedDict[Address, None] = OrderedDict()
        self._max_unseen = max_unseen

    def host(self, ip: str, bind: str) -> None:
        """A host whose world address ``ip`` binds its sockets to ``bind``."""
        with self._lock:
            self._bind[ip] = bind

    def bind_ip(self, ip: str) -> str:
        """Where a socket of the host at world address ``ip`` binds (``ip`` if unknown)."""
        return self._bind.get(ip, ip)

    @property
    def shared(self) -> bool:
        """True when some host's sockets use another address than its world address."""
        return any(ip != bind for ip, bind in self._bind.items())

    def listening(self, transport: Address, ip: str) -> Address:
        """A listening socket of the host at world address ``ip``; its identity."""
        key = _key(transport)
        with self._lock:
            self._listening[key] = ip
        return (ip, key[1])

    def stopped_listening(self, transport: Address) -> None:
        """The listening socket at ``transport`` is closed."""
        with self._lock:
            self._listening.pop(_key(transport), None)

    def outgoing(self, local: Address, ip: str) -> Address:
        """An outgoing socket of the host at world address ``ip``, bound to ``local``:
        call it before the socket connects, so the server knows it at accept. Returns the
        socket's identity."""
        key = _key(local)
        with self._lock:
            entry = self._outgoing.get(key)
            closed = self._unseen.pop(key, _MISSING) is not _MISSING
            if entry is None or closed or entry[0] != ip:  # else: the same socket again
                self._outgoing[key] = [ip, False]
        return (ip, key[1])

    def closed(self, local: Address) -> None:
        """The outgoing socket bound to ``local`` closed. If no server looked it up yet
        (it may accept it later) it is kept a little while, else forgotten at once."""
        key = _key(local)
        with self._lock:
            entry = self._outgoing.get(key)
            if entry is None:
                return
            if entry[1]:
                del self._outgoing[key]
                return
            self._unseen[key] = None
            while len(self._unseen) > self._max_unseen:
                old, _ = self._unseen.popitem(last=False)
                self._outgoing.pop(old, None)

    def forget(self, local: Address) -> None:
        """The outgoing socket bound to ``local`` never connected: forget it now."""
        key = _key(local)
        with self._lock:
            self._outgoing.pop(key, None)
            self._unseen.pop(key, None)

    def identify(self, address: Address) -> Address:
        """The world identity of a transport (ip, port): a host's own socket gets its
        world address; anything else (a client from outside the world) is unchanged."""
        key = _key(address)
        with self._lock:
            ip = self._listening.get(key)
            if ip is not None:
                return (ip, key[1])
            entry = self._outgoing.get(key)
            if entry is None:
                return key
            entry[1] = True
            if self._unseen.pop(key, _MISSING) is not _MISSING:
                del self._outgoing[key]
            return (str(entry[0]), key[1])

    def transport(self, address: Address) -> Address:
        """Where to connect to reach the world address ``address`` (the port is real)."""
        key = _key(address)
        return (self._bind.get(key[0], key[0]), key[1])


_MISSING = object()


def _key(address: tuple[Any, ...]) -> Address:
    """(ip, port) from a sockname/peername (IPv6 ones carry two more fields)."""
    return (str(address[0]), int(address[1]))
