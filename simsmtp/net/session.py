"""One SMTP client conversation with one MX: greeting, EHLO, STARTTLS, transactions, QUIT.

A :class:`DeliverySession` is what the outbound agent (:mod:`simsmtp.net.agent`) runs for
every connection it opens: it drives the sans-IO client core
(:class:`simsmtp.protocol.client.ClientConnection`) through a :class:`Channel` and decides,
per recipient, an :class:`Outcome` -- delivered, failed (bounce) or soft (next MX, or
defer). The rules it follows (RFC 5321 §4.5.4.1 and Postfix's ``smtp_trouble.c``, RFC 3207
STARTTLS by policy, RFC 1870 SIZE, RFC 2920 pipelining, RFC 7672 DANE matching) are listed
in the agent's module docstring; which server to try, retries and bounces are the agent's.

The session knows its agent only through :class:`SessionOwner`: the names and policy it
reads, where it records, and the two calls back (a delivered outcome is written durably
before anything else; after the first message, waiting messages may ride on the session).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, Protocol

from simsmtp.net.queue import QueuedMessage
from simsmtp.protocol import events as smtp
from simsmtp.protocol.client import ClientConnection
from simsmtp.protocol.errors import LocalProtocolError
from simsmtp.protocol.grammar import GrammarError, format_path, message_size
from simsmtp.protocol.replies import Reply

if TYPE_CHECKING:
    from simsmtp.net.securemx import HopRule, TransportSecurity

__all__ = [
    "TLS_NOT_OFFERED",
    "Channel",
    "DeliverySession",
    "Outcome",
    "SMTPTimeouts",
    "SessionLost",
    "SessionOwner",
    "local_outcome",
    "one_line",
    "reply_outcome",
]


#: The reason a "required" policy gives when the server does not offer STARTTLS.
TLS_NOT_OFFERED = "TLS is required by policy but the server did not offer STARTTLS"


class Channel(Protocol):
    """What a session needs from a connection (``simsmtp.net.channel.ClientChannel``)."""

    def send(self, event: smtp.Command) -> None: ...

    async def next_event(self, timeout: float | None = ...) -> object: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SMTPTimeouts:
    """Client timeouts in seconds of real time (RFC 5321 §4.5.3.2 gives the minimums).

    The RFC's values (greeting 5 min, MAIL/RCPT 5 min, DATA 2 min, end of data 10 min) are
    the defaults; a world usually passes shorter ones so a dead server does not stall a
    notebook. Use :meth:`scaled` to keep the proportions.
    """

    connect: float = 30.0      # not in the RFC; Postfix smtp_connect_timeout is 30 s
    greeting: float = 300.0    # RFC 5321 §4.5.3.2.1 initial 220: 5 minutes
    command: float = 300.0     # RFC 5321 §4.5.3.2.2/.3 MAIL, RCPT: 5 minutes
    data_init: float = 120.0   # RFC 5321 §4.5.3.2.4 DATA initiation: 2 minutes
    data_end: float = 600.0    # RFC 5321 §4.5.3.2.6 DATA termination: 10 minutes

    def scaled(self, factor: float) -> SMTPTimeouts:
        """All timeouts multiplied by ``factor``."""
        return SMTPTimeouts(self.connect * factor, self.greeting * factor,
                            self.command * factor, self.data_init * factor,
                            self.data_end * factor)



@dataclass
class Outcome:
    """The decision for one recipient in the current attempt."""

    status: Literal["delivered", "failed", "soft"]
    reply: str  # one line: the remote reply or our reason
    status_code: str
    diagnostic: str  # RFC 3464 Diagnostic-Code ("smtp; 550 5.1.1 ..." / "X-Postfix; ...")
    remote_mta: str = ""
    recorded: bool = False


def one_line(reply: Reply) -> str:
    return f"{reply.code} {' '.join(line for line in reply.lines if line)}".rstrip()


def reply_outcome(status: Literal["delivered", "failed", "soft"], reply: Reply,
                  mx: str, context: str = "") -> Outcome:
    text = one_line(reply)
    code = reply.enhanced or f"{reply.code // 100}.0.0"  # RFC 3463 §3.1: class only
    said = f"{text} (in reply to {context})" if context else text
    return Outcome(status, said, code, f"smtp; {text}", mx)


def local_outcome(status: Literal["failed", "soft"], status_code: str,
                  reason: str, mx: str = "") -> Outcome:
    return Outcome(status, reason, status_code, f"X-Postfix; {reason}", mx)


def _extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords and parameters (RFC 5321 §4.1.1.1): lines after the first."""
    found: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, param = line.strip().partition(" ")
        if keyword:
            found[keyword.upper()] = param.strip()
    return found


class SessionLost(Exception):
    """The connection broke, timed out or the server said 421 (all soft, RFC 5321 §3.8)."""


class _TLSFailed(Exception):
    """The STARTTLS handshake failed."""


class SessionOwner(Protocol):
    """What a :class:`DeliverySession` needs from the agent that runs it."""

    @property
    def hostname(self) -> str:
        """Our host name (the EHLO name)."""

    @property
    def tls_policy(self) -> str:
        """``"none"``, ``"opportunistic"`` or ``"required"`` (read at each STARTTLS)."""

    @property
    def client_tls_context(self) -> ssl.SSLContext | None:
        """The STARTTLS context when the hop's rule brings none."""

    @property
    def security(self) -> TransportSecurity | None:
        """MTA-STS and DANE (matches a certificate against a hop's TLSA records)."""

    @property
    def timeouts(self) -> SMTPTimeouts:
        """The client timeouts."""

    def record(self, kind: str, **data: Any) -> None:
        """Append an event to the world's trace."""

    def persist_delivered(self, queued: QueuedMessage, delivered: Mapping[str, Outcome],
                          when: float) -> None:
        """Write 250 outcomes durably, before the session says anything more."""

    async def continue_session(self, session: DeliverySession) -> None:
        """After the first message: carry the waiting messages over this session."""


class DeliverySession:
    """One SMTP client session against one server (greeting to QUIT).

    Args:
        owner: the agent that runs it (:class:`SessionOwner`).
        channel: the open connection.
        conn: the sans-IO client the channel drives (None in some test fakes).
        queued: the message it carries first.
        mx: the server's host name; ``ip`` its address.
        rcpts: the recipients to deliver.
        outcomes: filled with an :class:`Outcome` per recipient decided.
        now: the virtual time of the attempt.
        number: the agent's session number (trace: which session carried what).
        port: the real port connected to.
        tls_label: the TLS policy the session was opened with (trace).
        rule: what MTA-STS/DANE demand of this hop.
    """

    def __init__(self, owner: SessionOwner, channel: Channel, conn: ClientConnection | None,
                 queued: QueuedMessage,
                 mx: str, ip: str, rcpts: list[str], outcomes: dict[str, Outcome],
                 now: float, *, number: int = 0, port: int | None = None,
                 tls_label: str = "none", rule: HopRule | None = None) -> None:
        self.owner = owner
        self.channel = channel
        self.conn = conn
        self.queued = queued
        self.mx = mx
        self.ip = ip
        self.rcpts = rcpts
        self.outcomes = outcomes
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.timeouts = owner.timeouts
        self.when = now
        self.need_rset = False  # a MAIL was accepted and its transaction not finished
        self.number = number
        self.port = port
        self.tls_label = tls_label
        self.rule = rule

    @property
    def required(self) -> bool:
        """TLS is mandatory: by the agent's policy, or by MTA-STS enforce / DANE."""
        return self.owner.tls_policy == "required" or bool(
            self.rule is not None and self.rule.require_tls)

    def _report(self, result: str | None) -> None:
        """Tell TLS-RPT how this session went (RFC 8460 §4.3 result types)."""
        if self.rule is not None:
            self.rule.report(result, self.ip)

    def rebind(self, queued: QueuedMessage, rcpts: list[str]) -> None:
        """Carry another message on this session (connection reuse)."""
        self.queued = queued
        self.rcpts = rcpts
        self.outcomes = {}

    def _soft(self, reason: str, code: str = "4.4.2") -> Outcome:
        return local_outcome("soft", code, reason, self.mx)

    def _settle(self, rcpts: Iterable[str], outcome: Outcome) -> None:
        for r in rcpts:
            self.outcomes.setdefault(r, outcome)

    # -- event plumbing ----------------------------------------------------------------
    async def _event(self, timeout: float) -> object:
        try:
            event = await self.channel.next_event(timeout)
        except TimeoutError:
            raise SessionLost(f"conversation with {self.mx}[{self.ip}] timed out "
                              f"(no reply within {timeout:g} s)") from None
        except (ConnectionError, OSError, EOFError) as exc:
            raise SessionLost(f"lost connection with {self.mx}[{self.ip}]: {exc}") from None
        except Exception as exc:  # RemoteProtocolError, TLSFailure from the core
            raise SessionLost(f"protocol error from {self.mx}[{self.ip}]: {exc}") from None
        if isinstance(event, smtp.ConnectionClosed):
            raise SessionLost(f"lost connection with {self.mx}[{self.ip}]"
                              f" ({event.reason})".rstrip(" ()"))
        if isinstance(event, smtp.PlaintextDiscarded):
            self.owner.record("tls.plaintext_discarded", mx=self.mx,
                              data=bytes(event.data))
        return event

    async def _reply(self, timeout: float) -> Reply:
        """The next reply (skipping events that are not replies)."""
        while True:
            event = await self._event(timeout)
            if isinstance(event, smtp.ReplyReceived | smtp.ConnectionOpened):
                reply: Reply = event.reply
                if reply.code == 421:  # RFC 5321 §3.8: the server is going away
                    raise SessionLost(f"host {self.mx}[{self.ip}] said: {one_line(reply)}")
                return reply
            if isinstance(event, smtp.TLSFailed):
                raise _TLSFailed(event.reason)

    def _send(self, command: smtp.Command) -> None:
        try:
            self.channel.send(command)
        except (ConnectionError, OSError) as exc:
            raise SessionLost(f"lost connection with {self.mx}[{self.ip}]: {exc}") from None

    async def _command(self, command: smtp.Command, timeout: float) -> Reply:
        self._send(command)
        return await self._reply(timeout)

    async def _quit(self) -> None:
        try:
            self.channel.send(smtp.Quit())
            await self.channel.next_event(2.0)
        except Exception:  # QUIT is a courtesy (RFC 5321 §4.1.1.10); the mail is decided
            pass

    # -- the session -------------------------------------------------------------------
    async def run(self, use_tls: bool) -> bool:
        """Run the session; returns True when it should be retried in plaintext."""
        greeting = await self._reply(self.timeouts.greeting)
        if not greeting.is_positive:
            # 4xx or 5xx greeting: skip to the next MX (Postfix smtp_skip_5xx_greeting)
            reason = f"host {self.mx}[{self.ip}] refused to talk to me: {one_line(greeting)}"
            self.owner.record("delivery.skip", mx=self.mx, ip=self.ip, reason=reason)
            self._settle(self.rcpts, reply_outcome("soft", greeting, self.mx, "the greeting"))
            await self._quit()
            return False
        if not await self._hello():
            return False
        if use_tls or self.required:
            decided = await self._starttls(use_tls)
            if decided is not None:
                return decided
        size_limit = self.extensions.get("SIZE", "")
        size = message_size(self.queued.message)  # RFC 1870 §4: CRLF octets, no stuffing
        if size_limit.isdigit() and int(size_limit) and size > int(size_limit):
            # RFC 1870 §6.2: do not transmit a message the server said it cannot take
            reason = (f"message size {size} exceeds size limit {int(size_limit)} of server "
                      f"{self.mx}[{self.ip}]")
            self.owner.record("delivery.size_refused", mx=self.mx, size=size,
                              limit=int(size_limit))
            self._settle(self.rcpts, local_outcome("failed", "5.3.4", reason, self.mx))
            await self._quit()
            return False
        todo = list(self.rcpts)
        while todo:
            leftover = await self.transaction(todo)
            if not leftover or len(leftover) == len(todo):
                # nothing accepted in a round: leave the rest as soft for the next server
                self._settle(leftover, self._soft(
                    f"host {self.mx}[{self.ip}] accepted no more recipients", "4.5.3"))
                break
            todo = leftover
        await self.owner.continue_session(self)
        await self._quit()
        return False

    async def _hello(self) -> bool:
        reply = await self._command(smtp.Ehlo(self.owner.hostname), self.timeouts.command)
        if reply.is_permanent:  # RFC 5321 §3.2: fall back to HELO
            reply = await self._command(smtp.Helo(self.owner.hostname),
                                        self.timeouts.command)
            self.extensions = {}
        else:
            self.extensions = _extensions(reply)
        if not reply.is_positive:
            self.owner.record("delivery.skip", mx=self.mx, ip=self.ip,
                              reason=f"EHLO/HELO refused: {one_line(reply)}")
            self._settle(self.rcpts, reply_outcome("soft", reply, self.mx, "EHLO/HELO"))
            await self._quit()
            return False
        return True

    async def _starttls(self, use_tls: bool) -> bool | None:
        """Apply the TLS policy. None: go on; True/False: the session is over."""
        required = self.required
        why = (f"; demanded by {self.rule.why}" if self.rule is not None and self.rule.why
               else "")
        offered = "STARTTLS" in self.extensions
        if not offered or not use_tls:
            if not offered:
                self._report("starttls-not-supported")
            if required:
                reason = TLS_NOT_OFFERED + why
                self.owner.record("tls.required_failed", mx=self.mx, ip=self.ip,
                                  reason=reason)
                self._settle(self.rcpts, self._soft(reason, "4.7.4"))
                await self._quit()
                return False
            if not offered:
                self.owner.record("tls.fallback", mx=self.mx, ip=self.ip,
                                  reason="the server did not offer STARTTLS: the message "
                                          "goes in plaintext (opportunistic TLS)")
            return None
        try:
            reply = await self._command(smtp.StartTLS(), self.timeouts.command)
            if reply.code != 220:  # RFC 3207 §4: 220 Ready to start TLS
                reason = f"STARTTLS refused by {self.mx}[{self.ip}]: {one_line(reply)}"
                self._report("starttls-not-supported")
                if required:
                    self.owner.record("tls.required_failed", mx=self.mx, ip=self.ip,
                                      reason=reason)
                    self._settle(self.rcpts, reply_outcome("soft", reply, self.mx,
                                                           "STARTTLS"))
                    await self._quit()
                    return False
                self.owner.record("tls.fallback", mx=self.mx, ip=self.ip,
                                  reason=reason + "; continuing in plaintext")
                return None
            while True:
                event = await self._event(self.timeouts.command)
                if isinstance(event, smtp.TLSStarted):
                    started = event
                    break
                if isinstance(event, smtp.TLSFailed):
                    raise _TLSFailed(event.reason)
        except (_TLSFailed, SessionLost) as exc:
            reason = f"TLS handshake with {self.mx}[{self.ip}] failed: {exc}"
            text = str(exc).lower()
            self._report("certificate-host-mismatch" if "hostname" in text
                         else "certificate-expired" if "expired" in text
                         else "certificate-not-trusted" if "certificate" in text
                         else "validation-failure")
            if required:
                reason += why
                self.owner.record("tls.required_failed", mx=self.mx, ip=self.ip,
                                  reason=reason)
                self._settle(self.rcpts, self._soft(reason, "4.7.5"))
                return False
            self.owner.record("tls.fallback", mx=self.mx, ip=self.ip,
                              reason=reason + "; reconnecting to send in plaintext")
            return True
        self.tls = True
        context = (self.rule.context if self.rule is not None else None) \
            or self.owner.client_tls_context
        dane = False
        if self.rule is not None and self.rule.tlsa:
            # DANE (RFC 7672 §3.1): the certificate must match a TLSA record
            der = self.conn.peer_certificate_der() if self.conn is not None else None
            security = self.owner.security
            dane = security is not None and security.matches(self.rule, der)
        self.owner.record("tls.started", mx=self.mx, ip=self.ip,
                          version=started.version, cipher=started.cipher,
                          # RFC 7435 §1: opportunistic TLS encrypts without authenticating
                          # the peer; say which one this session is (DANE: by its TLSA)
                          verified=(context is not None
                                    and context.verify_mode == ssl.CERT_REQUIRED) or dane)
        if self.rule is not None and self.rule.tlsa:
            if not dane:
                reason = (f"the certificate of {self.mx}[{self.ip}] matches none of its "
                          f"TLSA records{why}")
                self._report("validation-failure")
                self.owner.record("tls.required_failed", mx=self.mx, ip=self.ip,
                                  reason=reason)
                self._settle(self.rcpts, self._soft(reason, "4.7.5"))
                await self._quit()
                return False
            self.owner.record("dane.matched", mx=self.mx, ip=self.ip,
                              tlsa=[rd.to_text() for rd in self.rule.tlsa])
        self._report(None)
        # RFC 3207 §4.2: forget everything learnt before TLS and say EHLO again
        if not await self._hello():
            return False
        return None

    def _mail_params(self) -> dict[str, str | None]:
        params: dict[str, str | None] = {}
        exts = self.extensions
        if "SIZE" in exts:
            params["SIZE"] = str(message_size(self.queued.message))  # RFC 1870 §6
        body = self.queued.params.get("BODY")
        if body and "8BITMIME" in exts:
            params["BODY"] = body  # RFC 6152
        if "SMTPUTF8" in self.queued.params and "SMTPUTF8" in exts:
            params["SMTPUTF8"] = None  # RFC 6531 §3.4
        if "DSN" in exts:  # RFC 3461 §4
            for key in ("RET", "ENVID"):
                if self.queued.params.get(key):
                    params[key] = self.queued.params[key]
        return params

    def _rcpt_params(self, rcpt: str) -> dict[str, str | None]:
        if "DSN" not in self.extensions:
            return {}
        given = self.queued.recipient(rcpt).params
        return {k: v for k, v in given.items() if k in ("NOTIFY", "ORCPT")}

    async def transaction(self, rcpts: list[str]) -> list[str]:
        """MAIL, RCPT x N, DATA, message. Returns recipients to retry in a new
        transaction on this server (452/552 too many recipients)."""
        pipelining = "PIPELINING" in self.extensions  # RFC 2920
        mail_params = self._mail_params()
        utf8 = "SMTPUTF8" in mail_params
        if "SMTPUTF8" in self.queued.params and not utf8:
            # RFC 6531 §3.2: a message that needs SMTPUTF8 is never sent to a server that
            # does not offer it (no downgrade here): it bounces, with RFC 6531 §3.6's 5.6.7
            self._settle(rcpts, local_outcome(
                "failed", "5.6.7", f"{self.mx}[{self.ip}] does not support SMTPUTF8, which "
                "this message needs (internationalized addresses, RFC 6531 §3.2)", self.mx))
            return []
        # Check addresses first (catalogue 79b: CR/LF or ">" in an address must never reach
        # the wire); the core would refuse them too, but mid-batch.
        try:
            format_path(self.queued.sender, allow_null=True, utf8=utf8)
        except GrammarError as exc:
            self._settle(rcpts, local_outcome("failed", "5.1.7",
                                              f"bad sender address syntax: {exc}"))
            return []
        good: list[str] = []
        for rcpt in rcpts:
            try:
                format_path(rcpt, allow_postmaster=True, utf8=utf8)
            except GrammarError as exc:
                self.outcomes[rcpt] = local_outcome(
                    "failed", "5.1.3", f"bad recipient address syntax: {exc}")
            else:
                good.append(rcpt)
        if not good:
            return []
        accepted: list[str] = []
        leftover: list[str] = []
        if self.need_rset:  # RFC 5321 §4.1.1.5: abandon the unfinished transaction
            reply = await self._command(smtp.Rset(), self.timeouts.command)
            if not reply.is_positive:
                raise SessionLost(f"RSET refused by {self.mx}[{self.ip}]: "
                                  f"{one_line(reply)}")
            self.need_rset = False
        cmds: list[tuple[str, smtp.Command]] = [
            ("MAIL", smtp.MailFrom(self.queued.sender, mail_params))]
        cmds += [(r, smtp.RcptTo(r, self._rcpt_params(r))) for r in good]
        cmds.append(("DATA", smtp.Data()))
        replies: list[tuple[str, Reply]] = []
        try:
            if pipelining:
                # queue the group in the core, flush it with the last send: one write
                for i, (_, cmd) in enumerate(cmds):
                    if self.conn is not None and i < len(cmds) - 1:
                        self.conn.send(cmd)
                    else:
                        self._send(cmd)
                for key, _ in cmds:
                    replies.append((key, await self._reply(
                        self.timeouts.data_init if key == "DATA" else self.timeouts.command)))
            else:
                for key, cmd in cmds:
                    if key == "DATA" and not any(
                            k not in ("MAIL", "DATA") and r.is_positive for k, r in replies):
                        break  # no recipient accepted: no DATA
                    replies.append((key, await self._command(
                        cmd, self.timeouts.data_init if key == "DATA" else
                        self.timeouts.command)))
                    if key == "MAIL" and not replies[-1][1].is_positive:
                        break
        except LocalProtocolError as exc:  # the core refused: a bug somewhere; hang up
            raise SessionLost(f"the client refused to go on with {self.mx}[{self.ip}]: "
                              f"{exc}") from None
        data_reply: Reply | None = None
        for key, reply in replies:
            if key == "MAIL" and reply.is_positive:
                self.need_rset = True
            if key == "MAIL":
                if reply.is_permanent:  # a 5xx to MAIL bounces every recipient
                    self._settle(rcpts, reply_outcome("failed", reply, self.mx,
                                                      "MAIL FROM"))
                elif reply.is_transient:
                    self._settle(rcpts, reply_outcome("soft", reply, self.mx, "MAIL FROM"))
                if not reply.is_positive:
                    await self._reset_if(pipelining and _positive_data(replies))
                    return []
            elif key == "DATA":
                data_reply = reply
            elif reply.is_positive:
                accepted.append(key)
            elif reply.code in (452, 552):
                # RFC 5321 §4.5.3.1.10: too many recipients: try the rest again
                leftover.append(key)
            elif reply.is_permanent:  # 5xx: bounce this recipient, never tried elsewhere
                self.outcomes[key] = reply_outcome("failed", reply, self.mx,
                                                   f"RCPT TO:<{key}>")
            else:  # 4xx: next server, or defer after the last one
                self.outcomes[key] = reply_outcome("soft", reply, self.mx,
                                                   f"RCPT TO:<{key}>")
        if not accepted:
            if data_reply is not None and data_reply.code == 354:
                # RFC 2920 §3.1: DATA was accepted although no RCPT was: end it empty
                await self._content(b"")
            return leftover
        if data_reply is None:
            raise SessionLost(f"no reply to DATA from {self.mx}[{self.ip}]")
        if data_reply.code != 354:
            status: Literal["failed", "soft"] = ("failed" if data_reply.is_permanent
                                                  else "soft")
            self._settle(accepted, reply_outcome(status, data_reply, self.mx, "DATA"))
            return leftover
        try:
            final = await self._content(self.queued.message)
        except SessionLost as exc:
            # RFC 5321 §3.8 / §4.5.3.2.6: as if 451; the server may have the message
            # already (a duplicate is possible and acceptable)
            self._settle(accepted, self._soft(f"{exc} after end of data", "4.4.2"))
            raise
        if final.is_positive:
            delivered = {r: reply_outcome("delivered", final, self.mx) for r in accepted}
            self.outcomes.update(delivered)
            self.owner.persist_delivered(self.queued, delivered, self.when)
        else:
            status = "failed" if final.is_permanent else "soft"
            self._settle(accepted, reply_outcome(status, final, self.mx, "end of DATA"))
        return leftover

    async def _content(self, content: bytes) -> Reply:
        try:
            self._send(smtp.Message(content))
        except LocalProtocolError as exc:  # the core refused (it is mid-DATA): hang up
            raise SessionLost(f"could not send the message to {self.mx}[{self.ip}]: "
                              f"{exc}") from None
        reply = await self._reply(self.timeouts.data_end)
        self.need_rset = False  # the reply to the end of data ends the transaction
        return reply

    async def _reset_if(self, needed: bool) -> None:
        if needed:  # pipelined DATA got 354 after a failed MAIL: close the data phase
            await self._content(b"")


def _positive_data(replies: list[tuple[str, Reply]]) -> bool:
    return any(key == "DATA" and reply.code == 354 for key, reply in replies)
