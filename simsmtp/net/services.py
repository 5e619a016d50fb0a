"""The world's mail services: the policy handlers behind each listening port.

* :class:`InboundHandler` (port 25, role ``mx``): accepts mail for the host's domains,
  ``550 5.1.1`` for unknown users, ``454 4.7.1 Relay access denied`` (or ``554 5.7.1`` with
  the policy ``unauth_destination = "reject"``) for foreign domains from unauthenticated
  clients outside ``relay_networks``; VRFY runs the same recipient checks, as Postfix's
  does (``252`` for a user who exists, ``550 5.1.1`` for one who does not); prepends a
  ``Received:`` header and stores into the recipients' Maildirs (``fsync``ed) before the
  ``250`` (RFC 5321 §6.1; a real MTA commits the message to its queue at the ``250`` and
  its delivery agent writes the mailbox later: this world does both at once).
* :class:`SubmissionHandler` (587 STARTTLS then AUTH, 465 implicit TLS; role
  ``submission``): the users of the host's own domains log in and may send anywhere, as
  themselves only (Postfix ``reject_sender_login_mismatch``); remote recipients go to the
  durable outbound queue, local ones straight to their mailboxes.
* POP3 (110, 995; role ``pop3``): :func:`pop3_authenticator` opens a user's Maildir, one
  session at a time (:class:`MaildropLocks`, RFC 1939 §8); IMAP (143, 993; the same
  role): :func:`imap_authenticator` opens the user's folders.

Every hook first asks the world's fault rules (:class:`~simsmtp.world.faults.FaultBook`),
so a notebook can make any host greylist, stall or hang up on purpose. The protocol cores
decide syntax and sequence; these handlers only decide acceptance.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.events import NEED_DATA, ConnectionEvent
from simsmtp.protocol.handler import Handler, PendingReply
from simsmtp.protocol.persona import Persona, clip
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.server import ServerConnection
from simsmtp.protocol.session import Envelope, Session

from .authpolicy import inbound_reply, submission_reply

if TYPE_CHECKING:
    from simsmtp.world.model import Host

    from .runtime import MailSite

#: RFC 3848 §2 / RFC 5321 §4.4: the "with" protocol of a Received: header.
def _with_protocol(session: Session) -> str:
    proto = "ESMTP" if session.esmtp else "SMTP"
    if session.tls:
        proto += "S"
    if session.authenticated:
        proto += "A"
    return proto


class FaultInjected(Exception):
    """Raised inside a hook when a fault rule says: drop the connection."""


class WorldHandler(Handler):
    """What every service of a host shares: fault rules and the world's persona.

    Args:
        site: the running world, as the services see it.
        host: the world host this service runs on.
        service: ``"smtp"``, ``"submission"`` or ``"smtps"``.
    """

    def __init__(self, site: MailSite, host: Host, service: str) -> None:
        self.site = site
        self.world = site.world
        self.host = host
        self.service = service
        self.persona = Persona(host.name, "Postfix")
        #: Set by a fault rule: drop the connection (the adapter closes the socket).
        self.drop = False
        #: Set by a fault rule: delay the next reply by this many seconds.
        self.delay = 0.0

    # -- fault rules --------------------------------------------------------------------
    def fault(self, command: str, argument: str = "") -> Reply | None:
        """Ask the world's fault rules about ``command``; a reply to give instead, or None."""
        rule = self.world.faults.check(self.host.name, command, argument)
        if rule is None:
            return None
        if rule.delay:
            self.delay = max(self.delay, rule.delay)
        if rule.drop:
            self.drop = True
        return rule.reply

    # -- hooks --------------------------------------------------------------------------
    def handle_CONNECT(self, session: Session) -> Reply | None:
        return self.fault("CONNECT")

    def handle_EHLO(self, session: Session, hostname: str) -> Reply | None:
        return self.fault("EHLO", hostname)

    def handle_HELO(self, session: Session, hostname: str) -> Reply | None:
        return self.fault("HELO", hostname)

    def handle_MAIL(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        return self.fault("MAIL", address)

    def handle_QUIT(self, session: Session) -> Reply | None:
        return self.fault("QUIT")

    def handle_RCPT(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        """Our domains: the user must exist; other domains: only for those who may relay."""
        fault = self.fault("RCPT", address)
        if fault is not None:
            return fault
        if self.is_local(address):
            return self.local_rcpt(address)
        if self.may_relay(session):
            return None
        return self.relay_refusal(address)

    def relay_refusal(self, address: str) -> Reply:
        """The policy's answer to an unauthorised relay attempt: Postfix's default
        ``defer_unauth_destination`` (454 4.7.1) or ``reject_unauth_destination`` (554 5.7.1)."""
        key = "relay_rejected" if self.host.policy.unauth_destination == "reject" \
            else "relay_denied"
        return self.persona.reply(key, addr=address)

    def handle_ETRN(self, session: Session, domain: str) -> Reply | None:
        """Postfix's ETRN: a flush only for ``fast_flush_domains`` (by default the domains
        it relays for); a world host relays for no domain, so ``459 <domain>: service
        unavailable``, as a real Postfix answers for its own final destinations."""
        return self.persona.reply("etrn_unavailable", arg=clip(domain))

    def handle_VRFY(self, session: Session, address: str) -> Reply | None:
        """Postfix's VRFY: the recipient checks of RCPT TO on the argument, then ``252 2.0.0
        <address>`` (exists, or will be relayed) or the refusal RCPT TO would get.

        A bare local part (``VRFY bob``) is taken as a user of this host's domain (Postfix
        appends ``$myorigin``, which in its usual set-up is that domain).
        """
        bare = address.strip()
        if bare.startswith("<") and bare.endswith(">"):
            bare = bare[1:-1]
        if not bare or " " in bare:  # Postfix: "VRFY <>", "VRFY Bob Builder"
            return self.persona.reply("bad_recipient")
        full = self.qualify(bare)
        if self.is_local(full):
            refusal = self.local_rcpt(full)
        elif self.may_relay(session):
            refusal = None
        else:
            refusal = self.relay_refusal(full)
        # 252 echoes the argument as given (Postfix: "VRFY <bob@...>" -> "252 2.0.0 <bob@...>")
        return refusal or self.persona.reply("vrfy_default", arg=clip(address.strip()))

    def may_relay(self, session: Session) -> bool:
        """Whether this client may send mail to other domains through us."""
        return False

    def handle_AUTH(self, session: Session, mechanism: str, username: str,
                    password: str) -> bool:
        """Check the password of a user of this host's own domains (user name: the
        address, or the local part); users of other domains never log in here."""
        if self.fault("AUTH", username) is not None:
            return False
        address = self.qualify(username)
        user = self.world.user(address)
        return user is not None and self.serves(user.address) \
            and user.check_password(password)

    def serves(self, address: str) -> bool:
        """Whether ``address`` belongs to this host's own domains (its domain, or one whose
        mail it keeps): whose users may log in here."""
        domain = address.rpartition("@")[2].lower()
        return domain == self.host.domain.lower() or domain in (
            d.lower() for d in self.site.local_domains(self.host.name))

    # -- helpers --------------------------------------------------------------------------
    def qualify(self, name: str) -> str:
        """``alice`` -> ``alice@example.com`` (the host's domain); addresses unchanged."""
        return name if "@" in name else f"{name}@{self.host.domain}"

    def is_local(self, address: str) -> bool:
        """Whether this host keeps mail for the domain of ``address``."""
        return self.world.keeps_mail_for(self.host, address.rpartition("@")[2])

    def local_rcpt(self, address: str) -> Reply | None:
        """None if the user exists here (or it is postmaster), else Postfix's
        ``550 5.1.1 ... User unknown``."""
        if self.world.user(address) is not None:
            return None
        if address.rpartition("@")[0].lower() == "postmaster":
            return None  # RFC 5321 §4.5.1: postmaster@ every local domain is accepted
        return self.persona.reply("user_unknown", addr=address)

    def final_recipients(self, envelope: Envelope) -> list[str]:
        """The envelope's recipients as mailbox addresses: the domainless ``<Postmaster>``
        (RFC 5321 §4.5.1) is this host's ``postmaster@<domain>``."""
        return [r if "@" in r else f"postmaster@{self.host.domain}"
                for r in envelope.rcpt_tos]

    def received(self, session: Session, envelope: Envelope, recipient: str | None) -> bytes:
        """The ``Received:`` header this host prepends (RFC 5321 §4.4, RFC 3848)."""
        ip = session.peer[0] if session.peer else "unknown"
        ptr = self.site.name_of(ip) or "unknown"
        helo = session.helo_name or ptr
        lines = [f"Received: from {helo} ({ptr} [{ip}])"]
        if session.tls:
            lines.append(f"\t(using {session.tls.get('version')} with cipher "
                         f"{session.tls.get('cipher')})")
        if session.authenticated:
            lines.append(f"\t(Authenticated sender: {session.authenticated_user})")
        by = f"\tby {self.host.name} (Postfix) with {_with_protocol(session)} " \
             f"id {envelope.queue_id}"
        if recipient:
            lines.append(by)
            lines.append(f"\tfor <{recipient}>; {self.date()}")
        else:
            lines.append(f"{by};")
            lines.append(f"\t{self.date()}")
        return ("\r\n".join(lines) + "\r\n").encode("utf-8", "surrogateescape")

    def date(self) -> str:
        """The world clock as an RFC 5322 date."""
        return self.world.clock.rfc5322()

    def storage_error(self, exc: Exception) -> Reply:
        """RFC 5321 §6.1: never 250 for a message not safely stored."""
        self.world.trace.record("store.error", host=self.host.name, error=str(exc))
        return Reply(451, "4.3.0 Error: queue file write error")


class InboundHandler(WorldHandler):
    """Port 25 of an ``mx`` host: mail for its domains, relaying only for trusted clients."""

    def may_relay(self, session: Session) -> bool:
        """Postfix ``permit_mynetworks, permit_sasl_authenticated``."""
        if session.authenticated:
            return True
        if session.peer is None or self.site.queue_of(self.host.name) is None:
            return False
        return self.host.policy.may_relay(session.peer[0])

    def handle_DATA(self, session: Session, envelope: Envelope,
                    ) -> Reply | PendingReply | None:
        fault = self.fault("MESSAGE", envelope.mail_from or "")
        if fault is not None:
            return fault
        # SPF, DKIM, DMARC (RFC 7208, 6376, 7489): stamp Authentication-Results (RFC 8601),
        # then 550 5.7.1 for p=reject, the Junk folder for p=quarantine. The checks run
        # beside the event loop: the reply comes later (a PendingReply).
        return inbound_reply(self, session, envelope)


class SubmissionHandler(WorldHandler):
    """Ports 587 and 465 of a ``submission`` host: authenticated users send anywhere."""

    def may_relay(self, session: Session) -> bool:
        """Only authenticated users send to other domains (RFC 6409 §4.3)."""
        return session.authenticated

    def handle_MAIL(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        """A logged-in user sends as themselves only (Postfix
        ``reject_sender_login_mismatch``; RFC 6409 §4.3 leaves such checks to the
        submission server's local policy). The null sender is allowed (bounces,
        auto-replies, RFC 3834)."""
        fault = self.fault("MAIL", address)
        if fault is not None:
            return fault
        if address and not self.owns(session, address):
            return self.not_owned(session, address, "Sender address")
        return None

    def handle_DATA(self, session: Session, envelope: Envelope,
                    ) -> Reply | PendingReply | None:
        fault = self.fault("MESSAGE", envelope.mail_from or "")
        if fault is not None:
            return fault
        refusal = self.check_from(session, envelope.content)
        if refusal is not None:
            return refusal
        # The envelope keeps what the client sent (the trace shows it); what is stored and
        # relayed gets the completed headers and the DKIM signature (RFC 6376 §5), made
        # beside the event loop (the reply comes later: a PendingReply).
        return submission_reply(self, session, envelope, self.complete_headers(envelope))

    # -- who may send as whom -----------------------------------------------------------
    def owns(self, session: Session, address: str) -> bool:
        """Whether the logged-in user may use ``address`` as a sender: it is their own
        (Postfix ``smtpd_sender_login_maps`` with one owner per address); anyone may when
        ``policy.reject_sender_login_mismatch`` is false, or nobody is logged in."""
        user = session.authenticated_user
        if not user or not self.host.policy.reject_sender_login_mismatch:
            return True
        owner = self.world.user(self.qualify(user))
        return owner is not None and owner.address.lower() == address.lower()

    def not_owned(self, session: Session, address: str, what: str) -> Reply:
        """Postfix's refusal: ``553 5.7.1 <addr>: Sender address rejected: not owned by
        user <login>`` (RFC 3463 §3.8 X.7.1: not authorized)."""
        login = self.qualify(session.authenticated_user or "")
        return Reply(553, f"5.7.1 <{address}>: {what} rejected: not owned by user {login}")

    def check_from(self, session: Session, content: bytes) -> Reply | None:
        """The ``From:`` header must name the logged-in user's domain only, or this server
        would DKIM-sign a forgery with its domain's key (RFC 7489 §3.1: DMARC trusts the
        From: domain): ``550 5.7.1`` otherwise (the end of DATA has no 553, RFC 5321
        §4.3.2)."""
        user = session.authenticated_user
        if not user or not self.host.policy.reject_sender_login_mismatch:
            return None
        from simsmtp.world.mailauth import author_domains

        login = self.qualify(user)
        own = login.rpartition("@")[2].lower()
        try:
            domains = author_domains(content)
        except Exception:  # a header section that cannot be read
            domains = []
        stranger = next((d for d in domains if d.lower() != own), None)
        if stranger is None:
            return None
        return Reply(550, f"5.7.1 From: domain {stranger} rejected: not owned by user "
                          f"{login}")

    def complete_headers(self, envelope: Envelope) -> bytes:
        """Add ``Date:`` and ``Message-ID:`` when the client left them out (RFC 6409 §8.1-8.3)."""
        head = envelope.content.partition(b"\r\n\r\n")[0].lower()
        lines = [b"\r\n" + line for line in head.split(b"\r\n")]
        extra = b""
        if not any(line.startswith(b"\r\ndate:") for line in lines):
            extra += f"Date: {self.date()}\r\n".encode()
        if not any(line.startswith(b"\r\nmessage-id:") for line in lines):
            mid = self.world.ids.message_id(self.host.domain, envelope.queue_id)
            extra += f"Message-ID: {mid}\r\n".encode()
        return extra + envelope.content


class ServiceConnection:
    """A protocol core plus what a fault rule may do to it (delay a reply, hang up).

    The listener drives this like the core itself (same interface); a fault's drop makes
    :attr:`closed` true and discards what the core wanted to send, so the client sees the
    connection cut without an answer.
    """

    def __init__(self, core: Any, handler: WorldHandler | None,
                 on_close: Callable[[], None] | None = None) -> None:
        self.core = core
        self.handler = handler
        self.NEED_DATA = NEED_DATA
        self._waker: Callable[[], None] | None = None
        #: Called once when the connection is over (the core closed, or EOF).
        self.on_close = on_close

    def set_waker(self, waker: Callable[[], None]) -> None:
        """The listener's way in from outside: ``waker()`` (thread-safe) makes it ask the
        core for events again (an IMAP session in IDLE learns of a new delivery)."""
        self._waker = waker

    def wake(self) -> None:
        """Wake the connection, if a listener drives it (see :meth:`set_waker`)."""
        if self._waker is not None:
            self._waker()

    def _ended(self) -> None:
        on_close, self.on_close = self.on_close, None
        if on_close is not None:
            on_close()

    def receive_data(self, data: bytes) -> None:
        self.core.receive_data(data)
        if not data:  # EOF: the client is gone, whatever the core still reports
            self._ended()

    def next_event(self) -> object:
        event = self.core.next_event()
        if self.on_close is not None and self.core.closed:
            self._ended()
        handler = self.handler
        if handler is not None and handler.delay and isinstance(event, ConnectionEvent):
            event = dataclasses.replace(event, delay=max(event.delay, handler.delay))
            handler.delay = 0.0
        return event

    def data_to_send(self) -> bytes:
        data: bytes = self.core.data_to_send()
        if self.handler is not None and self.handler.drop:
            return b""
        return data

    @property
    def closed(self) -> bool:
        closed = bool(self.core.closed or (self.handler is not None and self.handler.drop))
        if closed and self.on_close is not None:
            self._ended()
        return closed

    @property
    def receiving_content(self) -> bool:
        """The core reads message content now (the listener's minimum data rate applies)."""
        return isinstance(self.core, ServerConnection) and self.core.receiving_content

    @property
    def pending_reply(self) -> PendingReply | None:
        """The core's reply that comes later (a mail check beside the loop), or None."""
        return self.core.pending_reply if isinstance(self.core, ServerConnection) else None

    def send(self, *args: Any) -> None:
        self.core.send(*args)


def login_user(site: MailSite, host: Host, user: str, password: str) -> Any:
    """The world user a POP3 or IMAP login names, if the password is right and the user
    belongs to one of ``host``'s own domains (a bare name is taken in the host's domain);
    None otherwise."""
    address = user if "@" in user else f"{user}@{host.domain}"
    found = site.world.user(address)
    if found is None or not found.check_password(password):
        return None
    if address.rpartition("@")[2].lower() not in site.local_domains(host.name):
        return None
    return found


def imap_authenticator(site: MailSite, host: Host,
                       wake: Callable[[], None] | None = None) -> Callable[[str, str], Any]:
    """The IMAP login check (the same users as POP3); the account wakes the connection
    with ``wake`` when the mailbox changes (IDLE, RFC 2177)."""

    def authenticate(user: str, password: str) -> Any:
        found = login_user(site, host, user, password)
        if found is None:
            return None
        account = site.store.imap_account(found.address)
        account.on_change = wake
        return account

    return authenticate


class MaildropLocks:
    """Which maildrops a POP3 session holds now (RFC 1939 §8: the server SHOULD acquire an
    exclusive lock on the maildrop when a session enters TRANSACTION): a second session
    for the same user gets ``-ERR [IN-USE] ...`` (RFC 2449 §8.1.2) until the first ends.
    Used on the event loop's thread only."""

    def __init__(self) -> None:
        self._held: set[str] = set()

    def acquire(self, address: str) -> bool:
        """Take the lock of ``address``'s maildrop; False when another session holds it."""
        key = address.lower()
        if key in self._held:
            return False
        self._held.add(key)
        return True

    def release(self, address: str) -> None:
        self._held.discard(address.lower())

    def __contains__(self, address: object) -> bool:
        return isinstance(address, str) and address.lower() in self._held


class POP3Login:
    """The login of one POP3 connection: checks the password of a user of the host's
    domains, takes the maildrop's lock and gives it back when the connection ends.

    Args:
        site: the running world, as the services see it.
        host: the host that serves POP3.
        locks: the host's :class:`MaildropLocks`.
    """

    def __init__(self, site: MailSite, host: Host, locks: MaildropLocks) -> None:
        self.site = site
        self.host = host
        self.locks = locks
        self.held: str | None = None

    def authenticate(self, user: str, password: str) -> Any:
        """The core's authenticator: the user's Maildir, None for wrong credentials.

        Raises:
            MaildropInUse: another session has this maildrop open.
        """
        from simsmtp.protocol.mailbox import MaildropInUse

        found = login_user(self.site, self.host, user, password)
        if found is None:
            return None
        if self.held is None:
            if not self.locks.acquire(found.address):
                raise MaildropInUse("Mailbox is locked by another POP3 session.")
            self.held = found.address
        return self.site.store.mailbox(found.address)

    def release(self) -> None:
        """The connection ended: give the maildrop back."""
        if self.held is not None:
            self.locks.release(self.held)
            self.held = None


def pop3_authenticator(site: MailSite, host: Host) -> Callable[[str, str], Any]:
    """The POP3 login check: a world user of this host's domains and their Maildir (no
    lock: :class:`POP3Login` is what each connection of the world uses)."""
    login = POP3Login(site, host, MaildropLocks())

    def authenticate(user: str, password: str) -> Any:
        try:
            return login.authenticate(user, password)
        finally:
            login.release()

    return authenticate
