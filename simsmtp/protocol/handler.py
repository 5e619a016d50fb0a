"""Server policy: a handler with ``handle_<VERB>`` hooks (as aiosmtpd's handlers).

The core decides syntax and sequence; the handler only decides acceptance. Each hook returns
a :class:`~simsmtp.protocol.replies.Reply` to use instead of the default, or ``None`` for the
default (Postfix persona) reply. A hook that raises is answered ``451 4.3.0`` (never ``250``)
and the exception is kept in ``ServerConnection.handler_errors``.

``handle_DATA`` may also answer later: it returns a :class:`PendingReply` (a future, e.g.
an :class:`asyncio.Future` made by the network layer, which checks the message on a worker
thread); the core then reads nothing more of the connection until ``done()``, and its
``result()`` is the reply. So no CPU-heavy check ever runs inside ``next_event()``.

Subclass :class:`Handler` and override what you need; the defaults accept everything that
is syntactically valid, authenticate nobody, and keep nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

from .replies import Reply
from .session import Envelope, Session


@runtime_checkable
class PendingReply(Protocol):
    """A reply that comes later (what a future offers; ``asyncio.Future`` and
    ``concurrent.futures.Future`` both are one)."""

    def done(self) -> bool:
        """True once :meth:`result` can be called."""

    def result(self) -> Reply | None:
        """The reply (None for the default), or raise: the message gets ``451 4.3.0``."""

    def cancel(self) -> bool:
        """The connection closed first: the answer is no longer wanted."""


class Handler:
    """The default, permissive policy."""

    def handle_CONNECT(self, session: Session) -> Reply | None:
        """The greeting: None for ``220 <host> ESMTP Postfix``; a ``554`` refuses service
        (the server then answers only QUIT, RFC 5321 §3.1); a ``421`` closes at once."""
        return None

    def handle_EHLO(self, session: Session, hostname: str) -> Reply | None:
        """EHLO: None for the default extension list; an error reply refuses it."""
        return None

    def handle_HELO(self, session: Session, hostname: str) -> Reply | None:
        """HELO: None for ``250 <host>``; an error reply refuses it."""
        return None

    def handle_MAIL(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        """MAIL FROM (address "" is the null sender): None for ``250 2.1.0 Ok``."""
        return None

    def handle_RCPT(self, session: Session, envelope: Envelope, address: str,
                    params: Mapping[str, str | None]) -> Reply | None:
        """RCPT TO: None for ``250 2.1.5 Ok``; e.g. ``550 5.1.1`` (unknown user) or
        ``454 4.7.1`` (relay denied). ``<Postmaster>`` never reaches the handler."""
        return None

    def handle_VRFY(self, session: Session, arg: str) -> Reply | None:
        """VRFY: None for ``252 2.0.0 <arg>`` (cannot verify, will try)."""
        return None

    def handle_HELP(self, session: Session, arg: str) -> Reply | None:
        """HELP: None for the persona's answer (Postfix: ``500 5.5.2``, it has no HELP);
        e.g. ``214`` with help text (RFC 5321 §4.1.1.8)."""
        return None

    def handle_ETRN(self, session: Session, arg: str) -> Reply | None:
        """ETRN: None for ``250 Queuing started``."""
        return None

    def handle_AUTH(self, session: Session, mechanism: str, username: str,
                    password: str) -> bool:
        """Check credentials; True authenticates. The default trusts nobody."""
        return False

    def handle_DATA(self, session: Session, envelope: Envelope) -> Reply | PendingReply | None:
        """The complete message (end of DATA or BDAT LAST): store it here, then return None
        for ``250 2.0.0 Ok: queued as <envelope.queue_id>``, or e.g. ``451 4.3.0`` when the
        disk failed (RFC 5321 §6.1: never 250 for a message not safely stored); or a
        :class:`PendingReply` whose result is one of those, later."""
        return None

    def handle_RSET(self, session: Session) -> Reply | None:
        """RSET: None for ``250 2.0.0 Ok``."""
        return None

    def handle_QUIT(self, session: Session) -> Reply | None:
        """QUIT: None for ``221 2.0.0 Bye``."""
        return None
