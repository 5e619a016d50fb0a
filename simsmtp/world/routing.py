"""Where mail for a domain goes, and when to try again: the pure parts of routing.

RFC 5321 §5.1 (MX lookup, implicit MX, loops back to myself), RFC 7505 (null MX) and
RFC 5321 §4.5.4.1 (retry strategy, with Postfix's defaults). DNS lookups themselves are the
caller's job; these functions take the answers and explain their decision in words.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Literal

from simsmtp.world.model import MXRecord

#: What a route says to do with a recipient's domain.
RouteKind = Literal["deliver", "bounce", "defer"]


def _bare(name: str) -> str:
    return name.lower().rstrip(".")


def is_null_mx(records: list[MXRecord] | None) -> bool:
    """A null MX (RFC 7505 §3): exactly one MX, preference 0, exchange ``"."``."""
    return (records is not None and len(records) == 1 and records[0].preference == 0
            and _bare(records[0].exchange) == "")


def order_mx(records: list[MXRecord], rng: random.Random) -> list[MXRecord]:
    """MX records in the order to try them.

    Ascending preference; records of equal preference are shuffled with ``rng``
    (RFC 5321 §5.1: the client MUST randomize them to spread the load). The input order
    does not matter, so the same ``rng`` state always gives the same answer.
    """
    by_pref: dict[int, list[MXRecord]] = {}
    for record in sorted(records, key=lambda r: (r.preference, _bare(r.exchange))):
        by_pref.setdefault(record.preference, []).append(record)
    ordered: list[MXRecord] = []
    for pref in sorted(by_pref):
        group = by_pref[pref]
        rng.shuffle(group)
        ordered.extend(group)
    return ordered


@dataclass(frozen=True)
class Route:
    """The decision for one recipient domain.

    Attributes:
        kind: ``"deliver"`` (try ``targets`` in order), ``"bounce"`` (permanent failure) or
            ``"defer"`` (temporary failure: keep the message and retry).
        domain: the recipient domain.
        targets: the hosts to try, in order (empty unless delivering).
        status: the enhanced status code for a bounce or deferral (RFC 3463), else ``""``.
        reason: a human explanation a notebook can print.
    """

    kind: RouteKind
    domain: str
    targets: tuple[MXRecord, ...] = field(default=())
    status: str = ""
    reason: str = ""

    @classmethod
    def nxdomain(cls, domain: str) -> Route:
        """The domain does not exist (DNS NXDOMAIN): bounce with 5.1.2 (RFC 3463 §3.2)."""
        return cls("bounce", domain, (), "5.1.2",
                   f"Host or domain name not found: {domain} does not exist in DNS "
                   "(NXDOMAIN), so there is nowhere to deliver; the message bounces.")

    @classmethod
    def dns_tempfail(cls, domain: str) -> Route:
        """DNS did not answer (SERVFAIL, timeout): defer with 4.4.3 (RFC 3463 §3.5)."""
        return cls("defer", domain, (), "4.4.3",
                   f"Host or domain name not found: the DNS lookup for {domain} failed "
                   "temporarily, so the message stays in the queue and is retried later.")

    def __str__(self) -> str:
        head = f"{self.domain}: {self.kind}"
        if self.targets:
            head += " via " + ", ".join(f"{t.exchange} ({t.preference})" for t in self.targets)
        if self.status:
            head += f" [{self.status}]"
        return f"{head}\n{self.reason}"


def plan_route(domain: str, mx: list[MXRecord] | None, *, domain_has_address: bool,
               self_names: set[str], rng: random.Random) -> Route:
    """Decide where mail for ``domain`` goes (RFC 5321 §5.1, RFC 7505).

    Args:
        domain: the recipient domain.
        mx: its MX records; ``None`` (or empty) means the name exists but has no MX (NODATA).
        domain_has_address: whether the domain itself has an A/AAAA record (implicit MX).
        self_names: the names of the host doing the delivery (for loop detection).
        rng: the stream used to shuffle equal preferences.
    """
    domain = _bare(domain)
    me = {_bare(n) for n in self_names}
    if not mx:
        if domain_has_address:
            # RFC 5321 §5.1: no MX, but an address: treat the domain as an implicit MX of
            # preference 0.
            return Route("deliver", domain, (MXRecord(0, domain),), "",
                         f"{domain} has no MX records, but it has an address record, so it "
                         "is its own mail server (implicit MX, RFC 5321 §5.1).")
        return Route("bounce", domain, (), "5.4.4",
                     f"{domain} has neither MX records nor an address record: there is no "
                     "mail server to deliver to (RFC 5321 §5.1); the message bounces.")
    if is_null_mx(mx):
        # RFC 7505 §4.1: do not even try; bounce with 556 5.1.10.
        return Route("bounce", domain, (), "5.1.10",
                     f"Domain {domain} does not accept mail: it publishes a null MX "
                     "(MX 0 ., RFC 7505), so 556 5.1.10 without trying.")
    notes = []
    usable = [r for r in mx if _bare(r.exchange)]
    if len(usable) < len(mx):
        notes.append("An MX record pointing at '.' is ignored: a null MX must stand alone "
                     "(RFC 7505 §3).")
    if not usable:
        return Route("bounce", domain, (), "5.1.10",
                     f"Domain {domain} does not accept mail: its MX records all point at "
                     "'.' (RFC 7505).")
    mine = [r.preference for r in usable if _bare(r.exchange) in me]
    if mine:
        # RFC 5321 §5.1: if I am listed, discard my own record and every record whose
        # preference is equal or greater (worse); try only the better ones.
        own = min(mine)
        better = [r for r in usable if r.preference < own]
        if not better:
            return Route("bounce", domain, (), "5.4.6",
                         f"mail for {domain} loops back to myself: this host is its best MX "
                         f"(preference {own}) but does not accept the domain as local "
                         "(RFC 5321 §5.1).")
        notes.append(f"This host is itself an MX for {domain} at preference {own}, so only "
                     f"the better ones (preference < {own}) are tried (RFC 5321 §5.1).")
        usable = better
    ordered = order_mx(usable, rng)
    prefs = sorted({r.preference for r in ordered})
    why = [f"Tried in this order because MX preferences are tried lowest first "
           f"({', '.join(str(p) for p in prefs)})"]
    ties = [p for p in prefs if sum(r.preference == p for r in ordered) > 1]
    if ties:
        why.append(f", and hosts with equal preference ({', '.join(map(str, ties))}) are "
                   "shuffled to share the load (RFC 5321 §5.1)")
    return Route("deliver", domain, tuple(ordered), "",
                 " ".join([*notes, "".join(why) + "."]))


@dataclass(frozen=True)
class RetrySchedule:
    """When to try a deferred message again (RFC 5321 §4.5.4.1), with Postfix's defaults.

    After the n-th failed attempt the next one waits ``minimal_backoff * 2**(n-1)`` seconds,
    capped at ``maximal_backoff``. A message still undelivered once it is older than
    ``maximal_lifetime`` bounces after its next failed attempt (as Postfix does).
    RFC 5321 §4.5.4.1 suggests at least 30 minutes between tries and giving up after 4-5
    days; Postfix's defaults (300 s, 4000 s, 5 days) retry sooner.

    Attributes:
        minimal_backoff: Postfix ``minimal_backoff_time`` (300 s).
        maximal_backoff: Postfix ``maximal_backoff_time`` (4000 s).
        maximal_lifetime: Postfix ``maximal_queue_lifetime`` (5 days).
        delay_warning: Postfix ``delay_warning_time``: send a "delayed" notice once a message
            is this old (0 = never, the Postfix default).
    """

    minimal_backoff: float = 300
    maximal_backoff: float = 4000
    maximal_lifetime: float = 5 * 86400
    delay_warning: float = 0

    def __post_init__(self) -> None:
        if not 0 < self.minimal_backoff <= self.maximal_backoff:
            raise ValueError("need 0 < minimal_backoff <= maximal_backoff")
        if self.maximal_lifetime < 0 or self.delay_warning < 0:
            raise ValueError("maximal_lifetime and delay_warning must be >= 0")

    def backoff(self, attempts: int) -> float:
        """The wait after ``attempts`` failed attempts (>= 1)."""
        if attempts < 1:
            raise ValueError("backoff is defined after at least one attempt")
        # 2**(attempts-1) grows fast; cap the exponent before it overflows a float.
        return min(self.maximal_backoff, self.minimal_backoff * 2.0 ** min(attempts - 1, 64))

    def next_attempt(self, arrival: float, last_attempt: float, attempts: int) -> float | None:
        """When to try next after ``attempts`` failures, the last at ``last_attempt``.

        Returns:
            the time of the next attempt, ``arrival`` itself when nothing was tried yet, or
            ``None`` when the message is too old: give up and bounce.
        """
        if attempts == 0:
            return arrival
        if last_attempt - arrival >= self.maximal_lifetime:
            return None
        return last_attempt + self.backoff(attempts)

    def warn_due(self, arrival: float, now: float, warned: bool = False) -> bool:
        """Whether a delay warning (DSN action "delayed") should be sent now."""
        return bool(self.delay_warning) and not warned and now - arrival >= self.delay_warning

    def timeline(self, arrival: float, until: float) -> list[float]:
        """Every attempt time from ``arrival`` up to ``until`` if every attempt fails."""
        times: list[float] = []
        when: float | None = arrival
        while when is not None and when <= until:
            times.append(when)
            when = self.next_attempt(arrival, when, len(times))
        return times
