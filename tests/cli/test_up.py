"""``python -m simsmtp up``: serve a world until SIGINT/SIGTERM; --json; errors; --help."""

from __future__ import annotations

import re
import shlex
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
from pathlib import Path

import pytest

from simsmtp.cli import UP_READY, main
from tests.cli._up import ROOT, UpProcess, run_simsmtp
from tests.conftest import posix_only, require_program

SEED_HOSTS = {"mail.example.com": {"465", "587"},
              "mail.anotherdomain.org": {"25", "110", "995", "143", "993"}}


def send_plain(up: UpProcess, subject: str) -> str:
    """Alice's server hands Bob a message on port 25; returns the 250 reply text."""
    with smtplib.SMTP(*up.address("mail.anotherdomain.org", 25), local_hostname="test",
                      timeout=10) as client:
        client.ehlo()
        client.mail("alice@example.com")
        client.rcpt("bob@anotherdomain.org")
        code, text = client.data(f"Subject: {subject}\r\n\r\nhello\r\n".encode())
    assert code == 250
    return text.decode()


@posix_only
def test_json_first_line_is_describe_and_sigterm_exits_0() -> None:
    up = UpProcess()
    try:
        info = up.info
        assert set(info) == {"dns", "hosts", "ca_file", "users", "policy_servers",
                             "trust_anchors"}
        # the MTA-STS policy server of anotherdomain.org (RFC 8461 §3.3), on Bob's MX
        [(name, server)] = info["policy_servers"].items()
        assert name == "mta-sts.anotherdomain.org"
        assert server["ip"] == info["hosts"]["mail.anotherdomain.org"]["ip"]
        assert server["url"] == "https://mta-sts.anotherdomain.org/.well-known/mta-sts.txt"
        assert "static-key 257 3 15" in Path(info["trust_anchors"]).read_text()
        assert set(info["dns"]) == {"ip", "port"} and isinstance(info["dns"]["port"], int)
        served = {name: set(h["ports"]) for name, h in info["hosts"].items() if h["ports"]}
        assert served == SEED_HOSTS  # hosts that only connect (role "client") list no port
        for host in info["hosts"].values():
            # "world_ip" too where hosts share 127.0.0.1 ("ip", where tools connect)
            assert set(host) in ({"ip", "ports"}, {"ip", "world_ip", "ports"})
            assert host["ip"].startswith("127.")
            assert all(isinstance(p, int) and p > 0 for p in host["ports"].values())
        assert Path(info["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE-----")
        assert info["users"]["alice@example.com"] == "wonderland"
        assert info["users"]["bob@anotherdomain.org"] == "builder"
    finally:
        status = up.terminate(signal.SIGTERM)
    assert status == 0, up.stderr()
    assert up.tail == ""  # --json: one line, nothing else on stdout


@posix_only
def test_stop_says_421_to_connected_clients_and_closes_the_sockets() -> None:
    up = UpProcess()
    address = up.address("mail.anotherdomain.org", 25)
    signalled = False
    try:
        with socket.create_connection(address, timeout=10) as sock:
            reader = sock.makefile("rb")
            assert reader.readline().startswith(b"220 ")
            up.proc.send_signal(signal.SIGTERM)
            signalled = True
            # RFC 5321 §3.8: a server that must stop says 421 and closes
            assert reader.readline().startswith(b"421 4.3.2 ")
            assert reader.readline() == b""
            reader.close()
    finally:
        status = up.terminate(signalled=signalled)  # no second signal mid-shutdown
    assert status == 0, up.stderr()
    assert up.stderr() == ""
    with pytest.raises(OSError), socket.create_connection(address, timeout=2):
        pass


@posix_only
def test_without_json_a_table_and_commands_to_paste_then_sigint_exits_0() -> None:
    up = UpProcess(json_line=False)
    lines = [up.first_line]
    try:
        while lines[-1].strip() != UP_READY:
            lines.append(up.read_line())
        table = {line.split()[0]: line.split()[1:] for line in lines
                 if line.startswith(("mail.", "ns."))}
        mx_ip, mx_25, mx_587, mx_465, mx_110, mx_995, mx_143, mx_993 = \
            table["mail.anotherdomain.org"]
        with smtplib.SMTP(mx_ip, int(mx_25), timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@anotherdomain.org"], b"Subject: x\r\n")
        # what happens is logged as it happens
        assert up.read_line() == ("[mail.anotherdomain.org] stored in the mailbox of "
                                  "<bob@anotherdomain.org>\n")
    finally:
        status = up.terminate(signal.SIGINT)
    assert status == 0, up.stderr()
    text = "".join(lines)
    assert mx_587 == mx_465 == "-" and mx_25.isdigit() and mx_110.isdigit()
    # Bob's server also serves POP3S (RFC 8314 §3.3) and IMAP (RFC 9051: 143, 993)
    assert mx_995.isdigit() and mx_143.isdigit() and mx_993.isdigit()
    sub_ip, sub_25, sub_587, sub_465, *retrieval = table["mail.example.com"]
    assert sub_25 == "-" and retrieval == ["-"] * 4
    # the seed's "telnet mail.anotherdomain.org 25", with the real address and port,
    # and the same for POP3 and IMAP (nc -C: Enter sends CRLF)
    for port, service in ((mx_25, "smtp"), (mx_110, "pop3"), (mx_143, "imap")):
        assert f"  telnet {mx_ip} {port}  # {service}\n" in text
        assert f"  nc -C {mx_ip} {port}  # {service}\n" in text
    assert re.search(rf"openssl s_client -starttls imap -connect {mx_ip}:{mx_143} ", text)
    # in clear the seed refuses logins: the hint after telnet/nc says so (RFC 9051 §6.2.3)
    assert "LOGIN needs TLS first (LOGINDISABLED)" in text and "USER/PASS need TLS" in text
    assert f"imaps://{mx_ip}:{mx_993}/INBOX" in text and "--user bob:builder" in text
    dns = re.search(r"dig @(\S+) -p (\d+) MX anotherdomain\.org", text)
    assert dns is not None and dns.group(1) == table["ns.simsmtp.test"][0]
    # Speaking as Alice's server is possible only where each host has its own address.
    shared = sub_ip == mx_ip == "127.0.0.1"
    as_alices_server = "" if shared else f" --local-interface {sub_ip} --helo mail.example.com"
    assert (f"swaks --server {mx_ip}:{mx_25} --from alice@example.com "
            f"--to bob@anotherdomain.org{as_alices_server}\n") in text
    assert (f"swaks --server {mx_ip}:{mx_25} --from alice@example.com "
            f"--to bob@anotherdomain.org{as_alices_server} -tls\n") in text
    assert ("Every host listens on 127.0.0.1 here" in text) == shared
    assert re.search(rf"openssl s_client -starttls smtp -connect {mx_ip}:{mx_25} "
                     r"-CAfile \S+ca\.pem -verify_return_error -crlf -ign_eof\n", text)
    assert (f"swaks --server {sub_ip}:{sub_587} --from alice@example.com "
            "--to bob@anotherdomain.org -tls --auth PLAIN --auth-user alice@example.com "
            "--auth-password wonderland") in text
    assert f"swaks --server {sub_ip}:{sub_465} " in text and "--tlsc" in text
    assert "bob@anotherdomain.org" in text and "builder" in text
    assert up.tail.endswith("Stopped.\n")


@posix_only
def test_directory_keeps_the_ca_the_queue_and_the_maildirs(tmp_path: Path) -> None:
    up = UpProcess("--directory", str(tmp_path))
    try:
        assert Path(up.ca_file).is_relative_to(tmp_path)
        send_plain(up, "kept")
        assert [m["Subject"] for m in up.pop3_messages()] == ["kept"]
    finally:
        assert up.terminate() == 0, up.stderr()
    assert (tmp_path / "queue" / "mail.example.com" / "active").is_dir()
    stored = [p for p in (tmp_path / "mail").rglob("*") if p.is_file()]
    assert any(b"Subject: kept" in p.read_bytes() for p in stored)


@posix_only
def test_memory_storage_writes_no_mailbox_files(tmp_path: Path) -> None:
    up = UpProcess("--storage", "memory", "--directory", str(tmp_path))
    try:
        send_plain(up, "in memory")
        assert [m["Subject"] for m in up.pop3_messages()] == ["in memory"]
    finally:
        assert up.terminate() == 0, up.stderr()
    assert not [p for p in tmp_path.rglob("*") if p.is_file() and b"in memory" in p.read_bytes()]


@posix_only
def test_trace_file_keeps_the_whole_history_beyond_the_window(tmp_path: Path) -> None:
    from simsmtp.trace import read_history

    history = tmp_path / "trace.jsonl"
    up = UpProcess("--storage", "memory", "--trace-window", "5", "--trace-file", str(history))
    try:
        send_plain(up, "remembered")
        send_plain(up, "twice")
    finally:
        assert up.terminate() == 0, up.stderr()
    events = list(read_history(history))
    assert [e.seq for e in events] == list(range(len(events))) and len(events) > 5
    assert "world.started" in {e.kind for e in events} and events[-1].kind == "world.stopped"
    stored = [e["recipient"] for e in read_history(history, kind="delivery.stored")]
    assert stored == ["bob@anotherdomain.org"] * 2


def test_bounds_must_be_whole_numbers_above_0(capsys: pytest.CaptureFixture[str]) -> None:
    for option in ("--trace-window", "--capture-bytes"):
        for bad in ("0", "-3", "many"):
            assert main(["up", option, bad]) == 2
            assert "expected a whole number above 0" in capsys.readouterr().err


@posix_only
def test_seed_changes_the_queue_ids() -> None:
    replies = []
    for seed in ("1", "1", "3"):
        up = UpProcess("--seed", seed, "--storage", "memory")
        try:
            replies.append(send_plain(up, "seeded"))
        finally:
            assert up.terminate() == 0, up.stderr()
    assert replies[0] == replies[1]
    assert replies[0] != replies[2]
    assert all(re.fullmatch(r"2\.0\.0 Ok: queued as [0-9A-F]{10}", r) for r in replies)


# ---------------------------------------------------------------- errors: one line, exit 2

def one_error_line(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    return lines[0]


def test_bad_world_file_names_the_file_the_key_and_what_was_expected(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "myworld.toml"
    world.write_text('[domains."example.com"]\n[hosts."mail.example.com"]\n'
                     'domain = "example.com"\nroles = ["smtp"]\n')
    line = one_error_line(capsys, ["up", "--world", str(world)])
    assert str(world) in line
    assert 'hosts."mail.example.com".roles[0]' in line
    assert "expected one of" in line and "mx" in line and '"smtp"' in line


def test_toml_syntax_error_gives_line_and_column(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    world = tmp_path / "broken.toml"
    world.write_text("[world]\nname = \n")
    line = one_error_line(capsys, ["up", "--world", str(world)])
    assert f"{world}:2:" in line and "expected valid TOML" in line


def test_missing_world_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nowhere.toml"
    line = one_error_line(capsys, ["up", "--world", str(missing)])
    assert str(missing) in line and "No such file or directory" in line


def test_a_real_process_prints_no_traceback(tmp_path: Path) -> None:
    world = tmp_path / "bad.toml"
    world.write_text('[world]\nseed = "one"\n')
    done = run_simsmtp("up", "--world", str(world))
    assert done.returncode == 2
    assert done.stdout == ""
    assert "Traceback" not in done.stderr
    assert done.stderr.count("\n") == 1
    assert f"{world}: world.seed: expected" in done.stderr


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, words in ((["--help"], ("demo", "up")),
                        (["up", "--help"], ("--world", "--json", "--storage", "--directory",
                                            "--seed", "SIGTERM")),
                        (["demo", "--help"], ("--no-tls", "--seed"))):
        assert main(argv) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: python -m simsmtp")
        for word in words:
            assert word in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert main(["fly"]) == 2
    assert main(["up", "--storage", "cloud"]) == 2
    assert "invalid choice" in capsys.readouterr().err


@pytest.mark.interop
@posix_only
def test_capture_writes_a_pcap_and_a_key_log_on_exit(tmp_path: Path) -> None:
    tshark = require_program("tshark")
    up = UpProcess("--capture", str(tmp_path), "--storage", "memory")
    try:
        send_plain(up, "captured in clear")
        context = ssl.create_default_context(cafile=up.ca_file)
        with smtplib.SMTP(*up.address("mail.example.com", 587), local_hostname="laptop",
                          timeout=10) as client:
            client.starttls(context=context)
            client.login("alice@example.com", "wonderland")
    finally:
        assert up.terminate() == 0, up.stderr()
    capture, keys = tmp_path / "capture.pcap", tmp_path / "keylog.txt"
    assert "CLIENT_HANDSHAKE_TRAFFIC_SECRET" in keys.read_text()

    def smtp_lines(*options: str) -> str:
        done = subprocess.run([tshark, "-r", str(capture), *options, "-Y", "smtp or imf", "-T",
                               "fields", "-e", "_ws.col.Info"], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        return done.stdout

    clear = smtp_lines()
    assert "C: ehlo test" in clear and "C: mail FROM:<alice@example.com>" in clear
    assert "captured in clear" in clear  # the message itself (IMF), readable on port 25
    assert "C: ehlo laptop" in clear and "C: STARTTLS" in clear
    assert "AUTH" not in clear  # inside TLS
    assert "C: AUTH PLAIN" in smtp_lines("-o", f"tls.keylog_file:{keys}")


def test_importing_the_cli_stays_light() -> None:
    code = ("import sys, simsmtp.cli; heavy = ('simsmtp.net', 'simsmtp.world', 'dns', "
            "'scapy', 'cryptography', 'trustme', 'asyncio', 'ssl', 'socket'); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy "
            "or m.startswith(heavy)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=30, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.interop
@posix_only
def test_the_commands_to_paste_work() -> None:
    for program in ("dig", "swaks", "openssl", "curl", "delv", "telnet", "nc"):
        require_program(program, "bind9-dnsutils" if program in ("dig", "delv") else None)
    up = UpProcess(json_line=False)
    lines = [up.first_line]
    try:
        while lines[-1].strip() != UP_READY:
            lines.append(up.read_line())
        start = lines.index("Try, in another terminal:\n") + 1
        shared = any("Every host listens on 127.0.0.1 here" in line for line in lines)
        commands = [line.strip() for line in lines[start:]
                    if line.startswith("  ") and not line.startswith("    (")]
        assert [c.split()[0] for c in commands] == [
            "dig", "swaks", "swaks", "openssl", "swaks", "swaks", "curl", "dig", "delv",
            "openssl", "openssl", "curl", "telnet", "nc", "telnet", "nc", "telnet", "nc"]
        for command in commands:
            program = command.split()[0]
            imap = "imap" in command and "imaps://" not in command
            done = subprocess.run(shlex.split(command, comments=True), capture_output=True,
                                  text=True,
                                  input="a LOGOUT\n" if imap else "QUIT\n", timeout=30)
            # Where hosts share 127.0.0.1 (SIMSMTP_LOOPBACK=single), swaks straight to the
            # MX is an outside client sending as example.com: DMARC refuses it (p=reject;
            # swaks exits 26: the message was refused after DATA).
            refused = shared and program == "swaks" and \
                "--to bob@anotherdomain.org" in command and " --auth " not in command
            assert done.returncode == (26 if refused else 0), \
                f"{command}\n{done.stdout}\n{done.stderr}"
            if program == "nc":  # nc -C: each line typed ends in CRLF
                expected = {"smtp": "221 2.0.0 Bye", "pop3": "+OK",
                            "imap": "* BYE Logging out"}[command.rsplit(" ", 1)[1]]
            elif program == "telnet":  # made for typing: from a pipe it may leave before
                expected = f"Connected to {command.split()[1]}."  # the greeting comes
            elif program == "openssl":
                expected = {"pop3": "+OK", "imap": "* BYE Logging out"}.get(
                    command.split()[3], "Verify return code: 0 (ok)")
            elif program == "curl":  # the MTA-STS policy (RFC 8461 §3.2), or IMAPS
                expected = "mode: enforce" if "mta-sts" in command else "ENVELOPE ("
            else:
                expected = {"dig": "MX\t10 mail.anotherdomain.org.",
                            "delv": "; fully validated",  # from the world's trust anchor
                            "swaks": "550 5.7.1 Email rejected per DMARC" if refused
                            else "250 2.0.0 Ok: queued as"}[program]
            assert expected in done.stdout, command
    finally:
        assert up.terminate() == 0, up.stderr()
