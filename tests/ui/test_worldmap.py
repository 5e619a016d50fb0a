"""The map of the world: nodes and links from the world, steps from the trace, clicks."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp.trace import Trace
from simsmtp.ui.style import COLORS
from simsmtp.ui.worldmap import (
    WorldMap,
    draw_svg,
    host_story,
    picture,
    steps,
    world_map,
    world_map_text,
)
from simsmtp.world import MXRecord, World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE, with_backup
from .readability import contrast, font_sizes, text_colors


@pytest.fixture
def net() -> Iterator[Any]:
    world = with_backup(World.seed_world())
    with world.start(storage="memory") as running:
        yield running


def _send(net: Any) -> None:
    net.submit(seed_message(net.world), recipients=["bob@anotherdomain.org"], **ALICE)
    assert net.wait(net.idle, 10)


def test_nodes_and_links_come_from_the_world_and_its_addresses(net: Any) -> None:
    pic = picture(net)
    keys = [n.key for n in pic.nodes]
    assert keys[:1] == ["DNS"]
    assert {"mail.example.com", "mail.anotherdomain.org", "backup.anotherdomain.org",
            "mallory.evil.example", "mua:alice@example.com",
            "mua:bob@anotherdomain.org"} <= set(keys)
    mx = pic.node("mail.anotherdomain.org")
    assert mx is not None
    _, port25 = net.address("mail.anotherdomain.org", 25)
    ip = net.hosts["mail.anotherdomain.org"].ip  # the world's own address, on every platform
    assert ip in mx.lines and f"25→{port25}" in " ".join(mx.lines)
    dns = pic.node("DNS")
    assert dns is not None and f"port 53→{net.dns_address[1]}" in " ".join(dns.lines)
    links = {(lnk.source, lnk.target, lnk.kind) for lnk in pic.links}
    assert ("mua:alice@example.com", "mail.example.com", "submission") in links
    assert ("mua:bob@anotherdomain.org", "mail.anotherdomain.org", "pop3") in links
    assert ("mail.example.com", "DNS", "dns") in links
    assert ("mail.example.com", "mail.anotherdomain.org", "smtp") in links
    # no MX record names the backup yet: nobody can deliver to it
    assert not any(t == "backup.anotherdomain.org" for _, t, _ in links)
    assert "What happened: nothing yet." in world_map_text(net)


def test_the_delivery_becomes_steps_and_each_step_has_its_transcript(
        journey_world: World) -> None:
    found = steps(journey_world)
    assert [s.phase for s in found] == ["submission", "mx-lookup", "smtp-hop", "retrieval"]
    submission, lookup, hop, retrieval = found
    assert (submission.source, submission.target) == ("mua:alice@example.com",
                                                      "mail.example.com")
    assert (lookup.source, lookup.target) == ("mail.example.com", "DNS")
    assert (hop.source, hop.target, hop.server) == ("mail.example.com",
                                                    "mail.anotherdomain.org",
                                                    "mail.anotherdomain.org")
    assert (retrieval.source, retrieval.target) == ("mua:bob@anotherdomain.org",
                                                    "mail.anotherdomain.org")
    view = WorldMap(journey_world)
    assert view.slider.max == 4 and view.current is None
    view.next_button.click()
    view.next_button.click()
    assert view.current == lookup
    assert "MX? anotherdomain.org" in view.detail.value
    assert "mail.example.com asks the DNS" in view.svg.value
    view.step_list.value = 3  # a click on the SMTP hop in the list
    assert view.slider.value == 3 and view.current == hop
    assert "RCPT TO:&lt;bob@anotherdomain.org&gt;" in view.detail.value
    assert "250 2.0.0 Ok: queued as" in view.detail.value
    view.prev_button.click()
    assert view.current == lookup
    assert "showing Step 2" in repr(view)


def test_steps_cope_with_a_trace_that_lost_its_oldest_events(journey_world: World) -> None:
    events = journey_world.trace.events()
    window = [e for e in events if e.seq >= events[len(events) // 2].seq]
    later = steps(window)
    assert later and later[-1].phase == "retrieval"
    assert steps(Trace()) == []


def test_a_click_on_a_host_shows_what_it_is_and_its_last_conversation(
        journey_world: World) -> None:
    view = WorldMap(journey_world)
    view.host_buttons["mail.anotherdomain.org"].click()
    text = view.detail.value
    assert "reached by" in text and "Its last conversation (step 4)" in text
    assert "+OK" in text and "Its latest trace events" in text
    view.host_buttons["DNS"].click()
    assert "MX? anotherdomain.org" not in view.detail.value  # the DNS has no dialogue
    assert "Step 2 · DNS lookup" in view.detail.value
    _, plain = host_story(journey_world, "mua:alice@example.com")
    assert "Step 1 · submission" in plain and "587/465 submission" in plain


def test_the_map_follows_edits_after_refresh(net: Any) -> None:
    view = WorldMap(net)
    assert view.host_buttons["mail.anotherdomain.org"].button_style == ""
    world = net.world
    world.domains["anotherdomain.org"].mx.append(MXRecord(20, "backup.anotherdomain.org"))
    net.take_down("mail.anotherdomain.org")
    world.faults.add("backup.anotherdomain.org", "RCPT", "450 4.7.1 Greylisted", times=2)
    _send(net)
    view.refresh_button.click()
    pic = view.picture
    assert ("mail.example.com", "backup.anotherdomain.org", "smtp") in \
        {(lnk.source, lnk.target, lnk.kind) for lnk in pic.links}
    down = pic.node("mail.anotherdomain.org")
    assert down is not None and down.down
    assert view.host_buttons["mail.anotherdomain.org"].button_style == "danger"
    assert view.host_buttons["mail.anotherdomain.org"].description.endswith("(down)")
    backup = pic.node("backup.anotherdomain.org")
    assert backup is not None and backup.faults
    assert "DOWN: refuses connections" in view.svg.value
    phases = [s.phase for s in view.steps]
    assert "note" in phases  # the refused connection and the deferral
    assert any(s.error for s in view.steps)
    text = world_map_text(net)
    assert "fault: " in text and "DOWN" in text
    net.fast_forward(3600)  # the retries use the rule up, then Bob's backup takes it
    view.refresh_button.click()
    backup = view.picture.node("backup.anotherdomain.org")
    assert backup is not None and not backup.faults
    assert any(line.startswith("fault used up:") for line in backup.lines)


def test_the_picture_is_readable(journey_world: World) -> None:
    pic = picture(journey_world)
    for current in [None, *pic.steps]:
        svg = draw_svg(pic, current)
        assert min(font_sizes(svg)) >= 10
        for color in text_colors(svg):
            for background in ("#FFFFFF", COLORS["highlight"], COLORS["background"]):
                assert contrast(color, background) >= 4.5, (color, background)
    assert 'width="' in svg and "viewBox" in svg  # drawn at its own size, never shrunk
    view = WorldMap(journey_world, step=-1)
    for key in view.host_buttons:
        view.show_host(key)
        for color in text_colors(view.detail.value):
            assert contrast(color, COLORS["background"]) >= 4.5, (key, color)
    view.show_step(3)
    assert min(font_sizes(view.detail.value)) >= 10
    assert all(contrast(c, COLORS["background"]) >= 4.5 for c in text_colors(view.detail.value))
    shown = world_map(journey_world, step=3)
    assert "Step 3 · SMTP hop" in shown.html and "What happened (4 steps)" in repr(shown)


def test_a_world_that_is_not_running_has_a_map_too() -> None:
    text = world_map_text(World.seed_world())
    assert "(not running)" in text and "mail.example.com → mail.anotherdomain.org" in text
    with pytest.raises(TypeError, match="needs a World"):
        picture("the world")


def test_a_host_with_seven_ports_shows_every_one() -> None:
    import re

    # the seed's MX with submission too: 25, 587, 465, 110, 995, 143, 993
    world = World.seed_world()
    world.host("mail.anotherdomain.org").roles.append("submission")
    with world.start(storage="memory") as running:
        pic = picture(running)
        mx = pic.node("mail.anotherdomain.org")
        assert mx is not None
        ports = world.host("mail.anotherdomain.org").ports()
        assert len(ports) == 7
        svg = draw_svg(pic)
        block = svg[svg.index('data-key="mail.anotherdomain.org"'):]
        block = block[:block.index("</g>")]
        drawn = [re.sub(r"<[^>]+>", "", t) for t in re.findall(r"<text[^>]*>[^<]*</text>",
                                                                 block)]
        assert not any("…" in line for line in drawn)
        for port in ports:  # each with its real port, on a line of its own box
            _, real = running.address("mail.anotherdomain.org", port)
            assert any(f"{port}→{real}" in line for line in drawn), (port, drawn)
        assert all(len(line) <= 29 for line in drawn[1:])
        rect = re.search(r'<rect x="\d+" y="\d+" width="\d+" height="(\d+)"', block)
        assert rect is not None and int(rect.group(1)) == 26 + 14 * (len(drawn) - 1)
