"""The world's certificate authority: one CA per world, a leaf certificate per host.

Built on ``trustme``. The CA certificate is written to ``ca.pem`` so outside programs can
trust the world: ``openssl s_client -CAfile ca.pem``, ``swaks --tls-ca-path ca.pem``,
``smtplib`` with :meth:`CertificateAuthority.client_context`. With a ``keylog`` path every
TLS session's secrets are written in SSLKEYLOGFILE format, so a capture can be decrypted
(in Wireshark, or by the eavesdropper notebook).

Importing this module is cheap: ``trustme`` and ``cryptography`` load when used.
"""

from __future__ import annotations

import os
import ssl
import threading
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
    """

    def __init__(self, directory: Path | str, organization: str = "simsmtp world CA",
                 keylog: Path | str | None = None) -> None:
        import trustme  # cheap module import for `import simsmtp.net.ca`

        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.organization = organization
        self.keylog = Path(keylog) if keylog is not None else None
        self._ca = trustme.CA(organization_name=organization,
                              organization_unit_name="Certification Authority")
        self._lock = threading.Lock()
        self._leaves: list[LeafCert] = []
        self.cert_pem: bytes = self._ca.cert_pem.bytes()
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
        leaf = self._ca.issue_cert(*names, common_name=names[0],
                                   organization_name=self.organization,
                                   organization_unit_name="hosts")
        stem = _file_stem(names[0])
        cert_file = self.directory / f"{stem}.pem"
        key_file = self.directory / f"{stem}.key"
        cert_file.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC
                     | getattr(os, "O_BINARY", 0), 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(leaf.private_key_pem.bytes())
        result = LeafCert(names, cert_file, key_file, leaf.cert_chain_pems[0].bytes())
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
