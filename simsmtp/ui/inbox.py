"""Bob's mailbox as a mail program shows it: folders, the list of messages, one message
opened, its headers, its raw source, and its ``Authentication-Results`` and ``Received:``
chain explained line by line.

::

    ui.Inbox(net, "bob@anotherdomain.org")          # the mail program
    print(ui.inbox_text(net, "bob@anotherdomain.org", folder="Junk"))

It reads the **real Maildir** of the user on the world's disk (``net.store``), the files
the SMTP server wrote and the POP3 server serves, and nothing else:

* folders: ``INBOX`` (the Maildir itself) and every Maildir++ subfolder that exists
  (``.Junk`` where the MX files mail that fails DMARC under ``p=quarantine``, ``.Sent``
  once a mail program keeps a copy there);
* read or not: a message in ``new/`` has not been seen by any mail program; opening it
  moves the file to ``cur/`` and adds the ``S`` (seen) flag to its name
  (``<key>:2,S``), as mutt, Dovecot and every Maildir program do. The key stays, so POP3's
  UIDL does not change;
* the size is the file's size on disk (LF line ends; POP3 counts CRLF, a few bytes more).

Mail refused at the door (``550`` after DATA under ``p=reject``) never reaches a folder;
the view lists those from the world's trace (``auth.verdict`` events), with the reason,
so a learner sees where Mallory's spoof went: into Junk, or nowhere.
"""

from __future__ import annotations

import contextlib
import functools
import os
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from simsmtp.net.store import maildir_name, parse_maildir_name

from .base import View, html_widget, tabs
from .mailbox import received_hops
from .style import COLORS, HTMLText, Raw, callout, escape, html_table, pre, text_table

#: The folder of the Maildir itself.
INBOX = "INBOX"
#: Folders a mail program lists first, in this order (others follow, sorted).
_FIRST = ("Junk", "Sent", "Drafts", "Trash")

#: What each ``with`` keyword of a Received: header says (RFC 3848 §2-§3, RFC 5321 §4.4).
PROTOCOL_WORDS = {
    "SMTP": "plain SMTP (HELO)",
    "ESMTP": "ESMTP (EHLO), no TLS",
    "ESMTPA": "ESMTP with AUTH, no TLS (a password crossed in clear!)",
    "ESMTPS": "ESMTP over TLS (STARTTLS or TLS from the first byte)",
    "ESMTPSA": "ESMTP over TLS, after the sender logged in with AUTH",
    "LMTP": "LMTP (local delivery)",
}


# ------------------------------------------------------------------------------ reading

@dataclass(frozen=True)
class MessageRow:
    """One line of the message list.

    Attributes:
        folder: ``INBOX``, ``Junk`` …
        key: the Maildir key (the unique part of the file name).
        sender: the ``From:`` header as written (anyone can write anything there).
        subject: the ``Subject:``.
        date: the ``Date:``.
        size: octets of the file on disk.
        read: seen by a mail program (in ``cur/`` with the ``S`` flag).
        file: the file's path relative to the user's Maildir (``new/<key>``,
            ``cur/<key>:2,S``, ``.Junk/new/<key>``).
    """

    folder: str
    key: str
    sender: str
    subject: str
    date: str
    size: int
    read: bool
    file: str


def _store(net: Any) -> Any:
    store = getattr(net, "store", None)
    if store is None:
        raise ValueError("the world is not running: start it (net = world.start()) "
                         "to read its mailboxes")
    return store


def folders(net: Any, address: str) -> list[str]:
    """The user's folders: ``INBOX`` first, then Junk, Sent … if they exist."""
    found = list(_store(net).folders(address))
    first = [f for f in _FIRST if f in found]
    return [INBOX, *first, *sorted(f for f in found if f not in first)]


def _folder_arg(folder: str) -> str | None:
    return None if folder.upper() == INBOX else folder


def _maildir(net: Any, address: str, folder: str) -> Path | None:
    store = _store(net)
    if not hasattr(store, "path"):
        return None  # a world started with storage="memory": no files
    return Path(store.path(address, _folder_arg(folder)))


def _files(box: Path) -> list[tuple[str, Path]]:
    """(key, file) of every message in ``new/`` and ``cur/``, in key order."""
    found = []
    for sub in ("new", "cur"):
        directory = box / sub
        if not directory.is_dir():
            continue
        for entry in directory.iterdir():
            if entry.name.startswith(".") or not entry.is_file():
                continue
            found.append((parse_maildir_name(entry.name)[0], entry))
    return sorted(found)


def _is_read(path: Path) -> bool:
    flags = parse_maildir_name(path.name)[1]
    return path.parent.name == "cur" and flags is not None and "\\Seen" in flags


def _headers(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data, headersonly=True)
    return parsed


def _flat(value: object) -> str:
    return " ".join(str(value or "").split())


def messages(net: Any, address: str, folder: str = INBOX) -> list[MessageRow]:
    """The message list of one folder, oldest first, read from the Maildir on disk."""
    box = _maildir(net, address, folder)
    rows: list[MessageRow] = []
    if box is None:  # memory storage: the same list, without files or flags
        store = _store(net)
        for key in store.keys(address, _folder_arg(folder)):
            data = store.get_bytes(address, key, _folder_arg(folder))
            head = _headers(data)
            rows.append(MessageRow(folder, key, _flat(head["From"]), _flat(head["Subject"]),
                                   _flat(head["Date"]), len(data), False, "(memory)"))
        return rows
    user = Path(_store(net).path(address))
    for key, path in _files(box):
        try:
            data = path.read_bytes()
        except FileNotFoundError:  # a POP3 client deleted it meanwhile
            continue
        head = _headers(data)
        rows.append(MessageRow(folder, key, _flat(head["From"]), _flat(head["Subject"]),
                               _flat(head["Date"]), len(data), _is_read(path),
                               path.relative_to(user).as_posix()))
    return rows


def read_message(net: Any, address: str, key: str, folder: str = INBOX, *,
                 mark_read: bool = True) -> bytes:
    """The message ``key`` as stored; ``mark_read`` does what a mail program does when it
    opens one: ``new/<key>`` moves to ``cur/<key>:2,S`` (the key stays the same)."""
    box = _maildir(net, address, folder)
    if box is None:
        data: bytes = _store(net).get_bytes(address, key, _folder_arg(folder))
        return data
    for found, path in _files(box):
        if found != key:
            continue
        data = path.read_bytes()
        if mark_read and not _is_read(path):
            flags = parse_maildir_name(path.name)[1] or frozenset()
            target = box / "cur" / maildir_name(key, flags | {"\\Seen"})
            with contextlib.suppress(FileNotFoundError):  # gone meanwhile (POP3 DELE)
                os.rename(path, target)
        return data
    raise KeyError(f"no message {key!r} in the {folder} of {address}")


# ------------------------------------------------------------------------------ explaining

def _parse(message: EmailMessage | bytes) -> EmailMessage:
    if isinstance(message, EmailMessage):
        return message
    parsed = BytesParser(policy=policy.default).parsebytes(message)
    return parsed


def explain_received(message: EmailMessage | bytes) -> list[tuple[str, str]]:
    """(the header as written, what it says) for every ``Received:`` line, top to bottom.

    The top one was added last (RFC 5321 §4.4: each server prepends its own), so the
    explanation numbers the hops from the bottom: hop 1 is the first server.
    """
    parsed = _parse(message)
    raw = [_flat(h) for h in parsed.get_all("Received") or []]
    hops = received_hops(parsed)  # first hop first
    total = len(hops)
    out: list[tuple[str, str]] = []
    for index, header in enumerate(raw):
        hop = hops[total - 1 - index]
        where = "the only server" if total == 1 else \
            "the first server (the bottom line)" if hop.step == 1 else \
            "the last server, Bob's own (the top line)" if hop.step == total else \
            f"server {hop.step} of {total}"
        words = [f"Hop {hop.step}, {where}: {hop.by or '?'} received the message"]
        if hop.from_name:
            words.append(f"from a machine that called itself {hop.from_name} in HELO/EHLO "
                         "(the client chooses that name: it proves nothing)")
        if hop.from_detail:
            words.append(f"and that the server itself saw as {hop.from_detail} "
                         "(its reverse DNS name and IP address: this part is trustworthy, "
                         "if you trust the server that wrote it)")
        if hop.protocol:
            meaning = PROTOCOL_WORDS.get(hop.protocol.upper(), "")
            words.append(f"with {hop.protocol}" + (f" = {meaning}" if meaning else ""))
        if hop.tls:
            words.append(f"using {hop.tls}")
        if hop.authenticated:
            words.append(f"after {hop.authenticated} logged in (AUTH)")
        if hop.queue_id:
            words.append(f"under queue id {hop.queue_id} (find it in that server's log)")
        if hop.recipient:
            words.append(f"for <{hop.recipient}>")
        if hop.date:
            words.append(f"at {hop.date}")
        out.append((f"Received: {header}", ", ".join(words) + "."))
    return out


def explain_authentication_results(message: EmailMessage | bytes, *,
                                   trusted: str | None = None) -> list[tuple[str, str]]:
    """(a piece of the header, what it says) for each ``Authentication-Results`` field
    and each result in it (RFC 8601), top (newest) first.

    Args:
        message: the message.
        trusted: the name of the user's own server: only its results can be trusted
            (anyone on the way can add such a header, RFC 8601 §5).
    """
    from simsmtp.world.mailauth.results import PROPERTY_MEANINGS, authentication_results

    out: list[tuple[str, str]] = []
    for ar in authentication_results(_parse(message)):
        if trusted is None:
            who = f"{ar.authserv_id} checked the message and wrote down what it found"
        elif ar.authserv_id.lower() == trusted.lower():
            who = (f"{ar.authserv_id}, the user's own server, checked the message on "
                   "arrival: trust this one")
        else:
            who = (f"{ar.authserv_id} (not the user's server) says so: anyone on the way "
                   "could have written this, trust it only if you trust them")
        out.append((f"Authentication-Results: {ar.authserv_id};", who + "."))
        for result in ar.results:
            piece = f"{result.method}={result.result}"
            props = "; ".join(f"{k}={v}: {PROPERTY_MEANINGS.get(k, '')}".rstrip(": ")
                              for k, v in result.properties.items())
            shown = " ".join([piece] + [f"({result.comment})" if result.comment else ""]
                             + [f"{k}={v}" for k, v in result.properties.items()]).strip()
            meaning = result.meaning or "(no explanation for this result)"
            extra = f" [{props}]" if props else ""
            policy_words = ""
            if result.method == "dmarc" and "p=" in result.comment:
                policy_words = (f" The domain's policy and what the server did: "
                                f"{result.comment} (p= asked, dis= done).")
            out.append((f"  {' '.join(shown.split())}",
                        f"{result.method.upper()} {result.result}: {meaning}.{extra}"
                        f"{policy_words}"))
    return out


def refused(world: Any, address: str, *, since: int = 0) -> list[dict[str, str]]:
    """Messages for ``address`` the MX refused after DATA (never stored), from the trace
    (``auth.verdict`` with ``action="reject"``): sender, HELO, client address, results,
    reason and the reply the sender got."""
    trace = getattr(world, "trace", world)
    found = []
    for e in trace.events("auth.verdict"):
        if e.seq < since or e.get("action") != "reject":
            continue
        if address.lower() not in [str(r).lower() for r in e.get("recipients") or []]:
            continue
        found.append({"host": e.host, "sender": str(e.get("sender") or "<>"),
                      "helo": str(e.get("helo") or ""), "client_ip": str(e.get("client_ip")
                                                                       or ""),
                      "summary": str(e.get("summary") or ""),
                      "reason": str(e.get("reason") or ""), "reply": str(e.get("reply") or "")})
    return found


def _verdict(parsed: EmailMessage, folder: str) -> tuple[str, str]:
    """(callout kind, one line) saying why the message is where it is."""
    from simsmtp.world.mailauth import authentication_results

    found = authentication_results(parsed)
    if not found:
        return "note", "No Authentication-Results: nobody checked where it came from."
    results = {r.method: r for r in found[0].results}
    summary = " ".join(f"{m}={r.result}" for m, r in results.items())
    dmarc = results.get("dmarc")
    if folder == "Junk":
        why = f" ({dmarc.comment})" if dmarc is not None and dmarc.comment else ""
        return "warn", (f"In Junk because its checks failed: {summary}{why}. The From: line "
                        "says who the sender claims to be; these results say it is not so.")
    if dmarc is not None and dmarc.result == "fail":
        return "fail", (f"{summary}: the From: cannot be trusted, but the domain's policy "
                        f"({dmarc.comment or 'p=none'}) asked to deliver it anyway.")
    if dmarc is not None and dmarc.result == "pass":
        return "ok", f"{summary}: the From: domain vouches for this message."
    return "note", summary


def inbox_text(net: Any, address: str, folder: str = INBOX) -> str:
    """The folder list and one folder's messages as text (what ``print`` shows)."""
    rows = messages(net, address, folder)
    head = f"{address}: folders {', '.join(folders(net, address))}; {folder}: " \
           f"{len(rows)} message{'s' if len(rows) != 1 else ''}"
    table = text_table(["", "from", "subject", "date", "size"],
                       [("  " if r.read else "● ", r.sender, r.subject, r.date, r.size)
                        for r in rows])
    return head + ("\n" + table if rows else "")


def message_text(message: EmailMessage | bytes, *, trusted: str | None = None) -> str:
    """A message explained as text: its Received: chain and Authentication-Results."""
    lines = ["The Received: chain, top to bottom (read it bottom up):"]
    lines += [f"{header}\n    -> {words}" for header, words in explain_received(message)]
    lines.append("Authentication-Results:")
    lines += [f"{piece}\n    -> {words}"
              for piece, words in explain_authentication_results(message, trusted=trusted)]
    return "\n".join(lines)


def _explained(pairs: list[tuple[str, str]], empty: str) -> str:
    if not pairs:
        return str(callout("note", escape(empty)))
    rows = [(Raw(f"<code style='white-space:pre-wrap;font-size:12px;color:{COLORS['text']};"
                 f"'>{escape(piece)}</code>"), words) for piece, words in pairs]
    return str(html_table(["the line", "what it says"], rows))


# ------------------------------------------------------------------------------ the widget

class Inbox(View):
    """A mail program's window on one user's Maildir.

    Args:
        net: the running world.
        address: whose mailbox (default Bob's).
        folder: the folder to show first.
        open_first: open the newest message of that folder at once.
        mark_read: opening a message marks it read (moves it to ``cur/``), as a mail
            program does.

    Controls: ``folder_picker`` (ToggleButtons), ``open_buttons`` (one per message shown,
    in list order: the newest :attr:`LIMIT`), ``refresh_button`` (read the Maildir
    again), ``tabs`` (the opened message: Read | Headers | Source |
    Authentication-Results | Received: chain).
    """

    TABS = ("Read", "Headers", "Source", "Authentication-Results", "Received: chain")
    #: How many messages the list shows at most (the newest).
    LIMIT = 100

    def __init__(self, net: Any, address: str = "bob@anotherdomain.org", *,
                 folder: str = INBOX, open_first: bool = False, mark_read: bool = True
                 ) -> None:
        import ipywidgets as w

        self.net = net
        self.address = address
        self.mark_read = mark_read
        self.rows: list[MessageRow] = []
        self.opened: MessageRow | None = None
        self.folder_picker = w.ToggleButtons(options=[INBOX], value=INBOX,
                                             style={"button_width": "auto"})
        self.refresh_button = w.Button(description="↻ Refresh", tooltip="read the Maildir "
                                       "again", layout=w.Layout(width="100px"))
        self.title = html_widget()
        self.listing = w.GridBox(layout=w.Layout(grid_template_columns="130px 1fr 1.4fr 1fr "
                                                 "80px", grid_gap="2px 8px", width="98%"))
        self.open_buttons: list[Any] = []
        self.refused_view = html_widget()
        self.panes = [html_widget() for _ in self.TABS]
        self.tabs = tabs(self.panes, list(self.TABS))
        self.widget = w.VBox([
            w.HBox([self.folder_picker, self.refresh_button],
                   layout=w.Layout(align_items="center", flex_flow="row wrap")),
            self.title, self.listing, self.refused_view, self.tabs])
        self.widget.add_class("simsmtp-inbox")
        self.listing.add_class("simsmtp-inbox-list")
        self.tabs.add_class("simsmtp-inbox-message")
        self.refresh(folder)
        self.folder_picker.observe(
            self.guarded(lambda change: self.show_folder(change["new"])), "value")
        self.refresh_button.on_click(self.guarded(lambda _: self.refresh()))
        if open_first and self.rows:
            self.open(len(self.rows) - 1)

    @property
    def folder(self) -> str:
        return str(self.folder_picker.value)

    def refresh(self, folder: str | None = None) -> None:
        """Read the folders and the current folder from disk again."""
        names = folders(self.net, self.address)
        wanted = folder or self.folder
        self.folder_picker.options = names
        self.folder_picker.value = wanted if wanted in names else INBOX
        self.show_folder(self.folder_picker.value)

    def show_folder(self, folder: str) -> None:
        """List ``folder``'s messages (the opened message stays open)."""
        import ipywidgets as w

        self.rows = messages(self.net, self.address, folder)
        unread = sum(1 for r in self.rows if not r.read)
        self.title.value = (f"<div style='font-size:13px;color:{COLORS['text']};'><b>"
                            f"{escape(self.address)}</b> · {escape(folder)}: "
                            f"{len(self.rows)} message{'s' if len(self.rows) != 1 else ''}, "
                            f"{unread} unread</div>")
        head = [html_widget(f"<b>{escape(h)}</b>") for h in ("", "From", "Subject", "Date", "Size")]
        cells: list[Any] = list(head)
        self.open_buttons = []
        first = max(0, len(self.rows) - self.LIMIT)  # the newest, as a mail program scrolls
        if first:
            cells += [html_widget(f"<i>{first} older</i>")] + [html_widget("") for _ in range(4)]
        for index, row in enumerate(self.rows[first:], first):
            button = w.Button(description="open" if row.read else "● open (new)",
                              tooltip=row.file, layout=w.Layout(width="auto"))
            button.add_class("simsmtp-inbox-open")
            button.on_click(self.guarded(functools.partial(self._open_clicked, index)))
            self.open_buttons.append(button)
            weight = "normal" if row.read else "bold"
            style = (f"font-weight:{weight};font-size:12.5px;color:{COLORS['text']};"
                     "display:block;line-height:1.45;")  # a cell may wrap
            cells += [button] + [html_widget(f"<span style='{style}'>{escape(value)}</span>")
                                 for value in (row.sender, row.subject or "(no subject)",
                                               row.date, f"{row.size:,} B")]
        if not self.rows:
            cells.append(html_widget(f"<i>({escape(folder)} is empty)</i>"))
        self.listing.children = cells
        gone = refused(self.net.world, self.address) if hasattr(self.net, "world") else []
        if gone:
            rows = [(g["sender"], g["client_ip"], g["summary"], g["reply"] or g["reason"])
                    for g in gone]
            title = f"Refused at the door, never stored ({len(gone)}): from the trace"
            self.refused_view.value = str(callout(
                "fail", f"<b>{escape(title)}</b>" + str(html_table(
                    ["MAIL FROM", "from address", "checks", "answered"], rows,
                    mono_columns=(0, 1)))))
        else:
            self.refused_view.value = ""
        if self.opened is None:
            for pane in self.panes:
                pane.value = str(callout("note", "Click open on a message to read it."))

    def _open_clicked(self, index: int, _button: Any) -> None:
        self.open(index)

    def open(self, index: int) -> None:
        """Open the message at ``index`` of the list (marks it read)."""
        row = self.rows[index]
        data = read_message(self.net, self.address, row.key, row.folder,
                            mark_read=self.mark_read)
        parsed = _parse(data)
        row = next((r for r in messages(self.net, self.address, row.folder)
                    if r.key == row.key), row)  # read now: its file moved to cur/
        self.opened = row
        trusted = self._own_server()
        kind, why = _verdict(parsed, row.folder)
        body = ""
        try:
            part = parsed.get_body(preferencelist=("plain", "html"))
            body = str(part.get_content()) if part is not None else ""
        except (KeyError, LookupError, ValueError, AttributeError):
            body = "(the body could not be decoded)"
        summary = [("From", _flat(parsed["From"])), ("To", _flat(parsed["To"])),
                   ("Subject", _flat(parsed["Subject"])), ("Date", _flat(parsed["Date"])),
                   ("Folder", row.folder), ("File", row.file)]
        self.panes[0].value = (str(callout(kind, f"<b>Where it came from:</b> {escape(why)}"))
                               + str(html_table(["", ""], summary, mono_columns=(1,)))
                               + str(pre(body.replace("\r\n", "\n"), max_height="16em")))
        self.panes[1].value = str(html_table(
            ["field", "value"], [(k, _flat(v)) for k, v in parsed.items()],
            mono_columns=(0, 1), max_height="22em"))
        self.panes[2].value = str(pre(data.decode("utf-8", "replace"), max_height="24em"))
        self.panes[3].value = _explained(explain_authentication_results(parsed,
                                                                        trusted=trusted),
                                         "No Authentication-Results header: no server "
                                         "checked where this message came from.")
        self.panes[4].value = _explained(explain_received(parsed),
                                         "No Received: header: it never crossed a server.")
        self.tabs.buttons.index = self.tabs.stack.selected_index = 0
        self.show_folder(self.folder)  # it is read now

    def _own_server(self) -> str | None:
        world = getattr(self.net, "world", None)
        if world is None:
            return None
        domain = self.address.rpartition("@")[2].lower()
        d = world.domains.get(domain)
        if d is not None and d.mx:
            return str(sorted(d.mx, key=lambda r: r.preference)[0].exchange).rstrip(".")
        return None

    def __repr__(self) -> str:
        opened = f", open: {self.opened.subject!r}" if self.opened is not None else ""
        return (f"Inbox({self.address}, {self.folder}: {len(self.rows)} "
                f"message{'s' if len(self.rows) != 1 else ''}{opened})")


def inbox(net: Any, address: str = "bob@anotherdomain.org", folder: str = INBOX) -> HTMLText:
    """The message list of one folder as a table (HTML) and as text."""
    rows = messages(net, address, folder)
    html_ = html_table(["", "from", "subject", "date", "size", "file"],
                       [("" if r.read else "●", r.sender, r.subject, r.date, r.size, r.file)
                        for r in rows], caption=f"{address} · {folder}",
                       mono_columns=(5,))
    return HTMLText(str(html_), inbox_text(net, address, folder))


__all__ = ["INBOX", "Inbox", "MessageRow", "explain_authentication_results",
           "explain_received", "folders", "inbox", "inbox_text", "message_text", "messages",
           "read_message", "refused"]
