"""SPF, DKIM and DMARC in a running world, over real sockets: Alice's signed mail passes,
Mallory's spoof from her own address is refused (550 5.7.1) or, as example.com's DMARC
record is edited live, delivered (p=none) or put in Junk (p=quarantine); a forwarder breaks
SPF but not DKIM; a body or header changed in transit breaks DKIM. Every DNS lookup of
the checks goes to the world's own DNS server, in-process."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from importlib import resources
from typing import Any

import pytest

from simsmtp.net.authpolicy import (
    TRANSPORT,
    InProcessResolver,
    answer_cache,
    reject_reply,
    signing_time,
    world_dns,
)
from simsmtp.net.dns import DNSServer
from simsmtp.net.network import Network
from simsmtp.world import World
from simsmtp.world.mailauth import DNSTempError, dns_functions, parse_signature
from simsmtp.world.model import Record
from simsmtp.world.scenario import seed_message

ALICE, BOB, MALLORY = "alice@example.com", "bob@anotherdomain.org", "mallory@evil.example"
MX, SUBMISSION, SPOOFER = "mail.anotherdomain.org", "mail.example.com", "mallory.evil.example"
FORWARDER = "fwd.forward.example"


#: A world with a forwarder: Bob's old address bob@forward.example is kept on
#: fwd.forward.example, which passes his mail on unchanged (MAIL FROM kept, no SRS).
FORWARD_WORLD = """
[domains."forward.example"]
mx = [{ preference = 10, host = "fwd.forward.example" }]
users.bob = { name = "Bob (old address)" }

[hosts."fwd.forward.example"]
domain = "forward.example"
roles = ["mx", "outbound"]
"""


def seed_text() -> str:
    return resources.files("simsmtp.world").joinpath("seed.toml").read_text("utf-8")


def submit_as_alice(net: Network, recipient: str = BOB, subject: str | None = None) -> None:
    message = seed_message(net.world, recipient=recipient,
                           **({"subject": subject} if subject else {}))
    steps = net.submit(message, sender=ALICE, recipients=[recipient], user=ALICE,
                       password="wonderland")
    assert steps[-2].code == 250, [str(s) for s in steps]


def send_from(net: Network, host: str, mail_from: str, message: bytes, rcpt: str = BOB,
              to: str = MX) -> None:
    """Connect from ``host``'s own address to ``to``:25 and send (raises on refusal)."""
    ip, port = net.address(to, 25)
    source = net.hosts[host].ip
    with smtplib.SMTP(ip, port, local_hostname=host, source_address=(source, 0),
                      timeout=5) as client:
        client.sendmail(mail_from, [rcpt], message)


def spoof(world: World, subject: str = "Urgent: wire the money today") -> bytes:
    """Mallory's message: From: Alice, unsigned."""
    return seed_message(world, subject=subject, from_header="Alice <alice@example.com>")


def results(message: EmailMessage, authserv_id: str = MX) -> tuple[str, dict[str, str]]:
    """Our Authentication-Results value (whitespace unfolded) and ``{method: result}``."""
    ours = [" ".join(str(v).split()) for v in message.get_all("Authentication-Results", [])
            if str(v).split(";")[0].strip() == authserv_id]
    assert len(ours) == 1, ours
    found = dict(re.findall(r"(?:^|;\s*)(spf|dkim|dmarc)=(\w+)", ours[0]))
    return ours[0], found


def delivered(net: Network, address: str = BOB, count: int = 1,
              folder: str | None = None) -> list[EmailMessage]:
    """The messages in ``address``'s folder once ``count`` were stored there (waiting on
    the trace, not by reading a Maildir a delivery may be creating)."""
    def stored() -> int:
        return sum(1 for e in net.world.trace.events("delivery.stored")
                   if e["recipient"] == address and e.get("folder") == folder)

    assert net.wait(lambda: stored() >= count, 10)
    return net.mailbox(address, folder)


def last(world: World, kind: str, host: str = MX) -> dict[str, object]:
    events = world.trace.events(kind, host=host)
    assert events, kind
    return events[-1].data


# ------------------------------------------------------------------------ the seed


def test_seed_delivery_shows_spf_dkim_dmarc_pass(net: Network, world: World) -> None:
    submit_as_alice(net)
    [message] = delivered(net)
    header, found = results(message)
    assert found == {"spf": "pass", "dkim": "pass", "dmarc": "pass"}
    assert header.startswith(f"{MX}; spf=pass smtp.mailfrom=example.com; dkim=pass "
                             "header.d=example.com header.s=mail; dmarc=pass")
    # Alice's server signed it: d=example.com, s=mail, t= from the world clock
    tags = parse_signature(str(message["DKIM-Signature"]))
    assert (tags["d"], tags["s"], tags["a"], tags["c"]) == ("example.com", "mail",
                                                            "rsa-sha256", "relaxed/relaxed")
    assert int(tags["t"]) == int(world.epoch.timestamp())
    assert tags["h"].split(":") == ["from", "to", "subject", "date", "message-id"]
    sign = last(world, "auth.sign", SUBMISSION)
    assert (sign["domain"], sign["key_name"]) == ("example.com", "mail._domainkey.example.com")
    verdict = last(world, "auth.verdict")
    assert verdict["summary"] == "spf=pass dkim=pass dmarc=pass"
    assert verdict["action"] == "inbox"
    assert last(world, "auth.spf")["client_ip"] == net.hosts[SUBMISSION].ip
    # the header order of a real MX: Return-Path (final delivery, RFC 5321 §4.4), our
    # Received on top of the rest, then our results
    assert list(message.keys())[:3] == ["Return-Path", "Received", "Authentication-Results"]
    assert message["Return-Path"] == "<alice@example.com>"


def test_the_checks_ask_the_worlds_dns_in_process(net: Network, world: World) -> None:
    submit_as_alice(net)
    delivered(net)
    mx_ip = net.hosts[MX].ip
    asked = [(e["qname"], e["qtype"]) for e in world.trace.events("dns.query")
             if e["client"] == f"{mx_ip}:0"]
    assert asked == [("example.com.", "TXT"), ("example.com.", "MX"),
                     ("mail.example.com.", "A"), ("mail._domainkey.example.com.", "TXT"),
                     ("_dmarc.example.com.", "TXT")]
    assert {e["transport"] for e in world.trace.events("dns.query")
            if e["client"] == f"{mx_ip}:0"} == {TRANSPORT}
    # answered by the world's server (NOERROR, authoritative) ...
    answers = [e for e in world.trace.events("dns.answer") if e["transport"] == TRANSPORT]
    assert [e["rcode"] for e in answers] == ["NOERROR"] * 5
    assert all("aa" in e["flags"].split() for e in answers)
    # ... and no packet in the capture: they crossed no socket
    assert not any(c.client[0] == mx_ip for c in net.tap.connections()
                   if c.transport == "udp")


def test_signatures_repeat_run_after_run() -> None:
    headers = []
    for _ in range(2):
        world = World.seed_world()
        with world.start(storage="memory") as net:
            submit_as_alice(net)
            [message] = delivered(net)
            headers.append(str(message["DKIM-Signature"]))
    assert headers[0] == headers[1]
    assert "b=" in headers[0]


# ------------------------------------------------------------------------ Mallory


def test_mallorys_spoof_is_refused_and_the_trace_says_why(net: Network, world: World) -> None:
    with pytest.raises(smtplib.SMTPDataError) as refused:
        send_from(net, SPOOFER, ALICE, spoof(world))
    assert refused.value.smtp_code == 550
    assert refused.value.smtp_error == b"5.7.1 Email rejected per DMARC policy for example.com"
    assert net.mailbox(BOB) == [] and net.mailbox(BOB, "Junk") == []
    assert not world.trace.events("delivery.stored")
    [message] = world.trace.events("smtp.message", host=MX)
    assert message["accepted"] is False
    mallory_ip = net.hosts[SPOOFER].ip
    spf = last(world, "auth.spf")
    assert (spf["result"], spf["client_ip"], spf["domain"]) == ("fail", mallory_ip,
                                                                "example.com")
    assert (spf["record"], spf["mechanism"]) == ("v=spf1 mx -all", "-all")
    assert f"the client {mallory_ip} does not match mx" in str(spf["explanation"])
    assert last(world, "auth.dkim")["result"] == "none"
    dmarc = last(world, "auth.dmarc")
    assert (dmarc["result"], dmarc["policy"], dmarc["disposition"]) == ("fail", "reject",
                                                                        "reject")
    assert dmarc["record"] == "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"
    verdict = last(world, "auth.verdict")
    assert (verdict["action"], verdict["helo"]) == ("reject", SPOOFER)
    assert verdict["reply"] == "550 5.7.1 Email rejected per DMARC policy for example.com"
    assert str(reject_reply("example.com")) == verdict["reply"]


def test_with_p_none_the_spoof_is_delivered_marked_dmarc_fail(net: Network,
                                                               world: World) -> None:
    world.domains["example.com"].dmarc = "v=DMARC1; p=none"  # edited live: next lookup sees it
    send_from(net, SPOOFER, ALICE, spoof(world))
    [message] = delivered(net)
    header, found = results(message)
    assert found == {"spf": "fail", "dkim": "none", "dmarc": "fail"}
    assert "dmarc=fail (p=none dis=none) header.from=example.com" in header
    assert net.mailbox(BOB, "Junk") == []
    assert last(world, "auth.verdict")["action"] == "inbox"


def test_with_p_quarantine_the_spoof_lands_in_junk() -> None:
    world = World.seed_world()
    world.domains["example.com"].dmarc = "v=DMARC1; p=quarantine"
    with world.start(storage="maildir") as net:  # a real Maildir++ folder on disk
        send_from(net, SPOOFER, ALICE, spoof(world))
        [message] = delivered(net, folder="Junk")
        assert net.mailbox(BOB) == []
        assert net.store.folders(BOB) == ["Junk"]
        assert results(message)[1]["dmarc"] == "fail"
        assert message["Subject"] == "Urgent: wire the money today"
        [stored] = world.trace.events("delivery.stored")
        assert stored["folder"] == "Junk"
        assert last(world, "auth.verdict")["action"] == "junk"
        # Alice's genuine mail still reaches the inbox
        submit_as_alice(net)
        [genuine] = delivered(net)
        assert results(genuine)[1]["dmarc"] == "pass"


def test_mallory_from_her_own_domain_passes_spf_and_cannot_forge_our_results(
        net: Network, world: World) -> None:
    forged = (b"Authentication-Results: mail.anotherdomain.org; spf=pass; dkim=pass; "
              b"dmarc=pass header.from=evil.example\r\n"
              + seed_message(world, sender=MALLORY, subject="Totally legit"))
    send_from(net, SPOOFER, MALLORY, forged)
    [message] = delivered(net)
    header, found = results(message)  # exactly one claims our name: ours
    assert found == {"spf": "pass", "dkim": "none", "dmarc": "none"}
    assert "smtp.mailfrom=evil.example" in header


def test_report_mode_delivers_and_off_mode_does_not_check(net: Network,
                                                          world: World) -> None:
    policy = world.host(MX).policy
    policy.mailauth = "report"
    send_from(net, SPOOFER, ALICE, spoof(world, "report"))
    [message] = delivered(net)
    assert results(message)[1]["dmarc"] == "fail"
    assert last(world, "auth.verdict")["action"] == "inbox"
    policy.mailauth = "off"
    send_from(net, SPOOFER, ALICE, spoof(world, "off"))
    unchecked = delivered(net, count=2)[1]
    assert unchecked["Subject"] == "off"
    assert unchecked.get_all("Authentication-Results") is None
    assert last(world, "auth.verdict")["action"] == "skipped"


# ------------------------------------------------------------------ forwarding


@pytest.fixture
def forwarding() -> Iterator[Network]:
    world = World.from_toml(seed_text() + FORWARD_WORLD, "forward.toml")
    with world.start(storage="memory") as net:
        yield net


def forward(net: Network, body_suffix: bytes = b"", subject: bytes | None = None) -> None:
    """Bob's old server passes Alice's message on as a .forward does: the bytes as
    stored, MAIL FROM kept, handed to its own MTA, which relays them to Bob's MX from
    its own address."""
    [key] = net.store.keys("bob@forward.example")
    data = net.store.get_bytes("bob@forward.example", key)
    if subject is not None:
        data = data.replace(b"Subject: Meeting Tomorrow", b"Subject: " + subject)
    fwd_ip = net.hosts[FORWARDER].ip
    net.world.host(FORWARDER).policy.relay_networks = [f"{fwd_ip}/32"]  # its own mail
    send_from(net, FORWARDER, ALICE, data + body_suffix, rcpt=BOB, to=FORWARDER)


def test_a_forwarder_breaks_spf_but_dkim_survives_and_dmarc_passes(
        forwarding: Network) -> None:
    net, world = forwarding, forwarding.world
    submit_as_alice(net, recipient="bob@forward.example")
    [at_forwarder] = delivered(net, "bob@forward.example")
    assert results(at_forwarder, FORWARDER)[1] == {"spf": "pass", "dkim": "pass",
                                                   "dmarc": "pass"}
    forward(net)
    assert last(world, "auth.verdict", FORWARDER)["action"] == "skipped"  # its own mail
    [message] = delivered(net)
    found = results(message)[1]
    assert found == {"spf": "fail", "dkim": "pass", "dmarc": "pass"}
    spf = last(world, "auth.spf")
    assert spf["client_ip"] == net.hosts[FORWARDER].ip
    dmarc = last(world, "auth.dmarc")
    assert "DKIM passed for d=example.com, aligned" in str(dmarc["explanation"])
    # the forwarder's own results travel along, untouched
    assert results(message, FORWARDER)[1]["dmarc"] == "pass"


@pytest.mark.parametrize(("tamper", "reason"), [
    ({"body_suffix": b"--\r\nSent via the forward.example list\r\n"}, "body hash mismatch"),
    ({"subject": b"Meeting Cancelled"}, "signature did not verify"),
])
def test_a_message_changed_in_transit_fails_dkim(forwarding: Network, tamper: dict[str, Any],
                                                  reason: str) -> None:
    net, world = forwarding, forwarding.world
    world.domains["example.com"].dmarc = "v=DMARC1; p=none"  # so that it is delivered
    submit_as_alice(net, recipient="bob@forward.example")
    delivered(net, "bob@forward.example")
    forward(net, **tamper)
    [message] = delivered(net)
    header, found = results(message)
    assert found == {"spf": "fail", "dkim": "fail", "dmarc": "fail"}
    assert f'dkim=fail reason="{reason}" header.d=example.com' in header
    assert last(world, "auth.dkim")["reason"] == reason


def test_with_p_reject_a_tampered_message_is_refused(forwarding: Network) -> None:
    net, world = forwarding, forwarding.world
    submit_as_alice(net, recipient="bob@forward.example")
    delivered(net, "bob@forward.example")
    forward(net, body_suffix=b"footer\r\n")
    # the forwarder's agent is refused by Bob's MX and bounces it to Alice
    assert net.wait(lambda: bool(world.trace.events("auth.verdict", host=MX)), 10)
    assert last(world, "auth.verdict")["action"] == "reject"
    assert last(world, "auth.dkim")["reason"] == "body hash mismatch"
    assert net.mailbox(BOB) == []


# --------------------------------------------------------------- signing details


def test_signing_time_is_the_world_clock_unless_ahead_of_real_time(world: World) -> None:
    epoch = int(world.epoch.timestamp())
    assert signing_time(world, now=epoch) == epoch
    assert signing_time(world, now=epoch - 36000) == epoch  # dkimpy's 10 h of leeway
    assert signing_time(world, now=epoch - 36001) is None


def test_a_world_clock_in_the_future_signs_without_t() -> None:
    text = seed_text().replace('epoch = "2025-03-10T09:00:00Z"',
                               'epoch = "2099-01-01T00:00:00Z"')
    world = World.from_toml(text, "future.toml")
    with world.start(storage="memory") as net:
        submit_as_alice(net)
        [message] = delivered(net)
    assert "t" not in parse_signature(str(message["DKIM-Signature"]))
    assert results(message)[1]["dkim"] == "pass"
    assert last(world, "auth.sign", SUBMISSION)["timestamp"] is None


def test_mail_from_a_domain_without_a_key_is_not_signed(net: Network, world: World) -> None:
    world.domains["example.com"].dkim_selector = None
    submit_as_alice(net)
    [message] = delivered(net)
    assert message["DKIM-Signature"] is None
    assert not world.trace.events("auth.sign")
    assert results(message)[1] == {"spf": "pass", "dkim": "none", "dmarc": "pass"}


# --------------------------------------------------------------- DNS in-process


def test_in_process_resolver_answers_like_a_real_one() -> None:
    key = "v=DKIM1; k=rsa; p=" + "A" * 400  # longer than one TXT string (255 octets)
    records = [Record("example.com", "TXT", '"v=spf1 mx -all"'),
               Record("example.com", "MX", "10 mail.example.com."),
               Record("mail.example.com", "A", "127.0.0.2"),
               Record("s._domainkey.example.com", "TXT",
                      " ".join(f'"{key[i:i + 255]}"' for i in range(0, len(key), 255)))]
    server = DNSServer(lambda: records, name="ns.test")
    lookups = dns_functions(InProcessResolver(server, ("127.0.0.3", 0)))
    assert lookups["dns_txt"]("example.com") == ["v=spf1 mx -all"]
    assert lookups["dns_txt"]("s._domainkey.example.com") == [key]  # strings joined
    assert lookups["dns_mx"]("example.com") == [(10, "mail.example.com")]
    assert lookups["dns_a"]("mail.example.com") == ["127.0.0.2"]
    assert lookups["dns_txt"]("mail.example.com") == []         # NODATA
    assert lookups["dns_txt"]("_dmarc.example.com") is None     # NXDOMAIN
    with pytest.raises(DNSTempError):
        lookups["dns_txt"]("example.net")                        # REFUSED: not our zone


def test_world_dns_sees_live_edits(net: Network, world: World) -> None:
    lookups = world_dns(net, MX)
    assert lookups["dns_txt"]("_dmarc.example.com") == [
        "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"]
    world.domains["example.com"].dmarc = "v=DMARC1; p=quarantine"
    assert lookups["dns_txt"]("_dmarc.example.com") == ["v=DMARC1; p=quarantine"]
    world.domains["example.com"].dmarc = None
    assert lookups["dns_txt"]("_dmarc.example.com") is None
    # the same record over a real socket, as dig would see it
    answer = net.resolver().resolve("mail._domainkey.example.com", "TXT")
    key = world.dkim_key("example.com")
    assert key is not None
    assert b"".join(answer[0].strings).decode() == key.txt_record()


def _in_process_queries(world: World) -> list[tuple[str, str]]:
    return [(e["qtype"], e["qname"]) for e in world.trace.events("dns.query")
            if e["transport"] == TRANSPORT]


def test_the_mx_keeps_its_answers_until_the_world_changes(net: Network, world: World) -> None:
    lookups = world_dns(net, MX)
    first = lookups["dns_txt"]("_dmarc.example.com")
    first.append("changed by a caller")  # callers get copies: the cache stays as it was
    again = world_dns(net, MX)["dns_txt"]("_dmarc.example.com")
    assert again == ["v=DMARC1; p=reject; rua=mailto:dmarc@example.com"]
    assert lookups["dns_txt"]("_DMARC.example.com.") == again  # names match as DNS does
    assert _in_process_queries(world) == [("TXT", "_dmarc.example.com.")]  # asked once
    world.domains["example.com"].dmarc = "v=DMARC1; p=none"  # an edit: asked again
    assert lookups["dns_txt"]("_dmarc.example.com") == ["v=DMARC1; p=none"]
    assert len(_in_process_queries(world)) == 2
    world.domains["example.com"].dmarc = None
    assert lookups["dns_txt"]("_dmarc.example.com") is None  # NXDOMAIN, kept as well
    assert lookups["dns_txt"]("_dmarc.example.com") is None
    assert len(_in_process_queries(world)) == 3


def test_the_mx_keeps_a_failure_for_now_and_raises_it_each_time(net: Network,
                                                                world: World) -> None:
    lookups = world_dns(net, MX)
    errors = []
    for _ in range(3):
        with pytest.raises(DNSTempError) as caught:
            lookups["dns_txt"]("outside.invalid")  # REFUSED: not one of the world's zones
        errors.append(caught.value)
    assert len({id(e) for e in errors}) == 3 and errors[0].args == errors[2].args
    assert _in_process_queries(world) == [("TXT", "outside.invalid.")]
    assert world_dns(net, SPOOFER)["dns_txt"]("example.com")  # each host its own cache
    assert _in_process_queries(world)[-1] == ("TXT", "example.com.")


def test_what_the_mx_computes_from_dns_is_kept_until_the_world_changes(
        net: Network, world: World) -> None:
    cache = answer_cache(net, MX)
    calls: list[int] = []

    def compute() -> int:
        calls.append(1)
        return len(calls)

    assert [cache.remember(("spf", "x"), compute) for _ in range(3)] == [1, 1, 1]
    assert cache.remember(("spf", "y"), compute) == 2  # another key
    world.domains["evil.example"].spf = "v=spf1 +all"  # an edit forgets everything
    assert cache.remember(("spf", "x"), compute) == 3


def test_query_ids_come_from_the_world_seed() -> None:
    ids = []
    for _ in range(2):
        world = World.seed_world()
        with world.start(storage="memory") as net:
            world_dns(net, MX)["dns_txt"]("example.com")
            ids.append([e["id"] for e in world.trace.events("dns.query")
                        if e["transport"] == TRANSPORT])
    assert ids[0] == ids[1] and len(ids[0]) == 1


def test_client_only_hosts_get_addresses_after_the_name_server(net: Network,
                                                               world: World) -> None:
    assert [net.hosts[n].ip for n in (SUBMISSION, MX, world.nameserver, SPOOFER)] == [
        "127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5"]
    assert net.name_of("127.0.0.5") == SPOOFER
    assert net.resolver().resolve(SPOOFER, "A")[0].address == "127.0.0.5"


def test_the_answer_cache_never_exceeds_its_size(net: Network, world: World) -> None:
    cache = answer_cache(net, MX)
    cache.max_entries = 8
    lookups = world_dns(net, MX)
    for i in range(40):  # mail from ever new domains: each a new question
        lookups["dns_txt"](f"d{i}.example.com")
        cache.remember(("spf", str(i)), lambda n=i: n)
        assert len(cache) <= 8
    asked = len(_in_process_queries(world))
    lookups["dns_txt"]("d39.example.com")  # the newest are still answered from the cache
    assert cache.remember(("spf", "39"), lambda: -1) == 39
    assert len(_in_process_queries(world)) == asked
    lookups["dns_txt"]("d0.example.com")  # the oldest were forgotten: asked again
    assert len(_in_process_queries(world)) == asked + 1
