"""The mailbox as the IMAP core sees it: :class:`IMAPAccount` (one user's folders, the
protocol the network layer's Maildir account implements), its data (:class:`FolderInfo`,
:class:`MessageMeta`), its errors, and :class:`MemoryAccount` for tests and notebooks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from .mailbox import MailboxError, to_crlf

# --- the account ---------------------------------------------------------


class NoSuchFolder(MailboxError):
    """The folder does not exist (``NO [NONEXISTENT]``, RFC 5530 §3)."""


class FolderExists(MailboxError):
    """The folder already exists (``NO [ALREADYEXISTS]``, RFC 5530 §3)."""


@dataclass(frozen=True)
class MessageMeta:
    """One message of a folder as IMAP lists it.

    Attributes:
        uid: its UID (RFC 9051 §2.3.1.1), never reused while UIDVALIDITY holds.
        flags: its permanent flags (``\\Seen`` ...).
        size: RFC822.SIZE: the octets with CRLF line endings.
        internaldate: when it arrived (seconds since the epoch).
        recent: first session to see it (\\Recent, RFC 3501 §2.3.2).
    """

    uid: int
    flags: frozenset[str]
    size: int
    internaldate: float
    recent: bool = False


@dataclass(frozen=True)
class FolderInfo:
    """A folder's UIDVALIDITY, UIDNEXT and messages (in UID order)."""

    uidvalidity: int
    uidnext: int
    messages: tuple[MessageMeta, ...]


@runtime_checkable
class IMAPAccount(Protocol):
    """One user's folders, read and changed by the IMAP core.

    Implementations: :class:`MemoryAccount` here, the Maildir account of
    ``simsmtp.net.store``. Every method may raise
    :class:`~simsmtp.protocol.mailbox.MailboxError`; the core answers ``NO``.
    """

    def folders(self) -> list[tuple[str, str | None]]:
        """Every folder (INBOX first) with its special-use attribute (``\\Junk``) or None."""
        ...

    def folder(self, name: str, *, claim_recent: bool = False) -> FolderInfo:
        """The folder now; ``claim_recent`` makes this session the one that sees new
        messages as \\Recent (Maildir: ``new/`` to ``cur/``)."""
        ...

    def fetch(self, name: str, uid: int) -> bytes:
        """The message with CRLF line endings."""
        ...

    def set_flags(self, name: str, uid: int, flags: frozenset[str]) -> None: ...

    def append(self, name: str, message: bytes, flags: frozenset[str],
               internaldate: float | None) -> tuple[int, int]:
        """Store a message; returns (UIDVALIDITY, its UID)."""
        ...

    def copy(self, name: str, uids: Sequence[int], target: str) -> tuple[int, list[int]]:
        """Copy messages; returns (target's UIDVALIDITY, the new UIDs in order)."""
        ...

    def expunge(self, name: str, uids: Sequence[int]) -> None: ...

    def create(self, name: str) -> None: ...

    def delete(self, name: str) -> None: ...

    def rename(self, old: str, new: str) -> None: ...

    def generation(self) -> int:
        """A number that changes whenever any folder of the account may have changed."""
        ...


#: ``authenticator(user, password)`` returns the user's account, or None (wrong credentials).
Authenticator = Callable[[str, str], IMAPAccount | None]


def folder_name(name: str) -> str:
    return "INBOX" if name.upper() == "INBOX" else name


class MemoryAccount:
    """An in-memory :class:`IMAPAccount` for tests and notebooks (INBOX, Junk and Sent)."""

    SPECIAL = {"Junk": "\\Junk", "Sent": "\\Sent"}

    def __init__(self, messages: Iterable[bytes] = (), *, uidvalidity: int = 1,
                 now: Callable[[], float] = time.time) -> None:
        self._uidvalidity = uidvalidity
        self._now = now
        self._gen = 0
        # name -> [uidvalidity, uidnext, {uid: [data, flags, date, recent]}]
        self._boxes: dict[str, list[Any]] = {}
        for name in ("INBOX", "Junk", "Sent"):
            self.create(name)
        for data in messages:
            self.deliver(data)

    def _box(self, name: str) -> list[Any]:
        box = self._boxes.get(folder_name(name))
        if box is None:
            raise NoSuchFolder(f"Mailbox doesn't exist: {name}")
        return box

    def deliver(self, message: bytes, name: str = "INBOX") -> int:
        """A new message arrives (\\Recent for the next session that selects the folder)."""
        box = self._box(name)
        uid: int = box[1]
        box[1] += 1
        box[2][uid] = [to_crlf(message), frozenset(), self._now(), True]
        self._gen += 1
        return uid

    def folders(self) -> list[tuple[str, str | None]]:
        return [(n, self.SPECIAL.get(n)) for n in sorted(self._boxes, key=lambda n: (
            n != "INBOX", n))]

    def folder(self, name: str, *, claim_recent: bool = False) -> FolderInfo:
        box = self._box(name)
        metas = []
        for uid, (data, flags, date, recent) in sorted(box[2].items()):
            metas.append(MessageMeta(uid, flags, len(data), date, recent))
            if claim_recent:
                box[2][uid][3] = False
        return FolderInfo(box[0], box[1], tuple(metas))

    def fetch(self, name: str, uid: int) -> bytes:
        try:
            return bytes(self._box(name)[2][uid][0])
        except KeyError:
            raise MailboxError(f"message {uid} is gone") from None

    def set_flags(self, name: str, uid: int, flags: frozenset[str]) -> None:
        entry = self._box(name)[2].get(uid)
        if entry is not None:
            entry[1] = flags
            self._gen += 1

    def append(self, name: str, message: bytes, flags: frozenset[str],
               internaldate: float | None) -> tuple[int, int]:
        uid = self.deliver(message, name)
        entry = self._box(name)[2][uid]
        entry[1] = flags
        if internaldate is not None:
            entry[2] = internaldate
        return self._box(name)[0], uid

    def copy(self, name: str, uids: Sequence[int], target: str) -> tuple[int, list[int]]:
        source, dest = self._box(name), self._box(target)
        new = []
        for uid in uids:
            data, flags, date, _ = source[2][uid]
            new_uid = dest[1]
            dest[1] += 1
            dest[2][new_uid] = [data, flags, date, True]
            new.append(new_uid)
        self._gen += 1
        return dest[0], new

    def expunge(self, name: str, uids: Sequence[int]) -> None:
        box = self._box(name)
        for uid in uids:
            box[2].pop(uid, None)
        self._gen += 1

    def create(self, name: str) -> None:
        name = folder_name(name)
        if name in self._boxes:
            raise FolderExists("Mailbox already exists")
        self._boxes[name] = [self._uidvalidity + len(self._boxes), 1, {}]
        self._gen += 1

    def delete(self, name: str) -> None:
        if folder_name(name) == "INBOX":
            raise MailboxError("INBOX can't be deleted.")
        self._box(name)
        del self._boxes[folder_name(name)]
        self._gen += 1

    def rename(self, old: str, new: str) -> None:
        box = self._box(old)
        if folder_name(new) in self._boxes:
            raise FolderExists("Mailbox already exists")
        if folder_name(old) == "INBOX":
            raise MailboxError("Renaming INBOX isn't supported.")
        del self._boxes[folder_name(old)]
        self._boxes[folder_name(new)] = box
        self._gen += 1

    def generation(self) -> int:
        return self._gen
