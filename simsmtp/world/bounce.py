"""Bounces and delay warnings: delivery status notifications (RFC 3464) in Postfix's words.

Built with the stdlib ``email`` package as ``multipart/report; report-type=delivery-status``
(RFC 6522): a human-readable part, a ``message/delivery-status`` part and the headers of the
original message as ``text/rfc822-headers``.
"""

from __future__ import annotations

import email.policy
import hashlib
import re
import textwrap
from dataclasses import dataclass
from datetime import datetime
from email.message import EmailMessage, Message, MIMEPart
from email.utils import format_datetime
from typing import Literal

#: The DSN actions of RFC 3464 §2.3.3.
Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
_ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")
# status-code = class "." subject "." detail (RFC 3464 §2.3.4, RFC 3463 §2).
_STATUS = re.compile(r"[245]\.\d{1,3}\.\d{1,3}")

_POLICY = email.policy.SMTP  # CRLF line endings, as on the wire (RFC 5322 §2.1)

_HELP = ("For further assistance, please send mail to postmaster.\n\n"
         "If you do so, please include this problem report. You can\n"
         "delete your own text from the attached returned message.\n\n"
         "                   The mail system\n")


@dataclass(frozen=True)
class RecipientFailure:
    """What happened to one recipient.

    Attributes:
        recipient: the address (``bob@anotherdomain.org``).
        status: the enhanced status code (``"5.1.1"``, RFC 3463).
        diagnostic: the remote reply with its type, e.g.
            ``"smtp; 550 5.1.1 <bob@anotherdomain.org>: Recipient address rejected"``.
        remote_mta: the host that gave that reply, if any.
        action: ``"failed"`` for a bounce, ``"delayed"`` for a delay warning.
    """

    recipient: str
    status: str
    diagnostic: str
    remote_mta: str | None = None
    action: Action = "failed"

    def __post_init__(self) -> None:
        if self.action not in _ACTIONS:
            raise ValueError(f"action must be one of {', '.join(_ACTIONS)}, not {self.action!r}")
        if not _STATUS.fullmatch(self.status):
            raise ValueError(f"status must look like 5.1.1 (RFC 3463), not {self.status!r}")

    def text(self) -> str:
        """The line Postfix writes in the human-readable part."""
        said = self.diagnostic.partition(";")[2].strip() or self.diagnostic
        if self.remote_mta:
            return f"<{self.recipient}>: host {self.remote_mta} said: {said}"
        return f"<{self.recipient}>: {said}"


def _original_headers(original: bytes) -> str:
    text = original.decode("utf-8", "replace").replace("\r\n", "\n")
    head, sep, _ = text.partition("\n\n")
    if not sep and not re.match(r"[!-9;-~]+:", head):  # no header block at all
        return ""
    return head.rstrip("\n") + "\n"


def _text_part(text: str, description: str, subtype: str = "plain") -> MIMEPart:
    part = MIMEPart(policy=_POLICY)
    ascii_only = text.isascii()
    part.set_content(text, subtype=subtype, charset="us-ascii" if ascii_only else "utf-8",
                     cte="7bit" if ascii_only else "8bit")
    part["Content-Description"] = description
    return part


def _attach(report: EmailMessage, part: MIMEPart) -> None:
    # typeshed wants an EmailMessage; any MIMEPart is what multipart/* holds.
    report.attach(part)  # type: ignore[arg-type]


def _fields(pairs: list[tuple[str, str]]) -> Message:
    block = Message(policy=_POLICY)
    for name, value in pairs:
        block[name] = value
    return block


def compose_bounce(original: bytes, *, sender: str, failures: list[RecipientFailure],
                   reporting_mta: str, arrival: datetime, now: datetime, message_id: str,
                   queue_id: str | None = None,
                   will_retry_until: datetime | None = None) -> bytes | None:
    """Compose a non-delivery report (or a delay warning) for ``sender``.

    Args:
        original: the message as it was queued (only its headers are returned).
        sender: the envelope sender (MAIL FROM) of the original, who gets the report.
        failures: one entry per recipient to report; all ``"delayed"`` makes a delay
            warning, anything else a bounce.
        reporting_mta: the host name of the MTA writing the report.
        arrival: when the original was queued.
        now: the Date of the report.
        message_id: the report's own Message-ID (``<...>``).
        queue_id: the original's queue id (shown as ``X-Postfix-Queue-ID``).
        will_retry_until: for a delay warning, when the MTA gives up (RFC 3464 §2.3.8).

    Returns:
        the report as bytes with CRLF line endings, or ``None`` when ``sender`` is the null
        sender: a bounce is never bounced (RFC 5321 §4.5.5, §6.1; RFC 3464 §2).
    """
    if sender.strip() in ("", "<>"):
        return None
    if not failures:
        raise ValueError("a delivery status notification needs at least one recipient")
    warning = all(f.action == "delayed" for f in failures)

    report = EmailMessage(policy=_POLICY)
    report["Date"] = format_datetime(now)
    report["From"] = f"MAILER-DAEMON@{reporting_mta} (Mail Delivery System)"
    report["Subject"] = ("Delayed Mail (still being retried)" if warning
                         else "Undelivered Mail Returned to Sender")
    report["To"] = sender
    report["Auto-Submitted"] = "auto-replied"  # RFC 3834 §5: never auto-reply to this
    report["Message-ID"] = message_id
    report.make_mixed()
    report.set_type("multipart/report")
    report.set_param("report-type", "delivery-status")  # RFC 6522 §3
    # Deterministic boundary in Postfix's shape (queue id . time / host), so the same inputs
    # always give the same bytes.
    tag = queue_id or hashlib.sha256(message_id.encode()).hexdigest()[:11].upper()
    report.set_boundary(f"{tag}.{int(now.timestamp())}/{reporting_mta}")
    report.preamble = "This is a MIME-encapsulated message."

    lines = [f"This is the mail system at host {reporting_mta}.", ""]
    if warning:
        hours = max(0, int((now - arrival).total_seconds() // 3600))
        lines += ["#" * 68,
                  "# THIS IS A WARNING ONLY.  YOU DO NOT NEED TO RESEND YOUR MESSAGE. #",
                  "#" * 68, "",
                  f"Your message could not be delivered for more than {hours} hour(s)."]
        if will_retry_until is not None:
            days = round((will_retry_until - arrival).total_seconds() / 86400)
            lines.append(f"It will be retried until it is {days} day(s) old.")
    else:
        lines += ["I'm sorry to have to inform you that your message could not",
                  "be delivered to one or more recipients. It's attached below."]
    text = "\n".join(lines) + "\n\n" + _HELP + "\n"
    # One paragraph per recipient, wrapped with a four-space indent as Postfix does.
    text += "\n\n".join(textwrap.fill(f.text(), width=78, subsequent_indent="    ",
                                      break_long_words=False, break_on_hyphens=False)
                        for f in failures) + "\n"
    _attach(report, _text_part(text, "Notification"))

    # RFC 3464 §2.2: per-message fields, then one block per recipient (§2.3).
    per_message = [("Reporting-MTA", f"dns; {reporting_mta}")]
    if queue_id:
        per_message.append(("X-Postfix-Queue-ID", queue_id))
    per_message += [("X-Postfix-Sender", f"rfc822; {sender}"),
                    ("Arrival-Date", format_datetime(arrival))]
    blocks: list[Message | str] = [_fields(per_message)]
    for f in failures:
        pairs = [("Final-Recipient", f"rfc822; {f.recipient}"), ("Action", f.action),
                 ("Status", f.status)]
        if f.remote_mta:
            pairs.append(("Remote-MTA", f"dns; {f.remote_mta}"))
        pairs.append(("Diagnostic-Code", f.diagnostic))
        if f.action == "delayed" and will_retry_until is not None:
            pairs.append(("Will-Retry-Until", format_datetime(will_retry_until)))
        blocks.append(_fields(pairs))
    status = MIMEPart(policy=_POLICY)
    status["Content-Description"] = "Delivery report"
    status["Content-Type"] = "message/delivery-status"
    status.set_payload(blocks)
    _attach(report, status)

    _attach(report, _text_part(_original_headers(original),
                             "Delayed Message Headers" if warning
                             else "Undelivered Message Headers", subtype="rfc822-headers"))
    return report.as_bytes()
