"""Notebook 8's helpers and the SPF/DMARC lab against a running world, without a browser:
values set and buttons clicked, then what the learner sees (the lab's HTML views), what the
world's DNS serves and what Bob's MX decided (its Authentication-Results, its 550, the
trace's auth.* events)."""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp.net.mailauth_scenarios import (
    MALLORY,
    SPOOFER,
    AuthOutcome,
    alice_sends,
    forward_message,
    mallory_sends,
)
from simsmtp.net.network import Network
from simsmtp.ui.exercises import exercise, exercises_for
from simsmtp.ui.mailauth import (
    MailAuthLab,
    alignment_table,
    auth_records,
    auth_story,
    body_hash,
    dmarc_record,
    outcome_html,
    outcome_panel,
    received_message,
    results_table,
    signature_table,
    signature_tags,
)
from simsmtp.world import Domain, Host, MXRecord, User, World
from simsmtp.world.mailauth import dns_functions, parse_signature, verify

MX = "mail.anotherdomain.org"
BOB = "bob@anotherdomain.org"
OLD_BOB = "bob@forward.example"
FORWARDER = "fwd.forward.example"
SEED_DMARC = "v=DMARC1; p=reject; rua=mailto:dmarc@example.com"



def with_forwarder(world: World) -> World:
    """Notebook 8's world: the seed plus Bob's old address at a forwarding domain."""
    world.domains["forward.example"] = Domain(
        "forward.example", mx=[MXRecord(10, FORWARDER)],
        users={"bob": User(OLD_BOB, "Bob (old address)")})
    world.hosts[FORWARDER] = Host(FORWARDER, "forward.example", roles=["mx"])
    world.check()
    return world


@pytest.fixture
def net() -> Iterator[Network]:
    world = with_forwarder(World.seed_world())
    with world.start(storage="memory") as running:
        yield running


def verdicts(net: Network, since: int = 0) -> list[dict[str, Any]]:
    return [e.data for e in net.world.trace.since(since) if e.kind == "auth.verdict"]


# ------------------------------------------------------------------- the lab, clicked


def test_the_lab_starts_from_the_worlds_records_and_sends_nothing(net: Network) -> None:
    lab = MailAuthLab(net)
    assert lab.spf.value == "v=spf1 mx -all"
    assert (lab.policy.value, lab.adkim.value, lab.aspf.value) == ("reject", "r", "r")
    assert lab.dkim_box.value is True
    assert lab.mallory_from.value == "alice@example.com"
    shown = lab.records_view.value        # asked from the world's DNS
    assert "v=spf1 mx -all" in shown and SEED_DMARC in shown
    assert "mail._domainkey.example.com" in shown and "1024-bit RSA" in shown
    assert "Not sent yet" in lab.alice_view.value and "Not sent yet" in lab.mallory_view.value
    assert not verdicts(net)
    assert lab._repr_mimebundle_()["text/plain"] == \
        "MailAuthLab(domain='example.com', spoofer='mallory.evil.example')"


def test_check_sends_both_alice_passes_and_mallory_is_refused(net: Network) -> None:
    lab = MailAuthLab(net)
    mark = len(net.world.trace)
    lab.check_button.click()
    assert lab.alice is not None and lab.mallory is not None
    assert (lab.alice.summary, lab.alice.action) == ("spf=pass dkim=pass dmarc=pass", "inbox")
    assert (lab.mallory.summary, lab.mallory.action) == ("spf=fail dkim=none dmarc=fail",
                                                         "reject")
    # really sent: two verdicts by Bob's MX, one per client, and Alice's message stored
    found = verdicts(net, mark)
    assert [(v["helo"], v["action"]) for v in found] == [("mail.example.com", "inbox"),
                                                         (SPOOFER, "reject")]
    assert [m["Subject"] for m in net.mailbox(BOB)] == ["Meeting Tomorrow"]
    # what the learner sees, side by side
    assert "Delivered to bob@anotherdomain.org&#x27;s inbox" in lab.alice_view.value
    assert "header.d=example.com header.s=mail" in lab.alice_view.value
    assert "550 5.7.1 Email rejected per DMARC policy for example.com" in \
        lab.mallory_view.value
    assert "computed, not stored" in lab.mallory_view.value
    assert f"the client {net.hosts[SPOOFER].ip} does not match mx" in lab.mallory_view.value
    assert "Check 1:" in lab.status.value
    assert lab.summary() == ("Alice: spf=pass dkim=pass dmarc=pass -> delivered to "
                             "bob@anotherdomain.org's inbox; Mallory: spf=fail dkim=none "
                             "dmarc=fail -> refused: not delivered")


def test_p_none_delivers_the_spoof_and_p_quarantine_puts_it_in_junk(net: Network) -> None:
    lab = MailAuthLab(net)
    lab.policy.value = "none"
    assert "v=DMARC1; p=none; rua=mailto:dmarc@example.com" in lab.preview.value
    lab.check_button.click()
    assert net.world.domains["example.com"].dmarc == \
        "v=DMARC1; p=none; rua=mailto:dmarc@example.com"
    assert "p=none" in net.dig("_dmarc.example.com", "TXT")    # the DNS serves it
    assert lab.mallory is not None and lab.mallory.action == "inbox"
    assert lab.mallory.results["dmarc"] == "fail"
    assert "dmarc=fail (p=none dis=none)" in lab.mallory.authentication_results
    assert lab.mallory.message is not None       # read back from Bob's inbox
    assert lab.mallory.message["Subject"] == "Urgent: please wire the money today"
    assert "Delivered to bob@anotherdomain.org&#x27;s inbox" in lab.mallory_view.value

    lab.policy.value = "quarantine"
    lab.check_button.click()
    assert lab.mallory.action == "junk"
    assert [m["Subject"] for m in net.mailbox(BOB, "Junk")] == [
        "Urgent: please wire the money today"]
    assert "Junk folder" in lab.mallory_view.value
    assert lab.alice is not None and lab.alice.action == "inbox"   # Alice is unaffected


def test_without_dkim_a_broken_spf_record_refuses_alices_own_mail(net: Network) -> None:
    lab = MailAuthLab(net)
    lab.dkim_box.value = False
    lab.spf.value = "v=spf1 -all"
    mark = len(net.world.trace)
    lab.check_button.click()
    assert net.world.domains["example.com"].dkim_selector is None
    assert "(none)" in lab.records_view.value and "its mail is not signed" in \
        lab.records_view.value
    assert lab.alice is not None
    assert (lab.alice.summary, lab.alice.action) == ("spf=fail dkim=none dmarc=fail",
                                                     "reject")
    assert lab.alice.reply == "550 5.7.1 Email rejected per DMARC policy for example.com"
    assert not [e for e in net.world.trace.since(mark) if e.kind == "auth.sign"]  # unsigned
    # mail.example.com bounced it to Alice
    bounce = net.mailbox("alice@example.com")[-1]
    assert bounce["Subject"] == "Undelivered Mail Returned to Sender"
    feedback = exercise("08.spf-only").check(net)
    assert not feedback.correct and "must be allowed by the SPF record" in feedback.message

    lab.spf.value = "v=spf1 a:mail.example.com -all"
    lab.check_button.click()
    assert (lab.alice.summary, lab.alice.action) == ("spf=pass dkim=none dmarc=pass",
                                                     "inbox")
    assert lab.mallory is not None and lab.mallory.action == "reject"
    assert exercise("08.spf-only").check(net).correct

    lab.spf.value = "v=spf1 ip4:127.0.0.0/8 -all"     # the whole loopback: Mallory too
    lab.check_button.click()
    assert lab.mallory.summary == "spf=pass dkim=none dmarc=pass"
    assert lab.mallory.action == "inbox"
    assert not exercise("08.spf-only").check(net).correct


def test_mallory_with_her_own_envelope_passes_spf_but_not_alignment(net: Network) -> None:
    lab = MailAuthLab(net)
    lab.mallory_from.value = MALLORY
    lab.check_button.click()
    assert lab.mallory is not None
    assert lab.mallory.summary == "spf=pass dkim=none dmarc=fail"
    assert lab.mallory.action == "reject"
    assert "smtp.mailfrom=evil.example" in lab.mallory.authentication_results
    assert "which is not aligned with example.com" in lab.mallory_view.value
    assert exercise("08.alignment").check("b").correct


def test_strict_alignment_no_dmarc_record_and_reset(net: Network) -> None:
    lab = MailAuthLab(net)
    lab.adkim.value = "s"
    lab.aspf.value = "s"
    lab.check_button.click()
    assert net.world.domains["example.com"].dmarc == \
        "v=DMARC1; p=reject; adkim=s; aspf=s; rua=mailto:dmarc@example.com"
    assert lab.alice is not None and lab.alice.results["dmarc"] == "pass"  # d= is From:
    lab.policy.value = ""                        # publish no DMARC record
    assert lab.adkim.disabled and lab.aspf.disabled
    lab.check_button.click()
    assert net.world.domains["example.com"].dmarc is None
    assert lab.mallory is not None
    assert (lab.mallory.results["dmarc"], lab.mallory.action) == ("none", "inbox")
    assert "no DMARC policy" in lab.records_view.value
    lab.reset_button.click()
    domain = net.world.domains["example.com"]
    assert (domain.spf, domain.dmarc, domain.dkim_selector) == ("v=spf1 mx -all", SEED_DMARC,
                                                                 "mail")
    assert (lab.policy.value, lab.adkim.value, lab.spf.value) == ("reject", "r",
                                                                  "v=spf1 mx -all")
    assert SEED_DMARC in lab.records_view.value


def test_softfail_answer_is_what_the_world_says(net: Network) -> None:
    net.world.domains["example.com"].spf = "v=spf1 mx ~all"
    spoof = mallory_sends(net)
    assert spoof.results["spf"] == "softfail"
    assert exercise("08.softfail").check("softfail").correct
    wrong = exercise("08.softfail").check("fail")
    assert not wrong.correct and "qualifier" in wrong.message


# ------------------------------------------------------------ the notebook's helpers


def test_records_signature_body_hash_and_results_of_alices_mail(net: Network) -> None:
    records = auth_records(net)
    assert records.plain.splitlines()[2].split() == ["SPF", "example.com", "v=spf1", "mx",
                                                     "-all"]
    assert "another TXT record: SPF reads only the one starting with v=spf1" in records.plain
    alice = alice_sends(net)
    assert alice.message is not None
    tags = dict((t, v) for t, v, _ in signature_tags(alice.message))
    assert list(tags) == ["v", "a", "c", "d", "i", "q", "s", "t", "h", "bh", "b"]
    assert tags["h"] == "from:to:subject:date:message-id"
    assert body_hash(alice.message) == tags["bh"]             # bh is the body's hash
    assert body_hash(alice.message.as_bytes().replace(b"10 AM", b"11 AM")) != tags["bh"]
    table = signature_table(alice.message)
    assert "2025-03-10 09:00:00 UTC" in table.html
    assert "the key is published at mail._domainkey.example.com" in table.html
    read = results_table(alice.message, MX)
    assert "Authentication-Results by mail.anotherdomain.org (ours" in read.plain
    assert re.search(r"dmarc\s+pass\s+\(p=reject dis=none\) header.from=example.com",
                     read.plain)
    assert "the envelope sender" in read.html
    story = auth_story(net.world, since=alice.since)
    assert [line.split(": ")[0] for line in story.plain.splitlines() if line[0].isdigit()] \
        == ["1. mail.example.com DKIM sign", f"2. {MX} SPF", f"3. {MX} DKIM",
            f"4. {MX} DMARC", f"5. {MX} verdict"]
    # the bytes as received verify; one changed byte in the body does not
    wire = received_message(net.world, MX)
    lookups = dns_functions(net.resolver())
    assert verify(wire, lookups["dns_txt"]).result == "pass"
    broken = verify(wire.replace(b"10 AM", b"11 AM"), lookups["dns_txt"])
    assert (broken.result, broken.reason) == ("fail", "body hash mismatch")


def test_forwarding_breaks_spf_dkim_survives_and_a_footer_breaks_dkim(net: Network) -> None:
    first = alice_sends(net, recipient=OLD_BOB)
    assert (first.receiver, first.summary) == (FORWARDER, "spf=pass dkim=pass dmarc=pass")
    hop = forward_message(net, OLD_BOB, BOB)
    assert (hop.receiver, hop.client_ip) == (MX, net.hosts[FORWARDER].ip)
    assert (hop.summary, hop.action) == ("spf=fail dkim=pass dmarc=pass", "inbox")
    assert hop.message is not None
    both = results_table(hop.message, MX).plain
    assert "by fwd.forward.example (added by fwd.forward.example on the way" in both
    assert exercise("08.forwarded").check("DKIM").correct
    assert not exercise("08.forwarded").check("spf").correct
    listed = forward_message(net, OLD_BOB, BOB, footer="--\r\nSent via the list\r\n")
    assert (listed.summary, listed.action) == ("spf=fail dkim=fail dmarc=fail", "reject")
    assert 'reason="body hash mismatch"' in listed.authentication_results


def test_pure_helpers() -> None:
    assert dmarc_record("quarantine", "r", "s", SEED_DMARC) == \
        "v=DMARC1; p=quarantine; aspf=s; rua=mailto:dmarc@example.com"
    assert dmarc_record("", "s", "s", SEED_DMARC) is None
    table = alignment_table("example.com", ["mail.example.com", "evil.example"])
    assert [line.split()[2:] for line in table.plain.splitlines()[2:]] == [["yes", "no"],
                                                                         ["no", "no"]]
    tags = parse_signature("v=1; a=rsa-sha256; d=example.com; s=mail; t=0; h=from; bh=x; b=y")
    assert tags["d"] == "example.com"
    assert [t for t, _, _ in signature_tags(
        "v=1; a=rsa-sha256; d=example.com; s=mail; t=0; h=from; bh=x; b=y")][-1] == "b"


def test_notebook_eight_has_four_exercises() -> None:
    assert [e.key for e in exercises_for("08")] == ["08.softfail", "08.alignment",
                                                    "08.forwarded", "08.spf-only"]
    feedback = exercise("08.spf-only").check(None)
    assert not feedback.answered
    bad = exercise("08.spf-only").check("v=spf1 mx -all")
    assert not bad.correct and "give it the running network, check(net)" in bad.message


class _Formatter:
    def __init__(self) -> None:
        self.types: dict[type, Any] = {}

    def for_type(self, kind: type, function: Any) -> None:
        self.types[kind] = function


def test_an_outcome_is_plain_data_that_ui_draws_and_registers_with_ipython(
        monkeypatch: pytest.MonkeyPatch) -> None:
    outcome = AuthOutcome("Mallory's spoof", SPOOFER, "127.0.0.5", "alice@example.com",
                          "Alice <alice@example.com>", BOB, MX, "reject",
                          "550 5.7.1 DMARC", {"spf": "fail", "dkim": "none",
                                              "dmarc": "fail"},
                          f"{MX}; spf=fail smtp.mailfrom=example.com", "p=reject",
                          ("SPF: the client does not match mx",), 0)
    assert not hasattr(outcome, "_repr_html_")          # net/ knows no screen
    assert "refused: not delivered" in repr(outcome)
    html = outcome_html(outcome)
    assert "550 5.7.1 DMARC" in html and "(computed, not stored: refused)" in html
    assert "<li>SPF: the client does not match mx</li>" in html
    drawn = outcome_panel(outcome)
    assert html in drawn and "s spoof" in drawn
    formatter = _Formatter()
    shell = types.SimpleNamespace(display_formatter=types.SimpleNamespace(
        formatters={"text/html": formatter}))
    monkeypatch.setitem(sys.modules, "IPython",
                        types.SimpleNamespace(get_ipython=lambda: shell))
    import simsmtp.ui.mailauth as module

    module._show_outcomes_as_html()
    assert formatter.types == {AuthOutcome: outcome_panel}

