"""The world's certificate authority: one CA per world, a leaf certificate per host.

Built with ``cryptography``, limited to what a world needs (RFC 5280): the CA signs host
certificates only (``pathLenConstraint`` 0, §4.2.1.9) and, given the world's names, only
for those names and loopback addresses (name constraints, §4.2.1.10); a host certificate
is good for TLS server and client authentication only (extended key usage ``serverAuth``,
``clientAuth``, §4.2.1.12), never for code signing. The CA certificate is written to
``ca.pem`` so outside programs can trust the world: ``openssl s_client -CAfile ca.pem``,
``swaks --tls-ca-path ca.pem``, ``smtplib`` with
:meth:`CertificateAuthority.client_context`. With a ``keylog`` path every TLS session's
secrets are written in SSLKEYLOGFILE format, so a capture can be decrypted (in Wireshark,
or by the eavesdropper notebook).

Importing this module is cheap: ``cryptography`` loads when used.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["CertificateAuthority", "LeafCert"]


@dataclass(frozen=True)
class LeafCert:
    """A host's certificate as issued by the world CA.

    Attributes:
        hostnames: the names it is valid for (its subjectAltName DNS entries).
        cert_file: PEM file with the certificate chain, leaf first (what a server loads,
            and what ``openssl verify -CAfile ca.pem`` checks).
        key_file: PEM file with the leaf's private key (mode 0600).
        cert_pem: the leaf certificate alone, PEM.
    """

    hostnames: tuple[str, ...]
    cert_file: Path
    key_file: Path
    cert_pem: bytes

    def covers(self, hostname: str) -> bool:
        """True if this certificate is valid for ``hostname`` (RFC 6125 §6.4, with the
        left-most-label wildcard only)."""
        name = _normal(hostname)
        for pattern in self.hostnames:
            if pattern == name:
                return True
            if pattern.startswith("*.") and "." in name \
                    and name.split(".", 1)[1] == pattern[2:]:
                return True
        return False


def _normal(hostname: str) -> str:
    return hostname.strip().rstrip(".").lower()


def _file_stem(hostname: str) -> str:
    return hostname.replace("*", "_wildcard").replace("/", "_").replace(":", "_")


class CertificateAuthority:
    """A certificate authority for one world.

    Args:
        directory: where ``ca.pem`` and the hosts' ``<name>.pem`` / ``<name>.key`` go
            (created if missing).
        organization: the O= of the CA and of the certificates it issues.
        keylog: if given, every TLS session made with this CA's contexts appends its
            secrets to this file (SSLKEYLOGFILE format, as Wireshark reads). Both ends
            write, so a session between two of this CA's contexts appears twice.
        names: the DNS names (domains and host names) the CA may issue for, each with its
            subdomains (RFC 5280 §4.2.1.10 permitted subtrees), and loopback addresses;
            None: no name constraints.
    """

    def __init__(self, directory: Path | str, organization: str = "simsmtp world CA",
                 keylog: Path | str | None = None,
                 names: Iterable[str] | None = None) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.organization = organization
        self.keylog = Path(keylog) if keylog is not None else None
        self.names = None if names is None else tuple(
            dict.fromkeys(_normal(n) for n in names if _normal(n)))
        self._key, self._certificate = _make_ca(organization, self.names)
        self._lock = threading.Lock()
        self._leaves: list[LeafCert] = []
        self.cert_pem: bytes = _pem(self._certificate)
        self.ca_file.write_bytes(self.cert_pem)

    @property
    def ca_file(self) -> Path:
        """The CA certificate (PEM): give it to ``openssl s_client -CAfile``, ``swaks
        --tls-ca-path``, or ``ssl.create_default_context(cafile=...)``."""
        return self.directory / "ca.pem"

    # ----------------------------------------------------------------- issuing

    def issue(self, hostnames: str | list[str] | tuple[str, ...]) -> LeafCert:
        """Issue a certificate for one or more host names and write its files.

        The first name is also the certificate's CN (for people reading ``openssl``
        output; clients match the subjectAltName, RFC 6125 §6.4.4).
        """
        names = (hostnames,) if isinstance(hostnames, str) else tuple(hostnames)
        names = tuple(dict.fromkeys(_normal(n) for n in names if _normal(n)))
        if not names:
            raise ValueError("issue() needs at least one host name")
        key_pem, cert_pem = _make_leaf(self._key, self._certificate, names,
                                       self.organization)
        stem = _file_stem(names[0])
        cert_file = self.directory / f"{stem}.pem"
        key_file = self.directory / f"{stem}.key"
        cert_file.write_bytes(cert_pem)
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(key_pem)
        result = LeafCert(names, cert_file, key_file, cert_pem)
        with self._lock:
            self._leaves.append(result)
        return result

    def leaf_for(self, hostname: str) -> LeafCert:
        """The latest certificate covering ``hostname``, issuing one if there is none."""
        with self._lock:
            for leaf in reversed(self._leaves):
                if leaf.covers(hostname):
                    return leaf
        return self.issue(hostname)

    # ----------------------------------------------------------------- contexts

    def _base(self, purpose: int) -> ssl.SSLContext:
        context = ssl.SSLContext(purpose)
        context.minimum_version = ssl.TLSVersion.TLSv1_2  # RFC 8996: no TLS 1.0/1.1
        if self.keylog is not None:
            context.keylog_filename = str(self.keylog)
        return context

    def server_context(self, hostname: str) -> ssl.SSLContext:
        """A server-side context presenting ``hostname``'s certificate (TLS 1.2+)."""
        leaf = self.leaf_for(hostname)
        context = self._base(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(leaf.cert_file, leaf.key_file)
        return context

    def client_context(self, verify: bool = True) -> ssl.SSLContext:
        """A client-side context that trusts the world CA only.

        Args:
            verify: True checks the chain and the host name (RFC 6125); False accepts any
                certificate, as opportunistic STARTTLS between MTAs does (RFC 7435 §1.3).
        """
        context = self._base(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cadata=self.cert_pem.decode("ascii"))
        if not verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        return context

    # ----------------------------------------------------------------- inspection

    def certificate_chain(self, hostname: str) -> list[dict[str, Any]]:
        """The chain a server for ``hostname`` presents, leaf first, then the CA.

        Each entry has: subject, issuer, serial, not_before, not_after (ISO 8601, UTC),
        sans (list of names), fingerprint (SHA-256, ``AB:CD:…`` as openssl prints it),
        is_ca, and key (e.g. ``"EC secp256r1"``).
        """
        from cryptography import x509

        leaf = self.leaf_for(hostname)
        pems = [leaf.cert_file.read_bytes(), self.cert_pem]
        certificates = [cert for pem in pems for cert in x509.load_pem_x509_certificates(pem)]
        chain: list[dict[str, Any]] = []
        for cert in certificates:
            entry = _describe(cert)
            if all(entry["fingerprint"] != known["fingerprint"] for known in chain):
                chain.append(entry)
        return chain


#: The validity of every certificate of a world: wide, because a world's clock is virtual
#: and may be set anywhere (as trustme does).
_NOT_BEFORE = datetime.datetime(2000, 1, 1, tzinfo=datetime.UTC)
_NOT_AFTER = datetime.datetime(3000, 1, 1, tzinfo=datetime.UTC)
#: Where a world listens: loopback only (RFC 5735 127.0.0.0/8, RFC 4291 ::1).
_LOOPBACK = (ipaddress.ip_network("127.0.0.0/8"), ipaddress.ip_network("::1/128"))


def _pem(certificate: Any) -> bytes:
    from cryptography.hazmat.primitives.serialization import Encoding

    return bytes(certificate.public_bytes(Encoding.PEM))


def _general_name(identity: str) -> Any:
    from cryptography import x509

    try:
        return x509.IPAddress(ipaddress.ip_address(identity))
    except ValueError:
        pass
    if identity.startswith("*."):
        return x509.DNSName("*." + identity[2:].encode("idna").decode("ascii"))
    return x509.DNSName(identity.encode("idna").decode("ascii"))


def _builder(subject: Any, issuer: Any, public_key: Any) -> Any:
    from cryptography import x509

    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).not_valid_before(_NOT_BEFORE)
            .not_valid_after(_NOT_AFTER).serial_number(x509.random_serial_number())
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False))


def _make_ca(organization: str, names: tuple[str, ...] | None) -> tuple[Any, Any]:
    """The CA's key (EC P-256) and self-signed certificate: it may sign end-entity
    certificates only (path length 0) and, given ``names``, only for them."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                      x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME,
                                         "Certification Authority")])
    builder = (_builder(name, name, key.public_key())
               # RFC 5280 §4.2.1.9: a CA that signs no other CA
               .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
               .add_extension(x509.KeyUsage(
                   digital_signature=True, content_commitment=False, key_encipherment=False,
                   data_encipherment=False, key_agreement=False, key_cert_sign=True,
                   crl_sign=True, encipher_only=False, decipher_only=False), critical=True))
    if names:  # RFC 5280 §4.2.1.10: the world's names (and subdomains), loopback only
        subtrees: list[x509.GeneralName] = [
            _general_name(n) for n in names if not n.startswith("*.")]
        subtrees += [x509.IPAddress(net) for net in _LOOPBACK]
        builder = builder.add_extension(
            x509.NameConstraints(permitted_subtrees=subtrees, excluded_subtrees=None),
            critical=True)
    return key, builder.sign(key, hashes.SHA256())


def _make_leaf(ca_key: Any, ca_cert: Any, names: tuple[str, ...],
               organization: str) -> tuple[bytes, bytes]:
    """A host's key and certificate (PEM): TLS server and client authentication only."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                         x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "hosts"),
                         x509.NameAttribute(NameOID.COMMON_NAME, names[0])])
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    certificate = (
        _builder(subject, ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski),
                       critical=False)
        .add_extension(x509.SubjectAlternativeName([_general_name(n) for n in names]),
                       critical=False)
        .add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=False,
            crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
        # RFC 5280 §4.2.1.12: TLS server and client authentication, nothing else
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                              ExtendedKeyUsageOID.CLIENT_AUTH]),
                       critical=False)
        .sign(ca_key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM,
                                serialization.PrivateFormat.TraditionalOpenSSL,
                                serialization.NoEncryption())
    return key_pem, _pem(certificate)  # the chain a server sends: the CA is a root


def _describe(cert: Any) -> dict[str, Any]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, rsa

    from simsmtp.capture.tlsinspect import subject_alt_names

    sans = subject_alt_names(cert)
    try:
        is_ca = bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        is_ca = False
    public_key = cert.public_key()
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        key = f"EC {public_key.curve.name}"
    elif isinstance(public_key, rsa.RSAPublicKey):
        key = f"RSA {public_key.key_size}"
    else:
        key = type(public_key).__name__
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return {
        "subject": cert.subject.rfc4514_string(),
        "issuer": cert.issuer.rfc4514_string(),
        "serial": f"{cert.serial_number:X}",
        "not_before": cert.not_valid_before_utc.isoformat(),
        "not_after": cert.not_valid_after_utc.isoformat(),
        "sans": sans,
        "fingerprint": ":".join(digest[i:i + 2] for i in range(0, len(digest), 2)),
        "is_ca": is_ca,
        "key": key,
    }
