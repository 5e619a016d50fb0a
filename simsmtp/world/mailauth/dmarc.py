"""DMARC (RFC 7489): does an authenticated domain match the From: the reader sees?

SPF authenticates the envelope (MAIL FROM), DKIM the signing domain ``d=``; neither says
anything about the ``From:`` header the reader sees. DMARC asks the From: domain's owner
for a policy at ``_dmarc.<domain>`` and passes the message only when SPF or DKIM passed
**for a domain aligned with From:** (§3.1). Otherwise the owner's policy says what to do:
``none`` (just report), ``quarantine`` (Junk) or ``reject``.

Simplification: the Organizational Domain (§3.2) is taken as the last two labels of a name
(``mail.example.com`` → ``example.com``) instead of consulting the Public Suffix List, so
names under ``co.uk``-like suffixes are treated wrongly. The simulated worlds use plain
two-label domains.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from email import policy
from email.parser import HeaderParser
from email.utils import getaddresses

from simsmtp.world.mailauth.dkim import DKIMResult, header_section
from simsmtp.world.mailauth.lookup import DNSTempError, QueryLog, TxtLookup
from simsmtp.world.mailauth.spf import SPFResult

__all__ = [
    "DISPOSITIONS",
    "MEANINGS",
    "DMARCRecord",
    "DMARCResult",
    "aligned",
    "author_domains",
    "check_dmarc",
    "organizational_domain",
    "parse_record",
]

#: What a receiver may do with a failing message, mildest first (RFC 7489 §6.3 p=).
DISPOSITIONS = ("none", "quarantine", "reject")

#: What each DMARC result means (RFC 7489 §3.1, §6.6; RFC 8601 §2.7 / RFC 7489 §11.2).
MEANINGS = {
    "pass": "SPF or DKIM passed for a domain aligned with the From: domain: the From: the "
            "reader sees is vouched for",
    "fail": "neither SPF nor DKIM passed for a domain aligned with the From: domain: the "
            "From: cannot be trusted, and the domain's policy applies",
    "none": "the From: domain publishes no DMARC policy: nothing to apply",
    "temperror": "the DMARC record could not be fetched now",
    "permerror": "DMARC cannot be applied (e.g. no single From: domain)",
}

_POLICIES = frozenset(DISPOSITIONS)
_TAG = re.compile(r"^([A-Za-z][A-Za-z0-9_]*)\s*=\s*(.*)$", re.DOTALL)


def organizational_domain(domain: str) -> str:
    """The Organizational Domain (RFC 7489 §3.2), simplified to the last two labels.

    >>> organizational_domain("Mail.Example.COM.")
    'example.com'
    """
    labels = [label for label in domain.lower().rstrip(".").split(".") if label]
    return ".".join(labels[-2:])


def aligned(domain: str, author_domain: str, mode: str) -> bool:
    """Identifier alignment (RFC 7489 §3.1): strict ``"s"`` needs the same name, relaxed
    ``"r"`` the same Organizational Domain.

    >>> aligned("bounces.example.com", "example.com", "r"), aligned("bounces.example.com",
    ...                                                             "example.com", "s")
    (True, False)
    """
    a = domain.lower().rstrip(".")
    b = author_domain.lower().rstrip(".")
    if not a or not b:
        return False
    if mode == "s":
        return a == b
    return organizational_domain(a) == organizational_domain(b)


# ----------------------------------------------------------------------------- record

@dataclass(frozen=True)
class DMARCRecord:
    """A parsed DMARC policy record (RFC 7489 §6.3).

    Attributes:
        text: the record as published.
        p: the requested policy for the domain (None when missing or invalid).
        sp: the policy for subdomains (None: same as p).
        adkim: DKIM alignment mode, ``"r"`` relaxed (default) or ``"s"`` strict.
        aspf: SPF alignment mode, ``"r"`` or ``"s"``.
        pct: percentage of failing mail the policy applies to (default 100).
        rua: aggregate report addresses (URIs).
        ruf: failure report addresses (URIs).
        tags: every tag as published (names lower-cased).
        problems: invalid values that were ignored, in plain words.
    """

    text: str
    p: str | None = None
    sp: str | None = None
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100
    rua: tuple[str, ...] = ()
    ruf: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)
    problems: tuple[str, ...] = ()


def _uris(value: str) -> tuple[str, ...]:
    """Valid report URIs of a comma-separated list (RFC 7489 §6.2: a scheme is needed)."""
    found = []
    for part in value.split(","):
        uri = part.strip()
        if re.match(r"^[A-Za-z][A-Za-z0-9+.-]*:\S+$", uri):
            found.append(uri)
    return tuple(found)


def parse_record(text: str) -> DMARCRecord | None:
    """Parse a TXT value as a DMARC record; None when it is not one (RFC 7489 §6.4: the
    first tag must be exactly ``v=DMARC1``).

    >>> parse_record("v=DMARC1; p=reject; rua=mailto:dmarc@example.com").p
    'reject'
    """
    parts = [part.strip() for part in text.split(";")]
    if not parts or re.fullmatch(r"v\s*=\s*DMARC1", parts[0]) is None:
        return None
    tags: dict[str, str] = {}
    for part in parts[1:]:
        match = _TAG.match(part)
        if match:
            tags.setdefault(match.group(1).lower(), match.group(2).strip())
    problems: list[str] = []

    def policy_tag(name: str) -> str | None:
        if name not in tags:
            return None
        value = tags[name].lower()
        if value in _POLICIES:
            return value
        problems.append(f"{name}={tags[name]} is not none, quarantine or reject")
        return None

    def mode_tag(name: str) -> str:
        value = tags.get(name, "r").lower()
        if value in ("r", "s"):
            return value
        problems.append(f"{name}={tags[name]} is not r or s; relaxed is used")
        return "r"

    p = policy_tag("p")
    if "p" not in tags:
        problems.append("the required p= tag is missing")
    sp = policy_tag("sp")
    pct = 100
    if "pct" in tags:
        if re.fullmatch(r"\d{1,3}", tags["pct"]) and int(tags["pct"]) <= 100:
            pct = int(tags["pct"])
        else:
            problems.append(f"pct={tags['pct']} is not 0-100; 100 is used")
    return DMARCRecord(text=text, p=p, sp=sp, adkim=mode_tag("adkim"), aspf=mode_tag("aspf"),
                       pct=pct, rua=_uris(tags.get("rua", "")), ruf=_uris(tags.get("ruf", "")),
                       tags=tags, problems=tuple(problems))


# ----------------------------------------------------------------------------- result

@dataclass(frozen=True)
class DMARCResult:
    """The outcome of DMARC for one message.

    Attributes:
        result: ``pass``, ``fail``, ``none`` (no usable policy), ``temperror`` or
            ``permerror`` (no single author domain).
        from_domain: the RFC5322.From domain ("" when there is none).
        policy_domain: where the record was found (the From domain or its
            Organizational Domain); "" when none was.
        record: the parsed policy record, or None.
        policy: the policy requested for this message (p=, or sp= for a subdomain), or
            None when there is no policy.
        disposition: what to do: ``none``, ``quarantine`` or ``reject``.
        spf_aligned: SPF passed for a domain aligned with From.
        dkim_aligned: a DKIM signature passed for a domain aligned with From.
        sampled: whether the message fell within pct= (RFC 7489 §6.6.4).
        explanation: the check in plain words.
        queries: the DNS questions asked and their answers.
    """

    result: str
    from_domain: str = ""
    policy_domain: str = ""
    record: DMARCRecord | None = None
    policy: str | None = None
    disposition: str = "none"
    spf_aligned: bool = False
    dkim_aligned: bool = False
    sampled: bool = True
    explanation: str = ""
    queries: tuple[tuple[str, str, object], ...] = ()


def author_domains(message: bytes) -> list[str]:
    """The distinct domains of the addresses in the From: header field(s), in order
    (RFC 7489 §6.6.1; RFC 5322 §3.6.2)."""
    # Header fields may carry UTF-8 (RFC 6532 §3.2): decode losslessly, then as UTF-8.
    # Only the header section is parsed: a large body costs nothing here.
    parsed = HeaderParser(policy=policy.compat32).parsestr(
        header_section(message).decode("utf-8", "surrogateescape"), headersonly=True)
    values = [str(v).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
              for v in parsed.get_all("From", [])]
    domains: list[str] = []
    for _name, address in getaddresses(values):
        domain = address.rpartition("@")[2].strip().rstrip(".").lower() if "@" in address \
            else ""
        if domain and domain not in domains:
            domains.append(domain)
    return domains


def _alignment_words(ok: bool, from_domain: str, mode: str) -> str:
    if mode == "s":
        return ("aligned (strict: the same domain)" if ok else
                f"which is not aligned with {from_domain} (strict needs the same domain)")
    return ("aligned (relaxed: the same organizational domain)" if ok else
            f"which is not aligned with {from_domain} (relaxed needs the same "
            "organizational domain)")


def _roll(message: bytes) -> float:
    """A reproducible number in [0, 100) for pct= sampling, from the message's bytes."""
    return int.from_bytes(hashlib.sha256(message).digest()[:4], "big") / 2**32 * 100


def _discover(domain: str, dns_txt: TxtLookup) -> tuple[list[str], str]:
    """The DMARC records at ``_dmarc.<domain>`` (and ``None``-safe): (records, note)."""
    answer = dns_txt(f"_dmarc.{domain}")
    if answer is None:
        return [], f"_dmarc.{domain} does not exist"
    records = [text for text in answer if parse_record(text) is not None]
    if not records:
        return [], f"_dmarc.{domain} has no DMARC record"
    return records, ""


def check_dmarc(message: bytes, *, spf: SPFResult, dkim: Sequence[DKIMResult],
                dns_txt: TxtLookup, roll: float | None = None) -> DMARCResult:
    """Apply DMARC to a message whose SPF and DKIM results are known (RFC 7489 §6.6).

    Args:
        message: the message (its From: header is read).
        spf: the SPF result for MAIL FROM (or HELO with a null sender, RFC 7208 §2.4).
        dkim: the DKIM results, one per signature.
        dns_txt: TXT lookup (see :mod:`.lookup`) for ``_dmarc`` records.
        roll: a number in [0, 100) compared with pct= (RFC 7489 §6.6.4); by default
            derived from the message bytes, so the same message is always treated alike.
    """
    log = QueryLog()
    dns_txt = log.wrap("TXT", dns_txt)
    domains = author_domains(message)
    if len(domains) != 1:  # RFC 7489 §6.6.1: exactly one author domain is needed
        what = "no From: address" if not domains else \
            f"From: addresses in several domains ({', '.join(domains)})"
        return DMARCResult(
            "permerror", explanation=f"DMARC: the message has {what}, so there is no single "
                                     "author domain to check: permerror (RFC 7489 §6.6.1)")
    from_domain = domains[0]
    org = organizational_domain(from_domain)
    steps = [f"the From: domain is {from_domain}"]

    def finish(result: str, *, policy_domain: str = "", record: DMARCRecord | None = None,
               policy: str | None = None, disposition: str = "none",
               spf_aligned: bool = False, dkim_aligned: bool = False,
               sampled: bool = True) -> DMARCResult:
        return DMARCResult(result, from_domain, policy_domain, record, policy, disposition,
                           spf_aligned, dkim_aligned, sampled,
                           explanation="DMARC: " + "; ".join(steps),
                           queries=tuple(log.entries))

    # Policy discovery (RFC 7489 §6.6.3).
    try:
        records, note = _discover(from_domain, dns_txt)
        policy_domain = from_domain
        if not records and org != from_domain:
            steps.append(note + f", so the Organizational Domain {org} is asked")
            records, note = _discover(org, dns_txt)
            policy_domain = org
    except DNSTempError as exc:
        steps.append(f"the policy lookup failed for now ({exc}): temperror")
        return finish("temperror")
    if not records:
        steps.append(note + ", so there is no DMARC policy: none")
        return finish("none")
    if len(records) > 1:  # RFC 7489 §6.6.3 step 5
        steps.append(f"_dmarc.{policy_domain} publishes {len(records)} DMARC records, so "
                     "none applies: none (RFC 7489 §6.6.3)")
        return finish("none")
    record = parse_record(records[0])
    assert record is not None
    steps.append(f"_dmarc.{policy_domain} publishes {record.text!r}")
    subdomain = policy_domain != from_domain
    requested = (record.sp or record.p) if subdomain else record.p
    if record.p is None or ("sp" in record.tags and record.sp is None):
        # RFC 7489 §6.6.3 step 6: a bad p=/sp= with a rua= acts as p=none, else nothing.
        if not record.rua:
            steps.append(f"the record is unusable ({'; '.join(record.problems)}), so no "
                         "DMARC processing: none (RFC 7489 §6.6.3)")
            return finish("none", policy_domain=policy_domain, record=record)
        steps.append(f"the record has a bad policy ({'; '.join(record.problems)}) but a "
                     "rua=, so p=none is assumed (RFC 7489 §6.6.3)")
        requested = "none"
    assert requested is not None

    # Identifier alignment (RFC 7489 §3.1).
    spf_ok = spf.result == "pass" and aligned(spf.domain, from_domain, record.aspf)
    if spf.result != "pass":
        steps.append(f"SPF did not pass ({spf.result})")
    else:
        steps.append(f"SPF passed for {spf.domain}, "
                     + _alignment_words(spf_ok, from_domain, record.aspf))
    passed = [r for r in dkim if r.result == "pass"]
    dkim_ok = any(aligned(r.domain, from_domain, record.adkim) for r in passed)
    if not passed:
        steps.append("no DKIM signature passed")
    for r in passed:
        ok = aligned(r.domain, from_domain, record.adkim)
        steps.append(f"DKIM passed for d={r.domain}, "
                     + _alignment_words(ok, from_domain, record.adkim))
    policy_words = f"{'sp' if subdomain and record.sp else 'p'}={requested}"
    if spf_ok or dkim_ok:
        steps.append(f"an aligned identifier passed, so pass (the policy {policy_words} is "
                     "not needed)")
        return finish("pass", policy_domain=policy_domain, record=record, policy=requested,
                      spf_aligned=spf_ok, dkim_aligned=dkim_ok)

    # Policy with pct= sampling (RFC 7489 §6.6.4): outside the sample, one step milder.
    disposition = requested
    sampled = True
    if record.pct < 100:
        value = _roll(message) if roll is None else roll
        sampled = value < record.pct
        if not sampled:
            disposition = {"reject": "quarantine", "quarantine": "none"}.get(requested, "none")
    steps.append(f"nothing aligned passed, so fail; the policy {policy_words} says "
                 f"{disposition}" + ("" if sampled else
                                     f" (outside pct={record.pct}: one step milder)"))
    return finish("fail", policy_domain=policy_domain, record=record, policy=requested,
                  disposition=disposition, sampled=sampled)
