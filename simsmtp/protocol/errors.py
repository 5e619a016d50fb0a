"""The two error types of the sans-IO cores (after h11).

``LocalProtocolError``: *our* side asked for something the protocol does not allow
(a programming or learner error on the calling side); raised to the caller.

``RemoteProtocolError``: the *peer* broke the protocol. Raised inside a core and caught in
one place: a server turns it into the right reply and carries on; a client closes and
reports it as a ``ConnectionClosed`` event (and ``ClientConnection.error``).
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of the sans-IO protocol errors."""


class LocalProtocolError(ProtocolError):
    """Our side asked for something illegal in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal.

    Raised inside a core where the peer breaks the protocol and caught in one place: the
    SMTP server answers with the persona reply ``key`` (filled in with ``fields``) and
    carries on; the SMTP client closes (a :class:`ConnectionClosed` event, the error kept
    in ``ClientConnection.error``). It never reaches the caller of ``next_event()``.

    Attributes:
        key: the persona reply a server answers (e.g. ``"mail_syntax"``), or None.
        fields: the values that reply's template takes.
    """

    def __init__(self, message: str, key: str | None = None, **fields: str) -> None:
        super().__init__(message)
        self.key = key
        self.fields = fields


class TLSFailure(ProtocolError):
    """The TLS handshake or a TLS record failed (bad certificate, garbage, alert)."""
