"""MTA-STS (RFC 8461): the TXT record, the policy file, MX matching and the cache."""

from __future__ import annotations

import pytest

from simsmtp.world.mtasts import (
    MAX_AGE_LIMIT,
    PolicyCache,
    PolicyError,
    STSPolicy,
    mx_matches,
    parse_policy,
    parse_record,
    policy_url,
    record_name,
    render_policy,
    select_record,
)

POLICY = ("version: STSv1\r\nmode: enforce\r\nmx: mail.anotherdomain.org\r\n"
          "mx: *.backup.anotherdomain.org\r\nmax_age: 86400\r\n")


def test_names_and_url() -> None:
    assert record_name("AnotherDomain.org.") == "_mta-sts.anotherdomain.org"
    assert policy_url("anotherdomain.org") == \
        "https://mta-sts.anotherdomain.org/.well-known/mta-sts.txt"


def test_record_parses_id_and_extensions() -> None:
    record = parse_record("v=STSv1; id=20250310T090000; ext=1;")
    assert record.id == "20250310T090000"
    assert record.extensions == (("ext", "1"),)


@pytest.mark.parametrize("text", [
    "id=1; v=STSv1",              # v= must come first (§3.1)
    "v=STSv1;",                   # no id
    "v=STSv1; id=",               # empty id
    "v=STSv1; id=" + "a" * 33,    # at most 32 characters
    "v=STSv1; id=with-dash",      # letters and digits only
    "v=STSv1; id",                # not name=value
])
def test_bad_records(text: str) -> None:
    with pytest.raises(PolicyError):
        parse_record(text)


def test_select_record_ignores_others_and_refuses_two() -> None:
    assert select_record(["hello", "v=STSv1; id=1"]) == parse_record("v=STSv1; id=1")
    assert select_record(["v=STSv1; id=1", "v=STSv1; id=2"]) is None  # §3.1: no policy
    assert select_record(["v=spf1 -all"]) is None


def test_policy_parses_and_round_trips() -> None:
    policy = parse_policy(POLICY)
    assert policy == STSPolicy("enforce", 86400, ("mail.anotherdomain.org",
                                                  "*.backup.anotherdomain.org"))
    assert parse_policy(render_policy(policy)) == policy
    # LF endings and unknown keys are accepted (§3.2)
    assert parse_policy(POLICY.replace("\r\n", "\n") + "future: yes\n") == policy


@pytest.mark.parametrize("text, fragment", [
    ("version: STSv2\nmode: enforce\nmx: a.b\nmax_age: 1\n", "version"),
    ("version: STSv1\nmode: strict\nmx: a.b\nmax_age: 1\n", "mode"),
    ("version: STSv1\nmode: enforce\nmx: a.b\n", "max_age"),
    (f"version: STSv1\nmode: enforce\nmx: a.b\nmax_age: {MAX_AGE_LIMIT + 1}\n", "max_age"),
    ("version: STSv1\nmode: enforce\nmax_age: 60\n", "mx"),
    ("version: STSv1\nmode: enforce\nmx: bad_name!\nmax_age: 60\n", "mx"),
    ("version: STSv1\nmode enforce\n", "line 2"),
    ("version: STSv1\nmode: enforce\nmode: none\nmx: a.b\nmax_age: 1\n", "twice"),
])
def test_bad_policies_say_why(text: str, fragment: str) -> None:
    with pytest.raises(PolicyError, match=fragment):
        parse_policy(text)


def test_mode_none_needs_no_mx() -> None:
    assert parse_policy("version: STSv1\nmode: none\nmax_age: 60\n").mx == ()


@pytest.mark.parametrize("pattern, host, expected", [
    ("mail.anotherdomain.org", "MAIL.anotherdomain.org.", True),
    ("mail.anotherdomain.org", "mx.anotherdomain.org", False),
    ("*.anotherdomain.org", "mail.anotherdomain.org", True),
    ("*.anotherdomain.org", "anotherdomain.org", False),       # §4.1: one label exactly
    ("*.anotherdomain.org", "a.b.anotherdomain.org", False),
    ("*.anotherdomain.org", "evilanotherdomain.org", False),
])
def test_mx_matching(pattern: str, host: str, expected: bool) -> None:
    assert mx_matches(pattern, host) is expected


def test_cache_keeps_until_max_age_then_forgets() -> None:
    cache = PolicyCache()
    policy = parse_policy(POLICY)
    cache.put("anotherdomain.org", "id1", policy, now=1000.0)
    found = cache.get("AnotherDomain.org", now=1000.0 + 86399)
    assert found is not None and found.id == "id1" and found.policy is policy
    assert cache.get("anotherdomain.org", now=1000.0 + 86400) is None  # expired
    assert "anotherdomain.org" not in cache.entries
    cache.put("anotherdomain.org", "id1", policy, now=0.0)
    cache.forget("anotherdomain.org")
    assert cache.get("anotherdomain.org", now=0.0) is None


def test_world_file_keys_and_their_errors() -> None:
    from simsmtp.world import WorldFileError, parse_world

    base = """
[domains."d.org"]
mx = [{ preference = 10, host = "mx.d.org" }]
%s
[hosts."mx.d.org"]
domain = "d.org"
roles = ["mx"]
[hosts."mx.d.org".policy]
%s
"""
    world = parse_world(base % ('mta_sts = "testing"\nmta_sts_max_age = 600\ndnssec = true\n'
                                'tlsa = ["3 1 1", "2  1 1"]\ntls_rpt = "mailto:r@d.org"',
                                "mta_sts = true\ndane = true"))
    domain = world.domain("d.org")
    assert (domain.mta_sts, domain.mta_sts_max_age, domain.dnssec, domain.tlsa,
            domain.tls_rpt) == ("testing", 600, True, ["3 1 1", "2 1 1"], "mailto:r@d.org")
    assert domain.sts_policy() == STSPolicy("testing", 600, ("mx.d.org",))
    assert world.policy_server("d.org") == "mx.d.org"
    policy = world.host("mx.d.org").policy
    assert policy.mta_sts and policy.dane
    defaults = parse_world(base % ("", ""))
    assert not defaults.host("mx.d.org").policy.mta_sts  # Postfix's default: off
    assert defaults.domain("d.org").sts_policy() is None
    for bad, key in (('mta_sts = "strict"', "mta_sts"), ('tlsa = ["3 1 9"]', "tlsa"),
                     ("mta_sts_max_age = -1", "mta_sts_max_age"),
                     ('tls_rpt = "r@d.org"', "tls_rpt")):
        with pytest.raises(WorldFileError, match=key):
            parse_world(base % (bad, ""))
