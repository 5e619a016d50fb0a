"""World files and email authentication: the friendly keys spf, dkim_selector, dkim_bits,
dmarc and policy.mailauth; what the seed publishes; one clear message per mistake."""

from __future__ import annotations

import pytest

from simsmtp.world import World, WorldFileError, parse_world
from simsmtp.world.loader import dmarc_problem, spf_problem
from simsmtp.world.mailauth import parse_record
from simsmtp.world.model import DEFAULT_DKIM_BITS, Domain

ADDRESSES = {"mail.example.com": "127.0.0.2", "mail.anotherdomain.org": "127.0.0.3",
             "ns.simsmtp.test": "127.0.0.4", "mallory.evil.example": "127.0.0.5"}


def world_with(domain_lines: str, extra: str = "", policy: str = "") -> str:
    return f"""
[domains."example.com"]
mx = [{{ preference = 10, host = "mail.example.com" }}]
{domain_lines}

[hosts."mail.example.com"]
domain = "example.com"
roles = ["mx", "submission", "outbound"]
[hosts."mail.example.com".policy]
{policy}
{extra}
"""


def error(text: str) -> WorldFileError:
    with pytest.raises(WorldFileError) as info:
        parse_world(text, "auth.toml")
    return info.value


def txt(world: World, name: str) -> list[str]:
    """The TXT values at ``name`` as published (zone-file form)."""
    return [r.value for r in world.dns_records(ADDRESSES) if r.name == name and r.rtype == "TXT"]


# -- the seed ---------------------------------------------------------------------------------


def test_seed_publishes_spf_dkim_and_dmarc() -> None:
    world = World.seed_world()
    example = world.domains["example.com"]
    assert example.spf == "v=spf1 mx -all"
    assert (example.dkim_selector, example.dkim_bits) == ("mail", DEFAULT_DKIM_BITS)
    assert example.dmarc == "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
    other = world.domains["anotherdomain.org"]
    assert other.spf == "v=spf1 mx -all"
    record = parse_record(other.dmarc or "")
    assert record is not None and record.p == "none"
    assert '"v=spf1 mx -all"' in txt(world, "example.com")
    assert txt(world, "_dmarc.example.com") == [
        '"v=DMARC1; p=reject; rua=mailto:dmarc@example.com"']
    [key_record] = txt(world, "mail._domainkey.example.com")
    key = world.dkim_key("example.com")
    assert key is not None and key.bits == 1024
    assert key_record == f'"{key.txt_record()}"'
    assert key_record.startswith('"v=DKIM1; k=rsa; p=MIG')
    assert txt(world, "anotherdomain.org") == ['"v=spf1 mx -all"']
    assert txt(world, "_dmarc.anotherdomain.org") == ['"v=DMARC1; p=none"']
    assert world.dkim_key("anotherdomain.org") is None  # no selector: Bob's side signs nothing


def test_seed_has_mallory_the_spoofer() -> None:
    world = World.seed_world()
    evil = world.domains["evil.example"]
    assert list(evil.users) == ["mallory"] and evil.mx == []
    mallory = world.host("mallory.evil.example")
    assert (mallory.domain, mallory.roles, mallory.ports()) == ("evil.example", ["client"], [])
    records = [(r.name, r.rtype, r.value) for r in world.dns_records(ADDRESSES)]
    assert ("mallory.evil.example", "A", "127.0.0.5") in records  # her name resolves
    assert ("evil.example", "TXT", '"v=spf1 a:mallory.evil.example -all"') in records
    assert world.host("mail.anotherdomain.org").policy.mailauth == "enforce"


def test_dkim_keys_come_from_the_world_seed() -> None:
    one, again, other = World.seed_world(), World.seed_world(), World.seed_world(seed=2)
    assert one.dkim_key("example.com") == again.dkim_key("example.com")
    assert one.dkim_key("example.com") != other.dkim_key("example.com")
    assert one.dkim_key("EXAMPLE.com.") == one.dkim_key("example.com")
    assert one.dkim_key("nowhere.example") is None
    one.domains["example.com"].dkim_selector = "s2"  # a new selector: a new key
    assert one.dkim_key("example.com") != again.dkim_key("example.com")
    assert txt(one, "mail._domainkey.example.com") == []
    assert len(txt(one, "s2._domainkey.example.com")) == 1


def test_live_edits_change_what_dns_publishes() -> None:
    world = World.seed_world()
    world.domains["example.com"].dmarc = "v=DMARC1; p=none"
    world.domains["example.com"].spf = "v=spf1 ip4:127.0.0.0/8 ~all"
    assert txt(world, "_dmarc.example.com") == ['"v=DMARC1; p=none"']
    assert '"v=spf1 ip4:127.0.0.0/8 ~all"' in txt(world, "example.com")
    world.domains["example.com"].dmarc = None
    assert txt(world, "_dmarc.example.com") == []
    world.check()  # still a valid world


# -- good values --------------------------------------------------------------------------------


@pytest.mark.parametrize("record", [
    "v=spf1 -all",
    "v=spf1 mx -all",
    "V=SPF1 MX ~ALL",
    "v=spf1 a mx:mail.example.com/24 ip4:192.0.2.0/24 ip6:2001:db8::/32 ?all",
    "v=spf1 include:_spf.example.net exists:%{i}.spf.example.com ptr -all",
    "v=spf1 a/24//64 +mx redirect=_spf.example.com",
    "v=spf1 mx exp=explain.example.com -all",
    "v=spf1  mx   -all",
    "v=spf1 mx foo=bar -all",  # unknown modifiers are ignored (RFC 7208 §6)
])
def test_good_spf_records(record: str) -> None:
    assert spf_problem(record) is None
    world = parse_world(world_with(f'spf = "{record}"'))
    assert world.domains["example.com"].spf == record


@pytest.mark.parametrize("record", [
    "v=DMARC1; p=none",
    "v=DMARC1; p=quarantine; pct=25",
    "v=DMARC1;p=reject;sp=none;adkim=s;aspf=r;rua=mailto:d@example.com;ruf=mailto:f@example.com",
])
def test_good_dmarc_records(record: str) -> None:
    assert dmarc_problem(record) is None
    world = parse_world(world_with(f'dmarc = "{record}"'))
    assert world.domains["example.com"].dmarc == record


def test_selector_bits_and_mailauth() -> None:
    world = parse_world(world_with('dkim_selector = "S2025.Eu"\ndkim_bits = 2048',
                                   policy='mailauth = "report"'))
    domain = world.domains["example.com"]
    assert (domain.dkim_selector, domain.dkim_bits) == ("s2025.eu", 2048)
    assert domain.dkim_name() == "s2025.eu._domainkey.example.com"
    assert world.host("mail.example.com").policy.mailauth == "report"
    assert Domain("x.example").dkim_name() is None


@pytest.mark.slow
def test_a_2048_bit_key_is_published_in_several_strings() -> None:
    world = parse_world(world_with('dkim_selector = "big"\ndkim_bits = 2048'))
    [value] = txt(world, "big._domainkey.example.com")
    strings = value.split('" "')
    assert len(strings) == 2 and len(strings[0]) == 256  # a quote and 255 octets
    key = world.dkim_key("example.com")
    assert key is not None and key.bits == 2048


# -- mistakes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("record", "why"), [
    ("spf1 mx -all", 'must start with "v=spf1"'),
    ("v=spf2 mx -all", 'must start with "v=spf1"'),
    ("v=spf1 mx -al", 'unknown mechanism "-al" (RFC 7208 §5)'),
    ("v=spf1 ip4:300.1.2.3 -all", '"ip4:300.1.2.3" has a bad address'),
    ("v=spf1 ip4:192.0.2.0/33 -all", '"ip4:192.0.2.0/33" has a bad address'),
    ("v=spf1 redirect=a.example redirect=b.example", '"redirect=" appears twice'),
    ("v=spf1 mx exp=", '"exp=" needs a domain'),
])
def test_bad_spf_records(record: str, why: str) -> None:
    e = error(world_with(f'spf = "{record}"'))
    assert e.key == 'domains."example.com".spf'
    assert e.expected.startswith('an SPF record like "v=spf1 mx -all" (RFC 7208 §4.5)')
    assert "use [[records]]" in e.expected  # how to publish a broken one on purpose
    assert why in e.got and record in e.got


@pytest.mark.parametrize(("record", "why"), [
    ("p=reject", 'must start with "v=DMARC1"'),
    ("v=DMARC1", "the required p= tag is missing"),
    ("v=DMARC1; p=block", "p=block is not none, quarantine or reject"),
    ("v=DMARC1; p=reject; sp=drop", "sp=drop is not none, quarantine or reject"),
    ("v=DMARC1; p=reject; pct=150", "pct=150 is not 0-100"),
    ("v=DMARC1; p=reject; adkim=x", "adkim=x is not r or s"),
])
def test_bad_dmarc_records(record: str, why: str) -> None:
    e = error(world_with(f'dmarc = "{record}"'))
    assert e.key == 'domains."example.com".dmarc'
    assert e.expected.startswith('a DMARC record like "v=DMARC1; p=reject" (RFC 7489 §6.3)')
    assert why in e.got


@pytest.mark.parametrize(("line", "key", "expected"), [
    ("spf = 42", "spf", "an SPF record like"),
    ("dmarc = true", "dmarc", "a DMARC record like"),
    ('dkim_selector = ""', "dkim_selector", 'a selector like "mail"'),
    ('dkim_selector = "-mail"', "dkim_selector", 'a selector like "mail"'),
    ('dkim_selector = "my selector"', "dkim_selector", 'a selector like "mail"'),
    ('dkim_selector = "*.mail"', "dkim_selector", 'a selector like "mail"'),
    ("dkim_selector = 7", "dkim_selector", 'a selector like "mail"'),
    ("dkim_bits = 512", "dkim_bits", "an integer from 1024 to 4096 (RFC 8301 §3.2)"),
    ("dkim_bits = 8192", "dkim_bits", "an integer from 1024 to 4096"),
    ('dkim_bits = "2048"', "dkim_bits", "an integer from 1024 to 4096"),
    ("dkim_bits = 1025", "dkim_bits", "an even integer from 1024 to 4096"),
])
def test_bad_values_name_the_key(line: str, key: str, expected: str) -> None:
    e = error(world_with(line))
    assert e.key == f'domains."example.com".{key}'
    assert expected in e.expected
    assert str(e).startswith(f'auth.toml: domains."example.com".{key}: expected ')


def test_a_misspelt_key_gets_a_suggestion() -> None:
    e = error(world_with('dkim_selecter = "mail"'))
    assert e.key == 'domains."example.com".dkim_selecter'
    assert 'did you mean "dkim_selector"?' in e.got
    e = error(world_with("", policy='mailauth = "enforced"'))
    assert e.key == 'hosts."mail.example.com".policy.mailauth'
    assert e.expected == "one of enforce, report, off"
    assert 'did you mean "enforce"?' in e.got


@pytest.mark.parametrize(("domain_line", "name", "value", "clash"), [
    ('spf = "v=spf1 mx -all"', "example.com", "v=spf1 -all", "spf"),
    ('dmarc = "v=DMARC1; p=none"', "_dmarc.example.com", "v=DMARC1; p=reject", "dmarc"),
    ('dkim_selector = "mail"', "mail._domainkey.example.com", "v=DKIM1; p=", "dkim_selector"),
])
def test_a_record_published_twice_is_refused(domain_line: str, name: str, value: str,
                                             clash: str) -> None:
    extra = f'[[records]]\nname = "{name}"\ntype = "TXT"\nvalue = "{value}"\n'
    e = error(world_with(domain_line, extra))
    assert e.key == "records[0].name"
    assert f'domains."example.com".{clash} does not already publish a record' in e.expected


def test_other_txt_records_beside_the_friendly_keys_are_fine() -> None:
    extra = ('[[records]]\nname = "example.com"\ntype = "TXT"\nvalue = "hello"\n'
             '[[records]]\nname = "_dmarc.example.com"\ntype = "TXT"\n'
             'value = "v=DMARC1; p=none"\n')
    world = parse_world(world_with('spf = "v=spf1 mx -all"', extra))
    assert '"hello"' in txt(world, "example.com")
    # without a dmarc key, [[records]] may publish one (even a broken one, on purpose)
    assert txt(world, "_dmarc.example.com") == ['"v=DMARC1; p=none"']


def test_live_edits_are_checked_by_world_check() -> None:
    world = World.seed_world()
    world.domains["example.com"].dmarc = "v=DMARC1; p=block"
    with pytest.raises(WorldFileError) as info:
        world.check()
    assert info.value.key == 'domains."example.com".dmarc'
    world.domains["example.com"].dmarc = "v=DMARC1; p=none"
    world.domains["example.com"].dkim_bits = 100
    with pytest.raises(WorldFileError) as info:
        world.check()
    assert info.value.key == 'domains."example.com".dkim_bits'
    world.domains["example.com"].dkim_bits = 1024
    world.host("mail.anotherdomain.org").policy.mailauth = "strict"
    with pytest.raises(WorldFileError) as info:
        world.check()
    assert info.value.key == 'hosts."mail.anotherdomain.org".policy.mailauth'
