"""The world as data: a :class:`World` holds domains, users, hosts and their policies, extra
DNS records and fault rules, with its clock, ids and trace.

Everything here is a plain mutable dataclass, so a notebook can change a world live
(``world.host("mail.anotherdomain.org").down = True``) and call :meth:`World.check` to have
the change validated like a world file. The parts (:class:`Domain`, :class:`Host` ...) are
defined in :mod:`simsmtp.world.parts` and imported from here.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simsmtp.trace import Trace
from simsmtp.world.clock import IdGenerator, VirtualClock
from simsmtp.world.edits import (
    EditCount,
    WatchedDict,
    WatchedList,
    edit_count,
    watched_dict,
    watched_list,
)
from simsmtp.world.faults import FaultBook
from simsmtp.world.loader import SEED_SOURCE, parse_toml, read_text, seed_text, validate_world
from simsmtp.world.parts import (
    DEFAULT_DKIM_BITS,
    DEFAULT_TTL,
    MAILAUTH_MODES,
    NAMESERVER,
    OUTBOUND_TLS,
    ROLE_PORTS,
    ROLES,
    UNAUTH_DESTINATION,
    Domain,
    Host,
    MXRecord,
    Policy,
    PolicyWatcher,
    Record,
    User,
    bare,
)

if TYPE_CHECKING:
    # World.start's return type: the one import of a higher layer (see World.start)
    from simsmtp.net.network import Network
    from simsmtp.world.mailauth.dkim import DKIMKey

__all__ = [
    "DEFAULT_DKIM_BITS",
    "DEFAULT_TTL",
    "MAILAUTH_MODES",
    "NAMESERVER",
    "OUTBOUND_TLS",
    "ROLES",
    "ROLE_PORTS",
    "UNAUTH_DESTINATION",
    "Domain",
    "Host",
    "MXRecord",
    "Policy",
    "PolicyWatcher",
    "Record",
    "User",
    "World",
    "load_world",
    "parse_world",
    "seed_world",
]


@functools.lru_cache(maxsize=64)
def _dkim_key(bits: int, seed: str) -> DKIMKey:
    """A seeded DKIM key, made once per process (worlds booted again reuse it)."""
    from simsmtp.world.mailauth.dkim import generate_key

    return generate_key(bits, seed=seed)


@functools.lru_cache(maxsize=64)
def _dkim_key_record(bits: int, seed: str) -> str:
    """The key record of :func:`_dkim_key` (kept: DNS asks for it on every query, and
    reading the key back costs milliseconds)."""
    return _dkim_key(bits, seed).txt_record()


def _reverse_zone(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    if ip.version == 4:
        return f"{str(ip).split('.')[0]}.in-addr.arpa"
    return "ip6.arpa"


#: World fields that dns_records() reads: assigning one counts as an edit of the world.
_DNS_FIELDS = frozenset({"domains", "records", "nameserver", "epoch", "seed"})


@dataclass(eq=False)
class World:
    """A whole world: domains, hosts, DNS records, fault rules, clock, ids and trace.

    Build one with :meth:`load`, :meth:`from_toml` or :meth:`seed_world`; boot it with
    :meth:`start`.
    """

    name: str
    seed: int
    epoch: datetime
    domains: dict[str, Domain] = field(default_factory=dict)
    hosts: dict[str, Host] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    faults: FaultBook = field(default_factory=FaultBook)
    source: str = "<world>"
    nameserver: str = NAMESERVER
    clock: VirtualClock = field(init=False, repr=False)
    ids: IdGenerator = field(init=False, repr=False)
    trace: Trace = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # What the constructor was given becomes watched copies, whose edit counts pass
        # their edits to the world's own (see EditCount and dns_version).
        object.__setattr__(self, "domains", watched_dict(self.domains))
        object.__setattr__(self, "records", watched_list(self.records))
        self._link_parts()
        self.clock = VirtualClock(self.epoch)
        self.ids = IdGenerator(self.seed, self.clock)
        self.trace = Trace(clock=lambda: self.clock.elapsed)
        if self.faults.trace is None:
            self.faults.trace = self.trace

    def __setattr__(self, name: str, value: Any) -> None:
        edits = self.__dict__.get("_edits")
        if edits is None or name not in _DNS_FIELDS:  # the constructor's, or no DNS data
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        if old is not value:
            if (count := edit_count(old)) is not None:
                count.unlink(edits)
            if (count := edit_count(value)) is not None:
                count.link(edits)
        edits.edited()

    def _link_parts(self) -> None:
        """A fresh edit count for the world, linked to those of its domains and records."""
        edits = EditCount()
        self.__dict__["_edits"] = edits
        for part in (self.__dict__.get("domains"), self.__dict__.get("records")):
            if (count := edit_count(part)) is not None:
                count.link(edits)

    @property
    def version(self) -> int:
        """How many edits of the world's DNS data this world has seen: assignments to its
        ``domains``, ``records``, ``nameserver``, ``epoch`` or ``seed``, changes to those
        containers, and every edit of a domain it holds (a field or its ``mx`` list). It
        only grows; plain lists and dicts assigned after construction cannot count their
        own edits (:meth:`dns_version` compares those by content)."""
        edits: EditCount = self.__dict__["_edits"]
        return edits.count

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def load(cls, path: str | Path, *, seed: int | None = None) -> World:
        """Load a world file (raises :class:`~simsmtp.world.loader.WorldFileError`);
        ``seed`` overrides the file's seed."""
        return parse_toml(read_text(path), str(path), seed=seed, make=cls)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>", *,
                  seed: int | None = None) -> World:
        """Build a world from TOML text; ``source`` names it in error messages."""
        return parse_toml(text, source, seed=seed, make=cls)

    @classmethod
    def seed_world(cls, seed: int | None = None) -> World:
        """The seed world "Alice writes to Bob" (``seed`` overrides the file's seed)."""
        return parse_toml(seed_text(), SEED_SOURCE, seed=seed, make=cls)

    def check(self) -> None:
        """Validate the world as it is now (after live edits), like a world file."""
        validate_world(self)

    def start(self, **kw: Any) -> Network:
        """Boot the world on loopback and return the running network.

        ``net = world.start()`` in a notebook (``net.stop()`` at the end, or it stops at
        exit), or ``with world.start() as net:``, which stops it when the block ends.
        Keyword arguments go to :class:`~simsmtp.net.network.Network`.

        This is the world layer's one import of a higher layer, on purpose: ``world.start()``
        is the learner's one-line entry into a running world. The import happens here, when
        the world boots (and under ``TYPE_CHECKING`` for the return type), so importing
        :mod:`simsmtp.world` loads no sockets, threads or event loops. It is the one
        documented exception in pyproject.toml's import contracts (and the circle
        check of tests/test_layers.py).
        """
        from simsmtp.net.network import Network
        return Network(self, **kw).start()

    # -- looking things up ------------------------------------------------------------------

    def user(self, address: str) -> User | None:
        """The user with this address: domain case-insensitive, local part exactly as given."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at:
            return None
        found = self.domains.get(bare(domain))
        return None if found is None else found.users.get(local)

    def users(self) -> list[User]:
        """Every user of every domain."""
        return [u for d in self.domains.values() for u in d.users.values()]

    def host(self, name: str) -> Host:
        """The host called ``name`` (case-insensitive); ``KeyError`` says what exists."""
        try:
            return self.hosts[bare(name)]
        except KeyError:
            close = get_close_matches(bare(name), self.hosts, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no host {name!r} in world {self.name!r}{hint}") from None

    def domain(self, name: str) -> Domain:
        """The domain called ``name`` (case-insensitive, a final dot allowed); ``KeyError``
        says what exists."""
        try:
            return self.domains[bare(name)]
        except KeyError:
            close = get_close_matches(bare(name), self.domains, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else \
                f"; it has {', '.join(self.domains) or 'none'}"
            raise KeyError(f"no domain {name!r} in world {self.name!r}{hint}") from None

    def hosts_with_role(self, role: str) -> list[Host]:
        """The hosts that have ``role``, in the order of the world file."""
        return [h for h in self.hosts.values() if role in h.roles]

    def local_domains(self, host: Host | str) -> list[str]:
        """The domains whose mail ``host`` keeps: its own domain and those whose MX names it."""
        h = self.host(host) if isinstance(host, str) else host
        found = {d.name for d in self.domains.values()
                 if d.name == h.domain or any(bare(r.exchange) == h.name for r in d.mx)}
        return sorted(found)

    def keeps_mail_for(self, host: Host | str, domain: str) -> bool:
        """Whether ``host`` keeps the mail of ``domain`` (one domain of
        :meth:`local_domains`, found without scanning them all)."""
        h = self.host(host) if isinstance(host, str) else host
        d = self.domains.get(bare(domain))
        return d is not None and (d.name == h.domain
                                  or any(bare(r.exchange) == h.name for r in d.mx))

    # -- email authentication ----------------------------------------------------------------

    def dkim_key(self, domain: str) -> DKIMKey | None:
        """The DKIM key of ``domain`` (None when it has no ``dkim_selector``).

        The key is made from the world's seed, the domain and the selector, so a world
        signs the same way run after run (a notebook validated with nbval); it is made on
        first use and kept for the rest of the process. Such keys are for the simulator
        only: anyone who knows the seed can sign.
        """
        found = self.domains.get(bare(domain))
        if found is None or not found.dkim_selector:
            return None
        return _dkim_key(found.dkim_bits, self._dkim_seed(found))

    def _dkim_seed(self, domain: Domain) -> str:
        return f"simsmtp world {self.seed} {domain.name} {domain.dkim_selector}"

    def auth_records(self, domain: Domain) -> list[Record]:
        """The email-authentication TXT records ``domain`` publishes: SPF at the domain
        (RFC 7208 §3), the DKIM key at ``<selector>._domainkey`` (RFC 6376 §3.6.2.1) and
        DMARC at ``_dmarc`` (RFC 7489 §6.1)."""
        from simsmtp.world.mailauth.lookup import txt_presentation

        out: list[Record] = []
        if domain.spf is not None:
            out.append(Record(domain.name, "TXT", txt_presentation(domain.spf)))
        name = domain.dkim_name()
        if name is not None:
            seed = self._dkim_seed(domain)
            out.append(Record(name, "TXT",
                              txt_presentation(_dkim_key_record(domain.dkim_bits, seed))))
        if domain.dmarc is not None:
            out.append(Record(f"_dmarc.{domain.name}", "TXT", txt_presentation(domain.dmarc)))
        return out

    # -- DNS ----------------------------------------------------------------------------------

    def dns_state(self) -> tuple[Any, ...]:
        """A cheap fingerprint of everything :meth:`dns_records` depends on (but the
        addresses): equal fingerprints mean equal records, so a running network rebuilds its
        zones only after a real edit (a notebook changing an MX, a DMARC policy ...)."""
        return (self.nameserver, self.epoch, self.seed, tuple(self.records),
                tuple((d.name, tuple(d.mx), d.null_mx, d.spf, d.dmarc, d.dkim_selector,
                       d.dkim_bits, d.mta_sts, d.mta_sts_max_age, d.dnssec, tuple(d.tlsa),
                       d.tls_rpt) for d in self.domains.values()))

    def dns_version(self) -> tuple[Any, ...]:
        """A token that changes whenever :meth:`dns_state` may have changed, in O(1).

        Equal tokens from one world mean nothing :meth:`dns_records` depends on was
        edited in between: every change to ``domains``, ``records``, a domain's ``mx`` list
        or fields, or the world's ``nameserver``/``epoch``/``seed`` grows the world's own
        :attr:`version`. Lists and dicts assigned as plain ones after construction cannot
        count their own edits; they are compared by content here (cheap: a notebook assigns
        a few). A changed token does not prove a change: compare :meth:`dns_state` then.
        Tokens of two different worlds are not comparable.
        """
        domains, records = self.domains, self.records
        if not isinstance(domains, WatchedDict):
            return ("unwatched", self.dns_state())
        edits: EditCount = self.__dict__["_edits"]
        loose = edits.loose
        plain_mx = tuple(tuple(d.mx) for d in list(loose.values())) if loose else ()
        plain_records = None if isinstance(records, WatchedList) else tuple(records)
        return (edits.count, plain_mx, plain_records)

    # -- transport security: MTA-STS, DANE, TLS-RPT --------------------------------------------

    def policy_server(self, domain: str) -> str | None:
        """The world host that serves ``domain``'s MTA-STS policy (as
        ``mta-sts.<domain>``): its first MX host that is in the world, or None."""
        found = self.domains.get(bare(domain))
        if found is None or found.mta_sts is None:
            return None
        for record in sorted(found.mx, key=lambda r: r.preference):
            host = self.hosts.get(bare(record.exchange))
            if host is not None and host.has_role("mx"):
                return host.name
        return None

    def zone_keys(self) -> dict[str, Any]:
        """The signing key (:class:`~simsmtp.world.dnssec.ZoneKey`) of every domain with
        ``dnssec = true``, made from the world's seed."""
        signed = [d.name for d in self.domains.values() if d.dnssec]
        if not signed:
            return {}
        from simsmtp.world.dnssec import ZoneKey

        return {name: ZoneKey.from_seed(str(self.seed), name) for name in signed}

    def transport_records(self, domain: Domain, addresses: Mapping[str, Any],
                          certificates: Mapping[str, tuple[bytes, bytes]]) -> list[Record]:
        """What ``domain`` publishes for transport security: the ``_mta-sts`` TXT record and
        the address of ``mta-sts.<domain>`` (RFC 8461 §3), ``_smtp._tls`` (RFC 8460 §3) and
        the TLSA records of its MX hosts (RFC 7672 §3.1; only for hosts whose certificate
        is in ``certificates``: host name -> (leaf DER, CA DER))."""
        from simsmtp.world.mailauth.lookup import txt_presentation

        out: list[Record] = []
        ident = domain.sts_id()
        if ident is not None:
            from simsmtp.world.mtasts import policy_host, record_name, render_record

            out.append(Record(record_name(domain.name), "TXT",
                              txt_presentation(render_record(ident))))
            server = self.policy_server(domain.name)
            if server is not None and server in addresses:
                ip = addresses[server]
                out.append(Record(policy_host(domain.name), "A" if ip.version == 4 else "AAAA",
                                  str(ip)))
        if domain.tls_rpt is not None:
            from simsmtp.world.tlsrpt import record_name as rpt_name
            from simsmtp.world.tlsrpt import render_record as rpt_record

            out.append(Record(rpt_name(domain.name), "TXT",
                              txt_presentation(rpt_record(domain.tls_rpt))))
        if domain.tlsa:
            from simsmtp.world.dnssec import tlsa_name, tlsa_value

            for mx in dict.fromkeys(bare(r.exchange) for r in domain.mx):
                if mx not in certificates:
                    continue
                leaf, ca = certificates[mx]
                for triple in domain.tlsa:
                    usage, selector, mtype = (int(x) for x in triple.split())
                    out.append(Record(tlsa_name(mx), "TLSA", tlsa_value(
                        ca if usage in (0, 2) else leaf, usage, selector, mtype)))
        return out

    def dns_records(self, addresses: Mapping[str, str],
                    certificates: Mapping[str, tuple[bytes, bytes]] | None = None
                    ) -> list[Record]:
        """Every record of every zone, given the addresses the network assigned.

        Args:
            addresses: host name -> IP for the hosts that have one, including
                :attr:`nameserver`.
            certificates: host name -> (its certificate, the CA's), both DER, for the
                TLSA records of domains that publish them (none without).

        Returns:
            per zone: SOA, NS, MX (or ``0 .`` for a null MX), A/AAAA of the names in it and
            the extra records in it; then the reverse zones with their PTR records
            (RFC 1035 §3.5); then whatever lies outside every zone.
        """
        ns = bare(self.nameserver)
        addrs = {bare(name): ipaddress.ip_address(ip) for name, ip in addresses.items()}
        zones = list(self.domains)  # in the order of the world file
        ns_zone = ns.partition(".")[2] or ns
        if not any(ns == z or ns.endswith("." + z) for z in zones):
            zones.append(ns_zone)
        serial = int(self.epoch.strftime("%Y%m%d")) * 100 + 1  # RFC 1912 §2.2 date serial
        zone_set = set(zones)

        def zone_of(name: str) -> str | None:
            # Zone cuts: a name belongs to the longest zone it ends with (walk its labels).
            labels = name.split(".")
            return next((z for i in range(len(labels))
                         if (z := ".".join(labels[i:])) in zone_set), None)

        def soa_ns(zone: str) -> list[Record]:
            # SOA fields: refresh 3600, retry 900, expire 604800, negative TTL 300 (RFC 2308).
            return [Record(zone, "SOA", f"{ns}. hostmaster.{zone}. {serial} 3600 900 604800 300"),
                    Record(zone, "NS", f"{ns}.")]

        # Group the addresses and the extra records by zone once (None: outside every zone).
        hosts_in: dict[str | None, list[Record]] = {}
        for n, ip in sorted(addrs.items()):
            hosts_in.setdefault(zone_of(n), []).append(
                Record(n, "A" if ip.version == 4 else "AAAA", str(ip)))
        extra_in: dict[str | None, list[Record]] = {}
        for r in self.records:
            extra_in.setdefault(zone_of(r.name), []).append(r)
        # Transport security records after everything else of their zone, so a world that
        # publishes none lists its records exactly as before.
        secure_in: dict[str | None, list[Record]] = {}
        for d in self.domains.values():
            for r in self.transport_records(d, addrs, certificates or {}):
                secure_in.setdefault(zone_of(r.name), []).append(r)

        out: list[Record] = []
        for zone in zones:
            out += soa_ns(zone)
            domain = self.domains.get(zone)
            if domain is not None:
                out += [Record(zone, "MX", f"{r.preference} {bare(r.exchange)}.")
                        for r in domain.mx_records()]
                out += self.auth_records(domain)
            out += hosts_in.get(zone, [])
            out += extra_in.get(zone, [])
            out += secure_in.get(zone, [])
        reverse: dict[str, list[tuple[Any, str]]] = {}
        for n, ip in addrs.items():
            reverse.setdefault(_reverse_zone(ip), []).append((ip, n))
        for zone in sorted(reverse):
            out += soa_ns(zone)
            out += [Record(ip.reverse_pointer, "PTR", f"{n}.")
                    for ip, n in sorted(reverse[zone], key=lambda item: (int(item[0]), item[1]))]
        out += hosts_in.get(None, [])
        out += extra_in.get(None, [])
        out += secure_in.get(None, [])
        return out

    def __repr__(self) -> str:
        return (f"World({self.name!r}, seed={self.seed}, domains={sorted(self.domains)}, "
                f"hosts={list(self.hosts)}, faults={len(self.faults)})")

    def summary(self) -> str:
        """A few lines describing the world, for a notebook."""
        lines = [f"World {self.name!r} (seed {self.seed}, epoch {self.epoch.isoformat()}, "
                 f"from {self.source})"]
        for d in self.domains.values():
            mx = "null MX" if d.null_mx else (", ".join(
                f"{r.exchange} ({r.preference})" for r in d.mx) or "implicit MX")
            users = ", ".join(d.users) or "no users"
            lines.append(f"  domain {d.name}: {mx}; users: {users}")
        for h in self.hosts.values():
            state = " [DOWN]" if h.down else ""
            lines.append(f"  host {h.name} ({h.domain}): {', '.join(h.roles)}{state}")
        if len(self.faults):
            lines += [f"  fault {rule}" for rule in self.faults]
        return "\n".join(lines)


def parse_world(text: str, source: str = "<string>", *, seed: int | None = None) -> World:
    """Build a :class:`World` from TOML text (:meth:`World.from_toml`).

    Raises:
        WorldFileError: a TOML syntax error (with line and column) or a wrong value.
    """
    return World.from_toml(text, source, seed=seed)


def load_world(path: str | Path, *, seed: int | None = None) -> World:
    """Load a world file (:meth:`World.load`).

    Raises:
        WorldFileError: for a file that is not UTF-8, not TOML or not a valid world.
        OSError: when the file cannot be read.
    """
    return World.load(path, seed=seed)


def seed_world(seed: int | None = None) -> World:
    """The seed world shipped with simsmtp ("Alice writes to Bob"): :meth:`World.seed_world`."""
    return World.seed_world(seed)
