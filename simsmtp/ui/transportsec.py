"""MTA-STS, DANE and TLS-RPT for notebook 05b: what the sender decided, and why.

* :func:`security_text`: the outbound agent's decisions (policy fetched or cached, TLSA
  records validated, TLS required and refused, deferred, delivered) as a text table, with
  each reason in full;
* :func:`tls_report_text`: the TLS-RPT report (RFC 8460) as a short summary per policy;
* the exercises of notebook 05b.
"""

from __future__ import annotations

from typing import Any

from .base import trace_events
from .exercises import Exercise, choice, register, text
from .style import text_table

__all__ = ["security_text", "tls_report_text"]

#: The trace events that tell the story of one hop's transport security.
KINDS = ("mtasts.", "dane.", "tls.started", "tls.fallback", "tls.required_failed",
         "delivery.skip", "delivery.ok", "delivery.deferred")


def _detail(e: Any) -> str:
    kind = e.kind
    if kind == "mtasts.fetched":
        return (f"policy of {e['domain']} fetched over HTTPS: mode {e['mode']}, mx "
                f"{', '.join(e['mx'])}, max_age {e['max_age']} s (cached)")
    if kind == "mtasts.cached":
        return (f"policy of {e['domain']} from the cache: mode {e['mode']}, expires in "
                f"{e['expires_in']:g} s")
    if kind == "mtasts.fetch_failed":
        return f"{e['reason']} ({'the cached policy stays' if e['cached'] else 'none cached'})"
    if kind in ("mtasts.none", "delivery.skip", "tls.required_failed", "tls.fallback",
                "mtasts.record_invalid"):
        return str(e["reason"])
    if kind == "mtasts.mx_mismatch":
        return f"{e['mx']} not in the policy ({', '.join(e['allowed'])})"
    if kind in ("dane.mx", "dane.tlsa"):
        what = f"MX of {e['domain']}" if kind == "dane.mx" else f"TLSA of {e['mx']}"
        return f"{what}: {e['status']}" + (f" ({e['reason']})" if e.get("reason") else "")
    if kind == "dane.matched":
        return f"the certificate of {e['mx']} matches its TLSA record"
    if kind == "tls.started":
        how = "certificate verified" if e.get("verified") else "certificate not checked"
        return f"TLS with {e['mx']} ({e.get('version')}, {how})"
    if kind == "delivery.ok":
        return f"{e['recipient']}: {e['reply']}"
    if kind == "delivery.deferred":
        return f"{e['recipient']}: {e['status']} {e['reason']}"
    return ""


def security_text(source: Any, *, since: int = 0, host: str | None = None) -> str:
    """What ``host``'s outbound agent (default: the world's first outbound host) decided
    about TLS, from trace position ``since``."""
    events, world = trace_events(source)
    if host is None and world is not None:
        from simsmtp.world import cast

        host = cast.sending_host(world, arg="host")
    rows = []
    for e in events:
        if e.seq < since or (host and e.host != host) or not e.kind.startswith(KINDS):
            continue
        if world is not None:
            from datetime import timedelta

            when = (world.epoch + timedelta(seconds=e.clock)).strftime("%H:%M:%S")
        else:
            when = f"+{e.clock:g}s"
        rows.append((when, e.kind, _detail(e)))
    return text_table(("virtual time", "event", "what happened"), rows)


def tls_report_text(net: Any, domain: str, *, host: str | None = None) -> str:
    """The day's TLS-RPT report of ``host`` (default: the world's first outbound host) for
    ``domain``, summarised per policy."""
    report = net.tls_report(domain, host=host)
    lines = [f"TLS report of {report['organization-name']} for {domain}, "
             f"{report['date-range']['start-datetime']} to "
             f"{report['date-range']['end-datetime']}"]
    for entry in report["policies"]:
        policy, summary = entry["policy"], entry["summary"]
        lines.append(f"  policy {policy['policy-type']}: "
                     f"{summary['total-successful-session-count']} successful, "
                     f"{summary['total-failure-session-count']} failed session(s)")
        for failure in entry.get("failure-details", []):
            lines.append(f"    {failure['failed-session-count']} x {failure['result-type']}"
                         + (f" at {failure['receiving-mx-hostname']}"
                            if failure["receiving-mx-hostname"] else ""))
    return "\n".join(lines)


# -- the exercises of notebook 05b --------------------------------------------------------

register(Exercise(
    "05b.first-contact", "The first contact",
    "Alice's server had never sent mail to anotherdomain.org. Mallory stripped STARTTLS "
    "AND blocked https://mta-sts.anotherdomain.org. What did MTA-STS do? (a) it deferred "
    "the mail; (b) nothing: no policy was known yet, the mail went in clear; (c) it bounced "
    "the mail; (d) it switched to DANE.",
    choice("b", {"a": "Only a policy the sender knows can make it defer; it had none.",
                 "c": "MTA-STS never bounces for TLS; it defers, and only with a policy.",
                 "d": "DANE is a separate switch (and needs DNSSEC); MTA-STS does not fall "
                      "back to it."},
           "Nothing: the policy could not be fetched and none was cached, so there was "
           "nothing to enforce (RFC 8461 §10.2: the first contact is trust on first use)."),
    hint="Look at the mtasts.fetch_failed and mtasts.none lines of section 4.",
    solution="(b). MTA-STS protects only after a policy was fetched once and cached for "
             "max_age seconds. An attacker present at the first contact can block the "
             "fetch; DANE does not have this weakness, but needs DNSSEC.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
                'cell.'))

register(Exercise(
    "05b.dnssec-less", "DANE without DNSSEC",
    "Bob's domain still publishes its TLSA record, but its zone is no longer signed. With "
    "DANE on, Mallory strips STARTTLS. What does Alice's server do? (a) it defers, the TLSA "
    "record says TLS; (b) it sends in clear: an unsigned TLSA record proves nothing; "
    "(c) it bounces the mail.",
    choice("b", {"a": "Anyone on the path can forge an unsigned record, so a DANE client "
                      "ignores it (RFC 7672 §2.2: only secure TLSA records count).",
                 "c": "Nothing here is permanent: DANE never bounces for TLS."},
           "It sends in clear: without DNSSEC the TLSA answer is 'insecure', and DANE "
           "applies only to secure ones (RFC 7672 §2.2)."),
    hint="Section 6: the dane.mx line says 'insecure'.",
    solution="(b). DANE rests on DNSSEC: an unsigned zone gives 'insecure' answers, which a "
             "DANE client treats as 'no TLSA records', so opportunistic TLS (and the attack) "
             "is back.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
                'cell.'))

register(Exercise(
    "05b.result-type", "What the report says",
    "In the TLS-RPT report of section 7, which result-type records the sessions Mallory "
    "stripped?",
    text("starttls-not-supported",
         {"validation-failure": "That one is for a certificate that does not match.",
          "dnssec-invalid": "That one is for a bogus DNSSEC answer.",
          "sts-policy-fetch-error": "That one is the blocked policy fetch of section 4."},
         "starttls-not-supported (RFC 8460 §4.3.1): the server (as the sender saw it) did "
         "not offer STARTTLS."),
    hint="Read the failure lines of the report: one of them names STARTTLS.",
    solution="starttls-not-supported. Bob's postmaster, reading reports from many senders, "
             "sees such failures pile up from one network: the sign of an attack.",
    answer_help='Write a result type in quotes instead of None (e.g. answer = '
                '"certificate-expired") and run the cell.'))
