"""The MTA-STS policy servers of a running world, and fetching a policy from them.

A domain that publishes MTA-STS gets an HTTPS policy server (:mod:`simsmtp.net.https`) on
the address of the host its world names (:meth:`World.policy_server
<simsmtp.world.model.World.policy_server>`), as ``mta-sts.<domain>`` on the well-known
HTTPS port 443, mapped to an ephemeral one (RFC 8461 §3.3). :class:`PolicyServers` starts
and stops them and fetches a policy the way a sending MTA does: it resolves
``mta-sts.<domain>`` in the world's DNS, then asks over HTTPS with the world's CA.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

    from simsmtp.world.model import World

    from .addresses import AddressBook
    from .ca import CertificateAuthority
    from .https import FetchResult, PolicyServer
    from .runtime import HostInfo

__all__ = ["HTTPS_PORT", "PolicyServers"]

#: The MTA-STS policy server's well-known port (HTTPS, RFC 8461 §3.3, RFC 9110 §4.2.2).
HTTPS_PORT = 443


class PolicyServers:
    """The HTTPS policy servers of a running world (see the module docstring).

    Args:
        world: the world (its domains and their policies, read live).
        hosts: host name -> where it can be reached.
        address_book: which host owns which socket.
    """

    def __init__(self, world: World, *, hosts: dict[str, HostInfo],
                 address_book: AddressBook) -> None:
        self.world = world
        self.hosts = hosts
        self.address_book = address_book
        #: host name -> the policy server running on its address.
        self.servers: dict[str, PolicyServer] = {}
        #: host name -> the real port of its well-known HTTPS port 443.
        self.ports: dict[str, int] = {}

    def domains(self, host_name: str) -> list[str]:
        """The domains whose policy ``host_name`` serves."""
        return [d for d in self.world.domains if self.world.policy_server(d) == host_name]

    async def start(self, ca: CertificateAuthority) -> None:
        """An HTTPS policy server on the address of each host that serves a domain's
        MTA-STS policy (as ``mta-sts.<domain>``, RFC 8461 §3.3)."""
        from simsmtp.world.mtasts import policy_host, render_policy

        from .https import PolicyServer

        world = self.world
        for host_name in dict.fromkeys(filter(None, map(world.policy_server, world.domains))):
            names = [policy_host(d) for d in self.domains(host_name)]
            ca.issue(names)

            def text(domain: str, host_name: str = host_name) -> str | None:
                found = world.domains.get(domain)
                if found is None or world.policy_server(domain) != host_name:
                    return None
                policy = found.sts_policy()
                return None if policy is None else render_policy(policy)

            context = ca.server_context(names[0])
            info = self.hosts[host_name]
            server = PolicyServer(text, context, info.bind_ip, trace=world.trace,
                                  name=names[0])
            self.servers[host_name] = await server.start()
            self.ports[host_name] = server.address[1]
            self.address_book.listening(server.address, info.ip)

    async def close(self) -> None:
        """Stop every policy server (the world stops)."""
        for server in self.servers.values():
            with contextlib.suppress(Exception):
                await server.close()

    def fetcher(self, dns_address: Callable[[], tuple[str, int]],
                name_of: Callable[[str], str | None], verify: ssl.SSLContext,
                ) -> Callable[[str], Any]:
        """How a sending MTA fetches a domain's policy: ``await fetch(domain)`` resolves
        ``mta-sts.<domain>`` at the world's DNS server (``dns_address()``), finds the
        policy server at that address and asks it over HTTPS (``verify``); a
        :class:`~simsmtp.net.https.FetchResult`."""

        async def fetch(domain: str) -> FetchResult:
            import dns.asyncquery
            import dns.message

            from simsmtp.world.mtasts import policy_host

            from .https import FetchResult, fetch_policy

            name = policy_host(domain)
            query = dns.message.make_query(name, "A")
            server = dns_address()
            try:
                answer, _ = await dns.asyncquery.udp_with_fallback(
                    query, server[0], port=server[1], timeout=3.0)
                ip = next(str(rd) for r in answer.answer for rd in r if r.rdtype == 1)
            except Exception:
                return FetchResult(None, f"{name} does not resolve")
            owner = name_of(ip)
            port = self.ports.get(owner) if owner else None
            if port is None:
                return FetchResult(None, f"connect to {name}[{ip}]:443: Connection refused")
            return await fetch_policy(*self.address_book.transport((ip, port)), domain,
                                      verify)

        return fetch

    def where(self, domain: str) -> tuple[str, int]:
        """(ip, real port) of ``domain``'s policy server, where to connect.

        Raises:
            KeyError: the domain publishes no MTA-STS policy in this world.
        """
        server = self.world.policy_server(domain)
        if server is None or server not in self.ports:
            raise KeyError(f"{domain} publishes no MTA-STS policy in this world")
        return self.hosts[server].bind_ip, self.ports[server]

    def server(self, domain: str) -> PolicyServer:
        """The HTTPS server of ``domain``'s MTA-STS policy."""
        return self.servers[self.world.policy_server(domain) or ""]

    def describe(self) -> dict[str, dict[str, Any]]:
        """``mta-sts.<domain>`` -> ``{"ip", "port", "url"}`` of every policy server."""
        from simsmtp.world.mtasts import policy_host, policy_url

        found: dict[str, dict[str, Any]] = {}
        for domain in self.world.domains:
            server = self.world.policy_server(domain)
            if server is not None and server in self.ports:
                found[policy_host(domain)] = {"ip": self.hosts[server].bind_ip,
                                              "port": self.ports[server],
                                              "url": policy_url(domain)}
        return found
