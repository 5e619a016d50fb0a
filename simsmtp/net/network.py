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

:class:`Network` is the top of ``net/``: it boots and stops the world and hands each part
the narrow things it uses. The parts live in their own modules and never import this one:
the hosts' listening services (:mod:`simsmtp.net.servers`), the outbound queues and
agents (:mod:`simsmtp.net.outbound`), the MTA-STS policy servers
(:mod:`simsmtp.net.policyservers`); the services, the steppable client and the attackers
see the running world through the small protocols of :mod:`simsmtp.net.runtime`.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from simsmtp.protocol.replies import Reply

from .addresses import AddressBook, allocate_addresses, bind_addresses
from .intake import store_accepted
from .loop import EventLoopThread
from .outbound import Outbound, transport_security
from .policyservers import PolicyServers
from .runtime import HostInfo, Receiver
from .servers import HostServers
from .tap import Tap

if TYPE_CHECKING:
    import dns.resolver

    from simsmtp.protocol.session import Envelope, Session
    from simsmtp.world.model import Host, World

    from .agent import DeliveryAgent
    from .attacker import Eavesdropper, OnPathAttacker
    from .ca import CertificateAuthority
    from .dns import DNSServer
    from .https import PolicyServer
    from .listener import Anvil
    from .queue import Queue
    from .stepper import SMTPStepper, Step

_T = TypeVar("_T")

#: The DNS server's well-known port (RFC 1035 §4.2).
DNS_PORT = 53


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
        self._by_ip: dict[str, str] = {}
        #: Which host owns which socket, when hosts share one transport address.
        self.address_book = AddressBook()
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
        #: How many times a world booted on this directory before (0: a fresh one).
        self.generation = 0
        #: The listening services of the hosts (SMTP, POP3, IMAP); policy watchers to undo.
        self.servers = HostServers(self, world=world, tap=self.tap,
                                   address_book=self.address_book, hosts=self.hosts)
        self._unwatch: list[Callable[[], None]] = []
        #: The MTA-STS policy servers (HTTPS, RFC 8461 §3.3) on their hosts' addresses.
        self.policy = PolicyServers(world, hosts=self.hosts, address_book=self.address_book)
        #: The outbound queues and delivery agents.
        self.outbound = Outbound(world, hosts=self.hosts, address_book=self.address_book,
                                 name_of=self.name_of, redirects=self.redirects)
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
        self.outbound.store = self.store
        self.servers.reset(self.ca)  # a world booted again has new certificates
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
        assert self.ca is not None
        await self.policy.start(self.ca)
        for host in world.hosts.values():
            if host.has_role("outbound"):
                self._make_agent(host)
            if not host.down:
                await self.servers.open_host(host)
        self.outbound.resume()

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
        await self.servers.close_all()
        await self.policy.close()
        if self.dns is not None:
            await self.dns.close()

    @property
    def running(self) -> bool:
        """True between start and stop."""
        return self._started

    # ---------------------------------------------------------------- hosts up and down
    def take_down(self, name: str) -> None:
        """Make a host refuse connections (its listeners close), e.g. a primary MX down."""
        host = self.world.host(name)
        host.down = True

        self.run(self.servers.close_host(host.name))
        self.world.trace.record("host.down", host=host.name)

    def bring_up(self, name: str) -> None:
        """Bring a host taken down back (same ports if they are still free)."""
        host = self.world.host(name)
        host.down = False
        self.run(self.servers.open_host(host))
        self.world.trace.record("host.up", host=host.name)

    # ---------------------------------------------------------------- services
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
        self.servers.policy_changed(host, policy)
        if self.ca is not None:
            self.outbound.policy_changed(host, policy, self.ca)

    def _make_agent(self, host: Host) -> None:
        assert self.directory is not None and self.ca is not None
        verify = self.ca.client_context(verify=True)
        security = transport_security(
            host, world=self.world, ca=self.ca, verify=verify, dns_server=self.dns_address,
            fetch=self.policy.fetcher(lambda: self.dns_address, self.name_of, verify),
            own_ip=self.hosts[host.name].ip,
            ta_certs=(next(iter(self._certificates.values()))[1],)
            if self._certificates else ())
        self.outbound.make_agent(host, directory=self.directory, ca=self.ca,
                                 dns_address=lambda: self.dns_address, security=security)

    @property
    def queues(self) -> dict[str, Queue]:
        """Host name -> its outbound queue (hosts with the outbound role)."""
        return self.outbound.queues

    @property
    def agents(self) -> dict[str, DeliveryAgent]:
        """Host name -> its outbound delivery agent."""
        return self.outbound.agents

    @property
    def policy_servers(self) -> dict[str, PolicyServer]:
        """Host name -> the MTA-STS policy server (HTTPS) running on its address."""
        return self.policy.servers

    @property
    def https_ports(self) -> dict[str, int]:
        """Host name -> the real port of its well-known HTTPS port 443 (policy server)."""
        return self.policy.ports

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

    def tls_report(self, domain: str, day: Any = None,
                   host: str | None = None) -> dict[str, Any]:
        """The TLS-RPT report (RFC 8460 §4.4) ``host``'s agent (default: the world's first
        outbound host) would send to ``domain`` for ``day`` (a :class:`datetime.date`;
        default: the virtual clock's today)."""
        from datetime import UTC, datetime

        from simsmtp.world import cast

        host = host or cast.sending_host(self.world, arg="host")
        when = day or datetime.fromtimestamp(self.world.clock.now(), UTC).date()
        report: dict[str, Any] = self.outbound.reporter(host).report(domain, when)
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
        reporter = self.outbound.reporter(host)
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
        ip, port = self.policy.where(domain)
        context = self.ca.client_context(verify=True)
        return self.run(fetch_policy(ip, port, domain, context))

    def policy_server(self, domain: str) -> PolicyServer:
        """The HTTPS server of ``domain``'s MTA-STS policy (set ``.blocked = True`` to make
        every fetch fail, as an attacker on the path would)."""
        return self.policy.server(domain)

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

    def accept(self, handler: Receiver, session: Session, envelope: Envelope, *,
               folder: str | None = None, content: bytes | None = None) -> Reply | None:
        """Store a message a server accepted: remote recipients into the outbound queue,
        local ones into their mailboxes (into ``folder``, e.g. ``"Junk"``, when given), all
        ``fsync``ed before the ``250`` (RFC 5321 §6.1). ``content`` replaces the message
        as received (e.g. DKIM-signed or with Authentication-Results on top), leaving
        ``envelope.content`` (what the trace shows crossed the wire) untouched.

        Returns None (the ``250``) or the ``451 4.3.0`` of a storage failure; either all of
        it is stored or none of it.
        """
        host = handler.host
        queue = self.queue_of(host.name)
        return store_accepted(handler, session, envelope, world=self.world, store=self.store,
                              queue=queue, kick=lambda: self.agents[host.name].kick(),
                              folder=folder, content=content)

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

    def anvil_of(self, host_name: str) -> Anvil:
        """The :class:`~simsmtp.net.listener.Anvil` of ``host_name``: what each client did
        lately at any of its services (made on first use from the host's policy; clients
        in ``relay_networks`` are exempt, as Postfix's ``$mynetworks``)."""
        return self.servers.anvil_of(host_name)

    # ---------------------------------------------------------------- using the world
    def run(self, coro: Coroutine[Any, Any, _T], timeout: float | None = 60) -> _T:
        """Run ``coro`` on the world's event loop and return its result (from any other
        thread; a ``RuntimeError`` when the world is stopped)."""
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
        self.run(self.outbound.run_due(), timeout=timeout)

    def fast_forward(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` ahead, running every retry that falls due.

        Every agent shares the world's clock, so they walk one timeline together: the clock
        jumps to the earliest retry due in any queue, every agent runs what is due then,
        and so on until ``seconds`` have passed (a retry "in 300 s" runs 300 s later,
        however many outbound hosts the world has)."""
        if seconds < 0:
            raise ValueError("time only moves forward")
        self.run(self.outbound.fast_forward(seconds), timeout=120)

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
        return self.policy.describe()

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
        return self.outbound.idle()

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


@contextlib.contextmanager
def running(world: World, **kw: Any) -> Iterator[Network]:
    """``with running(world) as net:`` (the same as ``with world.start() as net:``)."""
    net = Network(world, **kw)
    try:
        yield net.start()
    finally:
        net.stop()


__all__ = ["HostInfo", "Network", "running"]
