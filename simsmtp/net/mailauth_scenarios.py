"""Notebook 8's stories, sent for real: a user's own mail, a spoof, a forward.

Each scenario sends one message through the running world over real sockets (a user's
submission to their own server, or a connection straight to the recipient's MX on port 25
from a host's own address) and returns an :class:`AuthOutcome`: what the receiving MX
decided, read back from the trace's ``auth.*`` events and the recipient's mailbox. Nothing
here re-evaluates SPF, DKIM or DMARC: the verdicts are the MX's
(:mod:`simsmtp.net.authpolicy`)::

    alice = alice_sends(net)                  # Alice's real mail, and Bob's MX's verdict
    spoof = mallory_sends(net)                # From: Alice, sent from Mallory's machine
    forward_message(net, "bob@forward.example", "bob@anotherdomain.org")
    user_sends(net, "alerts@bank.example", "ada@university.edu")      # any world
    spoof_sends(net, "alerts@bank.example", "eve.attacker.example")

In any world, names left out come from the world itself (:mod:`simsmtp.world.cast`: its
first sender and recipient, its attacker's host). A notebook reaches them as
``ui.alice_sends`` and so on; the widget layer above draws an outcome as HTML (this layer
knows no screen).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import parseaddr
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.mailbox import to_crlf
from simsmtp.world import cast
from simsmtp.world.mailauth import authentication_results
from simsmtp.world.scenario import SEED_SUBJECT, letter, seed_message

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.trace import TraceEvent
    from simsmtp.world.model import World

__all__ = [
    "MALLORY",
    "SPOOFER",
    "SPOOF_BODY",
    "SPOOF_LETTER",
    "SPOOF_SUBJECT",
    "AuthOutcome",
    "alice_sends",
    "forward_message",
    "mallory_sends",
    "spoof_sends",
    "submission_host",
    "user_sends",
]

#: The spoofer's machine in the seed world (it serves nothing; it only connects).
SPOOFER = "mallory.evil.example"
#: Mallory's own address.
MALLORY = "mallory@evil.example"
#: What Mallory writes, pretending to be Alice (``SPOOF_LETTER`` with the names left open).
SPOOF_SUBJECT = "Urgent: please wire the money today"
SPOOF_LETTER = ("Hi {recipient},\r\n\r\nPlease wire 9,800 EUR to the new supplier today, "
                "account\r\nDE00 1234 5678 9000. I am in meetings all day, so no calls "
                "please.\r\n\r\n{sender}\r\n")
SPOOF_BODY = SPOOF_LETTER.format(recipient="Bob", sender="Alice")

#: Where an action leaves the message, in words.
_WHERE = {"inbox": "the inbox", "junk": "the Junk folder"}


def _mx_host(net: Network, domain: str) -> str:
    """The most preferred MX of ``domain``, asked from the world's DNS like a sender."""
    from simsmtp.net.dns import lookup_mx

    found = lookup_mx(net.resolver(), domain)
    if found.status != "ok" or not found.records or found.records[0][1] == ".":
        raise ValueError(f"{domain} has no usable MX record ({found.status})")
    return found.records[0][1]


@dataclass(frozen=True)
class AuthOutcome:
    """One message sent through the world, and what the receiving MX made of it.

    Plain data with a plain-text form (``print(outcome)``); the widget layer draws it as
    HTML in a notebook (``ui.outcome_html``, and in the lab).

    Attributes:
        label: who sent what ("Alice's real mail", "Mallory's spoof" …).
        sender_host: the host that connected to the MX (its HELO name).
        client_ip: the address the MX saw.
        mail_from: the envelope sender (MAIL FROM).
        from_header: the From: header the reader sees.
        recipient: the envelope recipient.
        receiver: the MX that checked it.
        action: ``inbox``, ``junk``, ``reject`` (refused with 550), ``skipped`` (not
            checked) or ``unknown`` (no verdict seen).
        reply: the MX's reply to the message.
        results: ``{"spf": ..., "dkim": ..., "dmarc": ...}`` as the MX found them.
        authentication_results: the MX's Authentication-Results value (as stored in the
            message; as computed when the message was refused).
        reason: the MX's reason, in a few words.
        steps: the MX's checks in plain words (from the trace's ``auth.*`` events).
        since: the trace position before sending (for ``ui.auth_story``).
        smtp: the SMTP steps of the connection we drove (``print`` each one).
        message: the message as stored for the recipient (None when refused).
    """

    label: str
    sender_host: str
    client_ip: str
    mail_from: str
    from_header: str
    recipient: str
    receiver: str
    action: str
    reply: str
    results: dict[str, str]
    authentication_results: str
    reason: str
    steps: tuple[str, ...]
    since: int
    smtp: tuple[Any, ...] = ()
    message: EmailMessage | None = None

    @property
    def summary(self) -> str:
        """``spf=… dkim=… dmarc=…``."""
        return " ".join(f"{m}={self.results.get(m, '?')}" for m in ("spf", "dkim", "dmarc"))

    @property
    def where(self) -> str:
        """Where the message ended up, in words."""
        who = self.recipient
        if self.action in _WHERE:
            return f"delivered to {who}'s {_WHERE[self.action][4:]}"
        if self.action == "reject":
            return "refused: not delivered"
        if self.action == "skipped":
            return f"delivered to {who}, not checked"
        return "no verdict seen"

    def text(self) -> str:
        """The outcome as plain text."""
        lines = [f"{self.label}: {self.where}",
                 f"  sent by {self.sender_host} ({self.client_ip}), MAIL FROM:<{self.mail_from}>"
                 f", From: {self.from_header}",
                 f"  {self.receiver} answered: {self.reply}",
                 f"  {self.summary}"]
        if self.authentication_results:
            lines.append(f"  Authentication-Results: {self.authentication_results}"
                         + ("" if self.message is not None else "   (computed; not stored)"))
        lines += [f"  - {s}" for s in self.steps]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return self.text()


def _message_id(message: bytes) -> str:
    match = re.search(rb"^Message-ID:\s*(<[^>\r\n]+>)", message, re.I | re.M)
    return match.group(1).decode("ascii", "replace") if match else ""


def _find_verdict(world: World, since: int, recipient: str, helo: str) -> TraceEvent | None:
    for e in world.trace.since(since):
        if e.kind == "auth.verdict" and recipient in (e.get("recipients") or []) \
                and str(e.get("helo") or "").lower() == helo.lower() and e.host != helo:
            return e
    return None


def _stored(net: Network, recipient: str, folder: str | None,
            message_id: str) -> EmailMessage | None:
    for m in net.mailbox(recipient, folder):
        if str(m.get("Message-ID", "")).strip() == message_id:
            return m  # type: ignore[no-any-return]
    return None


def _judge(net: Network, *, label: str, since: int, sender_host: str, mail_from: str,
           from_header: str, recipient: str, message_id: str, reply: str,
           smtp: Sequence[Any] = ()) -> AuthOutcome:
    world = net.world
    verdict = _find_verdict(world, since, recipient, sender_host)
    info = net.hosts.get(sender_host)
    client_ip = info.ip if info is not None else "?"
    if verdict is None:
        return AuthOutcome(label, sender_host, client_ip, mail_from, from_header, recipient,
                           "?", "unknown", reply or "(no reply)", {}, "",
                           "no verdict in the trace", (), since, tuple(smtp))
    checks = [e for e in world.trace.since(since) if e.seq < verdict.seq
              and e.host == verdict.host and e.kind in ("auth.spf", "auth.dkim", "auth.dmarc")]
    last_spf = max((i for i, e in enumerate(checks) if e.kind == "auth.spf"), default=0)
    checks = checks[last_spf:]
    results: dict[str, str] = {}
    for e in checks:
        method = e.kind.split(".", 1)[1]
        if method not in results or e.get("result") == "pass":
            results[method] = str(e.get("result"))
    action = str(verdict.get("action"))
    folder = "Junk" if action == "junk" else None
    stored = None
    if action in ("inbox", "junk", "skipped") and message_id:
        stored = _stored(net, recipient, folder, message_id)
    ar = str(verdict.get("authentication_results") or "")
    if stored is not None:
        ours = [v for v in authentication_results(stored)
                if v.authserv_id.lower() == verdict.host.lower()]
        ar = ours[0].raw if ours else ar
    if action == "reject" and verdict.get("reply"):
        reply = str(verdict.get("reply"))
    return AuthOutcome(label, sender_host, str(verdict.get("client_ip", client_ip)),
                       mail_from, from_header, recipient, verdict.host, action,
                       reply or "(no reply)", results, ar, str(verdict.get("reason", "")),
                       tuple(str(e.get("explanation")) for e in checks), since, tuple(smtp),
                       stored)


def submission_host(world: World, sender: str) -> str:
    """The submission server of ``sender``'s domain (the world's first one otherwise)."""
    domain = sender.rpartition("@")[2].lower()
    hosts = world.hosts_with_role("submission")
    if not hosts:
        raise ValueError("this world has no submission host")
    return next((h.name for h in hosts if h.domain == domain), hosts[0].name)


def user_sends(net: Network, sender: str | None = None, recipient: str | None = None, *,
               subject: str = SEED_SUBJECT, body: str | None = None,
               timeout: float = 10.0) -> AuthOutcome:
    """A user's real mail: submitted to the server of their domain (587, STARTTLS, AUTH),
    which signs it (when the domain has a DKIM key) and delivers it to the recipient's MX;
    returns that MX's verdict.

    Args:
        net: the running world.
        sender: the author, a user of the world with a password (default: the world's
            first sender, :func:`simsmtp.world.cast.sender`; Alice in the seed).
        recipient: the addressee (default: the world's first recipient for that sender;
            Bob in the seed).
        subject: the Subject.
        body: the text (default: the seed's letter, with the two users' names).
        timeout: seconds to wait for the delivery.
    """
    world = net.world
    sender = sender or cast.sender(world)
    recipient = recipient or cast.recipient(world, sender)
    user = world.user(sender)
    if user is None or user.password is None:
        raise ValueError(f"{sender} is not a user of world {world.name!r} with a password: "
                         "pass sender=... (one of "
                         + ", ".join(u.address for u in world.users() if u.password) + ")")
    message = seed_message(world, sender=sender, recipient=recipient, subject=subject,
                           body=body)
    since = len(world.trace)
    steps = net.submit(message, sender=sender, recipients=[recipient], user=sender,
                       password=user.password)
    host = submission_host(world, sender)
    net.wait(lambda: _find_verdict(world, since, recipient, host) is not None
             and net.idle(), timeout)
    reply = ""
    for e in world.trace.since(since):
        if e.kind == "queue.result" and e.host == host and e.get("recipient") == recipient:
            reply = str(e.get("reply") or "")
    from_header = next((line[6:] for line in message.decode().split("\r\n")
                        if line.startswith("From: ")), sender)
    label = f"{cast.possessive(cast.display_name(world, sender))} real mail"
    return _judge(net, label=label, since=since, sender_host=host, mail_from=sender,
                  from_header=from_header, recipient=recipient,
                  message_id=_message_id(message), reply=reply, smtp=steps)


def alice_sends(net: Network, *, recipient: str | None = None, subject: str = SEED_SUBJECT,
                sender: str | None = None, timeout: float = 10.0) -> AuthOutcome:
    """Alice's real mail (the seed's story; any world: its first sender): see
    :func:`user_sends`."""
    return user_sends(net, sender, recipient, subject=subject, timeout=timeout)


def _drive(net: Network, receiver: str, local_name: str, mail_from: str, recipient: str,
           content: bytes) -> tuple[list[Any], str]:
    """Connect from ``local_name``'s own address to ``receiver``:25 and send; the steps and
    the reply to the message (or to the command that stopped it)."""
    with net.session(receiver, 25, local_name=local_name) as session:
        steps = [session.connect()]
        steps.append(session.ehlo())
        steps += session.transaction(mail_from, [recipient], content)
        last = steps[-1]
        if not session.closed:
            steps.append(session.quit())
    reply = str(last.reply) if last.reply is not None else "(no reply)"
    return steps, reply


def spoof_sends(net: Network, impersonate: str | None = None, host: str | None = None, *,
                mail_from: str | None = None, from_header: str | None = None,
                recipient: str | None = None, subject: str = SPOOF_SUBJECT,
                body: str | None = None) -> AuthOutcome:
    """A spoof: a message claiming to come from ``impersonate``, sent from ``host``'s own
    address straight to the recipient's MX on port 25, unsigned.

    Args:
        net: the running world.
        impersonate: the address the spoof pretends to come from (default: the world's
            first sender, :func:`simsmtp.world.cast.sender`; Alice in the seed).
        host: the world host it is sent from (default: the world's first host with only
            the ``client`` role, its attacker; ``mallory.evil.example`` in the seed). A
            name that is not a host of the world is refused: the spoof must come from an
            address the world knows.
        mail_from: the envelope sender (default: ``impersonate``; or e.g. the attacker's
            own address, whose domain's SPF she controls).
        from_header: the From: the reader sees (default: ``impersonate`` with its name).
        recipient: the victim (default: the world's first recipient for ``impersonate``).
        subject: the Subject.
        body: the text (default: an urgent money request, with the users' names).
    """
    world = net.world
    host = world.host(host).name if host else cast.client_host(world, arg="host")
    if host not in net.hosts:
        raise ValueError(f"{host} has no address in this running world: pass host=... "
                         "(a host of the world, e.g. one with the 'client' role)")
    impersonate = impersonate or parseaddr(from_header or "")[1] or cast.sender(
        world, arg="impersonate")
    mail_from = impersonate if mail_from is None else mail_from
    from_header = from_header or cast.mailbox(world, impersonate)
    recipient = recipient or cast.recipient(world, impersonate)
    if body is None:
        body = letter(world, impersonate, recipient, SPOOF_LETTER)
    message = seed_message(world, sender=impersonate, recipient=recipient, subject=subject,
                           body=body, from_header=from_header)
    receiver = _mx_host(net, recipient.rpartition("@")[2])
    since = len(world.trace)
    steps, reply = _drive(net, receiver, host, mail_from, recipient, message)
    own = cast.spoofer_address(world, host)
    label = (f"{cast.possessive(cast.display_name(world, own))} spoof" if own
             else f"The spoof from {host}")
    return _judge(net, label=label, since=since, sender_host=host,
                  mail_from=mail_from, from_header=from_header, recipient=recipient,
                  message_id=_message_id(message), reply=reply, smtp=steps)


def mallory_sends(net: Network, *, mail_from: str | None = None,
                  from_header: str | None = None, recipient: str | None = None,
                  subject: str = SPOOF_SUBJECT, body: str | None = None,
                  host: str | None = None) -> AuthOutcome:
    """Mallory's spoof (the seed's story): a message with ``From: Alice``, sent from
    Mallory's own machine (its own 127.0.0.x) straight to the recipient's MX on port 25,
    unsigned. In any world: its first sender spoofed from its attacker's host; see
    :func:`spoof_sends` for the arguments."""
    return spoof_sends(net, None, host, mail_from=mail_from, from_header=from_header,
                       recipient=recipient, subject=subject, body=body)


def forward_message(net: Network, mailbox: str, to: str, *, via: str | None = None,
                    footer: str | None = None, index: int = -1) -> AuthOutcome:
    """Forward a stored message as a plain ``.forward`` does: the bytes unchanged (or
    with a mailing-list ``footer`` added to the body), the envelope sender kept (no SRS),
    sent by the forwarding host from its own address to ``to``'s MX.

    Args:
        net: the running world.
        mailbox: the address whose message to forward (e.g. ``bob@forward.example``).
        to: where to forward it.
        via: the forwarding host (default: the MX of ``mailbox``'s domain).
        footer: text appended to the body, as a mailing list does (it breaks DKIM).
        index: which message of the mailbox (default the newest).
    """
    world = net.world
    keys = net.store.keys(mailbox)
    if not keys:
        raise LookupError(f"{mailbox} has no message to forward")
    data = to_crlf(net.store.get_bytes(mailbox, keys[index]))
    if footer:
        data += to_crlf(footer.encode("utf-8"))
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
    stored = [e for e in world.trace.events("delivery.stored") if e.get("recipient") ==
              mailbox]
    mail_from = str(stored[-1].get("sender") or "") if stored else ""
    via = world.host(via).name if via else _mx_host(net, mailbox.rpartition("@")[2])
    receiver = _mx_host(net, to.rpartition("@")[2])
    parsed = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
    since = len(world.trace)
    steps, reply = _drive(net, receiver, via, mail_from, to, data)
    label = f"Forwarded by {via}" + (" (with a footer)" if footer else "")
    return _judge(net, label=label, since=since, sender_host=via, mail_from=mail_from,
                  from_header=str(parsed.get("From", "")), recipient=to,
                  message_id=_message_id(data), reply=reply, smtp=steps)
