"""Raw-socket helpers for the hardening tests (CATALOGUE.md §3 harness notes).

The hardening tests talk to a running world (``world.start()``) over real loopback
sockets with exact bytes: :class:`Wire` wraps one socket and keeps what was read but not
yet consumed, so replies that arrive in one segment are split correctly and nothing the
server says is lost; :func:`send_recv` is the one-write-then-read step every test uses.
"Silence" (:meth:`Wire.silent`) means nothing arrives within a short window: a reply is
what convicts a server, silence is the pass.
"""

from __future__ import annotations

import socket
import ssl
import struct
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.model import User

MX = "mail.anotherdomain.org"
SUBMISSION = "mail.example.com"
BOB = "bob@anotherdomain.org"
BOB_PASSWORD = "builder"
ALICE = "alice@example.com"
ALICE_PASSWORD = "wonderland"
#: A local part of exactly 64 octets (RFC 5321 §4.5.3.1.1), a user of the test world.
LONG_LOCAL = "l" * 64
#: How long "silence" is awaited (the catalogue says about 1 s; loopback needs less).
SILENCE = 0.3


class Wire:
    """One client socket with a read buffer.

    Args:
        sock: a connected socket.
        timeout: the default seconds to wait for a reply.
    """

    def __init__(self, sock: socket.socket, timeout: float = 5.0) -> None:
        self.sock: socket.socket = sock
        self.timeout = timeout
        self.buffer = bytearray()
        self.eof = False

    @classmethod
    def connect(cls, address: tuple[str, int], *, source: str | None = None,
                timeout: float = 5.0) -> Wire:
        """Connect to ``address`` (from the loopback ``source`` address if given)."""
        sock = socket.create_connection(address, timeout=timeout,
                                        source_address=(source, 0) if source else None)
        return cls(sock, timeout)

    # -- writing ------------------------------------------------------------------------
    def send(self, data: bytes) -> None:
        """One ``sendall`` of exactly these bytes."""
        self.sock.sendall(data)

    # -- reading ------------------------------------------------------------------------
    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"nothing more within the deadline; have {bytes(self.buffer)!r}")
        self.sock.settimeout(remaining)
        data = self.sock.recv(65536)
        if not data:
            self.eof = True
            raise ConnectionError(f"the server closed; unread: {bytes(self.buffer)!r}")
        self.buffer += data

    def read_line(self, timeout: float | None = None) -> bytes:
        """One line up to and including CRLF."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while (i := self.buffer.find(b"\r\n")) < 0:
            self._fill(deadline)
        line = bytes(self.buffer[:i + 2])
        del self.buffer[:i + 2]
        return line

    def read_reply(self, timeout: float | None = None) -> bytes:
        """One complete SMTP reply (all its lines, RFC 5321 §4.2.1)."""
        lines = []
        while True:
            line = self.read_line(timeout)
            lines.append(line)
            if line[3:4] != b"-":
                return b"".join(lines)

    def silent(self, seconds: float = SILENCE) -> bool:
        """True when nothing at all arrives within ``seconds`` (and nothing is buffered)."""
        if self.buffer:
            return False
        self.sock.settimeout(seconds)
        try:
            data = self.sock.recv(65536)
        except TimeoutError:
            return True
        if not data:
            self.eof = True
        self.buffer += data
        return False

    def read_until_closed(self, timeout: float | None = None) -> bytes:
        """Everything until the server closes (raises TimeoutError if it does not)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        while not self.eof:
            try:
                self._fill(deadline)
            except ConnectionError:
                break
            except ssl.SSLError:
                break  # an alert or a torn TLS session: the server is gone
            except OSError as exc:
                if isinstance(exc, TimeoutError):
                    raise
                break  # reset by the peer
        data = bytes(self.buffer)
        self.buffer.clear()
        return data

    # -- TLS and closing ----------------------------------------------------------------
    def starttls(self, context: ssl.SSLContext, server_hostname: str) -> None:
        """Wrap the socket in TLS (the handshake runs now)."""
        self.sock.settimeout(self.timeout)
        self.sock = context.wrap_socket(self.sock, server_hostname=server_hostname)

    def abort(self) -> None:
        """Vanish: close with a TCP RST (``SO_LINGER`` 0), as a crashed client does."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def send_recv(wire: Wire, data: bytes, replies: int = 1,
              timeout: float | None = None) -> list[bytes]:
    """Send ``data`` in one write, then read ``replies`` complete replies."""
    wire.send(data)
    return [wire.read_reply(timeout) for _ in range(replies)]


def code(reply: bytes) -> int:
    """The reply code of one reply."""
    return int(reply[:3])


def codes(replies: list[bytes]) -> list[int]:
    """The codes of several replies."""
    return [code(r) for r in replies]


def token() -> str:
    """A unique marker for one test's message."""
    return uuid.uuid4().hex[:16]


def message(mark: str, *, sender: str = "sender@relay.example", rcpt: str = BOB,
            body: str = "") -> bytes:
    """A small RFC 5322 message (CRLF) whose Message-ID and Subject carry ``mark``."""
    return (f"From: {sender}\r\nTo: {rcpt}\r\nSubject: hardening {mark}\r\n"
            f"Message-ID: <{mark}@hardening.test>\r\n\r\n{body or 'body ' + mark}\r\n"
            ).encode()


def client_context(net: Network) -> ssl.SSLContext:
    """A verifying client context that trusts the world's CA."""
    return ssl.create_default_context(cafile=str(net.ca_file))


def smtp(net: Network, host: str = MX, port: int = 25, *, ehlo: bool = True,
         source: str | None = None) -> Wire:
    """Connect to ``host``'s ``port``, read the 220 and (by default) say EHLO."""
    wire = Wire.connect(net.address(host, port), source=source)
    greeting = wire.read_reply()
    assert code(greeting) == 220, greeting
    if ehlo:
        assert code(send_recv(wire, b"EHLO client.hardening.test\r\n")[0]) == 250
    return wire


def starttls(net: Network, wire: Wire, host: str = MX) -> None:
    """STARTTLS, handshake with a verifying context, then EHLO again."""
    assert code(send_recv(wire, b"STARTTLS\r\n")[0]) == 220
    assert wire.buffer == bytearray()
    wire.starttls(client_context(net), host)
    assert code(send_recv(wire, b"EHLO client.hardening.test\r\n")[0]) == 250


def stored(net: Network, address: str, mark: str | None = None) -> list[bytes]:
    """The messages in ``address``'s INBOX as stored (those holding ``mark`` if given)."""
    messages = [net.store.get_bytes(address, key) for key in net.store.keys(address)]
    return [m for m in messages if mark is None or mark.encode() in m]


def senders(net: Network) -> list[str | None]:
    """The envelope senders of every message any server of the world accepted."""
    return [e["sender"] for e in net.world.trace.events("smtp.message") if e["accepted"]]


def hardening_world(mx: dict[str, Any] | None = None,
                    submission: dict[str, Any] | None = None) -> World:
    """The seed world plus 100 users (user000..user099) and a 64-octet local part at
    anotherdomain.org, with ``mx`` / ``submission`` policy fields overridden."""
    world = World.seed_world()
    domain = world.domains["anotherdomain.org"]
    for i in range(100):
        domain.users[f"user{i:03d}"] = User(f"user{i:03d}@anotherdomain.org")
    domain.users[LONG_LOCAL] = User(f"{LONG_LOCAL}@anotherdomain.org")
    for name, overrides in ((MX, mx), (SUBMISSION, submission)):
        for key, value in (overrides or {}).items():
            setattr(world.host(name).policy, key, value)
    return world


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    """The hardening world, running (one per test module)."""
    with hardening_world().start() as running:
        yield running
