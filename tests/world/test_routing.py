"""MX ordering, route planning (RFC 5321 §5.1, RFC 7505) and the retry schedule."""

from __future__ import annotations

import itertools
import random

import pytest

from simsmtp.world import MXRecord, RetrySchedule, Route, is_null_mx, order_mx, plan_route

A10, B10, C20 = MXRecord(10, "a.example.net"), MXRecord(10, "b.example.net"), MXRecord(
    20, "c.example.net")


def test_order_is_by_ascending_preference() -> None:
    records = [MXRecord(30, "z.example"), MXRecord(5, "y.example"), MXRecord(20, "x.example")]
    ordered = order_mx(records, random.Random(0))
    assert [r.preference for r in ordered] == [5, 20, 30]


def test_equal_preferences_are_shuffled_reproducibly() -> None:
    records = [C20, B10, A10]
    first = [order_mx(records, random.Random(seed)) for seed in range(50)]
    again = [order_mx(list(reversed(records)), random.Random(seed)) for seed in range(50)]
    assert first == again  # same seed, any input order: same answer
    assert all(o[2] == C20 for o in first)


def test_over_200_runs_both_equal_hosts_come_first() -> None:
    rng = random.Random(1)
    leaders = [order_mx([A10, B10, C20], rng)[0] for _ in range(200)]
    assert leaders.count(A10) > 20 and leaders.count(B10) > 20
    assert C20 not in leaders


@pytest.mark.parametrize(("records", "null"), [
    ([MXRecord(0, ".")], True),
    ([MXRecord(0, "")], True),
    ([MXRecord(10, ".")], False),
    ([MXRecord(0, "."), MXRecord(10, "mx.example")], False),
    ([MXRecord(0, "mx.example")], False),
    ([], False),
    (None, False),
])
def test_null_mx_is_exactly_one_mx_0_dot(records: list[MXRecord] | None, null: bool) -> None:
    assert is_null_mx(records) is null


def route(mx: list[MXRecord] | None, *, address: bool = False,
          me: frozenset[str] = frozenset({"mail.example.com"})) -> Route:
    return plan_route("Dest.Example", mx, domain_has_address=address, self_names=set(me),
                      rng=random.Random(3))


def test_deliver_explains_the_order() -> None:
    r = route([C20, A10, B10])
    assert r.kind == "deliver" and r.domain == "dest.example" and r.status == ""
    assert [t.preference for t in r.targets] == [10, 10, 20]
    assert set(r.targets[:2]) == {A10, B10}
    assert r.reason.startswith("Tried in this order because MX preferences are tried lowest")
    assert "equal preference (10)" in r.reason
    assert "dest.example: deliver via" in str(r)


def test_no_mx_with_address_is_implicit_mx() -> None:
    no_mx: list[list[MXRecord] | None] = [None, []]
    for mx in no_mx:
        r = route(mx, address=True)
        assert r.kind == "deliver"
        assert r.targets == (MXRecord(0, "dest.example"),)
        assert "implicit MX" in r.reason


def test_no_mx_and_no_address_bounces() -> None:
    r = route(None)
    assert (r.kind, r.status, r.targets) == ("bounce", "5.4.4", ())


def test_null_mx_bounces_with_5_1_10() -> None:
    r = route([MXRecord(0, ".")], address=True)
    assert (r.kind, r.status) == ("bounce", "5.1.10")
    assert "does not accept mail" in r.reason


def test_dot_among_other_mx_is_ignored() -> None:
    r = route([MXRecord(0, "."), A10])
    assert r.kind == "deliver" and r.targets == (A10,)
    assert "RFC 7505" in r.reason


def test_myself_as_best_mx_loops_back() -> None:
    r = route([MXRecord(10, "MAIL.example.com."), C20])
    assert (r.kind, r.status) == ("bounce", "5.4.6")
    assert r.reason.startswith("mail for dest.example loops back to myself")


def test_myself_as_backup_mx_tries_only_better_ones() -> None:
    r = route([A10, MXRecord(20, "mail.example.com"), MXRecord(30, "z.example")])
    assert r.kind == "deliver" and r.targets == (A10,)
    assert "preference < 20" in r.reason


def test_myself_at_equal_preference_drops_the_peers_too() -> None:
    r = route([A10, MXRecord(10, "mail.example.com")])
    assert (r.kind, r.status) == ("bounce", "5.4.6")


def test_dns_helpers() -> None:
    nx = Route.nxdomain("nowhere.example")
    assert (nx.kind, nx.status, nx.domain) == ("bounce", "5.1.2", "nowhere.example")
    temp = Route.dns_tempfail("slow.example")
    assert (temp.kind, temp.status) == ("defer", "4.4.3")
    assert "retried" in temp.reason


def test_backoff_doubles_from_minimal_to_maximal() -> None:
    schedule = RetrySchedule()
    assert [schedule.backoff(n) for n in range(1, 8)] == [300, 600, 1200, 2400, 4000, 4000,
                                                           4000]
    assert schedule.backoff(10_000) == 4000
    with pytest.raises(ValueError):
        schedule.backoff(0)


def test_next_attempt_and_giving_up() -> None:
    s = RetrySchedule()
    assert s.next_attempt(1000.0, 1000.0, 0) == 1000.0
    assert s.next_attempt(1000.0, 1000.0, 1) == 1300.0
    assert s.next_attempt(1000.0, 1300.0, 2) == 1900.0
    too_old = 1000.0 + 5 * 86400
    assert s.next_attempt(1000.0, too_old - 1, 40) == too_old - 1 + 4000
    assert s.next_attempt(1000.0, too_old, 41) is None


def test_timeline_for_a_plot() -> None:
    s = RetrySchedule()
    assert s.timeline(0.0, 10_000) == [0, 300, 900, 2100, 4500, 8500]
    whole = s.timeline(0.0, 10 * 86400)
    assert whole[-2] < 5 * 86400 <= whole[-1]  # the last try happens after the lifetime
    assert all(b - a <= 4000 for a, b in itertools.pairwise(whole))
    assert len(whole) == 6 + (whole[-1] - 8500) / 4000


def test_custom_schedule_and_delay_warning() -> None:
    s = RetrySchedule(minimal_backoff=60, maximal_backoff=60, maximal_lifetime=300,
                      delay_warning=4 * 3600)
    assert s.timeline(0, 1000) == [0, 60, 120, 180, 240, 300]  # 300: old enough to bounce
    assert not s.warn_due(0, 4 * 3600 - 1)
    assert s.warn_due(0, 4 * 3600)
    assert not s.warn_due(0, 4 * 3600, warned=True)
    assert not RetrySchedule().warn_due(0, 10**9)
    with pytest.raises(ValueError):
        RetrySchedule(minimal_backoff=500, maximal_backoff=100)
