"""TLS reporting (RFC 8460): the record and the daily JSON report."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from simsmtp.world.tlsrpt import (
    ReportError,
    TLSReporter,
    parse_record,
    record_name,
    report_filename,
)

DAY = date(2025, 3, 10)
T = datetime(2025, 3, 10, 9, 0, tzinfo=UTC).timestamp()


def test_record() -> None:
    assert record_name("anotherdomain.org") == "_smtp._tls.anotherdomain.org"
    assert parse_record("v=TLSRPTv1; rua=mailto:a@x.org,https://r.x.org/r").rua == \
        ("mailto:a@x.org", "https://r.x.org/r")
    for bad in ("rua=mailto:a@x.org", "v=TLSRPTv1;", "v=TLSRPTv1; rua=ftp://x"):
        with pytest.raises(ReportError):
            parse_record(bad)


def test_report_counts_successes_and_failures_per_policy() -> None:
    rep = TLSReporter("mail.example.com", "postmaster@example.com")
    sts = ("version: STSv1", "mode: enforce", "mx: mail.anotherdomain.org", "max_age: 86400")
    for _ in range(2):
        rep.record(T, "anotherdomain.org", "sts", policy_string=sts,
                   mx_host=("mail.anotherdomain.org",))
    rep.record(T + 60, "anotherdomain.org", "sts", policy_string=sts,
               mx_host=("mail.anotherdomain.org",), result="starttls-not-supported",
               sending_ip="127.0.0.2", receiving_mx="mail.anotherdomain.org",
               receiving_ip="127.0.0.3")
    rep.record(T + 86400, "anotherdomain.org", "sts", policy_string=sts)  # the next day
    assert rep.days() == [("anotherdomain.org", DAY), ("anotherdomain.org", date(2025, 3, 11))]
    report = json.loads(json.dumps(rep.report("anotherdomain.org", DAY)))
    assert report["date-range"] == {"start-datetime": "2025-03-10T00:00:00Z",
                                    "end-datetime": "2025-03-10T23:59:59Z"}
    (policy,) = report["policies"]
    assert policy["policy"]["policy-type"] == "sts"
    assert policy["policy"]["policy-string"] == list(sts)
    assert policy["summary"] == {"total-successful-session-count": 2,
                                 "total-failure-session-count": 1}
    assert policy["failure-details"] == [{
        "result-type": "starttls-not-supported", "sending-mta-ip": "127.0.0.2",
        "receiving-mx-hostname": "mail.anotherdomain.org", "receiving-ip": "127.0.0.3",
        "failed-session-count": 1}]
    assert len(report["report-id"]) == 36
    with pytest.raises(KeyError):
        rep.report("example.com", DAY)


def test_bad_types_refused_and_filename() -> None:
    rep = TLSReporter("o", "c")
    with pytest.raises(ValueError):
        rep.record(T, "d.org", "dane")
    with pytest.raises(ValueError):
        rep.record(T, "d.org", "sts", result="oops")
    assert report_filename("example.com", "anotherdomain.org", DAY) == \
        "example.com!anotherdomain.org!1741564800!1741651199.json"
