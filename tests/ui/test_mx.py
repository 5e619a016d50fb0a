"""The MX editor against a running world: clicks and values in, DNS answers and routes out."""

from __future__ import annotations

from typing import Any

from simsmtp.ui.mx import MXEditor, sender_route
from simsmtp.world import MXRecord, World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE, with_backup


def test_it_starts_from_the_world_and_the_real_dns(backup_net: Any) -> None:
    editor = MXEditor(backup_net)
    assert [r.record for r in editor.rows] == [MXRecord(10, "mail.anotherdomain.org")]
    assert "MX\t10 mail.anotherdomain.org." in editor.dig_view.value
    assert editor.plan is not None and editor.plan.order == ["mail.anotherdomain.org"]
    assert "mail.anotherdomain.org" in editor.route_view.value
    bundle = editor._repr_mimebundle_()
    assert bundle["text/plain"] == "MXEditor(domain='anotherdomain.org', " \
                                   "sender='mail.example.com')"


def test_add_a_backup_then_prefer_it(backup_net: Any) -> None:
    editor = MXEditor(backup_net)
    editor.add_button.click()
    assert [r.record for r in editor.rows][1] == MXRecord(20, "backup.anotherdomain.org")
    assert editor.plan is not None
    assert editor.plan.order == ["mail.anotherdomain.org", "backup.anotherdomain.org"]
    assert "MX\t20 backup.anotherdomain.org." in editor.dig_view.value   # served by the DNS
    editor.rows[1].preference.value = 5
    assert editor.plan.order == ["backup.anotherdomain.org", "mail.anotherdomain.org"]
    assert backup_net.world.domains["anotherdomain.org"].mx[1] == \
        MXRecord(5, "backup.anotherdomain.org")
    editor.rows[0].remove.click()
    assert editor.plan.order == ["backup.anotherdomain.org"]


def test_remove_all_gives_implicit_mx_only_with_an_address(backup_net: Any) -> None:
    editor = MXEditor(backup_net)
    editor.clear_button.click()
    assert editor.plan is not None
    assert (editor.plan.route.kind, editor.plan.route.status) == ("bounce", "5.4.4")
    assert "implicit MX" in editor.status.value
    editor.address_box.value = True
    assert editor.plan.route.kind == "deliver"
    assert editor.plan.order == ["anotherdomain.org"]
    assert "implicit MX" in editor.plan.route.reason
    # the plan never shows a made-up "preference 0" for the implicit MX
    assert "1. anotherdomain.org (implicit MX: the domain's own address" in editor.plan.text()
    assert "preference" not in editor.plan.text().split("trying in this order:")[1]
    assert "preference 0" not in editor.route_view.value


def test_null_mx_bounces_without_trying(backup_net: Any) -> None:
    editor = MXEditor(backup_net)
    editor.null_button.click()
    assert editor.records == [MXRecord(0, ".")]
    assert "MX\t0 ." in editor.dig_view.value
    assert editor.plan is not None
    assert (editor.plan.route.kind, editor.plan.route.status) == ("bounce", "5.1.10")
    assert "5.1.10" in editor.route_view.value
    editor.add_button.click()   # a real record ends the null MX
    assert backup_net.world.domains["anotherdomain.org"].null_mx is False


def test_reset_and_bad_names(backup_net: Any) -> None:
    editor = MXEditor(backup_net)
    editor.add_backup("nowhere.anotherdomain.org", preference=30)
    assert editor.plan is not None
    assert editor.plan.addresses[-1] == ("nowhere.anotherdomain.org", ())
    assert "does not resolve: skipped" in editor.plan.text()
    editor.rows[1].exchange.value = "not a host!"
    assert "Not applied" in editor.status.value
    assert backup_net.world.domains["anotherdomain.org"].mx[-1].exchange == \
        "nowhere.anotherdomain.org"
    editor.address_box.value = True
    editor.reset_button.click()
    assert backup_net.world.domains["anotherdomain.org"].mx == \
        [MXRecord(10, "mail.anotherdomain.org")]
    assert editor.address_box.value is False
    assert not any(r.name == "anotherdomain.org" and r.rtype == "A"
                   for r in backup_net.world.records)


def test_the_plan_predicts_what_the_agent_does_with_equal_preferences() -> None:
    world = with_backup(World.seed_world())
    world.domains["anotherdomain.org"].mx = [MXRecord(10, "mail.anotherdomain.org"),
                                             MXRecord(10, "backup.anotherdomain.org")]
    seen = set()
    with world.start(storage="memory") as net:
        for _ in range(3):
            predicted = sender_route(net, "anotherdomain.org").order
            seen.add(tuple(predicted))
            mark = len(world.trace)
            net.submit(seed_message(world), recipients=["bob@anotherdomain.org"], **ALICE)
            assert net.wait(net.idle, 10)
            route = next(e for e in world.trace.since(mark) if e.kind == "delivery.route")
            assert [t.split()[1] for t in route["targets"]] == predicted
    assert len(seen) == 2   # the seeded shuffle did change the order: the copy followed it
