"""Events of the sans-IO SMTP cores (frozen dataclasses, h11 style).

*Commands* are what a client sends and what a server receives (:class:`Ehlo`,
:class:`MailFrom`, ...). The client takes them in ``send()``; the server reports them inside
:class:`CommandReceived`.

*Connection events* come out of ``next_event()``: :class:`ConnectionOpened`,
:class:`CommandReceived`, :class:`MessageReceived`, :class:`BdatChunkReceived`,
:class:`AuthStep`, :class:`ReplySent` (server); :class:`ReplyReceived` (client);
:class:`TLSStarted`, :class:`TLSFailed`, :class:`PlaintextDiscarded`,
:class:`ConnectionClosed` (both). Each carries ``state_before`` and ``state_after`` (the
role's state enum), and ``delay``: seconds the network driver may wait before flushing this
event's output (the soft error limit sets it; the core never sleeps). One union per role
says what ``next_event()`` can give: :data:`ServerEvent`, :data:`ClientEvent` (the POP3 and
IMAP cores declare theirs), or :data:`NEED_DATA`, of its own type :class:`NeedData`.

Secrets: no event's ``repr``/``str`` ever shows a password. :class:`Auth` masks its password,
and the server never puts passwords, or the base64 lines that carry them, into events.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import Enum
from types import MappingProxyType
from typing import ClassVar, Final, Generic, TypeAlias, TypeVar

from .replies import Reply
from .session import ClientState, Envelope, ServerState


class NeedData(Enum):
    """The type of :data:`NEED_DATA` (a one-member enum, so a type checker narrows
    ``event is NEED_DATA`` as it does h11's sentinel)."""

    NEED_DATA = "NEED_DATA"

    def __repr__(self) -> str:
        return "NEED_DATA"

    __str__ = __repr__


#: Returned by ``next_event()`` when more bytes are needed (compare with ``is``).
NEED_DATA: Final = NeedData.NEED_DATA

#: The state type of a role's events (``ServerState``, ``ClientState``, ``POP3State``,
#: ``IMAPState``).
StateT = TypeVar("StateT")

_MASK = "***"


@dataclass(frozen=True)
class Event:
    """Base class of every event and command."""


# --- commands --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Command(Event):
    """Base class of the SMTP commands (``verb`` is the table key)."""

    verb: ClassVar[str] = ""


@dataclass(frozen=True)
class Ehlo(Command):
    """``EHLO hostname`` (RFC 5321 §4.1.1.1); the client uses its configured name when ""."""

    hostname: str = ""
    verb: ClassVar[str] = "EHLO"


@dataclass(frozen=True)
class Helo(Command):
    """``HELO hostname`` (RFC 5321 §4.1.1.1)."""

    hostname: str = ""
    verb: ClassVar[str] = "HELO"


def _freeze(params: Mapping[str, str | None] | None) -> Mapping[str, str | None]:
    return MappingProxyType(dict(params or {}))


@dataclass(frozen=True)
class MailFrom(Command):
    """``MAIL FROM:<address> [params]`` (RFC 5321 §4.1.1.2); "" is the null sender."""

    address: str
    params: Mapping[str, str | None] = field(default_factory=dict)
    verb: ClassVar[str] = "MAIL"

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _freeze(self.params))


@dataclass(frozen=True)
class RcptTo(Command):
    """``RCPT TO:<address> [params]`` (RFC 5321 §4.1.1.3)."""

    address: str
    params: Mapping[str, str | None] = field(default_factory=dict)
    verb: ClassVar[str] = "RCPT"

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", _freeze(self.params))


@dataclass(frozen=True)
class Data(Command):
    """``DATA`` (RFC 5321 §4.1.1.4)."""

    verb: ClassVar[str] = "DATA"


@dataclass(frozen=True)
class Message(Command):
    """The message content. The client normalises line endings, dot-stuffs and terminates
    it; in server events it is the unstuffed content."""

    content: bytes
    verb: ClassVar[str] = "<end-of-data>"

    def __repr__(self) -> str:
        return f"Message(<{len(self.content)} octets>)"


@dataclass(frozen=True)
class Bdat(Command):
    """``BDAT n [LAST]`` and its chunk (RFC 3030 §2)."""

    chunk: bytes
    last: bool = False
    verb: ClassVar[str] = "BDAT"

    def __repr__(self) -> str:
        return f"Bdat(<{len(self.chunk)} octets>, last={self.last})"


@dataclass(frozen=True)
class Rset(Command):
    """``RSET`` (RFC 5321 §4.1.1.5)."""

    verb: ClassVar[str] = "RSET"


@dataclass(frozen=True)
class Noop(Command):
    """``NOOP [arg]`` (RFC 5321 §4.1.1.9)."""

    arg: str = ""
    verb: ClassVar[str] = "NOOP"


@dataclass(frozen=True)
class Quit(Command):
    """``QUIT`` (RFC 5321 §4.1.1.10)."""

    verb: ClassVar[str] = "QUIT"


@dataclass(frozen=True)
class Vrfy(Command):
    """``VRFY arg`` (RFC 5321 §4.1.1.6)."""

    arg: str
    verb: ClassVar[str] = "VRFY"


@dataclass(frozen=True)
class Etrn(Command):
    """``ETRN node`` (RFC 1985)."""

    arg: str
    verb: ClassVar[str] = "ETRN"


@dataclass(frozen=True)
class Help(Command):
    """``HELP [arg]`` (RFC 5321 §4.1.1.8)."""

    arg: str = ""
    verb: ClassVar[str] = "HELP"


@dataclass(frozen=True)
class StartTLS(Command):
    """``STARTTLS`` (RFC 3207 §4)."""

    verb: ClassVar[str] = "STARTTLS"


@dataclass(frozen=True, repr=False)
class Auth(Command):
    """``AUTH mechanism`` with the credentials the client drives the exchange with
    (RFC 4954 §4). The password never shows in ``repr``/``str``; in server events it is
    always ""."""

    mechanism: str
    username: str = ""
    password: str = field(default="", compare=False)
    verb: ClassVar[str] = "AUTH"

    def __repr__(self) -> str:
        return (f"Auth(mechanism={self.mechanism!r}, username={self.username!r}, "
                f"password={_MASK!r})")


@dataclass(frozen=True)
class RawLine(Command):
    """A line a learner typed: sent verbatim with CRLF appended (CR/LF inside refused)."""

    line: bytes
    verb: ClassVar[str] = ""

    def __repr__(self) -> str:
        head = self.line[:5].upper()
        if head == b"AUTH ":  # an initial response carries credentials: mask it
            mech = self.line[5:].split(b" ", 1)[0]
            return f"RawLine({b'AUTH ' + mech + b' ***'!r})"
        return f"RawLine({self.line!r})"


# --- connection events -----------------------------------------------------------------------

@dataclass(frozen=True, kw_only=True)
class ConnectionEvent(Event, Generic[StateT]):
    """Base of the events ``next_event()`` returns; ``StateT`` is the role's state enum
    (None only in events made by hand, e.g. a test's scripted peer)."""

    state_before: StateT | None = None
    state_after: StateT | None = None
    delay: float = 0.0


@dataclass(frozen=True, kw_only=True)
class ConnectionOpened(ConnectionEvent[StateT]):
    """The greeting (RFC 5321 §4.3.1): sent by a server, received by a client."""

    reply: Reply


@dataclass(frozen=True, kw_only=True)
class CommandReceived(ConnectionEvent[ServerState]):
    """Server: one command line and the reply it got.

    ``command`` is None for lines that are not a valid command (unknown verb, bad syntax,
    too long, bare CR/LF). ``line`` is the line without CRLF (AUTH responses masked; the
    first 512 octets of an overlong line).
    """

    command: Command | None
    line: bytes
    reply: Reply


@dataclass(frozen=True, kw_only=True)
class MessageReceived(ConnectionEvent[ServerState]):
    """Server: end of DATA or BDAT LAST, with the final reply.

    ``accepted`` is True when the reply is positive (the handler stored it); on an error
    (too large, line too long) ``envelope.content`` is empty: nothing was stored.
    """

    envelope: Envelope
    reply: Reply
    via: str = "DATA"

    @property
    def accepted(self) -> bool:
        return self.reply.is_positive


@dataclass(frozen=True, kw_only=True)
class BdatChunkReceived(ConnectionEvent[ServerState]):
    """Server: a non-last BDAT chunk was read (RFC 3030 §2: one reply per chunk)."""

    command: Bdat
    line: bytes
    size: int
    reply: Reply


@dataclass(frozen=True, kw_only=True)
class AuthStep(ConnectionEvent[ServerState]):
    """Server: one line of a SASL exchange and the reply. ``line`` is always masked."""

    mechanism: str
    line: bytes
    reply: Reply


@dataclass(frozen=True, kw_only=True)
class ReplySent(ConnectionEvent[ServerState]):
    """Server: a reply not answering a command: ``server.send()`` (421 timeout or
    shutdown) or the 421 of an error limit."""

    reply: Reply
    reason: str = ""


@dataclass(frozen=True, kw_only=True)
class ReplyReceived(ConnectionEvent[ClientState]):
    """Client: a reply, matched first-in-first-out to the command it answers
    (``command`` is None for an unsolicited reply such as a 421 timeout)."""

    command: Command | None
    reply: Reply


@dataclass(frozen=True, kw_only=True)
class TLSStarted(ConnectionEvent[StateT]):
    """The TLS handshake completed (RFC 3207; or implicit TLS, RFC 8314)."""

    version: str | None
    cipher: str | None
    peer: str | None = None


@dataclass(frozen=True, kw_only=True)
class TLSFailed(ConnectionEvent[StateT]):
    """The TLS handshake failed: the connection is closed."""

    reason: str


@dataclass(frozen=True, kw_only=True)
class PlaintextDiscarded(ConnectionEvent[StateT]):
    """Plaintext that arrived behind STARTTLS / its 220 before TLS, thrown away unread
    (CVE-2011-0411 on a server, CVE-2021-38371 on a client)."""

    data: bytes


@dataclass(frozen=True, kw_only=True)
class ConnectionClosed(ConnectionEvent[StateT]):
    """The connection is over (EOF, or a fatal protocol error on the client)."""

    reason: str


#: Every event an SMTP server core gives (``ServerConnection.next_event()``): narrow with
#: ``isinstance`` (or ``match``), no ``getattr``/``hasattr`` probes needed.
ServerEvent: TypeAlias = (ConnectionOpened[ServerState] | CommandReceived | MessageReceived
               | BdatChunkReceived | AuthStep | ReplySent | TLSStarted[ServerState]
               | TLSFailed[ServerState] | PlaintextDiscarded[ServerState]
               | ConnectionClosed[ServerState])

#: Every event an SMTP client core gives (``ClientConnection.next_event()``).
ClientEvent: TypeAlias = (ConnectionOpened[ClientState] | ReplyReceived | TLSStarted[ClientState]
               | TLSFailed[ClientState] | PlaintextDiscarded[ClientState]
               | ConnectionClosed[ClientState])
