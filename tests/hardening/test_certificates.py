"""Issue 13, point 6: the world's certificates are good for what a world needs, no more.

A host certificate is for TLS server and client authentication (no Code Signing); the CA
signs host certificates only (path length 0, RFC 5280 §4.2.1.9) and only for the world's
names and loopback addresses (name constraints, §4.2.1.10), checked by OpenSSL itself.
"""

from __future__ import annotations

import ipaddress
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from simsmtp.net.ca import CertificateAuthority
from simsmtp.net.network import Network
from tests.conftest import require_program

from .conftest import MX, hardening_world


@pytest.fixture(scope="module")
def net() -> Iterator[Network]:
    with hardening_world().start() as running:
        yield running


def leaf_of(net: Network, host: str = MX) -> x509.Certificate:
    assert net.ca is not None
    return x509.load_pem_x509_certificate(net.ca.leaf_for(host).cert_pem)


def ca_of(net: Network) -> x509.Certificate:
    assert net.ca is not None
    return x509.load_pem_x509_certificate(net.ca.cert_pem)


def test_host_certificates_are_for_tls_only(net: Network) -> None:
    usage = leaf_of(net).extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(usage) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert ExtendedKeyUsageOID.CODE_SIGNING not in usage
    basic = leaf_of(net).extensions.get_extension_for_class(x509.BasicConstraints).value
    assert basic.ca is False


def test_the_ca_signs_hosts_of_the_world_only(net: Network) -> None:
    ca = ca_of(net)
    basic = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    constraints = ca.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    permitted = constraints.value.permitted_subtrees
    assert permitted is not None
    dns = {n.value for n in permitted if isinstance(n, x509.DNSName)}
    assert {"example.com", "anotherdomain.org", "evil.example", MX} <= dns
    ips = {n.value for n in permitted if isinstance(n, x509.IPAddress)}
    assert ipaddress.ip_network("127.0.0.0/8") in ips


def _verify(tmp: Path, ca_pem: bytes, leaf_pem: bytes) -> subprocess.CompletedProcess[str]:
    """``openssl verify -CAfile ca.pem leaf.pem``."""
    openssl = require_program("openssl")
    (tmp / "ca.pem").write_bytes(ca_pem)
    (tmp / "leaf.pem").write_bytes(leaf_pem)
    return subprocess.run([openssl, "verify", "-CAfile", str(tmp / "ca.pem"),
                           str(tmp / "leaf.pem")], capture_output=True, text=True, timeout=30)


def test_openssl_accepts_the_world_leaf_and_refuses_outside_names(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path / "ca", names=["example.com", "mail.example.com"])
    done = _verify(tmp_path, ca.cert_pem, ca.issue(["mail.example.com", "127.0.0.2"]).cert_pem)
    assert done.returncode == 0, done.stdout + done.stderr
    # even if the CA is made to sign for a bank, a verifier refuses the certificate
    done = _verify(tmp_path, ca.cert_pem, ca.issue("www.bank.example").cert_pem)
    assert done.returncode != 0
    assert "permitted subtree violation" in done.stdout + done.stderr
    done = _verify(tmp_path, ca.cert_pem, ca.issue(["www.example.com", "10.0.0.1"]).cert_pem)
    assert "permitted subtree violation" in done.stdout + done.stderr  # not loopback


def test_tls_to_the_world_still_verifies(net: Network) -> None:
    """The constrained CA still verifies every host by name and by address."""
    import socket
    import ssl

    from .conftest import client_context

    ip, port = net.address(MX, 110)
    for name in (MX, ip):
        with socket.create_connection((ip, port), timeout=10) as raw:
            raw.recv(1024)  # +OK greeting
            raw.sendall(b"STLS\r\n")
            assert raw.recv(1024).startswith(b"+OK")
            with client_context(net).wrap_socket(raw, server_hostname=name) as tls:
                assert isinstance(tls.version(), str)
    assert ssl.HAS_SNI
