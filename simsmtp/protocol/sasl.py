"""SASL mechanisms for SMTP AUTH (RFC 4954): PLAIN (RFC 4616) and LOGIN
(draft-murchison-sasl-login), for both ends, without I/O.

A server mechanism takes the decoded responses one at a time and answers with a
:class:`Challenge` (send ``334 base64``), :class:`Credentials` (check them) or a
:class:`SASLFailure` (a ``501``). A client mechanism gives the initial response and answers
challenges. Passwords never appear in a ``repr``, ``str`` or exception message.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

#: Mechanisms this module implements, in the order a server advertises them.
SUPPORTED_MECHANISMS = ("PLAIN", "LOGIN")


class SASLError(ValueError):
    """A malformed SASL response; ``reason`` is a persona key (``auth_bad_base64``,
    ``auth_bad_response``, ``auth_aborted``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def decode_response(line: str) -> bytes:
    """Decode one base64 SASL response line (RFC 4954 §4).

    ``=`` is an empty response; ``*`` cancels the exchange.

    Raises:
        SASLError: ``auth_aborted`` for ``*``; ``auth_bad_base64`` when not strict base64.
    """
    text = line.strip()
    if text == "*":  # RFC 4954 §4: the client cancels
        raise SASLError("auth_aborted")
    if text == "=":  # RFC 4954 §4: a zero-length response
        return b""
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError):
        raise SASLError("auth_bad_base64") from None


def encode(data: bytes) -> str:
    """Base64 for a SASL line; ``=`` for empty data (RFC 4954 §4)."""
    return base64.b64encode(data).decode("ascii") if data else "="


@dataclass(frozen=True)
class Credentials:
    """A user name and password a server mechanism collected (password masked in repr)."""

    username: str
    password: str = field(repr=False)
    authzid: str = ""

    def __repr__(self) -> str:
        return f"Credentials(username={self.username!r}, password='***')"

    __str__ = __repr__


@dataclass(frozen=True)
class Challenge:
    """Send ``334 <base64 of data>`` and wait for the next response."""

    data: bytes


def _text(data: bytes) -> str:
    try:
        return data.decode("utf-8")  # RFC 4616 §2: UTF-8
    except UnicodeDecodeError:
        raise SASLError("auth_bad_response") from None


class ServerMechanism:
    """Base class of server-side mechanisms: feed decoded responses to :meth:`step`."""

    name = ""

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        """Begin, with the initial response of the AUTH line when there was one."""
        raise NotImplementedError

    def step(self, response: bytes) -> Challenge | Credentials:
        """Take the next decoded response."""
        raise NotImplementedError


class PlainServer(ServerMechanism):
    """PLAIN (RFC 4616): one message ``authzid NUL authcid NUL passwd``."""

    name = "PLAIN"

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is None:
            return Challenge(b"")  # RFC 4954 §4: "334 " then the client's response
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | Credentials:
        parts = response.split(b"\0")
        if len(parts) != 3 or not parts[1]:
            raise SASLError("auth_bad_response")
        authzid, user, password = (_text(p) for p in parts)
        return Credentials(user, password, authzid)


class LoginServer(ServerMechanism):
    """LOGIN: ``334 VXNlcm5hbWU6`` (Username:), then ``334 UGFzc3dvcmQ6`` (Password:)."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._user: str | None = None

    def start(self, initial: bytes | None) -> Challenge | Credentials:
        if initial is None:
            return Challenge(b"Username:")
        return self.step(initial)

    def step(self, response: bytes) -> Challenge | Credentials:
        if self._user is None:
            self._user = _text(response)
            return Challenge(b"Password:")
        return Credentials(self._user, _text(response))


def server_mechanism(name: str) -> ServerMechanism | None:
    """A fresh server mechanism for ``name`` (case-insensitive), or None if unknown."""
    classes: dict[str, type[ServerMechanism]] = {"PLAIN": PlainServer, "LOGIN": LoginServer}
    cls = classes.get(name.upper())
    return cls() if cls else None


class ClientMechanism:
    """Client side of a mechanism: :meth:`initial_response`, then :meth:`respond`."""

    name = ""

    def __init__(self, username: str, password: str) -> None:
        self._username = username
        self._password = password

    def __repr__(self) -> str:
        return f"{type(self).__name__}(username={self._username!r}, password='***')"

    def initial_response(self) -> bytes | None:
        """The response to send on the AUTH line (None: wait for a 334)."""
        return None

    def respond(self, challenge: bytes) -> bytes:
        """The answer to a decoded 334 challenge."""
        raise NotImplementedError


class PlainClient(ClientMechanism):
    """PLAIN with an initial response (RFC 4616 §2, RFC 4954 §4)."""

    name = "PLAIN"

    def initial_response(self) -> bytes | None:
        return b"\0" + self._username.encode("utf-8") + b"\0" + self._password.encode("utf-8")

    def respond(self, challenge: bytes) -> bytes:
        response = self.initial_response()
        assert response is not None
        return response


class LoginClient(ClientMechanism):
    """LOGIN: the user name to the first challenge, the password to the second."""

    name = "LOGIN"

    def __init__(self, username: str, password: str) -> None:
        super().__init__(username, password)
        self._steps = 0

    def respond(self, challenge: bytes) -> bytes:
        self._steps += 1
        if self._steps == 1:
            return self._username.encode("utf-8")
        return self._password.encode("utf-8")


def client_mechanism(name: str, username: str, password: str) -> ClientMechanism | None:
    """A client mechanism for ``name`` (case-insensitive), or None if unknown."""
    classes: dict[str, type[ClientMechanism]] = {"PLAIN": PlainClient, "LOGIN": LoginClient}
    cls = classes.get(name.upper())
    return cls(username, password) if cls else None
