"""Helpers for the sans-IO protocol tests: in-memory drivers and real certificates (trustme)."""

from __future__ import annotations

import ssl
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import trustme

from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.events import NEED_DATA, ConnectionEvent
from simsmtp.protocol.handler import Handler
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.server import ServerConfig, ServerConnection
from simsmtp.protocol.session import Envelope, Session

SERVER_NAME = "mail.anotherdomain.org"


def drain(conn: Any) -> list[ConnectionEvent]:
    """Every event ``conn`` has now, up to NEED_DATA."""
    events = []
    while True:
        event = conn.next_event()
        if event is NEED_DATA:
            return events
        events.append(event)


class Box(Handler):
    """A handler that keeps what it accepts and knows some users."""

    def __init__(self, users: Mapping[str, str] | None = None,
                 unknown: tuple[str, ...] = ()) -> None:
        self.messages: list[Envelope] = []
        self.users = dict(users or {})
        self.unknown = unknown
        self.calls: list[str] = []

    def handle_RCPT(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        self.calls.append(f"RCPT {address}")
        if address in self.unknown:
            return Reply(550, f"5.1.1 <{address}>: Recipient address rejected: User unknown")
        return None

    def handle_AUTH(self, session: Session, mechanism: str, username: str,
                    password: str) -> bool:
        self.calls.append(f"AUTH {mechanism} {username}")
        return self.users.get(username) == password

    def handle_DATA(self, session: Session, envelope: Envelope) -> Reply | None:
        self.messages.append(envelope)
        return None


class Server:
    """A server connection fed by hand: ``feed(bytes)`` returns the events and the output."""

    def __init__(self, handler: Handler | None = None, **config: Any) -> None:
        self.box = handler if handler is not None else Box()
        self.conn = ServerConnection(self.box, ServerConfig(**config),
                                     Session(peer=("127.0.0.9", 40000)))
        self.events: list[ConnectionEvent] = drain(self.conn)
        self.greeting = self.conn.data_to_send()

    def feed(self, data: bytes) -> tuple[list[ConnectionEvent], bytes]:
        self.conn.receive_data(data)
        events = drain(self.conn)
        self.events += events
        return events, self.conn.data_to_send()

    def say(self, data: bytes) -> bytes:
        """Feed and return only the output."""
        return self.feed(data)[1]

    def ehlo(self) -> bytes:
        return self.say(b"EHLO client.example.com\r\n")

    @property
    def state(self) -> Any:
        return self.conn.state


def codes(output: bytes) -> list[int]:
    """The codes of the final lines of every reply in ``output``."""
    return [int(line[:3]) for line in output.split(b"\r\n") if line[3:4] == b" "
            or (len(line) == 3 and line.isdigit())]


def pump(client: ClientConnection, server: ServerConnection,
         ) -> tuple[list[ConnectionEvent], list[ConnectionEvent]]:
    """Move bytes both ways until neither side has anything to say; return the events."""
    client_events: list[ConnectionEvent] = []
    server_events: list[ConnectionEvent] = []
    for _ in range(100):
        server_events += drain(server)
        to_client = server.data_to_send()
        if to_client:
            client.receive_data(to_client)
        client_events += drain(client)
        to_server = client.data_to_send()
        if to_server:
            server.receive_data(to_server)
        if not to_client and not to_server:
            server_events += drain(server)
            client_events += drain(client)
            return client_events, server_events
    raise AssertionError("the two cores kept talking")


def connect(client: ClientConnection, server: Server,
            ) -> tuple[list[ConnectionEvent], list[ConnectionEvent]]:
    """Hand the server's greeting (already taken by :class:`Server`) to the client, then pump."""
    if server.greeting:
        client.receive_data(server.greeting)
    return pump(client, server.conn)


def ready_for_content(server: Server) -> ClientConnection:
    """A client connected to ``server`` that said EHLO, MAIL, RCPT and DATA and got 354:
    its next send is the message."""
    from simsmtp.protocol.events import Data, Ehlo, MailFrom, RcptTo

    client = ClientConnection()
    connect(client, server)
    client.send(Ehlo())
    pump(client, server.conn)
    client.send(MailFrom("a@x.org"))
    client.send(RcptTo("b@y.org"))
    client.send(Data())
    pump(client, server.conn)
    return client


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    """A throwaway certificate authority."""
    return trustme.CA()


@pytest.fixture(scope="session")
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    """A server context with a certificate for mail.anotherdomain.org."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER_NAME).configure_cert(ctx)
    return ctx


@pytest.fixture(scope="session")
def client_context(ca: trustme.CA) -> ssl.SSLContext:
    """A verifying client context that trusts the test CA."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    ca.configure_trust(ctx)
    return ctx


@pytest.fixture
def tls_pair(server_context: ssl.SSLContext,
             client_context: ssl.SSLContext) -> Iterator[tuple[ClientConnection, Server]]:
    """A client and a server (Box handler) that both can do STARTTLS."""
    server = Server(tls_context=server_context)
    client = ClientConnection(ClientConfig(hostname="client.example.com",
                                           tls_context=client_context,
                                           server_hostname=SERVER_NAME))
    yield client, server
