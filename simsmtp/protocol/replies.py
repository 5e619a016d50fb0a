"""SMTP replies: codes (RFC 5321 §4.2), enhanced status codes (RFC 3463, RFC 5248) and
plain-words explanations a learner can ask for with ``reply.explain()``."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from enum import IntEnum


class ReplyCode(IntEnum):
    """Basic reply codes (RFC 5321 §4.2.2/§4.2.3; 235/334/454/530/535/538: RFC 4954;
    521/556: RFC 7504, 556 being what a null MX (RFC 7505 §4.1) leads to)."""

    SYSTEM_STATUS = 211
    HELP = 214
    SERVICE_READY = 220
    CLOSING = 221
    AUTH_SUCCESSFUL = 235
    OK = 250
    WILL_FORWARD = 251
    CANNOT_VRFY = 252
    AUTH_CONTINUE = 334
    START_MAIL_INPUT = 354
    SERVICE_NOT_AVAILABLE = 421
    MAILBOX_BUSY = 450
    LOCAL_ERROR = 451
    INSUFFICIENT_STORAGE = 452
    TEMPORARY_FAILURE = 454
    PARAMETERS_NOT_ACCOMMODATED_TEMP = 455
    SYNTAX_ERROR = 500
    PARAMETER_SYNTAX_ERROR = 501
    NOT_IMPLEMENTED = 502
    BAD_SEQUENCE = 503
    PARAMETER_NOT_IMPLEMENTED = 504
    AUTH_REQUIRED = 530
    AUTH_TOO_WEAK = 534
    AUTH_INVALID = 535
    ENCRYPTION_REQUIRED = 538
    MAILBOX_UNAVAILABLE = 550
    USER_NOT_LOCAL = 551
    EXCEEDED_STORAGE = 552
    MAILBOX_NAME_NOT_ALLOWED = 553
    TRANSACTION_FAILED = 554
    PARAMETERS_NOT_RECOGNIZED = 555
    HOST_ACCEPTS_NO_MAIL = 521
    DOMAIN_ACCEPTS_NO_MAIL = 556


#: What the first digit says (RFC 5321 §4.2.1).
CODE_CLASS = {
    2: "Positive completion: the action was done.",
    3: "Positive intermediate: go on, send the rest (data or an AUTH answer).",
    4: "Transient failure: not done now, the sender should try again later.",
    5: "Permanent failure: not done, and trying again the same way will not help.",
}

#: What the second digit says (RFC 5321 §4.2.1).
CODE_SUBJECT = {
    0: "syntax",
    1: "information",
    2: "the connection",
    3: "unspecified",
    4: "unspecified",
    5: "the mail system (mailbox, policy, transaction)",
}

#: Class of an enhanced status code (RFC 3463 §3.1).
ENHANCED_CLASS = {
    "2": "Success",
    "4": "Persistent transient failure",
    "5": "Permanent failure",
}

#: Subject and detail of enhanced status codes (RFC 3463 §3.2-§3.9, RFC 5248 registry).
ENHANCED_DETAIL = {
    "0.0": "Other undefined status",
    "1.0": "Other address status",
    "1.1": "Bad destination mailbox address (the user does not exist there)",
    "1.2": "Bad destination system address (the domain does not exist or accept mail)",
    "1.3": "Bad destination mailbox address syntax",
    "1.4": "Destination mailbox address ambiguous",
    "1.5": "Destination address valid",
    "1.6": "Destination mailbox has moved, no forwarding address",
    "1.7": "Bad sender's mailbox address syntax",
    "1.8": "Bad sender's system address",
    "1.10": "Recipient address has null MX (RFC 7505 §4.1)",
    "2.0": "Other or undefined mailbox status",
    "2.1": "Mailbox disabled, not accepting messages",
    "2.2": "Mailbox full",
    "2.3": "Message length exceeds administrative limit",
    "2.4": "Mailing list expansion problem",
    "3.0": "Other or undefined mail system status",
    "3.1": "Mail system full",
    "3.2": "System not accepting network messages",
    "3.3": "System not capable of selected features",
    "3.4": "Message too big for system",
    "3.5": "System incorrectly configured",
    "4.0": "Other or undefined network or routing status",
    "4.1": "No answer from host",
    "4.2": "Bad connection",
    "4.3": "Directory server failure (e.g. DNS)",
    "4.4": "Unable to route",
    "4.5": "Mail system congestion",
    "4.6": "Routing loop detected",
    "4.7": "Delivery time expired",
    "5.0": "Other or undefined protocol status",
    "5.1": "Invalid command (not allowed here or unknown)",
    "5.2": "Syntax error",
    "5.3": "Too many recipients",
    "5.4": "Invalid command arguments",
    "5.5": "Wrong protocol version",
    "5.6": "Authentication exchange line is too long",
    "6.0": "Other or undefined media error",
    "6.3": "Conversion required but not supported",
    "6.7": "Non-ASCII addresses not permitted for that sender/recipient",
    "7.0": "Other or undefined security status (e.g. authentication or TLS required)",
    "7.1": "Delivery not authorized, message refused (e.g. relay access denied)",
    "7.4": "Security features not supported",
    "7.8": "Authentication credentials invalid",
    "7.9": "Authentication mechanism is too weak",
    "7.11": "Encryption required for requested authentication mechanism",
    "7.12": "A password transition is needed",
    "7.23": "SPF validation failed",
    "7.25": "Reverse DNS validation failed",
    "7.26": "Multiple authentication checks failed",
    "7.27": "Sender address has null MX (RFC 7505 §4.2)",
}


def _split_enhanced(text: str) -> tuple[str | None, str]:
    head, _, rest = text.partition(" ")
    parts = head.split(".")
    if (len(parts) == 3 and parts[0] in ("2", "4", "5")
            and all(p.isdigit() and 0 < len(p) <= 3 for p in parts)):
        return head, rest
    return None, text


@dataclass(frozen=True)
class Reply:
    """An SMTP reply: a three-digit code and one or more lines of text.

    ``Reply(250, "2.1.0 Ok")`` is one line; ``Reply(250, ("mail.example.com", "PIPELINING"))``
    is a multi-line reply (``250-…`` lines, then ``250 …``).
    """

    code: int
    lines: tuple[str, ...] = ("",)

    def __init__(self, code: int, text: str | tuple[str, ...] | list[str] = "") -> None:
        if not 200 <= int(code) <= 599:
            raise ValueError(f"reply code must be 200-599, not {code}")
        lines = (text,) if isinstance(text, str) else tuple(text) or ("",)
        for line in lines:
            if "\r" in line or "\n" in line:
                raise ValueError("reply text must not contain CR or LF")
        object.__setattr__(self, "code", int(code))
        object.__setattr__(self, "lines", lines)

    @property
    def text(self) -> str:
        """All the lines joined by newlines."""
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code (``"2.1.0"``) if the first line carries one."""
        return _split_enhanced(self.lines[0])[0]

    @property
    def is_positive(self) -> bool:
        return self.code < 400

    @property
    def is_transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def is_permanent(self) -> bool:
        return self.code >= 500

    def to_bytes(self) -> bytes:
        """The wire form: ``250-a\\r\\n250 b\\r\\n``."""
        out = []
        last = len(self.lines) - 1
        for i, line in enumerate(self.lines):
            sep = " " if i == last else "-"
            if line:
                out.append(f"{self.code}{sep}{line}".rstrip(" ") + "\r\n")
            elif self.code == 334:
                # RFC 4954 §4: continue-req = "334" SP [base64] CRLF: an empty challenge
                # keeps its space (as Postfix sends it; strict clients such as s-nail
                # read "334" alone as a broken reply).
                out.append(f"334{sep}\r\n")
            else:
                out.append(f"{self.code}\r\n")
        return "".join(out).encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "replace").rstrip("\r\n").replace("\r\n", "\n")

    def explain(self) -> str:
        """Explain the reply in plain words: class, subject and (enhanced) detail."""
        first, second = self.code // 100, (self.code // 10) % 10
        parts = [f"{self.code}: {CODE_CLASS.get(first, 'Unknown class')} "
                 f"(second digit {second}: {CODE_SUBJECT.get(second, 'unknown')})."]
        with contextlib.suppress(ValueError, KeyError):
            parts.append(f"Meaning of {self.code}: {_CODE_MEANING[ReplyCode(self.code)]}.")
        enhanced = self.enhanced
        if enhanced:
            cls, subject, detail = enhanced.split(".")
            what = ENHANCED_DETAIL.get(f"{subject}.{detail}",
                                       ENHANCED_DETAIL.get(f"{subject}.0", "unknown"))
            parts.append(f"Enhanced status {enhanced} (RFC 3463): "
                         f"{ENHANCED_CLASS.get(cls, '?')}; {what}.")
        return " ".join(parts)


_CODE_MEANING = {
    ReplyCode.SYSTEM_STATUS: "system status or help reply",
    ReplyCode.HELP: "help message for a human",
    ReplyCode.SERVICE_READY: "the server is ready (greeting, or ready to start TLS)",
    ReplyCode.CLOSING: "the server is closing the connection",
    ReplyCode.AUTH_SUCCESSFUL: "authentication succeeded",
    ReplyCode.OK: "requested action okay, completed",
    ReplyCode.WILL_FORWARD: "user not local; the server will forward",
    ReplyCode.CANNOT_VRFY: "cannot verify the user, but will accept the message and try",
    ReplyCode.AUTH_CONTINUE: "AUTH challenge: send the next (base64) answer",
    ReplyCode.START_MAIL_INPUT: "start mail input; end it with <CRLF>.<CRLF>",
    ReplyCode.SERVICE_NOT_AVAILABLE: "service not available, closing the connection",
    ReplyCode.MAILBOX_BUSY: "mailbox unavailable for now (busy, greylisted, blocked for policy)",
    ReplyCode.LOCAL_ERROR: "aborted: local error in processing",
    ReplyCode.INSUFFICIENT_STORAGE: "insufficient system storage (or too many recipients)",
    ReplyCode.TEMPORARY_FAILURE: ("temporary failure (TLS not available, or relay deferred "
                                  "by Postfix's default defer_unauth_destination)"),
    ReplyCode.PARAMETERS_NOT_ACCOMMODATED_TEMP: "server unable to accommodate parameters",
    ReplyCode.SYNTAX_ERROR: "syntax error, command unrecognized (or line too long)",
    ReplyCode.PARAMETER_SYNTAX_ERROR: "syntax error in parameters or arguments",
    ReplyCode.NOT_IMPLEMENTED: "command not implemented",
    ReplyCode.BAD_SEQUENCE: "bad sequence of commands",
    ReplyCode.PARAMETER_NOT_IMPLEMENTED: "command parameter not implemented",
    ReplyCode.AUTH_REQUIRED: "authentication (or STARTTLS) required first",
    ReplyCode.AUTH_TOO_WEAK: "authentication mechanism is too weak",
    ReplyCode.AUTH_INVALID: "authentication credentials invalid",
    ReplyCode.ENCRYPTION_REQUIRED: "encryption required for this authentication mechanism",
    ReplyCode.MAILBOX_UNAVAILABLE: "mailbox unavailable (no such user, or refused for policy)",
    ReplyCode.USER_NOT_LOCAL: "user not local",
    ReplyCode.EXCEEDED_STORAGE: "exceeded storage allocation (message too large)",
    ReplyCode.MAILBOX_NAME_NOT_ALLOWED: "mailbox name not allowed (bad address syntax)",
    ReplyCode.TRANSACTION_FAILED: "transaction failed (or no SMTP service here)",
    ReplyCode.PARAMETERS_NOT_RECOGNIZED: "MAIL/RCPT parameters not recognized or implemented",
    ReplyCode.HOST_ACCEPTS_NO_MAIL: "this host does not accept mail (RFC 7504)",
    ReplyCode.DOMAIN_ACCEPTS_NO_MAIL: ("domain does not accept mail (RFC 7504), e.g. it "
                                       "publishes a null MX (RFC 7505)"),
}
