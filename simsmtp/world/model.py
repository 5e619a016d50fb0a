"""The world as data: domains, users, hosts and their policies, extra DNS records.

Everything here is a plain mutable dataclass, so a notebook can change a world live
(``world.host("mail.anotherdomain.org").down = True``) and call :meth:`World.check` to have
the change validated like a world file.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.server import ServerConfig as _SMTPD
from simsmtp.trace import Trace
from simsmtp.world.clock import IdGenerator, VirtualClock
from simsmtp.world.faults import FaultBook

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.world.mailauth.dkim import DKIMKey

#: Host roles and the well-known ports they listen on (names in the world; the network maps
#: them to real ephemeral ports). "outbound" is the delivery agent, "client" only connects.
ROLE_PORTS: dict[str, tuple[int, ...]] = {
    "client": (),
    "mx": (25,),              # RFC 5321 §4.5.4 (port 25 inbound relay)
    "outbound": (),
    # the retrieval role: POP3 (RFC 1939 §3, STLS: RFC 2595 §4), POP3S (RFC 8314 §3.3),
    # IMAP (RFC 9051 §1: 143, STARTTLS) and IMAPS (RFC 8314 §3.3: 993)
    "pop3": (110, 995, 143, 993),
    "submission": (587, 465),  # RFC 6409 §3.1 (587), RFC 8314 §3.3 (465, implicit TLS)
}
ROLES = tuple(sorted(ROLE_PORTS))

#: How the outbound agent uses STARTTLS (RFC 3207): never, when offered, or insist on it.
OUTBOUND_TLS = ("none", "opportunistic", "required")

#: The name of the world's DNS server (RFC 2606 reserves .test for this kind of use).
NAMESERVER = "ns.simsmtp.test"

DEFAULT_TTL = 3600

#: What a receiving MX does with SPF/DKIM/DMARC (RFC 7489 §6.7 lets a receiver's local
#: policy override the domain's): act on the DMARC disposition, only add the
#: Authentication-Results header, or skip the checks.
MAILAUTH_MODES = ("enforce", "report", "off")

#: What an MX answers to an unauthorised relay attempt, by Postfix's restriction names:
#: ``defer_unauth_destination`` (454 4.7.1, Postfix's default since 2.10) or
#: ``reject_unauth_destination`` (554 5.7.1).
UNAUTH_DESTINATION = ("defer", "reject")

#: Default DKIM key size. RFC 8301 §3.2 allows 1024 bits (2048 advised); a seeded 2048-bit
#: key costs 0.5-1.2 s of pure-Python prime search, a seeded 1024-bit key about 0.05-0.1 s.
DEFAULT_DKIM_BITS = 1024

# -- noticing edits cheaply ----------------------------------------------------------------
# A running world asks "did the DNS data change?" before every DNS answer; with 1,000
# domains, comparing their whole state each time costs more than the answer. So each part
# that holds DNS data (a World, its ``domains`` dict and ``records`` list, a Domain and its
# ``mx`` list) has an EditCount that counts its edits and passes each one up to the counts
# of the parts that hold it: a domain's MX edit reaches its world's count, and
# World.dns_version() is O(1). Nothing is shared between worlds. A plain list a notebook
# assigns later (``domain.mx = [...]``) is kept as it is (the same object) and compared by
# content instead, so in-place edits of it are seen too.


class EditCount:
    """How many edits one part of a world has seen, its own and those of the parts it holds.

    ``count`` grows by one per edit. A part held by another (a domain in a world's
    ``domains``) is linked up to the holder's count, which then counts the part's edits too;
    ``loose`` lists the domains below whose ``mx`` is a plain list (compared by content).
    Copies and pickles start with a fresh, unlinked count.
    """

    __slots__ = ("_ups", "count", "loose")

    def __init__(self) -> None:
        self.count = 0
        self.loose: dict[EditCount, Domain] = {}
        self._ups: list[EditCount] = []

    def __reduce__(self) -> tuple[type[EditCount], tuple[()]]:
        return (EditCount, ())

    def edited(self) -> None:
        """Count one edit here and in every part that holds this one."""
        self.count += 1
        for up in self._ups:
            up.edited()

    def link(self, up: EditCount) -> None:
        """Pass this part's edits (and loose domains) to ``up`` from now on."""
        if up is self or any(u is up for u in self._ups):
            return
        self._ups.append(up)
        if self.loose:
            up._loosen(dict(self.loose))

    def unlink(self, up: EditCount) -> None:
        """Stop passing edits to ``up`` (the part left its holder)."""
        for i, u in enumerate(self._ups):
            if u is up:
                del self._ups[i]
                if self.loose:
                    up._tighten(list(self.loose))
                return

    def mark_loose(self, domain: Domain, loose: bool) -> None:
        """Note whether ``domain`` (whose count this is) has a plain ``mx`` list."""
        if loose and self not in self.loose:
            self._loosen({self: domain})
        elif not loose and self in self.loose:
            self._tighten([self])

    def _loosen(self, items: dict[EditCount, Domain]) -> None:
        self.loose.update(items)
        for up in self._ups:
            up._loosen(items)

    def _tighten(self, keys: list[EditCount]) -> None:
        for key in keys:
            self.loose.pop(key, None)
        for up in self._ups:
            up._tighten(keys)


def _counts(value: Any) -> EditCount | None:
    """The edit count of a watched container or a Domain, else None."""
    count = getattr(value, "_edits", None)
    return count if isinstance(count, EditCount) else None


class _WatchedList(list[Any]):
    """A list that counts every change in its own :class:`EditCount`; otherwise a plain
    list (copies and pickles are fresh watched lists)."""

    __slots__ = ("_edits",)

    def __init__(self, *args: Any) -> None:
        self._edits = EditCount()
        super().__init__(*args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_WatchedList, (list(self),))


def _count_edits(cls: type, base: type, names: tuple[str, ...]) -> None:
    """Make the methods ``names`` of ``base`` (every one that changes the container) count
    an edit in ``cls`` after they ran."""
    for name in names:
        method = getattr(base, name)

        @functools.wraps(method)
        def edit(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            result = _method(self, *args, **kwargs)
            self._edits.edited()
            return result

        setattr(cls, name, edit)


_count_edits(_WatchedList, list, ("__setitem__", "__delitem__", "__iadd__", "__imul__",
                                  "append", "extend", "insert", "remove", "pop", "clear",
                                  "sort", "reverse"))


class _WatchedDict(dict[Any, Any]):
    """A dict that counts every change in its own :class:`EditCount` and links the counts
    of the domains it holds to it; otherwise a plain dict (copies and pickles are fresh
    watched dicts)."""

    __slots__ = ("_edits",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._edits = EditCount()
        super().__init__(*args, **kwargs)
        self._adopt(self.values())

    def __reduce__(self) -> tuple[Any, ...]:
        return (_WatchedDict, (dict(self),))

    def _adopt(self, values: Any) -> None:
        for value in values:
            if (count := _counts(value)) is not None:
                count.link(self._edits)

    def _release(self, values: Any) -> None:
        kept: set[int] | None = None  # the values still held (one may be under two keys)
        for value in values:
            count = _counts(value)
            if count is None:
                continue
            if kept is None:
                kept = {id(v) for v in self.values()}
            if id(value) not in kept:
                count.unlink(self._edits)

    def _changed(self, added: Any = (), removed: Any = ()) -> None:
        self._release(removed)
        self._adopt(added)
        self._edits.edited()

    def __setitem__(self, key: Any, value: Any) -> None:
        old = self.get(key)
        super().__setitem__(key, value)
        self._changed((value,), () if old is None or old is value else (old,))

    def __delitem__(self, key: Any) -> None:
        old = self[key]
        super().__delitem__(key)
        self._changed(removed=(old,))

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self.update(other)
        return self

    def pop(self, key: Any, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self._changed(removed=(value,))
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self._changed(removed=(item[1],))
        return item

    def clear(self) -> None:
        old = list(self.values())
        super().clear()
        self._changed(removed=old)

    def update(self, *args: Any, **kwargs: Any) -> None:
        old = list(self.values())
        super().update(*args, **kwargs)
        self._changed(self.values(), old)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        had = key in self
        value = super().setdefault(key, default)
        if not had:
            self._changed((value,))
        return value


def _watched_list(value: Any) -> Any:
    """A watched copy of a plain list (what a constructor was given), else ``value``."""
    return _WatchedList(value) if type(value) is list else value


def _watched_dict(value: Any) -> Any:
    """A watched copy of a plain dict (what a constructor was given), else ``value``."""
    return _WatchedDict(value) if type(value) is dict else value


@dataclass
class Policy:
    """How a host behaves. Every field has the default a world file may omit.

    Attributes:
        size_limit: largest message in bytes, announced as ``SIZE`` (RFC 1870); 0 = none.
        starttls: offer STARTTLS (RFC 3207) / STLS (RFC 2595).
        tls_required_inbound: refuse MAIL before STARTTLS (530 5.7.0, RFC 3207 §4); never
            for an "mx" host, which must accept plaintext mail.
        auth_plaintext: allow AUTH PLAIN/LOGIN before TLS (RFC 4954 §4 says do not).
        relay_networks: CIDR networks allowed to relay without AUTH (Postfix mynetworks).
        outbound_tls: the outbound agent's STARTTLS use: "none", "opportunistic", "required".
        max_recipients: RCPTs accepted per message; at least 100 (RFC 5321 §4.5.3.1.8).
        persona: whose reply texts to imitate ("postfix").
        idle_timeout: seconds of silence before the server hangs up (RFC 5321 §4.5.3.2.7:
            at least 5 minutes).
        smtputf8: offer SMTPUTF8 (RFC 6531).
        pop3_plaintext: allow POP3 USER/PASS before STLS.
        mailauth: what an "mx" host does with SPF, DKIM and DMARC: "enforce" (add
            Authentication-Results and act on the DMARC disposition: 550 or Junk),
            "report" (add the header only) or "off".
        min_data_rate: octets per second a client must keep up while sending a message
            (Postfix ``smtpd_min_data_rate``).
        max_connections: simultaneous connections to one service (Postfix
            ``default_process_limit``).
        max_per_client: simultaneous connections from one client address (Postfix
            ``smtpd_client_connection_count_limit``).
        hard_error_limit: errors before ``421 4.7.0 ... too many errors`` (Postfix
            ``smtpd_hard_error_limit``; RFC 5321 §3.8 forbids closing on the first one).
        soft_error_limit: errors after which every reply is delayed by
            ``error_sleep_time`` seconds (Postfix ``smtpd_soft_error_limit``).
        error_sleep_time: that delay in seconds.
        junk_command_limit: NOOP/VRFY/ETRN/RSET allowed before each counts as an error.
        auth_failure_limit: failed AUTH attempts before ``421`` and close.
        disable_vrfy_command: Postfix's ``disable_vrfy_command`` (default no): when true,
            VRFY gets ``502 5.5.1 VRFY command is disabled`` and is not listed in EHLO;
            when false, VRFY answers ``252`` for a user who exists and ``550 5.1.1`` for one
            who does not, which lets anyone harvest addresses (RFC 5321 §7.3).
        unauth_destination: what an unauthorised relay attempt gets: ``"defer"`` (Postfix's
            default ``defer_unauth_destination``: ``454 4.7.1``, a safety net against
            configuration mistakes) or ``"reject"`` (``reject_unauth_destination`` of
            production configurations: ``554 5.7.1``).
        mailauth_timeout: seconds the SPF, DKIM and DMARC checks of one message (and the
            DKIM signing on submission) may take, beside the event loop; past it the
            answer is ``451 4.7.1`` and the results are ``temperror``.
        reject_sender_login_mismatch: on submission, refuse an envelope sender or a
            ``From:`` address the logged-in user does not own (Postfix
            ``reject_sender_login_mismatch``); false lets a user send as anyone, as a
            careless provider does.
        max_connection_rate: new connections one client address may open per
            ``anvil_rate_time_unit`` (Postfix ``smtpd_client_connection_rate_limit``;
            0 = no limit).
        max_auth_failure_rate: failed AUTH attempts one client address may make per
            ``anvil_rate_time_unit``, across its connections, before it is cut off with
            ``421 4.7.0`` (Postfix ``smtpd_client_auth_rate_limit``-like; 0 = no limit).
        anvil_rate_time_unit: the window of those rates in seconds (Postfix's 60 s).
        stress_idle_timeout: the idle timeout while a service is near its connection limit
            (Postfix ``smtpd_timeout = ${stress?{10}:{300}}s``).
        mta_sts: the outbound agent applies the MTA-STS policies of the domains it sends to
            (RFC 8461). Off by default: Postfix does not do MTA-STS by itself (it needs an
            external policy resolver such as postfix-mta-sts-resolver).
        dane: the outbound agent validates DNSSEC and applies the TLSA records of MX hosts
            (RFC 7672). Off by default, as in Postfix (``smtp_tls_security_level = dane`` is
            opt-in).
    """

    # The limits the SMTP server also has take its defaults (Postfix's), stated once there.
    size_limit: int = _SMTPD.size_limit
    starttls: bool = True
    tls_required_inbound: bool = False
    auth_plaintext: bool = False
    relay_networks: list[str] = field(default_factory=list)
    outbound_tls: str = "opportunistic"
    max_recipients: int = _SMTPD.max_recipients
    persona: str = "postfix"
    idle_timeout: float = 300.0
    smtputf8: bool = _SMTPD.smtputf8
    pop3_plaintext: bool = False
    mailauth: str = "enforce"
    min_data_rate: float = 500.0
    max_connections: int = 100
    max_per_client: int = 50
    hard_error_limit: int = _SMTPD.hard_error_limit
    soft_error_limit: int = _SMTPD.soft_error_limit
    error_sleep_time: float = _SMTPD.error_sleep_time
    junk_command_limit: int = _SMTPD.junk_command_limit
    auth_failure_limit: int = _SMTPD.auth_failure_limit
    disable_vrfy_command: bool = _SMTPD.disable_vrfy_command
    unauth_destination: str = "defer"
    mailauth_timeout: float = 30.0
    reject_sender_login_mismatch: bool = True
    max_connection_rate: int = 0
    max_auth_failure_rate: int = 10
    anvil_rate_time_unit: float = 60.0
    stress_idle_timeout: float = 10.0
    mta_sts: bool = False
    dane: bool = False

    def may_relay(self, address: str) -> bool:
        """Whether a client at ``address`` is in :attr:`relay_networks`."""
        ip = ipaddress.ip_address(address)
        return any(ip in ipaddress.ip_network(net, strict=False) for net in self.relay_networks)

    # -- live edits: a running network watches the policies of its hosts ----------------
    def __setattr__(self, name: str, value: Any) -> None:
        watchers: list[PolicyWatcher] | None = self.__dict__.get("_watchers")
        if not watchers or name.startswith("_"):
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        try:
            for watcher in list(watchers):
                watcher(self, name)
        except BaseException:
            # refused (a bad value): the old value stays, and the running servers with it
            object.__setattr__(self, name, old)
            for watcher in list(watchers):
                with contextlib.suppress(Exception):
                    watcher(self, name)
            raise

    def watch(self, watcher: PolicyWatcher) -> Callable[[], None]:
        """Call ``watcher(policy, field_name)`` after every change of a field (a running
        network applies it to its servers and agent, or raises to refuse it); returns a
        function that stops watching."""
        watchers: list[PolicyWatcher] = self.__dict__.setdefault("_watchers", [])
        watchers.append(watcher)

        def unwatch() -> None:
            with contextlib.suppress(ValueError):
                watchers.remove(watcher)

        return unwatch

    def __getstate__(self) -> dict[str, Any]:  # copies and pickles do not carry watchers
        return {k: v for k, v in self.__dict__.items() if k != "_watchers"}


#: Called after a policy field changed: ``watcher(policy, field_name)``; raising refuses it.
PolicyWatcher = Callable[[Policy, str], None]


@dataclass
class User:
    """A mailbox owner. The password never shows in ``repr``."""

    address: str
    name: str = ""
    password: str | None = field(default=None, repr=False)

    @property
    def local_part(self) -> str:
        return self.address.rpartition("@")[0]

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2]

    def check_password(self, password: str) -> bool:
        """Compare in constant time; a user without a password can never log in."""
        return self.password is not None and hmac.compare_digest(
            self.password.encode(), password.encode())


@dataclass(frozen=True)
class MXRecord:
    """One MX record (RFC 1035 §3.3.9): a lower preference is tried first."""

    preference: int
    exchange: str

    def __str__(self) -> str:
        return f"MX {self.preference} {self.exchange}"


@dataclass
class Domain:
    """A mail domain: its MX records, its users (keyed by local part) and what it publishes
    for email authentication.

    Attributes:
        spf: the SPF record published as TXT at the domain (RFC 7208 §3), e.g.
            ``"v=spf1 mx -all"``; None for none.
        dmarc: the DMARC record published as TXT at ``_dmarc.<domain>`` (RFC 7489 §6.1),
            e.g. ``"v=DMARC1; p=reject"``; None for none.
        dkim_selector: the selector of the domain's DKIM key (RFC 6376 §3.1): the world
            makes the key from its seed and publishes it at
            ``<selector>._domainkey.<domain>``; the submission server signs with it.
        dkim_bits: the key's size (RFC 8301 §3.2: at least 1024).
        mta_sts: the MTA-STS mode the domain publishes (RFC 8461): ``"enforce"``,
            ``"testing"`` or ``"none"``; None publishes nothing. The world then serves the
            ``_mta-sts`` TXT record and the policy at
            ``https://mta-sts.<domain>/.well-known/mta-sts.txt`` listing the domain's MX hosts.
        mta_sts_max_age: the policy's max_age in seconds (RFC 8461 §3.2).
        dnssec: sign the domain's zone (RFC 4035) with a key made from the world's seed.
        tlsa: TLSA records to publish at ``_25._tcp.<mx>`` for each of the domain's MX hosts
            in the world (RFC 7672), as "usage selector matching-type" triples:
            ``"3 1 1"`` (the MX's own key) or ``"2 1 1"`` (the world CA's key).
        tls_rpt: where TLS reports go (RFC 8460), e.g. ``"mailto:tls-reports@example.org"``,
            published at ``_smtp._tls.<domain>``; None for none.
    """

    name: str
    mx: list[MXRecord] = field(default_factory=list)
    null_mx: bool = False
    users: dict[str, User] = field(default_factory=dict)
    spf: str | None = None
    dmarc: str | None = None
    dkim_selector: str | None = None
    dkim_bits: int = DEFAULT_DKIM_BITS
    mta_sts: str | None = None
    mta_sts_max_age: int = 86400
    dnssec: bool = False
    tlsa: list[str] = field(default_factory=list)
    tls_rpt: str | None = None

    def __post_init__(self) -> None:
        # The domain's own edit count (see EditCount), and the list given to the
        # constructor becomes a watched copy (see _WatchedList).
        object.__setattr__(self, "_edits", EditCount())
        object.__setattr__(self, "mx", _watched_list(self.mx))
        self._watch_mx()

    def __setattr__(self, name: str, value: Any) -> None:
        edits = self.__dict__.get("_edits")
        if edits is None:  # the constructor's own assignments are no edit
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        if name == "mx":
            if (count := _counts(old)) is not None and old is not value:
                count.unlink(edits)
            self._watch_mx()
        edits.edited()

    def __setstate__(self, state: dict[str, Any]) -> None:  # copy.copy, deepcopy, pickle
        self.__dict__.update(state)
        self.__dict__["_edits"] = EditCount()  # a copy counts its own edits
        self._watch_mx()

    def _watch_mx(self) -> None:
        """Link a watched ``mx`` list's count to the domain's, or mark it loose (a plain
        list, compared by content in :meth:`World.dns_version`)."""
        edits: EditCount = self.__dict__["_edits"]
        count = _counts(self.__dict__.get("mx"))
        if count is not None:
            count.link(edits)
        edits.mark_loose(self, count is None)

    def mx_records(self) -> list[MXRecord]:
        """The MX records as published: ``MX 0 .`` for a null MX (RFC 7505 §3)."""
        return [MXRecord(0, ".")] if self.null_mx else list(self.mx)

    def dkim_name(self) -> str | None:
        """Where the DKIM key is published: ``<selector>._domainkey.<domain>``
        (RFC 6376 §3.6.2.1), or None without a selector."""
        return None if not self.dkim_selector else f"{self.dkim_selector}._domainkey.{self.name}"

    def sts_policy(self) -> Any:
        """The MTA-STS policy the domain serves (:class:`~simsmtp.world.mtasts.STSPolicy`),
        or None when it publishes none: its mode, max_age and MX hosts."""
        if self.mta_sts is None:
            return None
        from simsmtp.world.mtasts import STSPolicy

        mx = () if self.mta_sts == "none" else tuple(
            dict.fromkeys(_bare(r.exchange) for r in self.mx))
        return STSPolicy(self.mta_sts, self.mta_sts_max_age, mx)

    def sts_id(self) -> str | None:
        """The policy id of the ``_mta-sts`` TXT record: it changes with the policy
        (RFC 8461 §3.1), here a digest of the policy text."""
        policy = self.sts_policy()
        if policy is None:
            return None
        import hashlib

        from simsmtp.world.mtasts import render_policy

        return hashlib.sha256(render_policy(policy).encode()).hexdigest()[:20]


@dataclass
class Host:
    """A machine of the world. ``down = True`` makes it refuse connections."""

    name: str
    domain: str
    roles: list[str] = field(default_factory=list)
    policy: Policy = field(default_factory=Policy)
    down: bool = False

    def __setattr__(self, name: str, value: Any) -> None:
        old = self.__dict__.get("policy") if name == "policy" else None
        object.__setattr__(self, name, value)
        watchers = [] if old is None or old is value else old.__dict__.get("_watchers") or []
        if watchers:
            # a new Policy object for a running host: its watchers follow it, and hear
            # about every field at once (a refused one puts the old policy back)
            try:
                for watcher in list(watchers):
                    value.watch(watcher)
                    watcher(value, "*")
            except BaseException:
                value.__dict__.pop("_watchers", None)
                object.__setattr__(self, name, old)
                raise
            old.__dict__.pop("_watchers", None)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def ports(self) -> list[int]:
        """The well-known ports this host listens on (25, 587, 465, 110, 995, 143, 993)."""
        return [p for role in self.roles for p in ROLE_PORTS.get(role, ())]


@dataclass(frozen=True)
class Record:
    """One DNS record in zone-file presentation form (RFC 1035 §5.1), name without the dot."""

    name: str
    rtype: str
    value: str
    ttl: int = DEFAULT_TTL

    def __str__(self) -> str:
        return f"{self.name}. {self.ttl} IN {self.rtype} {self.value}"


def _bare(name: str) -> str:
    return name.lower().rstrip(".")


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
        object.__setattr__(self, "domains", _watched_dict(self.domains))
        object.__setattr__(self, "records", _watched_list(self.records))
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
            if (count := _counts(old)) is not None:
                count.unlink(edits)
            if (count := _counts(value)) is not None:
                count.link(edits)
        edits.edited()

    def _link_parts(self) -> None:
        """A fresh edit count for the world, linked to those of its domains and records."""
        edits = EditCount()
        self.__dict__["_edits"] = edits
        for part in (self.__dict__.get("domains"), self.__dict__.get("records")):
            if (count := _counts(part)) is not None:
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
    def load(cls, path: str | Path) -> World:
        """Load a world file (raises :class:`~simsmtp.world.loader.WorldFileError`)."""
        from simsmtp.world.loader import load_world
        return load_world(path)

    @classmethod
    def from_toml(cls, text: str, source: str = "<string>") -> World:
        """Build a world from TOML text; ``source`` names it in error messages."""
        from simsmtp.world.loader import parse_world
        return parse_world(text, source)

    @classmethod
    def seed_world(cls, seed: int | None = None) -> World:
        """The seed world "Alice writes to Bob" (``seed`` overrides the file's seed)."""
        from simsmtp.world.loader import seed_world
        return seed_world(seed)

    def check(self) -> None:
        """Validate the world as it is now (after live edits), like a world file."""
        from simsmtp.world.loader import validate_world
        validate_world(self)

    def start(self, **kw: Any) -> Network:
        """Boot the world on loopback and return the running network.

        ``net = world.start()`` in a notebook (``net.stop()`` at the end, or it stops at
        exit), or ``with world.start() as net:``, which stops it when the block ends.
        Keyword arguments go to :class:`~simsmtp.net.network.Network`.
        """
        from simsmtp.net.network import Network
        return Network(self, **kw).start()

    # -- looking things up ------------------------------------------------------------------

    def user(self, address: str) -> User | None:
        """The user with this address: domain case-insensitive, local part exactly as given."""
        local, at, domain = address.strip().strip("<>").rpartition("@")
        if not at:
            return None
        found = self.domains.get(_bare(domain))
        return None if found is None else found.users.get(local)

    def users(self) -> list[User]:
        """Every user of every domain."""
        return [u for d in self.domains.values() for u in d.users.values()]

    def host(self, name: str) -> Host:
        """The host called ``name`` (case-insensitive); ``KeyError`` says what exists."""
        try:
            return self.hosts[_bare(name)]
        except KeyError:
            close = get_close_matches(_bare(name), self.hosts, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise KeyError(f"no host {name!r} in world {self.name!r}{hint}") from None

    def domain(self, name: str) -> Domain:
        """The domain called ``name`` (case-insensitive, a final dot allowed); ``KeyError``
        says what exists."""
        try:
            return self.domains[_bare(name)]
        except KeyError:
            close = get_close_matches(_bare(name), self.domains, n=1)
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
                 if d.name == h.domain or any(_bare(r.exchange) == h.name for r in d.mx)}
        return sorted(found)

    def keeps_mail_for(self, host: Host | str, domain: str) -> bool:
        """Whether ``host`` keeps the mail of ``domain`` (one domain of
        :meth:`local_domains`, found without scanning them all)."""
        h = self.host(host) if isinstance(host, str) else host
        d = self.domains.get(_bare(domain))
        return d is not None and (d.name == h.domain
                                  or any(_bare(r.exchange) == h.name for r in d.mx))

    # -- email authentication ----------------------------------------------------------------

    def dkim_key(self, domain: str) -> DKIMKey | None:
        """The DKIM key of ``domain`` (None when it has no ``dkim_selector``).

        The key is made from the world's seed, the domain and the selector, so a world
        signs the same way run after run (a notebook validated with nbval); it is made on
        first use and kept for the rest of the process. Such keys are for the simulator
        only: anyone who knows the seed can sign.
        """
        found = self.domains.get(_bare(domain))
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
        if not isinstance(domains, _WatchedDict):
            return ("unwatched", self.dns_state())
        edits: EditCount = self.__dict__["_edits"]
        loose = edits.loose
        plain_mx = tuple(tuple(d.mx) for d in list(loose.values())) if loose else ()
        plain_records = None if isinstance(records, _WatchedList) else tuple(records)
        return (edits.count, plain_mx, plain_records)

    # -- transport security: MTA-STS, DANE, TLS-RPT --------------------------------------------

    def policy_server(self, domain: str) -> str | None:
        """The world host that serves ``domain``'s MTA-STS policy (as
        ``mta-sts.<domain>``): its first MX host that is in the world, or None."""
        found = self.domains.get(_bare(domain))
        if found is None or found.mta_sts is None:
            return None
        for record in sorted(found.mx, key=lambda r: r.preference):
            host = self.hosts.get(_bare(record.exchange))
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

            for mx in dict.fromkeys(_bare(r.exchange) for r in domain.mx):
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
        ns = _bare(self.nameserver)
        addrs = {_bare(name): ipaddress.ip_address(ip) for name, ip in addresses.items()}
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
                out += [Record(zone, "MX", f"{r.preference} {_bare(r.exchange)}.")
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
