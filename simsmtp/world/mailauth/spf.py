"""SPF (RFC 7208): may this client send mail for this domain?

The evaluation is pyspf's (``spf.query``), a faithful RFC 7208 implementation: mechanisms
``all ip4 ip6 a mx include exists ptr``, modifiers ``redirect`` and ``exp``, macros, the
limit of 10 DNS-querying terms and 2 void lookups (§4.6.4), ``permerror`` and
``temperror``. pyspf's own DNS hook (``spf.DNSLookup``) is a module global; instead of
patching it, a subclass overrides the query's ``dns`` method so each check asks only the
lookup functions it was given (see :mod:`.lookup`) and several worlds can check at once.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from dataclasses import dataclass, field, replace
from typing import Any

from simsmtp.world.mailauth.lookup import (
    AddressLookup,
    DNSTempError,
    MXLookup,
    QueryLog,
    TxtLookup,
    no_addresses,
)

__all__ = ["MEANINGS", "SPF_RESULTS", "SPFResult", "SPFTerm", "check_spf", "spf_terms"]

#: The results check_host() can give (RFC 7208 §2.6).
SPF_RESULTS = ("pass", "fail", "softfail", "neutral", "none", "permerror", "temperror")

#: What each result means, in plain words (RFC 7208 §2.6, §8).
MEANINGS = {
    "pass": "the client is authorized to send for the domain",
    "fail": "the domain says the client is NOT authorized to send for it",
    "softfail": "the domain says the client is probably not authorized (treat with suspicion)",
    "neutral": "the domain makes no statement about the client",
    "none": "the domain publishes no SPF record, so nothing can be said",
    "permerror": "the domain's SPF records cannot be interpreted (fix the records)",
    "temperror": "DNS failed for now; try again later",
}

_QUALIFIER_RESULT = {"+": "pass", "-": "fail", "~": "softfail", "?": "neutral"}


@dataclass(frozen=True)
class SPFResult:
    """The outcome of one SPF check.

    Attributes:
        result: one of :data:`SPF_RESULTS`.
        identity: ``"mailfrom"`` or ``"helo"`` (null reverse-path, RFC 7208 §2.4).
        domain: the domain whose policy was checked ("" when there is none).
        sender: the address checked (``postmaster@<helo>`` for the HELO identity).
        client_ip: the connecting client's address.
        record: the SPF record the domain publishes (None when there is none).
        records: every SPF record read, by domain (include and redirect targets too).
        mechanism: the term that decided (``"-all"``, ``"ip4:127.0.0.2"``…), or None.
        problem: pyspf's message for permerror/temperror.
        lookups: DNS-querying terms evaluated (the limit is 10, RFC 7208 §4.6.4).
        explanation: the check in plain words.
        queries: the DNS questions asked and their answers (see :class:`.QueryLog`).
    """

    result: str
    identity: str
    domain: str
    sender: str
    client_ip: str
    record: str | None = None
    records: dict[str, str] = field(default_factory=dict)
    mechanism: str | None = None
    problem: str = ""
    lookups: int = 0
    explanation: str = ""
    queries: tuple[tuple[str, str, Any], ...] = ()

    @property
    def meaning(self) -> str:
        """What the result means, in plain words."""
        return MEANINGS[self.result]


@functools.cache
def _query_class() -> type[Any]:
    """pyspf's query with its DNS pointed at our lookup functions (imported lazily)."""
    import spf as pyspf

    class WorldQuery(pyspf.query):  # type: ignore[misc]
        """An ``spf.query`` that asks the given functions and logs each record evaluated."""

        def __init__(self, *args: Any, functions: dict[str, Any], **kwargs: Any) -> None:
            self.functions = functions
            #: [domain, record, recursion, result] per record evaluated, in order.
            self.checks: list[list[Any]] = []
            super().__init__(*args, **kwargs)

        def dns(self, name: Any, qtype: str, cnames: Any = None,
                ignore_void: bool = False) -> list[Any]:
            """RFC 7208 §4.6.4-aware lookup through the world's functions."""
            if not name:
                raise pyspf.PermError("empty domain name in a DNS query")
            name = str(name).rstrip(".").lower()
            if not all(0 < len(label) < 64 for label in name.split(".")):
                return []  # not a valid DNS name (RFC 1035 §2.3.4): nothing there
            key = (name, qtype)
            if key in self.cache:
                result = self.cache[key]
            else:
                fn = self.functions.get(qtype)
                try:
                    answer = fn(name) if fn is not None else []
                except DNSTempError as exc:
                    raise pyspf.TempError(f"DNS {exc}") from exc
                result = _to_pyspf(qtype, answer)
                self.cache[key] = result
            if not result and not ignore_void:
                self.void_lookups += 1
                if self.void_lookups > pyspf.MAX_VOID_LOOKUPS:  # RFC 7208 §4.6.4: 2
                    raise pyspf.PermError(
                        f"Void lookup limit of {pyspf.MAX_VOID_LOOKUPS} exceeded")
            return list(result)  # pyspf sorts MX answers in place

        def check1(self, spf: Any, domain: str, recursion: int) -> Any:
            entry: list[Any] = [domain, spf, recursion, None]
            self.checks.append(entry)
            outcome = super().check1(spf, domain, recursion)
            entry[3] = outcome[0]
            return outcome

    return WorldQuery


def _to_pyspf(qtype: str, answer: Any) -> list[Any]:
    """Convert our functions' answers to the shapes pyspf's DNS layer returns."""
    if not answer:
        return []
    if qtype in ("TXT", "SPF"):
        return [[text.encode("utf-8", "surrogateescape")] for text in answer]
    if qtype == "MX":
        return [(int(pref), exchange) for pref, exchange in answer]
    return [str(address) for address in answer]


def _bare_address(address: str) -> str:
    address = address.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    return address


def check_spf(client_ip: str, mail_from: str, helo: str, *, dns_txt: TxtLookup,
              dns_a: AddressLookup, dns_mx: MXLookup,
              dns_aaaa: AddressLookup = no_addresses, receiver: str = "") -> SPFResult:
    """Run SPF's check_host() for the MAIL FROM identity (RFC 7208 §2.4, §4).

    With a null reverse-path (``MAIL FROM:<>``, a bounce) the HELO identity is checked as
    ``postmaster@<helo>`` instead (RFC 7208 §2.4).

    Args:
        client_ip: the SMTP client's address, e.g. ``"127.0.0.9"``.
        mail_from: the reverse-path, with or without ``<>``; ``""`` or ``"<>"`` for null.
        helo: the name the client gave in HELO/EHLO.
        dns_txt: TXT lookup (see :mod:`.lookup`); also dns_a, dns_mx, dns_aaaa.
        receiver: our host name, for the ``%{r}`` macro.

    Returns:
        An :class:`SPFResult` with the record read and a plain-words explanation.
    """
    sender = _bare_address(mail_from)
    helo = helo.strip().rstrip(".")
    identity = "mailfrom" if sender else "helo"
    if identity == "helo":
        sender = f"postmaster@{helo}" if helo else ""
    domain = sender.rpartition("@")[2].rstrip(".").lower() if sender else ""

    # RFC 7208 §4.3: no domain, an address literal or a single label gives "none".
    if not domain or domain.startswith("[") or "." not in domain:
        text = (f"SPF: there is no domain to check ({identity} is "
                f"{(sender or helo)!r}), so none (RFC 7208 §4.3)")
        return SPFResult("none", identity, domain, sender, client_ip, explanation=text)

    log = QueryLog()
    functions = {"TXT": log.wrap("TXT", dns_txt), "A": log.wrap("A", dns_a),
                 "AAAA": log.wrap("AAAA", dns_aaaa), "MX": log.wrap("MX", dns_mx)}
    query = _query_class()(client_ip, sender, helo or domain, receiver=receiver or "unknown",
                           functions=functions)
    result, _code, message = query.check()
    problem = ""
    if result in ("permerror", "temperror"):
        problem = str(message).removeprefix("SPF Permanent Error: ")
        problem = problem.removeprefix("SPF Temporary Error: ")
    records = {c[0]: c[1] for c in query.checks if c[1]}
    top = next((c[1] for c in query.checks if c[2] == 0), None)
    mechanism = query.mechanism if result not in ("permerror", "temperror") else None
    outcome = SPFResult(
        result=result, identity=identity, domain=domain, sender=sender, client_ip=client_ip,
        record=top or None, records=records, mechanism=mechanism, problem=problem,
        lookups=int(query.lookups), queries=tuple(log.entries))
    text = _explain(outcome, query.checks, log)
    return replace(outcome, explanation=text)


# ------------------------------------------------------------------------- explanation

#: What each mechanism matches, in plain words (RFC 7208 §5); ``{arg}`` is its argument.
_MECHANISM_WORDS = {
    "all": "any other client",
    "mx": "a client at an address of an MX host of {arg_or_domain}",
    "a": "a client at an address of {arg_or_itself}",
    "ip4": "a client in {arg}",
    "ip6": "a client in {arg}",
    "include": "a client that {arg}'s own SPF policy passes",
    "exists": "any client, if the name {arg} exists",
    "ptr": "a client whose reverse DNS name is in the domain (do not use: slow)",
}
#: RFC 7208 §12 ``modifier = redirect / explanation / unknown-modifier``: ``name "="``.
_MODIFIER = re.compile(r"([A-Za-z][A-Za-z0-9._-]*)=(.*)", re.S)


@dataclass(frozen=True)
class SPFTerm:
    """One term of an SPF record (RFC 7208 §4.6.1), read, and what it says.

    Attributes:
        text: the term as written (``"-all"``, ``"redirect=_spf.example.net"``).
        kind: ``"version"`` (``v=spf1``), ``"modifier"`` (RFC 7208 §6) or
            ``"mechanism"`` (RFC 7208 §5).
        name: the mechanism or modifier name, lower case (``"all"``, ``"redirect"``).
        value: what follows ``:`` or ``=`` ("" when nothing does).
        qualifier: a mechanism's ``+ - ~ ?`` (``+`` when left out, RFC 7208 §4.6.2);
            "" for the others.
        meaning: the term in plain words, for a reader (the evaluation is pyspf's).
    """

    text: str
    kind: str
    name: str
    value: str = ""
    qualifier: str = ""
    meaning: str = ""

    @property
    def result(self) -> str:
        """What a matching mechanism gives (``pass``, ``fail``…); "" for the others."""
        return _QUALIFIER_RESULT.get(self.qualifier, "")


def spf_terms(record: str) -> list[SPFTerm]:
    """Each term of an SPF record, in order, and what it says (RFC 7208 §4.6, §5, §6).

    A description for a reader and for :func:`check_spf`'s explanation, not an evaluator:
    the verdict comes from pyspf.

    >>> [(t.text, t.meaning) for t in spf_terms("v=spf1 mx -all")][1]
    ('mx', 'a client at an address of an MX host of the domain: pass')
    """
    out: list[SPFTerm] = []
    for term in record.split():
        if term.lower() == "v=spf1":
            out.append(SPFTerm(term, "version", "v", "spf1",
                               meaning="this TXT record is an SPF policy (version 1)"))
            continue
        modifier = _MODIFIER.fullmatch(term)
        if modifier:  # a modifier (RFC 7208 §6)
            name, value = modifier.group(1).lower(), modifier.group(2)
            if name == "redirect":  # RFC 7208 §6.1
                words = f"if nothing above matched: use {value}'s SPF policy"
            elif name == "exp":  # RFC 7208 §6.2
                words = f"the text for a rejection is published at {value}"
            else:
                words = "an unknown modifier: ignored (RFC 7208 §6)"
            out.append(SPFTerm(term, "modifier", name, value, meaning=words))
            continue
        qualifier, bare = _mechanism_result(term)
        name, _, arg = bare.partition(":")
        name = name.split("/")[0].lower()
        what = _MECHANISM_WORDS.get(name)
        if what is None:
            words = "not a known mechanism: the whole record is a permerror (RFC 7208 §5)"
        else:
            words = what.format(arg=arg, arg_or_domain=arg or "the domain",
                                arg_or_itself=arg or "the domain itself")
            words += f": {_QUALIFIER_RESULT[qualifier]}"
        out.append(SPFTerm(term, "mechanism", name, arg, qualifier, words))
    return out


def _mechanism_result(term: str) -> tuple[str, str]:
    """('-', 'all') for '-all'; the qualifier defaults to '+' (RFC 7208 §4.6.2)."""
    if term[:1] in _QUALIFIER_RESULT:
        return term[:1], term[1:]
    return "+", term


def _client_words(ip: str) -> str:
    try:
        return f"the client {ipaddress.ip_address(ip)}"
    except ValueError:
        return f"the client {ip}"


def _absent(log: QueryLog, domain: str) -> str:
    """Why ``domain`` has no SPF record, from what DNS said."""
    try:
        answer = log.answer("TXT", domain)
    except KeyError:
        return f"{domain} publishes no SPF record"
    if answer is None:
        return f"{domain} does not exist in DNS (NXDOMAIN)"
    if answer == "temperror":
        return f"the TXT lookup for {domain} failed"
    if not answer:
        return f"{domain} has no TXT records, so no SPF record"
    found = [text for text in answer if text.lower().split(" ")[0] == "v=spf1"]
    if len(found) > 1:  # RFC 7208 §4.5: more than one record is a permerror
        return f"{domain} publishes {len(found)} SPF records: " + ", ".join(map(repr, found))
    return f"{domain} has TXT records but none starts with 'v=spf1'"


def _explain(r: SPFResult, checks: list[list[Any]], log: QueryLog) -> str:
    client = _client_words(r.client_ip)
    parts: list[str] = []
    if r.identity == "helo":
        parts.append(f"the MAIL FROM is empty (a bounce), so the HELO name {r.domain} is "
                     "checked")
    if r.result == "none":
        parts.append(_absent(log, r.domain))
        parts.append("so the result is none")
        return "SPF: " + "; ".join(parts)
    if r.result == "temperror":
        parts.append(f"DNS failed for now ({r.problem}), so temperror (RFC 7208 §2.6.6)")
        return "SPF: " + "; ".join(parts)

    includes = {c[0]: c[3] for c in checks if c[2] == 1}
    chain = [c for c in checks if c[2] == 0 and c[1]]
    for n, (domain, record, _rec, _res) in enumerate(chain):
        parts.append(f"{domain} publishes {record!r}")
        if r.result == "permerror":
            continue
        terms = spf_terms(record)
        mechanisms = [t.text for t in terms if t.kind == "mechanism"]
        redirect = next((t.value for t in terms if t.kind == "modifier"
                         and t.name == "redirect"), None)
        last = n == len(chain) - 1
        upto = len(mechanisms)
        if last and r.mechanism in mechanisms:
            upto = mechanisms.index(r.mechanism)
        missed = []
        for term in mechanisms[:upto]:
            _q, bare = _mechanism_result(term)
            if bare.lower().startswith("include:") and bare[8:].lower() in includes:
                missed.append(f"{term} (its record gives {includes[bare[8:].lower()]})")
            else:
                missed.append(term)
        if missed:
            parts.append(f"{client} does not match {', '.join(missed)}")
        if not last:
            parts.append(f"nothing matched, so redirect={redirect} is followed")
        elif r.mechanism:
            _q, bare = _mechanism_result(r.mechanism)
            if bare.lower() == "all":
                parts.append(f"{r.mechanism} says {r.result}")
            else:
                parts.append(f"{client} matches {r.mechanism}, so {r.result}")
        else:
            parts.append("nothing matched and there is no 'all', so the default is neutral "
                         "(RFC 7208 §4.7)")
    if r.result == "permerror":
        if not chain:
            parts.append(_absent(log, r.domain))
        parts.append(f"permerror: {r.problem} (RFC 7208 §2.6.7)")
    return "SPF: " + "; ".join(parts)
