"""The capture tap: every byte that crosses a world's sockets, exactly as it was sent.

The listeners and client channels of :mod:`simsmtp.net.listener` (and the DNS server, for
UDP) report each read and each write here, with the connection, the direction and the time.
Under TLS these are the ciphertext records, which is what an eavesdropper sees. Analysis
(transcripts, hexdumps, TLS record annotation, pcap export) lives in :mod:`simsmtp.capture`
and reads :meth:`Tap.connections` and :meth:`Tap.segments`; it never re-renders traffic.

The tap is cheap: a segment keeps a reference to the bytes object it was given (no copy);
``Tap(enabled=False)`` makes every call a no-op for load tests.
"""

from __future__ import annotations

import itertools
import threading
import time as _time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Literal

Direction = Literal["c2s", "s2c"]
Address = tuple[str, int]

#: Connection ids for channels that have no tap (ids stay unique within the process).
_fallback_ids = itertools.count(1)


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
        index: position among all the segments of the tap (chronological), from 0.
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


class Tap:
    """A thread-safe, append-only record of connections and segments.

    Args:
        enabled: when False every method that records is a no-op (returns ``None``).
        clock: the time source for calls that give no ``time`` (default ``time.time``,
            seconds since the epoch, as a pcap wants).
        max_bytes: how many bytes of traffic to keep at most (default 64 MiB), so that a
            client that sends without end cannot grow the process without bound: past it,
            new segments are counted in :attr:`dropped_bytes` but not kept, and
            :attr:`truncated` is True. ``None`` keeps everything.
    """

    #: The default byte budget of a tap (a notebook's deliveries use a few kilobytes).
    DEFAULT_MAX_BYTES = 64 * 1024 * 1024

    def __init__(self, enabled: bool = True, clock: Callable[[], float] | None = None,
                 max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        #: Bytes kept so far, and bytes seen but not kept once the budget was used up.
        self.kept_bytes = 0
        self.dropped_bytes = 0
        self._clock = clock or _time.time
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._segments: list[Segment] = []
        self._offsets: dict[tuple[int, str], int] = {}
        self._flows: dict[tuple[Address, Address, str], int] = {}

    def new_conn_id(self) -> int:
        """A fresh connection id (counted even while disabled, so ids stay unique)."""
        with self._lock:
            return next(self._ids)

    def now(self) -> float:
        """The tap's clock."""
        return self._clock()

    # -- recording ---------------------------------------------------------------------
    def open(self, conn_id: int, transport: str = "tcp", *, client: Address,
             server: Address, service: str = "", host: str = "",
             time: float | None = None) -> Connection | None:
        """Record that connection ``conn_id`` was established."""
        if not self.enabled:
            return None
        record = Connection(conn_id, transport, _addr(client), _addr(server), service, host,
                            self._clock() if time is None else time)
        with self._lock:
            self._connections[conn_id] = record
        return record

    def data(self, conn_id: int, direction: Direction, data: bytes,
             time: float | None = None) -> Segment | None:
        """Record ``data`` read or written on connection ``conn_id``."""
        if not self.enabled or not data:
            return None
        if not isinstance(data, bytes):
            data = bytes(data)
        when = self._clock() if time is None else time
        with self._lock:
            return self._append(conn_id, direction, data, when, "tcp")

    def close(self, conn_id: int, by: str = "client",
              time: float | None = None) -> Connection | None:
        """Record that connection ``conn_id`` ended, ``by`` ``"client"`` or ``"server"``."""
        if not self.enabled:
            return None
        when = self._clock() if time is None else time
        with self._lock:
            record = self._connections.get(conn_id)
            if record is None or record.closed_at is not None:
                return record
            record = replace(record, closed_at=when, closed_by=by)
            self._connections[conn_id] = record
            return record

    def datagram(self, client: Address, server: Address, data: bytes,
                 direction: Direction, time: float | None = None, *,
                 service: str = "dns", host: str = "") -> Segment | None:
        """Record one UDP datagram (a DNS query is ``c2s``, its answer ``s2c``).

        Datagrams between the same client and server addresses for one service form a
        flow, listed by :meth:`connections` with ``transport == "udp"``.
        """
        if not self.enabled:
            return None
        if not isinstance(data, bytes):
            data = bytes(data)
        client, server = _addr(client), _addr(server)
        when = self._clock() if time is None else time
        with self._lock:
            key = (client, server, service)
            conn_id = self._flows.get(key)
            if conn_id is None:
                conn_id = next(self._ids)
                self._flows[key] = conn_id
                self._connections[conn_id] = Connection(conn_id, "udp", client, server,
                                                        service, host, when)
            return self._append(conn_id, direction, data, when, "udp")

    @property
    def truncated(self) -> bool:
        """True once traffic was left out because the byte budget was used up."""
        return self.dropped_bytes > 0

    def _append(self, conn_id: int, direction: Direction, data: bytes, when: float,
                transport: str) -> Segment | None:
        if self.max_bytes is not None and self.kept_bytes + len(data) > self.max_bytes:
            self.dropped_bytes += len(data)
            return None
        self.kept_bytes += len(data)
        key = (conn_id, direction)
        offset = self._offsets.get(key, 0)
        self._offsets[key] = offset + len(data)
        segment = Segment(len(self._segments), conn_id, direction, data, when, offset,
                          transport)
        self._segments.append(segment)
        return segment

    # -- reading -----------------------------------------------------------------------
    def connections(self) -> list[Connection]:
        """All connections and UDP flows, in the order they were opened."""
        with self._lock:
            return list(self._connections.values())

    def connection(self, conn_id: int) -> Connection | None:
        """The record of one connection, or ``None``."""
        with self._lock:
            return self._connections.get(conn_id)

    def segments(self, conn_id: int | None = None,
                 direction: Direction | None = None) -> list[Segment]:
        """Segments in order, optionally of one connection and one direction."""
        with self._lock:
            snapshot = list(self._segments)
        return [s for s in snapshot
                if (conn_id is None or s.conn_id == conn_id)
                and (direction is None or s.direction == direction)]

    def stream(self, conn_id: int, direction: Direction) -> bytes:
        """Every byte sent in one direction of a connection, joined."""
        return b"".join(s.data for s in self.segments(conn_id, direction))

    def clear(self) -> None:
        """Forget every connection and segment (ids keep counting)."""
        with self._lock:
            self._connections.clear()
            self._segments.clear()
            self.kept_bytes = self.dropped_bytes = 0
            self._offsets.clear()
            self._flows.clear()

    def __len__(self) -> int:
        return len(self._segments)


def next_conn_id(tap: Tap | None) -> int:
    """A connection id from ``tap``, or from a process-wide counter when there is no tap."""
    return tap.new_conn_id() if tap is not None else next(_fallback_ids)


def _addr(address: tuple[Any, ...]) -> Address:
    """(ip, port) from a sockname/peername (IPv6 ones carry two more fields)."""
    return (str(address[0]), int(address[1]))
