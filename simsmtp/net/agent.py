"""The outbound delivery agent of a world's MTA (mail.example.com's "smtp" + "qmgr").

It takes messages from the durable :class:`~simsmtp.net.queue.Queue` and delivers them
the way Postfix does, and says why at every step in the world's trace:

* **Routing (RFC 5321 §5.1, RFC 7505).** Per recipient domain: an MX lookup; MX hosts in
  preference order, equal preferences shuffled with the world's seeded rng; no MX but an
  address: the domain is its own MX (implicit MX); a null MX (``MX 0 .``) or NXDOMAIN:
  bounce at once; a temporary DNS failure: defer. MX hosts that do not resolve are skipped;
  when none resolves the mail bounces (no fallback to the domain's A record: catalogue 74d,
  ``tests/hardening/CATALOGUE.md``).
* **Trying servers in order (RFC 5321 §5.1; Postfix ``smtp_trouble.c``).** The next MX is
  tried after a refused connection, a timeout, a 4xx or 5xx greeting (Postfix
  ``smtp_skip_5xx_greeting = yes``) and after 4xx replies to MAIL, RCPT or DATA. Once the
  last server gave a 4xx the recipients are deferred. A 5xx to MAIL or DATA bounces every
  recipient of the transaction, a 5xx to RCPT bounces that recipient (never tried
  elsewhere), 250 after DATA delivers. ``452`` (or ``552``, RFC 5321 §4.5.3.1.10) to RCPT
  means too many recipients: the rest go in a further transaction to the same server.
* **One transaction per server** with all the domain's recipients (MAIL, RCPT x N, DATA;
  RFC 5321 §4.5.4.1 "one copy per server"), pipelined when the server offers PIPELINING
  (RFC 2920).
* **STARTTLS (RFC 3207) by policy.** ``"none"``: never. ``"opportunistic"``: used when
  offered (with the given context, verifying or not), plaintext when not offered or refused;
  a failed handshake is traced and the same server is retried once in plaintext (what
  Postfix's "may" level does; a learner sees how a downgrade looks). ``"required"``: no
  STARTTLS or a failed handshake defers the mail with a clear reason.
* **MTA-STS and DANE (RFC 8461, RFC 7672), off by default as in Postfix.** With a
  ``security`` object (:class:`simsmtp.net.securemx.TransportSecurity`) each MX host gets
  a rule: an MX the domain's MTA-STS policy (mode ``enforce``) does not list, or a bogus
  DNSSEC answer, is skipped (4.7.5); an ``enforce`` policy or secure TLSA records make
  STARTTLS mandatory, verified against the CA or matched against the TLSA records
  (4.7.4/4.7.5 and no plaintext retry otherwise). Every session's outcome goes to TLS-RPT.
* **Connection reuse (RFC 5321 §4.1.4; Postfix's connection cache).** A queue run carries
  the due messages for one destination domain over ONE session: after a message's final
  reply the next MAIL FROM goes on the same connection (no new EHLO or STARTTLS), up to
  :data:`MAX_MESSAGES_PER_SESSION` messages. Only a message whose due recipients are all in
  that domain rides along; the first message of a session takes the ordinary path, and the
  session is reused only after it was delivered completely by the first server tried. Any
  4xx/5xx or a lost connection in a reused transaction ends reuse for that domain in this
  run: that message's undecided recipients and the rest go the per-message path, so every
  rule below holds unchanged. ``delivery.attempt`` says which ``session`` carried which
  message (``reused=True`` after the first).
* **SIZE (RFC 1870 §6.2).** A message larger than the server's advertised SIZE is not
  transmitted; it bounces with 5.3.4.
* **Retries on the virtual clock (RFC 5321 §4.5.4.1).** Deferred recipients wait for the
  :class:`~simsmtp.world.routing.RetrySchedule`; :meth:`DeliveryAgent.fast_forward` runs
  every retry of a time window in order. After the maximal lifetime the mail bounces
  (status 4.4.7, delivery time expired, with the last error).
* **Bounces (RFC 3464, RFC 5321 §6.1).** One DSN per message attempt listing every recipient
  that failed in that attempt, handed to ``bounce_sink(sender, dsn)``; never for the null
  sender (a bounce is never bounced, RFC 5321 §4.5.5). When the retry schedule sets
  ``delay_warning`` (Postfix ``delay_warning_time``, off by default) one "delayed" notice is
  sent per message.
* **Durability.** Every outcome is fsynced into the queue before the agent goes on; after a
  250 the outcome is written before QUIT is even sent, so a restart never delivers a
  recipient twice (except for the window documented in :mod:`simsmtp.net.queue`). A failure
  is recorded, then its DSN handed over, then "notified" recorded: a crash in between sends
  the DSN on the next run (a duplicate DSN is better than a lost one).

This module is the agent: queue scanning, routing, trying servers in order, scheduling,
retries and bounces. Each connection it opens runs as a
:class:`~simsmtp.net.session.DeliverySession` (one SMTP conversation with one MX), which
drives the sans-IO client core (:class:`simsmtp.protocol.client.ClientConnection`) through
a channel made by ``connect(ip, port, mx_name, conn)``: in a running world that is
:func:`simsmtp.net.channel.open_connection`; tests pass a scripted fake. The core normalises
every stray CR or LF and dot-stuffs, so the agent never emits a bare CR or LF.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import random
import ssl
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal

from simsmtp.net.dns import AddressLookup, MXLookup
from simsmtp.net.queue import (
    Queue,
    QueuedMessage,
    RecipientResult,
    RecipientState,
    RecipientStatus,
)
from simsmtp.net.session import (
    Channel,
    DeliverySession,
    Outcome,
    SessionLost,
    SMTPTimeouts,
    local_outcome,
)
from simsmtp.protocol.client import ClientConfig, ClientConnection
from simsmtp.protocol.grammar import GrammarError, format_path, message_size
from simsmtp.trace import Trace
from simsmtp.world.bounce import RecipientFailure, compose_bounce
from simsmtp.world.clock import IdGenerator, VirtualClock
from simsmtp.world.model import MXRecord
from simsmtp.world.routing import RetrySchedule, Route, plan_route

if TYPE_CHECKING:
    from simsmtp.net.securemx import HopRule, TransportSecurity

TLSPolicy = Literal["none", "opportunistic", "required"]
TLS_POLICIES = ("none", "opportunistic", "required")

#: Messages one SMTP session carries before QUIT. RFC 5321 §4.1.4 allows any number of
#: transactions per session; Postfix bounds reuse by time (smtp_connection_reuse_time_limit
#: = 300 s) and optionally by count (smtp_connection_reuse_count_limit, default 0 = no count
#: limit); Exim's connection_max_messages defaults to 500. We cap by count, at 100, so one
#: session never holds a busy destination for a whole queue run.
MAX_MESSAGES_PER_SESSION = 100

#: ``connect(ip, port, mx_name, conn) -> channel``; raises OSError / TimeoutError on failure.
Connect = Callable[[str, int, str, ClientConnection | None], Awaitable[Channel]]
#: ``client_factory(mx_name, use_tls)``: the sans-IO client a session drives (None: the
#: channel brings its own, as some test fakes do).
ClientFactory = Callable[[str, bool], ClientConnection | None]
#: What a lookup returns: :class:`~simsmtp.net.dns.MXLookup` for "MX" (``records``:
#: (pref, exchange) pairs), :class:`~simsmtp.net.dns.AddressLookup` for "A" (``addresses``),
#: each with a ``status`` ("ok", "nodata", "nxdomain", "tempfail") and an ``error``.
LookupResult = MXLookup | AddressLookup
#: ``resolver_lookup(name, rtype)`` with rtype "MX" or "A"; sync (run in a worker thread)
#: or async.
Lookup = Callable[[str, str], LookupResult | Awaitable[LookupResult]]


#: Entries a kicked queue run's report keeps per list (it runs as long as mail comes).
KICK_REPORT_LIMIT = 1_000


def _domain_of(address: str) -> str:
    return address.rpartition("@")[2].lower().rstrip(".") if "@" in address else ""


@dataclass
class RunReport:
    """What one :meth:`DeliveryAgent.run_once` (or a fast-forward) did.

    Lists hold ``(queue_id, recipient)`` pairs; ``dsns`` (bounces) and ``warnings`` (delay
    warnings) hold ``(queue_id, sender)``; ``errors`` holds ``(queue_id, error)``.
    """

    delivered: list[tuple[str, str]] = field(default_factory=list)
    deferred: list[tuple[str, str]] = field(default_factory=list)
    bounced: list[tuple[str, str]] = field(default_factory=list)
    dsns: list[tuple[str, str]] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    errors: list[tuple[str, str]] = field(default_factory=list)
    runs: int = 0

    def merge(self, other: RunReport) -> None:
        """Add another report's entries to this one."""
        self.delivered += other.delivered
        self.deferred += other.deferred
        self.bounced += other.bounced
        self.dsns += other.dsns
        self.warnings += other.warnings
        self.removed += other.removed
        self.errors += other.errors
        self.runs += other.runs

    def keep_latest(self, limit: int) -> None:
        """Keep only the latest ``limit`` entries of each list (a bounded report)."""
        for name in ("delivered", "deferred", "bounced", "dsns", "warnings", "removed",
                     "errors"):
            entries = getattr(self, name)
            if len(entries) > limit:
                del entries[:len(entries) - limit]


@dataclass
class _Reuse:
    """The messages waiting to ride on the first message's session (one queue run)."""

    domain: str
    first: QueuedMessage
    followers: list[QueuedMessage]
    report: RunReport
    done: set[str] = field(default_factory=set)  # queue ids delivered on the session
    sessions: int = 0  # sessions opened for the first message
    route: Route | None = None  # the first message's route to the domain
    started: bool = False
    broken: bool = False  # a reused transaction failed: no more reuse for this domain



class DeliveryAgent:
    """Delivers queued mail to the world's MX hosts (see the module docstring).

    Args:
        queue: the durable queue to deliver from.
        hostname: our host name (EHLO name, Reporting-MTA of bounces).
        resolver_lookup: DNS: ``lookup(name, "MX" | "A")`` (see :data:`Lookup`).
        connect: opens a channel: ``connect(ip, port, mx_name, conn)`` (see :data:`Connect`).
        tls_policy: ``"none"``, ``"opportunistic"`` or ``"required"`` (RFC 3207).
        client_tls_context: the context for STARTTLS (verifying or not: it decides).
        clock: the world's virtual clock (retry times, DSN dates).
        ids: the world's id generator (DSN Message-IDs, the MX shuffling stream).
        retry: the retry schedule (Postfix defaults if omitted).
        bounce_sink: ``sink(sender, dsn_bytes)`` puts a bounce into the sender's mailbox.
        trace: the world's trace.
        port_of: maps an MX host name (or, failing that, its IP) to the real port of its
            well-known port 25; returns None / raises KeyError when nothing listens there.
        self_names: this host's names (MX loop detection, RFC 5321 §5.1).
        rng: the stream that shuffles equal MX preferences (default ``ids.rng("mx")``).
        timeouts: client timeouts in real seconds.
        client_factory: builds the sans-IO client for ``(mx_name, use_tls)`` (default:
            :class:`simsmtp.protocol.client.ClientConnection`).
        reuse_limit: messages per SMTP session (:data:`MAX_MESSAGES_PER_SESSION`); 1 turns
            connection reuse off.
        security: MTA-STS and DANE (:class:`simsmtp.net.securemx.TransportSecurity`): per
            MX host, whether it may be used and whether TLS (verified, or matching TLSA
            records) is mandatory; None for neither (Postfix's default).
    """

    def __init__(self, queue: Queue, *, hostname: str, resolver_lookup: Lookup,
                 connect: Connect, tls_policy: TLSPolicy | str = "opportunistic",
                 client_tls_context: ssl.SSLContext | None = None,
                 clock: VirtualClock, ids: IdGenerator, retry: RetrySchedule | None = None,
                 bounce_sink: Callable[[str, bytes], object], trace: Trace | None = None,
                 port_of: Callable[[str], int | None] | None = None,
                 self_names: Iterable[str] = (), rng: random.Random | None = None,
                 timeouts: SMTPTimeouts | None = None,
                 client_factory: ClientFactory | None = None,
                 reuse_limit: int = MAX_MESSAGES_PER_SESSION,
                 security: TransportSecurity | None = None) -> None:
        if tls_policy not in TLS_POLICIES:
            raise ValueError(f"tls_policy must be one of {', '.join(TLS_POLICIES)}, "
                             f"not {tls_policy!r}")
        self.queue = queue
        self.hostname = hostname
        self.resolver_lookup = resolver_lookup
        self.connect = connect
        self.tls_policy: str = tls_policy
        self.client_tls_context = client_tls_context
        self.clock = clock
        self.ids = ids
        self.retry = retry or RetrySchedule()
        self.bounce_sink = bounce_sink
        self.trace = trace
        self.port_of = port_of or (lambda _name: 25)
        self.self_names = {hostname.lower(), *(n.lower().rstrip(".") for n in self_names)}
        self.rng = rng or ids.rng("mx")
        self.timeouts = timeouts or SMTPTimeouts()
        self.client_factory: ClientFactory = client_factory or self.default_client
        self.reuse_limit = max(1, reuse_limit)
        #: MTA-STS and DANE (RFC 8461, RFC 7672), or None where the host checks neither.
        self.security: TransportSecurity | None = security
        self._reuse: _Reuse | None = None
        self._session_count = 0
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None
        self._kick_task: asyncio.Task[RunReport] | None = None
        self._kick_again = False
        #: RFC 3464 Diagnostic-Code of failures whose DSN is not written yet
        self._diagnostics: dict[tuple[str, str], str] = {}

    # ------------------------------------------------------------------ public API
    async def run_once(self, now: float | None = None) -> RunReport:
        """Deliver every message due at virtual time ``now`` (default: the clock's now).

        Also hands over DSNs a crash left unsent and removes finished messages.
        """
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        async with self._lock:  # one queue run at a time (kick, fast_forward, a notebook)
            when = self.clock.now() if now is None else now
            report = RunReport(runs=1)
            for queued in self.queue.messages():
                if queued.unnotified:  # failures recorded before a crash, DSN not sent
                    await self._bounce(queued, queued.unnotified, when, report)
                self._maybe_remove(queued, report)
            due = self.queue.due(when)
            # connection reuse: the messages each destination domain could carry together
            domains = {m.queue_id: self._reuse_domain(m, when) for m in due}
            by_domain: dict[str, list[QueuedMessage]] = {}
            for m in due:
                if (domain := domains[m.queue_id]) is not None:
                    by_domain.setdefault(domain, []).append(m)
            handled: set[str] = set()
            no_reuse: set[str] = set()  # domains whose reused session failed in this run
            for queued in due:
                if queued.queue_id in handled:
                    continue
                handled.add(queued.queue_id)
                domain = domains[queued.queue_id]
                if domain is not None and domain not in no_reuse and self.reuse_limit > 1:
                    waiting = [m for m in by_domain[domain] if m.queue_id not in handled]
                    by_domain[domain] = waiting
                    if waiting:
                        self._reuse = _Reuse(domain, queued,
                                             waiting[:self.reuse_limit - 1], report)
                try:
                    await self._deliver_message(queued, when, report)
                except Exception as exc:  # keep the other messages moving; say what broke
                    report.errors.append((queued.queue_id, f"{type(exc).__name__}: {exc}"))
                    self.record("delivery.error", queue_id=queued.queue_id,
                                error=f"{type(exc).__name__}: {exc}")
                finally:
                    reuse, self._reuse = self._reuse, None
                if reuse is not None:
                    handled |= reuse.done
                    if reuse.broken and domain is not None:
                        no_reuse.add(domain)
            return report

    def advance(self, seconds: float) -> float:
        """Move the virtual clock forward (call :meth:`run_once` afterwards)."""
        return self.clock.advance(seconds)

    async def fast_forward(self, seconds: float, step: float | None = None) -> RunReport:
        """Run every retry that falls in the next ``seconds`` of virtual time, in order.

        The clock jumps from one due time to the next (or, with ``step``, in steps of that
        many seconds, like Postfix's ``queue_run_delay``) and ends ``seconds`` later.
        A notebook fast-forwards hours of greylisting in a second.
        """
        if seconds < 0:
            raise ValueError("time only moves forward")
        if step is not None and step <= 0:
            raise ValueError("step must be > 0")
        end = self.clock.now() + seconds
        report = await self.run_once()
        reruns = 0
        while True:
            due = self.queue.next_due()
            if due is None or due > end:
                break
            now = self.clock.now()
            if due <= now:
                # due right now after a run (a message arrived meanwhile): run once more,
                # but never spin on something a run does not move
                reruns += 1
                if reruns > 1:
                    break
            else:
                reruns = 0
                target = due if step is None else now + step * -((now - due) // step)
                self.clock.advance_to(min(target, end))
            report.merge(await self.run_once())
        self.clock.advance_to(end)
        return report

    def kick(self) -> asyncio.Task[RunReport]:
        """Schedule a queue run on the running loop (e.g. after a new message arrived).

        Call it on the loop's thread. Kicks during a run make one more run after it, so a
        message queued while the agent is busy is not left waiting for the next retry.
        """
        self._kick_again = True
        if self._kick_task is None or self._kick_task.done():
            self._kick_task = asyncio.get_running_loop().create_task(self._kicked())
        return self._kick_task

    @property
    def busy(self) -> bool:
        """True while a kicked queue run is going on (or about to)."""
        return self._kick_task is not None and not self._kick_task.done()

    async def _kicked(self) -> RunReport:
        report = RunReport()
        while self._kick_again:
            self._kick_again = False
            report.merge(await self.run_once())
            report.keep_latest(KICK_REPORT_LIMIT)  # steady mail keeps this loop going
        return report

    # ------------------------------------------------------------------ connection reuse
    def _reuse_domain(self, queued: QueuedMessage, now: float) -> str | None:
        """The one domain of the message's due recipients, if it may share a session."""
        due = queued.due_recipients(now)
        if not due:
            return None
        domains = {_domain_of(state.address) for state in due}
        if len(domains) != 1 or "" in domains:
            return None
        utf8 = "SMTPUTF8" in queued.params
        for state in due:
            try:  # RFC 5321 §4.1.2: malformed addresses take the per-message path
                format_path(state.address, utf8=utf8)
            except GrammarError:
                return None
        return domains.pop()

    async def continue_session(self, session: DeliverySession) -> None:
        """After the first message was delivered: send the waiting messages for the same
        domain over this session (RFC 5321 §4.1.4: many transactions per session)."""
        reuse = self._reuse
        if (reuse is None or reuse.started or session.queued is not reuse.first
                or reuse.sessions != 1 or session.need_rset):
            return
        if not all(r in session.outcomes and session.outcomes[r].status == "delivered"
                   for r in session.rcpts):
            return  # the first message did not go cleanly: the others go on their own
        targets = reuse.route.targets if reuse.route is not None else ()
        if (not targets or targets[0].exchange.rstrip(".") != session.mx
                or len({t.preference for t in targets}) != len(targets)):
            # only the server every message would try first; equal preferences are
            # shuffled per message to spread the load (RFC 5321 §5.1): no reuse there
            return
        reuse.started = True
        carried = 1
        size_limit = session.extensions.get("SIZE", "")
        while reuse.followers and carried < self.reuse_limit:
            queued = reuse.followers.pop(0)
            rcpts = [s.address for s in queued.due_recipients(session.when)]
            if not rcpts or self._reuse_domain(queued, session.when) != reuse.domain:
                continue  # not this session's business any more: the per-message path
            size = message_size(queued.message)  # RFC 1870 §6.2: the per-message path
            if size_limit.isdigit() and int(size_limit) and size > int(size_limit):
                continue  # bounces it with the full explanation
            carried += 1
            session.rebind(queued, rcpts)
            self.record("delivery.attempt", queue_id=queued.queue_id, mx=session.mx,
                        ip=session.ip, port=session.port, well_known_port=25,
                        recipients=list(rcpts), tls=session.tls_label,
                        session=session.number, reused=True, transaction=carried)
            lost = ""
            try:
                todo = list(rcpts)
                while todo:
                    leftover = await session.transaction(todo)
                    if not leftover or len(leftover) == len(todo):
                        break
                    todo = leftover
                delivered = {r: o for r, o in session.outcomes.items()
                             if o.status == "delivered"}
                if delivered:
                    self._record_outcomes(queued, delivered, session.when, reuse.report)
                if len(delivered) == len(rcpts):
                    reuse.done.add(queued.queue_id)
                    await self._maybe_warn(queued, session.when, reuse.report)
                    self._maybe_remove(queued, reuse.report)
                    continue
                failed = [o.reply for o in session.outcomes.values()
                          if o.status != "delivered"]
                lost = failed[0] if failed else "recipients left undecided"
            except SessionLost as exc:
                lost = str(exc)
            except Exception as exc:  # e.g. the queue could not write: say so, stop here
                reuse.done.add(queued.queue_id)
                reuse.report.errors.append((queued.queue_id, f"{type(exc).__name__}: {exc}"))
                self.record("delivery.error", queue_id=queued.queue_id,
                            error=f"{type(exc).__name__}: {exc}")
                lost = f"{type(exc).__name__}: {exc}"
            # RFC 5321 §4.5.4.1 rules (next MX, defer, bounce) live in the per-message path
            reuse.broken = True
            self.record("delivery.reuse_stopped", queue_id=queued.queue_id, mx=session.mx,
                        session=session.number, reason=lost,
                        then="the message's undecided recipients and the rest of the "
                              "domain's messages go one session per message")
            return

    # ------------------------------------------------------------------ tracing
    def record(self, kind: str, **data: Any) -> None:
        """Append ``kind`` to the world's trace, as this host (when there is a trace)."""
        if self.trace is not None:
            self.trace.record(kind, self.hostname, **data)

    # ------------------------------------------------------------------ one message
    async def _deliver_message(self, queued: QueuedMessage, now: float,
                               report: RunReport) -> None:
        due = queued.due_recipients(now)
        by_domain: dict[str, list[str]] = {}
        for state in due:
            by_domain.setdefault(_domain_of(state.address), []).append(state.address)
        failed_now: list[str] = []
        utf8 = "SMTPUTF8" in queued.params
        for domain, rcpts in by_domain.items():
            bad: dict[str, Outcome] = {}
            for rcpt in rcpts:
                try:  # RFC 5321 §4.1.2 path syntax; never route a malformed address
                    format_path(rcpt, utf8=utf8)
                except GrammarError as exc:
                    bad[rcpt] = local_outcome("failed", "5.1.3",
                                              f"bad recipient address syntax: {exc}")
            rcpts = [r for r in rcpts if r not in bad]
            if bad:
                failed_now += self._record_outcomes(queued, bad, now, report)
            if not rcpts:
                continue
            if not domain:
                outcomes = {r: local_outcome("failed", "5.1.3",
                                             f"bad address syntax: {r!r} has no domain")
                            for r in rcpts}
            else:
                outcomes = await self._deliver_domain(queued, domain, rcpts, now)
            failed_now += self._record_outcomes(queued, outcomes, now, report)
        if failed_now:
            await self._bounce(queued, [queued.recipient(r) for r in failed_now], now, report)
        await self._maybe_warn(queued, now, report)
        self._maybe_remove(queued, report)

    def _record_outcomes(self, queued: QueuedMessage, outcomes: Mapping[str, Outcome],
                         now: float, report: RunReport) -> list[str]:
        """Persist the outcomes not yet written; returns the recipients that failed."""
        results: list[RecipientResult] = []
        failed: list[str] = []
        qid = queued.queue_id
        for rcpt, outcome in outcomes.items():
            if outcome.status == "delivered":
                report.delivered.append((qid, rcpt))
                if not outcome.recorded:  # normally written already, right after the 250
                    results.append(RecipientResult(rcpt, RecipientStatus.DELIVERED,
                                                   outcome.reply, outcome.status_code,
                                                   outcome.remote_mta, now))
                continue
            state = queued.recipient(rcpt)
            if outcome.status == "soft":
                next_at = self.retry.next_attempt(queued.arrival, now, state.attempts + 1)
                if next_at is not None:
                    results.append(RecipientResult(
                        rcpt, RecipientStatus.DEFERRED, outcome.reply, outcome.status_code,
                        outcome.remote_mta, now, next_at))
                    report.deferred.append((qid, rcpt))
                    self.record("delivery.deferred", queue_id=qid, recipient=rcpt,
                                reason=outcome.reply, status=outcome.status_code,
                                next_attempt=next_at, next_attempt_at=_iso(next_at),
                                retry_in=next_at - now, attempts=state.attempts + 1)
                    continue
                # too old: give up (RFC 5321 §4.5.4.1); X.4.7 = delivery time expired
                age = (now - queued.arrival) / 86400
                reason = (f"delivery time expired: the message is {age:.1f} day(s) old, older "
                          f"than the maximal lifetime of "
                          f"{self.retry.maximal_lifetime / 86400:g} day(s); last error: "
                          f"{outcome.reply}")
                self.record("delivery.expired", queue_id=qid, recipient=rcpt, reason=reason)
                outcome = Outcome("failed", reason, "4.4.7", outcome.diagnostic,
                                  outcome.remote_mta)
            failed.append(rcpt)
            self._diagnostics[(qid, rcpt)] = outcome.diagnostic
            results.append(RecipientResult(rcpt, RecipientStatus.FAILED, outcome.reply,
                                           outcome.status_code, outcome.remote_mta, now))
            report.bounced.append((qid, rcpt))
            self.record("delivery.bounce", queue_id=qid, recipient=rcpt,
                        status=outcome.status_code, reason=outcome.reply,
                        diagnostic=outcome.diagnostic, mx=outcome.remote_mta)
        if results:
            self.queue.record_results(qid, results)
        return failed

    async def _bounce(self, queued: QueuedMessage, failed: list[RecipientState], now: float,
                      report: RunReport) -> None:
        """Compose one DSN for these failed recipients, hand it over, record it."""
        rcpts = [state.address for state in failed]
        if queued.sender:
            failures = []
            for state in failed:
                diagnostic = self._diagnostics.pop((queued.queue_id, state.address), None)
                if diagnostic is None:
                    diagnostic = (f"smtp; {state.reply}" if state.reply[:3].isdigit()
                                  else f"X-Postfix; {state.reply or 'delivery failed'}")
                status = state.status_code if _is_status(state.status_code) else "5.0.0"
                failures.append(RecipientFailure(state.address, status, diagnostic,
                                                 state.remote_mta or None))
            dsn = compose_bounce(
                queued.message, sender=queued.sender, failures=failures,
                reporting_mta=self.hostname,
                arrival=datetime.fromtimestamp(queued.arrival, UTC),
                now=datetime.fromtimestamp(now, UTC),
                message_id=self.ids.message_id(self.hostname), queue_id=queued.queue_id)
            if dsn is not None:
                result = self.bounce_sink(queued.sender, dsn)
                if inspect.isawaitable(result):
                    await result
                report.dsns.append((queued.queue_id, queued.sender))
                self.record("delivery.dsn", queue_id=queued.queue_id, sender=queued.sender,
                            recipients=rcpts, size=len(dsn))
        else:
            self.record("delivery.dsn_suppressed", queue_id=queued.queue_id, recipients=rcpts,
                        reason="the sender is the null sender <>: a bounce is never "
                                "bounced (RFC 5321 §4.5.5)")
        self.queue.mark_notified(queued.queue_id, rcpts)

    async def _maybe_warn(self, queued: QueuedMessage, now: float, report: RunReport) -> None:
        """Send the one delay warning (RFC 3464 action "delayed"; Postfix
        ``delay_warning_time``, off unless the retry schedule sets ``delay_warning``)."""
        waiting = [r for r in queued.recipients if r.status is RecipientStatus.DEFERRED]
        if not waiting or not self.retry.warn_due(queued.arrival, now, queued.warned):
            return
        if queued.sender:
            failures = [RecipientFailure(
                r.address, r.status_code if _is_status(r.status_code) else "4.0.0",
                f"smtp; {r.reply}" if r.reply[:3].isdigit() else f"X-Postfix; {r.reply}",
                r.remote_mta or None, action="delayed") for r in waiting]
            until = queued.arrival + self.retry.maximal_lifetime
            dsn = compose_bounce(
                queued.message, sender=queued.sender, failures=failures,
                reporting_mta=self.hostname,
                arrival=datetime.fromtimestamp(queued.arrival, UTC),
                now=datetime.fromtimestamp(now, UTC),
                message_id=self.ids.message_id(self.hostname), queue_id=queued.queue_id,
                will_retry_until=datetime.fromtimestamp(until, UTC))
            if dsn is not None:
                result = self.bounce_sink(queued.sender, dsn)
                if inspect.isawaitable(result):
                    await result
                report.warnings.append((queued.queue_id, queued.sender))
                self.record("delivery.delay_warning", queue_id=queued.queue_id,
                            sender=queued.sender,
                            recipients=[r.address for r in waiting], size=len(dsn))
        self.queue.mark_warned(queued.queue_id)

    def _maybe_remove(self, queued: QueuedMessage, report: RunReport) -> None:
        if queued.queue_id in self.queue and queued.complete:
            self.queue.remove(queued.queue_id)
            report.removed.append(queued.queue_id)

    # ------------------------------------------------------------------ DNS and routing
    async def _resolve(self, name: str, rtype: str) -> LookupResult | str:
        """The resolver's answer, or why it broke (a temporary DNS failure)."""
        try:
            answer: LookupResult | Awaitable[LookupResult]
            if inspect.iscoroutinefunction(self.resolver_lookup):
                answer = await self.resolver_lookup(name, rtype)
            else:
                # a blocking resolver on the loop that also runs the DNS server would wait
                # for itself: run it in a worker thread
                answer = await asyncio.to_thread(self.resolver_lookup, name, rtype)
            return await answer if inspect.isawaitable(answer) else answer
        except Exception as exc:  # a broken resolver is a temporary DNS failure
            return f"{type(exc).__name__}: {exc}"

    def _traced(self, name: str, rtype: str, result: LookupResult | str,
                shown: list[str]) -> tuple[str, str]:
        """(status, error) of a lookup, traced as ``dns.lookup``."""
        if isinstance(result, str):
            status, error = "tempfail", result
        else:
            status, error = str(result.status), str(result.error or "")
        self.record("dns.lookup", qname=name, qtype=rtype, status=status, records=shown,
                    error=error)
        return status, error

    async def _lookup_mx(self, name: str) -> tuple[str, list[tuple[int, str]], str]:
        """(status, (preference, exchange) pairs, error) of an MX lookup."""
        result = await self._resolve(name, "MX")
        records = list(result.records) if isinstance(result, MXLookup) else []
        status, error = self._traced(name, "MX", result, [f"{p} {x}" for p, x in records])
        return status, records, error

    async def _lookup_a(self, name: str) -> tuple[str, list[str], str]:
        """(status, addresses, error) of an A lookup."""
        result = await self._resolve(name, "A")
        addresses = list(result.addresses) if isinstance(result, AddressLookup) else []
        status, error = self._traced(name, "A", result, [str(r) for r in addresses])
        return status, addresses, error

    async def route(self, domain: str) -> Route:
        """Where mail for ``domain`` goes now (MX lookup + :func:`plan_route`)."""
        status, records, _ = await self._lookup_mx(domain)
        if status == "nxdomain":
            route = Route.nxdomain(domain)
        elif status == "tempfail":
            route = Route.dns_tempfail(domain)
        elif status == "ok" and records:
            mx = [MXRecord(int(p), str(x)) for p, x in records]
            route = plan_route(domain, mx, domain_has_address=False,
                               self_names=self.self_names, rng=self.rng)
        else:  # NODATA: implicit MX if the domain has an address (RFC 5321 §5.1)
            a_status, addresses, _ = await self._lookup_a(domain)
            if a_status == "tempfail":
                route = Route.dns_tempfail(domain)
            else:
                route = plan_route(domain, None, domain_has_address=bool(addresses),
                                   self_names=self.self_names, rng=self.rng)
        self.record("delivery.route", domain=domain, route=route.kind,
                    targets=[f"{t.preference} {t.exchange}" for t in route.targets],
                    status=route.status, reason=route.reason)
        return route

    # ------------------------------------------------------------------ one domain
    async def _deliver_domain(self, queued: QueuedMessage, domain: str, rcpts: list[str],
                              now: float) -> dict[str, Outcome]:
        route = await self.route(domain)
        if self._reuse is not None and queued is self._reuse.first:
            self._reuse.route = route
        if route.kind == "bounce":
            return {r: local_outcome("failed", route.status or "5.4.4", route.reason)
                    for r in rcpts}
        if route.kind == "defer":
            return {r: local_outcome("soft", route.status or "4.4.3", route.reason)
                    for r in rcpts}
        outcomes: dict[str, Outcome] = {}
        remaining = list(rcpts)
        last_soft: Outcome | None = None
        dns_permanent: list[str] = []
        reached = False
        # MTA-STS / DANE: what each MX host must satisfy (RFC 8461 §4, RFC 7672 §2)
        rule_for = await self.security.rules(domain) if self.security is not None else None
        for target in route.targets:
            if not remaining:
                break
            name = target.exchange.rstrip(".")
            rule = await rule_for(name) if rule_for is not None else None
            if rule is not None and not rule.allowed:
                self.record("delivery.skip", mx=name, reason=rule.refusal)
                last_soft = local_outcome("soft", "4.7.5", rule.refusal, name)
                continue
            a_status, addresses, error = await self._lookup_a(name)
            if a_status != "ok" or not addresses:
                reason = (f"Host or domain name not found. Name service error for "
                          f"name={name} type=A: {error or 'Host not found'}")
                if a_status == "tempfail":
                    last_soft = local_outcome("soft", "4.4.3", reason)
                else:
                    dns_permanent.append(reason)
                self.record("delivery.skip", mx=name, reason=reason)
                continue
            for ip in addresses:
                if not remaining:
                    break
                reached = True
                got = await self._try_server(queued, name, str(ip), remaining, now, rule)
                for rcpt, outcome in got.items():
                    if outcome.status == "soft":
                        last_soft = outcome
                    else:
                        outcomes[rcpt] = outcome
                remaining = [r for r in remaining if r not in outcomes]
        if remaining:
            if not reached and last_soft is None and dns_permanent:
                # RFC 5321 §5.1: MX records exist but none is usable: an error (74d)
                final = local_outcome("failed", "5.4.4", dns_permanent[-1])
            else:
                final = last_soft or local_outcome(
                    "soft", "4.4.1", f"no mail server for {domain} could be reached")
            for rcpt in remaining:
                outcomes[rcpt] = final
        return {r: outcomes[r] for r in rcpts}

    def _port(self, name: str, ip: str) -> int | None:
        for key in (name, ip):
            try:
                port = self.port_of(key)
            except KeyError:
                continue
            if port:
                return int(port)
        return None

    async def _try_server(self, queued: QueuedMessage, mx: str, ip: str,
                          rcpts: list[str], now: float, rule: HopRule | None = None
                          ) -> dict[str, Outcome]:
        """Deliver ``rcpts`` to one server: returns an outcome per recipient.

        "soft" outcomes mean "try the next server, or defer after the last one".
        ``rule`` (:class:`~simsmtp.net.securemx.HopRule`) is what MTA-STS/DANE demand.
        """
        required = self.tls_policy == "required" or bool(rule is not None and rule.require_tls)
        context = (rule.context if rule is not None else None) or self.client_tls_context
        use_tls = (self.tls_policy != "none" or required) and context is not None
        if required and context is None:
            reason = "TLS is required by policy but no client TLS context is configured"
            self.record("tls.required_failed", mx=mx, ip=ip, reason=reason)
            return {r: local_outcome("soft", "4.7.4", reason, mx) for r in rcpts}
        outcomes, retry_plain = await self._session(queued, mx, ip, rcpts, use_tls, now,
                                                    rule)
        if retry_plain:
            undecided = [r for r in rcpts
                         if r not in outcomes or outcomes[r].status == "soft"]
            again, _ = await self._session(queued, mx, ip, undecided, False, now)
            outcomes.update(again)
        return outcomes

    async def _session(self, queued: QueuedMessage, mx: str, ip: str, rcpts: list[str],
                       use_tls: bool, now: float, rule: HopRule | None = None
                       ) -> tuple[dict[str, Outcome], bool]:
        """One SMTP connection. Returns (outcomes, retry in plaintext)."""
        outcomes: dict[str, Outcome] = {}
        port = self._port(mx, ip)
        self._session_count += 1
        number = self._session_count
        if self._reuse is not None and queued is self._reuse.first:
            self._reuse.sessions += 1
        tls_label = self.tls_policy if use_tls else "none"
        self.record("delivery.attempt", queue_id=queued.queue_id, mx=mx, ip=ip,
                    port=port, well_known_port=25, recipients=list(rcpts),
                    tls=tls_label, session=number)

        def soft_all(outcome: Outcome) -> dict[str, Outcome]:
            for r in rcpts:
                outcomes.setdefault(r, outcome)
            return outcomes

        if port is None:
            reason = f"connect to {mx}[{ip}]:25: Connection refused (nothing listens there)"
            self.record("delivery.connect_failed", mx=mx, ip=ip, port=25, reason=reason)
            return soft_all(local_outcome("soft", "4.4.1", reason, mx)), False
        conn: ClientConnection | None
        if use_tls and rule is not None and rule.context is not None:
            conn = ClientConnection(ClientConfig(hostname=self.hostname,
                                                 tls_context=rule.context,
                                                 server_hostname=mx))
        else:
            conn = self.client_factory(mx, use_tls)
        try:
            channel = await asyncio.wait_for(self.connect(ip, port, mx, conn),
                                             self.timeouts.connect)
        except (OSError, TimeoutError) as exc:
            what = ("Connection timed out" if isinstance(exc, TimeoutError)
                    else (exc.strerror or str(exc) or type(exc).__name__))
            reason = f"connect to {mx}[{ip}]:25: {what}"
            self.record("delivery.connect_failed", mx=mx, ip=ip, port=port, reason=reason)
            return soft_all(local_outcome("soft", "4.4.1", reason, mx)), False
        session = DeliverySession(self, channel, conn, queued, mx, ip, rcpts, outcomes, now,
                                  number=number, port=port, tls_label=tls_label, rule=rule)
        retry_plain = False
        try:
            retry_plain = await session.run(use_tls)
        except SessionLost as exc:
            soft_all(local_outcome("soft", "4.4.2", str(exc), mx))
        finally:
            with contextlib.suppress(Exception):  # the connection is gone anyway
                await channel.close()
        if retry_plain:
            return outcomes, True
        return soft_all(local_outcome(
            "soft", "4.4.2", f"the session with {mx}[{ip}] ended undecided", mx)), False

    def default_client(self, mx: str, use_tls: bool) -> ClientConnection:
        """The sans-IO client of a session to ``mx`` (STARTTLS with our context or not)."""
        return ClientConnection(ClientConfig(
            hostname=self.hostname,
            tls_context=self.client_tls_context if use_tls else None,
            server_hostname=mx))

    def persist_delivered(self, queued: QueuedMessage, delivered: Mapping[str, Outcome],
                          when: float) -> None:
        """Write 250 outcomes durably NOW (before QUIT, before anything else)."""
        self.queue.record_results(queued.queue_id, [
            RecipientResult(r, RecipientStatus.DELIVERED, o.reply, o.status_code,
                            o.remote_mta, when) for r, o in delivered.items()])
        for r, o in delivered.items():
            o.recorded = True
            self.record("delivery.ok", queue_id=queued.queue_id, recipient=r,
                        reply=o.reply, mx=o.remote_mta, status=o.status_code)


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).isoformat()


def _is_status(code: str) -> bool:
    parts = code.split(".")
    return len(parts) == 3 and parts[0] in ("2", "4", "5") and all(p.isdigit() for p in parts)
