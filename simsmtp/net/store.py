"""Mail storage behind the SMTP handler and the POP3 server: Maildir on disk, or memory.

A message the SMTP server accepts with ``250`` must already be safe on disk (RFC 5321
§6.1: "it MUST NOT lose the message"). :meth:`MaildirStore.deliver` therefore writes the
message to ``tmp/``, flushes it, ``os.fsync``\\ s the file, renames it into ``new/`` and
``fsync``\\ s the ``new/`` directory, and only then returns. If any step fails it removes
what it wrote and raises :class:`StorageError`; the SMTP handler answers
``451 4.3.0`` (RFC 3463 §3.5: 4.3.0 "other or undefined mail system status").

Why not ``mailbox.Maildir.add``: the stdlib writes and renames but never calls ``fsync``
(neither on the file nor on the directory), so a crash right after the ``250`` could lose
the message. The stdlib ``mailbox.Maildir`` is still used for everything it does well:
listing ``new/`` and ``cur/``, reading, removing.

Layout (one Maildir per user, Maildir++ folders inside it)::

    root/<domain>/<local>/{tmp,new,cur}/           the INBOX
    root/<domain>/<local>/.<Folder>/{tmp,new,cur}/ e.g. ".Junk", created on demand

Choices, documented for learners:

* Domains and local parts are lower-cased (``Alice@Example.ORG`` is ``alice`` at
  ``example.org``); characters that could leave the tree (``/``, ``\\``, NUL, a leading
  ``.``) are refused with :class:`InvalidAddress`.
* Files on disk use LF line endings (the Maildir convention, what ``mutt`` and the
  stdlib expect); the POP3 view sends them with CRLF and reports CRLF sizes.
* Keys are ``<sec>.M<usec>P<pid>Q<n>R<random>.<host>`` (the Maildir "unique name"),
  at most 70 characters so each is also a valid POP3 UIDL unique-id (RFC 1939 §7).
  A world can pass ``key_factory`` for reproducible keys in notebooks.
* A file in ``cur/`` is ``<key><sep>2,<flags>``; ``<sep>`` is ``:`` (the Maildir spec),
  except on Windows, where ``:`` cannot be in a file name: there it is ``!``, as Dovecot's
  ``maildir_info_separator`` chooses. :func:`info_separator` says which, and
  :func:`open_maildir` is how every reader opens a Maildir with it.
* Where a directory cannot be opened to ``fsync`` it (Windows: no ``O_DIRECTORY``;
  NTFS journals the rename itself), the directory ``fsync`` is skipped.

IMAP state lives in the Maildir the way Dovecot keeps it (:meth:`MessageStore.imap_account`):

* A message in ``new/`` has not been seen by any mail program yet (IMAP's \\Recent); the
  first IMAP session that selects the folder moves it to ``cur/`` as ``<key>:2,<flags>``,
  the flags being letters in ASCII order: ``D`` \\Draft, ``F`` \\Flagged, ``R``
  \\Answered (replied), ``S`` \\Seen, ``T`` \\Deleted (trashed). One function reads a
  file name (:func:`parse_maildir_name`), one writes it (:func:`maildir_name`).
* ``dovecot-uidlist`` in each folder keeps UIDVALIDITY, the next UID and every message's
  UID (``3 V<validity> N<next>`` then ``<uid> :<key>``), so UIDs survive a restart.
* INBOX, ``.Junk`` and ``.Sent`` exist from the start (Maildir++ folders, "." separated);
  the INTERNALDATE of a message is its file's modification time.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import mailbox as _mailbox
import os
import secrets
import shutil
import socket
import threading
import time
import weakref
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from ..protocol.mailbox import (
    MAX_UID_LENGTH,
    Mailbox,
    MailboxError,
    MessageInfo,
    is_valid_uid,
    to_crlf,
    to_lf,
)

__all__ = [
    "FLAG_LETTERS",
    "INFO_SEPARATOR",
    "FolderAccount",
    "InvalidAddress",
    "MaildirMailbox",
    "MaildirStore",
    "MemoryStore",
    "MessageStore",
    "StorageError",
    "maildir_name",
    "parse_maildir_name",
    "split_address",
]

KeyFactory = Callable[[], str]

#: Dovecot's file of UIDs in each Maildir folder.
UIDLIST = "dovecot-uidlist"

_COUNTER = itertools.count(1)  # next() on a count is atomic under the GIL
#: Keys tried per delivery before giving up (a key already in new/, cur/ or tmp/ is skipped).
MAX_KEY_ATTEMPTS = 100
_FORBIDDEN = frozenset("/\\\x00")


#: What separates a Maildir file's unique name from its info (``<key>:2,<flags>``); on
#: Windows, where ``:`` cannot be in a file name, ``!`` (Dovecot's maildir_info_separator).
INFO_SEPARATOR = "!" if os.name == "nt" else ":"
#: IMAP system flag -> Maildir info letter (the letters Dovecot and mutt use).
FLAG_LETTERS = {"\\Draft": "D", "\\Flagged": "F", "\\Answered": "R", "\\Seen": "S",
                "\\Deleted": "T"}
_LETTER_FLAGS = {v: k for k, v in FLAG_LETTERS.items()}
#: Folders every IMAP account has from the start, with their RFC 6154 special use.
STANDARD_FOLDERS = {"Junk": "\\Junk", "Sent": "\\Sent"}


def parse_maildir_name(name: str) -> tuple[str, frozenset[str] | None]:
    """A Maildir file name -> ``(key, flags)``; flags None when the name has no ``:2,``
    info (a message still in ``new/``). Unknown letters are ignored."""
    key, sep, info = name.partition(INFO_SEPARATOR)
    if not sep or not info.startswith("2,"):
        return key, None
    return key, frozenset(_LETTER_FLAGS[c] for c in info[2:] if c in _LETTER_FLAGS)


def maildir_name(key: str, flags: frozenset[str] | None) -> str:
    """``key`` (for ``new/``) or ``key:2,<letters in ASCII order>`` (for ``cur/``)."""
    if flags is None:
        return key
    return f"{key}{INFO_SEPARATOR}2," + "".join(sorted(FLAG_LETTERS[f] for f in flags
                                                       if f in FLAG_LETTERS))


class StorageError(Exception):
    """The message could not be stored durably; nothing was left in ``new/``.

    The SMTP handler answers ``451 4.3.0`` (RFC 5321 §4.2.2 "451 Requested action
    aborted: local error in processing"; RFC 3463 §3.5).
    """


class InvalidAddress(StorageError, ValueError):
    """The address cannot name a mailbox in the store (empty part, ``/``, ``..`` ...)."""


def _check_part(part: str, what: str, address: str) -> str:
    if (not part or part.startswith(".") or any(c in _FORBIDDEN for c in part)
            or any(ord(c) < 0x20 or ord(c) == 0x7F for c in part)):
        raise InvalidAddress(f"cannot store mail for {address!r}: bad {what} {part!r}")
    return part


def split_address(address: str) -> tuple[str, str]:
    """``"Alice@Example.ORG"`` -> ``("example.org", "alice")``.

    Raises:
        InvalidAddress: no ``@``, an empty part, or a character that could escape the tree.
    """
    text = address.strip()
    if text.startswith("<") and text.endswith(">"):
        text = text[1:-1]
    local, at, domain = text.rpartition("@")
    if not at:
        raise InvalidAddress(f"cannot store mail for {address!r}: no '@'")
    return (_check_part(domain.lower().rstrip("."), "domain", address),
            _check_part(local.lower(), "local part", address))


def _check_folder(folder: str | None) -> str | None:
    if folder is None or folder.upper() == "INBOX":
        return None
    return _check_part(folder, "folder", folder)


def _maildir_key(hostname: str) -> str:
    """A Maildir unique name that is also a valid UIDL (<= 70 chars, RFC 1939 §7)."""
    now = time.time()
    sec = int(now)
    base = (f"{sec}.M{int((now - sec) * 1e6):06d}P{os.getpid()}Q{next(_COUNTER)}"
            f"R{secrets.token_hex(4)}")
    host = hostname.replace("/", "\\057").replace(":", "\\072").replace(" ", "_")
    room = MAX_UID_LENGTH - len(base) - 1
    return f"{base}.{host[:room]}" if room > 0 and host else base


def _uid_for(key: str) -> str:
    """The key itself when it is a valid unique-id, else a digest of it (RFC 1939 §7)."""
    if is_valid_uid(key):
        return key
    return "h" + hashlib.sha256(key.encode("utf-8", "surrogateescape")).hexdigest()[:40]


def _fsync_dir(path: Path) -> None:
    """Make a directory entry (a rename, a new file, a removal) durable (POSIX).

    Skipped where directories cannot be opened (no ``os.O_DIRECTORY``: Windows, whose
    NTFS journals the rename itself)."""
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    fd = os.open(path, os.O_RDONLY | flag)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def info_separator() -> str:
    """The Maildir info separator of this platform (see :data:`INFO_SEPARATOR`)."""
    return INFO_SEPARATOR


def open_maildir(path: Path, *, create: bool = False) -> _mailbox.Maildir:
    """The stdlib ``mailbox.Maildir`` at ``path`` (bytes messages), using this platform's
    :func:`info_separator`: the one way this package opens a Maildir to read it."""
    md = _mailbox.Maildir(path, factory=None, create=create)
    md.colon = info_separator()
    return md


def _in_cur(box: Path, key: str) -> bool:
    """Whether ``cur/`` holds a message with this key (``<key>:2,<flags>``, Maildir).

    A plain listing and a prefix test: cheaper than a glob (no pattern to compile per
    delivery) and exact for keys with glob characters in them."""
    try:
        return any(parse_maildir_name(name)[0] == key for name in os.listdir(box / "cur"))
    except FileNotFoundError:
        return False


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


class MessageStore(ABC):
    """What the SMTP handler and POP3 use; :class:`MaildirStore` and :class:`MemoryStore`.

    Args:
        hostname: the host name in generated keys.
        key_factory: makes a new unique key per delivery (default: Maildir unique names).
    """

    def __init__(self, *, hostname: str, key_factory: KeyFactory | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        self.hostname = hostname
        self._key_factory: KeyFactory = key_factory or (lambda: _maildir_key(self.hostname))
        #: The time of new messages (INTERNALDATE) and of new UIDVALIDITY values.
        self.clock: Callable[[], float] = clock or time.time
        self._imap_lock = threading.RLock()
        self._generations: dict[tuple[str, str], int] = {}
        self._accounts: dict[tuple[str, str], weakref.WeakSet[FolderAccount]] = {}
        self._last_validity = 0
        self._fault_lock = threading.Lock()
        self._fault_skip = 0
        self._fault_count = 0
        self._fault_error: BaseException = OSError(errno.ENOSPC, "disk full")

    # --- the fault hook --------------------------------------------------------------

    def fail_next(self, n: int = 1, error: BaseException | None = None, *,
                  after: int = 0) -> None:
        """Make the next ``n`` deliveries fail with :class:`StorageError`.

        Args:
            n: how many deliveries fail (0 cancels a pending fault).
            error: the cause (default ``OSError(ENOSPC, "disk full")``).
            after: let this many deliveries succeed first (for the middle of a
                :meth:`deliver_many`).

        A failing Maildir delivery really writes part of the message to ``tmp/`` before
        the error strikes, so the clean-up is exercised too.
        """
        with self._fault_lock:
            self._fault_skip = after
            self._fault_count = n
            self._fault_error = error if error is not None else OSError(errno.ENOSPC,
                                                                        "disk full")

    def _take_fault(self) -> BaseException | None:
        with self._fault_lock:
            if self._fault_count <= 0:
                return None
            if self._fault_skip > 0:
                self._fault_skip -= 1
                return None
            self._fault_count -= 1
            return self._fault_error

    # --- delivery --------------------------------------------------------------------

    def deliver(self, address: str, message: bytes, folder: str | None = None) -> str:
        """Store ``message`` durably for ``address`` (in ``folder``, default INBOX).

        Returns:
            The new message's key.

        Raises:
            StorageError: nothing was stored (the SMTP server answers 451 4.3.0).
        """
        domain, local = split_address(address)
        key = self._deliver(domain, local, _check_folder(folder), message,
                            self._take_fault())
        self.changed(domain, local)
        return key

    def deliver_many(self, recipients: Sequence[str], message: bytes,
                     folder: str | None = None) -> dict[str, str]:
        """Deliver one message to several recipients (into ``folder``, default INBOX),
        all or nothing.

        A recipient given twice (in any case) is stored once. If one write fails, the
        copies written by this call are removed again and :class:`StorageError` raised.

        Returns:
            ``{recipient as given: key}``.
        """
        boxes = [(rcpt, split_address(rcpt)) for rcpt in recipients]  # validate first
        folder = _check_folder(folder)
        done: list[tuple[str, str, str]] = []
        by_box: dict[tuple[str, str], str] = {}
        result: dict[str, str] = {}
        try:
            for rcpt, (domain, local) in boxes:
                if (domain, local) not in by_box:
                    key = self._deliver(domain, local, folder, message, self._take_fault())
                    done.append((domain, local, key))
                    by_box[(domain, local)] = key
                result[rcpt] = by_box[(domain, local)]
        except StorageError:
            for domain, local, key in done:
                with contextlib.suppress(OSError):
                    self._discard(domain, local, folder, key)
            raise
        for domain, local, _key in done:
            self.changed(domain, local)
        return result

    # --- IMAP: accounts and change notification ---------------------------------------

    def imap_account(self, address: str) -> FolderAccount:
        """The user's folders as the IMAP core sees them (INBOX, Junk, Sent and more).

        Raises:
            MailboxError: the mailbox cannot be opened.
        """
        domain, local = split_address(address)
        account = FolderAccount(self, domain, local)
        with self._imap_lock:
            self._accounts.setdefault((domain, local), weakref.WeakSet()).add(account)
        return account

    def changed(self, domain: str, local: str) -> None:
        """A user's mailbox changed: IMAP sessions (IDLE) of that user are woken."""
        with self._imap_lock:
            key = (domain, local)
            self._generations[key] = self._generations.get(key, 0) + 1
            accounts = list(self._accounts.get(key, ()))
        for account in accounts:
            if account.on_change is not None:
                with contextlib.suppress(Exception):
                    account.on_change()

    def generation(self, domain: str, local: str) -> int:
        """A number that changes with every change of the user's mailbox."""
        with self._imap_lock:
            return self._generations.get((domain, local), 0)

    def new_uidvalidity(self) -> int:
        """A UIDVALIDITY for a new folder (RFC 9051 §2.3.1.1): the clock's seconds, and
        never twice the same in one store."""
        with self._imap_lock:
            value = max(int(self.clock()), self._last_validity + 1) & 0xFFFFFFFF or 1
            self._last_validity = value
            return value

    # The folder primitives the IMAP account uses (one folder: None is INBOX).

    @abstractmethod
    def _folder_names(self, domain: str, local: str) -> list[str]: ...

    @abstractmethod
    def _folder_exists(self, domain: str, local: str, folder: str | None) -> bool: ...

    @abstractmethod
    def _create_folder(self, domain: str, local: str, folder: str | None) -> None: ...

    @abstractmethod
    def _delete_folder(self, domain: str, local: str, folder: str) -> None: ...

    @abstractmethod
    def _rename_folder(self, domain: str, local: str, old: str, new: str) -> None: ...

    @abstractmethod
    def _entries(self, domain: str, local: str, folder: str | None
                 ) -> dict[str, tuple[frozenset[str] | None, float]]:
        """key -> (flags, None while in new/; the message's time)."""

    @abstractmethod
    def _read(self, domain: str, local: str, folder: str | None, key: str) -> bytes: ...

    @abstractmethod
    def _set_entry_flags(self, domain: str, local: str, folder: str | None, key: str,
                         flags: frozenset[str]) -> None:
        """Give the message these flags (and take it out of new/)."""

    @abstractmethod
    def _remove(self, domain: str, local: str, folder: str | None, key: str) -> None: ...

    @abstractmethod
    def _set_time(self, domain: str, local: str, folder: str | None, key: str,
                  when: float) -> None: ...

    @abstractmethod
    def _load_uids(self, domain: str, local: str, folder: str | None
                   ) -> tuple[int, int, dict[str, int]] | None:
        """(UIDVALIDITY, next UID, key -> UID), or None when the folder has none yet."""

    @abstractmethod
    def _save_uids(self, domain: str, local: str, folder: str | None, validity: int,
                   uidnext: int, uids: dict[str, int]) -> None: ...

    @abstractmethod
    def _deliver(self, domain: str, local: str, folder: str | None, message: bytes,
                 fault: BaseException | None) -> str: ...

    @abstractmethod
    def _discard(self, domain: str, local: str, folder: str | None, key: str) -> None: ...

    # --- reading ---------------------------------------------------------------------

    @abstractmethod
    def mailbox(self, address: str) -> Mailbox:
        """The user's INBOX as a POP3 :class:`~simsmtp.protocol.mailbox.Mailbox`."""

    @abstractmethod
    def keys(self, address: str, folder: str | None = None) -> list[str]:
        """The keys in a folder (default INBOX), sorted."""

    @abstractmethod
    def get_bytes(self, address: str, key: str, folder: str | None = None) -> bytes:
        """One message as stored.

        Raises:
            KeyError: no such message.
        """

    def messages(self, address: str, folder: str | None = None) -> list[EmailMessage]:
        """The messages in a folder (default INBOX), parsed, in key order."""
        parser = BytesParser(policy=policy.default)
        return [parser.parsebytes(self.get_bytes(address, key, folder))
                for key in self.keys(address, folder)]


class MaildirStore(MessageStore):
    """Maildir storage under ``root`` with fsync before success.

    Args:
        root: the directory holding ``<domain>/<local>/`` Maildirs (created if missing).
        hostname: used in keys (default: this machine's name).
        key_factory: makes unique keys (for reproducible notebooks); must never repeat.

    Example::

        store = MaildirStore("/tmp/world/mail")
        key = store.deliver("alice@example.org", b"Subject: hi\\n\\nhello\\n")
        store.messages("alice@example.org")[0]["Subject"]   # 'hi'
    """

    def __init__(self, root: Path | str, *, hostname: str | None = None,
                 key_factory: KeyFactory | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(hostname=hostname or socket.gethostname(), key_factory=key_factory,
                         clock=clock)
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def path(self, address: str, folder: str | None = None) -> Path:
        """The Maildir directory of ``address`` (and ``folder``); it may not exist yet."""
        domain, local = split_address(address)
        return self._dir(domain, local, _check_folder(folder))

    def _dir(self, domain: str, local: str, folder: str | None) -> Path:
        user = self.root / domain / local
        return user if folder is None else user / f".{folder}"

    def _ensure(self, domain: str, local: str, folder: str | None) -> Path:
        """Create the Maildir (and its parents) durably if it is missing."""
        target = self._dir(domain, local, folder)
        if (target / "new").is_dir() and (target / "cur").is_dir() \
                and (target / "tmp").is_dir():
            return target
        chain = [self.root / domain, self.root / domain / local]
        if folder is not None:
            chain.append(target)
        # new/ last: a reader that sees new/ finds tmp/ and cur/ there too
        made: list[Path] = []
        for path in [*chain, target / "tmp", target / "cur", target / "new"]:
            try:
                os.mkdir(path, 0o700)
            except FileExistsError:
                if not path.is_dir():
                    raise
                continue
            made.append(path)
        # The new directory entries survive a crash: each parent once, after all of its
        # new entries (tmp/, cur/ and new/ share one), deepest first, before the 250.
        for parent in sorted({p.parent for p in made}, key=lambda p: -len(p.parts)):
            _fsync_dir(parent)
        if folder is not None:
            # Maildir++: a folder is marked by an empty "maildirfolder" file
            (target / "maildirfolder").touch()
        return target

    def _deliver(self, domain: str, local: str, folder: str | None, message: bytes,
                 fault: BaseException | None) -> str:
        address = f"{local}@{domain}"
        data = to_lf(message)
        tmp: Path | None = None
        new: Path | None = None
        renamed = False
        try:
            box = self._ensure(domain, local, folder)
            for _attempt in range(MAX_KEY_ATTEMPTS):
                key = self._key_factory()
                if not key or INFO_SEPARATOR in key or any(c in _FORBIDDEN for c in key) \
                        or key.startswith("."):
                    raise ValueError(f"bad Maildir key {key!r}")
                new = box / "new" / key
                if os.path.exists(new) or _in_cur(box, key):
                    # A reproducible key factory restarted over the same directory (or a
                    # crash's leftover in tmp/ below) repeats a key: take the next one.
                    continue
                try:
                    fd = os.open(box / "tmp" / key, os.O_WRONLY | os.O_CREAT | os.O_EXCL
                                 | getattr(os, "O_CLOEXEC", 0)
                                 | getattr(os, "O_BINARY", 0), 0o600)  # Windows: no CRLF
                except FileExistsError:
                    continue
                break
            else:
                raise FileExistsError(errno.EEXIST, f"{MAX_KEY_ATTEMPTS} keys already used",
                                      str(box / "new"))
            tmp = box / "tmp" / key  # ours from here on: removed if anything fails
            with os.fdopen(fd, "wb") as f:
                if fault is not None:
                    f.write(data[: len(data) // 2])  # a real partial write, then the fault
                    f.flush()
                    raise fault
                f.write(data)
                f.flush()
                os.fsync(f.fileno())  # the bytes are on disk before the rename
            if self.clock is not time.time:  # the world's (virtual) time of arrival
                t = self.clock()
                os.utime(tmp, (t, t))
            os.rename(tmp, new)
            renamed = True
            _fsync_dir(box / "new")  # the rename is on disk before we say 250
            return key
        except BaseException as exc:
            if tmp is not None:
                with contextlib.suppress(OSError):
                    _unlink_quietly(tmp)
            if renamed and new is not None:
                with contextlib.suppress(OSError):
                    _unlink_quietly(new)
                    _fsync_dir(new.parent)
            if isinstance(exc, Exception):
                raise StorageError(f"cannot store message for {address}: {exc}") from exc
            raise

    def _discard(self, domain: str, local: str, folder: str | None, key: str) -> None:
        box = self._dir(domain, local, folder)
        _unlink_quietly(box / "new" / key)
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(box / "cur"):
                if parse_maildir_name(name)[0] == key:
                    _unlink_quietly(box / "cur" / name)
        _fsync_dir(box / "new")

    # --- IMAP folder primitives -----------------------------------------------------------

    def _folder_names(self, domain: str, local: str) -> list[str]:
        user = self._dir(domain, local, None)
        if not user.is_dir():
            return []
        return sorted(p.name[1:] for p in user.iterdir()
                      if p.name.startswith(".") and (p / "new").is_dir())

    def _folder_exists(self, domain: str, local: str, folder: str | None) -> bool:
        return (self._dir(domain, local, folder) / "new").is_dir()

    def _create_folder(self, domain: str, local: str, folder: str | None) -> None:
        self._ensure(domain, local, folder)

    def _delete_folder(self, domain: str, local: str, folder: str) -> None:
        shutil.rmtree(self._dir(domain, local, folder))
        _fsync_dir(self._dir(domain, local, None))

    def _rename_folder(self, domain: str, local: str, old: str, new: str) -> None:
        user = self._dir(domain, local, None)
        for name in self._folder_names(domain, local):  # Maildir++: children move too
            if name == old or name.startswith(old + "."):
                os.rename(user / f".{name}", user / f".{new}{name[len(old):]}")
        _fsync_dir(user)

    def _entries(self, domain: str, local: str, folder: str | None
                 ) -> dict[str, tuple[frozenset[str] | None, float]]:
        box = self._dir(domain, local, folder)
        found: dict[str, tuple[frozenset[str] | None, float]] = {}
        for sub in ("new", "cur"):
            try:
                names = os.listdir(box / sub)
            except FileNotFoundError:
                continue
            for name in names:
                if name.startswith("."):
                    continue
                key, flags = parse_maildir_name(name)
                try:
                    when = os.stat(box / sub / name).st_mtime
                except FileNotFoundError:
                    continue
                found[key] = (flags if sub == "cur" else None, when)
        return found

    def _entry_path(self, domain: str, local: str, folder: str | None, key: str) -> Path:
        box = self._dir(domain, local, folder)
        if (box / "new" / key).exists():
            return box / "new" / key
        with contextlib.suppress(FileNotFoundError):
            for name in os.listdir(box / "cur"):
                if parse_maildir_name(name)[0] == key:
                    return box / "cur" / name
        raise MailboxError(f"message {key} is gone")

    def _read(self, domain: str, local: str, folder: str | None, key: str) -> bytes:
        try:
            return self._entry_path(domain, local, folder, key).read_bytes()
        except OSError as exc:
            raise MailboxError(f"message {key} is unavailable: {exc}") from exc

    def _set_entry_flags(self, domain: str, local: str, folder: str | None, key: str,
                         flags: frozenset[str]) -> None:
        path = self._entry_path(domain, local, folder, key)
        target = self._dir(domain, local, folder) / "cur" / maildir_name(key, flags)
        if path != target:
            os.rename(path, target)  # the flags are in the name: one atomic rename

    def _remove(self, domain: str, local: str, folder: str | None, key: str) -> None:
        with contextlib.suppress(MailboxError, FileNotFoundError):
            os.unlink(self._entry_path(domain, local, folder, key))

    def _set_time(self, domain: str, local: str, folder: str | None, key: str,
                  when: float) -> None:
        os.utime(self._entry_path(domain, local, folder, key), (when, when))

    def _load_uids(self, domain: str, local: str, folder: str | None
                   ) -> tuple[int, int, dict[str, int]] | None:
        path = self._dir(domain, local, folder) / UIDLIST
        try:
            text = path.read_text("utf-8", "surrogateescape")
        except FileNotFoundError:
            return None
        lines = text.splitlines()
        try:
            _version, *fields = lines[0].split()
            values = {f[0]: int(f[1:]) for f in fields if f[:1] in ("V", "N")}
            uids: dict[str, int] = {}
            for line in lines[1:]:
                number, _, rest = line.partition(" ")
                key = rest.partition(":")[2] if ":" in rest else rest
                if key:
                    uids[key] = int(number)
            return values["V"], values["N"], uids
        except (IndexError, KeyError, ValueError):
            return None  # unreadable: rebuilt with a new UIDVALIDITY (RFC 9051 §2.3.1.1)

    def _save_uids(self, domain: str, local: str, folder: str | None, validity: int,
                   uidnext: int, uids: dict[str, int]) -> None:
        box = self._dir(domain, local, folder)
        body = f"3 V{validity} N{uidnext}\n" + "".join(
            f"{uid} :{key}\n" for key, uid in sorted(uids.items(), key=lambda kv: kv[1]))
        tmp = box / f"{UIDLIST}.lock"
        tmp.write_text(body, "utf-8", "surrogateescape")
        os.replace(tmp, box / UIDLIST)  # readers see the old list or the new one

    def _stdlib(self, address: str, folder: str | None) -> _mailbox.Maildir | None:
        domain, local = split_address(address)
        path = self._dir(domain, local, _check_folder(folder))
        if not (path / "new").is_dir():
            return None
        return open_maildir(path)

    def mailbox(self, address: str) -> MaildirMailbox:
        """The POP3 view of the INBOX (``new/`` and ``cur/``; created if missing)."""
        domain, local = split_address(address)
        try:
            path = self._ensure(domain, local, None)
        except OSError as exc:
            raise MailboxError(f"cannot open the maildrop of {address}: {exc}") from exc
        return MaildirMailbox(path, on_change=lambda: self.changed(domain, local))

    def keys(self, address: str, folder: str | None = None) -> list[str]:
        """The keys in ``new/`` and ``cur/`` of a folder (default INBOX), sorted."""
        md = self._stdlib(address, folder)
        return sorted(md.keys()) if md is not None else []

    def get_bytes(self, address: str, key: str, folder: str | None = None) -> bytes:
        """One message as stored on disk (LF line endings)."""
        md = self._stdlib(address, folder)
        if md is None:
            raise KeyError(key)
        return md.get_bytes(key)

    def folders(self, address: str) -> list[str]:
        """The user's folders besides INBOX (e.g. ``["Junk"]``)."""
        domain, local = split_address(address)
        user = self._dir(domain, local, None)
        if not user.is_dir():
            return []
        return sorted(p.name[1:] for p in user.iterdir()
                      if p.name.startswith(".") and (p / "new").is_dir())


class MaildirMailbox:
    """The POP3 view of one Maildir: ``new/`` and ``cur/``, uid = the Maildir key.

    The list is a snapshot taken at the first :meth:`list_messages` (the maildrop as it was
    at login, RFC 1939 §8); sizes are those of the CRLF form POP3 sends.
    """

    def __init__(self, path: Path, on_change: Callable[[], None] | None = None) -> None:
        self.path = path
        self._on_change = on_change  # tells IMAP sessions (IDLE) about deletions
        self._md = open_maildir(path, create=True)
        self._keys: dict[str, str] = {}  # uid -> key
        self._infos: list[MessageInfo] | None = None

    def list_messages(self) -> Sequence[MessageInfo]:
        """The messages sorted by key (delivery order for our keys)."""
        if self._infos is None:
            infos: list[MessageInfo] = []
            try:
                keys = sorted(self._md.keys())
            except OSError as exc:
                raise MailboxError(f"cannot list {self.path}: {exc}") from exc
            for key in keys:
                try:
                    data = self._md.get_bytes(key)
                except (KeyError, OSError):
                    continue  # removed meanwhile by another session
                uid = _uid_for(key)
                self._keys[uid] = key
                infos.append(MessageInfo(uid, len(to_crlf(data))))
            self._infos = infos
        return list(self._infos)

    def get(self, uid: str) -> bytes:
        """The message with CRLF line endings."""
        if self._infos is None:
            self.list_messages()
        try:
            return to_crlf(self._md.get_bytes(self._keys[uid]))
        except (KeyError, OSError) as exc:
            raise MailboxError(f"message {uid} is unavailable: {exc}") from exc

    def delete(self, uids: Iterable[str]) -> None:
        """Remove the files (already-gone ones are fine), then fsync the directories."""
        if self._infos is None:
            self.list_messages()
        failed: list[str] = []
        for uid in uids:
            key = self._keys.get(uid)
            if key is None:
                continue
            try:
                self._md.remove(key)
            except (KeyError, FileNotFoundError):
                pass  # already removed (another session)
            except OSError:
                failed.append(uid)
        if self._on_change is not None:
            self._on_change()
        try:
            _fsync_dir(self.path / "new")
            _fsync_dir(self.path / "cur")
        except OSError as exc:
            raise MailboxError(f"cannot sync {self.path}: {exc}") from exc
        if failed:
            raise MailboxError(f"could not remove {', '.join(failed)}")


class MemoryStore(MessageStore):
    """The same interface as :class:`MaildirStore`, in memory (load tests, benchmarks).

    Messages are kept with CRLF line endings. Thread-safe.
    """

    def __init__(self, *, hostname: str = "memory",
                 key_factory: KeyFactory | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        super().__init__(hostname=hostname, key_factory=key_factory, clock=clock)
        self._lock = threading.Lock()
        self._boxes: dict[tuple[str, str, str | None], dict[str, bytes]] = {}
        # IMAP state beside the messages: flags (None: still "new"), times, UID lists
        self._flags: dict[tuple[str, str, str | None, str], frozenset[str] | None] = {}
        self._times: dict[tuple[str, str, str | None, str], float] = {}
        self._uidlists: dict[tuple[str, str, str | None], tuple[int, int, dict[str, int]]] = {}

    def _deliver(self, domain: str, local: str, folder: str | None, message: bytes,
                 fault: BaseException | None) -> str:
        if fault is not None:
            raise StorageError(f"cannot store message for {local}@{domain}: {fault}") \
                from fault
        data = to_crlf(message)
        key = self._key_factory()
        with self._lock:
            box = self._boxes.setdefault((domain, local, folder), {})
            if key in box:
                raise StorageError(f"cannot store message for {local}@{domain}: "
                                   f"key {key!r} already used")
            box[key] = data
            self._times[(domain, local, folder, key)] = self.clock()
        return key

    def _discard(self, domain: str, local: str, folder: str | None, key: str) -> None:
        with self._lock:
            self._boxes.get((domain, local, folder), {}).pop(key, None)

    def _box_id(self, address: str, folder: str | None) -> tuple[str, str, str | None]:
        domain, local = split_address(address)
        return domain, local, _check_folder(folder)

    def mailbox(self, address: str) -> _MemoryStoreMailbox:
        """The POP3 view of the INBOX."""
        return _MemoryStoreMailbox(self, self._box_id(address, None))

    def keys(self, address: str, folder: str | None = None) -> list[str]:
        """The keys of a folder (default INBOX), sorted."""
        with self._lock:
            return sorted(self._boxes.get(self._box_id(address, folder), {}))

    def get_bytes(self, address: str, key: str, folder: str | None = None) -> bytes:
        """One message as stored (CRLF)."""
        with self._lock:
            return self._boxes.get(self._box_id(address, folder), {})[key]

    def folders(self, address: str) -> list[str]:
        """The user's folders besides INBOX that hold or held mail."""
        domain, local = split_address(address)
        with self._lock:
            return sorted(f for (d, lp, f) in self._boxes
                          if (d, lp) == (domain, local) and f is not None)

    # --- IMAP folder primitives -----------------------------------------------------------

    def _folder_names(self, domain: str, local: str) -> list[str]:
        with self._lock:
            return sorted(f for (d, lp, f) in self._boxes
                          if (d, lp) == (domain, local) and f is not None)

    def _folder_exists(self, domain: str, local: str, folder: str | None) -> bool:
        with self._lock:
            return folder is None or (domain, local, folder) in self._boxes

    def _create_folder(self, domain: str, local: str, folder: str | None) -> None:
        with self._lock:
            self._boxes.setdefault((domain, local, folder), {})

    def _delete_folder(self, domain: str, local: str, folder: str) -> None:
        with self._lock:
            self._boxes.pop((domain, local, folder), None)
            self._uidlists.pop((domain, local, folder), None)

    def _rename_folder(self, domain: str, local: str, old: str, new: str) -> None:
        with self._lock:
            for (d, lp, f) in list(self._boxes):
                if (d, lp) == (domain, local) and f is not None and (
                        f == old or f.startswith(old + ".")):
                    target = new + f[len(old):]
                    self._boxes[(d, lp, target)] = self._boxes.pop((d, lp, f))
                    if (d, lp, f) in self._uidlists:
                        self._uidlists[(d, lp, target)] = self._uidlists.pop((d, lp, f))
                    for (d2, l2, f2, k) in list(self._flags):
                        if (d2, l2, f2) == (d, lp, f):
                            self._flags[(d, lp, target, k)] = self._flags.pop((d, lp, f, k))
                    for (d2, l2, f2, k) in list(self._times):
                        if (d2, l2, f2) == (d, lp, f):
                            self._times[(d, lp, target, k)] = self._times.pop((d, lp, f, k))

    def _entries(self, domain: str, local: str, folder: str | None
                 ) -> dict[str, tuple[frozenset[str] | None, float]]:
        with self._lock:
            keys = list(self._boxes.get((domain, local, folder), {}))
            return {k: (self._flags.get((domain, local, folder, k)),
                        self._times.get((domain, local, folder, k), 0.0)) for k in keys}

    def _read(self, domain: str, local: str, folder: str | None, key: str) -> bytes:
        with self._lock:
            data = self._boxes.get((domain, local, folder), {}).get(key)
        if data is None:
            raise MailboxError(f"message {key} is gone")
        return data

    def _set_entry_flags(self, domain: str, local: str, folder: str | None, key: str,
                         flags: frozenset[str]) -> None:
        with self._lock:
            self._flags[(domain, local, folder, key)] = flags

    def _remove(self, domain: str, local: str, folder: str | None, key: str) -> None:
        with self._lock:
            self._boxes.get((domain, local, folder), {}).pop(key, None)
            self._flags.pop((domain, local, folder, key), None)
            self._times.pop((domain, local, folder, key), None)

    def _set_time(self, domain: str, local: str, folder: str | None, key: str,
                  when: float) -> None:
        with self._lock:
            self._times[(domain, local, folder, key)] = when

    def _load_uids(self, domain: str, local: str, folder: str | None
                   ) -> tuple[int, int, dict[str, int]] | None:
        with self._lock:
            found = self._uidlists.get((domain, local, folder))
            return None if found is None else (found[0], found[1], dict(found[2]))

    def _save_uids(self, domain: str, local: str, folder: str | None, validity: int,
                   uidnext: int, uids: dict[str, int]) -> None:
        with self._lock:
            self._uidlists[(domain, local, folder)] = (validity, uidnext, dict(uids))


class _MemoryStoreMailbox:
    """POP3 view of a :class:`MemoryStore` INBOX (snapshot at the first listing)."""

    def __init__(self, store: MemoryStore, box_id: tuple[str, str, str | None]) -> None:
        self._store = store
        self._box_id = box_id
        self._keys: dict[str, str] = {}
        self._infos: list[MessageInfo] | None = None

    def _box(self) -> dict[str, bytes]:
        return self._store._boxes.get(self._box_id, {})

    def list_messages(self) -> Sequence[MessageInfo]:
        if self._infos is None:
            with self._store._lock:
                items = sorted(self._box().items())
            self._keys = {_uid_for(k): k for k, _ in items}
            self._infos = [MessageInfo(_uid_for(k), len(v)) for k, v in items]
        return list(self._infos)

    def get(self, uid: str) -> bytes:
        if self._infos is None:
            self.list_messages()
        with self._store._lock:
            data = self._box().get(self._keys.get(uid, ""))
        if data is None:
            raise MailboxError(f"message {uid} is unavailable")
        return data

    def delete(self, uids: Iterable[str]) -> None:
        if self._infos is None:
            self.list_messages()
        with self._store._lock:
            box = self._box()
            for uid in uids:
                box.pop(self._keys.get(uid, ""), None)


class FolderAccount:
    """One user's folders as the IMAP core sees them
    (:class:`simsmtp.protocol.imapaccount.IMAPAccount`), on a :class:`MessageStore`.

    INBOX, Junk and Sent are created at once. UIDs come from the folder's UID list
    (``dovecot-uidlist`` in a Maildir): a message not in it yet gets the next UID, in key
    order (delivery order), and the list is saved, so UIDs survive a restart.

    Attributes:
        on_change: called (from any thread) when the user's mailbox changed; the network
            layer wakes the IMAP connection with it (IDLE).
    """

    def __init__(self, store: MessageStore, domain: str, local: str) -> None:
        self._store = store
        self._domain = domain
        self._local = local
        self.on_change: Callable[[], None] | None = None
        try:
            for name in (None, *STANDARD_FOLDERS):
                if not store._folder_exists(domain, local, name):
                    store._create_folder(domain, local, name)
        except OSError as exc:
            raise MailboxError(f"cannot open the mailbox of {local}@{domain}: {exc}") from exc

    @staticmethod
    def _folder(name: str) -> str | None:
        return None if name.upper() == "INBOX" else name

    def _check(self, name: str) -> str | None:
        from simsmtp.protocol.imapaccount import NoSuchFolder

        folder = self._folder(name)
        if folder is not None:
            try:
                _check_part(folder, "folder", folder)
            except InvalidAddress:
                raise NoSuchFolder(f"Mailbox doesn't exist: {name}") from None
        if not self._store._folder_exists(self._domain, self._local, folder):
            raise NoSuchFolder(f"Mailbox doesn't exist: {name}")
        return folder

    def _changed(self) -> None:
        self._store.changed(self._domain, self._local)

    def _sync(self, folder: str | None) -> tuple[int, int, dict[str, int],
                                                 dict[str, tuple[frozenset[str] | None,
                                                                 float]]]:
        """The folder's entries and its UIDs, new messages numbered and the list saved."""
        store, d, lp = self._store, self._domain, self._local
        entries = store._entries(d, lp, folder)
        loaded = store._load_uids(d, lp, folder)
        uids: dict[str, int]
        if loaded is None:
            validity, uidnext, uids = store.new_uidvalidity(), 1, {}
        else:
            validity, uidnext, uids = loaded
        changed = loaded is None
        for key in [k for k in uids if k not in entries]:
            del uids[key]  # expunged (by us, POP3 or a mail program)
            changed = True
        for key in sorted(k for k in entries if k not in uids):
            uids[key] = uidnext
            uidnext += 1
            changed = True
        if changed:
            try:
                store._save_uids(d, lp, folder, validity, uidnext, uids)
            except OSError as exc:
                raise MailboxError(f"cannot save the UID list: {exc}") from exc
        return validity, uidnext, uids, entries

    def _key(self, folder: str | None, uid: int) -> str:
        with self._store._imap_lock:
            _, _, uids, _ = self._sync(folder)
        for key, number in uids.items():
            if number == uid:
                return key
        raise MailboxError(f"message {uid} is gone")

    # --- the IMAPAccount protocol -------------------------------------------------------

    def folders(self) -> list[tuple[str, str | None]]:
        names = self._store._folder_names(self._domain, self._local)
        return [("INBOX", None), *((n, STANDARD_FOLDERS.get(n)) for n in names)]

    def folder(self, name: str, *, claim_recent: bool = False) -> Any:
        from simsmtp.protocol.imapaccount import FolderInfo, MessageMeta

        store = self._store
        with store._imap_lock:
            folder = self._check(name)
            validity, uidnext, uids, entries = self._sync(folder)
            metas = []
            claimed = False
            for key, uid in sorted(uids.items(), key=lambda kv: kv[1]):
                flags, when = entries[key]
                try:
                    size = len(to_crlf(store._read(self._domain, self._local, folder, key)))
                except MailboxError:
                    continue
                if flags is None and claim_recent:
                    # Dovecot: the first session to see it moves it from new/ to cur/
                    with contextlib.suppress(OSError, MailboxError):
                        store._set_entry_flags(self._domain, self._local, folder, key,
                                               frozenset())
                        claimed = True
                metas.append(MessageMeta(uid, flags or frozenset(), size, when,
                                         recent=flags is None))
        if claimed:
            self._changed()
        return FolderInfo(validity, uidnext, tuple(metas))

    def fetch(self, name: str, uid: int) -> bytes:
        folder = self._check(name)
        return to_crlf(self._store._read(self._domain, self._local, folder,
                                         self._key(folder, uid)))

    def set_flags(self, name: str, uid: int, flags: frozenset[str]) -> None:
        folder = self._check(name)
        try:
            self._store._set_entry_flags(self._domain, self._local, folder,
                                         self._key(folder, uid), flags)
        except OSError as exc:
            raise MailboxError(f"cannot change the flags of {uid}: {exc}") from exc
        self._changed()

    def _add(self, folder: str | None, message: bytes, flags: frozenset[str],
             when: float | None) -> int:
        store = self._store
        try:
            key = store._deliver(self._domain, self._local, folder, message, None)
            if flags:
                store._set_entry_flags(self._domain, self._local, folder, key, flags)
            if when is not None:
                store._set_time(self._domain, self._local, folder, key, when)
        except (OSError, StorageError) as exc:
            raise MailboxError(f"cannot store the message: {exc}") from exc
        _, _, uids, _ = self._sync(folder)
        return uids[key]

    def append(self, name: str, message: bytes, flags: frozenset[str],
               internaldate: float | None) -> tuple[int, int]:
        with self._store._imap_lock:
            folder = self._check(name)
            uid = self._add(folder, message, flags, internaldate)
            validity = self._sync(folder)[0]
        self._changed()
        return validity, uid

    def copy(self, name: str, uids: Sequence[int], target: str) -> tuple[int, list[int]]:
        store = self._store
        with store._imap_lock:
            source, dest = self._check(name), self._check(target)
            _, _, known, entries = self._sync(source)
            by_uid = {uid: key for key, uid in known.items()}
            new = []
            for uid in uids:
                key = by_uid.get(uid)
                if key is None:
                    continue
                data = store._read(self._domain, self._local, source, key)
                flags, when = entries[key]
                new.append(self._add(dest, data, flags or frozenset(), when))
            validity = self._sync(dest)[0]
        self._changed()
        return validity, new

    def expunge(self, name: str, uids: Sequence[int]) -> None:
        store = self._store
        with store._imap_lock:
            folder = self._check(name)
            _, _, known, _ = self._sync(folder)
            doomed = set(uids)
            for key, uid in known.items():
                if uid in doomed:
                    store._remove(self._domain, self._local, folder, key)
            self._sync(folder)
        self._changed()

    def create(self, name: str) -> None:
        from simsmtp.protocol.imapaccount import FolderExists

        folder = self._folder(name)
        if folder is None or self._store._folder_exists(self._domain, self._local, folder):
            raise FolderExists("Mailbox already exists")
        try:
            _check_part(folder, "folder", folder)
            self._store._create_folder(self._domain, self._local, folder)
        except (OSError, InvalidAddress) as exc:
            raise MailboxError(f"cannot create {name}: {exc}") from exc
        self._changed()

    def delete(self, name: str) -> None:
        folder = self._check(name)
        if folder is None:
            raise MailboxError("INBOX can't be deleted.")
        try:
            self._store._delete_folder(self._domain, self._local, folder)
        except OSError as exc:
            raise MailboxError(f"cannot delete {name}: {exc}") from exc
        self._changed()

    def rename(self, old: str, new: str) -> None:
        from simsmtp.protocol.imapaccount import FolderExists

        source = self._check(old)
        target = self._folder(new)
        if source is None or target is None:
            raise MailboxError("Renaming INBOX isn't supported.")
        if self._store._folder_exists(self._domain, self._local, target):
            raise FolderExists("Mailbox already exists")
        try:
            _check_part(target, "folder", target)
            self._store._rename_folder(self._domain, self._local, source, target)
        except (OSError, InvalidAddress) as exc:
            raise MailboxError(f"cannot rename {old}: {exc}") from exc
        self._changed()

    def generation(self) -> int:
        return self._store.generation(self._domain, self._local)
