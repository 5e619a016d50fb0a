"""SMTP TLS Reporting (RFC 8460), the pure part: the ``_smtp._tls`` record and the report.

A domain asks senders to tell it how their TLS sessions went by publishing a TXT record at
``_smtp._tls.<domain>``: ``v=TLSRPTv1; rua=mailto:tls-reports@anotherdomain.org``
(RFC 8460 §3). A sender that applies MTA-STS or DANE counts, per policy domain and per day,
the sessions that succeeded and the ones that failed (with the result type of §4.3), and
sends the day's JSON report (§4.4) to the ``rua`` addresses.

:class:`TLSReporter` is the sender's tally; :meth:`TLSReporter.report` the RFC 8460 JSON
object, ready for ``json.dumps``.

>>> parse_record("v=TLSRPTv1; rua=mailto:tlsrpt@example.com").rua
('mailto:tlsrpt@example.com',)
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

__all__ = [
    "POLICY_TYPES",
    "RESULT_TYPES",
    "ReportError",
    "TLSRPTRecord",
    "TLSReporter",
    "parse_record",
    "record_name",
    "render_record",
    "report_filename",
]

#: Policy types of a report (RFC 8460 §4.4 "policy-type").
POLICY_TYPES = ("tlsa", "sts", "no-policy-found")
#: Result types (RFC 8460 §4.3): negotiation, policy and general failures.
RESULT_TYPES = (
    "starttls-not-supported", "certificate-host-mismatch", "certificate-expired",
    "certificate-not-trusted", "validation-failure",  # §4.3.1 negotiation failures
    "tlsa-invalid", "dnssec-invalid", "dane-required",  # §4.3.2.1 DANE
    "sts-policy-fetch-error", "sts-policy-invalid", "sts-webpki-invalid",  # §4.3.2.2 STS
)


class ReportError(ValueError):
    """A ``_smtp._tls`` record that does not follow RFC 8460 §3."""


def record_name(domain: str) -> str:
    """Where a domain's TLS-RPT record lives (RFC 8460 §3)."""
    return f"_smtp._tls.{domain.strip().lower().rstrip('.')}"


@dataclass(frozen=True)
class TLSRPTRecord:
    """A parsed ``_smtp._tls`` record: where reports go."""

    rua: tuple[str, ...]


def parse_record(text: str) -> TLSRPTRecord:
    """Parse a TLS-RPT record (RFC 8460 §3): ``v=TLSRPTv1`` first, then ``rua=`` with one or
    more comma-separated ``mailto:`` or ``https:`` URIs.

    Raises:
        ReportError: the record does not follow §3.
    """
    fields = [f.strip() for f in text.strip().split(";") if f.strip()]
    if not fields or fields[0] != "v=TLSRPTv1":
        raise ReportError('a TLS-RPT record starts with "v=TLSRPTv1" (RFC 8460 §3)')
    rua: tuple[str, ...] = ()
    for item in fields[1:]:
        key, _, value = item.partition("=")
        if key.strip() == "rua":
            rua = tuple(u.strip() for u in value.split(",") if u.strip())
    if not rua or not all(u.startswith(("mailto:", "https:")) for u in rua):
        raise ReportError("rua= must give mailto: or https: addresses (RFC 8460 §3)")
    return TLSRPTRecord(rua)


def render_record(rua: str) -> str:
    """The TXT text asking for reports at ``rua`` (``mailto:...``)."""
    return f"v=TLSRPTv1; rua={rua}"


def report_filename(sender: str, policy_domain: str, day: date) -> str:
    """RFC 8460 §5.1: ``sender!policy-domain!begin-timestamp!end-timestamp.json``."""
    start = int(datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp())
    return f"{sender}!{policy_domain}!{start}!{start + 86399}.json"


@dataclass
class _PolicyTally:
    policy_type: str
    policy_string: tuple[str, ...]
    mx_host: tuple[str, ...]
    successes: int = 0
    failures: dict[tuple[str, str, str, str], int] = field(default_factory=dict)


@dataclass
class TLSReporter:
    """A sending MTA's tally of TLS sessions, per policy domain and per (UTC) day.

    Args:
        organization: the report's ``organization-name``.
        contact: its ``contact-info``.
        sender: the sending domain (in report file names).
    """

    organization: str
    contact: str
    sender: str = ""
    _days: dict[tuple[str, date], dict[tuple[str, tuple[str, ...]], _PolicyTally]] = field(
        default_factory=dict, repr=False)

    def record(self, when: float, policy_domain: str, policy_type: str, *,
               policy_string: tuple[str, ...] = (), mx_host: tuple[str, ...] = (),
               result: str | None = None, sending_ip: str = "", receiving_mx: str = "",
               receiving_ip: str = "") -> None:
        """Count one session at virtual time ``when`` (seconds since 1970, UTC).

        ``result`` is None for a success, else one of :data:`RESULT_TYPES`.
        """
        if policy_type not in POLICY_TYPES:
            raise ValueError(f"policy_type must be one of {', '.join(POLICY_TYPES)}")
        if result is not None and result not in RESULT_TYPES:
            raise ValueError(f"result must be one of RESULT_TYPES, not {result!r}")
        day = datetime.fromtimestamp(when, UTC).date()
        domain = policy_domain.lower().rstrip(".")
        tallies = self._days.setdefault((domain, day), {})
        tally = tallies.setdefault((policy_type, policy_string),
                                   _PolicyTally(policy_type, policy_string, mx_host))
        if result is None:
            tally.successes += 1
        else:
            key = (result, sending_ip, receiving_mx, receiving_ip)
            tally.failures[key] = tally.failures.get(key, 0) + 1

    def days(self) -> list[tuple[str, date]]:
        """The (policy domain, day) pairs something was counted for, in order."""
        return sorted(self._days)

    def report(self, policy_domain: str, day: date) -> dict[str, Any]:
        """The RFC 8460 §4.4 report of ``policy_domain`` for ``day`` (a JSON object).

        Raises:
            KeyError: nothing was counted for that domain on that day.
        """
        domain = policy_domain.lower().rstrip(".")
        tallies = self._days[(domain, day)]
        start = datetime(day.year, day.month, day.day, tzinfo=UTC)
        end = start + timedelta(days=1) - timedelta(seconds=1)
        ident = hashlib.sha256(f"{self.organization} {domain} {day}".encode()).hexdigest()
        policies = []
        for tally in tallies.values():
            entry: dict[str, Any] = {
                "policy": {"policy-type": tally.policy_type,
                           "policy-string": list(tally.policy_string),
                           "policy-domain": domain,
                           "mx-host": list(tally.mx_host)},
                "summary": {"total-successful-session-count": tally.successes,
                            "total-failure-session-count": sum(tally.failures.values())},
            }
            if tally.failures:
                entry["failure-details"] = [
                    {"result-type": result, "sending-mta-ip": sending,
                     "receiving-mx-hostname": mx, "receiving-ip": receiving,
                     "failed-session-count": count}
                    for (result, sending, mx, receiving), count in tally.failures.items()]
            policies.append(entry)
        return {
            "organization-name": self.organization,
            "date-range": {"start-datetime": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                           "end-datetime": end.strftime("%Y-%m-%dT%H:%M:%SZ")},
            "contact-info": self.contact,
            "report-id": f"{ident[:8]}-{ident[8:12]}-{ident[12:16]}-{ident[16:20]}-"
                         f"{ident[20:32]}",
            "policies": policies,
        }

    def clear(self) -> None:
        """Forget every count (the report was sent)."""
        self._days.clear()
