"""All three checks on one message, and the Authentication-Results header (RFC 8601):
written and read.

:func:`evaluate` is what a receiving MX calls after DATA: SPF for the envelope, DKIM for
each signature, DMARC for the From: domain. The :class:`AuthVerdict` it returns renders the
``Authentication-Results:`` value, says what to do (``disposition``) and tells the story
step by step (``steps``) for a notebook. :func:`parse_authentication_results` reads such a
value back (:class:`AuthenticationResults`, one :class:`ResultEntry` per result), and
:func:`authentication_results` reads every one a message carries.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

from simsmtp.trace import Trace
from simsmtp.world.mailauth.dkim import MEANINGS as DKIM_MEANINGS
from simsmtp.world.mailauth.dkim import DKIMResult, verify_all
from simsmtp.world.mailauth.dmarc import MEANINGS as DMARC_MEANINGS
from simsmtp.world.mailauth.dmarc import DMARCResult, author_domains, check_dmarc
from simsmtp.world.mailauth.lookup import (
    AddressLookup,
    MXLookup,
    TxtLookup,
    no_addresses,
)
from simsmtp.world.mailauth.spf import MEANINGS as SPF_MEANINGS
from simsmtp.world.mailauth.spf import SPFResult, check_spf

__all__ = [
    "PROPERTY_MEANINGS",
    "AuthVerdict",
    "AuthenticationResults",
    "ResultEntry",
    "authentication_results",
    "evaluate",
    "parse_authentication_results",
    "strip_authentication_results",
    "temperror_verdict",
]

#: RFC 2045 §5.1 tspecials plus space and controls: a value holding one must be quoted
#: (RFC 8601 §2.2 ``value``).
_NEEDS_QUOTES = re.compile(r'[()<>@,;:\\"/\[\]?=\s\x00-\x1f\x7f]')


def _value(text: str) -> str:
    """An RFC 8601 §2.2 value: a token as is, anything else as a quoted-string."""
    if text and not _NEEDS_QUOTES.search(text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _pvalue(text: str) -> str:
    """A property value: RFC 8601 §2.2 allows ``[local-part] "@" domain`` unquoted."""
    if re.fullmatch(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]*@[A-Za-z0-9.-]+", text):
        return text
    return _value(text)


@dataclass(frozen=True)
class AuthVerdict:
    """SPF, DKIM and DMARC for one message.

    Attributes:
        spf: the SPF result (MAIL FROM identity, or HELO for a null sender).
        dkim: one result per DKIM-Signature, top first (a single ``none`` if unsigned).
        dmarc: the DMARC result and disposition.
        steps: the checks in plain words, in the order they ran.
    """

    spf: SPFResult
    dkim: tuple[DKIMResult, ...]
    dmarc: DMARCResult
    steps: list[str] = field(default_factory=list)

    @property
    def disposition(self) -> str:
        """What the From: domain asks for this message: none, quarantine or reject."""
        return self.dmarc.disposition

    def summary(self) -> str:
        """The results in one line, e.g. ``spf=pass dkim=pass dmarc=pass``."""
        dkim = " ".join(f"dkim={r.result}" for r in self.dkim)
        return f"spf={self.spf.result} {dkim} dmarc={self.dmarc.result}"

    def authentication_results(self, authserv_id: str, *, comments: bool = False) -> str:
        """The ``Authentication-Results:`` field value (RFC 8601 §2.2), one line, e.g.
        ``mail.anotherdomain.org; spf=pass smtp.mailfrom=example.com; dkim=pass
        header.d=example.com header.s=mail; dmarc=pass header.from=example.com``.

        Args:
            authserv_id: who did the checks: the receiving host's name (RFC 8601 §2.5).
            comments: add ``(p=reject dis=reject)`` after the DMARC result, as OpenDMARC
                and large mailbox providers do.
        """
        return "; ".join([authserv_id, *self._resinfo(comments)])

    def header_field(self, authserv_id: str, *, comments: bool = False) -> bytes:
        """The whole header field, folded one result per line, ending in CRLF
        (RFC 5322 §2.2.3 folding)."""
        parts = [authserv_id, *self._resinfo(comments)]
        text = "Authentication-Results: " + ";\r\n\t".join(parts) + "\r\n"
        return text.encode("utf-8", "replace")  # RFC 6532 §3.2: UTF-8 in header fields

    def stamp(self, message: bytes, authserv_id: str, *, comments: bool = False) -> bytes:
        """``message`` with our Authentication-Results on top, after removing any that
        claim to be ours already (a forgery: RFC 8601 §5)."""
        cleaned = strip_authentication_results(message, authserv_id)
        return self.header_field(authserv_id, comments=comments) + cleaned

    def record(self, trace: Trace, host: str) -> None:
        """Record ``auth.spf``, ``auth.dkim`` (one per result) and ``auth.dmarc`` in
        ``trace``, with the records read and the verdicts."""
        spf, dmarc = self.spf, self.dmarc
        trace.record("auth.spf", host, result=spf.result, identity=spf.identity,
                     domain=spf.domain, client_ip=spf.client_ip, record=spf.record,
                     records=dict(spf.records), mechanism=spf.mechanism,
                     problem=spf.problem, explanation=spf.explanation)
        for r in self.dkim:
            trace.record("auth.dkim", host, result=r.result, domain=r.domain,
                         selector=r.selector, reason=r.reason, key_name=r.key_name,
                         key_record=r.key_record, explanation=r.explanation)
        trace.record("auth.dmarc", host, result=dmarc.result, from_domain=dmarc.from_domain,
                     policy_domain=dmarc.policy_domain,
                     record=dmarc.record.text if dmarc.record else None,
                     policy=dmarc.policy, disposition=dmarc.disposition,
                     explanation=dmarc.explanation)

    def _resinfo(self, comments: bool) -> list[str]:
        spf = self.spf
        spf_part = f"spf={spf.result}"
        if spf.identity == "helo":
            helo = spf.sender.rpartition("@")[2] or spf.domain
            if helo:
                spf_part += f" smtp.helo={_pvalue(helo)}"
        elif spf.domain:  # RFC 8601 §2.7.2 smtp.mailfrom (the domain, as DMARC uses it)
            spf_part += f" smtp.mailfrom={_pvalue(spf.domain)}"
        out = [spf_part]
        for r in self.dkim:  # RFC 8601 §2.7.1 header.d, header.s
            part = f"dkim={r.result}"
            if r.reason:
                part += f" reason={_value(r.reason)}"
            if r.domain:
                part += f" header.d={_pvalue(r.domain)}"
            if r.selector:
                part += f" header.s={_pvalue(r.selector)}"
            out.append(part)
        dmarc = self.dmarc
        part = f"dmarc={dmarc.result}"
        if comments and dmarc.policy is not None:
            part += f" (p={dmarc.policy} dis={dmarc.disposition})"
        if dmarc.from_domain:  # RFC 7489 §11.2 header.from
            part += f" header.from={_pvalue(dmarc.from_domain)}"
        out.append(part)
        return out


def strip_authentication_results(message: bytes, authserv_id: str) -> bytes:
    """Remove the Authentication-Results fields whose authserv-id is ``authserv_id``
    (RFC 8601 §5: a border MTA must not pass on results claiming to be its own). Other
    bytes are kept exactly, so DKIM signatures still verify."""
    end = message.find(b"\r\n\r\n")
    head, body = (message, b"") if end < 0 else (message[:end + 2], message[end + 2:])
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    wanted = authserv_id.lower()
    kept = []
    for f in fields:
        name, colon, value = f.partition(b":")
        if colon and name.strip().lower() == b"authentication-results":
            text = re.sub(r"\([^)]*\)", " ", value.decode("utf-8", "replace"))
            ident = text.split(";", 1)[0].split()
            if ident and ident[0].lower() == wanted:
                continue
        kept.append(f)
    return b"".join(kept) + body


def evaluate(message: bytes, *, client_ip: str, helo: str, mail_from: str,
             dns_txt: TxtLookup, dns_a: AddressLookup, dns_mx: MXLookup,
             dns_aaaa: AddressLookup = no_addresses, receiver: str = "",
             roll: float | None = None, trace: Trace | None = None,
             host: str = "", spf: SPFResult | None = None) -> AuthVerdict:
    """Run SPF (RFC 7208), DKIM (RFC 6376) and DMARC (RFC 7489) on a received message.

    Args:
        message: the message as received (after DATA, before we add any header).
        client_ip: the SMTP client's address.
        helo: the name it gave in HELO/EHLO.
        mail_from: the reverse-path of MAIL FROM (``""`` or ``"<>"`` for a bounce).
        dns_txt: TXT lookup; ``dns_a``, ``dns_mx``, ``dns_aaaa`` likewise (see
            :mod:`.lookup`; :func:`.lookup.dns_functions` builds them from a resolver).
        receiver: our host name (SPF's ``%{r}`` macro).
        roll: a number in [0, 100) for DMARC's pct= sampling (default from the message).
        trace: if given, ``auth.spf``, ``auth.dkim`` (one per signature) and
            ``auth.dmarc`` events are recorded, with the records read and the verdicts.
        host: the host name for the trace events.
        spf: the SPF result when the caller already has it (the same ``check_spf`` on the
            same arguments and DNS, remembered); computed here otherwise.
    """
    if spf is None:
        spf = check_spf(client_ip, mail_from, helo, dns_txt=dns_txt, dns_a=dns_a,
                        dns_mx=dns_mx, dns_aaaa=dns_aaaa, receiver=receiver)
    dkim = tuple(verify_all(message, dns_txt))
    dmarc = check_dmarc(message, spf=spf, dkim=dkim, dns_txt=dns_txt, roll=roll)
    verdict = AuthVerdict(spf, dkim, dmarc,
                          [spf.explanation, *(r.explanation for r in dkim), dmarc.explanation])
    if trace is not None:
        verdict.record(trace, host)
    return verdict


def temperror_verdict(message: bytes, *, client_ip: str, helo: str, mail_from: str,
                      why: str) -> AuthVerdict:
    """The honest verdict when the checks could not finish (e.g. past their time budget):
    ``temperror`` for SPF, DKIM and DMARC alike (RFC 7208 §2.6.6, RFC 6376 §6.1.2 TEMPFAIL,
    RFC 7489 §11.2), with ``why`` as the reason. Nothing is looked up.
    """
    sender = mail_from.strip("<>")
    identity = "mailfrom" if sender else "helo"
    domain = sender.rpartition("@")[2] if sender else helo
    spf = SPFResult("temperror", identity, domain.lower(), sender or f"postmaster@{helo}",
                    client_ip, problem=why,
                    explanation=f"SPF: not finished ({why}), so temperror (RFC 7208 §2.6.6)")
    dkim = DKIMResult("temperror", reason=why,
                      explanation=f"DKIM: not finished ({why}), so temperror "
                                  "(RFC 6376 §6.1.2)")
    try:
        domains = author_domains(message)
    except Exception:  # a header section we cannot read: no domain to name
        domains = []
    dmarc = DMARCResult("temperror", from_domain=domains[0] if len(domains) == 1 else "",
                        explanation=f"DMARC: not finished ({why}), so temperror: the "
                                    "receiver should try again later (RFC 7489 §6.6.3)")
    return AuthVerdict(spf, (dkim,), dmarc,
                       [spf.explanation, dkim.explanation, dmarc.explanation])


# ------------------------------------------------------------- reading it back

#: What the properties of an Authentication-Results result say (RFC 8601 §2.7, §2.3).
PROPERTY_MEANINGS = {
    "smtp.mailfrom": "the domain SPF checked: the envelope sender's (MAIL FROM), not From:",
    "smtp.helo": "the HELO name SPF checked (the envelope sender was empty)",
    "header.d": "the signing domain (d= of the DKIM-Signature)",
    "header.s": "the selector: the key was at <s>._domainkey.<d>",
    "header.i": "the signer's identity (i=)",
    "header.from": "the From: domain DMARC protects",
    "reason": "why",
}


def _split_outside(text_: str, sep: str) -> list[str]:
    """Split at ``sep`` outside quoted strings and (comments) (RFC 8601 §2.2)."""
    parts, buf, depth, quoted, escaped = [], [], 0, False, False
    for ch in text_:
        if escaped:
            buf.append(ch)
            escaped = False
            continue
        if ch == "\\":
            buf.append(ch)
            escaped = True
            continue
        if ch == '"' and depth == 0:
            quoted = not quoted
        elif not quoted and ch == "(":
            depth += 1
        elif not quoted and ch == ")" and depth:
            depth -= 1
        elif ch == sep and not quoted and depth == 0:
            parts.append("".join(buf).strip())
            buf = []
            continue
        buf.append(ch)
    parts.append("".join(buf).strip())
    return [p for p in parts if p]


@dataclass(frozen=True)
class ResultEntry:
    """One result of an Authentication-Results header field (RFC 8601 §2.2 resinfo)."""

    method: str
    result: str
    comment: str = ""
    properties: dict[str, str] = field(default_factory=dict)

    @property
    def meaning(self) -> str:
        """What the result means, in plain words."""
        table = {"spf": SPF_MEANINGS, "dkim": DKIM_MEANINGS, "dmarc": DMARC_MEANINGS}
        return table.get(self.method, {}).get(self.result, "")


@dataclass(frozen=True)
class AuthenticationResults:
    """One parsed Authentication-Results header field."""

    authserv_id: str
    results: tuple[ResultEntry, ...]
    raw: str

    def get(self, method: str) -> ResultEntry | None:
        """The first result of ``method`` (``"spf"``, ``"dkim"``, ``"dmarc"``)."""
        return next((r for r in self.results if r.method == method), None)


def parse_authentication_results(value: str) -> AuthenticationResults:
    """Read an Authentication-Results value (RFC 8601 §2.2): who checked, and each result
    with its comment and properties.

    >>> ar = parse_authentication_results("mx.example; spf=pass smtp.mailfrom=example.com")
    >>> ar.authserv_id, ar.get("spf").properties
    ('mx.example', {'smtp.mailfrom': 'example.com'})
    """
    flat = " ".join(value.split())
    parts = _split_outside(flat, ";")
    head = re.sub(r"\([^)]*\)", " ", parts[0]).split() if parts else []
    authserv = head[0] if head else ""
    entries = []
    for part in parts[1:]:
        comments = re.findall(r"\(([^)]*)\)", part)
        bare = re.sub(r"\([^)]*\)", " ", part)
        pairs = re.findall(r'([A-Za-z0-9_.-]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^\s;]+)', bare)
        if not pairs:
            continue
        method, result = pairs[0]
        props = {k.lower(): v.strip('"') for k, v in pairs[1:]}
        entries.append(ResultEntry(method.lower(), result.lower(), "; ".join(comments),
                                   props))
    return AuthenticationResults(authserv, tuple(entries), flat)


def authentication_results(message: EmailMessage | bytes | str) -> list[AuthenticationResults]:
    """Every Authentication-Results header field of ``message``, top (newest) first."""
    if not isinstance(message, EmailMessage):
        raw = message.encode("utf-8") if isinstance(message, str) else message
        message = BytesParser(policy=policy.default).parsebytes(raw, headersonly=True)
    found = message.get_all("Authentication-Results") or []
    return [parse_authentication_results(str(v)) for v in found]
