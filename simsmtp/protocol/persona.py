"""Reply texts of the server persona: ONE table, so the core never hard-codes a text.

The default persona is Postfix's (the seed transcript learners compare with is a Postfix
one). Each entry is ``key: (code, template)``; templates use ``{host}``, ``{software}`` and
the fields the core passes (``{addr}``, ``{id}``, ...). A template with ``\\n`` is a
multi-line reply. A world may override entries (``ServerConfig.replies``) to play another
MTA: keep the codes, change the words (:func:`check_overrides` refuses a changed code).

Answers measured from Postfix 3.7.11 (virtual mailboxes; ``tests/interop`` asks a real
Postfix the same questions when one can run):

* an unknown command (``FOO bar``) and ``HELP`` (Postfix implements no HELP): ``500 5.5.2
  Error: command not recognized``. RFC 5321 §4.2.4 says a server SHOULD answer 500 to an
  unrecognized command; 502 is for a command it recognizes but does not implement.
* ``VRFY bob@anotherdomain.org`` -> ``252 2.0.0 bob@anotherdomain.org`` and ``VRFY
  nosuchuser@anotherdomain.org`` -> ``550 5.1.1 <nosuchuser@anotherdomain.org>: Recipient
  address rejected: User unknown in virtual mailbox table``: Postfix runs its recipient
  checks on the VRFY argument (the world's handler does it here), so by default VRFY *does*
  tell whether a user exists. ``disable_vrfy_command = yes`` gives ``502 5.5.1 VRFY command
  is disabled`` (RFC 5321 §7.3).
* relaying refused: ``454 4.7.1`` is Postfix's safety default (``defer_unauth_destination``,
  so that a configuration mistake defers mail instead of bouncing it); production
  configurations use ``reject_unauth_destination``: ``554 5.7.1`` (``relay_rejected``).
* a content line over 1000 octets (RFC 5321 §4.5.3.1.6) is accepted: Postfix chops it at
  ``line_length_limit`` (2048) and puts it back together on delivery, so the message is
  stored intact (see server.py).

Documented choices where Postfix and this project differ or Postfix says nothing (the
first four measured against Postfix 3.7.11 with its default settings):

* ``postmaster@<local domain>`` is always accepted (RFC 5321 §4.5.1); Postfix refuses it
  with ``550 5.1.1`` unless its maps list postmaster, as real set-ups do.
* ``QUIT now`` (an argument): ``501 5.5.4 Syntax: QUIT`` (RFC 5321 §4.1.1.10); Postfix
  ignores the argument and says ``221``.
* ``RCPT TO:bob@anotherdomain.org`` (no angle brackets): ``501`` (RFC 5321 §4.1.2);
  Postfix accepts it (``strict_rfc821_envelopes = no``).
* ``STARTTLS`` on a host without TLS: ``454 4.7.0 TLS not available due to local
  problem`` (RFC 3207 §4); Postfix says ``502 5.5.1 Error: command not implemented``.

* ``AUTH`` without TLS when plaintext AUTH is off: ``538 5.7.11`` (RFC 4954 §6); Postfix
  says ``504 5.5.4 Encryption required ...`` for the same case.
* The path limits (RFC 5321 §4.5.3.1.1-3), which Postfix does not check: ``553`` for a
  local part over 64 or a domain over 255 octets, ``501 Path too long`` (the wording of
  RFC 5321 §4.5.3.1.9) for a path over 256; enhanced code ``5.1.7`` for the sender and
  ``5.1.3`` for a recipient.
* End of data over the size limit: ``552 5.3.4 Error: too much mail data`` (RFC 5321
  §4.5.3.1.9 wording).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from .grammar import MAX_REPLY_LINE
from .replies import Reply

#: The Postfix persona. Comments cite where each code comes from.
POSTFIX: Mapping[str, tuple[int, str]] = MappingProxyType({
    # Greeting and session (RFC 5321 §4.2.2, §4.3.1, §3.8)
    "greeting": (220, "{host} ESMTP {software}"),
    "helo": (250, "{host}"),  # RFC 5321 §4.1.1.1
    "quit": (221, "2.0.0 Bye"),  # RFC 5321 §4.1.1.10
    "ok": (250, "2.0.0 Ok"),  # RSET, NOOP: RFC 5321 §4.1.1.5, §4.1.1.9
    # Postfix implements no HELP (RFC 5321 §4.1.1.8 lets a server answer 214 with help text;
    # a handler's handle_HELP can): it is an unknown command to Postfix.
    "help": (500, "5.5.2 Error: command not recognized"),
    "no_service": (503, "5.5.1 Error: no SMTP service here, send QUIT"),  # RFC 5321 §3.1
    "timeout": (421, "4.4.2 {host} Error: timeout exceeded"),  # RFC 5321 §4.5.3.2.7
    "shutdown": (421, "4.3.2 {host} Service shutting down"),  # RFC 5321 §3.8
    "too_many_errors": (421, "4.7.0 {host} Error: too many errors"),  # Postfix hard limit
    "too_many_auth_failures": (421, "4.7.0 {host} Error: too many failed authentication "
                                    "attempts"),  # RFC 4954 §4 (server MAY close)
    "handler_error": (451, "4.3.0 Error: internal error"),  # RFC 3463 4.3.0
    # Transaction (RFC 5321 §4.1.1.2-§4.1.1.4, §4.2.5)
    "mail_ok": (250, "2.1.0 Ok"),
    "rcpt_ok": (250, "2.1.5 Ok"),
    "data_go": (354, "End data with <CR><LF>.<CR><LF>"),
    "queued": (250, "2.0.0 Ok: queued as {id}"),
    "bdat_ok": (250, "2.0.0 Ok: {size} bytes"),  # RFC 3030 §2: 250 per chunk
    "user_unknown": (550, "5.1.1 <{addr}>: Recipient address rejected: User unknown in "
                          "virtual mailbox table"),  # for handlers (RFC 5321 §4.2.2 550)
    # Relaying refused: Postfix's default defer_unauth_destination (454, a safety net for
    # configuration mistakes), and reject_unauth_destination (554) of production
    # configurations; RFC 3463 §3.8: X.7.1 is useful only as a permanent error.
    "relay_denied": (454, "4.7.1 <{addr}>: Relay access denied"),
    "relay_rejected": (554, "5.7.1 <{addr}>: Relay access denied"),
    "too_many_rcpts": (452, "4.5.3 Error: too many recipients"),  # RFC 5321 §4.5.3.1.10
    "etrn_ok": (250, "Queuing started"),  # RFC 1985 §5
    "etrn_refused": (458, "Unable to queue messages for node {arg}"),  # RFC 1985 §5
    # Postfix, for a domain outside fast_flush_domains (default: the relay domains)
    "etrn_unavailable": (459, "<{arg}>: service unavailable"),  # RFC 1985 §5: 459
    "vrfy_default": (252, "2.0.0 {arg}"),  # RFC 5321 §3.5.3: cannot verify, will try
    "vrfy_disabled": (502, "5.5.1 VRFY command is disabled"),  # disable_vrfy_command = yes
    # Sequence (RFC 5321 §4.1.4, 503 bad sequence)
    "need_helo": (503, "5.5.1 Error: send HELO/EHLO first"),
    "need_mail": (503, "5.5.1 Error: need MAIL command"),
    "need_rcpt": (503, "5.5.1 Error: need RCPT command"),
    "no_valid_rcpt": (554, "5.5.1 Error: no valid recipients"),  # RFC 5321 §3.3
    "nested_mail": (503, "5.5.1 Error: nested MAIL command"),
    "in_transaction": (503, "5.5.1 Error: MAIL transaction in progress"),
    "data_after_bdat": (503, "5.5.1 Error: DATA after BDAT"),  # RFC 3030 §2
    "bad_sequence": (503, "5.5.1 Error: {verb} not allowed here; allowed: {allowed}"),
    # Syntax (RFC 5321 §4.2.2 500/501/502, §4.5.3.1.9)
    "unknown": (500, "5.5.2 Error: command not recognized"),  # RFC 5321 §4.2.4: 500
    "empty": (500, "5.5.2 Error: bad syntax"),
    "command_too_long": (500, "5.5.2 Error: command too long"),  # RFC 5321 §4.5.3.1.4
    "bare_lf": (500, "5.5.2 Error: bare <LF> received"),  # RFC 5321 §2.3.8
    "bare_cr": (500, "5.5.2 Error: bare <CR> received"),  # RFC 5321 §2.3.8
    "nul": (500, "5.5.2 Error: NUL character received"),  # RFC 5321 §4.1.1 (US-ASCII)
    "non_ascii": (500, "5.5.2 Error: non-ASCII character received"),  # RFC 5321 §2.4
    "bad_utf8": (500, "5.5.2 Error: invalid UTF-8 received"),  # RFC 6531 §3.3
    "syntax": (501, "5.5.4 Syntax: {usage}"),  # RFC 5321 §4.2.2 501
    "helo_syntax": (501, "Syntax: {verb} hostname"),  # Postfix 3.7.11: no enhanced code
    "mail_syntax": (501, "5.5.4 Syntax: MAIL FROM:<address>"),
    "rcpt_syntax": (501, "5.5.4 Syntax: RCPT TO:<address>"),
    "bad_sender": (501, "5.1.7 Bad sender address syntax"),
    "bad_recipient": (501, "5.1.3 Bad recipient address syntax"),
    "local_part_too_long": (553, "{dsn} Error: local part longer than 64 octets"),
    "domain_too_long": (553, "{dsn} Error: domain longer than 255 octets"),
    "path_too_long": (501, "{dsn} Error: path too long"),  # RFC 5321 §4.5.3.1.9
    "utf8_address": (553, "5.6.7 Error: non-ASCII address needs SMTPUTF8"),  # RFC 6531 §3.5
    "bad_params": (501, "5.5.4 Error: bad parameter syntax"),  # RFC 5321 §4.1.2
    "unsupported_option": (555, "5.5.4 Unsupported option: {option}"),  # RFC 5321 §4.1.1.11
    "bad_size": (501, "5.5.4 Bad message size syntax"),  # RFC 1870 §6
    "bad_param_value": (501, "5.5.4 Bad {param} parameter syntax"),  # RFC 3461, RFC 6152
    # Size (RFC 1870 §6, RFC 5321 §4.5.3.1.9)
    "size_declared": (552, "5.3.4 Message size exceeds fixed limit"),
    "data_too_big": (552, "5.3.4 Error: too much mail data"),
    "chunk_too_big": (552, "5.3.4 Chunk exceeds message size limit"),  # RFC 3030 §2
    # STARTTLS (RFC 3207 §4)
    "starttls_ready": (220, "2.0.0 Ready to start TLS"),
    "tls_unavailable": (454, "4.7.0 TLS not available due to local problem"),
    "tls_active": (554, "5.5.1 Error: TLS already active"),
    "tls_required": (530, "5.7.0 Must issue a STARTTLS command first"),
    # AUTH (RFC 4954 §4, §6)
    "auth_required": (530, "5.7.0 Authentication required"),
    "encryption_required": (538, "5.7.11 Encryption required for requested authentication "
                                 "mechanism"),
    "auth_ok": (235, "2.7.0 Authentication successful"),
    "auth_failed": (535, "5.7.8 Error: authentication failed: authentication failure"),
    "auth_bad_base64": (501, "5.5.2 Error: cannot decode base64"),
    "auth_bad_response": (501, "5.5.2 Error: malformed SASL response"),
    "auth_unknown_mech": (504, "5.5.4 Unrecognized authentication type"),
    "auth_already": (503, "5.5.1 Error: already authenticated"),
    "auth_aborted": (501, "5.7.0 Authentication aborted"),
    "auth_not_enabled": (503, "5.5.1 Error: authentication not enabled"),
    "auth_line_too_long": (500, "5.5.6 Authentication Exchange line is too long"),
    "auth_challenge": (334, "{challenge}"),
})

#: Reply text octets that fit in one reply line: 512 minus "NNN-" and CRLF
#: (RFC 5321 §4.5.3.1.5).
MAX_REPLY_TEXT = MAX_REPLY_LINE - 6


def check_overrides(overrides: Mapping[str, tuple[int, str]]) -> None:
    """Refuse an override that is not a persona entry or that changes its code.

    A reply's code moves the session's state (RFC 5321 §4.2: 2xx, 3xx, 4xx/5xx), so a
    persona changes the words only; a refusal belongs to a handler or a fault rule.

    Raises:
        ValueError: naming the key, the persona's code and the code given.
    """
    for key, (code, _template) in overrides.items():
        if key not in POSTFIX:
            raise ValueError(f"replies: {key!r} is not a persona reply key")
        own = POSTFIX[key][0]
        if code != own:
            raise ValueError(f"replies[{key!r}]: the persona's code is {own}, not {code}: an "
                             "override changes the words, not the code (a refusal belongs "
                             "to a handler or a fault rule)")


def clip(text: str, limit: int = 200) -> str:
    """Shorten peer-supplied text echoed in a reply (keeps reply lines within limits)."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(frozen=True)
class Persona:
    """Builds replies from a text table.

    Args:
        hostname: our host name (``{host}``).
        software: the name in the greeting (``{software}``).
        overrides: entries replacing those of :data:`POSTFIX`.
    """

    hostname: str
    software: str = "Postfix"
    overrides: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def reply(self, key: str, **fields: object) -> Reply:
        """The reply ``key`` with its template filled in; every line fits in 512 octets.

        Raises:
            KeyError: no such entry.
        """
        code, template = self.overrides.get(key) or POSTFIX[key]
        text = template.format(host=self.hostname, software=self.software, **fields)
        lines = []
        for line in text.split("\n"):
            raw = line.encode("utf-8", "surrogateescape")
            if len(raw) > MAX_REPLY_TEXT:
                line = raw[:MAX_REPLY_TEXT].decode("utf-8", "ignore")
            lines.append(line)
        return Reply(code, tuple(lines))

    def code(self, key: str) -> int:
        """The code of entry ``key``."""
        return (self.overrides.get(key) or POSTFIX[key])[0]
