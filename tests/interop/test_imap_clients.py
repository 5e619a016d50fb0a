"""Real IMAP clients against a running world (``python -m simsmtp up``): imaplib,
imapclient, curl ``imap://`` and ``imaps://``, mutt, fetchmail over IMAP,
``openssl s_client -starttls imap``; and s-nail, whose AUTH PLAIN needs ``334 `` with its
space (RFC 4954 §4).

The world's certificates name the hosts (``mail.anotherdomain.org``) and their addresses;
tools that only compare DNS names with what they connected to are told the host name
(fetchmail's ``sslcommonname``) or, for mutt and s-nail, not to check the name (the chain
is still verified against the world's CA).
"""

from __future__ import annotations

import os
import pty
import select
import shutil
import smtplib
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import imapclient
import pytest

from tests.cli._up import UpProcess
from tests.conftest import require_program

MX = "mail.anotherdomain.org"
SUBMISSION = "mail.example.com"
pytestmark = pytest.mark.interop


def deliver(world: UpProcess, subject: str) -> None:
    """Alice's server hands Bob's MX a message (port 25, as in the seed): from its own
    address, so that SPF, and DMARC with it, pass."""
    alices_server = world.address(SUBMISSION, 587)[0]
    with smtplib.SMTP(*world.address(MX, 25), local_hostname="mail.example.com",
                      source_address=(alices_server, 0), timeout=10) as client:
        client.sendmail("alice@example.com", ["bob@anotherdomain.org"],
                        f"From: alice@example.com\r\nTo: bob@anotherdomain.org\r\n"
                        f"Subject: {subject}\r\n\r\nHi Bob\r\n".encode())


def context(world: UpProcess) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=world.ca_file)


def wait_for(world: UpProcess, subject: str) -> int:
    """The UID of the message with ``subject`` in Bob's INBOX (imaplib over 993)."""
    import imaplib

    end = time.monotonic() + 10
    while True:
        with imaplib.IMAP4_SSL(*world.address(MX, 993), ssl_context=context(world)) as m:
            m.login("bob", "builder")
            m.select("INBOX", readonly=True)
            _, found = m.uid("SEARCH", "SUBJECT", f'"{subject}"')
            if found[0]:
                return int(found[0].split()[-1])
        if time.monotonic() > end:
            raise AssertionError(f"{subject!r} never arrived")
        time.sleep(0.05)


def test_imaplib_starttls_select_fetch_store_and_idle(world: UpProcess) -> None:
    import imaplib

    subject = f"imaplib {uuid.uuid4().hex[:10]}"
    deliver(world, subject)
    uid = wait_for(world, subject)
    m = imaplib.IMAP4(*world.address(MX, 143), timeout=10)
    try:
        assert "LOGINDISABLED" in m.capabilities and "STARTTLS" in m.capabilities
        m.starttls(ssl_context=context(world))  # verifies mail.anotherdomain.org
        assert "AUTH=PLAIN" in m.capabilities
        assert m.login("bob", "builder")[0] == "OK"
        typ, data = m.select("INBOX")
        assert typ == "OK" and int(data[0]) >= 1
        typ, data = m.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert typ == "OK" and subject.encode() in data[0][1]
        assert m.uid("STORE", str(uid), "+FLAGS", "(\\Flagged)")[0] == "OK"
        # IDLE: a new delivery is pushed as "* N EXISTS" (RFC 2177)
        tag = m._new_tag().decode()  # type: ignore[attr-defined]
        m.send(f"{tag} IDLE\r\n".encode())
        assert m.readline() == b"+ idling\r\n"
        deliver(world, f"{subject} while idling")
        line = m.readline()
        assert line.startswith(b"* ") and line.endswith(b" EXISTS\r\n")
        m.send(b"DONE\r\n")
        while not (line := m.readline()).startswith(tag.encode()):
            pass
        assert line == f"{tag} OK Idle completed.\r\n".encode()
        assert m.logout()[0] == "BYE"
    finally:
        if m.state != "LOGOUT":
            m.shutdown()


def test_imapclient_over_993_folders_flags_move(world: UpProcess) -> None:
    subject = f"imapclient {uuid.uuid4().hex[:10]}"
    deliver(world, subject)
    wait_for(world, subject)
    ip, port = world.address(MX, 993)
    with imapclient.IMAPClient(ip, port=port, ssl=True, ssl_context=context(world),
                               timeout=10) as client:
        client.login("bob", "builder")
        folders = {name: flags for flags, _, name in client.list_folders()}
        assert {"INBOX", "Junk", "Sent"} <= set(folders)
        assert b"\\Junk" in folders["Junk"]  # RFC 6154 special use
        client.select_folder("INBOX")
        [uid] = client.search(["SUBJECT", subject])
        data = client.fetch([uid], ["ENVELOPE", "BODY[]", "FLAGS"])[uid]
        assert data[b"ENVELOPE"].subject.decode() == subject
        assert b"Hi Bob" in data[b"BODY[]"] and b"\\Seen" in data[b"FLAGS"]  # BODY[] reads
        client.add_flags([uid], [imapclient.FLAGGED])
        assert imapclient.FLAGGED in client.get_flags([uid])[uid]
        name = f"Work{uuid.uuid4().hex[:6]}"
        client.create_folder(name)
        client.move([uid], name)  # RFC 6851
        assert client.search(["SUBJECT", subject]) == []
        client.select_folder(name, readonly=True)
        [moved] = client.search(["SUBJECT", subject])
        assert {b"\\Flagged", b"\\Seen"} <= set(client.get_flags([moved])[moved])
        client.unselect_folder()
        client.delete_folder(name)
        client.logout()


def test_imapclient_idle_check(world: UpProcess) -> None:
    ip, port = world.address(MX, 993)
    with imapclient.IMAPClient(ip, port=port, ssl=True, ssl_context=context(world),
                               timeout=10) as client:
        client.login("bob", "builder")
        client.select_folder("INBOX")
        client.idle()
        deliver(world, f"idle {uuid.uuid4().hex[:10]}")
        responses = client.idle_check(timeout=10)
        client.idle_done()
        assert any(r[1] == b"EXISTS" for r in responses)


def test_curl_imap_with_starttls_and_imaps(world: UpProcess) -> None:
    require_program("curl")
    subject = f"curl {uuid.uuid4().hex[:10]}"
    deliver(world, subject)
    uid = wait_for(world, subject)
    for scheme, port, extra in (("imap", 143, ["--ssl-reqd"]), ("imaps", 993, [])):
        ip, real = world.address(MX, port)
        done = subprocess.run(
            ["curl", "-sS", "--cacert", world.ca_file, *extra, "--user", "bob:builder",
             f"{scheme}://{ip}:{real}/INBOX;UID={uid}"],
            capture_output=True, text=True, timeout=30)
        assert done.returncode == 0, done.stderr
        assert f"Subject: {subject}" in done.stdout and "Hi Bob" in done.stdout
    # imap:// without --ssl-reqd: LOGIN is disabled before TLS, so curl cannot log in
    ip, real = world.address(MX, 143)
    done = subprocess.run(["curl", "-sS", "--user", "bob:builder", f"imap://{ip}:{real}/INBOX"],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0


def test_openssl_s_client_starttls_imap(world: UpProcess) -> None:
    require_program("openssl")
    ip, port = world.address(MX, 143)
    done = subprocess.run(
        ["openssl", "s_client", "-starttls", "imap", "-connect", f"{ip}:{port}", "-CAfile",
         world.ca_file, "-verify_return_error", "-crlf", "-quiet"],
        input="a LOGIN bob builder\nb SELECT INBOX\nc LOGOUT\n", capture_output=True,
        text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert "a OK [CAPABILITY IMAP4rev1" in done.stdout
    assert "b OK [READ-WRITE] Select completed." in done.stdout
    assert "* BYE Logging out" in done.stdout


def test_fetchmail_over_imaps(world: UpProcess, tmp_path: Path) -> None:
    require_program("fetchmail")
    subject = f"fetchmail {uuid.uuid4().hex[:10]}"
    deliver(world, subject)
    wait_for(world, subject)
    ip, port = world.address(MX, 993)
    out = tmp_path / "out"
    out.mkdir()
    rc = tmp_path / "fetchmailrc"
    rc.write_text(f'poll {ip} port {port} protocol IMAP\n'
                  f'  user "bob" password "builder" is "bob" here\n'
                  f'  ssl sslcertck sslcommonname "{MX}" sslcertfile "{world.ca_file}"\n'
                  f'  keep\n'
                  f"  mda \"/bin/sh -c 'cat > {out}/msg.$$'\"\n")
    rc.chmod(0o600)
    done = subprocess.run(["fetchmail", "-f", str(rc), "--nosyslog", "-v"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "HOME": str(tmp_path)})
    assert done.returncode == 0, done.stdout + done.stderr
    texts = [p.read_text(errors="replace") for p in out.iterdir()]
    assert any(f"Subject: {subject}" in t for t in texts)
    assert "IMAP< * BYE Logging out" in done.stdout


def test_mutt_reads_bobs_inbox_over_imaps(world: UpProcess, tmp_path: Path) -> None:
    require_program("mutt")
    subject = f"mutt {uuid.uuid4().hex[:10]}"
    deliver(world, subject)
    wait_for(world, subject)
    ip, port = world.address(MX, 993)
    rc = tmp_path / "muttrc"
    rc.write_text(f'set ssl_ca_certificates_file="{world.ca_file}"\n'
                  "set ssl_verify_host=no\nset imap_user=bob\nset imap_pass=builder\n"
                  f'set folder="imaps://{ip}:{port}/"\nset spoolfile="+INBOX"\n'
                  "set timeout=1\nset mail_check=60\nset imap_check_subscribed=no\n"
                  f'set certificate_file="{tmp_path}/certs"\nset sort=reverse-date-received\n')
    # mutt is a screen program: give it a terminal (a pty), read its index, press q
    master, slave = pty.openpty()
    mutt = subprocess.Popen([shutil.which("mutt") or "mutt", "-n", "-F", str(rc)],
                            stdin=slave, stdout=slave, stderr=slave, close_fds=True,
                            env={**os.environ, "TERM": "xterm", "HOME": str(tmp_path),
                                 "COLUMNS": "160", "LINES": "50"})
    os.close(slave)
    screen = b""
    end = time.monotonic() + 20
    try:
        while time.monotonic() < end and subject.encode() not in screen:
            ready, _, _ = select.select([master], [], [], 0.5)
            if ready:
                try:
                    screen += os.read(master, 65536)
                except OSError:
                    break
        assert subject.encode() in screen, screen[-2000:]
        os.write(master, b"q")
        assert mutt.wait(timeout=15) == 0
    finally:
        if mutt.poll() is None:
            mutt.kill()
            mutt.wait()
        os.close(master)


def test_s_nail_auth_plain_waits_for_334_with_its_space(world: UpProcess) -> None:
    """s-nail sends ``AUTH PLAIN`` alone and needs ``334 `` (RFC 4954 §4) before it sends
    the credentials; a bare ``334`` made it give up with "Unexpected EOF"."""
    require_program("s-nail")
    subject = f"s-nail {uuid.uuid4().hex[:10]}"
    ip, port = world.address(SUBMISSION, 587)
    done = subprocess.run(
        ["s-nail", "-vv", "-:/", "-S", "v15-compat", "-S", "ttycharset=utf-8",
         "-S", f"mta=smtp://alice%40example.com:wonderland@{ip}:{port}",
         "-S", "smtp-use-starttls", "-S", "smtp-auth=plain", "-S", f"tls-ca-file={world.ca_file}",
         "-S", "tls-verify=warn", "-S", "from=alice@example.com", "-s", subject,
         "bob@anotherdomain.org"],
        input="hello from s-nail\n", capture_output=True, text=True, timeout=60,
        env={**os.environ, "HOME": str(Path(world.ca_file).parent)})
    assert done.returncode == 0, done.stderr
    assert ">>> SERVER: 334 \n" in done.stderr  # the space is there
    assert "235 2.7.0 Authentication successful" in done.stderr
    assert wait_for(world, subject)
