"""TLS inside a sans-IO core: an ``ssl.SSLObject`` over two ``ssl.MemoryBIO``.

Both the SMTP cores (STARTTLS, implicit TLS on 465) and the POP3 core (STLS) use this:
ciphertext from the wire goes in with :meth:`TLSLayer.receive`, plaintext comes out;
plaintext to send goes in with :meth:`TLSLayer.send`, and TLS records to put on the wire
come out of :meth:`TLSLayer.data_to_send`. No socket is involved.
"""

from __future__ import annotations

import contextlib
import ssl
from typing import Any

from .errors import TLSFailure


class TLSLayer:
    """One side of a TLS session driven by memory buffers.

    Args:
        context: the ``ssl.SSLContext`` (server or client purpose).
        server_side: True for the server end.
        server_hostname: for a client, the name to send as SNI and to verify.
    """

    def __init__(self, context: ssl.SSLContext, *, server_side: bool,
                 server_hostname: str | None = None) -> None:
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self._obj = context.wrap_bio(self._in, self._out, server_side=server_side,
                                     server_hostname=server_hostname)
        self.server_side = server_side
        self.handshake_complete = False
        self.closed = False
        #: Plaintext that arrived in the same flight as the handshake's end.
        self._early: list[bytes] = []

    def start(self) -> None:
        """Begin the handshake (a client's ClientHello becomes available to send)."""
        self._handshake()

    def _handshake(self) -> None:
        try:
            self._obj.do_handshake()
        except ssl.SSLWantReadError:
            return
        except ssl.SSLError as exc:
            self.closed = True
            raise TLSFailure(f"TLS handshake failed: {exc.reason or exc}") from exc
        self.handshake_complete = True

    def receive(self, data: bytes) -> bytes:
        """Feed ciphertext; return the plaintext it decrypts to (maybe ``b""``).

        Raises:
            TLSFailure: the handshake failed or a record could not be decrypted.
        """
        if data:
            self._in.write(data)
        if not self.handshake_complete:
            self._handshake()
            if not self.handshake_complete:
                return b""
        chunks: list[bytes] = []
        while True:
            try:
                chunk = self._obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                self.closed = True
                break
            except ssl.SSLError as exc:
                self.closed = True
                raise TLSFailure(f"TLS record error: {exc.reason or exc}") from exc
            if not chunk:
                self.closed = True
                break
            chunks.append(chunk)
        return b"".join(chunks)

    def send(self, plaintext: bytes) -> None:
        """Encrypt plaintext; the records wait in :meth:`data_to_send`."""
        if not self.handshake_complete:
            raise TLSFailure("cannot send application data before the TLS handshake")
        view = memoryview(plaintext)
        while view:
            written = self._obj.write(view)
            view = view[written:]

    def data_to_send(self) -> bytes:
        """TLS records (handshake or application data) to put on the wire."""
        return self._out.read()

    def close(self) -> None:
        """Send close_notify (best effort)."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(ssl.SSLError, ValueError):
            self._obj.unwrap()

    # What a learner (and the trace) wants to know about the session.
    @property
    def version(self) -> str | None:
        return self._obj.version() if self.handshake_complete else None

    @property
    def cipher(self) -> str | None:
        c = self._obj.cipher() if self.handshake_complete else None
        return c[0] if c else None

    def peer_certificate(self) -> dict[str, Any] | None:
        """The verified peer certificate as a dict, or ``None``."""
        if not self.handshake_complete:
            return None
        return self._obj.getpeercert() or None

    def peer_certificate_der(self) -> bytes | None:
        """The peer's certificate in DER, verified or not (DANE matches it to TLSA
        records itself, RFC 7672 §3.1), or ``None`` before the handshake."""
        if not self.handshake_complete:
            return None
        return self._obj.getpeercert(binary_form=True)

    def summary(self) -> dict[str, Any]:
        """Version, cipher and peer subject, for the trace."""
        cert = self.peer_certificate()
        subject = None
        if cert:
            subject = ", ".join("=".join(p) for rdn in cert.get("subject", ()) for p in rdn)
        return {"version": self.version, "cipher": self.cipher, "peer": subject}
