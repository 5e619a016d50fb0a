"""The public ui API on an instructor's world (examples/lab_world.toml): every widget and
function the course uses, called without the seed's names, with its buttons clicked. The
defaults come from the lab (its first outbound host, its attacker, its users), and the
lessons come out as on the seed: a spoof of the lab's own domain is refused under
p=reject, greylisting retries 300 s later, the backup MX takes over."""

from __future__ import annotations

from html import unescape

import pytest

from simsmtp import ui
from simsmtp.net.network import Network
from simsmtp.world import World, cast
from simsmtp.world.scenario import seed_message

ADA = "ada@university.edu"
ORDERS = "orders@shop.example"
ALERTS = "alerts@bank.example"
EVE_HOST = "eve.attacker.example"



def _no_greylisting(net: Network) -> None:
    """The lab greylists mail.shop.example once; tests that are not about it skip that."""
    net.world.faults.clear()


# ------------------------------------------------------------------- email authentication

def test_the_lab_refuses_a_spoof_of_the_bank(net: Network) -> None:
    lab = ui.MailAuthLab(net, "bank.example")
    assert (lab.sender, lab.recipient, lab.spoofer) == (ALERTS, ADA, EVE_HOST)
    lab.check_button.click()
    assert lab.alice is not None and lab.mallory is not None
    real, spoof = lab.alice, lab.mallory
    assert real.label == "Bank Alerts' real mail"
    assert (real.action, real.results["dkim"], real.results["dmarc"]) == ("inbox", "pass",
                                                                          "pass")
    # the spoof forges the lab's own domain and sender, not the seed's Alice
    assert spoof.from_header == "Bank Alerts <alerts@bank.example>"
    assert spoof.mail_from == ALERTS and spoof.sender_host == EVE_HOST
    assert spoof.client_ip == net.hosts[EVE_HOST].ip
    assert spoof.label == "Eve's spoof"
    assert (spoof.results["spf"], spoof.results["dmarc"], spoof.action) == ("fail", "fail",
                                                                            "reject")
    assert spoof.reply.startswith("550")
    assert "Eve's spoof (from eve.attacker.example)" in unescape(lab.mallory_view.value)
    assert "Bank Alerts' real mail" in unescape(lab.alice_view.value)
    assert "example.com" not in lab.text() and "Alice" not in lab.summary()
    # Eve's own domain as envelope sender: SPF passes for it, DMARC still fails
    lab.mallory_from.value = "eve@attacker.example"
    lab.check_button.click()
    assert lab.mallory.results["spf"] == "pass" and lab.mallory.action == "reject"
    lab.policy.value = "none"
    lab.check_button.click()
    assert lab.mallory.action == "inbox"  # p=none only watches
    lab.reset_button.click()
    assert net.world.domain("bank.example").dmarc == "v=DMARC1; p=reject"


def test_the_lab_widget_defaults_come_from_the_world(net: Network) -> None:
    lab = ui.MailAuthLab(net)
    assert (lab.domain.name, lab.sender, lab.recipient, lab.spoofer) == (
        "university.edu", ADA, ORDERS, EVE_HOST)
    assert "a:smtp.university.edu -all" in " ".join(lab.spf.options)
    assert [v for _, v in lab.mallory_from.options] == [ADA, "eve@attacker.example"]
    assert lab.mallory_from.description == "Eve's MAIL FROM"


def test_functions_without_names_use_the_labs_parts(net: Network) -> None:
    _no_greylisting(net)
    real = ui.alice_sends(net)
    assert (real.mail_from, real.recipient, real.receiver) == (ADA, ORDERS,
                                                               "mail.shop.example")
    assert real.label == "Ada's real mail" and real.action == "inbox"
    stored = real.message
    assert stored is not None and "Hi Shop Orders," in stored.get_content()
    assert "Ada" in stored.get_content() and "Alice" not in stored.get_content()
    spoof = ui.mallory_sends(net)
    assert spoof.sender_host == EVE_HOST and spoof.from_header == "Ada <ada@university.edu>"
    assert spoof.results["spf"] == "fail"
    received = ui.received_message(net.world)
    assert b"From: Ada <ada@university.edu>" in received
    assert ui.received_message(net.world, "mail.shop.example") == received
    generic = ui.user_sends(net, ALERTS)
    assert generic.recipient == ADA and generic.results["dkim"] == "pass"
    forged = ui.spoof_sends(net, ALERTS, EVE_HOST)
    assert forged.action == "reject" and forged.recipient == ADA


def test_auth_records_default_to_the_senders_domain(net: Network) -> None:
    assert "university.edu" in ui.auth_records(net).plain
    bank = ui.auth_records(net, "bank.example").plain
    assert "v=DMARC1; p=reject" in bank and "s2025._domainkey.bank.example" in bank


def test_a_spoof_needs_a_world_host(net: Network, lab: World) -> None:
    with pytest.raises(KeyError, match=r"no host 'mallory\.evil\.example'"):
        ui.mallory_sends(net, host="mallory.evil.example")


def test_a_world_without_an_attacker_asks_for_one() -> None:
    from tests.instructor.conftest import LAB

    world = World.load(LAB)
    del world.hosts[EVE_HOST]
    with world.start(storage="memory") as net:
        with pytest.raises(cast.MissingPart, match=r"pass host=\.\.\."):
            ui.mallory_sends(net)
        with pytest.raises(cast.MissingPart, match=r"pass spoofer=\.\.\."):
            ui.MailAuthLab(net, "bank.example")


# ------------------------------------------------------------------------- MX and routes

def test_the_mx_editor_works_on_the_lab(net: Network) -> None:
    editor = ui.MXEditor(net)
    assert editor.domain.name == "shop.example" and editor.sender == "smtp.university.edu"
    university = ui.MXEditor(net, "university.edu")
    # smtp.university.edu stores the university's mail itself: the route of a sender
    # that looks up the MX records is shown
    assert university.sender == "mail.shop.example" and university.plan is not None
    assert university.plan.order == ["mx1.university.edu", "mx2.university.edu"]
    university.add_button.click()
    # a backup of the university's own, never another domain's host (mail.shop.example)
    assert university.records[-1].exchange == "backup.university.edu"
    university.reset_button.click()
    assert [r.exchange for r in university.records] == ["mx1.university.edu",
                                                         "mx2.university.edu"]
    university.rows[0].preference.value = 30  # the backup now comes first
    assert university.plan.order == ["mx2.university.edu", "mx1.university.edu"]


def test_sender_route_knows_a_host_that_stores_the_mail_itself(net: Network) -> None:
    plan = ui.sender_route(net, "bank.example", sender="mail.bank.example")
    assert plan.local and plan.order == []
    assert "5.4.6" not in plan.text() and "loop" not in plan.route.status
    assert "stores" in plan.html()
    # and it is what happens: the bank's own mail is stored at once
    _no_greylisting(net)
    net.submit(seed_message(net.world, sender=ALERTS, recipient=ALERTS), sender=ALERTS,
               recipients=[ALERTS], user=ALERTS, password="vault")
    assert net.wait(net.idle)
    assert net.mailbox(ALERTS)
    away = ui.sender_route(net, "university.edu", sender="mail.bank.example")
    assert not away.local and away.order[0] == "mx1.university.edu"


def test_failover_to_the_backup_mx_shows_in_the_route_and_the_trace(net: Network) -> None:
    net.take_down("mx1.university.edu")
    outcome = ui.user_sends(net, ALERTS, ADA)
    assert outcome.receiver == "mx2.university.edu" and outcome.action == "inbox"


# ------------------------------------------------------------------ SMTP by hand

def test_the_console_connects_to_the_labs_mx_with_its_names(net: Network) -> None:
    console = ui.Console(net)
    assert (console.host, console.local_name) == ("mail.shop.example", "smtp.university.edu")
    console.connect_button.click()
    assert console.connected and "220 mail.shop.example" in console.transcript.value
    by_label = {b.description: b for b in console.quick_buttons}
    by_label["MAIL FROM"].click()
    assert console.input.value == "MAIL FROM:<ada@university.edu>"
    by_label["RCPT TO"].click()
    assert console.input.value == "RCPT TO:<orders@shop.example>"
    by_label["EHLO"].click()
    assert console.input.value == "EHLO smtp.university.edu"
    console.send_button.click()
    assert "250" in console.transcript.value


def test_seed_dialogue_and_the_stepper_on_the_lab(net: Network) -> None:
    _no_greylisting(net)
    world = net.world
    with net.session() as session:
        steps = ui.seed_dialogue(session, seed_message(world))
    assert [s.code for s in steps] == [220, 250, 250, 250, 354, 250, 221]
    assert steps[2].sent == b"MAIL FROM:<ada@university.edu>\r\n"
    assert steps[3].sent == b"RCPT TO:<orders@shop.example>\r\n"
    stepper = ui.Stepper(steps)
    stepper.next_button.click()
    stepper.back_button.click()
    live = ui.Stepper(net.session("mx1.university.edu"),
                      script=ui.seed_script(seed_message(world, recipient=ADA),
                                            sender=ALERTS, recipients=ADA))
    for _ in range(7):
        live.next_button.click()
    assert net.mailbox(ADA)
    # a live script without names takes them from the session's world when it runs
    default = ui.Stepper(net.session(), script=ui.seed_script(seed_message(world)))
    for _ in range(7):
        default.next_button.click()
    sent = [step.sent for step in default.steps]
    assert b"MAIL FROM:<ada@university.edu>\r\n" in sent
    assert b"RCPT TO:<orders@shop.example>\r\n" in sent
    assert net.mailbox(ORDERS)


# ------------------------------------------------------------------ TLS, wire, trace

def test_tls_wire_and_trace_widgets_on_the_lab(net: Network) -> None:
    _no_greylisting(net)
    chain = ui.certificate_chain(net)
    assert "The certificate chain of mail.shop.example" in chain.plain
    with pytest.raises(ValueError, match="serves no port"):
        ui.certificate_chain(net, EVE_HOST)
    with pytest.raises(KeyError, match=r"no host 'mail\.anotherdomain\.org'"):
        ui.certificate_chain(net, "mail.anotherdomain.org")
    eve = net.eavesdropper()
    ui.alice_sends(net)
    ui.wait_closed(net)
    assert eve.report()
    assert ui.WireView(net).widget is not None
    assert ui.TLSInspector(net).widget is not None
    table = ui.TraceTable(net.world)
    table.refresh_button.click()
    assert ui.sequence_diagram(net.world) is not None
    assert "smtp.university.edu" in ui.journey_text(net.world)
    assert "mail.shop.example" in ui.ports_table(net).plain


def test_greylisting_retry_at_0805_in_the_timeline(net: Network) -> None:
    net.submit(seed_message(net.world), sender=ADA, recipients=[ORDERS], user=ADA,
               password="analytical")
    assert net.wait(net.idle)
    net.fast_forward(600)
    points = [(p.clock, p.kind) for p in ui.retry_points(net.world)]
    assert points == [(0.0, "attempt"), (0.0, "deferred"), (300.0, "attempt"),
                      (300.0, "delivered")]
    text = ui.retry_text(net.world)
    rows = [line.split() for line in text.splitlines()]
    assert rows[3][:5] == ["08:00:00", ORDERS, "deferred", "300", "s"], text  # next try
    assert rows[5][:3] == ["08:05:00", ORDERS, "delivered"], text
    assert net.world.clock.datetime().strftime("%H:%M") == "08:10"


# ------------------------------------------------------------------------- exercises

def test_an_instructors_exercise_can_be_registered_again() -> None:
    first = ui.register(ui.Exercise("lab.first", "First", "How many MX?",
                                    lambda a: (a == 2, "two")))
    again = ui.register(ui.Exercise("lab.first", "First (edited)", "How many MX hosts?",
                                    lambda a: (a == 2, "two")))
    assert ui.exercise("lab.first") is again is not first
    assert ui.exercise("lab.first").check(2).correct
    with pytest.raises(ValueError, match="one of the course's exercises"):
        ui.register(ui.Exercise("01.prefer-backup", "mine", "?", lambda a: (True, "")))
