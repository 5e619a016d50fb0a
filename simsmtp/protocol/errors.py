"""The two error types of the sans-IO cores (after h11).

``LocalProtocolError``: *our* side asked for something the protocol does not allow
(a programming or learner error on the calling side); raised to the caller.

``RemoteProtocolError``: the *peer* broke the protocol. A server turns it into the right
reply and carries on; a client surfaces it as an event or raises it when it cannot go on.
"""

from __future__ import annotations


class ProtocolError(Exception):
    """Base class of the sans-IO protocol errors."""


class LocalProtocolError(ProtocolError):
    """Our side asked for something illegal in the current state."""


class RemoteProtocolError(ProtocolError):
    """The peer sent something illegal; ``reply`` (if set) is what a server answers."""

    def __init__(self, message: str, reply: object | None = None) -> None:
        super().__init__(message)
        self.reply = reply


class TLSFailure(ProtocolError):
    """The TLS handshake or a TLS record failed (bad certificate, garbage, alert)."""
