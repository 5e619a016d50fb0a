"""What the outbound agent must demand of each MX hop: MTA-STS (RFC 8461) and DANE (RFC 7672).

Opportunistic STARTTLS falls to an attacker on the path who deletes ``250-STARTTLS`` from
the EHLO reply: the sender cannot tell "this server has no TLS" from "someone removed it".
Two Internet standards let the receiving domain say, out of band, "my MX hosts do TLS":

* **MTA-STS**: a policy fetched over HTTPS (with a certificate from a CA) and cached for
  ``max_age``. In ``enforce`` mode the sender only uses the MX hosts the policy lists, only
  over TLS with a certificate valid for the MX name; ``testing`` delivers anyway and
  reports. Its weakness: the very first contact, before a policy is cached, can be
  attacked (the attacker blocks the policy fetch too).
* **DANE**: TLSA records in a DNSSEC-signed zone. A validating sender that finds secure
  TLSA records for an MX host requires TLS and a certificate matching them; a bogus
  (forged) answer defers the mail. Its weakness: it needs DNSSEC; a domain without it gets
  nothing.

:class:`TransportSecurity` makes, per destination domain, a :class:`HopRule` for each MX
host; the agent (:mod:`simsmtp.net.agent`) applies it, and calls ``rule.report`` with each
session's outcome, which :class:`~simsmtp.world.tlsrpt.TLSReporter` tallies for TLS-RPT.
Every decision goes to the trace as ``mtasts.*`` and ``dane.*`` events, with the reason.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset

from ..trace import Trace
from ..world.clock import VirtualClock
from ..world.dnssec import ValidationResult, tlsa_matches, tlsa_name, validate
from ..world.mtasts import (
    PolicyCache,
    PolicyError,
    parse_policy,
    render_policy,
    select_record,
)
from ..world.tlsrpt import TLSReporter
from .https import FetchResult

__all__ = ["HopRule", "TransportSecurity"]

#: ``fetch(domain) -> FetchResult`` (see :func:`simsmtp.net.https.fetch_policy`).
Fetch = Callable[[str], Awaitable[FetchResult]]


def _no_report(result: str | None, receiving_ip: str = "") -> None:
    return None


@dataclass
class HopRule:
    """What one MX host must satisfy.

    Attributes:
        mx: the MX host name.
        allowed: False: do not even connect (MTA-STS enforce, MX not in the policy, or a
            bogus DNSSEC answer); ``refusal`` says why.
        require_tls: STARTTLS is mandatory: not offered or failed defers the mail.
        context: the TLS context to use (verifying for MTA-STS; for DANE the certificate
            is matched against ``tlsa`` instead).
        tlsa: the secure TLSA records of the MX (DANE): the certificate must match one.
        why: which policy demands it, for the reasons in the trace and the queue.
        report: called once per session with None (success) or an RFC 8460 result type.
    """

    mx: str
    allowed: bool = True
    refusal: str = ""
    require_tls: bool = False
    context: ssl.SSLContext | None = None
    tlsa: tuple[Any, ...] = ()
    why: str = ""
    report: Callable[..., None] = field(default=_no_report, repr=False)


class TransportSecurity:
    """Decides, per destination domain and MX host, what TLS the agent must insist on.

    Args:
        mta_sts: apply MTA-STS policies.
        dane: apply DANE (validate DNSSEC from ``anchors``, then the TLSA records).
        dns_server: ``(ip, port)`` of the world's DNS server (asked with DO set).
        fetch: fetches a domain's policy over HTTPS.
        verify_context: a client context that verifies the chain and the host name
            against the world's CA (what MTA-STS requires, RFC 8461 §4.2).
        dane_context: a client context that does not verify (DANE matches the certificate
            to the TLSA records itself, RFC 7672 §3.1).
        anchors: ``anchors()`` -> zone name -> the DS rdata the agent trusts (the world's
            trust anchors; a domain without one is "insecure").
        clock: the world's virtual clock (policy max_age, signature validity).
        reporter: the TLS-RPT tally.
        own_ip: the agent's address (``sending-mta-ip`` in reports).
        ta_certs: trust-anchor certificates (DER) the agent knows, for DANE-TA (2 x x).
    """

    def __init__(self, *, mta_sts: bool, dane: bool, dns_server: tuple[str, int],
                 fetch: Fetch, verify_context: ssl.SSLContext,
                 dane_context: ssl.SSLContext, anchors: Callable[[], Mapping[str, Any]],
                 clock: VirtualClock, reporter: TLSReporter, trace: Trace | None = None,
                 hostname: str = "", own_ip: str = "",
                 ta_certs: tuple[bytes, ...] = ()) -> None:
        self.ta_certs = ta_certs
        #: ``settings() -> (mta_sts, dane)``, asked per destination (live switches)
        self.settings: Callable[[], tuple[bool, bool]] = lambda: (mta_sts, dane)
        self.dns_server = dns_server
        self.fetch = fetch
        self.verify_context = verify_context
        self.dane_context = dane_context
        self.anchors = anchors
        self.clock = clock
        self.reporter = reporter
        self.trace = trace
        self.hostname = hostname
        self.own_ip = own_ip
        self.cache = PolicyCache()

    @property
    def mta_sts(self) -> bool:
        return self.settings()[0]

    @property
    def dane(self) -> bool:
        return self.settings()[1]

    @property
    def active(self) -> bool:
        return self.mta_sts or self.dane

    def _record(self, kind: str, **data: Any) -> None:
        if self.trace is not None:
            self.trace.record(kind, self.hostname, **data)

    # ------------------------------------------------------------------ DNS with DO set
    async def _query(self, name: str, rdtype: str) -> dns.message.Message | None:
        query = dns.message.make_query(name, rdtype, want_dnssec=True)
        ip, port = self.dns_server
        try:
            response, _ = await dns.asyncquery.udp_with_fallback(query, ip, port=port,
                                                                  timeout=3.0)
        except (dns.exception.DNSException, OSError):
            return None
        return response

    async def _secure(self, name: str, rdtype: str) -> tuple[ValidationResult,
                                                              dns.rrset.RRset | None]:
        """Look ``name``/``rdtype`` up and validate it from the trust anchors."""
        qname = dns.name.from_text(name)
        anchors = {dns.name.from_text(k): v for k, v in self.anchors().items()}
        zone = next((z for z in sorted(anchors, key=lambda n: -len(n.labels))
                     if qname.is_subdomain(z)), None)
        response = await self._query(name, rdtype)
        if response is None or response.rcode() not in (dns.rcode.NOERROR,
                                                         dns.rcode.NXDOMAIN):
            return ValidationResult("bogus", f"no usable answer for {name} {rdtype}"), None
        code = dns.rdatatype.from_text(rdtype)
        rrset = next((r for r in response.answer if r.rdtype == code), None)
        if zone is None:
            return ValidationResult("insecure", f"{name} is not in a signed zone "
                                                "(no trust anchor)"), rrset
        if rrset is None:
            # a denial: accept only a signed one (an NSEC with its RRSIG, RFC 4035 §5.4)
            nsec = next((r for r in response.authority
                         if r.rdtype == dns.rdatatype.NSEC), None)
            if nsec is None:
                return ValidationResult("bogus", f"unsigned denial of {name} {rdtype}"), None
            rrset, proof_of = nsec, "denial"
        else:
            proof_of = "answer"
        sigs = next((r for r in response.answer + response.authority
                     if r.rdtype == dns.rdatatype.RRSIG and r.name == rrset.name
                     and r.covers == rrset.rdtype), None)
        keys = await self._query(zone.to_text(), "DNSKEY")
        dnskeys = key_sigs = None
        if keys is not None:
            dnskeys = next((r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY), None)
            key_sigs = next((r for r in keys.answer if r.rdtype == dns.rdatatype.RRSIG
                             and r.covers == dns.rdatatype.DNSKEY), None)
        result = validate(rrset, sigs, dnskeys, key_sigs, anchors[zone], self.clock.now())
        return result, (rrset if proof_of == "answer" else None)

    async def _txt(self, name: str) -> tuple[str, list[str]]:
        response = await self._query(name, "TXT")
        if response is None or response.rcode() not in (dns.rcode.NOERROR,
                                                         dns.rcode.NXDOMAIN):
            return "tempfail", []
        texts = [b"".join(rd.strings).decode("utf-8", "replace")
                 for r in response.answer if r.rdtype == dns.rdatatype.TXT for rd in r]
        return "ok", texts

    # ------------------------------------------------------------------ MTA-STS
    async def sts_policy(self, domain: str) -> tuple[Any, str]:
        """The policy to apply to ``domain`` now (cached or fetched), or None with why."""
        now = self.clock.now()
        cached = self.cache.get(domain, now)
        status, texts = await self._txt(f"_mta-sts.{domain}")
        try:
            record = select_record(texts) if status == "ok" else None
        except PolicyError as exc:
            record = None
            self._record("mtasts.record_invalid", domain=domain, reason=str(exc))
        if record is None:
            if cached is not None:  # RFC 8461 §5.1: a cached policy stays in force
                self._record("mtasts.cached", domain=domain, id=cached.id,
                             mode=cached.policy.mode, expires_in=cached.expires_at - now,
                             note="no _mta-sts record seen: the cached policy stays in force")
                return cached, ""
            return None, f"{domain} publishes no MTA-STS record"
        if cached is not None and cached.id == record.id:
            self._record("mtasts.cached", domain=domain, id=cached.id, mode=cached.policy.mode,
                         expires_in=cached.expires_at - now)
            return cached, ""
        fetched = await self.fetch(domain)
        policy = None
        error = fetched.error
        if fetched.text is not None:
            try:
                policy = parse_policy(fetched.text)
            except PolicyError as exc:
                error = f"the policy of {domain} is invalid: {exc}"
        if policy is None:
            self._record("mtasts.fetch_failed", domain=domain, reason=error,
                         cached=cached is not None)
            self.reporter.record(now, domain, "sts", result="sts-policy-fetch-error",
                                 sending_ip=self.own_ip)
            if cached is not None:
                return cached, ""
            return None, error  # first contact and no policy: nothing to enforce
        entry = self.cache.put(domain, record.id, policy, now)
        self._record("mtasts.fetched", domain=domain, id=record.id, mode=policy.mode,
                     mx=list(policy.mx), max_age=policy.max_age)
        return entry, ""

    # ------------------------------------------------------------------ per domain
    async def rules(self, domain: str) -> Callable[[str], Awaitable[HopRule]] | None:
        """A function giving the :class:`HopRule` of each MX host of ``domain``, or None
        when nothing applies (both off)."""
        if not self.active:
            return None
        sts = None
        if self.mta_sts:
            sts, why = await self.sts_policy(domain)
            if sts is None:
                self._record("mtasts.none", domain=domain, reason=why)
        mx_secure = False
        mx_bogus = ""
        if self.dane:
            result, _ = await self._secure(domain, "MX")
            self._record("dane.mx", domain=domain, status=result.status, reason=result.reason)
            mx_secure = result.secure
            if result.status == "bogus":
                mx_bogus = result.reason

        async def rule_for(mx: str) -> HopRule:
            now = self.clock.now()
            if mx_bogus:
                self.reporter.record(now, domain, "tlsa", result="dnssec-invalid",
                                     sending_ip=self.own_ip, receiving_mx=mx)
                return HopRule(mx, allowed=False, refusal=(
                    f"DNSSEC validation of the MX of {domain} failed (bogus): {mx_bogus}"))
            if self.dane and mx_secure:
                result, tlsa = await self._secure(tlsa_name(mx), "TLSA")
                self._record("dane.tlsa", mx=mx, status=result.status, reason=result.reason,
                             records=[rd.to_text() for rd in tlsa] if tlsa else [])
                if result.status == "bogus":
                    self.reporter.record(now, domain, "tlsa", result="dnssec-invalid",
                                         sending_ip=self.own_ip, receiving_mx=mx)
                    return HopRule(mx, allowed=False, refusal=(
                        f"DNSSEC validation of the TLSA records of {mx} failed (bogus): "
                        f"{result.reason}"))
                usable = tuple(rd for rd in tlsa or () if rd.usage in (2, 3))
                if result.secure and usable:
                    strings = tuple(f"{tlsa_name(mx)}. IN TLSA {rd.to_text()}"
                                    for rd in usable)
                    return HopRule(
                        mx, require_tls=True, context=self.dane_context, tlsa=usable,
                        why=f"DANE (the secure TLSA records of {mx})",
                        report=self._reporter(domain, "tlsa", strings, (mx,), mx))
            if sts is not None and sts.policy.mode != "none":
                policy = sts.policy
                strings = tuple(render_policy(policy).split("\r\n")[:-1])
                report = self._reporter(domain, "sts", strings, policy.mx, mx)
                why = f"the MTA-STS policy of {domain} (mode {policy.mode})"
                if not policy.matches(mx):
                    reason = (f"MX host {mx} is not listed in {why}: "
                              f"mx {', '.join(policy.mx)}")
                    self._record("mtasts.mx_mismatch", domain=domain, mx=mx,
                                 mode=policy.mode, allowed=list(policy.mx))
                    if policy.mode == "enforce":
                        report("validation-failure")
                        return HopRule(mx, allowed=False, refusal=reason)
                    report("validation-failure")
                    return HopRule(mx, why=why)
                return HopRule(mx, require_tls=policy.mode == "enforce",
                               context=self.verify_context, why=why, report=report)
            return HopRule(mx)

        return rule_for

    def _reporter(self, domain: str, kind: str, strings: tuple[str, ...],
                  mx_hosts: tuple[str, ...], mx: str) -> Callable[[str | None], None]:
        def report(result: str | None, receiving_ip: str = "") -> None:
            self.reporter.record(self.clock.now(), domain, kind, policy_string=strings,
                                 mx_host=mx_hosts, result=result, sending_ip=self.own_ip,
                                 receiving_mx=mx if result else "",
                                 receiving_ip=receiving_ip if result else "")
        return report

    def matches(self, rule: HopRule, der: bytes | None) -> bool:
        """Whether the server's certificate matches the rule's TLSA records (DANE).

        ``3 x x`` (DANE-EE, RFC 7672 §3.1.1): the certificate itself matches, names are not
        checked. ``2 x x`` (DANE-TA, §3.1.2): a trust-anchor certificate the agent knows
        (the world CA) matches the record, issued the server's certificate, and that
        certificate names the MX host (§3.2.3).
        """
        if der is None:
            return False
        for rd in rule.tlsa:
            if rd.usage == 3 and tlsa_matches(rd, der):
                return True
            if rd.usage == 2:
                for anchor in self.ta_certs:
                    if tlsa_matches(rd, anchor) and _issued_by(der, anchor, rule.mx):
                        return True
        return False


def _issued_by(der: bytes, anchor: bytes, name: str) -> bool:
    from cryptography import x509

    try:
        cert = x509.load_der_x509_certificate(der)
        cert.verify_directly_issued_by(x509.load_der_x509_certificate(anchor))
        sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except Exception:  # a bad signature, a wrong issuer, no names: no match
        return False
    return name.lower().rstrip(".") in [n.lower() for n in
                                        sans.value.get_values_for_type(x509.DNSName)]
