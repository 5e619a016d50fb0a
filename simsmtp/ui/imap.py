"""IMAP in the course (notebook 7b): a user's folders as the IMAP server keeps them on disk,
and the notebook's exercises.

:func:`imap_folders` lists every message of every folder with its IMAP UID, its flags and
the Maildir file that holds them: the flags are the letters after ``:2,`` in the file name
(``S`` \\Seen, ``F`` \\Flagged, ``R`` \\Answered, ``T`` \\Deleted, ``D`` \\Draft), and a
message still in ``new/`` is one no mail program has seen yet (IMAP's \\Recent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .exercises import Exercise, choice, register, text
from .style import HTMLText, html_table, text_table

if TYPE_CHECKING:
    from simsmtp.net.network import Network

__all__ = ["imap_folders"]


def imap_folders(net: Network, address: str) -> HTMLText:
    """Every folder of ``address`` (INBOX, Junk, Sent ...): UID, flags and Maildir file.

    Args:
        net: a running world that keeps mail in Maildirs (the default).
        address: the user.
    """
    from simsmtp.net.store import parse_maildir_name

    store = net.store
    root = getattr(store, "root", None)
    if root is None:
        raise ValueError("this world keeps mail in memory: start it with "
                         "world.start(storage='maildir') to see files")
    account = store.imap_account(address)
    headers = ("folder", "UID", "flags", "file (under the user's Maildir)")
    rows = []
    base = store.path(address)
    for name, _special in account.folders():
        folder = None if name == "INBOX" else name
        info = account.folder(name)
        directory = store.path(address, folder)
        files = {}
        for sub in ("new", "cur"):
            if (directory / sub).is_dir():
                for path in sorted((directory / sub).iterdir()):
                    files[parse_maildir_name(path.name)[0]] = path.relative_to(base).as_posix()
        uidlist = (directory / "dovecot-uidlist").read_text().splitlines()[1:] \
            if (directory / "dovecot-uidlist").exists() else []
        keys = {int(line.split(" ", 1)[0]): line.split(":", 1)[1] for line in uidlist
                if ":" in line}
        if not info.messages:
            rows.append((name, "", "(empty)", ""))
        for message in info.messages:
            flags = " ".join(sorted(message.flags)) or "(none)"
            if message.recent:
                flags += "  [new: not seen by any mail program yet]"
            rows.append((name, str(message.uid), flags, files.get(keys.get(message.uid, ""),
                                                                   "")))
    return HTMLText(html_table(headers, rows, mono_columns=(3,)), text_table(headers, rows))


# -- the exercises of notebook 7b --------------------------------------------------------------

register(Exercise(
    "07b.stays", "Download or keep?",
    "Bob's mail program read message 1 with POP3 (RETR 1, DELE 1, QUIT) and message 2 with "
    "IMAP (FETCH 2 BODY[]). Which of them is still on the server? (a) message 1 "
    "(b) message 2 (c) both (d) neither",
    choice("b", {"a": "DELE marked message 1, and QUIT (the UPDATE state) removed it.",
                 "c": "POP3's DELE and QUIT removed message 1 from the server.",
                 "d": "Reading with IMAP leaves the message where it is: FETCH only marks "
                      "it \\Seen."},
           "IMAP reads a mailbox that stays on the server (FETCH only sets \\Seen); POP3 "
           "usually downloads and deletes."),
    hint="Compare the folder table before and after each session.",
    solution="(b): FETCH BODY[] leaves the message on the server and marks it \\Seen (an S "
             "in the Maildir file name); POP3's DELE + QUIT removed message 1.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
    'cell.'))

register(Exercise(
    "07b.seen", "Flags on disk",
    "Bob flagged a message he has read. What does its Maildir file name end with after "
    "':2,'? (The letters in ASCII order.)",
    text("FS", {"SF": "The letters are kept in ASCII order: F before S.",
                "S": "That is a message that is only \\Seen; \\Flagged adds an F.",
                "F": "He has read it too: \\Seen is an S."},
         "FS: F for \\Flagged, S for \\Seen, in ASCII order (the Maildir convention, "
         "Dovecot's and mutt's)."),
    hint="Look at the file column of the folder table: S is \\Seen, F is \\Flagged.",
    solution="FS: the IMAP server keeps flags in the file name, so a rename is the whole "
             "STORE; any Maildir program (mutt, Dovecot) reads the same flags.",
    answer_help='Write the letters in quotes instead of None (e.g. answer = "RT") and run the '
    'cell.'))

register(Exercise(
    "07b.idle", "Pushed, not polled",
    "While Bob's program was idling, Alice's third message arrived. Which word ends the first "
    "line the server pushed (* 1 ...)?",
    text("EXISTS", {"recent": "RECENT came second; the line that announces the new message "
                              "count is the other one.",
                    "fetch": "FETCH responses carry data the client asked for (or changed "
                             "flags); a new message is announced differently."},
         "* 1 EXISTS: the INBOX now holds 1 message (RFC 9051 §7.3.1), pushed during IDLE "
         "(RFC 2177)."),
    hint="Look at the lines read after '+ idling'.",
    solution="EXISTS: '* N EXISTS' says how many messages the mailbox has now; the client "
             "fetches the new one when it likes (after DONE).",
    answer_help='Write a word in quotes instead of None (e.g. answer = "FETCH") and run the '
    'cell.'))
