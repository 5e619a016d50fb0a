"""The parts a world is made of: domains, users, hosts and their policies, extra DNS records.

Everything here is a plain mutable dataclass, so a notebook can change a world live
(``world.host("mail.anotherdomain.org").down = True``). The :class:`~simsmtp.world.model.World`
that holds them, and reads and checks world files, is in :mod:`simsmtp.world.model`, where
these names are imported from too.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from simsmtp.protocol.server import ServerConfig as _SMTPD
from simsmtp.world.edits import EditCount, edit_count, watched_list

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
        # constructor becomes a watched copy (see WatchedList).
        object.__setattr__(self, "_edits", EditCount())
        object.__setattr__(self, "mx", watched_list(self.mx))
        self._watch_mx()

    def __setattr__(self, name: str, value: Any) -> None:
        edits = self.__dict__.get("_edits")
        if edits is None:  # the constructor's own assignments are no edit
            object.__setattr__(self, name, value)
            return
        old = self.__dict__.get(name)
        object.__setattr__(self, name, value)
        if name == "mx":
            if (count := edit_count(old)) is not None and old is not value:
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
        count = edit_count(self.__dict__.get("mx"))
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
            dict.fromkeys(bare(r.exchange) for r in self.mx))
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


def bare(name: str) -> str:
    """A domain or host name as the world keys it: lower case, no final dot."""
    return name.lower().rstrip(".")
