"""Storing what a server accepted: local recipients' mailboxes and the outbound queue.

A message gets its ``250`` only once it is safely stored (RFC 5321 §6.1): the mailboxes of
its local recipients (``fsync``ed Maildir files) and, for the others, the host's durable
outbound queue. :func:`store_accepted` does both, all or nothing.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simsmtp.protocol.replies import Reply

if TYPE_CHECKING:
    from simsmtp.protocol.session import Envelope, Session
    from simsmtp.world.model import World

    from .queue import Queue
    from .runtime import Receiver

__all__ = ["return_path", "store_accepted"]


def return_path(sender: str | None) -> bytes:
    """The ``Return-Path:`` header of a final delivery (RFC 5321 §4.4; ``<>`` for a bounce)."""
    return f"Return-Path: <{sender or ''}>\r\n".encode("utf-8", "surrogateescape")


def store_accepted(handler: Receiver, session: Session, envelope: Envelope, *, world: World,
                   store: Any, queue: Queue | None, kick: Callable[[], object],
                   folder: str | None = None, content: bytes | None = None) -> Reply | None:
    """Store a message a server accepted: remote recipients into the outbound ``queue``
    (then ``kick()`` its agent), local ones into their mailboxes in ``store`` (into
    ``folder``, e.g. ``"Junk"``, when given), all ``fsync``ed before the ``250`` (RFC 5321
    §6.1). ``content`` replaces the message as received (e.g. DKIM-signed or with
    Authentication-Results on top), leaving ``envelope.content`` (what the trace shows
    crossed the wire) untouched.

    Returns None (the ``250``) or the ``451 4.3.0`` of a storage failure; either all of
    it is stored or none of it.
    """
    from .queue import QueueError
    from .store import StorageError

    host = handler.host
    trace = world.trace
    recipients = handler.final_recipients(envelope)
    local = [r for r in recipients if handler.is_local(r)]
    remote = [r for r in recipients if not handler.is_local(r)]
    qid = envelope.queue_id or world.ids.queue_id()
    if remote and queue is None:  # RCPT should have refused; never lose it silently
        return Reply(451, "4.3.0 Error: no outbound queue on this host")
    queued = False
    data = envelope.content if content is None else content
    try:
        if remote:
            assert queue is not None
            received = handler.received(session, envelope,
                                        remote[0] if len(remote) == 1 else None)
            queue.enqueue(envelope.mail_from or "", remote, received + data,
                          queue_id=qid, arrival=world.clock.now(),
                          params=dict(envelope.mail_params))
            queued = True
        if local:
            # Final delivery: Return-Path records the envelope sender (RFC 5321 §4.4)
            received = return_path(envelope.mail_from) + handler.received(
                session, envelope, local[0] if len(local) == 1 else None)
            store.deliver_many(local, received + data, folder)
    except (StorageError, QueueError, OSError) as exc:
        if queued:
            assert queue is not None
            with contextlib.suppress(Exception):
                queue.remove(qid, force=True)
        return handler.storage_error(exc)
    for rcpt in local:
        trace.record("delivery.stored", host=host.name, queue_id=qid, recipient=rcpt,
                     sender=envelope.mail_from, **({"folder": folder} if folder else {}))
    if remote:
        trace.record("queue.accepted", host=host.name, queue_id=qid,
                     recipients=list(remote), sender=envelope.mail_from)
        kick()
    return None
