"""World files: the seed, good files, and one clear message for each kind of mistake."""

from __future__ import annotations

import sys
import types
from datetime import UTC, datetime
from pathlib import Path

import pytest

from simsmtp.world import (
    MXRecord,
    Policy,
    Record,
    World,
    WorldFileError,
    load_world,
    parse_world,
)

HOST = """
[domains."example.com"]
mx = [{ preference = 10, host = "mail.example.com" }]
users.alice = { name = "Alice", password = "wonderland" }

[hosts."mail.example.com"]
domain = "example.com"
roles = ["mx", "submission"]
"""


def error(text: str, source: str = "bad.toml") -> WorldFileError:
    with pytest.raises(WorldFileError) as info:
        parse_world(text, source)
    return info.value


# -- the seed world ---------------------------------------------------------------------------


def test_seed_world_matches_its_description() -> None:
    world = World.seed_world()
    assert world.name == "Alice writes to Bob"
    assert world.seed == 1
    assert world.epoch == datetime(2025, 3, 10, 9, 0, tzinfo=UTC)
    assert world.source.endswith("seed.toml")
    assert list(world.domains) == ["example.com", "anotherdomain.org", "evil.example"]
    assert world.domains["example.com"].mx == [MXRecord(10, "mail.example.com")]
    assert world.domains["anotherdomain.org"].mx == [MXRecord(10, "mail.anotherdomain.org")]
    assert not any(d.null_mx for d in world.domains.values())
    alice = world.user("alice@example.com")
    assert alice is not None and (alice.name, alice.password) == ("Alice", "wonderland")
    bob = world.user("bob@anotherdomain.org")
    assert bob is not None and (bob.name, bob.password) == ("Bob", "builder")
    sub, mx = world.host("mail.example.com"), world.host("mail.anotherdomain.org")
    assert (sub.domain, sub.roles) == ("example.com", ["submission", "outbound"])
    assert (mx.domain, mx.roles) == ("anotherdomain.org", ["mx", "pop3"])
    assert sub.policy == Policy(outbound_tls="opportunistic")
    assert mx.policy == Policy() and not mx.down
    assert sub.ports() == [587, 465] and mx.ports() == [25, 110, 995, 143, 993]
    assert world.records == [Record("example.com", "TXT", '"hello from the seed"')]
    assert len(world.faults) == 0
    assert world.clock.now() == world.epoch.timestamp()


def test_policy_defaults() -> None:
    p = Policy()
    assert (p.size_limit, p.starttls, p.tls_required_inbound, p.auth_plaintext) == (
        52428800, True, False, False)
    assert (p.relay_networks, p.outbound_tls, p.max_recipients, p.persona) == (
        [], "opportunistic", 1000, "postfix")
    assert (p.idle_timeout, p.smtputf8, p.pop3_plaintext) == (300, False, False)


def test_postfix_teaching_choices_are_policy_keys_with_postfix_defaults() -> None:
    assert Policy().disable_vrfy_command is False  # Postfix: disable_vrfy_command = no
    assert Policy().unauth_destination == "defer"  # Postfix: defer_unauth_destination
    world = parse_world(HOST + '[hosts."mail.example.com".policy]\n'
                               'disable_vrfy_command = true\nunauth_destination = "reject"\n',
                        "good.toml")
    policy = world.host("mail.example.com").policy
    assert (policy.disable_vrfy_command, policy.unauth_destination) == (True, "reject")
    bad = error(HOST + '[hosts."mail.example.com".policy]\nunauth_destination = "bounce"\n')
    assert 'hosts."mail.example.com".policy.unauth_destination' in str(bad)
    assert "expected one of defer, reject" in str(bad)
    bad = error(HOST + '[hosts."mail.example.com".policy]\ndisable_vrfy_command = "yes"\n')
    assert "disable_vrfy_command" in str(bad)


def test_seed_override_changes_ids_only() -> None:
    a, b, c = World.seed_world(), World.seed_world(), World.seed_world(seed=7)
    assert c.seed == 7 and c.name == a.name
    assert a.ids.queue_id() == b.ids.queue_id() != c.ids.queue_id()


def test_each_way_in_reads_into_the_class_it_is_called_on(tmp_path: Path) -> None:
    class Classroom(World):
        pass

    path = tmp_path / "w.toml"
    path.write_text(HOST, encoding="utf-8")
    for world in (Classroom.seed_world(7), Classroom.from_toml(HOST, seed=7),
                  Classroom.load(path, seed=7)):
        assert type(world) is Classroom and world.seed == 7
        world.check()
    assert type(load_world(path)) is World and load_world(path, seed=3).seed == 3
    assert parse_world(HOST).domains == World.from_toml(HOST).domains


def test_lookups() -> None:
    world = World.seed_world()
    assert world.user("bob@AnotherDomain.ORG") is world.user("<bob@anotherdomain.org>")
    assert world.user("Bob@anotherdomain.org") is None  # the local part is case-sensitive
    assert world.user("nobody") is None and world.user("x@nowhere.example") is None
    assert [u.address for u in world.users()] == ["alice@example.com",
                                                  "bob@anotherdomain.org",
                                                  "mallory@evil.example"]
    assert world.host("MAIL.example.com.") is world.hosts["mail.example.com"]
    with pytest.raises(KeyError, match=r"did you mean 'mail\.example\.com'"):
        world.host("mail.exmaple.com")
    assert world.domain("Example.COM.") is world.domains["example.com"]
    with pytest.raises(KeyError, match=r"did you mean 'example\.com'"):
        world.domain("exmaple.com")
    with pytest.raises(KeyError, match=r"it has example\.com, anotherdomain\.org, evil"):
        world.domain("zzz.invalid")
    assert [h.name for h in world.hosts_with_role("mx")] == ["mail.anotherdomain.org"]
    assert [h.name for h in world.hosts_with_role("outbound")] == ["mail.example.com"]
    assert [h.name for h in world.hosts_with_role("client")] == ["mallory.evil.example"]
    assert world.local_domains("mail.anotherdomain.org") == ["anotherdomain.org"]
    assert world.local_domains(world.host("mail.example.com")) == ["example.com"]


def test_user_repr_hides_the_password() -> None:
    alice = World.seed_world().user("alice@example.com")
    assert alice is not None
    assert "wonderland" not in repr(alice) and "alice@example.com" in repr(alice)
    assert alice.check_password("wonderland") and not alice.check_password("Wonderland")
    assert (alice.local_part, alice.domain) == ("alice", "example.com")


def test_dns_records_of_the_seed() -> None:
    world = World.seed_world()
    records = world.dns_records({"mail.example.com": "127.0.0.2",
                                 "mail.anotherdomain.org": "127.0.0.3",
                                 "ns.simsmtp.test": "127.0.0.4",
                                 "mallory.evil.example": "127.0.0.5"})
    soa = "ns.simsmtp.test. hostmaster.{}. 2025031001 3600 900 604800 300"
    dkim = world.dkim_key("example.com")
    rows = [(r.name, r.rtype, r.value) for r in records]
    assert rows == [
        ("example.com", "SOA", soa.format("example.com")),
        ("example.com", "NS", "ns.simsmtp.test."),
        ("example.com", "MX", "10 mail.example.com."),
        ("example.com", "TXT", '"v=spf1 mx -all"'),
        ("mail._domainkey.example.com", "TXT", rows[4][2]),
        ("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; rua=mailto:dmarc@example.com"'),
        ("mail.example.com", "A", "127.0.0.2"),
        ("example.com", "TXT", '"hello from the seed"'),
        ("anotherdomain.org", "SOA", soa.format("anotherdomain.org")),
        ("anotherdomain.org", "NS", "ns.simsmtp.test."),
        ("anotherdomain.org", "MX", "10 mail.anotherdomain.org."),
        ("anotherdomain.org", "TXT", '"v=spf1 mx -all"'),
        ("_dmarc.anotherdomain.org", "TXT", '"v=DMARC1; p=none"'),
        ("mail.anotherdomain.org", "A", "127.0.0.3"),
        # MTA-STS (RFC 8461 §3.1; the policy host is Bob's MX), TLS-RPT (RFC 8460 §3); the
        # TLSA record needs the running world's certificate (tests/net/test_dane.py)
        ("_mta-sts.anotherdomain.org", "TXT", rows[14][2]),
        ("mta-sts.anotherdomain.org", "A", "127.0.0.3"),
        ("_smtp._tls.anotherdomain.org", "TXT",
         '"v=TLSRPTv1; rua=mailto:tls-reports@anotherdomain.org"'),
        ("evil.example", "SOA", soa.format("evil.example")),
        ("evil.example", "NS", "ns.simsmtp.test."),
        ("evil.example", "TXT", '"v=spf1 a:mallory.evil.example -all"'),
        ("mallory.evil.example", "A", "127.0.0.5"),
        ("simsmtp.test", "SOA", soa.format("simsmtp.test")),
        ("simsmtp.test", "NS", "ns.simsmtp.test."),
        ("ns.simsmtp.test", "A", "127.0.0.4"),
        ("127.in-addr.arpa", "SOA", soa.format("127.in-addr.arpa")),
        ("127.in-addr.arpa", "NS", "ns.simsmtp.test."),
        ("2.0.0.127.in-addr.arpa", "PTR", "mail.example.com."),
        ("3.0.0.127.in-addr.arpa", "PTR", "mail.anotherdomain.org."),
        ("4.0.0.127.in-addr.arpa", "PTR", "ns.simsmtp.test."),
        ("5.0.0.127.in-addr.arpa", "PTR", "mallory.evil.example."),
    ]
    # The DKIM key record is the world's seeded key (RFC 6376 §3.6.1), split into strings.
    assert "".join(rows[4][2].split('"')[1::2]) == dkim.txt_record()
    assert rows[14][2] == f'"v=STSv1; id={world.domain("anotherdomain.org").sts_id()};"'
    assert all(r.ttl == 3600 for r in records)


def test_dns_records_are_served_by_dnspython() -> None:
    import dns.name
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    world = World.seed_world()
    for r in world.dns_records({"mail.example.com": "127.0.0.2", "ns.simsmtp.test": "::1"}):
        dns.name.from_text(r.name)
        dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.from_text(r.rtype), r.value,
                            origin=dns.name.from_text("unrelated.invalid"))


def test_dns_records_null_mx_implicit_mx_and_ipv6() -> None:
    world = parse_world("""
[domains."nomail.example"]
null_mx = true
[domains."solo.example"]
[hosts."solo.example"]
domain = "solo.example"
roles = ["mx"]
""")
    records = world.dns_records({"solo.example": "127.0.0.9", "ns.simsmtp.test": "::1"})
    by = {(r.name, r.rtype): r.value for r in records}
    assert by[("nomail.example", "MX")] == "0 ."
    assert ("solo.example", "MX") not in by  # implicit MX: only the A record
    assert by[("solo.example", "A")] == "127.0.0.9"
    assert by[("ns.simsmtp.test", "AAAA")] == "::1"
    assert by[("9.0.0.127.in-addr.arpa", "PTR")] == "solo.example."
    assert by[("ip6.arpa", "NS")] == "ns.simsmtp.test."
    assert ("1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.ip6.arpa",
            "PTR") in by


# -- good files -------------------------------------------------------------------------------


def test_full_featured_file(tmp_path: Path) -> None:
    path = tmp_path / "classroom.toml"
    path.write_text(HOST + """
[hosts."mail.example.com".policy]
size_limit = 1000
starttls = false
relay_networks = ["127.0.0.0/8", "10.1.2.3/8"]
max_recipients = 100
idle_timeout = 5
smtputf8 = true

[hosts."mallory.example.com"]
domain = "EXAMPLE.com"
roles = ["client"]
down = true

[domains."backup.example"]
mx = [{ preference = 10, host = "MX1.Elsewhere.example." },
      { preference = 20, host = "mail.example.com" }]
users."first.last" = {}

[[records]]
name = "_dmarc.Example.com."
type = "txt"
value = 'v=DMARC1; p=reject; rua="x"'
ttl = 60

[[records]]
name = "www.example.com"
type = "CNAME"
value = "mail.example.com"

[[faults]]
host = "mail.example.com"
command = "rcpt"
match = "bob@*"
reply = "450 4.7.1 Greylisted, try again later"
times = 1
""", encoding="utf-8")
    world = load_world(path)
    assert world.name == "classroom" and world.seed == 1 and world.source == str(path)
    host = world.host("mail.example.com")
    assert host.policy.relay_networks == ["127.0.0.0/8", "10.0.0.0/8"]
    assert host.policy.may_relay("127.0.0.5") and not host.policy.may_relay("192.0.2.1")
    assert (host.policy.size_limit, host.policy.starttls, host.policy.idle_timeout) == (
        1000, False, 5.0)
    mallory = world.host("mallory.example.com")
    assert mallory.down and mallory.domain == "example.com" and mallory.ports() == []
    # An MX outside the world is allowed: it has no address ("MX points nowhere").
    assert world.domains["backup.example"].mx[0] == MXRecord(10, "mx1.elsewhere.example")
    assert world.local_domains("mail.example.com") == ["backup.example", "example.com"]
    user = world.user("first.last@backup.example")
    assert user is not None and user.name == "first.last" and user.password is None
    assert not user.check_password("")
    assert world.records == [
        Record("_dmarc.example.com", "TXT", '"v=DMARC1; p=reject; rua=\\"x\\""', 60),
        Record("www.example.com", "CNAME", "mail.example.com."),
    ]
    (rule,) = world.faults
    assert (rule.command, rule.match, rule.times, rule.reply and rule.reply.code) == (
        "RCPT", "bob@*", 1, 450)
    assert world.faults.check("mail.example.com", "RCPT", "bob@x") is rule


def test_long_plain_txt_is_split_into_255_octet_strings() -> None:
    world = parse_world(HOST + f"""
[[records]]
name = "sel._domainkey.example.com"
type = "TXT"
value = "v=DKIM1; p={'A' * 400}"
""")
    import dns.rdata
    import dns.rdataclass
    import dns.rdatatype

    rdata = dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.TXT, world.records[0].value)
    strings = rdata.strings  # type: ignore[attr-defined]
    assert [len(s) for s in strings] == [255, 411 - 255]
    assert b"".join(strings) == b"v=DKIM1; p=" + b"A" * 400


def test_world_table_and_native_toml_datetime() -> None:
    world = parse_world("[world]\nname = \"Tiny\"\nseed = -3\n"
                        "epoch = 2024-12-31T23:00:00+01:00\n")
    assert (world.name, world.seed) == ("Tiny", -3)
    assert world.epoch.isoformat() == "2024-12-31T23:00:00+01:00"
    assert world.domains == {} and world.hosts == {}


def test_trace_uses_the_virtual_clock() -> None:
    world = World.seed_world()
    world.clock.advance(42)
    event = world.trace.record("test.event", "mail.example.com", x=1)
    assert event is not None and event.clock == 42


def test_start_hands_the_world_to_the_network(monkeypatch: pytest.MonkeyPatch) -> None:
    class FakeNetwork:
        def __init__(self, world: World, **kw: object) -> None:
            self.world, self.kw, self.started = world, kw, False

        def start(self) -> FakeNetwork:
            self.started = True
            return self

    module = types.ModuleType("simsmtp.net.network")
    module.Network = FakeNetwork  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "simsmtp.net.network", module)
    world = World.seed_world()
    network = world.start(base="127.0.0.10")
    assert isinstance(network, FakeNetwork)
    assert network.world is world and network.kw == {"base": "127.0.0.10"}
    assert network.started  # world.start() boots at once


def test_check_validates_live_edits() -> None:
    world = World.seed_world()
    world.check()
    mx = world.host("mail.anotherdomain.org")
    mx.policy.tls_required_inbound = True
    with pytest.raises(WorldFileError, match=r"policy\.tls_required_inbound: .*RFC 3207"):
        world.check()
    mx.policy.tls_required_inbound = False
    mx.policy.starttls = "no"  # type: ignore[assignment]
    with pytest.raises(WorldFileError) as info:
        world.check()
    assert info.value.key == 'hosts."mail.anotherdomain.org".policy.starttls'
    assert info.value.got == '"no"'
    mx.policy.starttls = True
    mx.policy.relay_networks.append("10.0.0.0/33")
    with pytest.raises(WorldFileError, match=r"relay_networks\[0\]"):
        world.check()


# -- bad files --------------------------------------------------------------------------------


def test_the_briefs_example_message() -> None:
    err = error(HOST.replace('roles = ["mx", "submission"]', 'roles = ["mx", "smtp"]'),
                "myworld.toml")
    assert str(err) == ('myworld.toml: hosts."mail.example.com".roles[1]: expected one of '
                        'client, mx, outbound, pop3, submission; got "smtp"')
    assert (err.source, err.key, err.got) == ("myworld.toml", 'hosts."mail.example.com".roles[1]',
                                              '"smtp"')


BAD = [
    # (text, key, expected contains, got contains)
    ('[host."a.example"]\n', "host", "one of domains, faults, hosts, records, world",
     'unknown key "host" (did you mean "hosts"?)'),
    ("[world]\nsed = 1\n", "world.sed", "one of epoch, name, seed", 'did you mean "seed"'),
    ('[world]\nseed = "one"\n', "world.seed", "an integer", '"one"'),
    ("[world]\nseed = true\n", "world.seed", "an integer", "true"),
    ('[world]\nepoch = "2025-03-10T09:00:00"\n', "world.epoch",
     "ISO 8601 date-time with a timezone", '"2025-03-10T09:00:00"'),
    ('[world]\nepoch = "yesterday"\n', "world.epoch", "ISO 8601", '"yesterday"'),
    ("[world]\nepoch = 2025-03-10\n", "world.epoch", "ISO 8601", "2025-03-10"),
    (HOST + '[hosts."mail.example.com".policy]\nstartls = false\n',
     'hosts."mail.example.com".policy.startls', "one of anvil_rate_time_unit, auth_failure_limit,",
     'did you mean "starttls"'),
    (HOST + '[hosts."mail.example.com".policy]\ntls_required_inbound = true\n',
     'hosts."mail.example.com".policy.tls_required_inbound',
     'false for a host with role "mx" (RFC 3207 §4', "true"),
    (HOST.replace('"mx", ', "") + '[hosts."mail.example.com".policy]\n'
     "tls_required_inbound = true\nstarttls = false\n",
     'hosts."mail.example.com".policy.tls_required_inbound', "false when starttls = false",
     "true"),
    (HOST + '[hosts."mail.example.com".policy]\nmax_recipients = 50\n',
     'hosts."mail.example.com".policy.max_recipients', "an integer from 100 to 1000000", "50"),
    (HOST + '[hosts."mail.example.com".policy]\noutbound_tls = "always"\n',
     'hosts."mail.example.com".policy.outbound_tls', "one of none, opportunistic, required",
     '"always"'),
    (HOST + '[hosts."mail.example.com".policy]\nrelay_networks = ["10.0.0.0/33"]\n',
     'hosts."mail.example.com".policy.relay_networks[0]', "CIDR", '"10.0.0.0/33"'),
    (HOST + '[hosts."mail.example.com".policy]\nrelay_networks = "10.0.0.0/8"\n',
     'hosts."mail.example.com".policy.relay_networks', "a list of networks", '"10.0.0.0/8"'),
    (HOST + '[hosts."mail.example.com".policy]\nidle_timeout = 0\n',
     'hosts."mail.example.com".policy.idle_timeout', "a number > 0", "0"),
    (HOST + '[hosts."mail.example.com".policy]\nsize_limit = -1\n',
     'hosts."mail.example.com".policy.size_limit', "an integer from 0 to 1073741824", "-1"),
    (HOST + '[hosts."mail.example.com".policy]\nsmtputf8 = "yes"\n',
     'hosts."mail.example.com".policy.smtputf8', "true or false", '"yes"'),
    (HOST.replace('domain = "example.com"', 'domain = "exmaple.com"'),
     'hosts."mail.example.com".domain', "one of the world's domains: example.com",
     '"exmaple.com" (did you mean "example.com"?)'),
    (HOST.replace('domain = "example.com"\n', ""), 'hosts."mail.example.com".domain',
     "the domain the host belongs to (required)", "nothing"),
    (HOST.replace('["mx", "submission"]', '["mx", "mx"]'), 'hosts."mail.example.com".roles[1]',
     "each role once", '"mx"'),
    (HOST.replace('["mx", "submission"]', '"mx"'), 'hosts."mail.example.com".roles',
     "a list of roles", '"mx"'),
    (HOST.replace('[hosts."mail.example.com"]', '[hosts."mail_example.com"]'),
     'hosts."mail_example.com"', "a host name like mail.example.com", '"mail_example.com"'),
    (HOST + '[hosts."Mail.Example.com"]\ndomain = "example.com"\nroles = []\n',
     'hosts."Mail.Example.com"', "a name different from", '"Mail.Example.com"'),
    (HOST.replace("preference = 10", "preference = 70000"),
     'domains."example.com".mx[0].preference', "an integer from 0 to 65535", "70000"),
    (HOST.replace(', host = "mail.example.com"', ""), 'domains."example.com".mx[0].host',
     "(required)", "nothing"),
    (HOST.replace('host = "mail.example.com" }', 'host = "mail.example.com", pref = 1 }'),
     'domains."example.com".mx[0].pref', "one of host, preference", "unknown key"),
    (HOST.replace("mx = [", "null_mx = true\nmx = ["), 'domains."example.com".null_mx',
     "a null MX stands alone, RFC 7505", "true"),
    (HOST.replace("users.alice =", 'users."al ice" ='), 'domains."example.com".users."al ice"',
     "a local part like alice", '"al ice"'),
    (HOST.replace('password = "wonderland"', "password = 1234"),
     'domains."example.com".users.alice.password', "a string", "1234"),
    (HOST.replace('name = "Alice",', 'nmae = "Alice",'), 'domains."example.com".users.alice.nmae',
     "one of name, password", 'did you mean "name"'),
    (HOST + '[[records]]\nname = "a.example.com"\ntype = "A"\nvalue = "999.1.1.1"\n',
     "records[0].value", "an IPv4 address", '"999.1.1.1"'),
    (HOST + '[[records]]\nname = "a.example.com"\ntype = "SPF"\nvalue = "x"\n',
     "records[0].type", "one of A, AAAA, CAA, CNAME, MX, NS, PTR, SRV, TXT", '"SPF"'),
    (HOST + '[[records]]\nname = "example.com"\ntype = "SOA"\nvalue = "x"\n',
     "records[0].type", "SOA records are generated", '"SOA"'),
    (HOST + '[[records]]\nname = "example.com"\ntype = "MX"\nvalue = "5 mx.example.com"\n',
     "records[0].type", 'MX records of example.com in domains."example.com".mx', '"MX"'),
    (HOST + '[[records]]\nname = "a b.example.com"\ntype = "A"\nvalue = "127.0.0.1"\n',
     "records[0].name", "an owner name", '"a b.example.com"'),
    (HOST + '[[records]]\nname = "a.example.com"\ntype = "A"\nvalue = "127.0.0.1"\nttl = -1\n',
     "records[0].ttl", "an integer from 0 to 2147483647", "-1"),
    (HOST + '[[records]]\nname = "a.example.com"\ntype = "A"\n', "records[0].value",
     "(required)", "nothing"),
    ("records = 3\n" + HOST, "records", "an array of tables written [[records]]", "3"),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "RCPT"\nreply = "250 OK"\n',
     "faults[0].reply", "a 4xx or 5xx reply line", '"250 OK"'),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "RCPT"\nreply = "45 no"\n',
     "faults[0].reply", "a 4xx or 5xx reply line", '"45 no"'),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "RCTP"\ndrop = true\n',
     "faults[0].command", "one of CONNECT, EHLO,", '"RCTP" (did you mean "RCPT"?)'),
    (HOST + '[[faults]]\nhost = "mail.exmple.com"\ncommand = "RCPT"\ndrop = true\n',
     "faults[0].host", "one of the world's hosts: mail.example.com",
     '"mail.exmple.com" (did you mean "mail.example.com"?)'),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "QUIT"\n', "faults[0]",
     "at least one of reply, delay or drop = true", "none of them"),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "QUIT"\ndrop = true\ntimes = 0\n',
     "faults[0].times", "an integer from 1 to 1000000", "0"),
    (HOST + '[[faults]]\nhost = "mail.example.com"\ncommand = "QUIT"\ndelay = -2\n',
     "faults[0].delay", "a number >= 0", "-2"),
    (HOST + "[[faults]]\n", "faults[0].host", "(required)", "nothing"),
]


@pytest.mark.parametrize(("text", "key", "expected", "got"), BAD,
                         ids=[f"{i}-{case[1]}" for i, case in enumerate(BAD)])
def test_bad_file_gets_one_clear_message(text: str, key: str, expected: str, got: str) -> None:
    err = error(text)
    assert err.source == "bad.toml"
    assert err.key == key
    assert expected in err.expected
    assert got in err.got
    message = str(err)
    assert message.startswith(f"bad.toml: {key}: expected ")
    assert "\n" not in message


def test_toml_syntax_error_names_line_and_column() -> None:
    err = error('[world]\nname = "unterminated\n')
    assert (err.line, err.column) == (2, 21)
    assert str(err).startswith("bad.toml:2:21: expected valid TOML; got ")
    assert "(at line" not in err.got


def test_load_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[wrold]\nname = "x"\n', encoding="utf-8")
    with pytest.raises(WorldFileError) as info:
        World.load(path)
    assert str(info.value).startswith(f'{path}: wrold: expected one of domains,')
    assert 'did you mean "world"' in str(info.value)
    path.write_bytes(b'[world]\nname = "\xff"\n')
    with pytest.raises(WorldFileError, match="UTF-8"):
        load_world(path)


def test_summary_and_reprs_for_notebooks() -> None:
    world = World.seed_world()
    world.host("mail.anotherdomain.org").down = True
    world.faults.add("mail.anotherdomain.org", "RCPT", "450 4.7.1 Greylisted", times=1)
    assert world.summary().splitlines() == [
        "World 'Alice writes to Bob' (seed 1, epoch 2025-03-10T09:00:00+00:00, "
        "from simsmtp/world/seed.toml)",
        "  domain example.com: mail.example.com (10); users: alice",
        "  domain anotherdomain.org: mail.anotherdomain.org (10); users: bob",
        "  domain evil.example: implicit MX; users: mallory",
        "  host mail.example.com (example.com): submission, outbound",
        "  host mail.anotherdomain.org (anotherdomain.org): mx, pop3 [DOWN]",
        "  host mallory.evil.example (evil.example): client",
        "  fault mail.anotherdomain.org RCPT: answer 450 4.7.1 Greylisted (0/1 used)",
    ]
    assert repr(world).startswith("World('Alice writes to Bob', seed=1, ")
    assert "wonderland" not in repr(world.domains)
    assert str(world.records[0]) == 'example.com. 3600 IN TXT "hello from the seed"'
    assert str(MXRecord(10, "mail.example.com")) == "MX 10 mail.example.com"
