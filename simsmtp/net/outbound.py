"""The outbound side of a running world: each outbound host's queue and delivery agent.

:class:`Outbound` makes a :class:`~simsmtp.net.agent.DeliveryAgent` with a durable
:class:`~simsmtp.net.queue.Queue` for every host with the ``outbound`` role, with its
MTA-STS/DANE rules (:mod:`simsmtp.net.securemx`) and TLS-RPT tally; it sends the agents'
bounces where they belong, retries on the world's virtual clock (a notebook fast-forwards
four hours of retries in a second), and resumes what an earlier run left in the queues.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    from simsmtp.world.model import Host, World
    from simsmtp.world.tlsrpt import TLSReporter

    from .addresses import AddressBook
    from .agent import DeliveryAgent
    from .ca import CertificateAuthority
    from .queue import Queue
    from .runtime import HostInfo
    from .securemx import TransportSecurity

from .intake import return_path

__all__ = ["Outbound", "transport_security"]


class Outbound:
    """The queues and delivery agents of a running world (see the module docstring).

    Args:
        world: the world (its clock, ids and trace).
        hosts: host name -> where it can be reached.
        address_book: which host owns which socket.
        name_of: the world host that owns an address (a PTR lookup).
        redirects: host name -> the port its port 25 has for the agents (an attacker on
            the path), read at each connection.
    """

    def __init__(self, world: World, *, hosts: dict[str, HostInfo],
                 address_book: AddressBook, name_of: Callable[[str], str | None],
                 redirects: dict[str, int]) -> None:
        self.world = world
        self.hosts = hosts
        self.address_book = address_book
        self.name_of = name_of
        self.redirects = redirects
        #: host name -> its outbound queue, and its delivery agent.
        self.queues: dict[str, Queue] = {}
        self.agents: dict[str, DeliveryAgent] = {}
        #: The world's message store (set at boot), where local bounces go.
        self.store: Any = None

    # ------------------------------------------------------------------ making agents
    def make_agent(self, host: Host, *, directory: Path, ca: CertificateAuthority,
                   dns_address: Callable[[], tuple[str, int]],
                   security: TransportSecurity) -> DeliveryAgent:
        """The queue (under ``directory``) and the delivery agent of ``host``."""
        from .agent import DeliveryAgent
        from .channel import open_connection
        from .dns import alookup_a, alookup_mx, make_async_resolver
        from .queue import Queue

        world = self.world
        queue = Queue(directory / "queue" / host.name, trace=world.trace, host=host.name)
        self.queues[host.name] = queue
        resolver_box: list[Any] = []

        async def lookup(name: str, rtype: str) -> Any:
            if not resolver_box:
                resolver_box.append(make_async_resolver(*dns_address()))
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
        context = ca.client_context(verify=policy == "required")
        agent = self.agents[host.name] = DeliveryAgent(
            queue, hostname=host.name, resolver_lookup=lookup, connect=connect,
            tls_policy=policy, client_tls_context=context, clock=world.clock, ids=world.ids,
            bounce_sink=lambda sender, dsn: self.bounce(host, sender, dsn),
            trace=world.trace, port_of=self.port_25, self_names={host.name},
            security=security)
        return agent

    def policy_changed(self, host: Host, policy: Any, ca: CertificateAuthority) -> None:
        """``host``'s policy changed: its agent's ``outbound_tls`` changes at once."""
        agent = self.agents.get(host.name)
        if agent is not None:
            agent.tls_policy = policy.outbound_tls
            agent.client_tls_context = ca.client_context(
                verify=policy.outbound_tls == "required")

    # ------------------------------------------------------------------ what agents call
    def bounce(self, host: Host, sender: str, dsn: bytes) -> None:
        """Where the agent's bounces go: the sender's mailbox here, or back out by SMTP."""
        domain = sender.rpartition("@")[2].lower()
        if domain in self.world.local_domains(host.name):
            self.store.deliver(sender, return_path("") + dsn)
            self.world.trace.record("delivery.stored", host=host.name, recipient=sender,
                                    sender="", bounce=True)
            return
        queue = self.queues[host.name]
        qid = self.world.ids.queue_id()
        queue.enqueue("", [sender], dsn, queue_id=qid, arrival=self.world.clock.now())

    def port_25(self, name_or_ip: str) -> int | None:
        """The real port of a host's port 25 for the agents (an attacker's when one stands
        on the path), or None for a name or address outside the world."""
        info = self.hosts.get(name_or_ip.lower().rstrip("."))
        if info is None:
            owner = self.name_of(name_or_ip)
            info = self.hosts.get(owner) if owner else None
        if info is not None and info.name in self.redirects:  # an attacker on the path
            return self.redirects[info.name]
        return None if info is None else info.ports.get(25)

    # ------------------------------------------------------------------ running them
    def resume(self) -> None:
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

    async def run_due(self) -> None:
        """Let every agent deliver what is due now (on the world's loop)."""
        for agent in list(self.agents.values()):
            await agent.run_once()

    async def fast_forward(self, seconds: float) -> None:
        """Move the virtual clock ``seconds`` ahead, running every retry that falls due
        (on the world's loop; see :meth:`Network.fast_forward
        <simsmtp.net.network.Network.fast_forward>`)."""
        clock = self.world.clock
        end = clock.now() + seconds
        await self.run_due()
        again = True  # due right after a run (e.g. a bounce queued): one more run
        while True:
            now = clock.now()
            dues = [due for q in self.queues.values() if (due := q.next_due()) is not None]
            if again and any(due <= now for due in dues):
                again = False
                await self.run_due()
                continue
            later = [due for due in dues if due > now]
            if not later or min(later) > end:
                break
            clock.advance_to(min(later))
            again = True
            await self.run_due()
        clock.advance_to(end)

    def idle(self) -> bool:
        """True when no agent is running and nothing is due now."""
        now = self.world.clock.now()
        return all(not a.busy for a in self.agents.values()) and all(
            (due := q.next_due()) is None or due > now for q in self.queues.values())

    def reporter(self, host: str) -> TLSReporter:
        """The TLS-RPT tally (RFC 8460) of ``host``'s agent."""
        security = self.agents[self.world.host(host).name].security
        if security is None:
            raise ValueError(f"{host} checks neither MTA-STS nor DANE, so it keeps no TLS report")
        return security.reporter


def transport_security(host: Host, *, world: World, ca: CertificateAuthority,
                       verify: ssl.SSLContext, dns_server: tuple[str, int],
                       fetch: Callable[[str], Any], own_ip: str,
                       ta_certs: tuple[bytes, ...]) -> TransportSecurity:
    """``host``'s MTA-STS and DANE rules (RFC 8461, RFC 7672) and its TLS-RPT tally, read
    live from its policy (a notebook turns MTA-STS or DANE on for a running world).

    Args:
        host: the outbound host.
        world: the world (its signed zones are the trust anchors).
        ca: the world's certificate authority.
        verify: the client context that verifies certificates against the world's CA.
        dns_server: (ip, port) of the world's DNS server.
        fetch: ``await fetch(domain)``: an MTA-STS policy fetch
            (:meth:`~simsmtp.net.policyservers.PolicyServers.fetcher`).
        own_ip: the host's address in the world.
        ta_certs: the trust-anchor certificates (DER) DANE-TA records may name.
    """
    from simsmtp.world.tlsrpt import TLSReporter

    from .securemx import TransportSecurity

    def anchors() -> dict[str, Any]:
        # the world's trust anchors: the DS of each signed zone (what a parent would
        # publish; the world has no root to chain from)
        return {name: key.ds() for name, key in world.zone_keys().items()}

    security = TransportSecurity(
        mta_sts=host.policy.mta_sts, dane=host.policy.dane,
        dns_server=dns_server, fetch=fetch, verify_context=verify,
        dane_context=ca.client_context(verify=False), anchors=anchors,
        clock=world.clock, reporter=TLSReporter(host.name, f"postmaster@{host.domain}",
                                                sender=host.domain),
        trace=world.trace, hostname=host.name, own_ip=own_ip, ta_certs=ta_certs)
    security.settings = lambda: (host.policy.mta_sts, host.policy.dane)
    return security
