"""The world CA: handshakes over memory BIOs and a socket, and what openssl makes of it."""

from __future__ import annotations

import contextlib
import re
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from simsmtp.net.ca import CertificateAuthority
from tests.conftest import require_program

HOST = "mail.anotherdomain.org"


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    directory = tmp_path_factory.mktemp("ca")
    return CertificateAuthority(directory, keylog=directory / "keys.log")


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> CertificateAuthority:
    return CertificateAuthority(tmp_path_factory.mktemp("other"), organization="Another CA")


def handshake(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext,
              server_hostname: str) -> tuple[ssl.SSLObject, ssl.SSLObject]:
    """Drive a TLS handshake between two SSLObjects over memory BIOs; raise on failure."""
    s_in, s_out, c_in, c_out = (ssl.MemoryBIO() for _ in range(4))
    server = server_ctx.wrap_bio(s_in, s_out, server_side=True)
    client = client_ctx.wrap_bio(c_in, c_out, server_side=False,
                                 server_hostname=server_hostname)
    done = {"server": False, "client": False}
    for _ in range(10):
        for name, obj in (("client", client), ("server", server)):
            if not done[name]:
                try:
                    obj.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            # TLS 1.3 tickets and the client's last flight: let both sides read them.
            client.write(b"ping")
            s_in.write(c_out.read())
            assert server.read(4) == b"ping"
            return server, client
    raise AssertionError("handshake did not finish")


def test_files_are_written(ca: CertificateAuthority) -> None:
    leaf = ca.issue([HOST, "smtp.anotherdomain.org"])
    assert ca.ca_file.read_bytes().startswith(b"-----BEGIN CERTIFICATE-----")
    assert leaf.cert_file.parent == ca.directory == leaf.key_file.parent
    assert b"PRIVATE KEY" in leaf.key_file.read_bytes()
    assert leaf.key_file.stat().st_mode & 0o077 == 0  # the key is private
    assert leaf.cert_file.read_bytes().startswith(leaf.cert_pem)
    assert leaf.hostnames == (HOST, "smtp.anotherdomain.org")


def test_handshake_between_server_and_client_contexts(ca: CertificateAuthority) -> None:
    _, client = handshake(ca.server_context(HOST), ca.client_context(), HOST)
    assert client.version() in ("TLSv1.2", "TLSv1.3")
    cert = client.getpeercert()
    assert ("DNS", HOST) in cert["subjectAltName"]


def test_contexts_require_tls_1_2(ca: CertificateAuthority) -> None:
    assert ca.server_context(HOST).minimum_version == ssl.TLSVersion.TLSv1_2
    assert ca.client_context().minimum_version == ssl.TLSVersion.TLSv1_2
    assert ca.client_context(verify=False).minimum_version == ssl.TLSVersion.TLSv1_2


def test_client_of_another_ca_fails(ca: CertificateAuthority,
                                    other_ca: CertificateAuthority) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer"):
        handshake(ca.server_context(HOST), other_ca.client_context(), HOST)


def test_wrong_hostname_fails(ca: CertificateAuthority) -> None:
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch"):
        handshake(ca.server_context(HOST), ca.client_context(), "mail.example.com")


def test_unverified_client_accepts_anything(ca: CertificateAuthority,
                                            other_ca: CertificateAuthority) -> None:
    # Opportunistic STARTTLS between MTAs: encrypt, do not authenticate (RFC 7435).
    _, client = handshake(ca.server_context(HOST), other_ca.client_context(verify=False),
                          "mail.example.com")
    assert client.version() is not None


def test_keylog_fills(tmp_path: Path) -> None:
    keylog = tmp_path / "sslkeys.log"
    ca = CertificateAuthority(tmp_path / "ca", keylog=keylog)
    handshake(ca.server_context(HOST), ca.client_context(), HOST)
    lines = keylog.read_text().splitlines()
    entries = [line for line in lines if not line.startswith("#")]
    assert entries
    # NSS key log format: LABEL <client random, 32 octets hex> <secret hex>
    pattern = re.compile(r"^([A-Z0-9_]+) [0-9a-f]{64} [0-9a-f]+$")
    assert all(pattern.match(line) for line in entries)
    labels = {line.split()[0] for line in entries}
    assert "CLIENT_TRAFFIC_SECRET_0" in labels or "CLIENT_RANDOM" in labels
    before = len(entries)
    handshake(ca.server_context(HOST), ca.client_context(verify=False), HOST)
    after = [line for line in keylog.read_text().splitlines() if not line.startswith("#")]
    assert len(after) > before  # every session adds its secrets


def test_no_keylog_unless_asked(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    assert ca.server_context(HOST).keylog_filename is None
    assert ca.client_context().keylog_filename is None


def test_leaf_reuse_and_wildcards(tmp_path: Path) -> None:
    ca = CertificateAuthority(tmp_path)
    first = ca.leaf_for("MAIL.AnotherDomain.org.")
    assert ca.leaf_for(HOST) is first
    wildcard = ca.issue("*.example.com")
    assert wildcard.covers("mx1.example.com")
    assert not wildcard.covers("a.b.example.com") and not wildcard.covers("example.com")
    assert ca.leaf_for("mx1.example.com") is wildcard
    handshake(ca.server_context("mx1.example.com"), ca.client_context(), "mx1.example.com")
    with pytest.raises(ValueError):
        ca.issue([])


def test_certificate_chain(ca: CertificateAuthority) -> None:
    chain = ca.certificate_chain(HOST)
    assert [entry["is_ca"] for entry in chain] == [False, True]
    leaf, root = chain
    assert f"CN={HOST}" in leaf["subject"]
    assert "O=simsmtp world CA" in leaf["subject"]
    assert leaf["issuer"] == root["subject"] == root["issuer"]
    assert HOST in leaf["sans"]
    assert re.fullmatch(r"([0-9A-F]{2}:){31}[0-9A-F]{2}", leaf["fingerprint"])
    assert leaf["not_before"] < leaf["not_after"]
    assert leaf["key"].startswith("EC ")


def test_import_is_cheap() -> None:
    code = "import sys, simsmtp.net.ca; print('trustme' in sys.modules, 'cryptography' in " \
           "sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False"]


# --------------------------------------------------------------------------- openssl


def run_openssl(*args: str, stdin: str = "") -> subprocess.CompletedProcess[str]:
    openssl = require_program("openssl")
    return subprocess.run([openssl, *args], capture_output=True, text=True, input=stdin,
                          timeout=20, check=False)


@pytest.mark.interop
def test_openssl_verify_accepts_the_leaf(ca: CertificateAuthority,
                                         other_ca: CertificateAuthority) -> None:
    leaf = ca.leaf_for(HOST)
    ok = run_openssl("verify", "-CAfile", str(ca.ca_file), str(leaf.cert_file))
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.strip() == f"{leaf.cert_file}: OK"
    named = run_openssl("verify", "-CAfile", str(ca.ca_file), "-verify_hostname", HOST,
                        str(leaf.cert_file))
    assert named.returncode == 0, named.stderr
    wrong = run_openssl("verify", "-CAfile", str(other_ca.ca_file), str(leaf.cert_file))
    assert wrong.returncode != 0
    assert "unable to get local issuer certificate" in wrong.stdout + wrong.stderr


@pytest.mark.interop
def test_openssl_fingerprint_matches(ca: CertificateAuthority) -> None:
    leaf = ca.leaf_for(HOST)
    out = run_openssl("x509", "-in", str(leaf.cert_file), "-noout", "-fingerprint", "-sha256")
    assert out.stdout.strip().split("=", 1)[1] == ca.certificate_chain(HOST)[0]["fingerprint"]


@pytest.fixture
def tls_server(ca: CertificateAuthority) -> Iterator[tuple[str, int]]:
    """A one-connection TLS server on loopback using the CA's server context."""
    require_program("openssl")
    context = ca.server_context(HOST)
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(10)

    def serve() -> None:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        with conn:
            try:
                with context.wrap_socket(conn, server_side=True) as tls:
                    tls.sendall(b"220 hello\r\n")
                    tls.recv(100)
            except (ssl.SSLError, OSError):
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    address = listener.getsockname()[:2]
    yield address
    with contextlib.suppress(OSError):  # wake accept() if the test never connected
        socket.create_connection(address, timeout=1).close()
    thread.join(10)
    listener.close()


@pytest.mark.interop
def test_openssl_s_client_verifies_the_server(ca: CertificateAuthority,
                                              tls_server: tuple[str, int]) -> None:
    ip, port = tls_server
    out = run_openssl("s_client", "-connect", f"{ip}:{port}", "-CAfile", str(ca.ca_file),
                      "-verify_hostname", HOST, "-verify_return_error", "-servername", HOST,
                      stdin="QUIT\r\n")
    assert out.returncode == 0, out.stderr
    assert "Verify return code: 0 (ok)" in out.stdout
    assert f"CN = {HOST}" in out.stdout
