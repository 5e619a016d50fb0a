"""What both sides of a socket share: the sans-IO interface and the per-loop read buffer.

The protocol cores of :mod:`simsmtp.protocol` never touch a socket. They follow one small
interface (after h11), :class:`SansIOConnection`: ``receive_data(bytes)`` (``b""`` is EOF),
``next_event()`` (an event or the core's ``NEED_DATA`` sentinel), ``data_to_send()`` and
``closed``; a client core also takes ``send(event)`` (:class:`SansIOClient`). The server
side (:mod:`simsmtp.net.listener`) and the client side (:mod:`simsmtp.net.channel`) drive
such a core over a real socket; this module holds what they have in common: the
interface, who talks to whom (:class:`ConnectionInfo`), how a core's ``NEED_DATA`` is
found, socket addresses, and the one read buffer per event loop.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from dataclasses import dataclass
from typing import Any, Protocol

from ..traffic import Address

__all__ = [
    "DEFAULT_CLOSE_TIMEOUT",
    "READ_BUFFER",
    "UNSET",
    "ConnectionInfo",
    "SansIOClient",
    "SansIOConnection",
    "hostport",
    "read_buffer",
    "resolve_need_data",
    "sockaddr",
    "sockaddr_of",
]

#: How long a close waits for a connection to finish flushing before aborting it.
DEFAULT_CLOSE_TIMEOUT = 5.0
#: Octets one read may take: the read buffer of an event loop (asyncio's own default).
READ_BUFFER = 256 * 1024


class SansIOConnection(Protocol):
    """What a listener needs from a protocol core (server role)."""

    def receive_data(self, data: bytes) -> None:
        """Buffer bytes from the peer; ``b""`` means EOF."""

    def next_event(self) -> object:
        """The next event, or the core's ``NEED_DATA`` sentinel."""

    def data_to_send(self) -> bytes:
        """Drain the bytes the core wants on the wire."""

    @property
    def closed(self) -> bool:
        """True once the core is done (221, 421, QUIT, failed TLS …)."""


class SansIOClient(SansIOConnection, Protocol):
    """A client core: a connection that also accepts events to send."""

    def send(self, event: Any) -> None:
        """Queue the bytes of ``event`` in ``data_to_send()``."""


@dataclass(frozen=True)
class ConnectionInfo:
    """Who is talking to whom, for ``on_event`` and the widgets.

    Attributes:
        id: connection id (the tap's and the trace's ``conn``).
        service: what the listener speaks (``"smtp"``, ``"pop3"`` …).
        host_name: the world host that owns the listener (or the client, outbound).
        peer: the other end's (ip, port).
        local: our end's (ip, port).
        opened_at: wall-clock time of the connect (``time.time()``).
    """

    id: int
    service: str
    host_name: str
    peer: Address
    local: Address
    opened_at: float


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


#: "Not given" for arguments where None means something (``need_data``, a timeout).
UNSET: Any = _Unset()


def resolve_need_data(conn: object, need_data: object = UNSET) -> object:
    """The ``NEED_DATA`` sentinel of ``conn``'s core.

    ``need_data`` when given; otherwise a ``NEED_DATA`` attribute of the connection, or of
    the module that defines its class (h11 style).

    Raises:
        TypeError: none of these exists.
    """
    if need_data is not UNSET:
        return need_data
    for source in (conn, sys.modules.get(type(conn).__module__)):
        value = getattr(source, "NEED_DATA", UNSET)
        if value is not UNSET:
            return value
    raise TypeError(f"cannot find NEED_DATA for {type(conn).__name__}: pass need_data=")


def hostport(address: Address) -> str:
    return f"{address[0]}:{address[1]}"


def sockaddr(transport: asyncio.BaseTransport, key: str) -> Address:
    value = transport.get_extra_info(key)
    if not value:
        return ("", 0)
    return (str(value[0]), int(value[1]))


_READ_BUFFERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, memoryview] = \
    weakref.WeakKeyDictionary()


def read_buffer() -> memoryview:
    """The buffer every connection of the running event loop reads into, servers and
    clients alike (:class:`asyncio.BufferedProtocol`): one per loop, not one per listener
    or connection (a world of 1,000 MX hosts would hold 256 MB of them). Sharing is safe
    because a loop runs one callback at a time and every read is copied out of the buffer
    in ``buffer_updated``, before the next read starts."""
    loop = asyncio.get_running_loop()
    view = _READ_BUFFERS.get(loop)
    if view is None:
        view = _READ_BUFFERS[loop] = memoryview(bytearray(READ_BUFFER))
    return view


def sockaddr_of(value: Any) -> Address:
    return (str(value[0]), int(value[1]))

