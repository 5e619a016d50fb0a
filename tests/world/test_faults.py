"""Fault rules: matching, counting, consuming, validation."""

from __future__ import annotations

import pytest

from simsmtp.protocol.replies import Reply
from simsmtp.trace import Trace
from simsmtp.world import FaultBook, FaultRule, World, parse_reply

BOB_MX = "mail.anotherdomain.org"


def test_one_liner_greylists_once() -> None:
    book = FaultBook()
    rule = book.add(BOB_MX, "RCPT", "450 4.7.1 Greylisted, try again later", times=1)
    fired = book.check(BOB_MX, "RCPT", "<bob@anotherdomain.org>")
    assert fired is rule
    assert fired.reply == Reply(450, "4.7.1 Greylisted, try again later")
    assert book.check(BOB_MX, "RCPT", "<bob@anotherdomain.org>") is None
    assert book.hits == {rule: 1}
    assert rule.remaining == 0 and not rule.active


def test_always_rule_counts_every_hit() -> None:
    book = FaultBook()
    rule = book.add(BOB_MX, "mail", "421 4.3.2 Service shutting down")
    for _ in range(3):
        assert book.check(BOB_MX, "MAIL", "alice@example.com") is rule
    assert rule.command == "MAIL"
    assert book.hits[rule] == 3 and rule.remaining is None


def test_match_is_case_insensitive_fnmatch_on_the_address() -> None:
    book = FaultBook()
    rule = book.add(BOB_MX, "RCPT", "550 5.1.1 No such user", match="BOB@*")
    assert book.check(BOB_MX, "RCPT", "<bob@AnotherDomain.org>") is rule
    assert book.check(BOB_MX, "RCPT", "carol@anotherdomain.org") is None
    assert book.check(BOB_MX, "MAIL", "bob@anotherdomain.org") is None
    assert book.check("mail.example.com", "RCPT", "bob@anotherdomain.org") is None
    assert book.check(BOB_MX.upper() + ".", "RCPT", "bob@x") is rule


def test_ehlo_name_connect_address_and_host_pattern() -> None:
    book = FaultBook()
    ehlo = book.add("*", "EHLO", "554 5.7.1 Go away", match="*.evil")
    connect = book.add("mail.*", "CONNECT", drop=True, match="127.0.0.66")
    assert book.check("anything", "EHLO", "mallory.evil") is ehlo
    assert book.check("anything", "EHLO", "client.good") is None
    assert book.check(BOB_MX, "CONNECT", "127.0.0.66") is connect
    assert book.check(BOB_MX, "CONNECT", "127.0.0.2") is None
    assert connect.drop and connect.reply is None


def test_first_active_rule_wins_then_falls_through() -> None:
    book = FaultBook()
    first = book.add(BOB_MX, "DATA", "451 4.3.0 Try later", times=2)
    second = book.add(BOB_MX, "DATA", delay=2.5)
    fired = [book.check(BOB_MX, "DATA") for _ in range(4)]
    assert fired == [first, first, second, second]
    assert list(book.hits.values()) == [2, 2]
    assert second.delay == 2.5


def test_remove_clear_iter_len() -> None:
    book = FaultBook()
    a = book.add(BOB_MX, "QUIT", drop=True)
    b = book.add(BOB_MX, "MESSAGE", "552 5.3.4 Message too big")
    assert list(book) == [a, b] and len(book) == 2
    book.remove(a)
    assert list(book) == [b]
    assert book.check(BOB_MX, "QUIT") is None
    book.clear()
    assert len(book) == 0 and book.check(BOB_MX, "MESSAGE") is None


def test_add_accepts_a_rule_object() -> None:
    book = FaultBook()
    rule = FaultRule(BOB_MX, "STARTTLS", reply=Reply(454, "4.7.0 TLS not available"))
    assert book.add(rule) is rule
    assert book.check(BOB_MX, "starttls") is rule


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"command": "RCTP", "reply": Reply(450, "x")}, "command must be one of"),
    ({"command": "RCPT", "reply": Reply(250, "ok")}, "4xx or 5xx"),
    ({"command": "RCPT"}, "needs a reply, a delay or drop"),
    ({"command": "RCPT", "drop": True, "times": 0}, "times must be >= 1"),
    ({"command": "RCPT", "delay": -1.0}, "delay must be >= 0"),
])
def test_bad_rules_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FaultRule(BOB_MX, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("line", ["250 2.0.0 Ok", "45 short", "450-continued", "hello", "600 x"])
def test_parse_reply_rejects_non_failure_lines(line: str) -> None:
    with pytest.raises(ValueError, match="4xx/5xx"):
        parse_reply(line)


def test_parse_reply_reads_code_and_enhanced_status() -> None:
    reply = parse_reply("421 4.3.2 Service shutting down")
    assert reply.code == 421 and reply.enhanced == "4.3.2"
    assert parse_reply("554").to_bytes() == b"554\r\n"


def test_firing_is_traced_and_rule_reads_well() -> None:
    trace = Trace()
    book = FaultBook(trace)
    rule = book.add(BOB_MX, "RCPT", "450 4.7.1 Greylisted", times=1, match="bob@*")
    book.check(BOB_MX, "RCPT", "bob@anotherdomain.org")
    (event,) = trace.events("fault")
    assert event.kind == "fault.fired" and event.host == BOB_MX
    assert event["command"] == "RCPT" and event["argument"] == "bob@anotherdomain.org"
    assert str(rule) == (f"{BOB_MX} RCPT bob@*: answer 450 4.7.1 Greylisted (1/1 used)")


def test_world_faults_are_traced_in_the_world_trace() -> None:
    world = World.seed_world()
    world.faults.add(BOB_MX, "CONNECT", "554 5.3.2 Not now")
    world.clock.advance(10)
    assert world.faults.check(BOB_MX, "CONNECT", "127.0.0.2") is not None
    (event,) = world.trace.events("fault.fired")
    assert event.clock == 10
