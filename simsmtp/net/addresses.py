"""Loopback addresses for the hosts of a world.

Each host of a world gets its own ``127.0.0.x`` address, so a capture shows
``127.0.0.2 -> 127.0.0.3`` the way a learner expects two machines to look. On Linux the
whole of 127.0.0.0/8 is routed to the loopback interface (RFC 1122 §3.2.1.3 (g) reserves
the block for loopback), so any of those addresses can be bound without configuration.
Where only ``127.0.0.1`` exists (macOS without ``ifconfig lo0 alias``), every host shares
``127.0.0.1`` and the ephemeral ports alone keep the hosts apart: a world is still correct,
its captures are just less pretty.

Ports are never chosen here: every listener binds port 0 and the kernel picks a free one,
so no root is needed and many worlds (one per notebook kernel) run side by side.
"""

from __future__ import annotations

import functools
import ipaddress
import socket

#: The address every system has (RFC 1122 §3.2.1.3 (g)).
LOCALHOST = "127.0.0.1"
#: The default first address handed to a world's hosts.
DEFAULT_BASE = "127.0.0.2"

_LOOPBACK_NET = ipaddress.IPv4Network("127.0.0.0/8")
#: The last usable address of 127/8 (127.255.255.255 is its broadcast address).
_LAST = ipaddress.IPv4Address("127.255.255.254")


@functools.lru_cache(maxsize=4096)
def can_bind(address: str) -> bool:
    """True when a UDP socket can be bound to ``address`` on an ephemeral port.

    The answer is cached: the loopback routing of a machine does not change while a
    notebook runs.
    """
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
    """Return ``n`` distinct loopback addresses for ``n`` hosts, starting at ``base``.

    Addresses are consecutive, skipping those whose last byte is 0 or 255 (they confuse
    learners who know them as network and broadcast addresses). The result is
    deterministic: the caller picks ``base`` (for example one per world) when it wants
    several worlds on one machine to show different addresses in Wireshark. Sharing is
    harmless otherwise, because ports are always ephemeral.

    Where the addresses cannot all be bound (only 127.0.0.1 exists), returns
    ``["127.0.0.1"] * n``: the hosts then share an address and differ by port.

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
    if all(can_bind(a) for a in addresses):
        return addresses
    return [LOCALHOST] * n
