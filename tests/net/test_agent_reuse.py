"""Connection reuse in the delivery agent: many messages for one domain, one SMTP session.

RFC 5321 §4.1.4 allows many transactions per session; the agent sends the next MAIL FROM
after a message's final reply, without a new EHLO or STARTTLS (Postfix's connection cache).
Scripted fake servers from :mod:`tests.net.test_agent`; no network.
"""

from __future__ import annotations

from pathlib import Path

from simsmtp.net.agent import MAX_MESSAGES_PER_SESSION, DeliveryAgent
from simsmtp.net.queue import RecipientStatus
from tests.net.test_agent import MESSAGE, FakeNet, FakeServer

DOMAIN = "anotherdomain.org"
STARTTLS_EXTS = ("PIPELINING", "SIZE 52428800", "8BITMIME", "DSN", "STARTTLS")


def _one_mx(net: FakeNet, **behaviour: object) -> FakeServer:
    net.mx[DOMAIN] = [(10, f"mx1.{DOMAIN}"), (20, f"mx2.{DOMAIN}")]
    net.add_server(f"mx2.{DOMAIN}", "127.0.0.12")
    return net.add_server(f"mx1.{DOMAIN}", "127.0.0.11", **behaviour)


def _submit(net: FakeNet, n: int) -> list[tuple[str, str]]:
    """Queue n one-recipient messages; returns (queue id, recipient) in the run's order."""
    sent = {net.submit([f"user{i}@{DOMAIN}"]): f"user{i}@{DOMAIN}" for i in range(n)}
    return [(m.queue_id, sent[m.queue_id]) for m in net.queue.due(net.clock.now())]


def test_messages_for_one_domain_share_one_session(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1 = _one_mx(net, extensions=STARTTLS_EXTS)
    sent = _submit(net, 5)
    report = net.run()
    assert sorted(report.delivered) == sorted(sent)
    assert len(net.connects) == 1
    (session,) = mx1.sessions
    assert session.count("EHLO mail.example.com") == 2  # before and after STARTTLS only
    assert session.count("STARTTLS") == 1
    assert [c for c in session if c.startswith("MAIL FROM")] == [
        f"MAIL FROM:<alice@example.com> SIZE={len(MESSAGE)}"] * 5
    assert session[-1] == "QUIT" and session.count("QUIT") == 1
    assert [rcpts for _, rcpts, _ in mx1.messages] == [[r] for _, r in sent]
    assert sorted(report.removed) == sorted(q for q, _ in sent)
    assert len(net.queue) == 0


def test_the_trace_says_which_session_carried_which_message(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    _one_mx(net)
    sent = _submit(net, 3)
    net.run()
    attempts = net.trace.events("delivery.attempt")
    assert [e["queue_id"] for e in attempts] == [q for q, _ in sent]
    assert len({e["session"] for e in attempts}) == 1
    assert [e.get("reused", False) for e in attempts] == [False, True, True]
    assert [e.get("transaction") for e in attempts[1:]] == [2, 3]
    oks = net.trace.events("delivery.ok")
    assert [e["queue_id"] for e in oks] == [q for q, _ in sent]


def test_a_451_in_the_middle_defers_only_that_message(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    sent = _submit(net, 4)
    mx1 = _one_mx(net, rcpt=lambda a: ("451 4.7.1 Try again later"
                                        if a == sent[1][1] else "250 2.1.5 Ok"))
    mx2 = net.servers["127.0.0.12"]
    mx2.rcpt = mx1.rcpt
    report = net.run()
    deferred_qid, deferred_rcpt = sent[1]
    assert report.deferred == [(deferred_qid, deferred_rcpt)]
    assert sorted(report.delivered) == sorted(p for p in sent if p != sent[1])
    assert report.bounced == [] and net.bounces == []
    assert net.status(deferred_qid, deferred_rcpt) is RecipientStatus.DEFERRED
    assert len(net.queue) == 1
    # each message is delivered exactly once
    delivered = [r for s in (mx1, mx2) for _, rcpts, _ in s.messages for r in rcpts]
    assert sorted(delivered) == sorted(r for _, r in sent if r != deferred_rcpt)
    stopped = net.trace.events("delivery.reuse_stopped")
    assert [e["queue_id"] for e in stopped] == [deferred_qid]
    assert "451 4.7.1" in stopped[0]["reason"]
    # the first session carried messages 1 and 2; the rest went one session per message
    # (the failed one tried mx1 then mx2, as without reuse)
    first = mx1.sessions[0]
    assert [c for c in first if c.startswith("RCPT")] == [
        f"RCPT TO:<{sent[0][1]}>", f"RCPT TO:<{sent[1][1]}>"]
    later = net.trace.events("delivery.attempt")[2:]
    assert not any(e.get("reused") for e in later)
    assert [e["queue_id"] for e in later] == [deferred_qid, deferred_qid, sent[2][0],
                                              sent[3][0]]


def test_a_lost_connection_mid_way_falls_back_per_message(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    seen = {"n": 0}

    def end(_m: bytes) -> str:
        seen["n"] += 1
        return "250 2.0.0 Ok" if seen["n"] != 2 else "421 4.4.2 going away"

    mx1 = _one_mx(net, end=end)
    sent = _submit(net, 3)
    report = net.run()
    # the 2nd message got 421 after its data on the reused session: retried on a new one
    assert sorted(report.delivered) == sorted(sent)
    assert report.deferred == []
    assert len(mx1.sessions) == 3
    assert [e["queue_id"] for e in net.trace.events("delivery.reuse_stopped")] == [
        sent[1][0]]


def test_sessions_are_capped(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.agent = DeliveryAgent(**{**_agent_kwargs(net), "reuse_limit": 3})
    mx1 = _one_mx(net)
    sent = _submit(net, 7)
    report = net.run()
    assert len(report.delivered) == 7
    assert [sum(c.startswith("MAIL") for c in s) for s in mx1.sessions] == [3, 3, 1]
    assert len(sent) == 7 and MAX_MESSAGES_PER_SESSION > 3  # the default allows more


def test_reuse_limit_one_turns_reuse_off(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.agent = DeliveryAgent(**{**_agent_kwargs(net), "reuse_limit": 1})
    mx1 = _one_mx(net)
    _submit(net, 3)
    net.run()
    assert len(mx1.sessions) == 3


def test_messages_for_other_domains_or_many_domains_do_not_ride_along(
        tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1 = _one_mx(net)
    net.mx["thirddomain.net"] = [(10, "mx.thirddomain.net")]
    other = net.add_server("mx.thirddomain.net", "127.0.0.13")
    net.submit([f"a@{DOMAIN}"])
    net.submit([f"b@{DOMAIN}", "c@thirddomain.net"])  # two domains: its own sessions
    net.submit(["d@thirddomain.net"])
    net.submit([f"e@{DOMAIN}"])
    report = net.run()
    assert len(report.delivered) == 5
    # a and e share one session; b (two domains) has its own, as have c and d
    carried = sorted(tuple(c[9:-1] for c in s if c.startswith("RCPT"))
                     for s in mx1.sessions)
    assert carried == [(f"a@{DOMAIN}", f"e@{DOMAIN}"), (f"b@{DOMAIN}",)]
    assert len(other.sessions) == 2


def test_equal_preferences_are_not_reused(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    net.mx[DOMAIN] = [(10, f"a.{DOMAIN}"), (10, f"b.{DOMAIN}")]
    a = net.add_server(f"a.{DOMAIN}", "127.0.0.11")
    b = net.add_server(f"b.{DOMAIN}", "127.0.0.12")
    _submit(net, 4)
    net.run()
    assert len(a.sessions) + len(b.sessions) == 4  # RFC 5321 §5.1 load spreading


def test_an_oversized_message_is_left_to_the_per_message_path(tmp_path: Path) -> None:
    net = FakeNet(tmp_path)
    mx1 = _one_mx(net, extensions=("PIPELINING", f"SIZE {len(MESSAGE) + 10}"))
    net.submit([f"a@{DOMAIN}"])
    big = net.submit([f"big@{DOMAIN}"], message=MESSAGE + b"x" * 100 + b"\r\n")
    net.submit([f"c@{DOMAIN}"])
    report = net.run()
    assert sorted(r for _, r in report.delivered) == [f"a@{DOMAIN}", f"c@{DOMAIN}"]
    assert report.bounced == [(big, f"big@{DOMAIN}")]
    assert len(mx1.sessions) == 2
    assert sorted(sum(c.startswith("MAIL") for c in s) for s in mx1.sessions) == [0, 2]


def _agent_kwargs(net: FakeNet) -> dict[str, object]:
    agent = net.agent
    return dict(queue=net.queue, hostname="mail.example.com", resolver_lookup=net.lookup,
                connect=net.connect, tls_policy=net.tls_policy,
                client_tls_context=net.tls_context, clock=net.clock, ids=net.ids,
                retry=net.retry, bounce_sink=agent.bounce_sink, trace=net.trace,
                port_of=agent.port_of, self_names={"mail.example.com"},
                timeouts=agent.timeouts, client_factory=agent.client_factory)
