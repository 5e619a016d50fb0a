"""What crossed a world's sockets, as data: connections, segments, and a source of them.

The capture's data types live here, below :mod:`simsmtp.capture` (which reads them) and
:mod:`simsmtp.net` (whose :class:`~simsmtp.net.tap.Tap` writes them), so that the pure
analysis never imports the layer with sockets and threads. This module is pure: plain
frozen dataclasses and a :class:`typing.Protocol`, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Direction = Literal["c2s", "s2c"]
Address = tuple[str, int]


@dataclass(frozen=True, slots=True)
class Connection:
    """One TCP connection (or one UDP flow: client address, server address, service).

    Attributes:
        id: the connection id (also in the trace's ``tcp.*`` events as ``conn``).
        transport: ``"tcp"`` or ``"udp"``.
        client: the client's (ip, port).
        server: the server's (ip, port). For a world's sockets both are the hosts' own
            addresses in the world (the real ports), even where every host's sockets share
            127.0.0.1 (:class:`~simsmtp.net.addresses.AddressBook`).
        service: what the server speaks (``"smtp"``, ``"submission"``, ``"dns"`` …).
        host: the world host that recorded it (server name, or the client's for outbound).
        opened_at: time of the connect (first datagram for UDP).
        closed_at: time of the close, ``None`` while open (always for UDP).
        closed_by: ``"client"`` or ``"server"``: who closed first.
    """

    id: int
    transport: str
    client: Address
    server: Address
    service: str
    host: str
    opened_at: float
    closed_at: float | None = None
    closed_by: str | None = None


@dataclass(frozen=True, slots=True)
class Segment:
    """The bytes of one read or write, exactly as they crossed the socket.

    Attributes:
        index: position among all the segments the tap recorded (chronological), from 0;
            the oldest may have left a bounded tap.
        conn_id: the :class:`Connection` it belongs to.
        direction: ``"c2s"`` (client to server) or ``"s2c"``.
        data: the bytes.
        time: when they were read or written.
        offset: how many bytes went in this direction of this connection before them
            (the relative TCP sequence number of the first byte, minus one).
        transport: ``"tcp"`` or ``"udp"``.
    """

    index: int
    conn_id: int
    direction: Direction
    data: bytes
    time: float
    offset: int
    transport: str = "tcp"


class Traffic(Protocol):
    """A source of captured connections and segments: what :mod:`simsmtp.capture` reads.

    :class:`simsmtp.net.tap.Tap` is the one the running world fills; a test may hand in
    any object with these methods.
    """

    def connections(self) -> list[Connection]:
        """All connections and UDP flows, in the order they were opened."""
        ...

    def connection(self, conn_id: int) -> Connection | None:
        """The record of one connection, or ``None``."""
        ...

    def segments(self, conn_id: int | None = None,
                 direction: Direction | None = None) -> list[Segment]:
        """Segments in order, optionally of one connection and one direction."""
        ...

    def stream(self, conn_id: int, direction: Direction) -> bytes:
        """Every byte sent in one direction of a connection, joined."""
        ...

    def left_out(self, conn_id: int | None = None) -> str:
        """The sentence a view shows when older bytes left the capture ("" when none did)."""
        ...
