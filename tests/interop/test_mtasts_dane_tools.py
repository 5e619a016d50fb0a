"""Real tools read the seed world's MTA-STS policy and its signed zone: curl fetches the
policy over HTTPS trusting the world CA; dig +dnssec shows the signatures; delv (BIND 9's
validating lookup) validates them from the world's trust anchor."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from tests.cli._up import UpProcess
from tests.conftest import require_program

pytestmark = pytest.mark.interop

POLICY_HOST = "mta-sts.anotherdomain.org"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=30)


def test_curl_reads_the_policy(world: UpProcess) -> None:
    curl = require_program("curl")
    server = world.info["policy_servers"][POLICY_HOST]
    ip, port = server["ip"], server["port"]
    done = run(curl, "-sS", "-i", "--cacert", world.info["ca_file"], "--resolve",
               f"{POLICY_HOST}:{port}:{ip}",
               f"https://{POLICY_HOST}:{port}/.well-known/mta-sts.txt")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("HTTP/1.1 200 OK")
    assert re.search(r"^Content-Type: text/plain", done.stdout, re.M | re.I)
    # (text mode reads CRLF as LF)
    assert done.stdout.endswith("\n\nversion: STSv1\nmode: enforce\n"
                                "mx: mail.anotherdomain.org\nmax_age: 86400\n")
    # without the world's CA, curl refuses the certificate (as a sending MTA must)
    untrusted = run(curl, "-sS", "--resolve", f"{POLICY_HOST}:{port}:{ip}",
                    f"https://{POLICY_HOST}:{port}/.well-known/mta-sts.txt")
    assert untrusted.returncode != 0


def dig(world: UpProcess, *args: str) -> str:
    program = require_program("dig", "bind9-dnsutils")
    dns = world.info["dns"]
    done = run(program, f"@{dns['ip']}", "-p", str(dns["port"]), "+time=5", "+tries=1", *args)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_dig_dnssec_shows_the_signatures(world: UpProcess) -> None:
    out = dig(world, "+dnssec", "TLSA", "_25._tcp.mail.anotherdomain.org")
    assert re.search(r";; flags: qr aa rd ad;", out)
    assert re.search(r"IN\s+TLSA\s+3 1 1 [0-9A-F ]+$", out, re.M)
    assert re.search(r"IN\s+RRSIG\s+TLSA 15 5 3600 ", out)  # Ed25519 (RFC 8080)
    plain = dig(world, "TLSA", "_25._tcp.mail.anotherdomain.org")
    assert "RRSIG" not in plain and not re.search(r";; flags: [^;]*\bad\b", plain)
    txt = dig(world, "TXT", "_mta-sts.anotherdomain.org")
    assert '"v=STSv1; id=' in txt
    assert '"v=TLSRPTv1; rua=mailto:tls-reports@anotherdomain.org"' in dig(
        world, "TXT", "_smtp._tls.anotherdomain.org")


def delv(world: UpProcess, anchors: str, *args: str) -> subprocess.CompletedProcess[str]:
    program = require_program("delv", "bind9-dnsutils")
    dns = world.info["dns"]
    return run(program, "-a", anchors, "+root=anotherdomain.org", f"@{dns['ip']}", "-p",
               str(dns["port"]), *args)


def test_delv_validates_from_the_trust_anchor(world: UpProcess, tmp_path: Path) -> None:
    anchors = world.info["trust_anchors"]
    for args in (("TLSA", "_25._tcp.mail.anotherdomain.org"), ("MX", "anotherdomain.org"),
                 ("A", "mta-sts.anotherdomain.org")):
        done = delv(world, anchors, *args)
        assert done.returncode == 0 and "; fully validated" in done.stdout, \
            done.stdout + done.stderr
    denial = delv(world, anchors, "A", "nothing-here.anotherdomain.org")
    assert "negative response, fully validated" in denial.stdout, denial.stdout + denial.stderr
    # a trust anchor for another key: the same answers do not validate
    wrong = tmp_path / "wrong.conf"
    text = Path(anchors).read_text()
    key = re.search(r'"([^"]+)"', text)
    assert key is not None
    wrong.write_text(text.replace(key.group(1), "A" * 43 + "="))
    done = delv(world, str(wrong), "TLSA", "_25._tcp.mail.anotherdomain.org")
    assert "fully validated" not in done.stdout
