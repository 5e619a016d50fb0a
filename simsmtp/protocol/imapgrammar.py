"""The IMAP command grammar (RFC 9051 §9): a cursor over a command's arguments, sequence
sets, dates, flags and FETCH items. Pure functions and small types; the server core
(:mod:`simsmtp.protocol.imap`) runs the commands, :mod:`simsmtp.protocol.imapmessage`
renders a message's structure.

A client's syntax error raises :class:`BadCommand` (a
:class:`~simsmtp.protocol.errors.RemoteProtocolError`), answered ``BAD`` by the core.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from .errors import RemoteProtocolError

#: The system flags (RFC 9051 §2.3.2); \Recent is session-only (RFC 3501 §2.3.2).
SYSTEM_FLAGS: Final = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")
_FLAG_BY_UPPER: Final = {f.upper(): f for f in SYSTEM_FLAGS}
_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")


# --- parsing ---------------------------------------------------------------------------------


class BadCommand(RemoteProtocolError):
    """The client broke the command grammar: the core answers ``BAD <text>`` (the one place
    is ``IMAPServerConnection._dispatch``) and carries on."""


class Args:
    """A cursor over one command's arguments; literals stand as NUL placeholders."""

    def __init__(self, text: str, literals: list[bytes]) -> None:
        self.text = text
        self.pos = 0
        self.literals = literals
        self._next_literal = 0

    def at_end(self) -> bool:
        return self.pos >= len(self.text)

    def space(self) -> None:
        if self.text[self.pos:self.pos + 1] != " ":
            raise BadCommand("Missing argument")
        self.pos += 1

    def end(self) -> None:
        if not self.at_end():
            raise BadCommand("Unexpected argument")

    def peek(self) -> str:
        return self.text[self.pos:self.pos + 1]

    def literal(self) -> bytes:
        if self.peek() != "\0":
            raise BadCommand("Expected a literal")
        self.pos += 1
        value = self.literals[self._next_literal]
        self._next_literal += 1
        return value

    def atom(self) -> str:
        match = re.compile(r'[^\s(){%*"\\\]\0]+').match(self.text, self.pos)
        if not match:
            raise BadCommand("Missing argument")
        self.pos = match.end()
        return match.group(0)

    def seqset(self) -> str:
        """A sequence set (``1:3,5,7:*``, RFC 9051 §9)."""
        match = re.compile(r"[0-9:*,$]+").match(self.text, self.pos)
        if not match:
            raise BadCommand("Invalid messageset")
        self.pos = match.end()
        return match.group(0)

    def astring(self) -> str:
        """An atom, a quoted string or a literal (RFC 9051 §4.3)."""
        c = self.peek()
        if c == '"':
            out = []
            i = self.pos + 1
            while i < len(self.text):
                ch = self.text[i]
                if ch == "\\" and i + 1 < len(self.text) and self.text[i + 1] in '"\\':
                    out.append(self.text[i + 1])
                    i += 2
                    continue
                if ch == '"':
                    self.pos = i + 1
                    return "".join(out)
                out.append(ch)
                i += 1
            raise BadCommand("Missing '\"'")
        if c == "\0":
            return self.literal().decode("utf-8", "surrogateescape")
        match = re.compile(r'[^\s(){%*"\\\0]+').match(self.text, self.pos)  # ] allowed
        if not match:
            raise BadCommand("Missing argument")
        self.pos = match.end()
        return match.group(0)

    def list_mailbox(self) -> str:
        """A LIST pattern: an astring that may hold % and * (RFC 9051 §6.3.9)."""
        if self.peek() in ('"', "\0"):
            return self.astring()
        match = re.compile(r'[^\s(){"\\\0]+').match(self.text, self.pos)
        if not match:
            raise BadCommand("Missing argument")
        self.pos = match.end()
        return match.group(0)

    def paren_list(self) -> list[str]:
        """``(a b c)`` of atoms/astrings (flags, STATUS items, ID fields)."""
        if self.peek() != "(":
            raise BadCommand("Expected '('")
        self.pos += 1
        items: list[str] = []
        while self.peek() != ")":
            if self.at_end():
                raise BadCommand("Missing ')'")
            if items:
                self.space()
            if self.peek() == "\\":
                self.pos += 1
                items.append("\\" + self.atom())
            else:
                items.append(self.astring() if self.peek() in ('"', "\0") else self.atom())
        self.pos += 1
        return items

    def rest(self) -> str:
        value = self.text[self.pos:]
        self.pos = len(self.text)
        return value


_SEQ_RE = re.compile(r"(\d+|\*)(?::(\d+|\*))?")


def parse_set(text: str) -> list[tuple[int | None, int | None]]:
    """A sequence set (RFC 9051 §9: ``1:3,5,7:*``); None stands for ``*``."""
    ranges: list[tuple[int | None, int | None]] = []
    if text == "$":
        raise BadCommand("Invalid messageset")  # SEARCHRES is not supported
    for piece in text.split(","):
        match = _SEQ_RE.fullmatch(piece)
        if not match:
            raise BadCommand("Invalid messageset")
        a = None if match.group(1) == "*" else int(match.group(1))
        b_text = match.group(2)
        b = a if b_text is None else (None if b_text == "*" else int(b_text))
        if a == 0 or b == 0:
            raise BadCommand("Invalid messageset")
        ranges.append((a, b))
    return ranges


def in_set(n: int, ranges: list[tuple[int | None, int | None]], star: int) -> bool:
    for a, b in ranges:
        lo, hi = (star if a is None else a), (star if b is None else b)
        if min(lo, hi) <= n <= max(lo, hi):
            return True
    return False


def imap_date(when: float) -> str:
    """INTERNALDATE form: ``07-Dec-2026 13:37:57 +0000`` (RFC 9051 §9 date-time)."""
    t = time.gmtime(when)
    return f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year} " \
           f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} +0000"


def parse_date(text: str) -> tuple[int, int, int]:
    """A SEARCH date ``1-Feb-2026`` (RFC 9051 §9 date)."""
    match = re.fullmatch(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})", text)
    months = [m.lower() for m in _MONTHS]
    if not match or match.group(2).lower() not in months:
        raise BadCommand("Invalid search date")
    return int(match.group(3)), months.index(match.group(2).lower()) + 1, int(match.group(1))


def parse_datetime(text: str) -> float:
    """An APPEND date-time ``07-Dec-2026 13:37:57 +0000`` (RFC 9051 §9)."""
    match = re.fullmatch(r" ?(\d{1,2})-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) "
                         r"([+-])(\d\d)(\d\d)", text)
    months = [m.lower() for m in _MONTHS]
    if not match or match.group(2).lower() not in months:
        raise BadCommand("Invalid internal date")
    day, _, year, hh, mm, ss = (int(match.group(i)) if i != 2 else 0 for i in range(1, 7))
    stamp = calendar.timegm((year, months.index(match.group(2).lower()) + 1, day, hh, mm, ss))
    offset = (int(match.group(8)) * 60 + int(match.group(9))) * 60
    return float(stamp - offset if match.group(7) == "+" else stamp + offset)


def flags_text(flags: Iterable[str]) -> str:
    order = {f: i for i, f in enumerate((*SYSTEM_FLAGS, "\\Recent"))}
    return "(" + " ".join(sorted(flags, key=lambda f: order.get(f, 99))) + ")"


def normal_flags(names: Iterable[str]) -> tuple[frozenset[str], bool]:
    """The permanent flags named (case-insensitive), and whether \\Recent or an unknown
    system flag was asked for (keywords are dropped: they are not kept)."""
    flags = set()
    bad = False
    for name in names:
        known = _FLAG_BY_UPPER.get(name.upper())
        if known is not None:
            flags.add(known)
        elif name.startswith("\\"):
            bad = True
    return frozenset(flags), bad


# --- FETCH items -----------------------------------------------------------------------------

_FETCH_MACROS: Final = {
    "ALL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"],
    "FAST": ["FLAGS", "INTERNALDATE", "RFC822.SIZE"],
    "FULL": ["FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"],
}
_SECTION_RE = re.compile(
    r"(BODY(?:\.PEEK)?|BINARY(?:\.PEEK)?)\[([^\]]*)\](?:<(\d+)(?:\.(\d+))?>)?", re.I)
_SIMPLE_ITEMS: Final = frozenset({"FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE",
                                  "BODYSTRUCTURE", "BODY", "RFC822", "RFC822.HEADER",
                                  "RFC822.TEXT"})


def _split_items(text: str) -> list[str]:
    """Split ``FLAGS BODY[HEADER.FIELDS (A B)]<0.5> UID`` at spaces outside [] and ()."""
    items: list[str] = []
    current: list[str] = []
    depth = 0
    for ch in text:
        if ch in "[(":
            depth += 1
        elif ch in "])":
            depth -= 1
        if ch == " " and depth == 0:
            if current:
                items.append("".join(current))
            current = []
            continue
        current.append(ch)
    if current:
        items.append("".join(current))
    return items


@dataclass(frozen=True)
class FetchItem:
    name: str  # as echoed in the response (e.g. "BODY[HEADER]<0>")
    kind: str  # FLAGS, UID, ..., SECTION
    section: str = ""
    peek: bool = False
    partial: tuple[int, int | None] | None = None


def parse_fetch_items(text: str) -> list[FetchItem]:
    text = text.strip()
    if text.upper() in _FETCH_MACROS:
        return [FetchItem(n, n) for n in _FETCH_MACROS[text.upper()]]
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    elif text.startswith("("):
        raise BadCommand("Missing ')'")
    items = []
    for raw in _split_items(text):
        upper = raw.upper()
        if upper in _SIMPLE_ITEMS:
            items.append(FetchItem(upper, upper))
            continue
        match = _SECTION_RE.fullmatch(raw)
        if not match or match.group(1).upper().startswith("BINARY"):
            raise BadCommand(f"Unknown FETCH attribute: {raw}" if not match else
                       "BINARY is not supported")
        section = match.group(2).upper()
        partial = None
        if match.group(3) is not None:
            length = int(match.group(4)) if match.group(4) is not None else None
            partial = (int(match.group(3)), length)
        name = f"BODY[{match.group(2)}]" + (f"<{partial[0]}>" if partial else "")
        items.append(FetchItem(name, "SECTION", section, match.group(1).upper().endswith("PEEK"),
                           partial))
    if not items:
        raise BadCommand("Missing FETCH attributes")
    return items
