"""The maildrop as the POP3 core sees it: a :class:`Mailbox` protocol, an
:data:`Authenticator`, and :class:`MemoryMailbox` for tests.

The network layer backs :class:`Mailbox` with Maildir (``simsmtp.net.store``); the POP3 core
(``simsmtp.protocol.pop3``) only reads through this interface, so it stays sans-IO.

Line endings: messages handed to POP3 always use CRLF (RFC 1939 §3: "lines ... terminated
by a CRLF pair"), and every size is the size *as sent* with CRLF, before byte-stuffing
(RFC 1939 §5, STAT/LIST: "the exact size of the message in octets").
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

__all__ = [
    "Authenticator",
    "Mailbox",
    "MailboxError",
    "MaildropInUse",
    "MemoryMailbox",
    "MessageInfo",
    "is_valid_uid",
    "to_crlf",
    "to_lf",
]

#: A unique-id is 1 to 70 characters in the range 0x21 to 0x7E (RFC 1939 §7, UIDL).
MAX_UID_LENGTH = 70
_UID_RE = re.compile(rb"[\x21-\x7e]{1,70}")
_LINE_END_RE = re.compile(rb"\r\n|\r|\n")


class MailboxError(Exception):
    """The maildrop could not be read or changed (a file vanished, a disk error).

    The POP3 core turns it into an ``-ERR`` reply, never a crash.
    """


class MaildropInUse(MailboxError):
    """Another session holds the maildrop's lock (RFC 1939 §8: the server SHOULD lock the
    maildrop): the POP3 core answers ``-ERR [IN-USE] ...`` (RFC 2449 §8.1.2)."""


@dataclass(frozen=True)
class MessageInfo:
    """One message of a maildrop as POP3 lists it.

    Attributes:
        uid: unique id for UIDL (RFC 1939 §7: 1-70 characters 0x21-0x7E), stable across
            sessions.
        size: size in octets as it will be sent, i.e. with CRLF line endings and before
            byte-stuffing (RFC 1939 §5).
    """

    uid: str
    size: int


@runtime_checkable
class Mailbox(Protocol):
    """A user's maildrop, read by the POP3 core.

    Implementations: :class:`MemoryMailbox` here, the Maildir view of
    ``simsmtp.net.store.MaildirStore.mailbox``.
    """

    def list_messages(self) -> Sequence[MessageInfo]:
        """The messages, in a stable order (message numbers are positions from 1)."""
        ...

    def get(self, uid: str) -> bytes:
        """The message with CRLF line endings.

        Raises:
            MailboxError: the message is gone or unreadable.
        """
        ...

    def delete(self, uids: Iterable[str]) -> None:
        """Remove these messages for good (called at QUIT, in the UPDATE state only).

        Raises:
            MailboxError: some messages could not be removed.
        """
        ...


#: ``authenticator(user, password)`` returns the user's maildrop, or ``None`` when the
#: credentials are wrong. It may raise :class:`MailboxError` (maildrop unavailable).
Authenticator = Callable[[str, str], Mailbox | None]


def to_crlf(data: bytes) -> bytes:
    """Return ``data`` with every line ending (CRLF, bare LF, bare CR) as CRLF."""
    return _LINE_END_RE.sub(b"\r\n", data)


def to_lf(data: bytes) -> bytes:
    """Return ``data`` with every line ending (CRLF, bare LF, bare CR) as LF (Maildir's)."""
    return _LINE_END_RE.sub(b"\n", data)


def is_valid_uid(uid: str) -> bool:
    """True if ``uid`` is a valid UIDL unique-id (RFC 1939 §7)."""
    try:
        raw = uid.encode("ascii")
    except UnicodeEncodeError:
        return False
    return _UID_RE.fullmatch(raw) is not None


class MemoryMailbox:
    """An in-memory :class:`Mailbox` for tests and notebooks.

    Args:
        messages: message bytes (uids ``"1"``, ``"2"``, ...) or a mapping uid -> bytes.
            Line endings are normalised to CRLF.

    Example:
        >>> box = MemoryMailbox([b"Subject: hi\\n\\nhello\\n"])
        >>> box.list_messages()[0].size
        22
    """

    def __init__(self, messages: Iterable[bytes] | Mapping[str, bytes] = ()) -> None:
        self._messages: dict[str, bytes] = {}
        self._next = 1
        if isinstance(messages, Mapping):
            for uid, data in messages.items():
                self.add(data, uid)
        else:
            for data in messages:
                self.add(data)
        #: uids removed by :meth:`delete`, in order (for tests).
        self.deleted: list[str] = []

    def add(self, message: bytes, uid: str | None = None) -> str:
        """Append a message and return its uid.

        Raises:
            ValueError: ``uid`` is not a valid unique-id or is already used.
        """
        if uid is None:
            while str(self._next) in self._messages:
                self._next += 1
            uid = str(self._next)
        if not is_valid_uid(uid) or uid in self._messages:
            raise ValueError(f"bad or duplicate unique-id {uid!r} (RFC 1939 §7)")
        self._messages[uid] = to_crlf(message)
        return uid

    def list_messages(self) -> Sequence[MessageInfo]:
        """The messages in insertion order."""
        return [MessageInfo(uid, len(data)) for uid, data in self._messages.items()]

    def get(self, uid: str) -> bytes:
        """The message with CRLF line endings."""
        try:
            return self._messages[uid]
        except KeyError:
            raise MailboxError(f"no message with uid {uid!r}") from None

    def delete(self, uids: Iterable[str]) -> None:
        """Remove messages (unknown uids are ignored: already gone)."""
        for uid in uids:
            if self._messages.pop(uid, None) is not None:
                self.deleted.append(uid)

    def __len__(self) -> int:
        return len(self._messages)
