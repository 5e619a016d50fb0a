"""The listener and the client channel, driven with a tiny sans-IO line protocol.

``LineConn`` answers ``+OK <line>`` to every CRLF-terminated line, ``+OK bye`` and closes
on ``QUIT``; ``DELAY <s>`` is answered ``s`` seconds late (its event has a ``delay``).
``LineClient`` is the matching client core.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from simsmtp.net.addresses import allocate_addresses, loopback_aliases_available
from simsmtp.net.channel import open_connection
from simsmtp.net.listener import (
    Listener,
    ServerProtocol,
    create_listener,
    serve,
)
from simsmtp.net.loop import EventLoopThread
from simsmtp.net.tap import Tap
from simsmtp.net.transport import ConnectionInfo, resolve_need_data
from simsmtp.trace import Trace

NEED_DATA = object()


@dataclass(frozen=True)
class Line:
    text: bytes
    delay: float | None = None


@dataclass(frozen=True)
class Eof:
    discarded: bytes


@dataclass(frozen=True)
class Closed:
    """Reported after the event that closed the core (like a core's ConnectionClosed)."""

    reason: str


class LineConn:
    """Server core: ``+OK <line>`` per line; QUIT closes; EOF discards a partial line.

    Like the real cores, closing queues a ``Closed`` event reported after the closing one;
    then ``next_event()`` returns NEED_DATA for ever.
    """

    def __init__(self, *, peer: tuple[str, int], local: tuple[str, int],
                 greeting: bytes = b"+OK ready\r\n") -> None:
        self.peer, self.local = peer, local
        self._in = bytearray()
        self._out = bytearray(greeting)
        self.closed = False
        self.eof = False
        self.eof_calls = 0
        self.lines: list[bytes] = []
        self.discarded: bytes | None = None
        self._events: list[object] = []

    def receive_data(self, data: bytes) -> None:
        if data == b"":
            self.eof_calls += 1
            self.eof = True
        else:
            self._in += data

    def next_event(self) -> object:
        if self._events:
            return self._events.pop(0)
        if self.closed:
            return NEED_DATA
        end = self._in.find(b"\r\n")
        if end >= 0:
            line = bytes(self._in[:end])
            del self._in[:end + 2]
            self.lines.append(line)
            if line == b"QUIT":
                self._out += b"+OK bye\r\n"
                self._close("quit")
                return Line(line)
            delay = float(line[6:]) if line.startswith(b"DELAY ") else None
            self._out += b"+OK " + line + b"\r\n"
            return Line(line, delay)
        if self.eof:
            self.closed = True
            self.discarded = bytes(self._in)
            self._in.clear()
            return Eof(self.discarded)
        return NEED_DATA

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out

    def _close(self, reason: str) -> None:
        self.closed = True
        self._events.append(Closed(reason))

    def timeout(self) -> None:
        self._out += b"-ERR timeout exceeded\r\n"
        self._close("timeout")

    def goodbye(self) -> None:
        self._out += b"-ERR shutting down\r\n"
        self._close("shutdown")


class LineClient:
    """Client core: ``send(b"CMD")`` writes a line; events are the reply lines."""

    def __init__(self) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self.closed = False
        self.eof_calls = 0

    def send(self, event: bytes) -> None:
        self._out += event + b"\r\n"

    def receive_data(self, data: bytes) -> None:
        if data == b"":
            self.eof_calls += 1
        self._in += data

    def next_event(self) -> object:
        end = self._in.find(b"\r\n")
        if end < 0:
            return NEED_DATA
        line = bytes(self._in[:end])
        del self._in[:end + 2]
        if line == b"+OK bye":
            self.closed = True
        return line

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


# -- harness -----------------------------------------------------------------------------

def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.005)
    return predicate()


def recv_exactly(sock: socket.socket, expected: bytes) -> bytes:
    """Read until ``len(expected)`` bytes arrived (or EOF) and return them."""
    data = b""
    while len(data) < len(expected):
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    return data


def recv_to_eof(sock: socket.socket) -> bytes:
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data


class Server:
    """A listener running LineConn on a loop thread, with its tap, trace and events."""

    def __init__(self, loop_thread: EventLoopThread, host: str | None = None,
                 **options: Any) -> None:
        self.loop_thread = loop_thread
        self.conns: list[LineConn] = []
        self.events: list[tuple[ConnectionInfo, object]] = []
        self.tap = options.pop("tap", Tap())
        self.trace = Trace()

        def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> LineConn:
            conn = LineConn(peer=peer, local=local)
            self.conns.append(conn)
            return conn

        options.setdefault("on_event", lambda info, event: self.events.append((info, event)))
        self.listener = serve(loop_thread, host or allocate_addresses(1)[0],
                              factory=factory, name="mx.test", service="line", tap=self.tap,
                              trace=self.trace, need_data=NEED_DATA, **options)

    def connect(self, source: str | None = None, greeting: bool = True) -> socket.socket:
        sock = socket.create_connection(self.listener.address, timeout=3,
                                        source_address=(source, 0) if source else None)
        if greeting:
            assert recv_exactly(sock, b"+OK ready\r\n") == b"+OK ready\r\n"
        return sock

    def replies_after_greeting(self, conn_id: int) -> list[bytes]:
        return [s.data for s in self.tap.segments(conn_id, "s2c")][1:]


@pytest.fixture
def loop_thread():
    lt = EventLoopThread(name="listener-test").start()
    yield lt
    lt.stop()


@pytest.fixture
def server(loop_thread):
    srv = Server(loop_thread)
    yield srv
    srv.listener.stop()


# -- the basic exchange --------------------------------------------------------------------

def test_greeting_is_flushed_on_connect(server):
    with server.connect(greeting=False) as sock:
        assert recv_exactly(sock, b"+OK ready\r\n") == b"+OK ready\r\n"
    assert wait_until(lambda: server.listener.connections == 0)
    conn = server.tap.connections()[0]
    assert conn.server == server.listener.address
    assert conn.service == "line" and conn.host == "mx.test"


def test_pipelined_lines_are_answered_in_order_one_write_per_read(server):
    with server.connect() as sock:
        sock.sendall(b"A\r\nB\r\nC\r\n")
        expected = b"+OK A\r\n+OK B\r\n+OK C\r\n"
        assert recv_exactly(sock, expected) == expected
    conn_id = server.tap.connections()[0].id
    reads = server.tap.segments(conn_id, "c2s")
    writes = server.replies_after_greeting(conn_id)
    assert len(writes) <= len(reads)  # never more than one write per read
    assert [e.text for _, e in server.events if isinstance(e, Line)] == [b"A", b"B", b"C"]


class SpyTransport(asyncio.Transport):
    """Records writes; closing is manual (the test calls connection_lost)."""

    def __init__(self, peer: tuple[str, int] = ("127.0.0.9", 4242)) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closing = False
        self.reading = True
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.2", 25)}.get(name, default)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closing = True

    def abort(self) -> None:
        self.closing = True

    def is_closing(self) -> bool:
        return self.closing

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True


def _spy_protocol(**options: Any) -> tuple[ServerProtocol, SpyTransport, list[LineConn]]:
    conns: list[LineConn] = []

    def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> LineConn:
        conns.append(LineConn(peer=peer, local=local))
        return conns[-1]

    listener = Listener("127.0.0.2", factory=factory, need_data=NEED_DATA, **options)
    protocol = ServerProtocol(listener)
    transport = SpyTransport()
    protocol.connection_made(transport)
    return protocol, transport, conns


def test_one_read_of_pipelined_lines_gives_exactly_one_write():
    async def scenario() -> list[bytes]:
        protocol, transport, _ = _spy_protocol()
        protocol.data_received(b"A\r\nB\r\nC\r\n")
        protocol.data_received(b"D\r")  # incomplete: nothing to write
        protocol.data_received(b"\nQUIT\r\nE\r\n")
        assert transport.closing
        protocol.connection_lost(None)
        return transport.writes

    assert asyncio.run(scenario()) == [b"+OK ready\r\n", b"+OK A\r\n+OK B\r\n+OK C\r\n",
                                       b"+OK D\r\n+OK bye\r\n"]


def test_quit_closes_the_connection_after_the_reply_and_ignores_the_rest(server):
    with server.connect() as sock:
        sock.sendall(b"QUIT\r\nA\r\n")
        assert recv_to_eof(sock) == b"+OK bye\r\n"
    assert wait_until(lambda: server.listener.connections == 0)
    assert server.conns[0].lines == [b"QUIT"]
    assert server.conns[0].eof_calls == 0  # the core had closed: no EOF needed
    # the event after the closing one (the core's ConnectionClosed) is not lost
    assert [e for _, e in server.events] == [Line(b"QUIT"), Closed("quit")]
    record = server.tap.connections()[0]
    assert record.closed_by == "server"
    assert [e.kind for e in server.trace.events("tcp")] == ["tcp.connect", "tcp.close"]


def test_trace_records_connect_and_close_with_the_connection_id(server):
    with server.connect() as sock:
        sock.sendall(b"QUIT\r\n")
        recv_to_eof(sock)
    assert wait_until(lambda: len(server.trace.events("tcp.close")) == 1)
    connect, close = server.trace.events("tcp")
    conn_id = server.tap.connections()[0].id
    assert connect["conn"] == close["conn"] == conn_id
    assert connect.host == "mx.test" and connect["service"] == "line"
    assert connect["local"] == "{}:{}".format(*server.listener.address)
    assert close["by"] == "server"


# -- EOF and vanishing clients ----------------------------------------------------------------

@pytest.mark.parametrize("how", ["close", "reset"])
def test_a_client_that_vanishes_mid_line_makes_the_core_see_eof_once(server, how):
    sock = server.connect()
    sock.sendall(b"A\r\nHALF")
    assert recv_exactly(sock, b"+OK A\r\n") == b"+OK A\r\n"
    if how == "reset":  # RST instead of FIN
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    assert wait_until(lambda: server.listener.connections == 0)
    conn = server.conns[0]
    assert conn.eof_calls == 1
    assert conn.discarded == b"HALF"
    assert conn.lines == [b"A"]
    assert isinstance(server.events[-1][1], Eof)
    assert server.tap.connections()[0].closed_by == "client"


def test_half_close_still_gets_every_reply_then_the_server_closes(server):
    with server.connect() as sock:
        sock.sendall(b"A\r\nB\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert recv_to_eof(sock) == b"+OK A\r\n+OK B\r\n"
    assert wait_until(lambda: server.listener.connections == 0)
    assert server.conns[0].eof_calls == 1


def test_connection_lost_without_eof_received_feeds_eof_and_drains():
    async def scenario() -> LineConn:
        protocol, _, conns = _spy_protocol()
        protocol.data_received(b"MAIL\r\nPARTIAL")
        protocol.connection_lost(ConnectionResetError())
        return conns[0]

    conn = asyncio.run(scenario())
    assert conn.eof_calls == 1 and conn.lines == [b"MAIL"] and conn.discarded == b"PARTIAL"


# -- delays ------------------------------------------------------------------------------------

def test_event_delay_postpones_that_reply_and_keeps_the_order(server):
    with server.connect() as sock:
        sock.sendall(b"A\r\nDELAY 0.2\r\nB\r\n")
        expected = b"+OK A\r\n+OK DELAY 0.2\r\n+OK B\r\n"
        assert recv_exactly(sock, expected) == expected
    conn_id = server.tap.connections()[0].id
    first, second = server.tap.segments(conn_id, "s2c")[1:]
    assert first.data == b"+OK A\r\n"  # what came before the delayed event: at once
    assert second.data == b"+OK DELAY 0.2\r\n+OK B\r\n"  # the rest: one write, later
    assert second.time - first.time >= 0.19


def test_a_client_gone_during_a_delay_still_reports_the_buffered_events():
    async def scenario() -> list[object]:
        seen: list[object] = []
        protocol, _, _ = _spy_protocol(on_event=lambda info, event: seen.append(event))
        protocol.data_received(b"DELAY 5\r\nQUIT\r\n")
        protocol.connection_lost(ConnectionResetError())
        return seen

    assert asyncio.run(scenario()) == [Line(b"DELAY 5", 5.0), Line(b"QUIT"), Closed("quit")]


def test_delay_pauses_reading_until_the_reply_is_out():
    async def scenario() -> None:
        protocol, transport, _ = _spy_protocol()
        protocol.data_received(b"DELAY 0.05\r\n")
        assert not transport.reading
        protocol.data_received(b"B\r\n")  # already read before the pause took effect
        assert transport.writes == [b"+OK ready\r\n"]
        await asyncio.sleep(0.1)
        assert transport.reading
        assert transport.writes == [b"+OK ready\r\n", b"+OK DELAY 0.05\r\n+OK B\r\n"]
        protocol.connection_lost(None)

    asyncio.run(scenario())


def test_half_close_during_a_delay_still_delivers_the_delayed_reply(server):
    with server.connect() as sock:
        sock.sendall(b"DELAY 0.1\r\nB\r\n")
        sock.shutdown(socket.SHUT_WR)
        assert recv_to_eof(sock) == b"+OK DELAY 0.1\r\n+OK B\r\n"


def test_eof_arriving_during_a_delay_keeps_the_socket_open_for_the_delayed_reply():
    async def scenario() -> None:
        protocol, transport, conns = _spy_protocol()
        protocol.data_received(b"DELAY 0.05\r\nB\r\n")
        assert protocol.eof_received() is True  # do not let asyncio close it yet
        assert conns[0].eof_calls == 1 and not transport.closing
        await asyncio.sleep(0.1)
        assert transport.writes[1:] == [b"+OK DELAY 0.05\r\n+OK B\r\n"]
        assert transport.closing  # closed by the pump once everything is out
        protocol.connection_lost(None)
        assert conns[0].eof_calls == 1

    asyncio.run(scenario())


# -- back-pressure -----------------------------------------------------------------------------

def test_write_back_pressure_pauses_and_resumes_reading():
    async def scenario() -> None:
        protocol, transport, _ = _spy_protocol()
        protocol.pause_writing()
        assert not transport.reading
        protocol.resume_writing()
        assert transport.reading
        protocol.connection_lost(None)

    asyncio.run(scenario())


# -- idle timeout ------------------------------------------------------------------------------

def test_idle_timeout_calls_on_timeout_flushes_and_closes(loop_thread):
    srv = Server(loop_thread, idle_timeout=0.2, on_timeout=LineConn.timeout)
    try:
        with srv.connect() as sock:
            assert recv_to_eof(sock) == b"-ERR timeout exceeded\r\n"
        assert wait_until(lambda: srv.listener.connections == 0)
        assert len(srv.trace.events("tcp.timeout")) == 1
        assert [e for _, e in srv.events] == [Closed("timeout")]
        assert srv.tap.connections()[0].closed_by == "server"
    finally:
        srv.listener.stop()


def test_idle_timeout_without_on_timeout_closes_silently(loop_thread):
    srv = Server(loop_thread, idle_timeout=0.2)
    try:
        with srv.connect() as sock:
            assert recv_to_eof(sock) == b""
    finally:
        srv.listener.stop()


def test_complete_lines_reset_the_idle_timer(loop_thread):
    srv = Server(loop_thread, idle_timeout=0.3, on_timeout=LineConn.timeout)
    try:
        with srv.connect() as sock:
            for i in range(6):  # 0.6 s in all, twice the timeout
                sock.sendall(b"N%d\r\n" % i)
                assert recv_exactly(sock, b"+OK N0\r\n") == b"+OK N%d\r\n" % i
                time.sleep(0.1)
            sock.sendall(b"QUIT\r\n")
            assert recv_to_eof(sock) == b"+OK bye\r\n"
        assert srv.trace.events("tcp.timeout") == []
    finally:
        srv.listener.stop()


def test_bytes_trickled_without_a_line_do_not_extend_the_session(loop_thread):
    srv = Server(loop_thread, idle_timeout=0.3, on_timeout=LineConn.timeout)
    try:
        with srv.connect() as sock:
            sock.settimeout(0.05)
            got = b""
            deadline = time.monotonic() + 3.0
            while time.monotonic() < deadline:  # slowloris: one byte every 50 ms
                try:
                    sock.sendall(b"x")
                except OSError:
                    break
                try:
                    chunk = sock.recv(100)
                except TimeoutError:
                    continue
                got += chunk
                if not chunk or got.endswith(b"\r\n"):
                    break
            assert got == b"-ERR timeout exceeded\r\n"
        assert srv.conns[0].lines == []
    finally:
        srv.listener.stop()


def test_idle_reset_on_data_lets_any_bytes_keep_the_session(loop_thread):
    srv = Server(loop_thread, idle_timeout=0.3, idle_reset="data", on_timeout=LineConn.timeout)
    try:
        with srv.connect() as sock:
            for _ in range(12):  # 0.6 s of one byte every 50 ms
                sock.sendall(b"x")
                time.sleep(0.05)
            sock.sendall(b"\r\n")
            assert recv_exactly(sock, b"+OK xxxxxxxxxxxx\r\n") == b"+OK xxxxxxxxxxxx\r\n"
        assert srv.trace.events("tcp.timeout") == []
    finally:
        srv.listener.stop()


# -- connection caps -----------------------------------------------------------------------------

def _refusal(peer: tuple[str, int]) -> bytes:
    return f"-ERR too many connections from {peer[0]}\r\n".encode()


def test_per_client_cap_refuses_the_extra_connection_and_keeps_the_others(loop_thread):
    srv = Server(loop_thread, max_per_client=2, on_refused=_refusal)
    try:
        first, second = srv.connect(), srv.connect()
        with srv.connect(greeting=False) as third:
            assert recv_to_eof(third) == b"-ERR too many connections from 127.0.0.1\r\n"
        for sock, word in ((first, b"ONE"), (second, b"TWO")):
            sock.sendall(word + b"\r\n")
            assert recv_exactly(sock, b"+OK " + word + b"\r\n") == b"+OK " + word + b"\r\n"
        assert srv.listener.connections == 2
        assert [e["reason"] for e in srv.trace.events("tcp.refused")] == ["max_per_client"]
        assert len(srv.conns) == 2  # no core was built for the refused connection
        first.close()
        assert wait_until(lambda: srv.listener.connections == 1)
        with srv.connect() as again:  # a slot is free again
            again.sendall(b"QUIT\r\n")
            assert recv_to_eof(again) == b"+OK bye\r\n"
        second.close()
    finally:
        srv.listener.stop()


@pytest.mark.skipif(not loopback_aliases_available(), reason="needs 127.0.0.x aliases")
def test_per_client_cap_counts_each_client_address_separately(loop_thread):
    srv = Server(loop_thread, max_per_client=1, on_refused=_refusal)
    try:
        a = srv.connect(source="127.0.0.1")
        b = srv.connect(source="127.0.0.3")  # another client address: admitted
        with srv.connect(source="127.0.0.3", greeting=False) as c:
            assert recv_to_eof(c) == b"-ERR too many connections from 127.0.0.3\r\n"
        assert srv.listener.connections == 2
        assert sorted(info.peer[0] for info in srv.listener.connection_infos()) == \
            ["127.0.0.1", "127.0.0.3"]
        a.close()
        b.close()
    finally:
        srv.listener.stop()


def test_total_cap_refuses_beyond_max_connections(loop_thread):
    srv = Server(loop_thread, max_connections=1, max_per_client=None, on_refused=_refusal)
    try:
        with srv.connect() as first, srv.connect(greeting=False) as second:
            assert recv_to_eof(second) == b"-ERR too many connections from 127.0.0.1\r\n"
            first.sendall(b"A\r\n")
            assert recv_exactly(first, b"+OK A\r\n") == b"+OK A\r\n"
        assert [e["reason"] for e in srv.trace.events("tcp.refused")] == ["max_connections"]
    finally:
        srv.listener.stop()


# -- shutdown ----------------------------------------------------------------------------------

def test_close_says_goodbye_to_every_connection_and_releases_the_port(loop_thread):
    srv = Server(loop_thread)
    host, port = srv.listener.address
    socks = [srv.connect(), srv.connect()]
    socks[1].sendall(b"HALF LINE")  # one in the middle of a command
    assert wait_until(lambda: srv.listener.connections == 2)
    srv.listener.stop(goodbye=LineConn.goodbye, timeout=5)
    for sock in socks:
        assert recv_to_eof(sock) == b"-ERR shutting down\r\n"
        sock.close()
    assert srv.listener.connections == 0
    assert all(conn.closed for conn in srv.conns)
    assert [e for _, e in srv.events] == [Closed("shutdown")] * 2
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((host, port), timeout=2)
    again = Server(loop_thread, host=host, port=port)  # the port is free to bind again
    try:
        assert again.listener.address == (host, port)
        again.connect().close()
    finally:
        again.listener.stop()


def test_close_is_awaitable_inside_the_loop_and_idempotent(loop_thread):
    srv = Server(loop_thread)
    sock = srv.connect()

    async def close_twice() -> None:
        await asyncio.gather(srv.listener.close(LineConn.goodbye), srv.listener.close())

    loop_thread.run(close_twice(), timeout=5)
    assert recv_to_eof(sock) == b"-ERR shutting down\r\n"
    sock.close()
    assert srv.listener.closing


def test_serve_inside_its_own_loop_is_refused(loop_thread):
    async def inside() -> None:
        serve(asyncio.get_running_loop(), "127.0.0.1", factory=LineConn)

    with pytest.raises(RuntimeError, match="create_listener"):
        loop_thread.run(inside())


def test_serve_on_a_plain_asyncio_loop_running_in_another_thread(loop_thread):
    listener = serve(loop_thread.loop, "127.0.0.1", factory=LineConn, need_data=NEED_DATA)
    try:
        with socket.create_connection(listener.address, timeout=3) as sock:
            assert recv_exactly(sock, b"+OK ready\r\n") == b"+OK ready\r\n"
    finally:
        listener.stop()


# -- errors --------------------------------------------------------------------------------------

def test_an_exception_in_on_event_is_recorded_and_closes_that_connection(loop_thread):
    def broken(info: ConnectionInfo, event: object) -> None:
        raise KeyError("bug in the world")

    srv = Server(loop_thread, on_event=broken)
    try:
        with srv.connect() as sock:
            sock.sendall(b"A\r\n")
            assert recv_to_eof(sock) == b""
        errors = srv.trace.events("net.error")
        assert len(errors) == 1 and errors[0]["where"] == "on_event"
        assert "bug in the world" in errors[0]["error"]
        assert srv.conns[0].eof_calls == 1  # the core still learns the connection ended
        with srv.connect():  # the listener itself keeps serving
            pass
    finally:
        srv.listener.stop()


def test_a_core_that_never_stops_after_closing_is_cut_off():
    class Chatty(LineConn):
        def next_event(self) -> object:
            event = super().next_event()
            return Closed("again") if event is NEED_DATA and self.closed else event

    async def scenario() -> tuple[SpyTransport, list[object]]:
        seen: list[object] = []
        listener = Listener("127.0.0.2", factory=Chatty, need_data=NEED_DATA,
                            on_event=lambda info, event: seen.append(event))
        protocol = ServerProtocol(listener)
        transport = SpyTransport()
        protocol.connection_made(transport)
        protocol.data_received(b"QUIT\r\n")
        protocol.connection_lost(None)
        return transport, seen

    transport, seen = asyncio.run(scenario())
    assert transport.writes == [b"+OK ready\r\n", b"+OK bye\r\n"] and transport.closing
    assert seen[0] == Line(b"QUIT") and 2 < len(seen) < 200


def test_need_data_is_found_on_the_core_module_when_not_given():
    conn = LineConn(peer=("127.0.0.1", 1), local=("127.0.0.1", 2))
    assert resolve_need_data(conn) is NEED_DATA
    sentinel = object()
    assert resolve_need_data(conn, sentinel) is sentinel
    with pytest.raises(TypeError):
        resolve_need_data(object())


# -- the client channel ------------------------------------------------------------------------

def test_open_connection_drives_a_client_core_against_the_server(server, loop_thread):
    client_tap = Tap()
    client = LineClient()

    async def dialogue() -> tuple[list[object], tuple[str, int]]:
        channel = await open_connection(*server.listener.address, client, tap=client_tap,
                                        name="client.test", service="line", timeout=3,
                                        need_data=NEED_DATA)
        seen = [await channel.next_event()]
        channel.send(b"HELLO")
        channel.send(b"AGAIN")
        seen += [await channel.next_event(), await channel.next_event()]
        channel.send(b"QUIT")
        seen.append(await channel.next_event())
        with pytest.raises(ConnectionError):
            await channel.next_event()  # the server closed after +OK bye
        local = channel.local
        await channel.close()
        assert channel.closed
        return seen, local

    seen, local = loop_thread.run(dialogue(), timeout=5)
    assert seen == [b"+OK ready", b"+OK HELLO", b"+OK AGAIN", b"+OK bye"]
    assert server.conns[0].lines == [b"HELLO", b"AGAIN", b"QUIT"]
    record = client_tap.connections()[0]
    assert record.client == local and record.server == server.listener.address
    assert record.closed_by == "server"
    assert client_tap.stream(record.id, "c2s") == b"HELLO\r\nAGAIN\r\nQUIT\r\n"
    assert client_tap.stream(record.id, "s2c") == \
        b"+OK ready\r\n+OK HELLO\r\n+OK AGAIN\r\n+OK bye\r\n"


def test_next_event_times_out_when_the_server_is_silent(server, loop_thread):
    async def silent() -> None:
        channel = await open_connection(*server.listener.address, LineClient(), timeout=3)
        assert await channel.next_event() == b"+OK ready"
        with pytest.raises(TimeoutError):
            await channel.next_event(timeout=0.1)
        channel.send(b"STILL THERE")
        assert await channel.next_event() == b"+OK STILL THERE"
        await channel.close()

    loop_thread.run(silent(), timeout=5)
    assert wait_until(lambda: server.tap.connections()[0].closed_by == "client")


@pytest.mark.skipif(not loopback_aliases_available(), reason="needs 127.0.0.x aliases")
def test_open_connection_binds_the_source_address_of_the_sending_host(server, loop_thread):
    async def from_host() -> None:
        channel = await open_connection(*server.listener.address, LineClient(),
                                        local_host="127.0.0.7", timeout=3)
        await channel.next_event()
        await channel.close()

    loop_thread.run(from_host(), timeout=5)
    assert server.conns[0].peer[0] == "127.0.0.7"


def test_open_connection_to_a_closed_port_raises(loop_thread):
    async def refused() -> None:
        listener = await create_listener("127.0.0.1", factory=LineConn)
        port = listener.address[1]
        await listener.close()
        await open_connection("127.0.0.1", port, LineClient(), timeout=3)

    with pytest.raises(ConnectionRefusedError):
        loop_thread.run(refused(), timeout=5)


def test_a_reply_made_before_the_goodbye_goes_out_before_it(loop_thread):
    """The handler answered (a message stored: 250) just as the world stops, before the
    listener came back to the connection: the 250 is sent, then the 421; never the 421
    alone for a message that was kept (the client would send it again)."""
    from concurrent.futures import Future

    from simsmtp.net.servers import goodbye
    from simsmtp.protocol.handler import Handler
    from simsmtp.protocol.server import ServerConfig, ServerConnection
    from simsmtp.protocol.session import Session

    futures: list[Future[Any]] = []

    class Later(Handler):
        def handle_DATA(self, session: Any, envelope: Any) -> Future[Any]:
            futures.append(Future())
            return futures[-1]

    def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServerConnection:
        return ServerConnection(Later(), ServerConfig(hostname="mx.test"),
                                Session(peer=peer, local=local))

    listener = serve(loop_thread, allocate_addresses(1)[0], factory=factory, name="mx.test",
                     service="smtp")
    with socket.create_connection(listener.address, timeout=5) as sock:
        sock.sendall(b"EHLO c.test\r\nMAIL FROM:<a@example.com>\r\nRCPT TO:<b@example.org>\r\n"
                     b"DATA\r\n")
        said = b""
        while b"354 " not in said:
            said += sock.recv(4096)
        sock.sendall(b"Subject: t\r\n\r\nhello\r\n.\r\n")
        assert wait_until(lambda: bool(futures))

        def answer_then_stop() -> None:  # one loop callback: nothing runs in between
            futures[0].set_result(None)  # the 250 is made; its pump is only scheduled
            for protocol in list(listener._protocols):
                protocol.shutdown(goodbye)

        loop_thread.loop.call_soon_threadsafe(answer_then_stop)
        rest = recv_to_eof(sock).decode()
    listener.stop()
    assert rest.startswith("250 2.0.0 Ok") and "\r\n421 4.3.2 " in rest, rest
