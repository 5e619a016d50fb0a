"""The servers of a running world: every host's listening SMTP, POP3 and IMAP services.

:class:`HostServers` opens a host's listeners (one per well-known port of its roles, see
:data:`SERVICES`), each with its protocol core and policy handler
(:mod:`simsmtp.net.services`), its limits from the host's policy and its anvil
(:class:`~simsmtp.net.listener.Anvil`); it closes them when a host goes down or the world
stops, saying ``421`` (or the POP3/IMAP equivalent) to every client still connected. The
services see the running world only as a :class:`~simsmtp.net.runtime.MailSite`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from simsmtp.world.model import Host, World

    from .addresses import AddressBook
    from .ca import CertificateAuthority
    from .listener import Anvil, Listener
    from .runtime import HostInfo, MailSite
    from .services import MaildropLocks, ServiceConnection
    from .tap import Tap

__all__ = ["LISTENER_LIMITS", "RETRIEVAL", "SERVER_LIMITS", "SERVICES", "HostServers",
           "goodbye", "limits", "time_out"]

#: Well-known port -> the service name the listener, the trace and the capture use.
SERVICES = {25: "smtp", 587: "submission", 465: "smtps", 110: "pop3", 995: "pop3s",
            143: "imap", 993: "imaps"}
#: The retrieval services (a mail program reads a mailbox): no SMTP 421 when refused.
RETRIEVAL = frozenset({"pop3", "pop3s", "imap", "imaps"})


class HostServers:
    """The listening services of a running world's hosts (see the module docstring).

    Args:
        site: the running world, as the services see it.
        world: the world.
        tap: the capture every listener writes into.
        address_book: which host owns which socket.
        hosts: host name -> where it can be reached (its ``ports`` are filled in here).
    """

    def __init__(self, site: MailSite, *, world: World, tap: Tap, address_book: AddressBook,
                 hosts: dict[str, HostInfo]) -> None:
        self.site = site
        self.world = world
        self.tap = tap
        self.address_book = address_book
        self.hosts = hosts
        #: The world's certificate authority (set at each boot: see :meth:`reset`).
        self.ca: CertificateAuthority | None = None
        #: (host, well-known port) -> its listener.
        self.listeners: dict[tuple[str, int], Listener] = {}
        #: host name -> its per-client counters (simsmtp.net.listener.Anvil).
        self.anvils: dict[str, Anvil] = {}
        #: host -> the POP3 maildrops its sessions hold now (shared by 110 and 995).
        self.maildrop_locks: dict[str, MaildropLocks] = {}
        #: (host, service) -> the server config its next connection gets (dropped when the
        #: host's policy changes); host -> its TLS server context.
        self._configs: dict[tuple[str, str], Any] = {}
        self._server_contexts: dict[str, Any] = {}
        self._tls_conns: set[int] = set()

    def reset(self, ca: CertificateAuthority) -> None:
        """A world booted (again): new certificates, so new server settings."""
        self.ca = ca
        self._configs.clear()
        self._server_contexts.clear()

    async def open_host(self, host: Host) -> None:
        """Open ``host``'s listeners (a host brought back up keeps its ports if free)."""
        for port in host.ports():
            key = (host.name, port)
            if key not in self.listeners:
                self.listeners[key] = await self._listen(host, port)
                self.hosts[host.name].ports[port] = self.listeners[key].address[1]

    async def close_listener(self, key: tuple[str, int]) -> None:
        """Close one listener, saying goodbye to its clients."""
        listener = self.listeners.pop(key)
        await listener.close(goodbye=goodbye)
        self.address_book.stopped_listening(listener.address)

    async def close_host(self, name: str) -> None:
        """Close every listener of host ``name`` (it refuses connections)."""
        for key in [k for k in self.listeners if k[0] == name]:
            await self.close_listener(key)

    async def close_all(self) -> None:
        """Close every listener (the world stops)."""
        for key in list(self.listeners):
            await self.close_listener(key)

    def policy_changed(self, host: Host, policy: Any) -> None:
        """``host``'s policy changed: its next connection gets new server settings (one
        already open keeps the ones it started with); its listeners' limits change now."""
        for key in [k for k in self._configs if k[0] == host.name]:
            self._configs.pop(key, None)
        for (owner, _port), listener in list(self.listeners.items()):
            if owner == host.name:
                listener.idle_timeout = policy.idle_timeout
                for limit, value in limits(policy, LISTENER_LIMITS).items():
                    setattr(listener, limit, value)

    async def _listen(self, host: Host, port: int) -> Listener:
        from .listener import create_listener

        service = SERVICES[port]
        info = self.hosts[host.name]
        old_port = info.ports.get(port, 0)  # a host brought back up keeps its ports
        if service in ("pop3", "pop3s"):
            factory = self._pop3_factory(host, implicit_tls=service == "pop3s")
        elif service in ("imap", "imaps"):
            factory = self._imap_factory(host, implicit_tls=service == "imaps")
        else:
            factory = self._smtp_factory(host, service)
        hostname = host.name

        def refused(peer: tuple[str, int], reason: str) -> bytes:
            if reason == "auth_failure_rate":  # anvil: too many failed logins lately
                return f"421 4.7.0 {hostname} Error: too many errors\r\n".encode()
            return (f"421 4.7.0 {hostname} Error: too many connections from {peer[0]}\r\n"
                    .encode())

        def refused_retrieval(peer: tuple[str, int], reason: str) -> bytes:
            if service in ("imap", "imaps"):  # RFC 9051 §7.1.5 (BYE), RFC 5530 UNAVAILABLE
                if reason in ("auth_failure_rate", "connection_rate"):
                    return b"* BYE [UNAVAILABLE] Too many connections or failed logins, " \
                           b"try again later.\r\n"
                return b""
            if reason == "auth_failure_rate":  # RFC 3206 §4: try again later
                return b"-ERR [SYS/TEMP] Too many failed logins, try again later.\r\n"
            if reason == "connection_rate":
                return b"-ERR [SYS/TEMP] Too many connections, try again later.\r\n"
            return b""  # over a count: closed without a word, as before

        options: dict[str, Any] = dict(
            factory=factory, name=host.name, service=service, trace=self.world.trace,
            tap=self.tap, idle_timeout=host.policy.idle_timeout, on_timeout=time_out,
            on_event=self._event_recorder(),
            on_refused=refused if service not in RETRIEVAL else refused_retrieval,
            identify=self.address_book.identify,
            anvil=self.anvil_of(host.name),
            stress_idle_timeout=host.policy.stress_idle_timeout,
            **limits(host.policy, LISTENER_LIMITS))
        try:
            listener = await create_listener(info.bind_ip, old_port, **options)
        except OSError:
            listener = await create_listener(info.bind_ip, 0, **options)
        self.address_book.listening(listener.address, info.ip)
        return listener

    def _smtp_config(self, host: Host, service: str) -> Any:
        from simsmtp.protocol.server import ServerConfig

        policy = host.policy
        tls = self._server_context(host.name) if policy.starttls or service == "smtps" \
            else None
        submission = service in ("submission", "smtps")
        return ServerConfig(
            hostname=host.name,
            size_limit=policy.size_limit,
            tls_context=tls,
            implicit_tls=service == "smtps",
            # RFC 3207 §4: a public MX must not require TLS; submission does, unless the
            # world allows plaintext AUTH for teaching.
            require_tls=(service == "submission" and tls is not None
                         and not policy.auth_plaintext) or
                        (service == "smtp" and policy.tls_required_inbound),
            auth_enabled=submission,
            auth_plaintext=policy.auth_plaintext,
            auth_required=submission,
            # RFC 6531: a host's policy turns SMTPUTF8 on (the seed MX has it off, as its
            # Postfix); submission always offers it: a mail program may send to jürgen@…
            smtputf8=policy.smtputf8 or submission,
            max_recipients=policy.max_recipients,
            queue_ids=self.world.ids.queue_id,
            **limits(policy, SERVER_LIMITS),
        )

    def _smtp_factory(self, host: Host, service: str) -> Callable[..., Any]:
        from simsmtp.protocol.server import ServerConnection
        from simsmtp.protocol.session import Session

        from .services import InboundHandler, ServiceConnection, SubmissionHandler

        handler_class = InboundHandler if service == "smtp" else SubmissionHandler
        key = (host.name, service)

        def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServiceConnection:
            config = self._configs.get(key)
            if config is None:  # first connection, or the host's policy changed
                config = self._configs[key] = self._smtp_config(host, service)
            handler = handler_class(self.site, host, service)
            core = ServerConnection(handler, config, Session(peer=peer, local=local))
            return ServiceConnection(core, handler)

        return factory

    def _pop3_factory(self, host: Host, *, implicit_tls: bool = False) -> Callable[..., Any]:
        from simsmtp.protocol.pop3 import POP3Config, POP3ServerConnection

        from .services import MaildropLocks, POP3Login, ServiceConnection

        # RFC 1939 §8: one session per maildrop, on 110 and 995 alike
        locks = self.maildrop_locks.setdefault(host.name, MaildropLocks())
        key = (host.name, "pop3s" if implicit_tls else "pop3")

        def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServiceConnection:
            config = self._configs.get(key)
            if config is None:  # first connection, or the host's policy changed
                config = self._configs[key] = POP3Config(
                    hostname=host.name, greeting=f"{host.name} POP3 server ready",
                    allow_plaintext_auth=host.policy.pop3_plaintext,
                    tls_context=self._server_context(host.name)
                    if host.policy.starttls or implicit_tls else None,
                    implicit_tls=implicit_tls)
            login = POP3Login(self.site, host, locks)
            return ServiceConnection(POP3ServerConnection(login.authenticate, config), None,
                                     on_close=login.release)

        return factory

    def _imap_factory(self, host: Host, *, implicit_tls: bool = False) -> Callable[..., Any]:
        from simsmtp.protocol.imap import IMAPConfig, IMAPServerConnection

        from .services import ServiceConnection, imap_authenticator

        key = (host.name, "imaps" if implicit_tls else "imap")

        def factory(*, peer: tuple[str, int], local: tuple[str, int]) -> ServiceConnection:
            config = self._configs.get(key)
            if config is None:  # first connection, or the host's policy changed
                policy = host.policy
                config = self._configs[key] = IMAPConfig(
                    hostname=host.name, allow_plaintext_auth=policy.pop3_plaintext,
                    tls_context=self._server_context(host.name)
                    if policy.starttls or implicit_tls else None,
                    implicit_tls=implicit_tls, max_literal=policy.size_limit or 2 ** 31,
                    now=self.world.clock.now)
            service = ServiceConnection(None, None)
            authenticate = imap_authenticator(self.site, host, service.wake)
            service.core = IMAPServerConnection(authenticate, config)
            return service

        return factory

    def _server_context(self, host_name: str) -> Any:
        """The TLS server context presenting ``host_name``'s certificate (made once)."""
        context = self._server_contexts.get(host_name)
        if context is None:
            assert self.ca is not None
            context = self._server_contexts[host_name] = self.ca.server_context(host_name)
        return context

    def _event_recorder(self) -> Callable[[Any, object], None]:
        """What a listener does with each event of its cores: trace it, and tell the
        anvil of a refused login. (The protocol cores' types are imported here, when the
        first host opens, not with this module.)"""
        from .servertrace import login_failed, record_event, reply_of

        def on_event(info: Any, event: object) -> None:
            record_event(self.world.trace, info, event, self._tls_conns)
            if login_failed(reply_of(event)):  # the anvil counts a bad login
                anvil = self.anvils.get(info.host_name)
                if anvil is not None:
                    anvil.auth_failed(info.peer[0])

        return on_event

    def anvil_of(self, host_name: str) -> Anvil:
        """The :class:`~simsmtp.net.listener.Anvil` of ``host_name``: what each client did
        lately at any of its services (made on first use from the host's policy; clients
        in ``relay_networks`` are exempt, as Postfix's ``$mynetworks``)."""
        from .listener import Anvil

        anvil = self.anvils.get(host_name)
        if anvil is None:
            policy = self.world.host(host_name).policy
            anvil = self.anvils[host_name] = Anvil(
                max_connection_rate=policy.max_connection_rate,
                max_auth_failure_rate=policy.max_auth_failure_rate,
                window=policy.anvil_rate_time_unit,
                exempt=policy.may_relay if policy.relay_networks else None)
        return anvil


#: Denial-of-service limits and Postfix settings a host's policy may set (Postfix names in
#: comments); absent ones keep the defaults of :class:`~simsmtp.net.listener.Listener` and
#: :class:`~simsmtp.protocol.server.ServerConfig`.
LISTENER_LIMITS = (
    "min_data_rate",    # smtpd_min_data_rate (default 500 octets/s)
    "max_connections",  # default_process_limit (100)
    "max_per_client",   # smtpd_client_connection_count_limit (50)
)
SERVER_LIMITS = (
    "hard_error_limit",    # smtpd_hard_error_limit (20)
    "soft_error_limit",    # smtpd_soft_error_limit (10)
    "error_sleep_time",    # smtpd_error_sleep_time (1 s)
    "junk_command_limit",  # smtpd_junk_command_limit (100)
    "auth_failure_limit",  # failed AUTH attempts before 421 (3)
    "disable_vrfy_command",  # disable_vrfy_command (no)
)


def limits(policy: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the limits ``names`` from a host's policy (see ``Policy``)."""
    return {name: getattr(policy, name) for name in names}


def _core(conn: object) -> object:
    """The protocol core a listener drives (a world's connections wrap theirs)."""
    from .services import ServiceConnection

    return conn.core if isinstance(conn, ServiceConnection) else conn


def time_out(conn: object) -> None:
    """The idle timer ran out: SMTP says ``421 4.4.2``, POP3 ``-ERR``, IMAP ``* BYE``
    (then close)."""
    from simsmtp.protocol.imap import IMAPServerConnection
    from simsmtp.protocol.pop3 import Disconnect, POP3ServerConnection
    from simsmtp.protocol.server import ServerConnection

    core = _core(conn)
    if isinstance(core, ServerConnection | IMAPServerConnection):
        core.send_timeout()
    elif isinstance(core, POP3ServerConnection):
        core.send(Disconnect("Disconnected for inactivity."))


def goodbye(conn: object) -> None:
    """The world stops: SMTP says ``421 4.3.2 ... shutting down`` (RFC 5321 §3.8), POP3
    ``-ERR``, IMAP ``* BYE``."""
    from simsmtp.protocol.imap import IMAPServerConnection
    from simsmtp.protocol.pop3 import Disconnect, POP3ServerConnection
    from simsmtp.protocol.server import ServerConnection

    core = _core(conn)
    with contextlib.suppress(Exception):
        if isinstance(core, ServerConnection | IMAPServerConnection):
            core.send_shutdown()
        elif isinstance(core, POP3ServerConnection):
            core.send(Disconnect("Server shutting down."))
