"""The capture tap: exact bytes, both directions, per connection; TLS stays ciphertext."""

from __future__ import annotations

import socket
import ssl
import threading

import pytest
import trustme

from simsmtp.net.channel import open_connection
from simsmtp.net.listener import serve
from simsmtp.net.loop import EventLoopThread
from simsmtp.net.tap import Tap
from simsmtp.protocol.tls import TLSLayer
from simsmtp.traffic import Segment
from tests.net.test_listener import (
    NEED_DATA,
    Server,
    recv_exactly,
    recv_to_eof,
    wait_until,
)

C, S = ("127.0.0.2", 40001), ("127.0.0.3", 25)


# -- the record itself ---------------------------------------------------------------------

def test_segments_keep_the_bytes_object_direction_offset_and_order():
    tap = Tap()
    tap.open(7, "tcp", client=C, server=S, service="smtp", host="mx", time=1.0)
    greeting = b"220 mx ESMTP\r\n"
    first = tap.data(7, "s2c", greeting, time=1.1)
    second = tap.data(7, "c2s", b"EHLO a\r\n", time=1.2)
    third = tap.data(7, "s2c", b"250 mx\r\n", time=1.3)
    assert isinstance(first, Segment) and first.data is greeting  # kept, not copied
    assert [s.index for s in tap.segments()] == [0, 1, 2]
    assert (first.offset, second.offset, third.offset) == (0, 0, len(greeting))
    assert tap.segments(7, "s2c") == [first, third]
    assert tap.stream(7, "s2c") == b"220 mx ESMTP\r\n250 mx\r\n"
    closed = tap.close(7, by="client", time=2.0)
    assert closed is not None and (closed.closed_at, closed.closed_by) == (2.0, "client")
    [record] = tap.connections()
    assert (record.client, record.server, record.service, record.host) == (C, S, "smtp", "mx")
    assert record.opened_at == 1.0 and record.transport == "tcp"


def test_a_second_close_does_not_move_the_first():
    tap = Tap()
    tap.open(1, client=C, server=S, time=0.0)
    tap.close(1, by="server", time=1.0)
    tap.close(1, by="client", time=2.0)
    assert tap.connection(1).closed_by == "server"
    assert tap.connection(1).closed_at == 1.0


def test_time_defaults_to_the_tap_clock():
    ticks = iter([10.0, 11.0, 12.0])
    tap = Tap(clock=lambda: next(ticks))
    tap.open(1, client=C, server=S)
    tap.data(1, "c2s", b"x")
    tap.close(1)
    assert tap.connection(1).opened_at == 10.0
    assert tap.segments()[0].time == 11.0
    assert tap.connection(1).closed_at == 12.0


def test_bytearray_and_memoryview_are_frozen_into_bytes():
    tap = Tap()
    buf = bytearray(b"abc")
    tap.data(1, "c2s", buf)
    tap.data(1, "c2s", memoryview(b"def"))
    buf[0] = ord("X")
    assert tap.stream(1, "c2s") == b"abcdef"
    assert all(type(s.data) is bytes for s in tap.segments())


def test_datagrams_form_one_udp_flow_per_client_server_and_service():
    tap = Tap()
    resolver, dns = ("127.0.0.2", 50000), ("127.0.0.53", 5353)
    query = tap.datagram(resolver, dns, b"\x12\x34query", "c2s", time=1.0)
    answer = tap.datagram(resolver, dns, b"\x12\x34answer", "s2c", time=1.1)
    other = tap.datagram(("127.0.0.2", 50001), dns, b"\x99query", "c2s", time=1.2)
    assert query is not None and answer is not None and other is not None
    assert query.conn_id == answer.conn_id != other.conn_id
    assert query.transport == "udp"
    flows = tap.connections()
    assert [f.transport for f in flows] == ["udp", "udp"]
    assert flows[0].service == "dns" and flows[0].client == resolver
    assert flows[0].server == dns and flows[0].closed_at is None
    assert tap.stream(query.conn_id, "s2c") == b"\x12\x34answer"


def test_disabled_tap_records_nothing():
    tap = Tap(enabled=False)
    assert tap.open(1, client=C, server=S) is None
    assert tap.data(1, "c2s", b"x") is None
    assert tap.close(1) is None
    assert tap.datagram(C, S, b"q", "c2s") is None
    assert tap.segments() == [] and tap.connections() == [] and len(tap) == 0
    assert tap.new_conn_id() != tap.new_conn_id()  # ids stay unique anyway


def test_clear_forgets_everything_but_ids_keep_counting():
    tap = Tap()
    first = tap.new_conn_id()
    tap.open(first, client=C, server=S)
    tap.data(first, "c2s", b"x")
    tap.clear()
    assert tap.segments() == [] and tap.connections() == []
    assert tap.new_conn_id() > first
    tap.data(first, "c2s", b"y")
    assert tap.segments()[0].index == 0 and tap.segments()[0].offset == 0


def test_appends_from_many_threads_lose_nothing():
    tap = Tap()
    chunk = b"0123456789"

    def writer(conn_id: int) -> None:
        for _ in range(500):
            tap.data(conn_id, "c2s", chunk)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(tap) == 8 * 500
    assert sorted(s.index for s in tap.segments()) == list(range(8 * 500))
    for conn_id in range(8):
        offsets = [s.offset for s in tap.segments(conn_id)]
        assert offsets == [i * len(chunk) for i in range(500)]


# -- wired to a listener ---------------------------------------------------------------------

@pytest.fixture
def loop_thread():
    lt = EventLoopThread(name="tap-test").start()
    yield lt
    lt.stop()


def test_listener_taps_the_exact_bytes_in_both_directions(loop_thread):
    srv = Server(loop_thread)
    try:
        sent = b"A\x00\xff\r\nbare\nLF and CR\r \r\n" + bytes(range(256)) + b"\r\nQUIT\r\n"
        with srv.connect(greeting=False) as sock:
            sock.sendall(sent)
            received = recv_to_eof(sock)
            client_address = sock.getsockname()
        assert wait_until(lambda: srv.tap.connections()[0].closed_at is not None)
        [record] = srv.tap.connections()
        assert record.client == client_address and record.server == srv.listener.address
        assert srv.tap.stream(record.id, "c2s") == sent
        assert srv.tap.stream(record.id, "s2c") == received
        assert received.startswith(b"+OK ready\r\n") and received.endswith(b"+OK bye\r\n")
        assert record.closed_by == "server"
    finally:
        srv.listener.stop()


def test_refused_connections_are_captured_too(loop_thread):
    srv = Server(loop_thread, max_per_client=1,
                 on_refused=lambda peer: b"-ERR too many connections\r\n")
    try:
        with srv.connect(), srv.connect(greeting=False) as extra:
            assert recv_to_eof(extra) == b"-ERR too many connections\r\n"
        assert wait_until(lambda: all(c.closed_at for c in srv.tap.connections()))
        refused = srv.tap.connections()[1]
        assert srv.tap.stream(refused.id, "s2c") == b"-ERR too many connections\r\n"
        assert refused.closed_by == "server"
    finally:
        srv.listener.stop()


def test_disabled_tap_on_a_listener_still_serves(loop_thread):
    srv = Server(loop_thread, tap=Tap(enabled=False))
    try:
        with srv.connect() as sock:
            sock.sendall(b"A\r\n")
            assert recv_exactly(sock, b"+OK A\r\n") == b"+OK A\r\n"
        assert srv.tap.segments() == []
    finally:
        srv.listener.stop()


# -- TLS: the tap sees ciphertext, the cores see plaintext --------------------------------------

class TLSLineServer:
    """Implicit-TLS line core: answers ``+OK <line>`` inside TLS."""

    def __init__(self, context: ssl.SSLContext) -> None:
        self.tls = TLSLayer(context, server_side=True)
        self.plain = bytearray()
        self.closed = False

    def receive_data(self, data: bytes) -> None:
        if data == b"":
            self.closed = True
        else:
            self.plain += self.tls.receive(data)

    def next_event(self) -> object:
        end = self.plain.find(b"\r\n")
        if end < 0:
            return NEED_DATA
        line = bytes(self.plain[:end])
        del self.plain[:end + 2]
        self.tls.send(b"+OK " + line + b"\r\n")
        return line

    def data_to_send(self) -> bytes:
        return self.tls.data_to_send()


class TLSLineClient:
    """Client core over TLS: first event ``"secure"``, then reply lines."""

    def __init__(self, context: ssl.SSLContext, server_hostname: str) -> None:
        self.tls = TLSLayer(context, server_side=False, server_hostname=server_hostname)
        self.tls.start()
        self.plain = bytearray()
        self.closed = False
        self.announced = False

    def send(self, event: bytes) -> None:
        self.tls.send(event + b"\r\n")

    def receive_data(self, data: bytes) -> None:
        if data:
            self.plain += self.tls.receive(data)

    def next_event(self) -> object:
        if self.tls.handshake_complete and not self.announced:
            self.announced = True
            return "secure"
        end = self.plain.find(b"\r\n")
        if end < 0:
            return NEED_DATA
        line = bytes(self.plain[:end])
        del self.plain[:end + 2]
        return line

    def data_to_send(self) -> bytes:
        return self.tls.data_to_send()


def test_under_tls_both_ends_tap_the_same_ciphertext(loop_thread):
    ca = trustme.CA()
    cert = ca.issue_cert("mx.test")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)

    server_tap = Tap()
    listener = serve(loop_thread, "127.0.0.1",
                     factory=lambda *, peer, local: TLSLineServer(server_ctx),
                     tap=server_tap, service="smtps", need_data=NEED_DATA)
    client_tap = Tap()
    secret = b"AUTH PLAIN AGFsaWNlAHMzY3JldA=="

    async def dialogue() -> list[object]:
        channel = await open_connection(*listener.address, TLSLineClient(client_ctx, "mx.test"),
                                        tap=client_tap, timeout=3, need_data=NEED_DATA)
        events = [await channel.next_event()]
        channel.send(secret)
        events.append(await channel.next_event())
        await channel.close()
        return events

    try:
        assert loop_thread.run(dialogue(), timeout=10) == ["secure", b"+OK " + secret]
        assert wait_until(lambda: server_tap.connections()[0].closed_at is not None)
    finally:
        listener.stop()
    [server_side] = server_tap.connections()
    [client_side] = client_tap.connections()
    assert client_side.client == server_side.client
    for direction in ("c2s", "s2c"):
        wire = server_tap.stream(server_side.id, direction)
        assert wire == client_tap.stream(client_side.id, direction)  # the same bytes
        assert wire[:1] == b"\x16"  # a TLS handshake record (RFC 8446 §5.1), not text
        assert secret not in wire and b"+OK" not in wire


def test_tap_on_a_plain_socket_peer_matches_what_the_peer_sent(loop_thread):
    srv = Server(loop_thread)
    try:
        sock = socket.create_connection(srv.listener.address, timeout=3)
        for part in (b"HEL", b"LO\r", b"\nQUIT\r\n"):
            sock.sendall(part)
        received = recv_to_eof(sock)
        sock.close()
        [record] = srv.tap.connections()
        assert srv.tap.stream(record.id, "c2s") == b"HELLO\r\nQUIT\r\n"
        assert received == b"+OK ready\r\n+OK HELLO\r\n+OK bye\r\n"
        assert srv.tap.stream(record.id, "s2c") == received
    finally:
        srv.listener.stop()


def test_the_byte_budget_bounds_memory_and_says_so() -> None:
    tap = Tap(max_bytes=10)
    tap.open(1, client=("127.0.0.1", 1000), server=("127.0.0.2", 25))
    assert tap.data(1, "c2s", b"12345678") is not None
    assert tap.left_out() == "" and tap.left_out(1) == ""
    kept = tap.data(1, "c2s", b"newer!!!")  # over the budget: the OLDEST bytes leave
    assert kept is not None and kept.offset == 8 and kept.index == 1
    assert tap.stream(1, "c2s") == b"newer!!!"
    assert (tap.kept_bytes, tap.dropped_bytes, tap.truncated) == (8, 8, True)
    assert tap.dropped_segments == 1
    assert tap.left_out() == ("8 older bytes (1 segments) were left out of the capture "
                              "(it keeps the newest 10 bytes).")
    assert tap.left_out(1) == ("8 older bytes of this connection were left out of the "
                               "capture (it keeps the newest 10 bytes).")
    assert tap.data(1, "s2c", b"x" * 11) is None  # larger than the whole budget
    assert tap.dropped_bytes == 19 and tap.stream(1, "c2s") == b"newer!!!"
    tap.clear()
    assert (tap.kept_bytes, tap.dropped_bytes, tap.truncated) == (0, 0, False)


def test_a_bounded_tap_forgets_closed_connections_whose_bytes_left() -> None:
    tap = Tap(max_bytes=100)
    for conn in range(1, 1001):
        tap.open(conn, client=("127.0.0.1", 1000 + conn), server=("127.0.0.2", 25))
        tap.data(conn, "s2c", b"220 hi\r\n")
        tap.data(conn, "c2s", b"QUIT\r\n")
        tap.close(conn, "client")
        assert tap.kept_bytes <= 100
        assert len(tap.connections()) <= 100 // len(b"QUIT\r\n") + 1
    open_one = tap.open(5000, client=("127.0.0.1", 9), server=("127.0.0.2", 25))
    assert open_one is not None
    for _ in range(50):  # an open connection stays listed though its bytes left
        tap.data(1000, "s2c", b"0123456789")
    assert tap.connection(5000) is not None and tap.connection(1) is None
    assert tap.dropped_connections >= 990
    assert len(tap._offsets) <= 2 * len(tap.connections())  # no per-connection leftovers
    assert len(tap) == len(tap.segments()) and tap.kept_bytes <= 100


def test_a_bounded_tap_forgets_dns_flows_whose_datagrams_left() -> None:
    tap = Tap(max_bytes=64)
    for port in range(1000, 1500):  # a new source port per query, as resolvers do
        tap.datagram(("127.0.0.1", port), ("127.0.0.53", 53), b"q" * 30, "c2s")
        tap.datagram(("127.0.0.1", port), ("127.0.0.53", 53), b"a" * 30, "s2c")
        assert len(tap.connections()) <= 2 and len(tap._flows) <= 2
    assert tap.kept_bytes <= 64 and tap.dropped_connections >= 498
