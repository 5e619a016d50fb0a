"""``python -m simsmtp demo``: the seed played by the real servers, printed reproducibly."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from simsmtp.cli import main
from tests.cli._up import run_simsmtp
from tests.conftest import require_program

#: The EHLO reply of the seed transcript, line for line (no STARTTLS: --no-tls).
SEED_EHLO = [
    "<-  250-mail.anotherdomain.org",
    "<-  250-PIPELINING",
    "<-  250-SIZE 52428800",
    "<-  250-VRFY",
    "<-  250-ETRN",
    "<-  250-ENHANCEDSTATUSCODES",
    "<-  250-8BITMIME",
    "<-  250-DSN",
    "<-  250 CHUNKING",
]
QUEUED = re.compile(r"^<[-~] {2}250 2\.0\.0 Ok: queued as ([0-9A-F]{10})$", re.M)


def run_demo(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    status = main(["demo", *args])
    captured = capsys.readouterr()
    assert status == 0, captured.err
    assert captured.err == ""
    return captured.out


def section(out: str, number: int) -> str:
    """The text under heading ``== number.`` up to the next heading."""
    start = out.index(f"== {number}. ")
    following = out.find("\n== ", start + 1)
    return out[start:] if following < 0 else out[start:following]


def test_no_tls_dialogue_is_the_seed_line_for_line(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_demo(capsys, "--no-tls")
    smtp = section(out, 2).splitlines()
    i = smtp.index("<-  220 mail.anotherdomain.org ESMTP Postfix")
    assert smtp[i + 1] == " -> EHLO mail.example.com"
    assert smtp[i + 2:i + 11] == SEED_EHLO
    assert smtp[i + 11].startswith(" -> MAIL FROM:<alice@example.com>")
    assert smtp[i + 12:i + 17] == ["<-  250 2.1.0 Ok", " -> RCPT TO:<bob@anotherdomain.org>",
                                   "<-  250 2.1.5 Ok", " -> DATA",
                                   "<-  354 End data with <CR><LF>.<CR><LF>"]
    dot = smtp.index(" -> .")
    assert QUEUED.match(smtp[dot + 1])
    assert smtp[dot + 2:dot + 4] == [" -> QUIT", "<-  221 2.0.0 Bye"]
    # the message crossed the wire after DATA, in the order sent
    body = smtp[i + 17:dot]
    assert " -> From: Alice <alice@example.com>" in body
    assert " -> Subject: Meeting Tomorrow" in body
    assert body.index(" -> From: Alice <alice@example.com>") < body.index(" -> Alice")
    assert not any("~>" in line or "<~" in line or "STARTTLS" in line for line in smtp)


def test_sections_come_in_order_with_dig_message_and_pop3(
        capsys: pytest.CaptureFixture[str]) -> None:
    out = run_demo(capsys, "--no-tls")
    assert out.index("== 1. ") < out.index("== 2. ") < out.index("== 3. ") < out.index("== 4. ")
    dig = section(out, 1)
    assert "; <<>> DiG (simsmtp) <<>> @127.0.0.4 MX anotherdomain.org" in dig
    assert "python -m simsmtp up" in out  # where a dig line with the real port is
    assert re.search(r"^anotherdomain\.org\.\s+3600\s+IN\s+MX\s+10 mail\.anotherdomain\.org\.$",
                     dig, re.M)
    assert ";; Query time: 0 msec" in dig
    message = section(out, 3)
    for header in ("From: Alice <alice@example.com>", "To: Bob <bob@anotherdomain.org>",
                   "Subject: Meeting Tomorrow"):
        assert f"\n{header}\n" in message
    assert "Just a reminder about our meeting tomorrow at 10 AM." in message
    received = [line for line in message.splitlines() if line.startswith("Received:")]
    assert received == ["Received: from mail.example.com (mail.example.com [127.0.0.2])",
                        "Received: from alice-laptop (unknown [127.0.0.1])"]
    pop3 = section(out, 4).splitlines()
    assert "<-  +OK mail.anotherdomain.org POP3 server ready" in pop3
    assert pop3.index(" -> USER bob") < pop3.index(" -> PASS ***") < pop3.index(" -> RETR 1")
    assert " -> QUIT" in pop3


def test_no_secret_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_demo(capsys, "--no-tls")
    for secret in ("wonderland", "builder", "AGFsaWNl"):  # the base64 of AUTH PLAIN too
        assert secret not in out


def test_tls_dialogue_uses_tls_arrows(capsys: pytest.CaptureFixture[str]) -> None:
    out = run_demo(capsys)
    smtp = section(out, 2).splitlines()
    assert "<-  250-STARTTLS" in smtp  # offered in the first EHLO reply
    start = smtp.index(" -> STARTTLS")
    assert smtp[start + 1] == "<-  220 2.0.0 Ready to start TLS"
    assert smtp[start + 2].startswith("=== TLS started with cipher TLS")
    assert smtp[start + 3] == " ~> EHLO mail.example.com"
    after = smtp[start + 3:]
    assert "<~  250 2.1.0 Ok" in after and "<~  250 2.1.5 Ok" in after
    assert "<~  354 End data with <CR><LF>.<CR><LF>" in after
    assert " ~> ." in after and any(QUEUED.match(line) for line in after)
    assert after[-3:] == [" ~> QUIT", "<~  221 2.0.0 Bye",
                          "=== Connection closed with remote host."]
    assert not any(line.startswith((" ->", "<- ")) for line in after)
    # the MX's own Received header says the hop was encrypted
    assert "with ESMTPS id" in section(out, 3)
    pop3 = section(out, 4)
    assert " -> STLS" in pop3 and " ~> PASS ***" in pop3


def test_output_is_byte_identical_run_after_run() -> None:
    first = run_simsmtp("demo")
    second = run_simsmtp("demo")
    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert first.stdout == second.stdout
    assert "250 2.0.0 Ok: queued as" in first.stdout
    # no ephemeral port of this machine leaks into the text
    assert not re.search(r"(?<![\d.])(?:127\.0\.0\.\d+)[:#](?!25\b|53\b|110\b)\d+", first.stdout)


def test_seed_changes_the_queue_ids(capsys: pytest.CaptureFixture[str]) -> None:
    one = QUEUED.findall(run_demo(capsys, "--no-tls"))
    again = QUEUED.findall(run_demo(capsys, "--no-tls", "--seed", "1"))
    other = QUEUED.findall(run_demo(capsys, "--no-tls", "--seed", "2"))
    assert len(one) == 2  # the submission's and the MX's
    assert one == again
    assert set(one).isdisjoint(other)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--help"]) == 0
    text = capsys.readouterr().out
    assert "--no-tls" in text and "--seed" in text


# ---------------------------------------------------------------- --pcap and --keylog

def tshark(capture: Path, *args: str) -> str:
    program = require_program("tshark")
    done = subprocess.run([program, "-r", str(capture), *args], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def infos(capture: Path, display_filter: str, *args: str) -> list[str]:
    return tshark(capture, *args, "-Y", display_filter, "-T", "fields",
                  "-e", "_ws.col.Info").splitlines()


@pytest.mark.interop
def test_pcap_and_keylog_open_in_tshark(tmp_path: Path) -> None:
    capture, keys = tmp_path / "demo.pcap", tmp_path / "keys.txt"
    done = run_simsmtp("demo", "--pcap", str(capture), "--keylog", str(keys))
    assert done.returncode == 0, done.stderr
    assert f"tshark -r {capture} -o tls.keylog_file:{keys}" in done.stdout
    sessions = {line.split()[1] for line in keys.read_text().splitlines()
                if line.startswith("CLIENT_HANDSHAKE_TRAFFIC_SECRET ")}
    assert len(sessions) == 3  # one TLS session each on 587, 25 and 110
    dns = infos(capture, "dns")
    assert "Standard query" in dns[0] and any("MX anotherdomain.org" in i for i in dns)
    assert any("MX 10 mail.anotherdomain.org" in i for i in dns)
    smtp = infos(capture, "smtp")
    assert "C: EHLO mail.example.com" in smtp and "C: STARTTLS" in smtp
    assert not any("MAIL FROM" in i for i in smtp)  # encrypted without the keys
    pop = infos(capture, "pop")
    assert "C: STLS" in pop and not any("PASS" in i for i in pop)
    decrypted = infos(capture, "smtp or pop", "-o", f"tls.keylog_file:{keys}")
    assert "C: MAIL FROM:<alice@example.com>" in " ".join(decrypted)
    assert "C: AUTH PLAIN" in " ".join(decrypted)
    assert "C: PASS builder" in decrypted
    assert infos(capture, "tcp.analysis.flags") == []


@pytest.mark.interop
def test_pcapng_carries_the_keys_inside(tmp_path: Path) -> None:
    capture = tmp_path / "demo.pcapng"
    done = run_simsmtp("demo", "--pcap", str(capture))
    assert done.returncode == 0, done.stderr
    assert f"Capture: {capture} (pcapng, TLS keys inside); read it with: tshark -r {capture}\n" \
        in done.stdout
    assert "C: PASS builder" in infos(capture, "pop")  # decrypted with no option
    assert "C: MAIL FROM:<alice@example.com>" in " ".join(infos(capture, "smtp"))


def test_keylog_alone(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("left over from an earlier run\n")
    assert main(["demo", "--keylog", str(keys)]) == 0
    assert capsys.readouterr().out.endswith(f"TLS keys: {keys}\n")
    text = keys.read_text()
    assert "left over" not in text
    assert {line.split()[0] for line in text.splitlines() if not line.startswith("#")} >= {
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET", "SERVER_TRAFFIC_SECRET_0"}  # TLS 1.3 (RFC 8446)
