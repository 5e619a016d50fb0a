"""Bob's mailbox as a mail program shows it, read from the real Maildir."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp import ui
from simsmtp.ui.inbox import (
    Inbox,
    explain_authentication_results,
    explain_received,
    folders,
    inbox_text,
    message_text,
    messages,
    read_message,
    refused,
)
from simsmtp.ui.style import COLORS
from simsmtp.world import World

from .readability import contrast, font_sizes, text_colors

BOB = "bob@anotherdomain.org"


@pytest.fixture(scope="module")
def spoofed() -> Iterator[Any]:
    """Alice's real mail in Bob's inbox; Mallory's spoof once under p=quarantine (Junk)
    and once under p=reject (refused)."""
    world = World.seed_world()
    with world.start() as net:
        ui.alice_sends(net)
        world.domains["example.com"].dmarc = "v=DMARC1; p=quarantine"
        ui.mallory_sends(net)
        world.domains["example.com"].dmarc = "v=DMARC1; p=reject"
        ui.mallory_sends(net)
        yield net


def test_folders_and_list_come_from_the_maildir(spoofed: Any) -> None:
    assert folders(spoofed, BOB) == ["INBOX", "Junk"]
    inbox = messages(spoofed, BOB)
    junk = messages(spoofed, BOB, "Junk")
    assert [m.subject for m in inbox] == ["Meeting Tomorrow"]
    assert [m.subject for m in junk] == ["Urgent: please wire the money today"]
    spoof = junk[0]
    assert spoof.sender == "Alice <alice@example.com>"  # the From: lies
    path = spoofed.store.path(BOB) / spoof.file
    assert path.is_file() and spoof.size == path.stat().st_size
    assert spoof.file.startswith(".Junk/new/") and not spoof.read
    assert "Junk: 1 message" in inbox_text(spoofed, BOB, "Junk")


def test_opening_a_message_marks_it_read_as_a_mail_program_does(spoofed: Any) -> None:
    row = messages(spoofed, BOB)[0]
    data = read_message(spoofed, BOB, row.key, mark_read=False)
    assert messages(spoofed, BOB)[0].read is False
    assert read_message(spoofed, BOB, row.key) == data
    after = messages(spoofed, BOB)[0]
    assert after.read and after.key == row.key and after.file == f"cur/{row.key}:2,S"
    # POP3 still finds it under the same unique id
    assert [info.size for info in spoofed.store.mailbox(BOB).list_messages()]
    os.rename(spoofed.store.path(BOB) / after.file, spoofed.store.path(BOB) / "new" / row.key)
    with pytest.raises(KeyError, match="no message"):
        read_message(spoofed, BOB, "nonexistent")


def test_received_and_authentication_results_explained_line_by_line(spoofed: Any) -> None:
    alice = read_message(spoofed, BOB, messages(spoofed, BOB)[0].key, mark_read=False)
    hops = explain_received(alice)
    assert [h.split(" ", 2)[1] for h, _ in hops] == ["from", "from"]
    top, bottom = hops
    assert top[1].startswith("Hop 2, the last server, Bob's own (the top line): "
                             "mail.anotherdomain.org received")
    assert "ESMTPS = ESMTP over TLS" in top[1]
    assert bottom[1].startswith("Hop 1, the first server (the bottom line): "
                                "mail.example.com")
    assert "after alice@example.com logged in (AUTH)" in bottom[1]
    results = explain_authentication_results(alice, trusted="mail.anotherdomain.org")
    assert results[0][1].startswith("mail.anotherdomain.org, the user's own server")
    assert [piece.split("=")[0].strip() for piece, _ in results[1:]] == \
        ["spf", "dkim", "dmarc"]
    spoof = read_message(spoofed, BOB, messages(spoofed, BOB, "Junk")[0].key, "Junk",
                         mark_read=False)
    words = dict(explain_authentication_results(spoof))
    dmarc = next(v for k, v in words.items() if k.strip().startswith("dmarc=fail"))
    assert "p=quarantine dis=quarantine" in dmarc
    assert "the only server" in message_text(spoof)


def test_the_spoof_refused_at_the_door_is_found_in_the_trace(spoofed: Any) -> None:
    gone = refused(spoofed.world, BOB)
    assert len(gone) == 1
    assert gone[0]["reply"].startswith("550 5.7.1")
    assert gone[0]["client_ip"] == spoofed.hosts["mallory.evil.example"].ip
    assert refused(spoofed.world, "alice@example.com") == []


def test_the_widget_reacts_to_clicks(spoofed: Any) -> None:
    box = Inbox(spoofed, BOB)
    assert box.folder_picker.options == ("INBOX", "Junk")
    assert "Refused at the door, never stored (1)" in box.refused_view.value
    box.folder_picker.value = "Junk"
    assert [r.subject for r in box.rows] == ["Urgent: please wire the money today"]
    assert box.open_buttons[0].description == "● open (new)"
    box.open_buttons[0].click()
    assert box.opened is not None and box.opened.read
    assert box.open_buttons[0].description == "open"
    assert "In Junk because its checks failed" in box.panes[0].value
    assert "wire 9,800 EUR" in box.panes[0].value
    assert "dmarc=fail" in box.panes[3].value and "Hop 1" in box.panes[4].value
    assert "Received: from mallory.evil.example" in box.panes[2].value
    assert "Junk" in repr(box) and "Urgent" in repr(box)
    box.refresh_button.click()
    assert box.folder == "Junk"
    for pane in [box.title, box.refused_view, *box.panes]:
        assert min(font_sizes(pane.value) or [12]) >= 10
        for color in text_colors(pane.value):
            assert contrast(color, "#FFFFFF") >= 4.5, color
            assert contrast(color, COLORS["background"]) >= 4.5, color


def test_a_sent_folder_is_listed_once_it_exists() -> None:
    world = World.seed_world()
    with world.start() as net:
        assert folders(net, BOB) == ["INBOX"]
        net.store.deliver(BOB, b"From: Bob <bob@anotherdomain.org>\r\nSubject: re: lunch"
                               b"\r\n\r\nYes!\r\n", folder="Sent")
        net.store.deliver(BOB, b"Subject: old\r\n\r\nold\r\n", folder="Archive")
        assert folders(net, BOB) == ["INBOX", "Sent", "Archive"]
        box = Inbox(net, BOB, folder="Sent")
        assert [r.subject for r in box.rows] == ["re: lunch"]
        assert box.rows[0].file.startswith(".Sent/new/")


def test_memory_storage_lists_without_files() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        ui.alice_sends(net)
        rows = messages(net, BOB)
        assert [r.file for r in rows] == ["(memory)"]
        assert b"Meeting Tomorrow" in read_message(net, BOB, rows[0].key)
        box = Inbox(net, open_first=True)
        assert box.opened is not None and "dmarc=pass" in box.panes[0].value
        ui.alice_sends(net)
        box.LIMIT = 1  # a long list shows the newest only
        box.refresh_button.click()
        assert len(box.rows) == 2 and len(box.open_buttons) == 1
        assert "1 older" in box.listing.children[5].value
        box.open_buttons[0].click()
        assert box.opened is not None and box.opened.key == box.rows[-1].key
