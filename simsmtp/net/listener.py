"""The server side of a socket: listeners that run a sans-IO core per accepted connection.

The protocol cores of :mod:`simsmtp.protocol` never touch a socket. They follow one small
interface (after h11), :class:`~simsmtp.net.transport.SansIOConnection`:
``receive_data(bytes)`` (``b""`` is EOF), ``next_event()`` (an event or the core's
``NEED_DATA`` sentinel), ``data_to_send()`` and ``closed``. This module is the other half
for servers: an :class:`asyncio.Protocol` per accepted
connection that feeds the core what the socket reads and writes what the core wants sent.
It is a plain Protocol, not streams, because speed matters (a world is measured against
aiosmtpd).

Per accepted connection the :class:`Listener`:

* builds ``conn = factory(peer=(ip, port), local=(ip, port))`` and flushes its greeting;
* on every read: ``conn.receive_data(data)``, then ``next_event()`` until ``NEED_DATA``,
  handing each event to ``on_event(info, event)``; all the output of one read goes out in
  ONE ``transport.write`` (so pipelined replies leave in one segment, RFC 2920 §3.2);
* honours ``event.delay`` (seconds) by writing that event's output later (fault rules and
  the soft error limit use it), with ``call_later``, never ``sleep``;
* closes the socket once ``conn.closed`` (after flushing); EOF and a vanished client feed
  ``receive_data(b"")`` exactly once, so a transaction cut off mid-DATA is never stored
  (RFC 5321 §4.1.1.4: "If the connection is closed prematurely the server MUST cancel any
  pending transaction");
* runs an idle timer (RFC 5321 §4.5.3.2.7: at least 5 minutes), caps connections in total
  and per client address, and says goodbye to every open connection on :meth:`Listener.close`;
* remembers what each client address did lately across its connections (an :class:`Anvil`,
  as Postfix's anvil(8)): too many new connections, or too many failed logins, in a window
  and the next connection is refused with a ``421``;
* near its connection limit, runs in stress mode (Postfix ``smtpd_timeout =
  ${stress?{10}:{300}}s``): every idle timer uses the short ``stress_idle_timeout``, so idle
  connections that hold the service's slots are cut quickly;
* while the core reads message content (``conn.receiving_content``), enforces a minimum
  data rate instead (Postfix ``smtpd_min_data_rate``): each read of *n* octets moves the
  deadline *n / rate* seconds later, never more than ``idle_timeout`` ahead, so a slow-drip
  DATA is cut off while a big message sent at a sane rate is never timed out.

Every read and write goes to the capture :class:`~simsmtp.net.tap.Tap` with the exact
bytes (ciphertext under TLS); connects, closes, refusals and timeouts go to the trace.

For the outbound side, :func:`simsmtp.net.channel.open_connection` drives a sans-IO
*client* core the same way and returns a :class:`~simsmtp.net.channel.ClientChannel`.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import traceback
from collections import deque
from collections.abc import Callable
from typing import Any, Literal, Protocol, cast

from ..trace import Trace
from ..traffic import Address
from .loop import EventLoopThread
from .tap import Tap, next_conn_id
from .transport import (
    DEFAULT_CLOSE_TIMEOUT,
    UNSET,
    ConnectionInfo,
    SansIOConnection,
    hostport,
    read_buffer,
    resolve_need_data,
    sockaddr,
    sockaddr_of,
)

__all__ = [
    "Anvil",
    "ConnectionFactory",
    "Listener",
    "ServerProtocol",
    "create_listener",
    "serve",
]

#: RFC 5321 §4.5.3.2.7: a server SHOULD wait at least 5 minutes for the next command.
DEFAULT_IDLE_TIMEOUT = 300.0
#: Postfix default_process_limit (100): simultaneous sessions of one service.
DEFAULT_MAX_CONNECTIONS = 100
#: Postfix smtpd_client_connection_count_limit (50): simultaneous sessions per client IP.
DEFAULT_MAX_PER_CLIENT = 50
#: Postfix smtpd_min_data_rate (500 bytes/s): the slowest DATA/BDAT a world waits for.
DEFAULT_MIN_DATA_RATE = 500.0
#: A core that closed returns NEED_DATA once it has reported its last events; past this
#: many events after the close, a broken core is cut off instead of looping for ever.
MAX_EVENTS_AFTER_CLOSE = 100
#: Stress mode starts when this share of ``max_connections`` is in use (Postfix enters it
#: when a service runs out of processes; starting a little before leaves room to recover).
STRESS_AT = 0.8


class Anvil:
    """What each client address did lately, across its connections (Postfix anvil(8)).

    Counts, per address and in a sliding window of ``window`` seconds, the connections it
    opened and the logins it failed, so a client that reconnects after every ``421`` gains
    nothing: past ``max_connection_rate`` connections (Postfix
    ``smtpd_client_connection_rate_limit``) or ``max_auth_failure_rate`` failed logins
    (as ``smtpd_client_auth_rate_limit``) in the window, its next connections are refused
    until the window has moved on. 0 means no limit.

    Args:
        max_connection_rate: connections per window and address (0: no limit).
        max_auth_failure_rate: failed logins per window and address (0: no limit).
        window: the window in seconds (Postfix ``anvil_rate_time_unit``, 60 s).
        exempt: ``exempt(ip)`` True for trusted clients (Postfix
            ``smtpd_client_event_limit_exceptions``, by default ``$mynetworks``).
        clock: seconds, monotonic (``time.monotonic``); a test passes its own.
    """

    #: Addresses remembered at most: the oldest is forgotten first (memory stays bounded
    #: whatever the number of addresses a client uses).
    MAX_CLIENTS = 65536

    def __init__(self, *, max_connection_rate: int = 0, max_auth_failure_rate: int = 0,
                 window: float = 60.0, exempt: Callable[[str], bool] | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        if window <= 0:
            raise ValueError(f"window must be > 0 seconds, not {window!r}")
        self.max_connection_rate = max_connection_rate
        self.max_auth_failure_rate = max_auth_failure_rate
        self.window = window
        self.exempt = exempt
        self.clock = clock or time.monotonic
        self._connections: dict[str, deque[float]] = {}
        self._auth_failures: dict[str, deque[float]] = {}

    def _count(self, table: dict[str, deque[float]], ip: str, add: bool, cap: int) -> int:
        now = self.clock()
        times = table.get(ip)
        if times is None:
            if not add:
                return 0
            if len(table) >= self.MAX_CLIENTS:
                del table[next(iter(table))]
            times = table[ip] = deque()
        while times and times[0] <= now - self.window:
            times.popleft()
        if add:
            times.append(now)
            while len(times) > cap + 1:  # more is never needed to decide
                times.popleft()
        if not times:
            del table[ip]
        return len(times)

    def _trusted(self, ip: str) -> bool:
        if self.exempt is None:
            return False
        try:
            return bool(self.exempt(ip))
        except ValueError:
            return False

    def refusal(self, ip: str) -> str | None:
        """Count a new connection from ``ip``; why to refuse it (``"connection_rate"``,
        ``"auth_failure_rate"``), or None."""
        if self._trusted(ip):
            return None
        if self.max_auth_failure_rate and self._count(
                self._auth_failures, ip, False, self.max_auth_failure_rate) \
                >= self.max_auth_failure_rate:
            return "auth_failure_rate"
        if self.max_connection_rate and self._count(
                self._connections, ip, True, self.max_connection_rate) \
                > self.max_connection_rate:
            return "connection_rate"
        return None

    def auth_failed(self, ip: str) -> int:
        """Count a failed login from ``ip``; how many it has in the window now."""
        if self._trusted(ip) or not self.max_auth_failure_rate:
            return 0
        return self._count(self._auth_failures, ip, True, self.max_auth_failure_rate)

    def auth_blocked(self, ip: str) -> bool:
        """Whether ``ip`` has used up its failed logins for the window."""
        return bool(self.max_auth_failure_rate) and not self._trusted(ip) and self._count(
            self._auth_failures, ip, False, self.max_auth_failure_rate) \
            >= self.max_auth_failure_rate


class ConnectionFactory(Protocol):
    """Builds the core of one accepted connection."""

    def __call__(self, *, peer: Address, local: Address) -> SansIOConnection: ...


class Listener:
    """A listening socket that runs one sans-IO core per accepted connection.

    Build it with :func:`serve` (from any thread) or :func:`create_listener` (inside the
    loop); the arguments are the same.

    Args:
        host: the address to bind (a world host's 127.0.0.x).
        port: the port; 0 (the default) lets the kernel choose, see :attr:`address`.
        factory: ``factory(peer=(ip, port), local=(ip, port))`` builds a core.
        name: the world host's name (in :class:`ConnectionInfo` and the trace).
        service: what it speaks (``"smtp"``, ``"submission"``, ``"smtps"``, ``"pop3"``).
        trace: where ``tcp.connect``, ``tcp.close``, ``tcp.refused``, ``tcp.timeout`` and
            ``net.error`` events go.
        tap: the capture tap (every read and write, exact bytes).
        idle_timeout: seconds without activity before ``on_timeout`` and a close (RFC 5321
            §4.5.3.2.7 asks for at least 300); ``None`` disables the timer.
        idle_reset: what restarts the timer: ``"event"`` (default: a read that completed at
            least one event, so bytes trickled one at a time never extend a session,
            ``tests/hardening/CATALOGUE.md`` test 64, as aiosmtpd does) or ``"data"`` (any read).
        on_timeout: ``on_timeout(conn)`` makes the core queue its timeout reply
            (``421 4.4.2 <host> Error: timeout exceeded``); then flush and close.
        min_data_rate: octets per second a client must keep up while the core says
            ``receiving_content`` (DATA, BDAT chunks): a read of *n* octets extends the
            deadline by *n / rate* seconds, capped at ``idle_timeout`` from now; reads do
            not reset the timer then (Postfix ``smtpd_min_data_rate``). ``None`` (the
            default): content is timed like everything else by ``idle_reset``.
        max_connections: simultaneous connections; ``None`` is unlimited.
        max_per_client: simultaneous connections from one client IP; ``None`` is unlimited.
        on_refused: ``on_refused(peer) -> bytes`` (or ``on_refused(peer, reason)``, reason
            ``"max_connections"``, ``"max_per_client"``, ``"connection_rate"`` or
            ``"auth_failure_rate"``) written to a connection over a cap before it is closed
            (``421 4.7.0 <host> Error: too many connections from <ip>``); without it the
            connection is closed silently.
        anvil: the :class:`Anvil` that counts each client's connections and failed
            logins across connections; None: no rate limits.
        stress_idle_timeout: the idle timeout of every connection while the listener has
            :data:`STRESS_AT` of ``max_connections`` or more (stress mode); None: none.
        on_event: ``on_event(info, event)`` for every event the core returns.
        need_data: the core's ``NEED_DATA`` sentinel (found on the core if not given).
        backlog: the listen backlog.
        close_timeout: how long :meth:`close` waits for each connection to flush.
        identify: ``identify((ip, port)) -> (ip, port)``: who a socket address is in the
            world (:meth:`~simsmtp.net.addresses.AddressBook.identify`), applied once at
            accept to the peer and our own end; everything (the core, the caps, the
            trace, the capture) then sees those identities. ``None``: the addresses as
            they are.
    """

    def __init__(self, host: str, port: int = 0, *, factory: ConnectionFactory,
                 name: str = "", service: str = "", trace: Trace | None = None,
                 tap: Tap | None = None, idle_timeout: float | None = DEFAULT_IDLE_TIMEOUT,
                 idle_reset: Literal["event", "data"] = "event",
                 on_timeout: Callable[[Any], None] | None = None,
                 min_data_rate: float | None = None,
                 max_connections: int | None = DEFAULT_MAX_CONNECTIONS,
                 max_per_client: int | None = DEFAULT_MAX_PER_CLIENT,
                 on_refused: Callable[..., bytes] | None = None,
                 on_event: Callable[[ConnectionInfo, object], None] | None = None,
                 need_data: object = UNSET, backlog: int = 100,
                 close_timeout: float = DEFAULT_CLOSE_TIMEOUT,
                 identify: Callable[[Address], Address] | None = None,
                 anvil: Anvil | None = None,
                 stress_idle_timeout: float | None = None) -> None:
        if idle_reset not in ("event", "data"):
            raise ValueError(f"idle_reset must be 'event' or 'data', not {idle_reset!r}")
        if min_data_rate is not None and not min_data_rate > 0:
            raise ValueError(f"min_data_rate must be > 0 octets/s, not {min_data_rate!r}")
        self.host = host
        self.port = port
        self.factory = factory
        self.name = name
        self.service = service
        self.trace = trace
        self.tap = tap
        self.idle_timeout = idle_timeout
        self.idle_reset = idle_reset
        self.on_timeout = on_timeout
        self.min_data_rate = min_data_rate
        self.max_connections = max_connections
        self.max_per_client = max_per_client
        self.on_refused = on_refused
        self._refused_with_reason = on_refused is not None and _takes_two(on_refused)
        self.anvil = anvil
        self.stress_idle_timeout = stress_idle_timeout
        self.on_event = on_event
        self.need_data = need_data
        self.backlog = backlog
        self.close_timeout = close_timeout
        self.identify = identify
        self._server: asyncio.Server | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._protocols: dict[ServerProtocol, None] = {}  # ordered set
        self._per_client: dict[str, int] = {}
        self._closing = False
        self._closed: asyncio.Future[None] | None = None

    async def start(self) -> Listener:
        """Bind and start accepting (inside the loop); returns self."""
        if self._server is not None:
            raise RuntimeError("listener already started")
        self._loop = asyncio.get_running_loop()
        self._server = await self._loop.create_server(
            lambda: ServerProtocol(self), self.host, self.port, backlog=self.backlog)
        self.port = self.address[1]
        return self

    # -- what the world sees -------------------------------------------------------------
    @property
    def address(self) -> Address:
        """The bound (ip, port)."""
        if self._server is None or not self._server.sockets:
            return (self.host, self.port)
        return sockaddr_of(self._server.sockets[0].getsockname())

    @property
    def connections(self) -> int:
        """How many connections are open now."""
        return len(self._protocols)

    def connection_infos(self) -> list[ConnectionInfo]:
        """The :class:`ConnectionInfo` of every open connection, oldest first."""
        return [p.info for p in list(self._protocols) if p.info is not None]

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closing

    # -- shutdown ----------------------------------------------------------------------
    async def close(self, goodbye: Callable[[Any], None] | None = None) -> None:
        """Stop accepting, say goodbye to every open connection, close them, free the port.

        Args:
            goodbye: ``goodbye(conn)`` makes each core queue its farewell (``421 4.3.2 <host>
                Service shutting down``, RFC 5321 §3.8); it is flushed before the close.
        """
        loop = asyncio.get_running_loop()
        if self._closing:
            if self._closed is not None:
                await asyncio.shield(self._closed)
            return
        self._closing = True
        self._closed = loop.create_future()
        try:
            if self._server is not None:
                self._server.close()
            protocols = list(self._protocols)
            for protocol in protocols:
                protocol.shutdown(goodbye)
            waiters = [p.lost for p in protocols if p.lost is not None]
            if waiters:
                _done, pending = await asyncio.wait(waiters, timeout=self.close_timeout)
                if pending:
                    for protocol in protocols:
                        protocol.abort()
                    await asyncio.wait(pending, timeout=self.close_timeout)
            if self._server is not None:
                await self._server.wait_closed()
        finally:
            self._closed.set_result(None)

    def stop(self, goodbye: Callable[[Any], None] | None = None,
             timeout: float | None = None) -> None:
        """:meth:`close` from another thread, blocking until done."""
        if self._loop is None:
            self._closing = True
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            raise RuntimeError("Listener.stop() inside its own loop would deadlock; "
                               "use `await listener.close()`")
        future = asyncio.run_coroutine_threadsafe(self.close(goodbye), self._loop)
        future.result(timeout)

    # -- stress mode -------------------------------------------------------------------
    @property
    def stressed(self) -> bool:
        """True while the listener is near its connection limit (stress mode)."""
        return (self.stress_idle_timeout is not None and self.max_connections is not None
                and len(self._protocols) >= STRESS_AT * self.max_connections)

    def current_idle_timeout(self) -> float | None:
        """The idle timeout connections get now: the short one in stress mode."""
        timeout = self.idle_timeout
        if timeout is not None and self.stressed:
            assert self.stress_idle_timeout is not None
            return min(timeout, self.stress_idle_timeout)
        return timeout

    # -- bookkeeping used by ServerProtocol ----------------------------------------------
    def over_cap(self, ip: str) -> str | None:
        """Why a new connection from ``ip`` is refused (a cap or the anvil), or None."""
        if self.max_connections is not None and len(self._protocols) >= self.max_connections:
            return "max_connections"
        if self.max_per_client is not None and self._per_client.get(ip, 0) >= \
                self.max_per_client:
            return "max_per_client"
        if self.anvil is not None:
            return self.anvil.refusal(ip)
        return None

    def refusal_bytes(self, peer: Address, reason: str) -> bytes:
        """What ``on_refused`` says to a refused ``peer`` (with the reason if it takes one)."""
        assert self.on_refused is not None
        if self._refused_with_reason:
            return self.on_refused(peer, reason)
        return self.on_refused(peer)

    def register(self, protocol: ServerProtocol, ip: str) -> None:
        """Count an accepted connection from ``ip`` (may start stress mode)."""
        was_stressed = self.stressed
        self._protocols[protocol] = None
        self._per_client[ip] = self._per_client.get(ip, 0) + 1
        if not was_stressed and self.stressed:
            self.record("listener.stress", connections=len(self._protocols),
                        idle_timeout=self.stress_idle_timeout)
            for other in list(self._protocols):  # every idle timer gets shorter now
                other.tighten()

    def unregister(self, protocol: ServerProtocol, ip: str) -> None:
        """Forget a connection that is gone (once; later calls do nothing)."""
        if self._protocols.pop(protocol, UNSET) is UNSET:
            return
        left = self._per_client.get(ip, 1) - 1
        if left > 0:
            self._per_client[ip] = left
        else:
            self._per_client.pop(ip, None)

    def record(self, kind: str, **data: Any) -> None:
        """Append ``kind`` to the trace as this listener's host and service."""
        if self.trace is not None:
            self.trace.record(kind, host=self.name, service=self.service, **data)

    def __repr__(self) -> str:
        ip, port = self.address
        return (f"<Listener {self.name or '-'} {self.service or '-'} {ip}:{port} "
                f"connections={self.connections}>")


def _takes_two(callback: Callable[..., Any]) -> bool:
    """Whether ``callback`` accepts two positional arguments (peer and reason)."""
    try:
        inspect.signature(callback).bind(None, None)
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): the one-argument form
        return False
    return True


class ServerProtocol(asyncio.BufferedProtocol):
    """The asyncio side of one accepted connection (built by :class:`Listener`).

    A :class:`asyncio.BufferedProtocol`: the transport reads into the listener's one
    preallocated buffer (``recv_into``) instead of allocating 256 KiB for every read, which
    costs an ``mmap``, an ``mremap`` and fresh zeroed pages per read; each read is copied
    out at once (:meth:`buffer_updated`), so the buffer is free for the next one.
    """

    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        self.conn: SansIOConnection | None = None
        self.info: ConnectionInfo | None = None
        #: Resolved when the connection is gone (for Listener.close).
        self.lost: asyncio.Future[None] | None = None
        self._transport: asyncio.Transport | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._need_data: object = UNSET
        self._timer: asyncio.TimerHandle | None = None
        self._deadline = 0.0  # loop time when the idle timer fires
        self._delay: asyncio.TimerHandle | None = None
        self._delayed_output = b""
        #: The core's pending reply this connection waits for (see _watch_pending).
        self._waiting_on: object = None
        self._paused: set[str] = set()
        self._eof_fed = False
        self._closed_by: str | None = None
        self._registered = False
        self._gone = False
        self._failed = False
        self._ip = ""
        self._buffer = read_buffer()  # made by the loop's protocol factory: on the loop

    # -- asyncio callbacks ---------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        listener = self.listener
        self._transport = cast(asyncio.Transport, transport)
        self._loop = asyncio.get_running_loop()
        self.lost = self._loop.create_future()
        peer = sockaddr(transport, "peername")
        local = sockaddr(transport, "sockname")
        if listener.identify is not None:  # hosts sharing 127.0.0.1 keep their own address
            peer, local = listener.identify(peer), listener.identify(local)
        self._ip = peer[0]
        conn_id = next_conn_id(listener.tap)
        self.info = ConnectionInfo(conn_id, listener.service, listener.name, peer, local,
                                   time.time())
        if listener.tap is not None:
            listener.tap.open(conn_id, "tcp", client=peer, server=local,
                              service=listener.service, host=listener.name)
        listener.record("tcp.connect", conn=conn_id, peer=hostport(peer),
                        local=hostport(local))
        refusal = "shutting_down" if listener.closing else listener.over_cap(peer[0])
        if refusal is not None:
            listener.record("tcp.refused", conn=conn_id, peer=hostport(peer),
                            reason=refusal)
            if refusal != "shutting_down" and listener.on_refused is not None:
                try:
                    self._write(listener.refusal_bytes(peer, refusal))
                except Exception as exc:
                    self._error("on_refused", exc)
            self._close_transport("server")
            return
        listener.register(self, peer[0])
        self._registered = True
        try:
            self.conn = listener.factory(peer=peer, local=local)
            self._need_data = resolve_need_data(self.conn, listener.need_data)
            set_waker = getattr(self.conn, "set_waker", None)
            if set_waker is not None:  # the core may have news without input (IMAP IDLE)
                loop = self._loop
                set_waker(lambda: loop.call_soon_threadsafe(self._wake))
        except Exception as exc:
            self._fail("factory", exc)
            return
        self._arm_timer()
        self._pump()

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        if self.info is not None and self.listener.tap is not None:
            self.listener.tap.data(self.info.id, "c2s", data)
        conn = self.conn
        if conn is None or self._closed_by is not None:
            return  # refused, failed or closing: the bytes are captured, not processed
        rate = self.listener.min_data_rate
        if rate and getattr(conn, "receiving_content", False):
            self._extend_deadline(len(data) / rate)  # Postfix smtpd_min_data_rate
        elif self.listener.idle_reset == "data":
            self._arm_timer()
        try:
            conn.receive_data(data)
        except Exception as exc:
            self._fail("receive_data", exc)
            return
        if self._delay is None:
            self._pump()

    def eof_received(self) -> bool | None:
        conn = self.conn
        self._closed_by = self._closed_by or "client"
        if conn is None or conn.closed:
            return None
        self._feed_eof()
        if self._delay is not None:
            return True  # keep the socket to write the delayed replies; _pump closes it
        self._pump()
        if self._waiting_on is not None:
            return True  # keep the socket to write the pending reply; _pump closes it
        return None  # the transport flushes and closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self._gone = True
        self._closed_by = self._closed_by or "client"
        was_delaying = self._delay is not None
        self._cancel_timers()
        conn = self.conn
        if conn is not None:
            # The client vanished: the core must see EOF once, so it drops what is pending,
            # and what it still had buffered becomes events (output has nowhere to go).
            fresh_eof = not conn.closed and not self._eof_fed
            if fresh_eof:
                self._feed_eof()
            if fresh_eof or was_delaying:
                self._pump()
        closed_by = self._closed_by
        info = self.info
        if info is not None:
            if self.listener.tap is not None:
                self.listener.tap.close(info.id, by=closed_by)
            self.listener.record("tcp.close", conn=info.id, by=closed_by,
                                 error=str(exc) if exc else None)
        if self._registered:
            self.listener.unregister(self, self._ip)
            self._registered = False
        if self.lost is not None and not self.lost.done():
            self.lost.set_result(None)

    def pause_writing(self) -> None:
        # Back-pressure: the socket's send buffer is past its high-water mark (64 KiB by
        # default), so stop reading until the peer catches up: the core then produces no
        # more output either.
        self._pause("writing")

    def resume_writing(self) -> None:
        self._resume("writing")

    # -- the pump ------------------------------------------------------------------------
    def _pump(self, prefix: bytes = b"", *, honour_delay: bool = True) -> None:
        """Drain events until NEED_DATA and write all their output in one write.

        Events that follow the core's close (its ``ConnectionClosed``) are drained too: a
        core returns NEED_DATA for ever once it has reported everything.
        """
        conn = self.conn
        assert conn is not None and self.info is not None
        out = [prefix] if prefix else []
        got_event = False
        after_close = 0
        # After a failure the core still sees EOF and drains, but a callback that raised
        # is not called again (one bug, one net.error).
        on_event = None if self._failed else self.listener.on_event
        while True:
            try:
                event = conn.next_event()
            except Exception as exc:
                self._write(b"".join(out))
                self._fail("next_event", exc)
                return
            if event is self._need_data:
                break
            got_event = True
            if on_event is not None:
                try:
                    on_event(self.info, event)
                except Exception as exc:
                    self._write(b"".join(out))
                    self._fail("on_event", exc)
                    return
            chunk = conn.data_to_send()
            delay = getattr(event, "delay", None)
            if honour_delay and delay and not self._gone:
                # Write what came before now, this event's output after `delay` seconds,
                # and process nothing more (nor read) until then: order is kept.
                self._write(b"".join(out))
                self._delayed_output = chunk
                self._delay = self._loop_().call_later(float(delay), self._after_delay)
                self._pause("delay")
                if self.listener.idle_reset == "event":
                    self._arm_timer()
                return
            if chunk:
                out.append(chunk)
            if conn.closed:
                after_close += 1
                if after_close > MAX_EVENTS_AFTER_CLOSE:
                    self._error("next_event", RuntimeError(
                        f"the core returned {after_close} events after it closed"))
                    break
        if got_event and self.listener.idle_reset == "event":
            self._arm_timer()
        tail = conn.data_to_send()
        if tail:
            out.append(tail)
        self._write(b"".join(out))
        if self._watch_pending(conn):
            return  # the core waits for its handler: nothing is read until it answers
        if conn.closed or self._eof_fed:
            self._close_transport("server" if conn.closed else "client")

    def _wake(self) -> None:
        """Something outside the connection changed (a delivery to an IDLE mailbox): let
        the core say so, unless it is closed, gone, holding a delayed reply or waiting for
        its handler's late reply."""
        if self.conn is None or self._gone or self._delay is not None or \
                self._waiting_on is not None or \
                self._closed_by is not None or self.conn.closed:
            return
        self._pump()

    def _watch_pending(self, conn: SansIOConnection) -> bool:
        """Whether the core waits for a reply its handler gives later (a future, e.g. a
        mail check on a worker thread, see :class:`simsmtp.protocol.handler.PendingReply`).

        While it does, reading stops (the client's next commands wait in the socket, in
        order) and the idle timer does not run: the wait is the server's, not the
        client's. When the future is done, the loop pumps the core again.
        """
        pending = getattr(conn, "pending_reply", None)
        if pending is None or conn.closed:
            return False
        if pending is self._waiting_on:
            return True
        self._waiting_on = pending
        self._pause("pending")
        loop = self._loop_()

        def done(_future: object) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self._after_pending, pending)

        pending.add_done_callback(done)
        return True

    def _after_pending(self, pending: object) -> None:
        if pending is not self._waiting_on:
            return
        self._waiting_on = None
        self._resume("pending")
        if self.conn is None or (self._gone and self.conn.closed):
            return
        if self.listener.idle_reset == "event":
            self._arm_timer()
        self._pump()

    def _after_delay(self) -> None:
        self._delay = None
        chunk, self._delayed_output = self._delayed_output, b""
        self._resume("delay")
        if self.conn is None or self._gone:
            return
        self._pump(prefix=chunk)

    def _feed_eof(self) -> None:
        if self._eof_fed or self.conn is None:
            return
        self._eof_fed = True
        try:
            self.conn.receive_data(b"")
        except Exception as exc:
            self._fail("receive_data(EOF)", exc)

    # -- timers, shutdown ----------------------------------------------------------------
    def _arm_timer(self) -> None:
        # Lazy re-arming: activity only moves ``_deadline``; the one timer handle stays
        # scheduled and, when it fires early, re-arms itself for the deadline (_on_idle).
        # A cancel and a new heap entry per command cost more than the command itself.
        timeout = self.listener.current_idle_timeout()
        if timeout is None or self._gone or self._closed_by is not None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            return
        loop = self._loop_()
        self._deadline = loop.time() + timeout
        timer = self._timer
        if timer is not None and timer.when() <= self._deadline:
            return  # it fires first, then waits for the rest (see _on_idle)
        if timer is not None:
            timer.cancel()
        self._timer = loop.call_at(self._deadline, self._on_idle)

    def tighten(self) -> None:
        """Stress mode began: bring this connection's idle deadline within the stress
        timeout (Postfix applies the short timeout to the sessions already open too)."""
        timeout = self.listener.current_idle_timeout()
        if timeout is None or self._timer is None or self._gone:
            return
        loop = self._loop_()
        deadline = loop.time() + timeout
        if deadline < self._deadline:
            self._deadline = deadline
            self._timer.cancel()
            self._timer = loop.call_at(deadline, self._on_idle)

    def _extend_deadline(self, seconds: float) -> None:
        """Move a running idle timer ``seconds`` later, at most ``idle_timeout`` from now."""
        timeout = self.listener.current_idle_timeout()
        if timeout is None or self._timer is None:
            return
        loop = self._loop_()
        deadline = min(loop.time() + timeout, self._deadline + seconds)
        if deadline > self._deadline:
            self._deadline = deadline  # the timer handle re-arms itself (_on_idle)

    def _on_idle(self) -> None:
        self._timer = None
        loop = self._loop_()
        if self._waiting_on is not None and not self._gone:
            self._arm_timer()  # the server is busy with the client's message: not idle
            return
        if loop.time() < self._deadline and not self._gone and self._closed_by is None:
            self._timer = loop.call_at(self._deadline, self._on_idle)  # moved meanwhile
            return
        if self.info is not None:
            self.listener.record("tcp.timeout", conn=self.info.id,
                                 after=self.listener.current_idle_timeout(),
                                 stress=self.listener.stressed)
        self._finish(self.listener.on_timeout, "on_timeout")

    def shutdown(self, goodbye: Callable[[Any], None] | None) -> None:
        """Give the core its goodbye (Listener.close), flush, close."""
        self._finish(goodbye, "goodbye")

    def _finish(self, farewell: Callable[[Any], None] | None, where: str) -> None:
        """Flush any delayed output, let ``farewell`` queue the last words, flush, close."""
        if self._gone or self._closed_by == "server":
            return
        waiting = self._waiting_on
        if waiting is not None and self.conn is not None and getattr(waiting, "done",
                                                                     lambda: False)():
            # the handler's late reply is made (a message stored: its 250) but not sent
            # yet: it goes out before the farewell, or the client would send again what
            # was already accepted (RFC 5321 §6.1)
            self._after_pending(waiting)
        pending = self._delayed_output
        self._cancel_timers()
        self._delayed_output = b""
        conn = self.conn
        if conn is not None and farewell is not None:
            try:
                farewell(conn)
            except Exception as exc:
                self._error(where, exc)
        if conn is not None:
            # The farewell's events (the core's ConnectionClosed) still reach on_event.
            self._pump(prefix=pending, honour_delay=False)
        else:
            self._write(pending)
        self._close_transport("server")

    def abort(self) -> None:
        """Drop the connection now (a peer that does not read our last words)."""
        if self._transport is not None and not self._gone:
            self._closed_by = self._closed_by or "server"
            self._transport.abort()

    def _cancel_timers(self) -> None:
        for handle in (self._timer, self._delay):
            if handle is not None:
                handle.cancel()
        self._timer = self._delay = None

    # -- output and errors ---------------------------------------------------------------
    def _write(self, data: bytes) -> None:
        transport = self._transport
        if not data or transport is None or self._gone or transport.is_closing():
            return
        if self.info is not None and self.listener.tap is not None:
            self.listener.tap.data(self.info.id, "s2c", data)
        transport.write(data)

    def _close_transport(self, by: str) -> None:
        self._closed_by = self._closed_by or by
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # flushes what was written, then closes

    def _pause(self, reason: str) -> None:
        if not self._paused and self._transport is not None:
            self._transport.pause_reading()
        self._paused.add(reason)

    def _resume(self, reason: str) -> None:
        self._paused.discard(reason)
        if not self._paused and self._transport is not None and not self._gone:
            self._transport.resume_reading()

    def _loop_(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None
        return self._loop

    def _error(self, where: str, exc: BaseException) -> None:
        """Record an exception raised by a core or a callback (it is a bug there)."""
        conn_id = self.info.id if self.info is not None else None
        self.listener.record("net.error", conn=conn_id, where=where, error=repr(exc),
                             traceback="".join(traceback.format_exception(exc)))
        if self._loop is not None:
            self._loop.call_exception_handler({
                "message": f"simsmtp listener {self.listener.name}/{self.listener.service}: "
                           f"{where} raised",
                "exception": exc, "protocol": self})

    def _fail(self, where: str, exc: BaseException) -> None:
        self._failed = True
        self._error(where, exc)
        self._cancel_timers()
        self._close_transport("server")


async def create_listener(host: str, port: int = 0, *, factory: ConnectionFactory,
                          **options: Any) -> Listener:
    """Start a :class:`Listener` from inside the event loop (same arguments)."""
    return await Listener(host, port, factory=factory, **options).start()


def serve(loop: EventLoopThread | asyncio.AbstractEventLoop, host: str, port: int = 0, *,
          factory: ConnectionFactory, **options: Any) -> Listener:
    """Start a :class:`Listener` on ``loop`` from another thread and return it once bound.

    Args:
        loop: an :class:`EventLoopThread`, or an asyncio loop that runs in another thread
            (or does not run yet). Inside the loop itself use :func:`create_listener`.
        host: the address to bind.
        port: 0 (the default) for an ephemeral port.
        factory: ``factory(peer=, local=)`` builds the core of each connection.
        **options: the keyword arguments of :class:`Listener`.

    Example:
        >>> listener = serve(loop_thread, "127.0.0.2", factory=make_core,  # doctest: +SKIP
        ...                  name="mx.example.org", service="smtp")
        >>> listener.address  # doctest: +SKIP
        ('127.0.0.2', 40233)
    """
    coro = create_listener(host, port, factory=factory, **options)
    if isinstance(loop, EventLoopThread):
        return loop.run(coro)
    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is loop:
        coro.close()
        raise RuntimeError("serve() inside its own loop would deadlock; "
                           "use `await create_listener(...)`")
    if loop.is_running():
        return asyncio.run_coroutine_threadsafe(coro, loop).result()
    return loop.run_until_complete(coro)
