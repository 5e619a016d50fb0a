"""TLS as an eavesdropper sees it: records, handshake messages, and what stays in clear.

Pure functions over captured bytes (no socket, no ``ssl``):

* :func:`parse_records` splits a byte stream into TLS records (RFC 8446 §5.1, RFC 5246
  §6.2): content type, legacy version, length. Partial records and garbage never raise.
* :func:`inspect_tls` follows both directions of one connection: the handshake message
  names, the ClientHello (SNI, offered cipher suites with IANA names, supported_versions),
  the ServerHello (chosen version and suite), for TLS 1.2 the Certificate message in clear
  (subject CN and SANs, parsed with ``cryptography``), for TLS 1.3 the fact that everything
  after the ServerHello is encrypted.
* :func:`tls_start` finds where TLS begins in a captured SMTP or POP3 connection (after
  ``STARTTLS``/``STLS``, or from the first byte on an implicit-TLS port).
* :func:`read_keylog` parses an SSLKEYLOGFILE (the format Wireshark reads) and
  :func:`decrypt` uses it to decrypt the records of a session (TLS 1.3 AES-GCM, AES-CCM and
  ChaCha20-Poly1305; TLS 1.2 AES-GCM and ChaCha20-Poly1305), exactly as Wireshark does with
  ``tls.keylog_file``: the capture stays the source, the keys only unlock it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "CONTENT_TYPES",
    "HANDSHAKE_TYPES",
    "VERSIONS",
    "CertificateInfo",
    "ClientHello",
    "Decryption",
    "KeyLog",
    "KeyLogEntry",
    "ServerHello",
    "TLSRecord",
    "TLSSession",
    "cipher_suite_name",
    "decrypt",
    "inspect_tls",
    "looks_like_tls",
    "parse_keylog",
    "parse_records",
    "read_keylog",
    "subject_alt_names",
    "tls_start",
    "version_name",
]

Direction = Literal["c2s", "s2c"]

#: ContentType (RFC 8446 §5.1, RFC 5246 §6.2.1, RFC 6520 §3 for heartbeat).
CONTENT_TYPES: dict[int, str] = {
    20: "change_cipher_spec",
    21: "alert",
    22: "handshake",
    23: "application_data",
    24: "heartbeat",
}
#: ProtocolVersion values (RFC 8446 §4.2.1, RFC 5246 Appendix A.1).
VERSIONS: dict[int, str] = {
    0x0300: "SSL 3.0",
    0x0301: "TLS 1.0",
    0x0302: "TLS 1.1",
    0x0303: "TLS 1.2",
    0x0304: "TLS 1.3",
}
#: HandshakeType (RFC 8446 §4, RFC 5246 §7.4).
HANDSHAKE_TYPES: dict[int, str] = {
    0: "HelloRequest",
    1: "ClientHello",
    2: "ServerHello",
    4: "NewSessionTicket",
    5: "EndOfEarlyData",
    8: "EncryptedExtensions",
    11: "Certificate",
    12: "ServerKeyExchange",
    13: "CertificateRequest",
    14: "ServerHelloDone",
    15: "CertificateVerify",
    16: "ClientKeyExchange",
    20: "Finished",
    24: "KeyUpdate",
    254: "MessageHash",
}
#: RFC 8446 §5.1: a TLSPlaintext fragment is at most 2^14 bytes; RFC 5246 §6.2.3 allows a
#: TLSCiphertext fragment up to 2^14 + 2048 bytes. Longer means "not a TLS record".
MAX_RECORD_LENGTH = 2**14 + 2048
#: RFC 8446 §4.1.3: the ServerHello.random of a HelloRetryRequest.
_HRR_RANDOM = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c")

#: IANA TLS Cipher Suites registry names of the suites a learner will meet (RFC 8446
#: Appendix B.4, RFC 5289, RFC 7905, RFC 5246 Appendix A.5, RFC 5746 §3.3, RFC 7507 §6).
CIPHER_SUITES: dict[int, str] = {
    0x1301: "TLS_AES_128_GCM_SHA256",
    0x1302: "TLS_AES_256_GCM_SHA384",
    0x1303: "TLS_CHACHA20_POLY1305_SHA256",
    0x1304: "TLS_AES_128_CCM_SHA256",
    0x1305: "TLS_AES_128_CCM_8_SHA256",
    0xC02B: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
    0xC02C: "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
    0xC02F: "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
    0xC030: "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
    0xCCA8: "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCA9: "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
    0xCCAA: "TLS_DHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
    0x009E: "TLS_DHE_RSA_WITH_AES_128_GCM_SHA256",
    0x009F: "TLS_DHE_RSA_WITH_AES_256_GCM_SHA384",
    0x009C: "TLS_RSA_WITH_AES_128_GCM_SHA256",
    0x009D: "TLS_RSA_WITH_AES_256_GCM_SHA384",
    0xC023: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256",
    0xC024: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA384",
    0xC027: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256",
    0xC028: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA384",
    0xC009: "TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA",
    0xC00A: "TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA",
    0xC013: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA",
    0xC014: "TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA",
    0x0067: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA256",
    0x006B: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA256",
    0x0033: "TLS_DHE_RSA_WITH_AES_128_CBC_SHA",
    0x0039: "TLS_DHE_RSA_WITH_AES_256_CBC_SHA",
    0x003C: "TLS_RSA_WITH_AES_128_CBC_SHA256",
    0x003D: "TLS_RSA_WITH_AES_256_CBC_SHA256",
    0x002F: "TLS_RSA_WITH_AES_128_CBC_SHA",
    0x0035: "TLS_RSA_WITH_AES_256_CBC_SHA",
    0x000A: "TLS_RSA_WITH_3DES_EDE_CBC_SHA",
    0x00FF: "TLS_EMPTY_RENEGOTIATION_INFO_SCSV",
    0x5600: "TLS_FALLBACK_SCSV",
}
#: Extension numbers read here (RFC 6066 §3, RFC 8446 §4.2.1, RFC 7301 §3.1).
_EXT_SERVER_NAME, _EXT_ALPN, _EXT_SUPPORTED_VERSIONS = 0, 16, 43


def cipher_suite_name(code: int) -> str:
    """The IANA name of a cipher suite, ``GREASE`` (RFC 8701 §2) or ``0xC0FE``."""
    if code in CIPHER_SUITES:
        return CIPHER_SUITES[code]
    if code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF:
        return "GREASE"
    return f"0x{code:04X}"


def version_name(code: int) -> str:
    """``TLS 1.2`` for 0x0303 and so on (``0x7F1C`` for the unknown)."""
    if code & 0x0F0F == 0x0A0A and code >> 8 == code & 0xFF:
        return "GREASE"
    return VERSIONS.get(code, f"0x{code:04X}")


# ------------------------------------------------------------------------------ records

@dataclass(frozen=True)
class TLSRecord:
    """One TLS record as it crossed the wire.

    Attributes:
        offset: where its 5-byte header starts, counted from the start of the stream
            given to :func:`parse_records` plus its ``offset`` argument.
        content_type: the outer ContentType (23 for every TLS 1.3 record after ServerHello).
        version: the legacy record version (0x0303 even for TLS 1.3, RFC 8446 §5.1).
        length: the declared fragment length.
        fragment: the fragment bytes (fewer than ``length`` when ``complete`` is False).
        complete: False for a record cut off by the end of the capture.
        encrypted: True when the fragment is ciphertext (set by :func:`inspect_tls`).
        messages: the handshake messages that start in this record when it is readable
            (``ClientHello``, ``ServerHello``, ``Certificate`` ...); after decryption, the
            inner messages of encrypted handshake records.
    """

    offset: int
    content_type: int
    version: int
    length: int
    fragment: bytes
    complete: bool = True
    encrypted: bool = False
    messages: tuple[str, ...] = ()

    @property
    def type_name(self) -> str:
        """``handshake``, ``application_data`` ... (RFC 8446 §5.1)."""
        return CONTENT_TYPES.get(self.content_type, f"type {self.content_type}")

    @property
    def version_name(self) -> str:
        """The record-layer version as text."""
        return version_name(self.version)

    @property
    def size(self) -> int:
        """Bytes on the wire: header plus fragment."""
        return 5 + len(self.fragment)

    @property
    def end(self) -> int:
        """Offset just after the record (as far as it was captured)."""
        return self.offset + self.size

    def describe(self) -> str:
        """``handshake (ClientHello), 517 bytes`` or ``application_data, 53 bytes``."""
        name = self.type_name
        if self.messages:
            name += f" ({', '.join(self.messages)})"
        elif self.encrypted and self.content_type == 22:
            name += " (encrypted)"
        text = f"{name}, {self.size} bytes"
        if not self.complete:
            text += f" (partial: {len(self.fragment)} of {self.length} fragment bytes)"
        return text


def looks_like_tls(data: bytes) -> bool:
    """True if ``data`` starts like a TLS handshake or alert record (0x16/0x15, 0x03, 0x0N).

    Fewer than 3 bytes are judged on what is there (a capture may end mid-header).
    """
    if not data or data[0] not in (21, 22):
        return False
    if len(data) >= 2 and data[1] != 3:
        return False
    return not (len(data) >= 3 and data[2] > 4)


def _valid_header(content_type: int, major: int, minor: int, length: int) -> bool:
    return (content_type in CONTENT_TYPES and major == 3 and minor <= 4
            and length <= MAX_RECORD_LENGTH)


def parse_records(data: bytes, offset: int = 0) -> list[TLSRecord]:
    """Split ``data`` into TLS records, stopping at the first thing that is not one.

    Args:
        data: bytes that begin with a record header.
        offset: added to each record's ``offset`` (e.g. where TLS began in the stream).

    Returns:
        The records; the last one has ``complete=False`` if the data ends inside it. A
        header that is garbage (unknown type, version not 3.x, over-long) ends the list.
    """
    records: list[TLSRecord] = []
    position = 0
    while position + 5 <= len(data):
        content_type, major, minor = data[position], data[position + 1], data[position + 2]
        length = int.from_bytes(data[position + 3:position + 5], "big")
        if not _valid_header(content_type, major, minor, length):
            break
        fragment = data[position + 5:position + 5 + length]
        records.append(TLSRecord(offset + position, content_type, (major << 8) | minor,
                                 length, fragment, complete=len(fragment) == length))
        position += 5 + length
    return records


# ------------------------------------------------------------------------------ hellos

class _Short(Exception):
    """The data ended before a field did."""


class _Reader:
    """Bounds-checked big-endian reads over bytes (RFC 8446 §3 presentation language)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise _Short
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "big")

    def vector(self, length_bytes: int) -> bytes:
        return self.take(self.uint(length_bytes))

    @property
    def left(self) -> int:
        return len(self.data) - self.pos


@dataclass(frozen=True)
class ClientHello:
    """What a ClientHello shows in clear (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2).

    Attributes:
        legacy_version: 0x0303 for TLS 1.2 and 1.3 clients.
        random: the 32-byte client random (the key log's second column).
        session_id: the legacy session id.
        cipher_suites: the offered suites, as numbers, in the client's order.
        sni: the server_name extension's host name (RFC 6066 §3), or ``None``.
        supported_versions: the supported_versions extension (RFC 8446 §4.2.1).
        alpn: the ALPN protocol names (RFC 7301 §3.1).
        extensions: the extension numbers in order.
    """

    legacy_version: int
    random: bytes
    session_id: bytes
    cipher_suites: tuple[int, ...]
    sni: str | None = None
    supported_versions: tuple[int, ...] = ()
    alpn: tuple[str, ...] = ()
    extensions: tuple[int, ...] = ()

    @property
    def cipher_suite_names(self) -> list[str]:
        """The offered suites by IANA name (GREASE values left out)."""
        return [cipher_suite_name(c) for c in self.cipher_suites
                if cipher_suite_name(c) != "GREASE"]

    @property
    def version_names(self) -> list[str]:
        """supported_versions as text (GREASE left out), or the legacy version."""
        versions = self.supported_versions or (self.legacy_version,)
        return [version_name(v) for v in versions if version_name(v) != "GREASE"]


@dataclass(frozen=True)
class ServerHello:
    """The server's choice (RFC 8446 §4.1.3, RFC 5246 §7.4.1.3).

    Attributes:
        legacy_version: the version field (0x0303 for TLS 1.3).
        random: the server random.
        cipher_suite: the chosen suite.
        selected_version: from supported_versions if present, else ``legacy_version``.
        hello_retry: True for a HelloRetryRequest (RFC 8446 §4.1.4).
    """

    legacy_version: int
    random: bytes
    cipher_suite: int
    selected_version: int
    hello_retry: bool = False

    @property
    def version(self) -> str:
        """The negotiated version, e.g. ``TLS 1.3``."""
        return version_name(self.selected_version)

    @property
    def cipher_suite_name(self) -> str:
        """The chosen suite's IANA name."""
        return cipher_suite_name(self.cipher_suite)


@dataclass(frozen=True)
class CertificateInfo:
    """A certificate read from a Certificate message sent in clear (TLS 1.2).

    Attributes:
        subject: the subject, RFC 4514 text.
        common_name: the subject CN, or ``None``.
        sans: subjectAltName DNS names and IP addresses.
        issuer: the issuer, RFC 4514 text.
        der: the certificate.
    """

    subject: str
    common_name: str | None
    sans: tuple[str, ...]
    issuer: str
    der: bytes = field(repr=False, default=b"")


def _parse_extensions(reader: _Reader) -> list[tuple[int, bytes]]:
    if reader.left == 0:
        return []
    block = _Reader(reader.vector(2))
    extensions = []
    while block.left:
        kind = block.uint(2)
        extensions.append((kind, block.vector(2)))
    return extensions


def _parse_client_hello(body: bytes) -> ClientHello:
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    random = reader.take(32)
    session_id = reader.vector(1)
    suites_raw = reader.vector(2)
    suites = tuple(int.from_bytes(suites_raw[i:i + 2], "big")
                   for i in range(0, len(suites_raw) - 1, 2))
    reader.vector(1)  # legacy_compression_methods
    sni: str | None = None
    versions: tuple[int, ...] = ()
    alpn: list[str] = []
    kinds: list[int] = []
    for kind, data in _parse_extensions(reader):
        kinds.append(kind)
        try:
            if kind == _EXT_SERVER_NAME:  # RFC 6066 §3: ServerNameList
                names = _Reader(_Reader(data).vector(2))
                while names.left:
                    name_type = names.uint(1)
                    name = names.vector(2)
                    if name_type == 0 and sni is None:  # host_name
                        sni = name.decode("ascii", "replace")
            elif kind == _EXT_SUPPORTED_VERSIONS:  # RFC 8446 §4.2.1
                raw = _Reader(data).vector(1)
                versions = tuple(int.from_bytes(raw[i:i + 2], "big")
                                 for i in range(0, len(raw) - 1, 2))
            elif kind == _EXT_ALPN:  # RFC 7301 §3.1
                protocols = _Reader(_Reader(data).vector(2))
                while protocols.left:
                    alpn.append(protocols.vector(1).decode("ascii", "replace"))
        except _Short:
            continue
    return ClientHello(legacy_version, random, session_id, suites, sni, versions,
                       tuple(alpn), tuple(kinds))


def _parse_server_hello(body: bytes) -> ServerHello:
    reader = _Reader(body)
    legacy_version = reader.uint(2)
    random = reader.take(32)
    reader.vector(1)  # legacy_session_id_echo
    suite = reader.uint(2)
    reader.uint(1)  # legacy_compression_method
    selected = legacy_version
    for kind, data in _parse_extensions(reader):
        if kind == _EXT_SUPPORTED_VERSIONS and len(data) >= 2:
            selected = int.from_bytes(data[:2], "big")
    return ServerHello(legacy_version, random, suite, selected, random == _HRR_RANDOM)


def _parse_certificate_list(body: bytes) -> list[CertificateInfo]:
    """TLS 1.2 Certificate: certificate_list<0..2^24-1> of ASN.1Cert<1..2^24-1>
    (RFC 5246 §7.4.2)."""
    reader = _Reader(_Reader(body).vector(3))
    out: list[CertificateInfo] = []
    while reader.left:
        out.append(_certificate_info(reader.vector(3)))
    return out


def subject_alt_names(cert: Any) -> list[str]:
    """The DNS names, then the IP addresses, a ``cryptography`` certificate is for (its
    subjectAltName, RFC 5280 §4.2.1.6); none without the extension."""
    from cryptography import x509

    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return []
    return ([str(v) for v in san.get_values_for_type(x509.DNSName)]
            + [str(v) for v in san.get_values_for_type(x509.IPAddress)])


def _certificate_info(der: bytes) -> CertificateInfo:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    try:  # cryptography parses lazily: a damaged field fails when it is read
        cert = x509.load_der_x509_certificate(der)
        names = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        common_name = str(names[0].value) if names else None
        sans = subject_alt_names(cert)
        return CertificateInfo(cert.subject.rfc4514_string(), common_name, tuple(sans),
                               cert.issuer.rfc4514_string(), der)
    except Exception:  # ValueError, but damaged DER has raised KeyError too
        return CertificateInfo("(unparseable certificate)", None, (), "", der)


# ------------------------------------------------------------------------------ sessions

@dataclass
class TLSSession:
    """Both directions of one TLS session as captured.

    Attributes:
        client_records: the client's records, in order.
        server_records: the server's records.
        client_hello: the (first) ClientHello, if captured.
        server_hello: the ServerHello (not a HelloRetryRequest), if captured.
        certificates: the server's chain when sent in clear (TLS 1.2 and older).
        handshake_messages: ``(direction, name)`` of every handshake message read in clear.
        notes: sentences for a learner (what is encrypted, what is cut off).
    """

    client_records: list[TLSRecord] = field(default_factory=list)
    server_records: list[TLSRecord] = field(default_factory=list)
    client_hello: ClientHello | None = None
    server_hello: ServerHello | None = None
    certificates: list[CertificateInfo] = field(default_factory=list)
    handshake_messages: list[tuple[Direction, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def version(self) -> str | None:
        """The negotiated version (``TLS 1.3``), once the ServerHello is seen."""
        return self.server_hello.version if self.server_hello else None

    @property
    def is_tls13(self) -> bool:
        """True if the ServerHello selected TLS 1.3."""
        return self.server_hello is not None and self.server_hello.selected_version == 0x0304

    @property
    def cipher_suite(self) -> str | None:
        """The chosen suite's IANA name."""
        return self.server_hello.cipher_suite_name if self.server_hello else None

    @property
    def sni(self) -> str | None:
        """The server name the client asked for, in clear (RFC 6066 §3)."""
        return self.client_hello.sni if self.client_hello else None

    def records(self, direction: Direction) -> list[TLSRecord]:
        """The records of one direction."""
        return self.client_records if direction == "c2s" else self.server_records

    def application_data(self, direction: Direction | None = None) -> tuple[int, int]:
        """(count, bytes) of application_data records, in one or both directions."""
        records = (self.client_records + self.server_records if direction is None
                   else self.records(direction))
        chosen = [r for r in records if r.content_type == 23]
        return len(chosen), sum(r.size for r in chosen)

    def describe(self) -> list[str]:
        """Lines a notebook prints: hello contents, choice, certificate, notes."""
        lines: list[str] = []
        hello = self.client_hello
        if hello is not None:
            lines.append(f"ClientHello: SNI {hello.sni or '(none)'}, versions "
                         f"{', '.join(hello.version_names)}")
            lines.append(f"  offers {len(hello.cipher_suite_names)} cipher suites: "
                         f"{', '.join(hello.cipher_suite_names)}")
        if self.server_hello is not None:
            lines.append(f"ServerHello: {self.version} with {self.cipher_suite}")
        for cert in self.certificates:
            lines.append(f"Certificate in clear: {cert.subject} (SAN {', '.join(cert.sans)})")
        lines.extend(self.notes)
        return lines


def _walk_handshake(records: list[TLSRecord], direction: Direction, session: TLSSession,
                    ) -> list[TLSRecord]:
    """Mark encrypted records and read the clear handshake messages of one direction."""
    out: list[TLSRecord] = []
    buffer = b""
    encrypted = False  # after this direction's ChangeCipherSpec (TLS 1.2) or ServerHello
    for record in records:
        if record.content_type == 20:  # change_cipher_spec: what follows is encrypted
            out.append(record)
            encrypted = True
            continue
        if encrypted or record.content_type != 22:
            out.append(_with(record, encrypted=encrypted or record.content_type == 23))
            continue
        buffer += record.fragment
        names: list[str] = []
        while len(buffer) >= 4:
            kind = buffer[0]
            length = int.from_bytes(buffer[1:4], "big")
            if len(buffer) < 4 + length:
                if not record.complete:
                    names.append(HANDSHAKE_TYPES.get(kind, f"type {kind}") + " (partial)")
                break
            body = buffer[4:4 + length]
            buffer = buffer[4 + length:]
            name = HANDSHAKE_TYPES.get(kind, f"type {kind}")
            names.append(name)
            session.handshake_messages.append((direction, name))
            try:
                if kind == 1 and session.client_hello is None:
                    session.client_hello = _parse_client_hello(body)
                elif kind == 2:
                    hello = _parse_server_hello(body)
                    if not hello.hello_retry:
                        session.server_hello = hello
                elif kind == 11 and not session.is_tls13 and direction == "s2c":
                    session.certificates = _parse_certificate_list(body)
            except _Short:
                session.notes.append(f"{name} is truncated in the capture.")
        out.append(_with(record, messages=tuple(names)))
    return out


def _with(record: TLSRecord, **changes: Any) -> TLSRecord:
    from dataclasses import replace

    return replace(record, **changes)


def inspect_tls(client: bytes | Sequence[TLSRecord], server: bytes | Sequence[TLSRecord],
                ) -> TLSSession:
    """Annotate both directions of a TLS session.

    Args:
        client: what the client sent from its first TLS byte (bytes or parsed records).
        server: what the server sent from its first TLS byte.

    Returns:
        A :class:`TLSSession`. Never raises on garbage: what cannot be read is left out
        and, where it matters, named in ``notes``.
    """
    client_records = parse_records(client) if isinstance(client, bytes) else list(client)
    server_records = parse_records(server) if isinstance(server, bytes) else list(server)
    session = TLSSession()
    session.client_records = _walk_handshake(client_records, "c2s", session)
    session.server_records = _walk_handshake(server_records, "s2c", session)
    if session.is_tls13:
        session.notes.append(
            "TLS 1.3: everything after the ServerHello is encrypted (EncryptedExtensions, "
            "the Certificate, Finished and all SMTP): only application_data records remain "
            "(RFC 8446 §2).")
    elif session.server_hello is not None:
        session.notes.append(
            f"{session.version}: the server's Certificate crosses in clear; encryption starts "
            "after each side's ChangeCipherSpec (RFC 5246 §7.3).")
    count, size = session.application_data()
    if count:
        session.notes.append(f"{count} application_data records ({size} bytes) are opaque "
                             "without the keys.")
    return session


# ------------------------------------------------------------------------------ where TLS starts

#: The upgrade commands: SMTP's and IMAP's STARTTLS (RFC 3207 §4; RFC 9051 §6.2.1, after
#: a tag), POP3's STLS (RFC 2595 §4).
_UPGRADE = re.compile(rb"^([^ ]+ )?(STARTTLS|STLS)\s*$", re.IGNORECASE)


def _line_starts(data: bytes) -> Iterable[int]:
    position = data.find(b"\n")
    while position != -1:
        yield position + 1
        position = data.find(b"\n", position + 1)


def tls_start(c2s: bytes, s2c: bytes) -> tuple[int | None, int | None]:
    """Where TLS begins in each direction of a captured SMTP, POP3 or IMAP connection.

    A direction is TLS from its first byte when that byte starts a TLS record (implicit
    TLS, RFC 8314 §3.3); otherwise, after the client sent ``STARTTLS`` (RFC 3207 §4) or
    ``STLS`` (RFC 2595 §4), from the first line boundary where a TLS record header begins.
    Plaintext the client pipelined after STARTTLS (the CVE-2011-0411 injection) and extra
    reply lines the server sent after its 220 stay plaintext, as they crossed the wire.

    Returns:
        ``(c2s_offset, s2c_offset)``, each ``None`` when that direction never turns to TLS.
    """
    client_start = 0 if looks_like_tls(c2s[:3]) and c2s else None
    server_start = 0 if looks_like_tls(s2c[:3]) and s2c else None
    if client_start is None:
        upgrade_at: int | None = None
        begin = 0
        for end in _line_starts(c2s):
            if upgrade_at is None and _UPGRADE.match(c2s[begin:end].rstrip(b"\r\n")):
                upgrade_at = end
            if upgrade_at is not None and looks_like_tls(c2s[end:end + 3]):
                client_start = end
                break
            begin = end
        if upgrade_at is not None and server_start is None:
            server_start = next((end for end in _line_starts(s2c)
                                 if looks_like_tls(s2c[end:end + 3])), None)
    return client_start, server_start


# ------------------------------------------------------------------------------ key log

@dataclass(frozen=True)
class KeyLogEntry:
    """One line of an SSLKEYLOGFILE: ``<label> <client_random hex> <secret hex>``.

    Attributes:
        label: ``CLIENT_RANDOM`` (TLS 1.2 master secret) or a TLS 1.3 label such as
            ``CLIENT_TRAFFIC_SECRET_0``.
        client_random: the 32-byte ClientHello.random that names the session.
        secret: the secret.
    """

    label: str
    client_random: bytes
    secret: bytes


@dataclass
class KeyLog:
    """The parsed key log: entries in file order, looked up by client random."""

    entries: list[KeyLogEntry] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def labels(self) -> list[str]:
        """The distinct labels, in order of first appearance."""
        return list(dict.fromkeys(e.label for e in self.entries))

    @property
    def client_randoms(self) -> list[bytes]:
        """The distinct sessions (client randoms), in order of first appearance."""
        return list(dict.fromkeys(e.client_random for e in self.entries))

    def secrets(self, client_random: bytes) -> dict[str, bytes]:
        """``{label: secret}`` for one session (empty if the log does not have it)."""
        return {e.label: e.secret for e in self.entries if e.client_random == client_random}

    def text(self) -> str:
        """The entries in SSLKEYLOGFILE format again (one per line)."""
        return "".join(f"{e.label} {e.client_random.hex()} {e.secret.hex()}\n"
                       for e in self.entries)


_KEYLOG_LINE = re.compile(r"^([A-Z0-9_]+) ([0-9a-fA-F]{64}) ([0-9a-fA-F]+)$")


def parse_keylog(text: str) -> KeyLog:
    """Parse SSLKEYLOGFILE text; comments (``#``), blank and malformed lines are skipped."""
    entries = []
    for line in text.splitlines():
        match = _KEYLOG_LINE.match(line.strip())
        if match and len(match.group(3)) % 2 == 0:
            entries.append(KeyLogEntry(match.group(1), bytes.fromhex(match.group(2)),
                                       bytes.fromhex(match.group(3))))
    return KeyLog(entries)


def read_keylog(path: Path | str) -> KeyLog:
    """Read an SSLKEYLOGFILE (as the world CA writes with ``keylog=``); see :class:`KeyLog`.

    The same session may appear twice (both ends of a world connection log it); lookups
    return the last secret for a label, which is the same value.
    """
    return parse_keylog(Path(path).read_text(encoding="ascii", errors="replace"))


# ------------------------------------------------------------------------------ decryption

@dataclass
class Decryption:
    """The result of :func:`decrypt`.

    Attributes:
        records: ``(direction, record index) -> (inner content type, plaintext)`` for every
            record that was decrypted.
        plaintext: every application_data byte of each direction, joined.
        messages: ``(direction, record index) -> handshake message names`` found inside
            encrypted handshake records (TLS 1.3 EncryptedExtensions, Certificate ...).
        notes: why something could not be decrypted, if so.
    """

    records: dict[tuple[Direction, int], tuple[int, bytes]] = field(default_factory=dict)
    plaintext: dict[Direction, bytes] = field(
        default_factory=lambda: {"c2s": b"", "s2c": b""})
    messages: dict[tuple[Direction, int], tuple[str, ...]] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True if at least one record was decrypted and nothing failed."""
        return bool(self.records) and not self.notes


# (kind, key length, hash) per suite: RFC 8446 §B.4, RFC 5288 §3, RFC 5289 §3.2, RFC 7905 §2.
_AEAD_SUITES: dict[int, tuple[str, int, str]] = {
    0x1301: ("gcm", 16, "sha256"), 0x1302: ("gcm", 32, "sha384"),
    0x1303: ("chacha", 32, "sha256"), 0x1304: ("ccm", 16, "sha256"),
    0xC02B: ("gcm", 16, "sha256"), 0xC02C: ("gcm", 32, "sha384"),
    0xC02F: ("gcm", 16, "sha256"), 0xC030: ("gcm", 32, "sha384"),
    0x009E: ("gcm", 16, "sha256"), 0x009F: ("gcm", 32, "sha384"),
    0x009C: ("gcm", 16, "sha256"), 0x009D: ("gcm", 32, "sha384"),
    0xCCA8: ("chacha", 32, "sha256"), 0xCCA9: ("chacha", 32, "sha256"),
    0xCCAA: ("chacha", 32, "sha256"),
}


def _hash(name: str) -> Any:
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA384() if name == "sha384" else hashes.SHA256()


def _aead(kind: str, key: bytes) -> Any:
    from cryptography.hazmat.primitives.ciphers import aead

    if kind == "gcm":
        return aead.AESGCM(key)
    if kind == "ccm":
        return aead.AESCCM(key)
    return aead.ChaCha20Poly1305(key)


def _expand_label(secret: bytes, label: str, length: int, hash_name: str) -> bytes:
    """HKDF-Expand-Label (RFC 8446 §7.1) with an empty context."""
    from cryptography.hazmat.primitives.kdf.hkdf import HKDFExpand

    full = b"tls13 " + label.encode()
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    return HKDFExpand(_hash(hash_name), length, info).derive(secret)


def _prf(secret: bytes, label: bytes, seed: bytes, length: int, hash_name: str) -> bytes:
    """The TLS 1.2 PRF, P_hash with HMAC (RFC 5246 §5)."""
    import hmac

    digest = "sha384" if hash_name == "sha384" else "sha256"
    seed = label + seed
    out, a = b"", seed
    while len(out) < length:
        a = hmac.digest(secret, a, digest)
        out += hmac.digest(secret, a + seed, digest)
    return out[:length]


class _Direction13:
    """Per-direction TLS 1.3 record protection (RFC 8446 §5.2-5.3)."""

    def __init__(self, kind: str, key_len: int, hash_name: str,
                 secrets: list[bytes]) -> None:
        self.kind, self.key_len, self.hash_name = kind, key_len, hash_name
        self.secrets = secrets
        self.stage = -1
        self.seq = 0
        self.cipher: Any = None
        self.iv = b""
        self.next_stage()

    def next_stage(self) -> None:
        self.stage += 1
        self.seq = 0
        if self.stage < len(self.secrets):
            secret = self.secrets[self.stage]
            self.cipher = _aead(self.kind, _expand_label(secret, "key", self.key_len,
                                                         self.hash_name))
            self.iv = _expand_label(secret, "iv", 12, self.hash_name)
        else:
            self.cipher = None

    def open(self, record: TLSRecord) -> tuple[int, bytes]:
        header = bytes([record.content_type]) + record.version.to_bytes(2, "big") \
            + record.length.to_bytes(2, "big")
        nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"),
                                            strict=True))
        inner = self.cipher.decrypt(nonce, record.fragment, header)
        self.seq += 1
        inner = inner.rstrip(b"\x00")  # TLSInnerPlaintext padding (RFC 8446 §5.2)
        if not inner:
            raise ValueError("no inner content type")
        return inner[-1], inner[:-1]


class _Direction12:
    """Per-direction TLS 1.2 AEAD record protection (RFC 5246 §6.2.3.3, RFC 7905 §2)."""

    def __init__(self, kind: str, key: bytes, iv: bytes) -> None:
        self.kind = kind
        self.cipher = _aead(kind, key)
        self.iv = iv
        self.seq = 0

    def open(self, record: TLSRecord) -> tuple[int, bytes]:
        fragment = record.fragment
        if self.kind == "chacha":
            nonce = bytes(a ^ b for a, b in zip(self.iv, self.seq.to_bytes(12, "big"),
                                                strict=True))
            body = fragment
        else:  # GCM: 4-byte salt + 8-byte explicit nonce (RFC 5288 §3)
            nonce, body = self.iv + fragment[:8], fragment[8:]
        aad = self.seq.to_bytes(8, "big") + bytes([record.content_type]) \
            + record.version.to_bytes(2, "big") + (len(body) - 16).to_bytes(2, "big")
        plaintext = self.cipher.decrypt(nonce, body, aad)
        self.seq += 1
        return record.content_type, plaintext


def _message_names(data: bytes) -> tuple[str, ...]:
    names: list[str] = []
    while len(data) >= 4:
        length = int.from_bytes(data[1:4], "big")
        names.append(HANDSHAKE_TYPES.get(data[0], f"type {data[0]}"))
        data = data[4 + length:]
    return tuple(names)


def decrypt(session: TLSSession, keylog: KeyLog | Mapping[str, bytes]) -> Decryption:
    """Decrypt a session's records with the secrets of a key log (what Wireshark does).

    Args:
        session: from :func:`inspect_tls` (needs the ClientHello and ServerHello).
        keylog: a :class:`KeyLog`, or the ``{label: secret}`` of this session.

    Returns:
        A :class:`Decryption`; ``notes`` says why not, if the keys or the suite are missing.
        Never raises on a bad record: decryption of that direction stops with a note.
    """
    result = Decryption()
    hello, server_hello = session.client_hello, session.server_hello
    if hello is None or server_hello is None:
        result.notes.append("The ClientHello or ServerHello is missing from the capture.")
        return result
    secrets = (keylog.secrets(hello.random) if isinstance(keylog, KeyLog) else dict(keylog))
    suite = _AEAD_SUITES.get(server_hello.cipher_suite)
    if suite is None:
        result.notes.append(f"Cannot decrypt {server_hello.cipher_suite_name} here "
                            "(only AEAD suites are supported).")
        return result
    kind, key_len, hash_name = suite
    directions: dict[Direction, Any] = {}
    if session.is_tls13:
        labels: dict[Direction, tuple[str, str]] = {  # RFC 8446 §7.1 traffic secrets
            "c2s": ("CLIENT_HANDSHAKE_TRAFFIC_SECRET", "CLIENT_TRAFFIC_SECRET_0"),
            "s2c": ("SERVER_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0")}
        for direction, (handshake, application) in labels.items():
            if handshake in secrets and application in secrets:
                directions[direction] = _Direction13(kind, key_len, hash_name,
                                                     [secrets[handshake], secrets[application]])
    elif "CLIENT_RANDOM" in secrets:
        iv_len = 12 if kind == "chacha" else 4  # RFC 7905 §2; RFC 5288 §3 (salt)
        block = _prf(secrets["CLIENT_RANDOM"], b"key expansion",
                     server_hello.random + hello.random, 2 * (key_len + iv_len), hash_name)
        client_key, server_key = block[:key_len], block[key_len:2 * key_len]
        ivs = block[2 * key_len:]
        directions["c2s"] = _Direction12(kind, client_key, ivs[:iv_len])
        directions["s2c"] = _Direction12(kind, server_key, ivs[iv_len:2 * iv_len])
    if not directions:
        result.notes.append("The key log has no secrets for this session (client random "
                            f"{hello.random.hex()[:16]}...).")
        return result
    for direction, state in directions.items():
        plaintext: list[bytes] = []
        for index, record in enumerate(session.records(direction)):
            if not record.encrypted or not record.complete or record.content_type == 20:
                continue
            if getattr(state, "cipher", None) is None:
                break
            try:
                inner_type, data = state.open(record)
            except Exception:  # InvalidTag and friends: wrong keys or a damaged record
                result.notes.append(f"Record {index} ({direction}) did not decrypt.")
                break
            result.records[(direction, index)] = (inner_type, data)
            if inner_type == 23:
                plaintext.append(data)
            elif inner_type == 22:
                names = _message_names(data)
                result.messages[(direction, index)] = names
                if isinstance(state, _Direction13) and "Finished" in names \
                        and state.stage == 0:
                    state.next_stage()
        result.plaintext[direction] = b"".join(plaintext)
    return result
