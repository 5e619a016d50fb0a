"""The durable outbound queue of a world's MTA (RFC 5321 §6.1), laid out like Postfix's.

Once our submission server has said ``250`` the message is ours, and RFC 5321 §6.1 says we
"MUST NOT lose the message for frivolous reasons, such as because the host later crashes".
So every message lives in a file that is on disk (``fsync``) before anybody is told ``250``,
and every recipient's outcome is on disk before the delivery agent goes on.

Layout of a queue directory (reopened by a new process with :meth:`Queue.load`)::

    tmp/      files being written (a crash leaves them here; load() removes them)
    active/   one queue file per message, written ONCE and never changed:
                  SIMSMTP-QUEUE 1\\n
                  {"queue_id": ..., "sender": ..., "recipients": [...], "size": N, ...}\\n
                  <N octets of the message>
                  \\nEND\\n
    status/   one append-only journal per message: one JSON line per recipient outcome
              (delivered with the remote reply, failed, deferred with the next attempt time)

Writing a message: write to ``tmp/<id>``, flush, ``fsync``, ``rename`` into ``active/``, then
``fsync`` the directory, so the name and the bytes survive a power cut. Like Postfix's queue
files (``mail_stream.c``: fsync before close; a file without its END record is never
delivered), a file that does not end with the END marker is discarded by :meth:`Queue.load`:
a crash halfway through writing is never delivered (test 76c of
the adversarial catalogue, ``tests/hardening/CATALOGUE.md``).

Recording outcomes: each outcome is one line appended to ``status/<id>`` and ``fsync``ed before
:meth:`Queue.record_results` returns; a torn last line (a crash mid-append) has no newline and
is dropped on load. A recipient whose outcome is on disk is never delivered again. Outcomes
that leave nothing more to do (every recipient delivered, or failed and already notified)
are recorded by deleting the queue file instead, as Postfix does when a message is done:
``unlink`` it and ``fsync`` ``active/`` (one fsync, no journal line), so a message that is
gone after a crash was finished; :meth:`Queue.remove` then only forgets it.

The one unavoidable duplicate (RFC 5321 §4.5.3.2.6, §6.1): if the process dies *after* the
remote server answered ``250`` to the end of data but *before* our ``fsync`` of that outcome
returned, the recipient is still pending after the restart and is delivered a second time.
No MTA can close that window (the remote copy and our record cannot be written atomically
together); RFC 5321 accepts duplicates over losses. The window is a few milliseconds wide.

Postfix moves deferred messages into a ``deferred/`` directory; here every message stays in
``active/`` and the journal says which recipients are deferred and until when.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from simsmtp.trace import Trace

#: First line of every queue file (format name and version).
QUEUE_MAGIC = b"SIMSMTP-QUEUE 1\n"
#: Last bytes of every complete queue file (like Postfix's END record, REC_TYPE_END).
END_MARKER = b"\nEND\n"

#: Bytes of message content a queue holds in memory by default (the rest stays on disk).
DEFAULT_MEMORY_BUDGET = 8 * 1024 * 1024

_QUEUE_ID = re.compile(r"^[A-Za-z0-9]{1,64}$")


class RecipientStatus(StrEnum):
    """Where one recipient of a queued message stands."""

    #: Not tried yet.
    PENDING = "pending"
    #: A temporary failure (4xx, no server reachable, DNS tempfail); retried at next_attempt.
    DEFERRED = "deferred"
    #: The receiving server accepted it with 250 (final).
    DELIVERED = "delivered"
    #: Permanently failed (5xx, null MX, NXDOMAIN, too old): bounced to the sender (final).
    FAILED = "failed"


FINAL = frozenset({RecipientStatus.DELIVERED, RecipientStatus.FAILED})


class QueueError(Exception):
    """A queue operation was refused (duplicate or unknown queue id, bad recipient)."""


@dataclass
class RecipientState:
    """One recipient of a queued message and what happened to it so far.

    Attributes:
        address: the envelope recipient (RCPT TO).
        status: pending, deferred, delivered or failed.
        attempts: how many delivery attempts reached a decision for this recipient.
        reply: the last remote reply (``"250 2.0.0 Ok: queued as 4F2A…"``) or our reason.
        status_code: enhanced status code of the outcome (``"5.1.1"``), "" if none.
        remote_mta: the host that gave the reply ("" when no server was reached).
        last_attempt: virtual time of the last attempt (None: never tried).
        next_attempt: virtual time of the next attempt (deferred only).
        notified: a failure DSN for this recipient was handed to the sender (or none is due
            because the sender is null).
        params: the RCPT parameters (NOTIFY, ORCPT) given at submission.
    """

    address: str
    status: RecipientStatus = RecipientStatus.PENDING
    attempts: int = 0
    reply: str = ""
    status_code: str = ""
    remote_mta: str = ""
    last_attempt: float | None = None
    next_attempt: float | None = None
    notified: bool = False
    params: dict[str, str | None] = field(default_factory=dict)

    @property
    def final(self) -> bool:
        """True when delivered or failed: nothing more will be tried."""
        return self.status in FINAL


@dataclass(frozen=True)
class RecipientResult:
    """An outcome to record for one recipient (see :meth:`Queue.record_results`).

    ``counts_attempt`` is False for decisions taken without trying (e.g. a give-up).
    """

    recipient: str
    status: RecipientStatus
    reply: str = ""
    status_code: str = ""
    remote_mta: str = ""
    when: float | None = None
    next_attempt: float | None = None
    counts_attempt: bool = True

    def to_record(self) -> dict[str, Any]:
        """The JSON journal record of this outcome."""
        return {"recipient": self.recipient, "status": str(self.status), "reply": self.reply,
                "status_code": self.status_code, "remote_mta": self.remote_mta,
                "when": self.when, "next_attempt": self.next_attempt,
                "attempt": self.counts_attempt}


@dataclass
class QueuedMessage:
    """A message in the queue: envelope, content and per-recipient state."""

    queue_id: str
    sender: str
    recipients: list[RecipientState]
    message: bytes
    arrival: float
    params: dict[str, str | None] = field(default_factory=dict)
    path: Path | None = None
    #: a delay warning (DSN action "delayed") was sent for this message
    warned: bool = False

    def recipient(self, address: str) -> RecipientState:
        """The state of one recipient (KeyError if it is not a recipient of this message)."""
        for state in self.recipients:
            if state.address == address:
                return state
        raise KeyError(address)

    def pending(self) -> list[RecipientState]:
        """Recipients not final yet (pending or deferred)."""
        return [r for r in self.recipients if not r.final]

    @property
    def final(self) -> bool:
        """True when every recipient is delivered or failed."""
        return all(r.final for r in self.recipients)

    @property
    def unnotified(self) -> list[RecipientState]:
        """Failed recipients whose DSN has not been handed over yet."""
        return [r for r in self.recipients
                if r.status is RecipientStatus.FAILED and not r.notified]

    @property
    def complete(self) -> bool:
        """Final and every failure notified: the message may leave the queue."""
        return self.final and not self.unnotified

    def due_at(self) -> float | None:
        """The virtual time at which some recipient is due (None when final).

        A pending recipient is due at arrival; a deferred one at its ``next_attempt``.
        """
        times = [r.next_attempt if r.status is RecipientStatus.DEFERRED
                 and r.next_attempt is not None else self.arrival
                 for r in self.recipients if not r.final]
        return min(times) if times else None

    def due_recipients(self, now: float) -> list[RecipientState]:
        """Recipients to try at virtual time ``now``."""
        return [r for r in self.recipients if not r.final
                and (r.status is RecipientStatus.PENDING or r.next_attempt is None
                     or r.next_attempt <= now)]

    @property
    def attempts(self) -> int:
        """The highest attempt count among the recipients."""
        return max((r.attempts for r in self.recipients), default=0)

    @property
    def last_attempt(self) -> float | None:
        """Virtual time of the most recent attempt (None: never tried)."""
        times = [r.last_attempt for r in self.recipients if r.last_attempt is not None]
        return max(times) if times else None

    def summary(self) -> str:
        """One line per recipient, for a notebook."""
        lines = [f"{self.queue_id} from <{self.sender}> ({len(self.message)} octets)"]
        for r in self.recipients:
            extra = f" next at {r.next_attempt:.0f}" if r.next_attempt is not None else ""
            lines.append(f"  <{r.address}>: {r.status} after {r.attempts} attempt(s)"
                         f"{extra} {r.reply}".rstrip())
        return "\n".join(lines)


def _held_message(self: QueuedMessage) -> bytes:
    """The content: held in memory, or read back from the queue file (see
    :attr:`Queue.memory_budget`)."""
    held: bytes | None = self.__dict__.get("_message")
    if held is not None:
        return held
    if self.path is None:
        raise QueueError(f"the content of {self.queue_id} is neither held nor on disk")
    try:
        return _parse_queue_file(self.path.read_bytes())[1]
    except (OSError, ValueError) as exc:
        raise QueueError(f"the content of {self.queue_id} cannot be read from "
                         f"{self.path}: {exc}") from None


def _hold_message(self: QueuedMessage, value: bytes | None) -> None:
    self.__dict__["_message"] = value


# After @dataclass made __init__: ``message`` is held in memory or read from its file.
QueuedMessage.message = property(_held_message, _hold_message)  # type: ignore[assignment]


@dataclass(frozen=True)
class Discarded:
    """A file that :meth:`Queue.load` threw away, and why."""

    path: Path
    reason: str


#: Windows opens files in text mode (LF -> CRLF on write) unless told otherwise.
_BINARY = getattr(os, "O_BINARY", 0)


def _fsync_directory(path: Path) -> None:
    """fsync a directory so a rename or a new name inside it is durable (POSIX; skipped
    where directories cannot be opened: no ``os.O_DIRECTORY``, as on Windows)."""
    flag = getattr(os, "O_DIRECTORY", None)
    if flag is None:
        return
    try:
        fd = os.open(path, os.O_RDONLY | flag)
    except OSError:  # pragma: no cover - platforms that cannot open directories
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _parse_queue_file(data: bytes) -> tuple[dict[str, Any], bytes]:
    """Split a queue file into header and message; ValueError when incomplete or corrupt."""
    if not data.startswith(QUEUE_MAGIC):
        raise ValueError("no SIMSMTP-QUEUE header")
    if not data.endswith(END_MARKER):
        raise ValueError("no END marker (the write never finished)")
    header_end = data.find(b"\n", len(QUEUE_MAGIC))
    if header_end < 0:
        raise ValueError("header line not terminated")
    header = json.loads(data[len(QUEUE_MAGIC):header_end])
    if not isinstance(header, dict):
        raise ValueError("header is not an object")
    start = header_end + 1
    size = header.get("size")
    if not isinstance(size, int) or start + size + len(END_MARKER) != len(data):
        raise ValueError("message size does not match the header")
    return header, data[start:start + size]


class Queue:
    """A durable on-disk queue of outbound messages (see the module docstring).

    The content of queued messages is held in memory up to :attr:`memory_budget` bytes in
    all (every message of a notebook's world); past it a message's content stays in its
    queue file only and is read back when the agent needs it, as Postfix's queue manager
    does, so a backlog under steady mail costs memory for its envelopes, not its contents.

    Args:
        directory: the queue directory (created if missing); reopening the same directory in
            a new process resumes every message (the constructor calls :meth:`load`).
        fsync: False skips every fsync (load tests only: NOT crash-safe).
        trace: where ``queue.*`` events go.
        host: the host name recorded with the trace events.
    """

    def __init__(self, directory: Path | str, *, fsync: bool = True,
                 trace: Trace | None = None, host: str = "") -> None:
        self.directory = Path(directory)
        self.fsync = fsync
        self.trace = trace
        self.host = host
        self.tmp_dir = self.directory / "tmp"
        self.active_dir = self.directory / "active"
        self.status_dir = self.directory / "status"
        for d in (self.tmp_dir, self.active_dir, self.status_dir):
            d.mkdir(parents=True, exist_ok=True)
        self._messages: dict[str, QueuedMessage] = {}
        #: Bytes of message content held in memory at most (the rest is read from disk).
        self.memory_budget = DEFAULT_MEMORY_BUDGET
        self._held_bytes = 0
        self._lock = threading.RLock()
        self.discarded: list[Discarded] = []
        self.load()

    # ------------------------------------------------------------------ tracing
    def _record(self, kind: str, **data: Any) -> None:
        if self.trace is not None:
            self.trace.record(kind, self.host, **data)

    # ------------------------------------------------------------------ writing
    def enqueue(self, sender: str, recipients: Iterable[str], message: bytes, *,
                queue_id: str, arrival: float,
                params: Mapping[str, str | None] | None = None,
                rcpt_params: Mapping[str, Mapping[str, str | None]] | None = None,
                ) -> QueuedMessage:
        """Write a message durably into ``active/`` and return it.

        When this returns, the message is on disk (file and directory fsynced): only then may
        the submission server answer ``250`` (RFC 5321 §6.1). Any OSError propagates, so the
        server answers ``451 4.3.0`` / ``452 4.3.1`` instead (catalogue test 76b).

        Args:
            sender: the envelope sender ("" = the null sender of a bounce).
            recipients: envelope recipients (duplicates are dropped, order kept).
            message: the message content (headers and body, CRLF line ends).
            queue_id: the id the server announced (``250 2.0.0 Ok: queued as <id>``).
            arrival: virtual time of arrival (POSIX seconds).
            params: MAIL parameters (SIZE, BODY, RET, ENVID, SMTPUTF8).
            rcpt_params: per recipient RCPT parameters (NOTIFY, ORCPT).
        """
        if not _QUEUE_ID.match(queue_id):
            raise QueueError(f"queue id {queue_id!r} must be 1-64 letters or digits")
        rcpts = list(dict.fromkeys(recipients))
        if not rcpts:
            raise QueueError("a message needs at least one recipient")
        for rcpt in rcpts:
            if any(c in rcpt for c in "\r\n\x00"):
                raise QueueError(f"recipient {rcpt!r} contains CR, LF or NUL")
        rcpt_params = rcpt_params or {}
        header = {
            "queue_id": queue_id, "sender": sender, "recipients": rcpts,
            "arrival": arrival, "params": dict(params or {}),
            "rcpt_params": {r: dict(rcpt_params.get(r, {})) for r in rcpts},
            "size": len(message),
        }
        data = b"".join([QUEUE_MAGIC, json.dumps(header, sort_keys=True).encode(), b"\n",
                         message, END_MARKER])
        final_path = self.active_dir / queue_id
        with self._lock:
            if queue_id in self._messages or final_path.exists():
                raise QueueError(f"queue id {queue_id} is already in the queue")
            tmp_path = self.tmp_dir / f"{queue_id}.{os.getpid()}"
            fd = os.open(tmp_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | _BINARY, 0o600)
            try:
                try:
                    _write_all(fd, data)
                    if self.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
                os.rename(tmp_path, final_path)  # atomic: the name appears complete or not
            except BaseException:
                tmp_path.unlink(missing_ok=True)
                raise
            if self.fsync:
                _fsync_directory(self.active_dir)
            queued = QueuedMessage(
                queue_id=queue_id, sender=sender,
                recipients=[RecipientState(r, params=dict(rcpt_params.get(r, {})))
                            for r in rcpts],
                message=message, arrival=arrival, params=dict(params or {}),
                path=final_path)
            self._hold(queued, len(message))
            self._messages[queue_id] = queued
        self._record("queue.enqueue", queue_id=queue_id, sender=sender, recipients=rcpts,
                     size=len(message), path=str(final_path))
        return queued

    def _append_journal(self, queue_id: str, records: list[dict[str, Any]]) -> None:
        path = self.status_dir / queue_id
        new = not path.exists()
        data = b"".join(json.dumps(r, sort_keys=True).encode() + b"\n" for r in records)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | _BINARY, 0o600)
        try:
            _write_all(fd, data)
            if self.fsync:
                os.fsync(fd)
        finally:
            os.close(fd)
        if new and self.fsync:
            _fsync_directory(self.status_dir)

    def record_results(self, queue_id: str,
                       results: Iterable[RecipientResult]) -> QueuedMessage:
        """Persist outcomes of one attempt durably (ONE fsync), then update the message.

        The delivery agent calls this right after the remote reply and before it does
        anything else, so a recipient that got ``250`` is never delivered twice after a
        crash (except for the window described in the module docstring).
        """
        results = list(results)
        with self._lock:
            queued = self.get(queue_id)
            for result in results:
                queued.recipient(result.recipient)  # KeyError for strangers, before writing
            records = [r.to_record() for r in results]
            if records and self._completes(queued, records):
                self._delete_files(queue_id)  # done: deleting the file is the record
            elif records:
                self._append_journal(queue_id, records)
            for record in records:
                _apply(queued, record)
        for result in results:
            self._record("queue.result", queue_id=queue_id, recipient=result.recipient,
                         status=str(result.status), reply=result.reply,
                         next_attempt=result.next_attempt)
        return queued

    def record_result(self, queue_id: str, recipient: str, status: RecipientStatus | str, *,
                      reply: str = "", status_code: str = "", remote_mta: str = "",
                      when: float | None = None, next_attempt: float | None = None,
                      counts_attempt: bool = True) -> RecipientState:
        """Persist one recipient's outcome durably (see :meth:`record_results`)."""
        result = RecipientResult(recipient, RecipientStatus(status), reply, status_code,
                                 remote_mta, when, next_attempt, counts_attempt)
        return self.record_results(queue_id, [result]).recipient(recipient)

    def mark_notified(self, queue_id: str, recipients: Iterable[str]) -> QueuedMessage:
        """Record durably that the failure DSN for these recipients was handed over."""
        rcpts = list(recipients)
        with self._lock:
            queued = self.get(queue_id)
            for r in rcpts:
                queued.recipient(r)
            if rcpts:
                self._append_journal(queue_id, [{"notified": rcpts}])
                _apply(queued, {"notified": rcpts})
        return queued

    def mark_warned(self, queue_id: str) -> QueuedMessage:
        """Record durably that the delay warning for this message was handed over."""
        with self._lock:
            queued = self.get(queue_id)
            self._append_journal(queue_id, [{"warned": True}])
            _apply(queued, {"warned": True})
        return queued

    def remove(self, queue_id: str, *, force: bool = False) -> None:
        """Remove a message whose recipients are all final and whose failures are notified
        (its files may be gone already: :meth:`record_results` deletes them when the last
        outcome completes the message).

        Raises QueueError when the message is not complete, unless ``force``.
        """
        with self._lock:
            queued = self.get(queue_id)
            if not force and not queued.complete:
                raise QueueError(f"{queue_id} still has recipients to deliver or notify")
            if queued.path is None or queued.path.exists():
                self._delete_files(queue_id)
            self._release(self._messages.pop(queue_id))
        self._record("queue.remove", queue_id=queue_id)

    @staticmethod
    def _completes(queued: QueuedMessage, records: list[dict[str, Any]]) -> bool:
        """Whether these outcomes leave the message complete (nothing left to deliver or
        to notify), tried on a copy of its recipients' states."""
        trial = copy.copy(queued)  # (not dataclasses.replace: no content read from disk)
        trial.recipients = [dataclasses.replace(r) for r in queued.recipients]
        for record in records:
            _apply(trial, record)
        return trial.complete

    def _delete_files(self, queue_id: str) -> None:
        """The queue file first, durably (then the journal): a crash in between leaves an
        orphan journal, which :meth:`load` deletes, never a message without its outcomes."""
        (self.active_dir / queue_id).unlink(missing_ok=True)
        if self.fsync:
            _fsync_directory(self.active_dir)
        (self.status_dir / queue_id).unlink(missing_ok=True)

    # ------------------------------------------------------------------ reading
    def get(self, queue_id: str) -> QueuedMessage:
        """The message with this id (QueueError if there is none)."""
        try:
            return self._messages[queue_id]
        except KeyError:
            raise QueueError(f"no message {queue_id} in the queue") from None

    def __contains__(self, queue_id: object) -> bool:
        return queue_id in self._messages

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self) -> Iterator[QueuedMessage]:
        return iter(self.messages())

    def messages(self) -> list[QueuedMessage]:
        """Every message, oldest arrival first."""
        with self._lock:
            return sorted(self._messages.values(), key=lambda m: (m.arrival, m.queue_id))

    def due(self, now: float) -> list[QueuedMessage]:
        """Messages with a recipient due at virtual time ``now``, earliest due first."""
        found = [(due, m) for m in self.messages()
                 if (due := m.due_at()) is not None and due <= now]
        found.sort(key=lambda pair: (pair[0], pair[1].arrival, pair[1].queue_id))
        return [m for _, m in found]

    def deferred(self) -> list[QueuedMessage]:
        """Messages with at least one deferred recipient."""
        return [m for m in self.messages()
                if any(r.status is RecipientStatus.DEFERRED for r in m.recipients)]

    def next_due(self) -> float | None:
        """The earliest virtual time at which something is due (None: nothing to do)."""
        times = [t for m in self.messages() if (t := m.due_at()) is not None]
        return min(times) if times else None

    def load(self) -> list[QueuedMessage]:
        """(Re)read the directory: resume every complete message with its outcomes.

        Removes files a crash left behind: anything in ``tmp/``, queue files without the END
        marker (or otherwise unreadable), journals without a queue file; drops a torn last
        journal line. What was removed is listed in :attr:`discarded`.
        """
        with self._lock:
            self._messages.clear()
            self._held_bytes = 0
            for path in sorted(self.tmp_dir.iterdir()):
                self._discard(path, "incomplete write left in tmp/ by a crash")
            for path in sorted(self.active_dir.iterdir()):
                try:
                    header, message = _parse_queue_file(path.read_bytes())
                    if header.get("queue_id") != path.name:
                        raise ValueError("queue id does not match the file name")
                    queued = _message_from_header(header, message, path)
                except (ValueError, TypeError, KeyError, AttributeError) as exc:
                    self._discard(path, f"not a complete queue file: {exc}")
                    continue
                self._replay_journal(queued)
                self._hold(queued, len(message))
                self._messages[queued.queue_id] = queued
            for path in sorted(self.status_dir.iterdir()):
                if path.name not in self._messages:
                    self._discard(path, "journal of a message no longer queued")
            if self.fsync:
                for d in (self.tmp_dir, self.active_dir, self.status_dir):
                    _fsync_directory(d)
            loaded = self.messages()
        self._record("queue.load", directory=str(self.directory),
                     messages=[m.queue_id for m in loaded])
        return loaded

    def _hold(self, queued: QueuedMessage, size: int) -> None:
        """Keep the content in memory within the budget; else only in its file."""
        if queued.path is not None and self._held_bytes + size > self.memory_budget:
            queued.message = None  # type: ignore[assignment]  # read back from the file
        else:
            self._held_bytes += size

    def _release(self, queued: QueuedMessage) -> None:
        held = queued.__dict__.get("_message")
        if held is not None:
            self._held_bytes -= len(held)

    @property
    def held_bytes(self) -> int:
        """Bytes of message content held in memory now (at most :attr:`memory_budget`)."""
        return self._held_bytes

    def _discard(self, path: Path, reason: str) -> None:
        if path.is_dir():
            return
        path.unlink(missing_ok=True)
        self.discarded.append(Discarded(path, reason))
        self._record("queue.discard", path=str(path), reason=reason)

    def _replay_journal(self, queued: QueuedMessage) -> None:
        path = self.status_dir / queued.queue_id
        if not path.exists():
            return
        data = path.read_bytes()
        good = 0
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # torn last line: the append never completed
            try:
                record = json.loads(line)
                _apply(queued, record)
            except (ValueError, KeyError, TypeError):
                break
            good += len(line)
        if good != len(data):  # cut the torn tail so later appends start on a clean line
            with open(path, "r+b") as f:
                f.truncate(good)
                f.flush()
                if self.fsync:
                    os.fsync(f.fileno())
            self._record("queue.journal_repaired", queue_id=queued.queue_id,
                         dropped=len(data) - good)


def _message_from_header(header: dict[str, Any], message: bytes, path: Path) -> QueuedMessage:
    rcpt_params = header.get("rcpt_params") or {}
    return QueuedMessage(
        queue_id=str(header["queue_id"]), sender=str(header["sender"]),
        recipients=[RecipientState(str(r), params=dict(rcpt_params.get(r, {})))
                    for r in header["recipients"]],
        message=message, arrival=float(header["arrival"]),
        params=dict(header.get("params") or {}), path=path)


def _apply(queued: QueuedMessage, record: Mapping[str, Any]) -> None:
    """Apply one journal record to the in-memory state."""
    if "warned" in record:
        queued.warned = bool(record["warned"])
        return
    if "notified" in record:
        for address in record["notified"]:
            queued.recipient(address).notified = True
        return
    state = queued.recipient(record["recipient"])
    state.status = RecipientStatus(record["status"])
    state.reply = record.get("reply") or ""
    state.status_code = record.get("status_code") or ""
    state.remote_mta = record.get("remote_mta") or ""
    if record.get("attempt", True):
        state.attempts += 1
        if record.get("when") is not None:
            state.last_attempt = float(record["when"])
    state.next_attempt = (float(record["next_attempt"])
                          if record.get("next_attempt") is not None else None)
    if queued.sender == "" and state.status is RecipientStatus.FAILED:
        state.notified = True  # never bounce a bounce (RFC 5321 §4.5.4, §6.1)
