"""What the world's mail servers do about SPF, DKIM and DMARC.

* The **submission** server (587/465) signs what a user sends with the DKIM key of the
  ``From:`` domain, after completing the headers and before queueing (RFC 6376 §5;
  RFC 6409 §8): :func:`sign_submission`.
* The **MX** (port 25) checks every message from an outside client (RFC 7208 SPF against
  the connecting address and MAIL FROM/HELO, RFC 6376 DKIM, RFC 7489 DMARC), prepends an
  ``Authentication-Results:`` header (RFC 8601) and acts on the DMARC disposition:
  ``reject`` -> ``550 5.7.1`` and nothing is stored, ``quarantine`` -> the recipient's
  ``Junk`` folder, ``none`` -> the inbox: :func:`check_inbound`.

Every DNS question goes to the world's own DNS server, never the Internet, without a
socket (a check called on the world's event-loop thread, which also runs that DNS server,
would otherwise wait for itself): :class:`InProcessResolver` hands the query's wire bytes
straight to :meth:`DNSServer.handle <simsmtp.net.dns.DNSServer.handle>` (the same code
that answers ``dig``). The questions show in the trace as ``dns.query``/``dns.answer``
with ``transport="in-process"`` (they cross no socket, so the capture has no packets for
them); the checks show as ``auth.spf``, ``auth.dkim``, ``auth.dmarc`` and ``auth.verdict``,
the signing as ``auth.sign``.

None of this work runs on the world's event loop, which serves every host: a message
with thousands of DKIM signatures (or a 50 MB body to hash) must not freeze the other
sessions. :func:`offload` runs the checks and the signing on a worker thread while the
SMTP core waits for its reply (a :class:`~simsmtp.protocol.handler.PendingReply`), with a
budget in time (``policy.mailauth_timeout``): past it the MX answers ``451 4.7.1`` and
records ``temperror`` for all three checks (in ``report`` mode it delivers the message
with that ``Authentication-Results``), and the submission server answers ``451 4.7.1``.
The thread only computes; the trace, the verdict and the storing happen back on the loop.

DKIM ``t=`` (RFC 6376 §3.5) is the world clock, so a world signs the same bytes run after
run (nbval). dkimpy refuses a ``t=`` more than 10 hours after the real time, so for a world
whose clock runs ahead of the real one ``t=`` is left out (it is only RECOMMENDED) and the
``auth.sign`` event says so.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from simsmtp.protocol.replies import Reply
from simsmtp.world.mailauth import (
    AuthVerdict,
    DNSFunctions,
    DNSTempError,
    check_spf,
    dns_functions,
    evaluate,
    temperror_verdict,
)

from .runtime import Receiver

if TYPE_CHECKING:
    import dns.message
    import dns.resolver

    from simsmtp.protocol.session import Envelope, Session
    from simsmtp.world.model import World

    from .dns import DNSServer
    from .runtime import DNSSite, MailSite

__all__ = [
    "JUNK_FOLDER",
    "TRANSPORT",
    "AnswerCache",
    "InProcessResolver",
    "InboundDecision",
    "answer_cache",
    "check_inbound",
    "inbound_reply",
    "offload",
    "reject_reply",
    "sign_submission",
    "signing_time",
    "submission_reply",
    "world_dns",
]

#: Where quarantined mail goes (RFC 7489 §6.3 p=quarantine: "treat as suspicious", which
#: mailbox providers do with a spam folder).
JUNK_FOLDER = "Junk"
#: The transport named in the trace for a question handed to the DNS server without a
#: socket.
TRANSPORT = "in-process"
#: dkimpy's leeway for a signature time in the future (its ``verify``: 10 hours).
_DKIMPY_SLOP = 36000
#: Worker threads for the mail checks of every world in the process (a milter's
#: processes, in Postfix terms): beside the event loop, never on it.
CHECK_THREADS = 2

_T = TypeVar("_T")


class CheckingHandler(Receiver, Protocol):
    """What the checks and the signing need of the server's handler (a
    :class:`~simsmtp.net.services.CheckingHandler`)."""

    @property
    def world(self) -> World:
        """The world (domains, keys, clock, trace)."""
        ...

    @property
    def site(self) -> MailSite:
        """The running world, as the services see it (where accepted mail goes)."""
        ...


_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(CHECK_THREADS, thread_name_prefix="simsmtp-mailauth")
        return _pool


def offload(work: Callable[[], _T], finish: Callable[[_T], Reply | None],
            expired: Callable[[], Reply | None],
            budget: float) -> asyncio.Future[Reply | None] | Reply | None:
    """Run ``work()`` on a worker thread and ``finish(its result)`` back on the loop.

    What a handler hook returns as its :class:`~simsmtp.protocol.handler.PendingReply`:
    the future's result is ``finish``'s reply. If ``work`` takes longer than ``budget``
    seconds, the reply is ``expired()`` instead and ``work``'s result, when it comes, is
    dropped. If the connection closes first (the core cancels the future), ``finish`` is
    never called: nothing is stored for a client that got no ``250``.

    Outside a running event loop (a test driving a handler by hand) it simply calls
    ``finish(work())`` and returns the reply.

    Raises (in the future):
        Exception: what ``work`` or ``finish`` raised (the core answers ``451 4.3.0``).
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return finish(work())
    outer: asyncio.Future[Reply | None] = loop.create_future()
    inner = loop.run_in_executor(_executor(), work)

    def settle(compute: Callable[[], Reply | None]) -> None:
        if outer.done():  # cancelled (the connection closed) or already expired
            return
        try:
            outer.set_result(compute())
        except Exception as exc:
            outer.set_exception(exc)

    timer = loop.call_later(budget, settle, expired)

    def on_done(future: asyncio.Future[_T]) -> None:
        timer.cancel()
        if future.cancelled() or outer.done():
            return
        error = future.exception()
        if error is not None:
            if not outer.done():
                outer.set_exception(error)
            return
        settle(lambda: finish(future.result()))

    inner.add_done_callback(on_done)
    return outer


# ------------------------------------------------------------------------------ DNS


class InProcessResolver:
    """A dnspython-like resolver that asks the world's DNS server without a socket.

    ``resolve()`` builds the query with dnspython, gives its wire bytes to
    :meth:`DNSServer.handle <simsmtp.net.dns.DNSServer.handle>` and reads the answer, raising
    what :class:`dns.resolver.Resolver` raises (``NXDOMAIN``, ``NoAnswer``,
    ``NoNameservers`` for SERVFAIL/REFUSED, ``Timeout`` for a dropped query), so
    :func:`simsmtp.world.mailauth.dns_functions` can use it as it is.

    Args:
        server: the world's running DNS server.
        client: the asking host's address, as the trace shows it (port 0: no socket).
        ids: random stream for the query ids, so the trace repeats run after run.
    """

    def __init__(self, server: DNSServer, client: tuple[str, int],
                 ids: Any = None) -> None:
        self.server = server
        self.client = client
        self.ids = ids

    def query(self, qname: Any, rdtype: Any) -> dns.message.Message | None:
        """Ask one question; the parsed response, or None when the server dropped it."""
        import dns.message

        query = dns.message.make_query(qname, rdtype)
        if self.ids is not None:
            query.id = self.ids.getrandbits(16)  # RFC 1035 §4.1.1: 16-bit ID
        wire = self.server.handle(query.to_wire(), self.client, TRANSPORT)
        return None if wire is None else dns.message.from_wire(wire)

    def resolve(self, qname: Any, rdtype: Any = "A", rdclass: Any = "IN", tcp: bool = False,
                source: Any = None, raise_on_no_answer: bool = True, source_port: int = 0,
                lifetime: float | None = None, search: bool | None = None) -> Any:
        """Like :meth:`dns.resolver.Resolver.resolve` (absolute names, no search list)."""
        import dns.exception
        import dns.name
        import dns.rcode
        import dns.rdataclass
        import dns.rdatatype
        import dns.resolver

        errors: Any = dns.resolver  # its exception classes take untyped keyword arguments
        name = dns.name.from_text(qname) if isinstance(qname, str) else qname
        rtype = dns.rdatatype.RdataType.make(rdtype)
        response: Any = self.query(name, rtype)
        if response is None:
            raise dns.exception.Timeout
        rcode = response.rcode()
        if rcode == dns.rcode.NXDOMAIN:  # RFC 1035 §4.1.1 rcode 3
            raise errors.NXDOMAIN(qnames=[name], responses={name: response})
        if rcode != dns.rcode.NOERROR:  # SERVFAIL, REFUSED ...: try again later
            raise errors.NoNameservers(
                request=response, errors=[(self.server.name, False, 53,
                                           dns.rcode.to_text(rcode), response)])
        answer = dns.resolver.Answer(name, rtype, dns.rdataclass.IN, response,
                                     self.server.name, 53)
        if answer.rrset is None and raise_on_no_answer:
            raise errors.NoAnswer(response=response)
        return answer


_MISSING = object()


class AnswerCache:
    """What one MX remembers of its DNS answers: its caching resolver.

    A real MX asks a local caching resolver, which keeps every answer (and every NXDOMAIN,
    RFC 2308) for its TTL, so the second message from a domain costs no DNS traffic. The
    world's MX keeps its answers for as long as the world's DNS does not change instead:
    the DNS server's zone data is rebuilt only after an edit, and a new zone data object
    empties this cache, so a learner who edits an SPF or DMARC record sees the next message
    checked against the new record at once, never a stale answer. A failure for now
    (REFUSED outside the world's zones, SERVFAIL) is kept as well, as RFC 2308 §7.1 allows,
    until the world changes. Only questions that reach the DNS server show in the trace.
    What is computed from DNS alone (an SPF result: RFC 7208 §4 depends on the client's
    address, the identities and DNS, nothing else) is kept here too: :meth:`remember`.

    It holds at most :attr:`max_entries` answers (a caching resolver's size limit, as
    unbound's ``rrset-cache-size``): past it the oldest answer is forgotten first, so mail
    from ever new domains or addresses cannot grow the world without bound.

    Args:
        server: the world's DNS server (its :meth:`~simsmtp.net.dns.DNSServer.zone_data`
            says when the world changed).
        max_entries: answers (and computed results) kept at most.
    """

    #: The default size limit (an answer is a few hundred bytes).
    DEFAULT_MAX_ENTRIES = 4096

    def __init__(self, server: DNSServer, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.server = server
        self.max_entries = max_entries
        #: The host's wrapped lookups (:func:`world_dns` makes them once).
        self.lookups: DNSFunctions | None = None
        self._version: object = None
        self._answers: dict[tuple[str, str], Any] = {}

    def wrap(self, functions: DNSFunctions) -> DNSFunctions:
        """The same four lookups, answered from this cache when the world did not change."""
        return DNSFunctions(dns_txt=self._cached("TXT", functions["dns_txt"]),
                            dns_a=self._cached("A", functions["dns_a"]),
                            dns_aaaa=self._cached("AAAA", functions["dns_aaaa"]),
                            dns_mx=self._cached("MX", functions["dns_mx"]))

    def remember(self, key: tuple[Any, ...], compute: Any) -> Any:
        """``compute()``, or what it gave for ``key`` while the world's DNS did not change."""
        if not self._current():
            return compute()
        key = ("=", *key)
        if key in self._answers:
            return self._answers[key]
        value = compute()
        self._keep(key, value)
        return value

    def __len__(self) -> int:
        return len(self._answers)

    def _keep(self, key: tuple[Any, ...], value: Any) -> None:
        """Store an answer, forgetting the oldest ones past :attr:`max_entries`."""
        answers = self._answers
        while answers and len(answers) >= self.max_entries:
            answers.pop(next(iter(answers)), None)
        answers[key] = value

    def _current(self) -> bool:
        """Empty the cache if the world's DNS changed; False when it cannot be served."""
        try:
            version = self.server.zone_data()
        except Exception:  # broken world data: every question goes to the server
            self._version = None
            self._answers.clear()
            return False
        if version is not self._version:
            self._version = version
            self._answers.clear()
        return True

    def _cached(self, rtype: str, lookup: Any) -> Any:
        answers = self._answers

        def cached(name: str) -> Any:
            if not self._current():
                return lookup(name)
            key = (rtype, name.lower().rstrip("."))
            hit = answers.get(key, _MISSING)
            if hit is _MISSING:
                try:
                    hit = lookup(name)
                except DNSTempError as exc:
                    hit = exc
                self._keep(key, hit)
            if isinstance(hit, DNSTempError):
                raise DNSTempError(*hit.args)
            return None if hit is None else list(hit)

        return cached


def world_dns(network: DNSSite, host: str) -> DNSFunctions:
    """The lookup functions (``dns_txt``, ``dns_a``, ``dns_aaaa``, ``dns_mx``) the checks
    use, asking ``network``'s DNS server in-process on behalf of ``host``, through the
    host's :class:`AnswerCache`.

    Made for the world's event-loop thread (the MX). From a notebook's own thread,
    ``dns_functions(net.resolver())`` asks the same server over a real socket.
    """
    cache = answer_cache(network, host)
    if cache.lookups is None:
        info = network.hosts.get(host)
        client = (info.ip if info is not None else "127.0.0.1", 0)
        resolver = InProcessResolver(cache.server, client,
                                     network.world.ids.rng("mailauth.dns"))
        cache.lookups = cache.wrap(dns_functions(resolver))
    return cache.lookups


def answer_cache(network: DNSSite, host: str) -> AnswerCache:
    """``host``'s :class:`AnswerCache` in the running ``network`` (made on first use)."""
    assert network.dns is not None, "the world is not running"
    cache: AnswerCache | None = network.answer_caches.get(host)
    if cache is None or cache.server is not network.dns:
        cache = network.answer_caches[host] = AnswerCache(network.dns)
    return cache


# --------------------------------------------------------------------------- signing


def signing_time(world: World, now: float | None = None) -> int | None:
    """The DKIM ``t=`` to sign with: the world clock, or None (leave ``t=`` out) when the
    world clock is ahead of the real time by more than verifiers accept (dkimpy: 10 h).

    Args:
        world: its clock gives the time.
        now: the real time (default ``time.time()``).
    """
    stamp = int(world.clock.now())
    real = time.time() if now is None else now
    return None if stamp > real + _DKIMPY_SLOP else stamp


def _author_domain(message: bytes) -> str | None:
    from simsmtp.world.mailauth import author_domains

    domains = author_domains(message)
    return domains[0] if len(domains) == 1 else None


def sign_submission(handler: CheckingHandler, envelope: Envelope,
                    content: bytes | None = None) -> bytes:
    """The submitted message, DKIM-signed when its ``From:`` domain has a key and this host
    serves that domain (its own domain, or one whose MX it is); unchanged otherwise.

    rsa-sha256, relaxed/relaxed, the header fields of
    :data:`~simsmtp.world.mailauth.DEFAULT_HEADERS` (RFC 6376 §5.4.1: From is required).
    Records ``auth.sign`` in the trace. This signs where it is called; the submission
    server itself uses :func:`submission_reply`, which signs beside the event loop.
    """
    content = envelope.content if content is None else content
    signer = _signer(handler, envelope, content)
    return content if signer is None else signer[1](signer[0]())


def submission_reply(handler: CheckingHandler, session: Session, envelope: Envelope,
                     content: bytes) -> asyncio.Future[Reply | None] | Reply | None:
    """What the submission server answers a message: ``content`` is DKIM-signed on a
    worker thread (see :func:`offload`, budget ``policy.mailauth_timeout``: past it
    ``451 4.7.1``), then stored or queued back on the loop; unsigned mail is stored at
    once."""
    signer = _signer(handler, envelope, content)

    def store(message: bytes) -> Reply | None:
        return handler.site.accept(handler, session, envelope, content=message)

    if signer is None:
        return store(content)
    work, record = signer
    budget = float(handler.host.policy.mailauth_timeout)

    def expired() -> Reply | None:
        handler.world.trace.record("auth.error", handler.host.name,
                                   queue_id=envelope.queue_id,
                                   error=f"DKIM signing took longer than {budget:g} s")
        return timeout_reply(budget, "DKIM signing")

    return offload(work, lambda signed: store(record(signed)), expired, budget)


def _signer(handler: CheckingHandler, envelope: Envelope, content: bytes,
            ) -> tuple[Callable[[], bytes], Callable[[bytes], bytes]] | None:
    """How to sign ``content``: ``(sign, record)``: ``sign()`` does the CPU work (any
    thread) and returns the signed message; ``record(signed)`` records ``auth.sign`` (on
    the loop) and returns it. None when there is nothing to sign."""
    from simsmtp.world.mailauth import parse_signature, sign

    world, host = handler.world, handler.host
    domain = _author_domain(content)
    if domain is None:
        return None
    record = world.domains.get(domain)
    if record is None or not record.dkim_selector:
        return None
    if domain != host.domain and domain not in world.local_domains(host):
        return None  # not our domain: we hold no key for it
    selector = record.dkim_selector
    stamp = signing_time(world)

    def work() -> bytes:
        key = world.dkim_key(domain)
        assert key is not None
        return sign(content, domain, selector, key, timestamp=stamp,
                    timed=stamp is not None)

    def trace(signed: bytes) -> bytes:
        header = signed[:len(signed) - len(content)]
        tags = parse_signature(header.split(b":", 1)[1])
        world.trace.record(
            "auth.sign", host.name, queue_id=envelope.queue_id, domain=domain,
            selector=selector, key_name=record.dkim_name(), bits=record.dkim_bits,
            headers=tags.get("h", ""), body_hash=tags.get("bh", ""), timestamp=stamp,
            note="" if stamp is not None else
            "t= left out: the world clock is more than 10 hours ahead of the real time, "
            "and verifiers (dkimpy) refuse a signature from the future",
            header=header.decode("ascii", "replace"))
        return signed

    return work, trace


# ------------------------------------------------------------------------- receiving


@dataclass(frozen=True)
class InboundDecision:
    """What the MX decided about one message.

    Attributes:
        action: ``"reject"`` (550, nothing stored), ``"junk"`` (the Junk folder),
            ``"inbox"``, ``"defer"`` (451: the checks ran past their budget), or
            ``"skipped"`` (no checks: a trusted client, or ``policy.mailauth = "off"``).
        content: the message to store: with our Authentication-Results on top (and any
            forged one claiming our name removed), unless skipped.
        reply: the ``550 5.7.1`` for a reject, else None.
        folder: where local recipients get it (``"Junk"``, or None for the inbox).
        verdict: the SPF, DKIM and DMARC results (None when skipped).
        reason: why, in a few words.
    """

    action: str
    content: bytes
    reply: Reply | None = None
    folder: str | None = None
    verdict: AuthVerdict | None = None
    reason: str = ""


def reject_reply(domain: str) -> Reply:
    """The reply refusing a message whose From: domain asks for ``p=reject``: RFC 7489
    §6.6.4 / §10.3 let the receiver refuse it in the SMTP dialogue; RFC 3463 §3.8 X.7.1:
    delivery not authorized, message refused."""
    return Reply(550, f"5.7.1 Email rejected per DMARC policy for {domain}")


def _trusted(handler: CheckingHandler, session: Session) -> str:
    """Why this client's mail is not checked ("" when it is)."""
    if session.authenticated:
        return "an authenticated client (submission): not checked"
    ip = session.peer[0] if session.peer else None
    if ip is not None and handler.host.policy.relay_networks:
        with contextlib.suppress(ValueError):
            if handler.host.policy.may_relay(ip):
                # Postfix mynetworks, OpenDMARC IgnoreHosts: our own clients.
                return f"{ip} is in relay_networks (trusted): not checked"
    return ""


def check_inbound(handler: CheckingHandler, session: Session,
                  envelope: Envelope) -> InboundDecision:
    """Run SPF, DKIM and DMARC on a message the MX received, stamp it, and decide.

    The host's ``policy.mailauth`` says how far to go: ``"enforce"`` acts on the DMARC
    disposition, ``"report"`` only adds the header, ``"off"`` does nothing. Mail from an
    authenticated client or from ``relay_networks`` is not checked. Records ``auth.spf``,
    ``auth.dkim``, ``auth.dmarc`` and ``auth.verdict`` in the trace.

    This runs the checks where it is called; the MX itself uses :func:`inbound_reply`,
    which runs them beside the event loop.
    """
    skipped = _skip(handler, session, envelope)
    if skipped is not None:
        return skipped
    return _decide(handler, session, envelope, _inbound_work(handler, session, envelope)())


def inbound_reply(handler: CheckingHandler, session: Session,
                  envelope: Envelope) -> asyncio.Future[Reply | None] | Reply | None:
    """What the MX answers a message: its checks run on a worker thread with the budget
    ``policy.mailauth_timeout`` (see :func:`offload`), then the message is stored (or
    refused, or put in Junk) back on the loop; a :class:`~simsmtp.protocol.handler.
    PendingReply` for the SMTP core. Mail that is not checked is stored at once."""
    skipped = _skip(handler, session, envelope)
    if skipped is not None:
        return _store(handler, session, envelope, skipped)
    budget = float(handler.host.policy.mailauth_timeout)

    def finish(outcome: AuthVerdict | Exception) -> Reply | None:
        return _store(handler, session, envelope,
                      _decide(handler, session, envelope, outcome))

    def expired() -> Reply | None:
        decision = _expired(handler, session, envelope, budget)
        return _store(handler, session, envelope, decision)

    return offload(_inbound_work(handler, session, envelope), finish, expired, budget)


def _store(handler: CheckingHandler, session: Session, envelope: Envelope,
           decision: InboundDecision) -> Reply | None:
    if decision.reply is not None:
        return decision.reply
    return handler.site.accept(handler, session, envelope, folder=decision.folder,
                                  content=decision.content)


def _base(handler: CheckingHandler, envelope: Envelope) -> dict[str, Any]:
    return {"queue_id": envelope.queue_id, "sender": envelope.mail_from,
            "recipients": list(envelope.rcpt_tos), "mode": handler.host.policy.mailauth}


def _skip(handler: CheckingHandler, session: Session,
          envelope: Envelope) -> InboundDecision | None:
    """The decision for mail that is not checked (policy off, trusted client), or None."""
    mode = handler.host.policy.mailauth
    why = "policy.mailauth is off: not checked" if mode == "off" else _trusted(handler,
                                                                              session)
    if not why:
        return None
    handler.world.trace.record("auth.verdict", handler.host.name, **_base(handler, envelope),
                               action="skipped", reason=why)
    return InboundDecision("skipped", envelope.content, reason=why)


def _inbound_work(handler: CheckingHandler, session: Session,
                  envelope: Envelope) -> Callable[[], AuthVerdict | Exception]:
    """The checks, as a function for a worker thread: the lookups are prepared here, on
    the loop; the function computes and records nothing but the DNS questions."""
    host = handler.host
    client_ip = session.peer[0] if session.peer else "0.0.0.0"
    helo, mail_from = session.helo_name or "", envelope.mail_from or ""
    content = envelope.content
    try:
        lookups = world_dns(handler.site, host.name)
        cache = answer_cache(handler.site, host.name)
    except Exception as exc:  # the failure is reported by _decide, on the loop
        failure = exc
        return lambda: failure

    def work() -> AuthVerdict | Exception:
        try:
            spf = cache.remember(("spf", client_ip, mail_from, helo), lambda: check_spf(
                client_ip, mail_from, helo, **lookups, receiver=host.name))
            return evaluate(content, client_ip=client_ip, helo=helo, mail_from=mail_from,
                            **lookups, receiver=host.name, spf=spf)
        except Exception as exc:  # a bug must not lose mail: _decide delivers unchecked
            return exc

    return work


def _decide(handler: CheckingHandler, session: Session, envelope: Envelope,
            outcome: AuthVerdict | Exception) -> InboundDecision:
    """Stamp and decide (on the loop): records the verdict in the trace."""
    world, host = handler.world, handler.host
    base = _base(handler, envelope)
    mode = host.policy.mailauth
    content = envelope.content
    if isinstance(outcome, Exception):
        exc = outcome
        why = f"the checks failed ({type(exc).__name__}: {exc}): delivered unchecked"
        world.trace.record("auth.error", host.name, **base, error=f"{type(exc).__name__}: "
                                                                  f"{exc}")
        world.trace.record("auth.verdict", host.name, **base, action="skipped", reason=why)
        return InboundDecision("skipped", content, reason=why)
    verdict = outcome
    verdict.record(world.trace, host.name)
    client_ip = session.peer[0] if session.peer else "0.0.0.0"
    stamped = verdict.stamp(content, host.name, comments=True)
    disposition = verdict.disposition
    domain = verdict.dmarc.from_domain
    if mode != "enforce" or disposition == "none":
        action, reply, folder = "inbox", None, None
        reason = (f"policy.mailauth is {mode}: delivered whatever DMARC says"
                  if mode != "enforce" and disposition != "none"
                  else f"DMARC {verdict.dmarc.result}: delivered to the inbox")
    elif disposition == "reject":
        action, reply, folder = "reject", reject_reply(domain), None
        reason = f"DMARC fail and {domain} asks p=reject: refused with 550 5.7.1"
    else:
        action, reply, folder = "junk", None, JUNK_FOLDER
        reason = f"DMARC fail and {domain} asks p=quarantine: delivered to {JUNK_FOLDER}"
    world.trace.record("auth.verdict", host.name, **base, action=action, reason=reason,
                       client_ip=client_ip, helo=session.helo_name,
                       summary=verdict.summary(), disposition=disposition,
                       authentication_results=verdict.authentication_results(
                           host.name, comments=True),
                       reply=str(reply) if reply is not None else None,
                       steps=list(verdict.steps))
    return InboundDecision(action, stamped, reply, folder, verdict, reason)


def timeout_reply(budget: float, what: str) -> Reply:
    """``451 4.7.1`` for checks that took longer than their budget: try again later
    (RFC 3463 §3.8 X.7.1 as Postfix's milter timeout says it; RFC 7489 §6.6.3: a
    temporary failure may defer the message)."""
    return Reply(451, f"4.7.1 Error: {what} took longer than {budget:g} s; "
                      "try again later")


def _expired(handler: CheckingHandler, session: Session, envelope: Envelope,
             budget: float) -> InboundDecision:
    """The decision when the checks ran past their budget: temperror, honestly."""
    world, host = handler.world, handler.host
    mode = host.policy.mailauth
    why = f"checks took longer than {budget:g} s"
    verdict = temperror_verdict(envelope.content, client_ip=session.peer[0] if session.peer
                                else "0.0.0.0", helo=session.helo_name or "",
                                mail_from=envelope.mail_from or "", why=why)
    verdict.record(world.trace, host.name)
    if mode == "enforce":  # DMARC cannot be applied now: defer (RFC 7489 §6.6.3)
        action, reply = "defer", timeout_reply(budget, "the SPF, DKIM and DMARC checks")
        reason = f"the checks took longer than {budget:g} s: temperror, deferred with 451"
    else:
        action, reply = "inbox", None
        reason = (f"the checks took longer than {budget:g} s: temperror, delivered "
                  "(policy.mailauth is report)")
    world.trace.record("auth.verdict", host.name, **_base(handler, envelope), action=action,
                       reason=reason, helo=session.helo_name, summary=verdict.summary(),
                       disposition="none",
                       authentication_results=verdict.authentication_results(
                           host.name, comments=True),
                       reply=str(reply) if reply is not None else None,
                       steps=list(verdict.steps))
    stamped = verdict.stamp(envelope.content, host.name, comments=True)
    return InboundDecision(action, stamped, reply, None, verdict, reason)
