"""The journey: trace events in, lanes and arrows out."""

from __future__ import annotations

from simsmtp.trace import Trace
from simsmtp.ui.journey import DNS_LANE, journey, journey_text, mask
from simsmtp.world import World

from .conftest import play_journey


def test_the_seed_journey_has_the_five_lanes_in_order(journey_world: World) -> None:
    j = journey(journey_world)
    assert [j.label(lane) for lane in j.lanes] == [
        "Alice's MUA", "mail.example.com", DNS_LANE, "mail.anotherdomain.org", "Bob's MUA"]


def test_sections_come_in_the_order_of_the_journey(journey_world: World) -> None:
    sections = [a.label for a in journey(journey_world).arrows if a.kind == "section"]
    assert sections == [
        "Alice's MUA submits a message to mail.example.com (port 587)",
        "mail.example.com asks the DNS",
        "mail.example.com relays a message to mail.anotherdomain.org (port 25)",
        "Bob's MUA fetches mail from mail.anotherdomain.org (POP3, port 110)",
    ]


def test_arrows_say_who_said_what(journey_world: World) -> None:
    arrows = journey(journey_world).arrows
    labels = [(a.source, a.target, a.label) for a in arrows if a.kind != "section"]
    alice = "mua:alice@example.com"
    assert labels[0] == (alice, "mail.example.com", "connect to port 587")
    assert labels[1] == ("mail.example.com", alice, "220 mail.example.com ESMTP Postfix")
    assert ("mail.example.com", DNS_LANE, "MX? anotherdomain.org") in labels
    assert (DNS_LANE, "mail.example.com", "MX 10 mail.anotherdomain.org") in labels
    assert ("mail.example.com", "mail.anotherdomain.org", "RCPT TO:<bob@anotherdomain.org>") \
        in labels
    assert ("mua:bob@anotherdomain.org", "mail.anotherdomain.org", "PASS ***") in labels


def test_secrets_never_show(journey_world: World) -> None:
    text = journey_text(journey_world)
    assert "AUTH PLAIN ***" in text
    assert "wonderland" not in text and "builder" not in text
    assert mask("AUTH PLAIN AGFsaWNlAHdvbmRlcmxhbmQ=") == "AUTH PLAIN ***"
    assert mask("auth login dXNlcg==") == "auth login ***"
    assert mask("PASS builder") == "PASS ***"
    assert mask("AUTH PLAIN") == "AUTH PLAIN"


def test_tls_marks_what_went_inside_tls(journey_world: World) -> None:
    arrows = [a for a in journey(journey_world).arrows if a.phase == "relay"]
    before = [a.label for a in arrows if not a.tls]
    inside = [a.label for a in arrows if a.tls and a.kind != "tls"]
    assert "STARTTLS" in before and "EHLO mail.example.com" in before
    assert any(label.startswith("MAIL FROM:<alice@example.com>") for label in inside)
    assert not any(label.startswith("MAIL FROM") for label in before)
    assert [a.kind for a in arrows].count("tls") == 1


def test_the_stored_note_follows_the_message_it_stores(journey_world: World) -> None:
    kinds = [(a.kind, a.label) for a in journey(journey_world).arrows if a.phase == "relay"]
    content = next(i for i, (k, _) in enumerate(kinds) if k == "content")
    assert kinds[content + 1] == ("note", "stored in bob@anotherdomain.org's mailbox")
    assert kinds[content + 2][1].startswith("250 2.0.0 Ok: queued as")


def test_the_same_world_gives_the_same_journey_every_run() -> None:
    texts = []
    for _ in range(2):
        world = World.seed_world()
        play_journey(world)
        texts.append(journey_text(world))
    assert texts[0] == texts[1]


def test_summary_has_one_arrow_each_way_per_conversation(journey_world: World) -> None:
    j = journey(journey_world, detail="summary")
    relay = [a for a in j.arrows if a.phase == "relay" and a.kind != "section"]
    # the commands in clear, then those inside TLS (after STARTTLS), then the outcome
    assert [(a.kind, a.tls) for a in relay] == [("command", False), ("command", True),
                                                ("reply", True)]
    assert relay[0].label == "EHLO STARTTLS"
    assert relay[1].label == "EHLO MAIL RCPT DATA <message> QUIT"
    assert relay[2].label.startswith("250 2.0.0 Ok: queued as")
    pop3 = [a for a in j.arrows if a.phase == "pop3" and a.kind == "reply"]
    assert pop3[0].label.endswith("octets")   # the RETR reply, not QUIT's goodbye


def test_phases_and_since_select_part_of_the_trace(journey_world: World) -> None:
    only_dns = journey(journey_world, phases=["dns"])
    assert {a.phase for a in only_dns.arrows} == {"dns"}
    assert only_dns.lanes == ["mail.example.com", DNS_LANE]
    start = next(e.seq for e in journey_world.trace.events("pop3.reply"))
    late = journey(journey_world, since=start)
    assert {a.phase for a in late.arrows} == {"pop3"}


def test_agent_notes_from_synthetic_events() -> None:
    t = Trace()
    t.record("world.started", hosts={"mx1.example.org": "127.0.0.5"})
    t.record("delivery.connect_failed", "mail.example.com", mx="mx1.example.org",
             ip="127.0.0.5", port=40000, reason="refused")
    t.record("delivery.deferred", "mail.example.com", recipient="bob@example.org",
             status="4.7.1", retry_in=300.0)
    t.record("dns.lookup", "mail.example.com", qname="nowhere.example", qtype="MX",
             status="nxdomain", records=[], error="NXDOMAIN")
    arrows = [a for a in journey(t).arrows if a.kind != "section"]
    assert (arrows[0].kind, arrows[0].target, arrows[0].error) == ("failed", "mx1.example.org",
                                                                   True)
    assert "40000" not in arrows[0].label          # ephemeral ports never show
    assert arrows[1].label == "deferred bob@example.org (4.7.1): retry in 5 min"
    assert arrows[3].label == "NXDOMAIN: no such domain" and arrows[3].error


def test_clock_changes_become_sections() -> None:
    world = World.seed_world()
    t = world.trace
    t.record("dns.lookup", "mail.example.com", qname="a.example", qtype="MX", status="ok",
             records=["10 mx.a.example"], error="")
    world.clock.advance(300)
    t.record("dns.lookup", "mail.example.com", qname="a.example", qtype="MX", status="ok",
             records=["10 mx.a.example"], error="")
    sections = [a.label for a in journey(world).arrows if a.kind == "section"]
    assert "virtual clock 09:05:00 (5 min later)" in sections


def test_a_session_that_recovers_from_a_refusal_is_no_failure() -> None:
    from simsmtp.ui.journey import journey_text

    world = World.seed_world()
    with world.start(storage="memory") as net:
        mua = net.session("mail.example.com", 587, local_name="alice-laptop")
        mua.connect()
        mua.ehlo()
        mua.mail("alice@example.com")          # 530: STARTTLS first
        mua.starttls()
        mua.ehlo()
        mua.auth("alice@example.com", "wonderland")
        mua.mail("alice@example.com")
        mua.rset()
        mua.quit()
        smtps = net.session("mail.example.com", 465, local_name="alice-laptop")
        smtps.connect()
        smtps.ehlo()
        smtps.quit()
    text = journey_text(world, detail="summary")
    lines = [line for line in text.splitlines() if "port 587" not in line]
    sub = [line for line in lines if "Alice's MUA" in line or "alice-laptop" in line]
    assert any(line.endswith("EHLO MAIL STARTTLS") and "[TLS]" not in line for line in sub)
    assert any("[TLS] EHLO AUTH MAIL RSET QUIT" in line for line in sub)
    outcome = next(line for line in sub if "250 2.0.0 Ok" in line)
    assert "(after 1 refused: 530)" in outcome and "✗" not in outcome
    assert "alice-laptop (a mail program) → mail.example.com" in text  # port 465
    assert "a client (127.0.0.1)" not in text
