"""World.dns_version: an O(1) token that changes with every edit dns_records depends on."""

from __future__ import annotations

import copy
import pickle
from datetime import UTC, datetime

from simsmtp.world.model import Domain, MXRecord, Record, World


def _world() -> World:
    world = World(name="v", seed=1, epoch=datetime(2025, 3, 10, tzinfo=UTC))
    world.domains["a.test"] = Domain("a.test", mx=[MXRecord(10, "mx.a.test")])
    return world


def _changes(world: World, edit: object) -> bool:
    """True when running ``edit()`` changes the world's dns_version."""
    before = world.dns_version()
    edit()  # type: ignore[operator]
    return world.dns_version() != before


def test_the_version_stays_while_nothing_changes() -> None:
    world = _world()
    before = world.dns_version()
    assert world.dns_state() == world.dns_state()  # reading is not an edit
    assert list(world.domains["a.test"].mx) == [MXRecord(10, "mx.a.test")]
    assert world.dns_version() == before


def test_in_place_edits_of_an_mx_list_change_the_version() -> None:
    world = _world()
    mx = world.domains["a.test"].mx
    assert _changes(world, lambda: mx.append(MXRecord(20, "mx2.a.test")))
    assert _changes(world, lambda: mx.__setitem__(0, MXRecord(5, "mx.a.test")))
    assert _changes(world, lambda: mx.reverse())
    assert _changes(world, lambda: mx.sort(key=lambda r: r.preference))
    assert _changes(world, lambda: mx.pop())
    assert _changes(world, lambda: mx.insert(0, MXRecord(1, "x.a.test")))
    assert _changes(world, lambda: mx.__delitem__(0))
    assert _changes(world, lambda: mx.extend([MXRecord(30, "y.a.test")]))
    assert _changes(world, lambda: mx.remove(MXRecord(30, "y.a.test")))
    assert _changes(world, lambda: mx.clear())


def test_a_plain_list_assigned_later_is_watched_by_content() -> None:
    world = _world()
    domain = world.domains["a.test"]
    plain = [MXRecord(10, "mx.a.test")]
    assert _changes(world, lambda: setattr(domain, "mx", plain))
    assert domain.mx is plain  # the very list the notebook assigned
    assert _changes(world, lambda: plain.append(MXRecord(20, "b.a.test")))
    assert _changes(world, lambda: plain.__setitem__(0, MXRecord(1, "c.a.test")))
    assert not _changes(world, lambda: None)


def test_field_edits_and_new_domains_and_records_change_the_version() -> None:
    world = _world()
    domain = world.domains["a.test"]
    assert _changes(world, lambda: setattr(domain, "dmarc", "v=DMARC1; p=none"))
    assert _changes(world, lambda: setattr(domain, "null_mx", True))
    assert _changes(world, lambda: world.domains.__setitem__("b.test", Domain("b.test")))
    assert _changes(world, lambda: world.domains.pop("b.test"))
    assert _changes(world, lambda: world.records.append(Record("www.a.test", "A", "127.0.0.9")))
    assert _changes(world, lambda: setattr(world, "nameserver", "ns2.simsmtp.test"))
    plain: list[Record] = []
    assert _changes(world, lambda: setattr(world, "records", plain))
    assert _changes(world, lambda: plain.append(Record("x.a.test", "A", "127.0.0.8")))
    table = {"a.test": domain}
    assert _changes(world, lambda: setattr(world, "domains", table))
    assert _changes(world, lambda: table.__setitem__("c.test", Domain("c.test")))


def test_copies_of_a_domain_stay_watched() -> None:
    world = _world()
    domain = world.domains["a.test"]
    domain.mx = [MXRecord(10, "mx.a.test")]  # plain: compared by content
    for clone in (copy.copy(domain), copy.deepcopy(domain), pickle.loads(pickle.dumps(domain))):
        world.domains["a.test"] = clone
        assert _changes(world, lambda c=clone: c.mx.append(MXRecord(20, "z.a.test")))
        assert clone == clone and clone.mx[-1] == MXRecord(20, "z.a.test")


def test_watched_containers_look_like_plain_ones() -> None:
    world = _world()
    domain = world.domains["a.test"]
    assert repr(domain.mx) == "[MXRecord(preference=10, exchange='mx.a.test')]"
    assert domain == Domain("a.test", mx=[MXRecord(10, "mx.a.test")])
    assert domain.mx == [MXRecord(10, "mx.a.test")]
    assert repr(world.domains).startswith("{'a.test': Domain(")


def test_dns_records_follow_every_kind_of_edit() -> None:
    world = _world()
    addresses = {"mx.a.test": "127.0.0.2", world.nameserver: "127.0.0.3"}

    def mx_values() -> list[str]:
        return [r.value for r in world.dns_records(addresses)
                if r.name == "a.test" and r.rtype == "MX"]

    world.domains["a.test"].mx.append(MXRecord(20, "backup.a.test"))
    assert mx_values() == ["10 mx.a.test.", "20 backup.a.test."]


# ------------------------------------------------------------ per world, no process-wide state


def test_each_world_counts_its_own_edits() -> None:
    one, two = _world(), _world()
    before_one, before_two = one.version, two.version
    token_two = two.dns_version()
    one.domains["a.test"].mx.append(MXRecord(20, "mx2.a.test"))
    one.domains["a.test"].dmarc = "v=DMARC1; p=none"
    one.records.append(Record("www.a.test", "A", "127.0.0.9"))
    assert one.version == before_one + 3
    assert two.version == before_two and two.dns_version() == token_two


def test_the_version_only_grows_and_reading_is_no_edit() -> None:
    world = _world()
    seen = [world.version]
    world.dns_records({"mx.a.test": "127.0.0.2", world.nameserver: "127.0.0.3"})
    world.dns_version()
    assert world.version == seen[-1]
    for edit in (lambda: world.domains["a.test"].mx.clear(),
                 lambda: setattr(world, "seed", 2),
                 lambda: world.domains.setdefault("b.test", Domain("b.test")),
                 lambda: world.domains["b.test"].mx.append(MXRecord(1, "mx.b.test"))):
        edit()
        assert world.version > seen[-1]
        seen.append(world.version)


def test_a_domain_that_left_the_world_no_longer_counts() -> None:
    world = _world()
    gone = world.domains.pop("a.test")
    assert not _changes(world, lambda: gone.mx.append(MXRecord(5, "x.a.test")))
    assert not _changes(world, lambda: setattr(gone, "spf", "v=spf1 -all"))
    gone.mx = [MXRecord(1, "plain.a.test")]  # loose (compared by content) but not held
    assert not _changes(world, lambda: gone.mx.append(MXRecord(2, "y.a.test")))
    world.domains["a.test"] = gone  # back: counted again, its plain list by content
    assert _changes(world, lambda: gone.mx.append(MXRecord(3, "z.a.test")))


def test_a_domain_held_twice_counts_until_both_are_gone() -> None:
    world = _world()
    domain = world.domains["a.test"]
    world.domains["alias.test"] = domain
    del world.domains["alias.test"]
    assert _changes(world, lambda: domain.mx.append(MXRecord(20, "b.a.test")))
    world.domains.clear()
    assert not _changes(world, lambda: domain.mx.append(MXRecord(30, "c.a.test")))


def test_every_way_of_adding_domains_links_them() -> None:
    world = _world()
    b, c, d, e = (Domain(f"{n}.test") for n in "bcde")
    world.domains.update({"b.test": b})
    world.domains |= {"c.test": c}
    world.domains.setdefault("d.test", d)
    world.domains.update([("e.test", e)])
    for domain in (b, c, d, e):
        assert _changes(world, lambda x=domain: x.mx.append(MXRecord(1, f"mx.{x.name}")))
    world.domains.popitem()
    assert not _changes(world, lambda: e.mx.append(MXRecord(2, "mx2.e.test")))


def test_containers_moved_between_worlds_count_for_their_new_world() -> None:
    one, two = _world(), _world()
    two.domains = one.domains  # now held by both
    two.records = one.records
    assert _changes(two, lambda: one.domains["a.test"].mx.append(MXRecord(2, "b.a.test")))
    assert _changes(two, lambda: one.records.append(Record("w.a.test", "A", "127.0.0.7")))
    two.domains = {"z.test": Domain("z.test")}  # a plain dict: compared by content
    assert _changes(two, lambda: two.domains["z.test"].mx.append(MXRecord(1, "mx.z.test")))
    assert not _changes(two, lambda: one.domains["a.test"].mx.clear())  # no longer two's
