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
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import itertools
import mailbox as _mailbox
import os
import secrets
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

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
    "InvalidAddress",
    "MaildirMailbox",
    "MaildirStore",
    "MemoryStore",
    "MessageStore",
    "StorageError",
    "split_address",
]

KeyFactory = Callable[[], str]

_COUNTER = itertools.count(1)  # next() on a count is atomic under the GIL
#: Keys tried per delivery before giving up (a key already in new/, cur/ or tmp/ is skipped).
MAX_KEY_ATTEMPTS = 100
_FORBIDDEN = frozenset("/\\\x00")


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


#: What separates a Maildir file's unique name from its info (``<key>:2,<flags>``); on
#: Windows, where ``:`` cannot be in a file name, ``!`` (Dovecot's maildir_info_separator).
INFO_SEPARATOR = "!" if os.name == "nt" else ":"


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
    prefix = key + info_separator()
    try:
        return any(name.startswith(prefix) for name in os.listdir(box / "cur"))
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

    def __init__(self, *, hostname: str, key_factory: KeyFactory | None = None) -> None:
        self.hostname = hostname
        self._key_factory: KeyFactory = key_factory or (lambda: _maildir_key(self.hostname))
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
        return self._deliver(domain, local, _check_folder(folder), message,
                             self._take_fault())

    def deliver_many(self, recipients: Sequence[str], message: bytes) -> dict[str, str]:
        """Deliver one message to several recipients, all or nothing.

        A recipient given twice (in any case) is stored once. If one write fails, the
        copies written by this call are removed again and :class:`StorageError` raised.

        Returns:
            ``{recipient as given: key}``.
        """
        boxes = [(rcpt, split_address(rcpt)) for rcpt in recipients]  # validate first
        done: list[tuple[str, str, str]] = []
        by_box: dict[tuple[str, str], str] = {}
        result: dict[str, str] = {}
        try:
            for rcpt, (domain, local) in boxes:
                if (domain, local) not in by_box:
                    key = self._deliver(domain, local, None, message, self._take_fault())
                    done.append((domain, local, key))
                    by_box[(domain, local)] = key
                result[rcpt] = by_box[(domain, local)]
        except StorageError:
            for domain, local, key in done:
                with contextlib.suppress(OSError):
                    self._discard(domain, local, None, key)
            raise
        return result

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
                 key_factory: KeyFactory | None = None) -> None:
        super().__init__(hostname=hostname or socket.gethostname(), key_factory=key_factory)
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
                if not key or ":" in key or any(c in _FORBIDDEN for c in key) \
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
        for path in (box / "cur").glob(f"{key}{info_separator()}*"):
            _unlink_quietly(path)
        _fsync_dir(box / "new")

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
        return MaildirMailbox(path)

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

    def __init__(self, path: Path) -> None:
        self.path = path
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
                 key_factory: KeyFactory | None = None) -> None:
        super().__init__(hostname=hostname, key_factory=key_factory)
        self._lock = threading.Lock()
        self._boxes: dict[tuple[str, str, str | None], dict[str, bytes]] = {}

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
