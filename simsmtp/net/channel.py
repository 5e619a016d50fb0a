"""The client side of a socket: a sans-IO client core driven over one TCP connection.

:func:`open_connection` connects (from a world host's own loopback address when asked)
and returns a :class:`ClientChannel`: ``send(event)`` gives the core an event and writes
what it queued in one write, ``await next_event()`` returns the core's next event,
reading from the socket while the core needs data, ``await close()`` closes. Every read
and write goes to the capture :class:`~simsmtp.net.tap.Tap` with the exact bytes, and the
connect and close go to the trace. The outbound mail agent (:mod:`simsmtp.net.agent`)
and the steppable client use it; the server side is :mod:`simsmtp.net.listener`.
"""

from __future__ import annotations

import asyncio
import errno
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, cast

from ..trace import Trace
from ..traffic import Address
from .addresses import AddressBook
from .tap import Tap, next_conn_id
from .transport import (
    DEFAULT_CLOSE_TIMEOUT,
    UNSET,
    ConnectionInfo,
    SansIOClient,
    hostport,
    read_buffer,
    resolve_need_data,
    sockaddr,
    sockaddr_of,
)

__all__ = ["ClientChannel", "open_connection"]


class ClientChannel(asyncio.BufferedProtocol):
    """A sans-IO *client* core driven over one TCP connection (see :func:`open_connection`).

    Reads go into a buffer of its own (:class:`asyncio.BufferedProtocol`, see
    :class:`~simsmtp.net.listener.ServerProtocol`).

    Use it from the loop's thread: ``channel.send(event)`` queues and writes,
    ``await channel.next_event()`` returns the next event, waiting for bytes when the core
    needs data, ``await channel.close()`` closes.
    """

    def __init__(self, conn: SansIOClient, *, need_data: object = UNSET,
                 tap: Tap | None = None, trace: Trace | None = None, name: str = "",
                 service: str = "smtp", default_timeout: float | None = None,
                 identity: tuple[str, AddressBook] | None = None) -> None:
        self.conn = conn
        self.identity = identity
        self.need_data = resolve_need_data(conn, need_data)
        self.tap = tap
        self.trace = trace
        self.name = name
        self.service = service
        self.default_timeout = default_timeout
        self.info: ConnectionInfo | None = None
        self._id = next_conn_id(tap)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Any] | None = None
        self._loop = asyncio.get_running_loop()
        self._closers: list[asyncio.Future[Any]] = []  # close() calls waiting for the loss
        #: One timer for every wait, re-armed lazily (see :meth:`_wait_readable`).
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._deadline: float | None = None
        self._eof = False
        self._gone = False
        self._closed_by: str | None = None
        self._error: BaseException | None = None
        self._buffer = read_buffer()
        self._sockname: Address = ("", 0)

    # -- asyncio callbacks ---------------------------------------------------------------
    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)
        local = self._sockname = sockaddr(transport, "sockname")
        peer = sockaddr(transport, "peername")
        if self.identity is not None:
            ip, book = self.identity
            local, peer = book.outgoing(local, ip), book.identify(peer)
        self.info = ConnectionInfo(self._id, self.service, self.name, peer, local,
                                   time.time())
        if self.tap is not None:
            self.tap.open(self._id, "tcp", client=local, server=peer, service=self.service,
                          host=self.name)
        self._record("tcp.connect", peer=hostport(peer), local=hostport(local),
                     role="client")
        self._flush()

    def data_received(self, data: bytes) -> None:
        if self.tap is not None:
            self.tap.data(self._id, "s2c", data)
        try:
            self.conn.receive_data(data)
        except Exception as exc:
            self._error = exc
        self._flush()
        _resolve(self._waiter, True)

    def eof_received(self) -> bool | None:
        self._closed_by = self._closed_by or "server"
        if not self.conn.closed:
            self._feed_eof()
        _resolve(self._waiter, True)
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._closed_by = self._closed_by or "server"
        if not self.conn.closed:
            self._feed_eof()
        if self.identity is not None:
            self.identity[1].closed(self._sockname)
        if self.tap is not None:
            self.tap.close(self._id, by=self._closed_by)
        self._record("tcp.close", by=self._closed_by, error=str(exc) if exc else None,
                     role="client")
        _resolve(self._waiter, True)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        closers, self._closers = self._closers, []
        for closer in closers:
            _resolve(closer, True)

    # -- the driver ----------------------------------------------------------------------
    def send(self, event: Any) -> None:
        """Give ``event`` to the core and write the bytes it queued (one write).

        Raises:
            ConnectionError: the connection is already closed.
        """
        if self._gone or self._transport is None or self._transport.is_closing():
            raise ConnectionError("cannot send: the connection is closed")
        self.conn.send(event)
        self._flush()

    async def next_event(self, timeout: float | None = UNSET) -> object:
        """The core's next event, reading from the socket while it needs data.

        Args:
            timeout: seconds to wait for bytes (default: the channel's timeout).

        Raises:
            TimeoutError: no event within ``timeout``.
            ConnectionError: the server closed and the core has nothing more to say.
        """
        if timeout is UNSET:
            timeout = self.default_timeout
        deadline: float | None = None
        while True:
            if self._error is not None:
                error, self._error = self._error, None
                raise error
            event = self.conn.next_event()
            self._flush()
            if event is not self.need_data:
                return event
            if self._eof or self._gone:
                raise ConnectionError("the server closed the connection")
            if timeout is not None:
                now = self._loop.time()
                if deadline is None:  # only now: most events need no wait at all
                    deadline = now + timeout
                if deadline <= now:
                    raise TimeoutError(f"no event within {timeout} s")
            if not await self._wait_readable(deadline):
                raise TimeoutError(f"no event within {timeout} s")

    async def _wait_readable(self, deadline: float | None) -> bool:
        """Wait until the socket delivers something (or closes); False at ``deadline``.

        A bare future (``asyncio.wait_for`` on an ``Event`` would make a task per wait)
        and one timer for the channel's life, re-armed only when it fires early or a
        wait ends sooner than it: arming and cancelling a timer per reply costs more than
        the reply (the listener's idle timer works the same way).
        """
        waiter: asyncio.Future[bool] = self._loop.create_future()
        self._waiter = waiter
        self._deadline = deadline
        if deadline is not None and (self._timer is None or self._timer_at > deadline):
            self._arm_timer(deadline)
        try:
            return await waiter
        finally:
            self._waiter = None
            self._deadline = None

    def _arm_timer(self, when: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = when
        self._timer = self._loop.call_at(when, self._on_timer)

    def _on_timer(self) -> None:
        """The channel's timer fired: time out the wait whose deadline has come, re-arm
        for a later one, or rest until the next wait arms it again."""
        self._timer = None
        deadline = self._deadline
        if self._waiter is None or deadline is None:
            return
        if deadline <= self._loop.time():
            _resolve(self._waiter, False)
        else:
            self._arm_timer(deadline)

    async def close(self, timeout: float = DEFAULT_CLOSE_TIMEOUT) -> None:
        """Flush, close the socket and wait until it is gone (abort after ``timeout``)."""
        if self._transport is None:
            return
        if not self._gone:
            self._closed_by = self._closed_by or "client"
            self._flush()
            self._transport.close()
        if self._gone:
            return
        # Nothing left to write: the transport has already scheduled connection_lost,
        # so the wait needs no timer (one loop iteration); otherwise abort at ``timeout``.
        # A future of its own per call, woken by connection_lost itself (a shield or a
        # done-callback would cost a loop iteration more); cancelling it harms no other.
        timer = None if not self._transport.get_write_buffer_size() else \
            self._loop.call_later(timeout, self._transport.abort)
        closer: asyncio.Future[Any] = self._loop.create_future()
        self._closers.append(closer)
        try:
            await closer
        finally:
            if timer is not None:
                timer.cancel()
            if closer in self._closers:
                self._closers.remove(closer)

    # -- state ---------------------------------------------------------------------------
    @property
    def id(self) -> int:
        """The connection id (tap and trace)."""
        return self._id

    @property
    def closed(self) -> bool:
        """True once the socket is gone."""
        return self._gone

    @property
    def local(self) -> Address:
        """Our (ip, port)."""
        return self.info.local if self.info else ("", 0)

    @property
    def peer(self) -> Address:
        """The server's (ip, port)."""
        return self.info.peer if self.info else ("", 0)

    def _flush(self) -> None:
        data = self.conn.data_to_send()
        transport = self._transport
        if not data or transport is None or self._gone or transport.is_closing():
            return
        if self.tap is not None:
            self.tap.data(self._id, "c2s", data)
        transport.write(data)

    def _feed_eof(self) -> None:
        if self._eof:
            return
        self._eof = True
        try:
            self.conn.receive_data(b"")
        except Exception as exc:
            self._error = exc

    def _record(self, kind: str, **data: Any) -> None:
        if self.trace is not None:
            self.trace.record(kind, host=self.name, service=self.service, conn=self._id,
                              **data)


def _resolve(waiter: asyncio.Future[Any] | None, value: bool) -> None:
    """Wake a :meth:`ClientChannel.next_event` waiting for bytes (True) or its timeout
    (False); a waiter already woken keeps its first value."""
    if waiter is not None and not waiter.done():
        waiter.set_result(value)


async def open_connection(host: str, port: int, conn: SansIOClient, *,
                          tap: Tap | None = None, name: str = "", service: str = "smtp",
                          timeout: float | None = 30.0, trace: Trace | None = None,
                          local_host: str | None = None,
                          identity: tuple[str, AddressBook] | None = None,
                          need_data: object = UNSET) -> ClientChannel:
    """Connect to ``host:port`` and drive the client core ``conn`` over the socket.

    Args:
        host: the server's address.
        port: the server's port.
        conn: a sans-IO client core (``send``, ``receive_data``, ``next_event``,
            ``data_to_send``, ``closed``).
        tap: the capture tap.
        name: the world host that connects (for the tap and the trace).
        service: what is spoken (``"smtp"`` …).
        timeout: seconds for the connect, and the default of
            :meth:`ClientChannel.next_event`.
        trace: where ``tcp.connect`` and ``tcp.close`` go.
        local_host: bind this source address first (a world host's own 127.0.0.x), so the
            server sees the right client IP.
        identity: ``(world ip, address book)``: the connecting host's world address and
            the world's :class:`~simsmtp.net.addresses.AddressBook`. The socket is
            registered there as that host's before it connects (so the server knows who
            it is even where every host shares 127.0.0.1), and the channel's addresses
            are the world's.
        need_data: the core's ``NEED_DATA`` sentinel (found on the core if not given).

    Raises:
        TimeoutError: the connect took longer than ``timeout``.
        OSError: the connect failed (refused, unreachable).
    """
    loop = asyncio.get_running_loop()
    channel = ClientChannel(conn, need_data=need_data, tap=tap, trace=trace, name=name,
                            service=service, default_timeout=timeout, identity=identity)
    registered: list[Address] = []

    def bound(local: Address) -> None:
        if identity is not None:
            identity[1].outgoing(local, identity[0])
            registered.append(local)

    try:
        started = _start_connect(host, port, local_host, bound)
        if started is not None:  # an IP literal: no resolving
            sock, connected = started
            try:
                if not connected:
                    async with asyncio.timeout(timeout):
                        await loop.sock_connect(sock, (host, port))
                await loop.create_connection(lambda: channel, sock=sock)
            except BaseException:
                sock.close()
                raise
            return channel
    except BaseException:
        if identity is not None:  # never connected: no server will ask who it was
            for local in registered:
                identity[1].forget(local)
        raise
    local_addr = (local_host, 0) if local_host else None
    async with asyncio.timeout(timeout):  # no task per connect, unlike wait_for
        await loop.create_connection(lambda: channel, host, port, local_addr=local_addr)
    return channel


def _ip_family(host: str) -> socket.AddressFamily | None:
    """AF_INET or AF_INET6 for an IP literal, None for anything else (a name)."""
    for family in (socket.AF_INET, socket.AF_INET6):
        try:
            socket.inet_pton(family, host)
        except OSError:
            continue
        return family
    return None


#: Whether a client socket's connect is started here, before the event loop takes it
#: (selector loops); Windows' proactor loop connects with ``ConnectEx`` itself.
_CONNECT_BY_HAND = sys.platform != "win32"


def _start_connect(host: str, port: int, local_host: str | None,
                   bound: Callable[[Address], object] | None = None,
                   ) -> tuple[socket.socket, bool] | None:
    """Start a non-blocking connect to the IP literal ``host``: the socket, and whether
    it is connected already, as it is on loopback (the kernel runs the whole handshake
    inside ``connect``). None when ``host`` (or ``local_host``) is a name, or the two are
    of different families: ``create_connection`` resolves and connects those.

    Knowing the connect is done spares ``create_connection``'s writer registration and
    the loop iteration that waits for it; an IP literal spares its resolving.
    ``bound(local)`` is called with the socket's local address between bind and connect.

    On Windows the socket is only made (and bound): its event loop (the proactor,
    ``ConnectEx``) connects it itself, so it comes back as not connected yet.

    Raises:
        OSError: the connect failed at once (refused), as ``create_connection`` says it.
    """
    family = _ip_family(host)
    if family is None or (local_host and _ip_family(local_host) != family):
        return None
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        if local_host:
            sock.bind((local_host, 0))
            if bound is not None:
                bound(sockaddr_of(sock.getsockname()))
        if not _CONNECT_BY_HAND:
            return sock, False
        err = sock.connect_ex((host, port))
        if err not in (0, errno.EINPROGRESS):
            raise OSError(err, f"Connect call failed {(host, port)}")
        if err:
            try:
                sock.getpeername()  # connected now? (ENOTCONN while the handshake runs)
            except OSError:
                err = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:  # refused already (loopback answers a SYN at once)
                    raise OSError(err, f"Connect call failed {(host, port)}") from None
                return sock, False
        return sock, True
    except BaseException:
        sock.close()
        raise
