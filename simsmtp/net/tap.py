"""The capture tap: every byte that crosses a world's sockets, exactly as it was sent.

The listeners and client channels of :mod:`simsmtp.net.listener` (and the DNS server, for
UDP) report each read and each write here, with the connection, the direction and the time.
Under TLS these are the ciphertext records, which is what an eavesdropper sees. Analysis
(transcripts, hexdumps, TLS record annotation, pcap export) lives in :mod:`simsmtp.capture`
and reads :meth:`Tap.connections` and :meth:`Tap.segments`; it never re-renders traffic.
The records themselves (:class:`~simsmtp.traffic.Connection`, :class:`~simsmtp.traffic.Segment`)
are pure data in :mod:`simsmtp.traffic`, below the capture, which reads them through the
:class:`~simsmtp.traffic.Traffic` protocol that the tap fulfils.

The tap is cheap: a segment keeps a reference to the bytes object it was given (no copy);
``Tap(enabled=False)`` makes every call a no-op for load tests. It is bounded: past its byte
budget the oldest segments (and closed connections with nothing left) leave it, and
:meth:`Tap.left_out` gives the sentence a view shows about them.
"""

from __future__ import annotations

import itertools
import threading
import time as _time
from collections import deque
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ..traffic import Address, Connection, Direction, Segment

#: Connection ids for channels that have no tap (ids stay unique within the process).
_fallback_ids = itertools.count(1)


class Tap:
    """A thread-safe record of connections and segments, bounded in memory.

    Args:
        enabled: when False every method that records is a no-op (returns ``None``).
        clock: the time source for calls that give no ``time`` (default ``time.time``,
            seconds since the epoch, as a pcap wants).
        max_bytes: how many bytes of traffic to keep at most (default 64 MiB), so that a
            world that runs all day, or a client that sends without end, cannot grow the
            process without bound: past it, the OLDEST segments leave the capture (counted
            in :attr:`dropped_bytes` and :attr:`dropped_segments`; :attr:`truncated` is
            True), and so do closed connections none of whose bytes are left. ``None``
            keeps everything.
    """

    #: The default byte budget of a tap (a notebook's deliveries use a few kilobytes).
    DEFAULT_MAX_BYTES = 64 * 1024 * 1024

    def __init__(self, enabled: bool = True, clock: Callable[[], float] | None = None,
                 max_bytes: int | None = DEFAULT_MAX_BYTES) -> None:
        self.enabled = enabled
        self.max_bytes = max_bytes
        #: Bytes kept now, and bytes (segments, connections) that left the capture.
        self.kept_bytes = 0
        self.dropped_bytes = 0
        self.dropped_segments = 0
        self.dropped_connections = 0
        self._clock = clock or _time.time
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._connections: dict[int, Connection] = {}
        self._segments: deque[Segment] = deque()
        self._next_index = 0
        self._offsets: dict[tuple[int, str], int] = {}
        self._flows: dict[tuple[Address, Address, str], int] = {}
        self._flow_keys: dict[int, tuple[Address, Address, str]] = {}
        #: connection id -> how many of its segments are kept now
        self._live: dict[int, int] = {}

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
            if self.dropped_bytes and not self._live.get(conn_id):
                self._forget(conn_id)  # the budget is in use and none of its bytes are left
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
                self._flow_keys[conn_id] = key
                self._connections[conn_id] = Connection(conn_id, "udp", client, server,
                                                        service, host, when)
            return self._append(conn_id, direction, data, when, "udp")

    @property
    def truncated(self) -> bool:
        """True once traffic was left out because the byte budget was used up."""
        return self.dropped_bytes > 0

    def left_out(self, conn_id: int | None = None) -> str:
        """The sentence a view shows when older bytes left the capture ("" when none did).

        With ``conn_id``: the bytes of that connection's start that are gone (each
        direction's first kept segment does not start at offset 0).
        """
        with self._lock:
            if conn_id is None:
                if not self.dropped_bytes:
                    return ""
                return (f"{self.dropped_bytes:,} older bytes ({self.dropped_segments:,} "
                        f"segments) were left out of the capture (it keeps the newest "
                        f"{self.max_bytes or 0:,} bytes).")
            if not self.dropped_bytes:
                return ""
            first: dict[str, int] = {}
            for seg in self._segments:
                if seg.conn_id == conn_id and seg.direction not in first:
                    first[seg.direction] = seg.offset
            gone = sum(first.get(d, self._offsets.get((conn_id, d), 0))
                       for d in ("c2s", "s2c"))
        if not gone:
            return ""
        return (f"{gone:,} older bytes of this connection were left out of the capture "
                f"(it keeps the newest {self.max_bytes or 0:,} bytes).")

    def _append(self, conn_id: int, direction: Direction, data: bytes, when: float,
                transport: str) -> Segment | None:
        key = (conn_id, direction)
        offset = self._offsets.get(key, 0)
        self._offsets[key] = offset + len(data)
        segment = Segment(self._next_index, conn_id, direction, data, when, offset, transport)
        self._next_index += 1
        if self.max_bytes is not None and len(data) > self.max_bytes:
            self.dropped_bytes += len(data)  # larger than the whole budget: never kept
            self.dropped_segments += 1
            return None
        if self.max_bytes is not None:
            while self._segments and self.kept_bytes + len(data) > self.max_bytes:
                self._drop_oldest()
        self.kept_bytes += len(data)
        self._segments.append(segment)
        self._live[conn_id] = self._live.get(conn_id, 0) + 1
        return segment

    def _drop_oldest(self) -> None:
        """Let the oldest segment go; its connection too once closed and empty."""
        old = self._segments.popleft()
        self.kept_bytes -= len(old.data)
        self.dropped_bytes += len(old.data)
        self.dropped_segments += 1
        left = self._live[old.conn_id] - 1
        if left:
            self._live[old.conn_id] = left
            return
        del self._live[old.conn_id]
        record = self._connections.get(old.conn_id)
        if record is not None and (record.closed_at is not None or record.transport == "udp"):
            self._forget(old.conn_id)

    def _forget(self, conn_id: int) -> None:
        """Drop a connection's record and bookkeeping (none of its segments are kept)."""
        if self._connections.pop(conn_id, None) is not None:
            self.dropped_connections += 1
        self._offsets.pop((conn_id, "c2s"), None)
        self._offsets.pop((conn_id, "s2c"), None)
        flow = self._flow_keys.pop(conn_id, None)
        if flow is not None:
            self._flows.pop(flow, None)

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
            self.dropped_segments = self.dropped_connections = 0
            self._offsets.clear()
            self._flows.clear()
            self._flow_keys.clear()
            self._live.clear()
            self._next_index = 0

    def __len__(self) -> int:
        return len(self._segments)


def next_conn_id(tap: Tap | None) -> int:
    """A connection id from ``tap``, or from a process-wide counter when there is no tap."""
    return tap.new_conn_id() if tap is not None else next(_fallback_ids)


def _addr(address: tuple[Any, ...]) -> Address:
    """(ip, port) from a sockname/peername (IPv6 ones carry two more fields)."""
    return (str(address[0]), int(address[1]))
