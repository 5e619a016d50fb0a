"""A running world: every host's servers on loopback, the DNS server, the CA and the agents.

``with world.start() as net:`` boots the whole world on a background event-loop thread in
about a tenth of a second: each host gets its own ``127.0.0.x`` address and ephemeral
ports for its well-known ones (25, 587, 465, 110; 53 for the DNS server). No root, no fixed
ports: many worlds run side by side. Where only ``127.0.0.1`` can be bound (a Mac), the
hosts' sockets share it and the world's :class:`~simsmtp.net.addresses.AddressBook` keeps
each host's own address for everything the lessons reason about (DNS, SPF, ``Received:``,
the capture and the views). Leaving the block (or interpreter exit, or a kernel restart)
stops everything: sockets, threads, files.

What runs, by host role (:data:`simsmtp.world.model.ROLE_PORTS`):

* ``mx``: SMTP on 25 (:class:`~simsmtp.net.services.InboundHandler`), STARTTLS offered;
* ``submission``: 587 (STARTTLS, then AUTH required) and 465 (implicit TLS, RFC 8314);
* ``pop3``: POP3 on 110 with STLS (RFC 2595);
* ``outbound``: a :class:`~simsmtp.net.agent.DeliveryAgent` with a durable queue (and its
  MTA-STS/DANE rules, :mod:`simsmtp.net.securemx`, used when the host's policy says so).

A domain that publishes MTA-STS gets an HTTPS policy server (:mod:`simsmtp.net.https`) on
the address of its first MX host, as ``mta-sts.<domain>`` (port 443, mapped like the others);
a domain with ``dnssec = true`` gets a signed zone (:mod:`simsmtp.world.dnssec`).

Everything goes into the world's trace (``world.trace``) and every byte into the capture
tap (``net.tap``).
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.replies import Reply

from .addresses import AddressBook, allocate_addresses, bind_addresses
from .loop import EventLoopThread
from .tap import Tap

if TYPE_CHECKING:
    import dns.resolver

    from simsmtp.protocol.session import Envelope, Session
    from simsmtp.world.model import Host, World

    from .agent import DeliveryAgent
    from .attacker import Eavesdropper, OnPathAttacker
    from .ca import CertificateAuthority
    from .dns import DNSServer
    from .listener import Anvil, Listener
    from .queue import Queue
    from .services import WorldHandler
    from .stepper import SMTPStepper, Step

#: Well-known port -> the service name the listener, the trace and the capture use.
SERVICES = {25: "smtp", 587: "submission", 465: "smtps", 110: "pop3", 995: "pop3s",
            143: "imap", 993: "imaps"}
#: The retrieval services (a mail program reads a mailbox): no SMTP 421 when refused.
RETRIEVAL = frozenset({"pop3", "pop3s", "imap", "imaps"})
#: The DNS server's well-known port (RFC 1035 §4.2).
DNS_PORT = 53
#: The MTA-STS policy server's well-known port (HTTPS, RFC 8461 §3.3, RFC 9110 §4.2.2).
HTTPS_PORT = 443


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


class Network:
    """A booted world (see the module docstring). Usually made by ``world.start()``.

    Args:
        world: the world to boot.
        storage: ``"maildir"`` (files, ``fsync``ed before every 250) or ``"memory"``.
        directory: where mailboxes, queues, certificates and the key log live; a temporary
            directory (removed at stop) when omitted.
        capture: keep every byte that crosses the world's sockets (``net.tap``).
        keylog: write an SSLKEYLOGFILE for every TLS session (default
            ``<directory>/tls/keylog.txt``; ``False`` for none).
        base_address: the first loopback address to hand out.
    """

    def __init__(self, world: World, *, storage: str = "maildir",
                 directory: str | Path | None = None, capture: bool = True,
                 keylog: str | Path | bool | None = None,
                 base_address: str = "127.0.0.2") -> None:
        if storage not in ("maildir", "memory"):
            raise ValueError(f"storage must be 'maildir' or 'memory', not {storage!r}")
        self.world = world
        self.storage = storage
        self._own_directory = directory is None
        self.directory = Path(directory) if directory is not None else None
        self.tap = Tap(enabled=capture)
        self._keylog = keylog
        self._base_address = base_address
        self.hosts: dict[str, HostInfo] = {}
        self.loop: EventLoopThread | None = None
        self.dns: DNSServer | None = None
        self.ca: CertificateAuthority | None = None
        self.store: Any = None
        self.queues: dict[str, Queue] = {}
        self.agents: dict[str, DeliveryAgent] = {}
        self._listeners: dict[tuple[str, int], Listener] = {}
        self._by_ip: dict[str, str] = {}
        #: Which host owns which socket, when hosts share one transport address.
        self.address_book = AddressBook()
        self._tls_conns: set[int] = set()
        #: host name -> the port its port 25 has for the outbound agents (an on-path
        #: attacker, simsmtp.net.attacker); the attackers on the path, closed at stop.
        self.redirects: dict[str, int] = {}
        self.attackers: list[Any] = []
        self._started = False
        self._lock = threading.Lock()
        self._dns_key: tuple[Any, ...] | None = None
        self._dns_version: tuple[Any, ...] | None = None
        self._dns_records: tuple[Any, ...] = ()
        #: host name -> its MX's memory of DNS answers (simsmtp.net.authpolicy.AnswerCache).
        self.answer_caches: dict[str, Any] = {}
        #: host name -> its per-client counters (simsmtp.net.listener.Anvil).
        self.anvils: dict[str, Anvil] = {}
        #: host -> the POP3 maildrops its sessions hold now (shared by 110 and 995).
        self.maildrop_locks: dict[str, Any] = {}
        #: How many times a world booted on this directory before (0: a fresh one).
        self.generation = 0
        #: (host, service) -> the server config its next connection gets (dropped when the
        #: host's policy changes); host -> its TLS server context; policy watchers to undo.
        self._configs: dict[tuple[str, str], Any] = {}
        self._server_contexts: dict[str, Any] = {}
        self._unwatch: list[Callable[[], None]] = []
        #: host name -> the MTA-STS policy server (HTTPS) running on its address.
        self.policy_servers: dict[str, Any] = {}
        #: host name -> the real port of its well-known HTTPS port 443 (policy server).
        self.https_ports: dict[str, int] = {}
        #: host name -> (its certificate, the CA's), DER: for the TLSA records (DANE).
        self._certificates: dict[str, tuple[bytes, bytes]] = {}
        #: the keys of the signed zones, made again only when the world's DNS changed
        self._signing_keys: dict[str, Any] = {}

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Network:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Network:
        """Boot every server of the world; returns self once all are listening."""
        if self._started:
            return self
        from .ca import CertificateAuthority
        from .store import MaildirStore, MemoryStore

        world = self.world
        if self.directory is None:
            self.directory = Path(tempfile.mkdtemp(prefix="simsmtp-"))
            # Also at interpreter exit (a kernel restart) when the world was never stopped.
            weakref.finalize(self, shutil.rmtree, str(self.directory), True)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._continue_from_disk()
        # Hosts that only connect (role "client", e.g. a spoofer) come after the name
        # server, so adding one to a world does not move the addresses of the others.
        clients = [n for n, h in world.hosts.items() if h.roles and set(h.roles) == {"client"}]
        names = [*(n for n in world.hosts if n not in clients), world.nameserver, *clients]
        ips = allocate_addresses(len(names), base=self._base_address)
        for name, ip, bind in zip(names, ips, bind_addresses(ips), strict=True):
            self.hosts[name] = HostInfo(name, ip, bind_ip=bind)
            self._by_ip.setdefault(ip, name)
            self.address_book.host(ip, bind)
        keylog: Path | None = None
        if self._keylog is None or self._keylog is True:
            keylog = self.directory / "tls" / "keylog.txt"
        elif self._keylog:
            keylog = Path(self._keylog)
        self.ca = CertificateAuthority(  # limited to the world's names (RFC 5280 §4.2.1.10)
            self.directory / "tls", keylog=keylog,
            names=[*world.domains, *world.hosts, world.nameserver])
        for host in world.hosts.values():
            if host.ports():  # its name and its address, so clients given the IP verify too
                info = self.hosts[host.name]
                self.ca.issue([host.name, info.ip] +
                              ([info.bind_ip] if info.bind_ip != info.ip else []))
        self._security_certificates()
        self._key_rng = world.ids.rng("maildir")
        self.store = (MaildirStore(self.directory / "mail", key_factory=self._mail_key,
                                   clock=world.clock.now)
                      if self.storage == "maildir"
                      else MemoryStore(hostname="simsmtp", key_factory=self._mail_key,
                                       clock=world.clock.now))
        self._configs.clear()  # a world booted again has new certificates
        self._server_contexts.clear()
        self.loop = EventLoopThread(name=f"simsmtp {world.name}").start()
        self._started = True
        for host in world.hosts.values():
            self._unwatch.append(host.policy.watch(self._policy_watcher(host)))
        try:
            self.loop.run(self._boot(), timeout=30)
        except BaseException:
            self.stop()
            raise
        world.trace.record("world.started", hosts={n: h.ip for n, h in self.hosts.items()},
                           dns=f"{self.dns_address[0]}:{self.dns_address[1]}")
        return self

    async def _boot(self) -> None:
        from .dns import DNSServer

        world = self.world
        ns = self.hosts[world.nameserver]
        self.dns = DNSServer(self._records, host=ns.bind_ip, trace=world.trace,
                             on_query=self._tap_dns, name=world.nameserver,
                             zone_keys=self._zone_keys,
                             # signatures valid from a day before the epoch (RFC 4034 §3.1.5)
                             inception=world.epoch.timestamp() - 86400)
        await self.dns.start()
        ns.ports[DNS_PORT] = self.dns.address[1]
        self.address_book.listening(self.dns.address, ns.ip)
        await self._start_policy_servers()
        for host in world.hosts.values():
            if host.has_role("outbound"):
                self._make_agent(host)
            if not host.down:
                await self._open_host(host)
        self._resume_queues()

    def _continue_from_disk(self) -> None:
        """A world booted again on the directory of an earlier run carries on from it.

        Each boot on a directory is a new *generation*: its ids come from streams seeded by
        (seed, generation), so a restarted world never reuses the queue ids or Maildir keys
        of the mail an earlier run left on disk, yet stays reproducible run after run.
        """
        import json

        from simsmtp.world.clock import IdGenerator

        assert self.directory is not None
        state_file = self.directory / "world-state.json"
        generation = 0
        if state_file.exists():
            try:
                generation = int(json.loads(state_file.read_text())["generation"]) + 1
            except (ValueError, KeyError, TypeError, OSError):
                generation = 1
        state_file.write_text(json.dumps({"generation": generation, "seed": self.world.seed}))
        self.generation = generation
        if generation:
            world = self.world
            world.ids = IdGenerator(world.seed * 1_000_003 + generation, world.clock)

    def _resume_queues(self) -> None:
        """Mail an earlier run left in the queue is retried at once (``postqueue -f``).

        The restarted world's virtual clock starts at its epoch again; it moves on to the
        latest retry time found in the queues, so every message waiting there is due.
        """
        for queue in self.queues.values():
            self.world.ids.reserve(m.queue_id for m in queue)
        dues = [due for queue in self.queues.values() if (due := queue.next_due()) is not None]
        if dues and max(dues) > self.world.clock.now():
            self.world.clock.advance_to(max(dues))
        for name, agent in self.agents.items():
            if len(self.queues[name]):
                agent.kick()

    def stop(self) -> None:
        """Stop everything: say 421 to every client, close every socket, end the thread."""
        with self._lock:
            if not self._started:
                return
            self._started = False
        for unwatch in self._unwatch:
            unwatch()
        self._unwatch.clear()
        loop = self.loop
        if loop is not None and loop.running:
            with contextlib.suppress(Exception):
                loop.run(self._shutdown(), timeout=15)
            loop.stop()
        self.world.trace.record("world.stopped")
        if self._own_directory and self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)

    async def _shutdown(self) -> None:
        for attacker in list(self.attackers):
            with contextlib.suppress(Exception):
                await attacker.aclose()
        for key in list(self._listeners):
            await self._close_listener(key)
        for server in self.policy_servers.values():
            with contextlib.suppress(Exception):
                await server.close()
        if self.dns is not None:
            await self.dns.close()

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._started

    # ---------------------------------------------------------------- hosts up and down
    async def _open_host(self, host: Host) -> None:
        for port in host.ports():
            key = (host.name, port)
            if key not in self._listeners:
                self._listeners[key] = await self._listen(host, port)
                self.hosts[host.name].ports[port] = self._listeners[key].address[1]

    async def _close_listener(self, key: tuple[str, int]) -> None:
        listener = self._listeners.pop(key)
        await listener.close(goodbye=_goodbye)
        self.address_book.stopped_listening(listener.address)

    def take_down(self, name: str) -> None:
        """Make a host refuse connections (its listeners close), e.g. a primary MX down."""
        host = self.world.host(name)
        host.down = True

        async def close() -> None:
            for key in [k for k in self._listeners if k[0] == host.name]:
                await self._close_listener(key)

        self._run(close())
        self.world.trace.record("host.down", host=host.name)

    def bring_up(self, name: str) -> None:
        """Bring a host taken down back (same ports if they are still free)."""
        host = self.world.host(name)
        host.down = False
        self._run(self._open_host(host))
        self.world.trace.record("host.up", host=host.name)

    # ---------------------------------------------------------------- services
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
            tap=self.tap, idle_timeout=host.policy.idle_timeout, on_timeout=_timeout,
            on_event=self._on_event,
            on_refused=refused if service not in RETRIEVAL else refused_retrieval,
            identify=self.address_book.identify,
            anvil=self.anvil_of(host.name),
            stress_idle_timeout=host.policy.stress_idle_timeout,
            **_limits(host.policy, _LISTENER_LIMITS))
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
            **_limits(policy, _SERVER_LIMITS),
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
            handler = handler_class(self, host, service)
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
            login = POP3Login(self, host, locks)
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
            authenticate = imap_authenticator(self, host, service.wake)
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

    def _policy_watcher(self, host: Host) -> Callable[[Any, str], None]:
        def changed(policy: Any, name: str) -> None:
            self._policy_changed(host, policy, name)

        return changed

    def _policy_changed(self, host: Host, policy: Any, name: str) -> None:
        """A notebook changed ``host``'s policy while the world runs: check it like a world
        file (a bad value raises :class:`~simsmtp.world.loader.WorldFileError` and is not
        kept), then make it reach what runs. The next connection to the host gets the new
        server settings (a connection already open keeps the ones it started with); the
        listeners' limits and the outbound agent's ``outbound_tls`` change at once."""
        if not self._started:  # a watcher that followed a replaced Policy past stop()
            return
        self.world.check()
        for key in [k for k in self._configs if k[0] == host.name]:
            self._configs.pop(key, None)
        for (owner, _port), listener in list(self._listeners.items()):
            if owner == host.name:
                listener.idle_timeout = policy.idle_timeout
                for limit, value in _limits(policy, _LISTENER_LIMITS).items():
                    setattr(listener, limit, value)
        agent = self.agents.get(host.name)
        if agent is not None and self.ca is not None:
            agent.tls_policy = policy.outbound_tls
            agent.client_tls_context = self.ca.client_context(
                verify=policy.outbound_tls == "required")

    def _make_agent(self, host: Host) -> None:
        from .agent import DeliveryAgent
        from .channel import open_connection
        from .dns import alookup_a, alookup_mx, make_async_resolver
        from .queue import Queue

        assert self.directory is not None and self.ca is not None
        world = self.world
        queue = Queue(self.directory / "queue" / host.name, trace=world.trace, host=host.name)
        self.queues[host.name] = queue
        resolver_box: list[Any] = []

        async def lookup(name: str, rtype: str) -> Any:
            if not resolver_box:
                assert self.dns is not None
                resolver_box.append(make_async_resolver(*self.dns.address))
            if rtype == "MX":
                return await alookup_mx(resolver_box[0], name)
            return await alookup_a(resolver_box[0], name)

        own_ip = self.hosts[host.name].ip
        book = self.address_book

        async def connect(ip: str, port: int, mx_name: str, conn: Any) -> Any:
            # The receiving listener taps the connection; tapping it here too would
            # record every byte twice. From the host's own socket address, registered as
            # the host's before the connect (its identity where hosts share 127.0.0.1).
            to_ip, to_port = book.transport((ip, port))
            return await open_connection(to_ip, to_port, conn, tap=None, name=host.name,
                                         service="smtp", trace=world.trace,
                                         local_host=book.bind_ip(own_ip),
                                         identity=(own_ip, book), timeout=10.0)

        policy = host.policy.outbound_tls
        context = self.ca.client_context(verify=policy == "required")
        self.agents[host.name] = DeliveryAgent(
            queue, hostname=host.name, resolver_lookup=lookup, connect=connect,
            tls_policy=policy, client_tls_context=context, clock=world.clock, ids=world.ids,
            bounce_sink=lambda sender, dsn: self._bounce(host, sender, dsn),
            trace=world.trace, port_of=self._port_25, self_names={host.name},
            security=self._transport_security(host))

    # ---------------------------------------------------------------- MTA-STS, DANE, TLS-RPT
    def _security_certificates(self) -> None:
        """Certificates for the policy servers (``mta-sts.<domain>``) and the DER of every
        MX host's certificate, for the TLSA records."""
        from cryptography import x509
        from cryptography.hazmat.primitives.serialization import Encoding

        assert self.ca is not None

        def der(pem: bytes) -> bytes:
            return x509.load_pem_x509_certificate(pem).public_bytes(Encoding.DER)

        ca_der = der(self.ca.cert_pem)
        for host in self.world.hosts_with_role("mx"):
            self._certificates[host.name] = (der(self.ca.leaf_for(host.name).cert_pem), ca_der)

    def _policy_domains(self, host_name: str) -> list[str]:
        return [d for d in self.world.domains if self.world.policy_server(d) == host_name]

    async def _start_policy_servers(self) -> None:
        """An HTTPS policy server on the address of each host that serves a domain's
        MTA-STS policy (as ``mta-sts.<domain>``, RFC 8461 §3.3)."""
        from simsmtp.world.mtasts import policy_host, render_policy

        from .https import PolicyServer

        assert self.ca is not None
        world = self.world
        for host_name in dict.fromkeys(filter(None, map(world.policy_server, world.domains))):
            names = [policy_host(d) for d in self._policy_domains(host_name)]
            self.ca.issue(names)

            def text(domain: str, host_name: str = host_name) -> str | None:
                found = world.domains.get(domain)
                if found is None or world.policy_server(domain) != host_name:
                    return None
                policy = found.sts_policy()
                return None if policy is None else render_policy(policy)

            context = self.ca.server_context(names[0])
            info = self.hosts[host_name]
            server = PolicyServer(text, context, info.bind_ip, trace=world.trace,
                                  name=names[0])
            self.policy_servers[host_name] = await server.start()
            self.https_ports[host_name] = server.address[1]
            self.address_book.listening(server.address, info.ip)

    def _transport_security(self, host: Host) -> Any:
        from simsmtp.world.tlsrpt import TLSReporter

        from .https import FetchResult, fetch_policy
        from .securemx import TransportSecurity

        assert self.ca is not None
        world = self.world
        verify = self.ca.client_context(verify=True)

        async def fetch(domain: str) -> FetchResult:
            import dns.asyncquery
            import dns.message

            from simsmtp.world.mtasts import policy_host

            assert self.dns is not None
            name = policy_host(domain)
            query = dns.message.make_query(name, "A")
            try:
                answer, _ = await dns.asyncquery.udp_with_fallback(
                    query, *self.dns.address[:1], port=self.dns.address[1], timeout=3.0)
                ip = next(str(rd) for r in answer.answer for rd in r if r.rdtype == 1)
            except Exception:
                return FetchResult(None, f"{name} does not resolve")
            owner = self._by_ip.get(ip)
            port = self.https_ports.get(owner) if owner else None
            if port is None:
                return FetchResult(None, f"connect to {name}[{ip}]:443: Connection refused")
            return await fetch_policy(*self.address_book.transport((ip, port)), domain,
                                      verify)

        def anchors() -> dict[str, Any]:
            # the world's trust anchors: the DS of each signed zone (what a parent would
            # publish; the world has no root to chain from)
            return {name: key.ds() for name, key in world.zone_keys().items()}

        security = TransportSecurity(
            mta_sts=host.policy.mta_sts, dane=host.policy.dane,
            dns_server=self.dns_address, fetch=fetch, verify_context=verify,
            dane_context=self.ca.client_context(verify=False), anchors=anchors,
            clock=world.clock, reporter=TLSReporter(host.name, f"postmaster@{host.domain}",
                                                    sender=host.domain),
            trace=world.trace, hostname=host.name, own_ip=self.hosts[host.name].ip,
            ta_certs=(next(iter(self._certificates.values()))[1],)
            if self._certificates else ())
        # read live: a notebook turns MTA-STS or DANE on for a running world
        security.settings = lambda: (host.policy.mta_sts, host.policy.dane)
        return security

    def tls_report(self, domain: str, day: Any = None,
                   host: str | None = None) -> dict[str, Any]:
        """The TLS-RPT report (RFC 8460 §4.4) ``host``'s agent (default: the world's first
        outbound host) would send to ``domain`` for ``day`` (a :class:`datetime.date`;
        default: the virtual clock's today)."""
        from datetime import UTC, datetime

        from simsmtp.world import cast

        host = host or cast.sending_host(self.world, arg="host")
        security = self.agents[self.world.host(host).name].security
        when = day or datetime.fromtimestamp(self.world.clock.now(), UTC).date()
        report: dict[str, Any] = security.reporter.report(domain, when)
        return report

    def write_tls_reports(self, host: str | None = None) -> list[Path]:
        """Write every TLS-RPT report ``host``'s agent (default: the world's first outbound
        host) has tallied, one JSON file per policy domain and day, named as RFC 8460 §5.1
        says, under ``<directory>/tlsrpt/``."""
        import json

        from simsmtp.world import cast
        from simsmtp.world.tlsrpt import report_filename

        assert self.directory is not None
        host = host or cast.sending_host(self.world, arg="host")
        reporter = self.agents[self.world.host(host).name].security.reporter
        folder = self.directory / "tlsrpt"
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        for domain, day in reporter.days():
            path = folder / report_filename(reporter.sender or host, domain, day)
            path.write_text(json.dumps(reporter.report(domain, day), indent=2) + "\n")
            written.append(path)
        return written

    def fetch_policy(self, domain: str) -> Any:
        """Fetch ``domain``'s MTA-STS policy as a sender would (HTTPS, the world CA, the
        name ``mta-sts.<domain>``): a :class:`~simsmtp.net.https.FetchResult`."""
        from .https import fetch_policy

        assert self.ca is not None
        server = self.world.policy_server(domain)
        if server is None or server not in self.https_ports:
            raise KeyError(f"{domain} publishes no MTA-STS policy in this world")
        context = self.ca.client_context(verify=True)
        return self._run(fetch_policy(self.hosts[server].bind_ip, self.https_ports[server],
                                      domain, context))

    def policy_server(self, domain: str) -> Any:
        """The HTTPS server of ``domain``'s MTA-STS policy (set ``.blocked = True`` to make
        every fetch fail, as an attacker on the path would)."""
        return self.policy_servers[self.world.policy_server(domain) or ""]

    def trust_anchor_file(self) -> Path:
        """A ``delv -a`` file with the world's trust anchors (the signed zones' keys)."""
        assert self.directory is not None
        path = self.directory / "tls" / "trust-anchors.conf"
        path.write_text("".join(k.trust_anchor() for k in self.world.zone_keys().values()))
        return path

    # ---------------------------------------------------------------- what handlers call
    def local_domains(self, host_name: str) -> list[str]:
        """The domains whose mail ``host_name`` keeps (live: follows MX edits)."""
        return self.world.local_domains(host_name)

    def queue_of(self, host_name: str) -> Queue | None:
        """The outbound queue of ``host_name`` (None unless it has the outbound role)."""
        return self.queues.get(host_name)

    def name_of(self, ip: str) -> str | None:
        """The world host that owns ``ip`` (what a PTR lookup would say)."""
        return self._by_ip.get(ip)

    def accept(self, handler: WorldHandler, session: Session, envelope: Envelope, *,
               folder: str | None = None, content: bytes | None = None) -> Reply | None:
        """Store a message a server accepted: remote recipients into the outbound queue,
        local ones into their mailboxes (into ``folder``, e.g. ``"Junk"``, when given), all
        ``fsync``ed before the ``250`` (RFC 5321 §6.1). ``content`` replaces the message
        as received (e.g. DKIM-signed or with Authentication-Results on top), leaving
        ``envelope.content`` (what the trace shows crossed the wire) untouched.

        Returns None (the ``250``) or the ``451 4.3.0`` of a storage failure; either all of
        it is stored or none of it.
        """
        from .queue import QueueError
        from .store import StorageError

        host = handler.host
        trace = self.world.trace
        recipients = handler.final_recipients(envelope)
        local = [r for r in recipients if handler.is_local(r)]
        remote = [r for r in recipients if not handler.is_local(r)]
        queue = self.queue_of(host.name)
        qid = envelope.queue_id or self.world.ids.queue_id()
        if remote and queue is None:  # RCPT should have refused; never lose it silently
            return Reply(451, "4.3.0 Error: no outbound queue on this host")
        queued = False
        data = envelope.content if content is None else content
        try:
            if remote:
                assert queue is not None
                received = handler.received(session, envelope,
                                            remote[0] if len(remote) == 1 else None)
                queue.enqueue(envelope.mail_from or "", remote, received + data,
                              queue_id=qid, arrival=self.world.clock.now(),
                              params=dict(envelope.mail_params))
                queued = True
            if local:
                # Final delivery: Return-Path records the envelope sender (RFC 5321 §4.4)
                received = _return_path(envelope.mail_from) + handler.received(
                    session, envelope, local[0] if len(local) == 1 else None)
                if folder is None:
                    self.store.deliver_many(local, received + data)
                else:
                    from .authpolicy import deliver_to_folder

                    deliver_to_folder(self.store, local, received + data, folder)
        except (StorageError, QueueError, OSError) as exc:
            if queued:
                assert queue is not None
                with contextlib.suppress(Exception):
                    queue.remove(qid, force=True)
            return handler.storage_error(exc)
        for rcpt in local:
            trace.record("delivery.stored", host=host.name, queue_id=qid, recipient=rcpt,
                         sender=envelope.mail_from, **({"folder": folder} if folder else {}))
        if remote:
            trace.record("queue.accepted", host=host.name, queue_id=qid,
                         recipients=list(remote), sender=envelope.mail_from)
            self.agents[host.name].kick()
        return None

    def _bounce(self, host: Host, sender: str, dsn: bytes) -> None:
        """Where the agent's bounces go: the sender's mailbox here, or back out by SMTP."""
        domain = sender.rpartition("@")[2].lower()
        if domain in self.local_domains(host.name):
            self.store.deliver(sender, _return_path("") + dsn)
            self.world.trace.record("delivery.stored", host=host.name, recipient=sender,
                                    sender="", bounce=True)
            return
        queue = self.queues[host.name]
        qid = self.world.ids.queue_id()
        queue.enqueue("", [sender], dsn, queue_id=qid, arrival=self.world.clock.now())

    def _port_25(self, name_or_ip: str) -> int | None:
        info = self.hosts.get(name_or_ip.lower().rstrip("."))
        if info is None:
            owner = self._by_ip.get(name_or_ip)
            info = self.hosts.get(owner) if owner else None
        if info is not None and info.name in self.redirects:  # an attacker on the path
            return self.redirects[info.name]
        return None if info is None else info.ports.get(25)

    def _mail_key(self) -> str:
        """Reproducible Maildir keys (so POP3 UIDLs and notebooks repeat run after run)."""
        return f"{int(self.world.clock.now())}.{self._key_rng.getrandbits(48):012x}.simsmtp"

    # ---------------------------------------------------------------- trace and capture
    def _records(self) -> tuple[Any, ...]:
        """The world's DNS records, rebuilt only when the world changed (per DNS query);
        the same tuple object while nothing changed, which the DNS server notices.

        ``world.dns_version()`` (O(1)) says whether anything was edited since the last
        query; only then is the whole ``world.dns_state()`` compared (O(domains))."""
        version = self.world.dns_version()
        if version == self._dns_version and self._dns_key is not None:
            return self._dns_records
        key = self.world.dns_state()
        if key != self._dns_key:
            self._dns_records = tuple(
                self.world.dns_records({n: h.ip for n, h in self.hosts.items()},
                                       self._certificates))
            self._signing_keys = self.world.zone_keys()
            self._dns_key = key
        self._dns_version = version
        return self._dns_records

    def _zone_keys(self) -> dict[str, Any]:
        """The keys of the zones to sign (DNSSEC), as of the last :meth:`_records`."""
        self._records()
        return self._signing_keys

    def _tap_dns(self, query: bytes, response: bytes, client: tuple[str, int],
                 transport: str) -> None:
        assert self.dns is not None
        if transport == "in-process":  # the MX's own lookups (authpolicy): no socket
            return
        book = self.address_book
        server, client = book.identify(self.dns.address), book.identify(client)
        self.tap.datagram(client, server, query, "c2s", service="dns",
                          host=self.world.nameserver)
        if response:
            self.tap.datagram(client, server, response, "s2c", service="dns",
                              host=self.world.nameserver)

    def _on_event(self, info: Any, event: Any) -> None:
        record_event(self.world.trace, info, event, self._tls_conns)
        if login_failed(getattr(event, "reply", None)):  # the anvil counts a bad login
            anvil = self.anvils.get(info.host_name)
            if anvil is not None:
                anvil.auth_failed(info.peer[0])

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

    # ---------------------------------------------------------------- using the world
    def _run(self, coro: Any, timeout: float | None = 60) -> Any:
        if self.loop is None or not self._started:
            coro.close()
            raise self._stopped()
        return self.loop.run(coro, timeout=timeout)

    @property
    def dns_address(self) -> tuple[str, int]:
        """(ip, port) of the world's DNS server."""
        assert self.dns is not None
        return self.dns.address

    @property
    def ca_file(self) -> Path:
        """The world CA's certificate (PEM): give it to clients that verify."""
        assert self.ca is not None
        return self.ca.ca_file

    @property
    def keylog_file(self) -> Path | None:
        """The SSLKEYLOGFILE of the world's TLS sessions, if kept."""
        return None if self.ca is None else self.ca.keylog

    def address(self, host: str, port: int = 25) -> tuple[str, int]:
        """(ip, real port) where ``host`` serves its well-known ``port``: where to connect
        (the host's own address, or ``127.0.0.1`` where hosts share it)."""
        info = self.hosts[self.world.host(host).name]
        if port not in info.ports:
            served = ", ".join(str(p) for p in sorted(info.ports)) or "nothing"
            raise KeyError(f"{host} does not serve port {port} (it serves {served})")
        return info.bind_ip, info.ports[port]

    def resolver(self) -> dns.resolver.Resolver:
        """A dnspython resolver that asks the world's DNS server (never the Internet)."""
        from .dns import make_resolver

        return make_resolver(*self.dns_address)

    def dig(self, name: str, rtype: str = "MX", *, tcp: bool = False,
            elapsed_ms: float | None = None, query_id: int | None = None,
            show_port: int | None = None) -> str:
        """Ask the world's DNS server like ``dig @server -p port rtype name`` and render it.

        Args:
            name: the name to look up.
            rtype: the record type.
            tcp: ask over TCP (``dig +tcp``) instead of UDP.
            elapsed_ms: the "Query time" to print instead of the measured one, and
                ``query_id`` the message id to use (RFC 1035 §4.1.1) instead of a random
                one, and ``show_port`` the port to print (53, the world's well-known DNS
                port) instead of the real ephemeral one: all three for reproducible text.
        """
        import time

        import dns.message
        import dns.query

        from simsmtp.capture.dnsview import render_dig

        ip, port = self.dns_address
        query = dns.message.make_query(name, rtype)
        if query_id is not None:
            query.id = query_id
        start = time.perf_counter()
        response = (dns.query.tcp if tcp else dns.query.udp)(query, ip, port=port, timeout=5)
        elapsed = (time.perf_counter() - start) * 1000 if elapsed_ms is None else elapsed_ms
        return render_dig(query, response, server=self.hosts[self.world.nameserver].ip,
                          port=port if show_port is None else show_port,
                          elapsed_ms=elapsed, transport="TCP" if tcp else "UDP")

    def deliver(self, timeout: float = 30.0) -> None:
        """Let every outbound agent deliver what is due now, and wait until it is done."""
        async def run() -> None:
            for agent in self.agents.values():
                await agent.run_once()

        self._run(run(), timeout=timeout)

    def fast_forward(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` ahead, running every retry that falls due.

        Every agent shares the world's clock, so they walk one timeline together: the clock
        jumps to the earliest retry due in any queue, every agent runs what is due then,
        and so on until ``seconds`` have passed (a retry "in 300 s" runs 300 s later,
        however many outbound hosts the world has)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        clock = self.world.clock

        async def run_all() -> None:
            for agent in list(self.agents.values()):
                await agent.run_once()

        async def run() -> None:
            end = clock.now() + seconds
            await run_all()
            again = True  # due right after a run (e.g. a bounce queued): one more run
            while True:
                now = clock.now()
                dues = [due for q in self.queues.values() if (due := q.next_due()) is not None]
                if again and any(due <= now for due in dues):
                    again = False
                    await run_all()
                    continue
                later = [due for due in dues if due > now]
                if not later or min(later) > end:
                    break
                clock.advance_to(min(later))
                again = True
                await run_all()
            clock.advance_to(end)

        self._run(run(), timeout=120)

    def mailbox(self, address: str, folder: str | None = None) -> list[Any]:
        """The messages in ``address``'s mailbox (``email.message.EmailMessage``)."""
        messages: list[Any] = self.store.messages(address, folder)
        return messages

    def describe(self) -> dict[str, Any]:
        """Everything a learner or a tool needs to reach the world (``up --json``)."""
        return {
            "dns": {"ip": self.dns_address[0], "port": self.dns_address[1]},
            # "ip" is where a tool connects; "world_ip" the host's address inside the
            # world (DNS, SPF, Received:), when the two differ (a Mac: 127.0.0.1 shared).
            "hosts": {name: {"ip": h.bind_ip,
                             **({"world_ip": h.ip} if h.ip != h.bind_ip else {}),
                             "ports": {str(p): r for p, r in sorted(h.ports.items())}}
                      for name, h in self.hosts.items() if name != self.world.nameserver},
            "ca_file": str(self.ca_file),
            "users": {u.address: u.password for u in self.world.users()},
            # MTA-STS policy servers (RFC 8461 §3.3): name, address, real port of 443
            "policy_servers": self.describe_policy_servers(),
            # the world's DNSSEC trust anchors, for delv -a (None: no signed zone)
            "trust_anchors": (str(self.trust_anchor_file()) if self.world.zone_keys()
                              else None),
        }

    def describe_policy_servers(self) -> dict[str, dict[str, Any]]:
        """``mta-sts.<domain>`` -> ``{"ip", "port", "url"}`` of every policy server."""
        from simsmtp.world.mtasts import policy_host, policy_url

        found: dict[str, dict[str, Any]] = {}
        for domain in self.world.domains:
            server = self.world.policy_server(domain)
            if server is not None and server in self.https_ports:
                found[policy_host(domain)] = {"ip": self.hosts[server].bind_ip,
                                              "port": self.https_ports[server],
                                              "url": policy_url(domain)}
        return found

    def wait(self, predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
        """Wait (polling the world) until ``predicate()`` is true; False on timeout."""
        import time

        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if predicate():
                return True
            time.sleep(0.01)
        return predicate()

    def idle(self) -> bool:
        """True when no agent is running and nothing is due now."""
        now = self.world.clock.now()
        return all(not a.busy for a in self.agents.values()) and all(
            q.next_due() is None or q.next_due() > now  # type: ignore[operator]
            for q in self.queues.values())

    def __repr__(self) -> str:
        state = "running" if self._started else "stopped"
        return f"<Network {self.world.name!r} {state} hosts={list(self.hosts)}>"

    # ---------------------------------------------------------------- stepping by hand
    def session(self, host: str | None = None, port: int = 25,
                **kw: Any) -> SMTPStepper:
        """A steppable SMTP client for ``host``'s well-known ``port`` (not yet connected:
        call ``connect()`` for the greeting). ``kw`` go to
        :class:`~simsmtp.net.stepper.SMTPStepper`.

        Defaults come from the world (:mod:`simsmtp.world.cast`): ``host`` is the MX of its
        first recipient (``mail.anotherdomain.org`` in the seed) and ``local_name`` its
        first outbound host (``mail.example.com``), whose address the session uses."""
        from .stepper import SMTPStepper

        self.require_running("net.session()")
        return SMTPStepper(self, host, port, **kw)

    def require_running(self, what: str = "this") -> None:
        """Raise a plain ``RuntimeError`` when the world is stopped."""
        if not self._started:
            raise self._stopped(what)

    def _stopped(self, what: str = "this") -> RuntimeError:
        return RuntimeError(f"this world is stopped: {what} needs a running world "
                            "(boot it again with net = world.start())")

    def submit(self, message: bytes, *, sender: str, recipients: str | list[str], user: str,
               password: str, host: str | None = None, port: int = 587) -> list[Step]:
        """Submit ``message`` as Alice's mail client does: EHLO, STARTTLS, EHLO, AUTH PLAIN,
        MAIL, RCPT..., DATA, QUIT on 587; TLS from the start on 465 (RFC 8314). See
        :func:`simsmtp.net.stepper.submit`."""
        from .stepper import submit

        return submit(self, message, sender=sender, recipients=recipients, user=user,
                      password=password, host=host, port=port)

    # ---------------------------------------------------------------- attacks on the path
    def eavesdropper(self, between: tuple[str, str] | None = None,
                     **kw: Any) -> Eavesdropper:
        """A passive eavesdropper on the path between two hosts; its ``report()`` is live.
        ``kw`` go to :class:`~simsmtp.net.attacker.Eavesdropper`.

        Default path: the world's first outbound host and the MX of its first recipient
        (``mail.example.com`` and ``mail.anotherdomain.org`` in the seed)."""
        from simsmtp.world import cast

        from .attacker import Eavesdropper

        if between is None:
            between = (cast.sending_host(self.world, arg="between"),
                       cast.receiving_host(self.world, arg="between"))
        return Eavesdropper(self, between, **kw)

    def strip_starttls(self, target: str | None = None,
                       **kw: Any) -> OnPathAttacker:
        """Put a STARTTLS-stripping attacker on the path to ``target``'s port 25 (started;
        ``.stop()`` removes it). ``kw`` go to :class:`~simsmtp.net.attacker.OnPathAttacker`.
        Default ``target``: the MX of the world's first recipient (the seed's
        ``mail.anotherdomain.org``).
        """
        from simsmtp.world import cast

        from .attacker import OnPathAttacker

        self.require_running("net.strip_starttls()")
        if target is None:
            target = cast.receiving_host(self.world, arg="target")
        return OnPathAttacker(self, target, **kw).start()


#: Denial-of-service limits and Postfix settings a host's policy may set (Postfix names in
#: comments); absent ones keep the defaults of :class:`~simsmtp.net.listener.Listener` and
#: :class:`~simsmtp.protocol.server.ServerConfig`.
_LISTENER_LIMITS = (
    "min_data_rate",    # smtpd_min_data_rate (default 500 octets/s)
    "max_connections",  # default_process_limit (100)
    "max_per_client",   # smtpd_client_connection_count_limit (50)
)
_SERVER_LIMITS = (
    "hard_error_limit",    # smtpd_hard_error_limit (20)
    "soft_error_limit",    # smtpd_soft_error_limit (10)
    "error_sleep_time",    # smtpd_error_sleep_time (1 s)
    "junk_command_limit",  # smtpd_junk_command_limit (100)
    "auth_failure_limit",  # failed AUTH attempts before 421 (3)
    "disable_vrfy_command",  # disable_vrfy_command (no)
)


def login_failed(reply: Any) -> bool:
    """Whether ``reply`` refuses a login: SMTP ``535`` (RFC 4954 §6), POP3 ``-ERR [AUTH]``
    (RFC 3206 §5) or IMAP ``NO [AUTHENTICATIONFAILED]`` (RFC 5530 §3)."""
    if reply is None:
        return False
    code = getattr(reply, "code", None)
    if isinstance(code, int):
        return code == 535
    if code == "AUTHENTICATIONFAILED":
        return True
    return not getattr(reply, "ok", True) and str(getattr(reply, "text", "")).startswith(
        "[AUTH] Authentication failed")


def _limits(policy: Any, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the limits ``names`` from a host's policy (see ``Policy``)."""
    return {name: getattr(policy, name) for name in names}


def _return_path(sender: str | None) -> bytes:
    """The ``Return-Path:`` header of a final delivery (RFC 5321 §4.4; ``<>`` for a bounce)."""
    return f"Return-Path: <{sender or ''}>\r\n".encode("utf-8", "surrogateescape")


def _timeout(conn: Any) -> None:
    """The idle timer ran out: SMTP says ``421 4.4.2``, POP3 ``-ERR`` (then close)."""
    core = getattr(conn, "core", conn)
    if hasattr(core, "send_timeout"):
        core.send_timeout()
    else:
        from simsmtp.protocol.pop3 import Disconnect

        core.send(Disconnect("Disconnected for inactivity."))


def _goodbye(conn: Any) -> None:
    """The world stops: SMTP says ``421 4.3.2 ... shutting down`` (RFC 5321 §3.8)."""
    core = getattr(conn, "core", conn)
    with contextlib.suppress(Exception):
        if hasattr(core, "send_shutdown"):
            core.send_shutdown()
        else:
            from simsmtp.protocol.pop3 import Disconnect

            core.send(Disconnect("Server shutting down."))


def _text(data: bytes) -> str:
    return data.decode("utf-8", "replace")


def record_event(trace: Any, info: Any, event: Any, tls_conns: set[int]) -> None:
    """Turn a protocol event of a server connection into trace events.

    SMTP: ``smtp.command`` / ``smtp.reply`` (each with the states before and after),
    ``smtp.message``, ``tls.handshake``, ``tls.failed``, ``smtp.discarded``,
    ``smtp.closed``; POP3 the same with ``pop3.``, IMAP with ``imap.`` (and ``imap.update``
    for what the server says unprompted, ``* 2 EXISTS`` while idling). AUTH lines arrive
    masked from the core.
    """
    name = type(event).__name__
    if not trace.enabled:  # switched off: only follow which connections are under TLS
        if name == "TLSStarted":
            tls_conns.add(info.id)
        elif name == "ConnectionClosed":
            tls_conns.discard(info.id)
        return
    proto = {"pop3": "pop3", "pop3s": "pop3", "imap": "imap", "imaps": "imap"}.get(
        info.service, "smtp")
    base = {"conn": info.id, "service": info.service, "peer": f"{info.peer[0]}:{info.peer[1]}",
            "tls": info.id in tls_conns}
    before = getattr(getattr(event, "state_before", None), "name", None)
    after = getattr(getattr(event, "state_after", None), "name", None)
    states = {"state_before": before, "state_after": after}
    host = info.host_name
    if name == "ConnectionOpened":
        trace.record(f"{proto}.reply", host, **base, text=str(event.reply), **states)
    elif proto == "imap" and name in ("CommandReceived", "UpdateSent"):
        if name == "CommandReceived":
            trace.record("imap.command", host, **base, line=_text(event.line),
                         tag=event.tag, command=event.command, **states)
            trace.record("imap.reply", host, **base, text=str(event.reply),
                         status=event.reply.status, **states)
        else:
            trace.record("imap.update", host, **base, text=str(event.reply),
                         lines=list(event.lines), reason=event.reason, **states)
    elif name in ("CommandReceived", "AuthStep", "BdatChunkReceived"):
        if proto == "smtp":
            trace.record("smtp.command", host, **base, line=_text(event.line), **states)
            trace.record("smtp.reply", host, **base, text=str(event.reply),
                         code=event.reply.code, **states)
        else:  # POP3: the same vocabulary (line masked by the core, reply's status line)
            trace.record("pop3.command", host, **base, line=_text(event.line), **states)
            trace.record("pop3.reply", host, **base, text=str(event.reply),
                         lines=list(getattr(event, "body_lines", ())),
                         line_count=getattr(event, "body_line_count", 0), **states)
    elif name == "MessageReceived":
        env = event.envelope
        trace.record("smtp.message", host, **base, sender=env.mail_from,
                     recipients=list(env.rcpt_tos), size=len(env.content),
                     queue_id=env.queue_id, accepted=event.reply.is_positive,
                     content=env.content, via=event.via, **states)
        trace.record("smtp.reply", host, **base, text=str(event.reply),
                     code=event.reply.code, **states)
    elif name == "ReplySent":
        trace.record(f"{proto}.reply", host, **base, text=str(event.reply),
                     code=event.reply.code, reason=event.reason, **states)
    elif name == "TLSStarted":
        tls_conns.add(info.id)
        trace.record("tls.handshake", host, **base, version=event.version,
                     cipher=event.cipher, **states)
    elif name == "TLSFailed":
        trace.record("tls.failed", host, **base, reason=event.reason, **states)
    elif name == "PlaintextDiscarded":
        trace.record(f"{proto}.discarded", host, **base, octets=len(event.data), **states)
    elif name == "ConnectionClosed":
        tls_conns.discard(info.id)
        trace.record(f"{proto}.closed", host, **base, reason=event.reason, **states)


@contextlib.contextmanager
def running(world: World, **kw: Any) -> Iterator[Network]:
    """``with running(world) as net:`` (the same as ``with world.start() as net:``)."""
    net = Network(world, **kw)
    try:
        yield net.start()
    finally:
        net.stop()


__all__ = ["SERVICES", "HostInfo", "Network", "record_event", "running"]
