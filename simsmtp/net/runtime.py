"""The running world as its parts see it: narrow views of the network.

:class:`~simsmtp.net.network.Network` is the top of ``net/``: it boots the world and imports
every service. The parts below it never import it. Each sees only what it uses, through a
small :class:`typing.Protocol` defined here (``Network`` satisfies every one of them; a test
may pass anything that does):

* :class:`MailSite`: what a host's mail services need (the policy handlers and logins of
  :mod:`simsmtp.net.services`, the mail checks of :mod:`simsmtp.net.authpolicy`);
* :class:`Receiver`: what storing an accepted message needs of the handler that took it;
* :class:`DNSSite`: what the in-process DNS lookups of the mail checks need;
* :class:`RunningWorld`: what the tools for notebooks need (the steppable client of
  :mod:`simsmtp.net.stepper`, the attackers of :mod:`simsmtp.net.attacker`).

:class:`HostInfo` (where a host of a running world can be reached) lives here too, so that
every part can name it.
"""

from __future__ import annotations

from collections.abc import Coroutine, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:
    from simsmtp.protocol.replies import Reply
    from simsmtp.protocol.session import Envelope, Session
    from simsmtp.world.model import Host, World

    from .addresses import AddressBook
    from .ca import CertificateAuthority
    from .dns import DNSServer
    from .queue import Queue
    from .tap import Tap

__all__ = ["DNSSite", "HostInfo", "MailSite", "Receiver", "RunningWorld"]

_T = TypeVar("_T")


@dataclass
class HostInfo:
    """Where a host of a running world can be reached.

    Attributes:
        name: the host name.
        ip: its loopback address in the world (DNS, SPF, ``Received:``, the views).
        ports: well-known port -> the real (ephemeral) port it listens on.
        bind_ip: the address its sockets really use: ``ip`` itself, or ``127.0.0.1``
            where only that can be bound (connect there to reach it).
    """

    name: str
    ip: str
    ports: dict[int, int] = field(default_factory=dict)
    bind_ip: str = ""

    def __post_init__(self) -> None:
        self.bind_ip = self.bind_ip or self.ip


class Receiver(Protocol):
    """What storing a message needs of the handler that accepted it."""

    @property
    def host(self) -> Host:
        """The world host whose server accepted the message."""
        ...

    def final_recipients(self, envelope: Envelope) -> list[str]:
        """The envelope's recipients as mailbox addresses."""
        ...

    def is_local(self, address: str) -> bool:
        """Whether this host keeps mail for the domain of ``address``."""
        ...

    def received(self, session: Session, envelope: Envelope, recipient: str | None) -> bytes:
        """The ``Received:`` header this host prepends (RFC 5321 §4.4)."""
        ...

    def storage_error(self, exc: Exception) -> Reply:
        """The reply for a message that could not be stored (RFC 5321 §6.1)."""
        ...


class DNSSite(Protocol):
    """What the mail checks' in-process DNS lookups need of the running world."""

    @property
    def world(self) -> World:
        """The world (users, domains, policies, fault rules, clock, ids, trace)."""
        ...

    @property
    def hosts(self) -> Mapping[str, HostInfo]:
        """Host name -> where it can be reached (the asking host's address)."""
        ...

    @property
    def dns(self) -> DNSServer | None:
        """The world's DNS server (None before the world boots)."""
        ...

    @property
    def answer_caches(self) -> dict[str, Any]:
        """Host name -> its MX's memory of DNS answers (kept by the running world)."""
        ...


class MailSite(DNSSite, Protocol):
    """What a host's mail services need of the running world (and their mail checks:
    :class:`DNSSite`)."""

    @property
    def store(self) -> Any:
        """The world's message store (:class:`~simsmtp.net.store.MessageStore`)."""
        ...

    def local_domains(self, host_name: str) -> list[str]:
        """The domains whose mail ``host_name`` keeps."""
        ...

    def queue_of(self, host_name: str) -> Queue | None:
        """The outbound queue of ``host_name`` (None unless it has the outbound role)."""
        ...

    def name_of(self, ip: str) -> str | None:
        """The world host that owns ``ip`` (what a PTR lookup would say)."""
        ...

    def accept(self, handler: Receiver, session: Session, envelope: Envelope, *,
               folder: str | None = None, content: bytes | None = None) -> Reply | None:
        """Store a message a server accepted: None (the ``250``) or a ``451``."""
        ...


class RunningWorld(Protocol):
    """What the tools for notebooks (the steppable client, the attackers on the path)
    need of the running world."""

    @property
    def world(self) -> World:
        """The world."""
        ...

    @property
    def hosts(self) -> Mapping[str, HostInfo]:
        """Host name -> where it can be reached."""
        ...

    @property
    def address_book(self) -> AddressBook:
        """Which host owns which socket (hosts may share ``127.0.0.1``)."""
        ...

    @property
    def tap(self) -> Tap:
        """The capture: every byte that crossed the world's sockets."""
        ...

    @property
    def ca(self) -> CertificateAuthority | None:
        """The world's certificate authority (None before the world boots)."""
        ...

    @property
    def running(self) -> bool:
        """True between start and stop."""
        ...

    @property
    def redirects(self) -> dict[str, int]:
        """Host name -> the port its port 25 has for the outbound agents (an attacker)."""
        ...

    @property
    def attackers(self) -> list[Any]:
        """The attackers on the path (closed when the world stops)."""
        ...

    def address(self, host: str, port: int = 25) -> tuple[str, int]:
        """(ip, real port) where ``host`` serves its well-known ``port``."""
        ...

    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = 60) -> _T:
        """Run ``coro`` on the world's event loop and return its result."""
        ...
