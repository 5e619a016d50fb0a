"""Notebook 7b's helpers and exercises: the folder table and the three checks."""

from __future__ import annotations

import pytest

from simsmtp.ui.exercises import exercise, exercises_for
from simsmtp.ui.imap import imap_folders
from simsmtp.world import World

ANSWERS = {
    "07b.stays": ("b", "a"),
    "07b.seen": ("FS", "SF"),
    "07b.idle": ("EXISTS", "RECENT"),
}


def test_notebook_7b_has_its_three_exercises() -> None:
    assert [e.key for e in exercises_for("07b")] == list(ANSWERS)


@pytest.mark.parametrize("key", sorted(ANSWERS))
def test_right_wrong_and_unanswered(key: str) -> None:
    ex = exercise(key)
    right, wrong = ANSWERS[key]
    assert ex.check(right).correct
    bad = ex.check(wrong)
    assert not bad.correct and bad.answered and bad.hint == ex.hint and bad.message
    assert not ex.check(None).answered


def test_the_folder_table_shows_uids_flags_and_files() -> None:
    world = World.seed_world()
    with world.start() as net:
        net.store.deliver("bob@anotherdomain.org", b"Subject: hi\r\n\r\nhello\r\n")
        table = repr(imap_folders(net, "bob@anotherdomain.org")).splitlines()
        assert table[0].split()[:3] == ["folder", "UID", "flags"]
        assert "new: not seen by any mail program yet" in table[2]
        assert table[2].split()[:2] == ["INBOX", "1"] and "new/" in table[2]
        account = net.store.imap_account("bob@anotherdomain.org")
        account.folder("INBOX", claim_recent=True)
        account.set_flags("INBOX", 1, frozenset({"\\Seen"}))
        row = repr(imap_folders(net, "bob@anotherdomain.org")).splitlines()[2]
        assert row.split()[2] == "\\Seen" and row.endswith(":2,S")
        assert [line.split()[0] for line in repr(imap_folders(
            net, "bob@anotherdomain.org")).splitlines()[2:]] == ["INBOX", "Junk", "Sent"]
    with world.start(storage="memory") as memory, pytest.raises(ValueError, match="memory"):
        imap_folders(memory, "bob@anotherdomain.org")
