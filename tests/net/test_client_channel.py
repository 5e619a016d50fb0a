"""The client channel's connect, wait and close paths (simsmtp.net.channel).

Each test runs its own event loop against a tiny asyncio server on 127.0.0.1, with a line
core: ``send(b"X")`` writes ``X\\r\\n``, events are the lines read.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from simsmtp.net.channel import open_connection

NEED = object()


class Lines:
    """A client core speaking lines."""

    NEED_DATA = NEED

    def __init__(self) -> None:
        self._in = bytearray()
        self._out = bytearray()
        self.closed = False

    def send(self, event: bytes) -> None:
        self._out += event + b"\r\n"

    def receive_data(self, data: bytes) -> None:
        self._in += data

    def next_event(self) -> object:
        end = self._in.find(b"\r\n")
        if end < 0:
            return NEED
        line = bytes(self._in[:end])
        del self._in[:end + 2]
        return line

    def data_to_send(self) -> bytes:
        out = bytes(self._out)
        self._out.clear()
        return out


Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    """Greets, then answers every line with ``+OK <line>`` except ``SILENCE``."""
    writer.write(b"+OK ready\r\n")
    while line := await reader.readline():
        if line.strip() != b"SILENCE":
            writer.write(b"+OK " + line)
    writer.close()


def run(test: Callable[[str, int], Awaitable[None]], handler: Handler = _echo,
        host: str = "127.0.0.1") -> None:
    """Run ``test(host, port)`` against a server running ``handler``, all in 5 s."""
    async def main() -> None:
        server = await asyncio.start_server(handler, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            await asyncio.wait_for(test(host, port), 5)
        finally:
            server.close()

    asyncio.run(main())


def test_connect_to_an_ip_literal_gives_a_connected_channel() -> None:
    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=3)
        assert channel.peer == ("127.0.0.1", port)
        assert channel.local[0] == "127.0.0.1"
        assert await channel.next_event() == b"+OK ready"
        channel.send(b"HELLO")
        assert await channel.next_event() == b"+OK HELLO"
        await channel.close()
        assert channel.closed

    run(test)


def test_connect_to_a_name_still_resolves_it() -> None:
    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=3)
        assert channel.peer[1] == port
        assert await channel.next_event() == b"+OK ready"
        await channel.close()

    run(test, host="localhost")


def test_connect_to_a_closed_port_is_refused_with_the_address() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # bound, not listening: refused

        async def test() -> None:
            with pytest.raises(ConnectionRefusedError, match=str(port)):
                await open_connection("127.0.0.1", port, Lines(), timeout=3)

        asyncio.run(test())


def test_a_short_timeout_after_a_long_one_still_fires_on_time() -> None:
    """The channel keeps one timer: a wait shorter than the armed one must re-arm it."""
    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=30)
        assert await channel.next_event() == b"+OK ready"  # armed nothing: data was there
        channel.send(b"SLOW")
        assert await channel.next_event(timeout=4) == b"+OK SLOW"  # a 4 s timer armed
        channel.send(b"SILENCE")
        with pytest.raises(TimeoutError):  # must not wait for the 4 s timer (run: 5 s)
            await channel.next_event(timeout=0.2)
        channel.send(b"AGAIN")
        assert await channel.next_event(timeout=4) == b"+OK AGAIN"
        await channel.close()

    run(test)


def test_timeouts_keep_firing_after_the_timer_rests() -> None:
    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=30)
        await channel.next_event()
        for _ in range(2):
            channel.send(b"SILENCE")
            with pytest.raises(TimeoutError):
                await channel.next_event(timeout=0.1)
        await channel.close()

    run(test)


def test_close_waits_for_the_socket_to_go_and_can_be_repeated() -> None:
    lost: list[bool] = []

    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=3)
        await channel.next_event()
        original = channel.connection_lost

        def spy(exc: Exception | None) -> None:
            lost.append(True)
            original(exc)

        channel.connection_lost = spy  # type: ignore[method-assign]
        await channel.close()
        assert lost == [True] and channel.closed
        await channel.close()  # nothing left to do
        assert lost == [True]

    run(test)


def test_a_cancelled_close_does_not_stop_another() -> None:
    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=3)
        await channel.next_event()
        first = asyncio.ensure_future(channel.close())
        second = asyncio.ensure_future(channel.close())
        await asyncio.sleep(0)
        first.cancel()
        await second
        assert channel.closed
        assert first.cancelled() or first.done()

    run(test)


def test_close_aborts_a_connection_that_cannot_flush() -> None:
    """A peer that never reads: close() gives up after its timeout and aborts."""
    async def never_read(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"+OK ready\r\n")
        await asyncio.sleep(10)

    async def test(host: str, port: int) -> None:
        channel = await open_connection(host, port, Lines(), timeout=3)
        await channel.next_event()
        transport = channel._transport
        assert transport is not None
        payload = b"x" * (1 << 16)
        while not transport.get_write_buffer_size():  # fill the socket, then the buffer
            channel.send(payload)
            await asyncio.sleep(0)
        await channel.close(timeout=0.2)
        assert channel.closed

    run(test, handler=never_read)

