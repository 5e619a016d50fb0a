"""The public net API on an instructor's world: defaults from the world, one virtual
timeline for every outbound agent, failover to a backup MX, live policy edits, and a
stopped world that says so."""

from __future__ import annotations

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World, cast
from simsmtp.world.loader import WorldFileError
from simsmtp.world.scenario import seed_message

ADA = "ada@university.edu"
ORDERS = "orders@shop.example"


def _submit(net: Network, sender: str, recipient: str) -> None:
    user = net.world.user(sender)
    assert user is not None and user.password is not None
    net.submit(seed_message(net.world, sender=sender, recipient=recipient),
               sender=sender, recipients=[recipient], user=sender, password=user.password)
    assert net.wait(net.idle)


def _stored(net: Network, recipient: str) -> list[object]:
    return [e for e in net.world.trace.events("delivery.stored")
            if e.get("recipient") == recipient]


def test_the_lab_casts_its_own_parts(lab: World) -> None:
    assert len(lab.hosts_with_role("outbound")) == 3
    assert cast.sending_host(lab) == "smtp.university.edu"
    assert cast.sender(lab) == ADA
    assert cast.recipient(lab, ADA) == ORDERS
    assert cast.receiving_host(lab) == "mail.shop.example"
    assert cast.client_host(lab) == "eve.attacker.example"
    assert cast.sender(lab, "mail.bank.example") == "alerts@bank.example"


def test_the_seed_casts_alice_bob_and_mallory() -> None:
    seed = World.seed_world()
    assert (cast.sending_host(seed), cast.sender(seed), cast.recipient(seed, cast.sender(seed)),
            cast.receiving_host(seed), cast.client_host(seed)) == (
        "mail.example.com", "alice@example.com", "bob@anotherdomain.org",
        "mail.anotherdomain.org", "mallory.evil.example")


def test_a_missing_part_names_the_argument_to_pass() -> None:
    world = World.from_toml('[domains."a.example"]\n[hosts."mx.a.example"]\n'
                            'domain = "a.example"\nroles = ["mx"]\n')
    with pytest.raises(cast.MissingPart, match=r"no host with the 'outbound' role: pass "
                                               r"sender=\.\.\."):
        cast.sending_host(world)
    with pytest.raises(cast.MissingPart, match=r"pass host=\.\.\."):
        cast.client_host(world)


@pytest.mark.parametrize("fixture", ["net", "seed_net"])
def test_greylisting_retry_runs_300_s_later_with_any_number_of_agents(
        fixture: str, request: pytest.FixtureRequest) -> None:
    net: Network = request.getfixturevalue(fixture)
    world = net.world
    sender = cast.sender(world)
    recipient = cast.recipient(world, sender)
    receiver = cast.receiving_host(world)
    if not any(rule.host == receiver for rule in world.faults):  # the lab's file has one
        world.faults.add(receiver, "RCPT", "450 4.7.1 Greylisted, try again later", times=1)
    _submit(net, sender, recipient)
    assert not _stored(net, recipient)  # the first try was greylisted
    start = world.clock.elapsed
    net.fast_forward(600)
    assert world.clock.elapsed == start + 600  # not 600 per outbound agent
    stored = _stored(net, recipient)
    assert len(stored) == 1
    assert stored[0].clock == start + 300  # the retry "in 300 s", on the virtual clock


def test_the_labs_own_greylisting_runs_at_0805(net: Network) -> None:
    _submit(net, ADA, ORDERS)  # the file greylists mail.shop.example's first RCPT once
    net.fast_forward(600)
    stored = _stored(net, ORDERS)
    assert [e.clock for e in stored] == [300.0]
    epoch = net.world.clock.epoch
    assert (epoch.hour, epoch.minute) == (8, 0)
    assert net.world.clock.datetime().strftime("%H:%M") == "08:10"


def test_failover_to_the_backup_mx(net: Network) -> None:
    net.take_down("mx1.university.edu")
    _submit(net, "alerts@bank.example", ADA)
    stored = _stored(net, ADA)
    assert [e.host for e in stored] == ["mx2.university.edu"]
    assert net.mailbox(ADA)


def test_session_defaults_come_from_the_world(net: Network) -> None:
    with net.session() as session:
        assert session.host_name == "mail.shop.example"
        assert session.local_name == "smtp.university.edu"
        assert session.source_ip == net.hosts["smtp.university.edu"].ip
        greeting = session.connect()
        assert greeting.code == 220 and "mail.shop.example" in str(greeting.reply)
        assert session.ehlo().sent == b"EHLO smtp.university.edu\r\n"


def test_attackers_default_to_the_worlds_path(net: Network) -> None:
    eve = net.eavesdropper()
    assert eve.names == ("smtp.university.edu", "mail.shop.example")
    mitm = net.strip_starttls()
    try:
        assert mitm.target == "mail.shop.example"
    finally:
        mitm.stop()


def test_a_stopped_world_says_so(lab: World) -> None:
    net = lab.start(storage="maildir")
    net.stop()
    with pytest.raises(RuntimeError, match="this world is stopped"):
        net.session()
    with pytest.raises(RuntimeError, match="this world is stopped"):
        net.strip_starttls()
    with pytest.raises(RuntimeError, match="this world is stopped"):
        net.deliver()


def _tls_of_last_delivery(net: Network, host: str) -> object:
    results = [e for e in net.world.trace.events("queue.result", host=host)]
    return results[-1].get("tls")


def test_outbound_tls_edited_live_reaches_the_agent(net: Network) -> None:
    agent = net.agents["mail.bank.example"]
    assert agent.tls_policy == "opportunistic"
    net.world.host("mail.bank.example").policy.outbound_tls = "none"
    assert agent.tls_policy == "none"
    since = len(net.world.trace)
    _submit(net, "alerts@bank.example", ADA)
    handshakes = [e for e in net.world.trace.since(since) if e.kind == "tls.handshake"
                  and e.host == "mx1.university.edu"]
    assert not handshakes  # delivered in plaintext: the edit reached the running agent
    assert _stored(net, ADA)


def test_a_bad_live_edit_is_refused_and_changes_nothing(net: Network) -> None:
    policy = net.world.host("mail.bank.example").policy
    with pytest.raises(WorldFileError, match="outbound_tls"):
        policy.outbound_tls = "always"
    assert policy.outbound_tls == "opportunistic"
    assert net.agents["mail.bank.example"].tls_policy == "opportunistic"


def test_server_policy_edits_reach_the_next_connection(net: Network) -> None:
    host = net.world.host("mail.shop.example")
    with net.session("mail.shop.example") as before:
        before.connect()
        assert "SIZE 52428800" in str(before.ehlo().reply)
    host.policy.size_limit = 5000
    with net.session("mail.shop.example") as after:
        after.connect()
        assert "SIZE 5000" in str(after.ehlo().reply)
    host.policy.idle_timeout = 42.0
    assert all(listener.idle_timeout == 42.0 for (owner, _), listener
               in net.servers.listeners.items() if owner == "mail.shop.example")


def test_a_new_policy_object_is_watched_too(net: Network) -> None:
    from simsmtp.world.model import Policy

    net.world.host("mail.bank.example").policy = Policy(outbound_tls="none")
    assert net.agents["mail.bank.example"].tls_policy == "none"
    with pytest.raises(WorldFileError):
        net.world.host("mail.bank.example").policy = Policy(outbound_tls="sometimes")
    assert net.world.host("mail.bank.example").policy.outbound_tls == "none"


def test_functions_on_a_world_without_the_part_they_need_say_which_argument() -> None:
    from simsmtp import ui

    world = World.from_toml(
        '[domains."a.example"]\nusers.ann = { password = "x" }\n'
        '[hosts."smtp.a.example"]\ndomain = "a.example"\nroles = ["submission"]\n')
    with world.start(storage="memory") as net:
        with pytest.raises(cast.MissingPart, match=r"pass host=\.\.\."):
            net.session()
        with pytest.raises(cast.MissingPart, match=r"pass between=\.\.\."):
            net.eavesdropper()
        with pytest.raises(cast.MissingPart, match=r"pass target=\.\.\."):
            net.strip_starttls()
        with pytest.raises(cast.MissingPart, match=r"pass domain=\.\.\."):
            ui.MXEditor(net)
        with pytest.raises(cast.MissingPart, match=r"pass sender=\.\.\."):
            ui.sender_route(net, "a.example")
        # named, the same functions work: a session to the submission port plays "localhost"
        with net.session("smtp.a.example", 587) as session:
            assert session.local_name == "localhost"
            assert session.connect().code == 220


def test_a_world_booted_again_serves_its_new_certificates(lab: World) -> None:
    net = lab.start(storage="memory")
    try:
        with net.session() as session:
            session.connect()
            session.ehlo()
            assert session.starttls().code == 220
        net.stop()
        net.start()
        with net.session() as session:  # verifies against the new CA
            session.connect()
            session.ehlo()
            assert session.starttls().code == 220 and session.ehlo().code == 250
    finally:
        net.stop()
