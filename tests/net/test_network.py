"""A running world as a whole: boot and complete stop, many worlds side by side (in one
process and in twenty), addresses, ``describe()``, bad world files, hosts down and up."""

from __future__ import annotations

import ipaddress
import json
import os
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from simsmtp.net.network import Network
from simsmtp.world import World, WorldFileError
from simsmtp.world.scenario import seed_message

ALICE, BOB = "alice@example.com", "bob@anotherdomain.org"
ROOT = Path(__file__).resolve().parents[2]


def _send(net: Network, subject: str) -> None:
    """Alice's server hands Bob's MX a message (from its own address, as it would)."""
    ip, port = net.address("mail.anotherdomain.org", 25)
    source = (net.hosts["mail.example.com"].ip, 0)
    with smtplib.SMTP(ip, port, local_hostname="mail.example.com", timeout=5,
                      source_address=source) as client:
        client.sendmail(ALICE, [BOB], f"Subject: {subject}\r\n\r\nHi\r\n".encode())


def _threads_settle(before: set[threading.Thread], timeout: float = 5.0) -> set[threading.Thread]:
    """Threads alive now that were not alive before (waiting a little for stragglers)."""
    end = time.monotonic() + timeout
    while True:
        extra = {t for t in threading.enumerate() if t not in before and t.is_alive()}
        if not extra or time.monotonic() > end:
            return extra
        time.sleep(0.01)


# ------------------------------------------------------------------ boot and stop


def test_start_boots_and_stop_releases_threads_ports_and_files() -> None:
    before = set(threading.enumerate())
    world = World.seed_world()
    with world.start() as net:
        assert net.running
        directory = net.directory
        assert directory is not None and directory.is_dir()
        assert _threads_settle(before, timeout=0)  # the world's loop thread runs
        bound = [(h.ip, port) for h in net.hosts.values() for port in h.ports.values()]
        # 587, 465; 25, 110, 995, 143, 993; the DNS server's 53
        assert len(bound) == 8
        _send(net, "before the stop")
        assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
    assert not net.running
    assert _threads_settle(before) == set()
    assert not directory.exists()
    for ip, port in bound:  # every TCP port can be listened on again
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            # as every server does (asyncio too): closed connections of the port may
            # linger in TIME_WAIT, but a listener still open would make this bind fail
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((ip, port))
            sock.listen()
    dns_ip, dns_port = net.hosts[world.nameserver].ip, net.hosts[world.nameserver].ports[53]
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        udp.bind((dns_ip, dns_port))  # and the DNS server's UDP port too
    assert [e.kind for e in world.trace.events("world")] == ["world.started",
                                                             "world.stopped"]


def test_stop_is_idempotent() -> None:
    before = set(threading.enumerate())
    world = World.seed_world()
    net = world.start(storage="memory").start()
    net.stop()
    net.stop()
    assert not net.running
    assert _threads_settle(before) == set()
    assert [e.kind for e in world.trace.events("world")] == ["world.started",
                                                             "world.stopped"]


def test_a_directory_given_by_the_caller_is_kept(tmp_path: Path) -> None:
    with World.seed_world().start(directory=tmp_path / "world") as net:
        _send(net, "kept")
        assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
    kept = list((tmp_path / "world" / "mail").rglob("new/*"))
    assert len(kept) == 1
    assert b"Subject: kept" in kept[0].read_bytes()


def test_interpreter_exit_removes_the_temporary_directory() -> None:
    code = ("from simsmtp.world import World\n"
            "net = World.seed_world().start().start()\n"
            "print(net.directory)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT, check=True)
    directory = Path(out.stdout.strip())
    try:
        assert not directory.exists()
    finally:
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


# ------------------------------------------------------------------ many worlds


def test_two_worlds_in_one_process_at_once() -> None:
    first, second = World.seed_world(), World.seed_world(seed=2)
    with first.start(storage="memory") as one, second.start(storage="memory") as two:
        a, b = one.address("mail.anotherdomain.org"), two.address("mail.anotherdomain.org")
        assert a != b
        _send(one, "to the first world")
        _send(two, "to the second world")
        _send(two, "to the second world again")
        assert one.wait(lambda: len(one.mailbox(BOB)) == 1, 5)
        assert two.wait(lambda: len(two.mailbox(BOB)) == 2, 5)
        assert [m["Subject"] for m in one.mailbox(BOB)] == ["to the first world"]
        assert {m["Subject"] for m in two.mailbox(BOB)} == {"to the second world",
                                                            "to the second world again"}
        # each world's DNS answers with its own addresses
        for net in (one, two):
            answer = net.resolver().resolve("mail.anotherdomain.org", "A")
            assert [r.address for r in answer] == [net.hosts["mail.anotherdomain.org"].ip]
        assert len(first.trace.events("smtp.message")) == 1
        assert len(second.trace.events("smtp.message")) == 2


_CHILD = r"""
import json, smtplib, sys
from simsmtp.world import World
world = World.seed_world()
with world.start() as net:
    print(json.dumps(net.describe()), flush=True)
    assert sys.stdin.readline().strip() == "go"
    ip, port = net.address("mail.anotherdomain.org", 25)
    source = (net.hosts["mail.example.com"].ip, 0)
    # Bounds, not speeds: twenty worlds boot and check mail at once on a busy machine.
    with smtplib.SMTP(ip, port, local_hostname="mail.example.com", timeout=120,
                      source_address=source) as client:
        client.sendmail("alice@example.com", ["bob@anotherdomain.org"],
                        b"Subject: from process %d\r\n\r\nHi\r\n" % int(sys.argv[1]))
    assert net.wait(lambda: len(net.mailbox("bob@anotherdomain.org")) == 1, 120)
    [got] = net.mailbox("bob@anotherdomain.org")
    print(got["Subject"], flush=True)
"""


@pytest.mark.slow
def test_twenty_processes_each_with_a_seed_world_at_once() -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    children = [subprocess.Popen([sys.executable, "-c", _CHILD, str(i)], cwd=ROOT, env=env,
                                 stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for i in range(20)]
    try:
        described = []
        for child in children:  # all twenty worlds are up at the same time ...
            assert child.stdout is not None
            line = child.stdout.readline()
            assert line, child.stderr.read() if child.stderr else ""
            described.append(json.loads(line))
        for child in children:  # ... before any of them sends its message
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        results = [child.communicate(timeout=300) for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    for i, (child, (out, err)) in enumerate(zip(children, results, strict=True)):
        assert child.returncode == 0, err
        assert out.strip() == f"from process {i}"
    endpoints = [(d["hosts"]["mail.anotherdomain.org"]["ip"],
                  d["hosts"]["mail.anotherdomain.org"]["ports"]["25"]) for d in described]
    assert len(set(endpoints)) == 20  # no two worlds share a listening socket


# ------------------------------------------------------------------ addresses and describe


def test_each_host_owns_its_loopback_address() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        ips = {name: info.ip for name, info in net.hosts.items()}
        assert set(ips) == {*world.hosts, world.nameserver}
        assert len(set(ips.values())) == len(ips)
        assert all(ipaddress.ip_address(ip) in ipaddress.ip_network("127.0.0.0/8")
                   for ip in ips.values())
        for name in world.hosts:  # the world's DNS agrees, forward and reverse
            [a] = net.resolver().resolve(name, "A")
            assert a.address == ips[name]
            [ptr] = net.resolver().resolve_address(ips[name])
            assert ptr.target.to_text() == name + "."
        # the agent connects from its own host's address (what the MX's Received shows)
        steps = net.submit(seed_message(world), sender=ALICE, recipients=[BOB], user=ALICE,
                           password="wonderland")
        assert steps[-1].code == 221
        assert net.wait(lambda: len(net.mailbox(BOB)) == 1, 5)
        [got] = net.mailbox(BOB)
        assert f"(mail.example.com [{ips['mail.example.com']}])" in got["Received"]


def test_the_network_runs_without_the_command_line() -> None:
    code = ("import sys\n"
            "from simsmtp.world import World\n"
            "with World.seed_world().start(storage='memory') as net:\n"
            "    step = net.session().connect()\n"
            "    assert step.code == 220, step\n"
            "bad = [m for m in sys.modules if m.startswith(('simsmtp.cli', 'simsmtp.ui',\n"
            "       'ipywidgets', 'matplotlib'))]\n"
            "print(bad)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_describe_has_the_up_json_shape() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        described = net.describe()
        assert json.loads(json.dumps(described)) == described
        assert set(described) == {"dns", "hosts", "ca_file", "users", "policy_servers",
                                  "trust_anchors"}
        # anotherdomain.org's MTA-STS policy is served on its MX's address (RFC 8461 §3.3)
        assert described["policy_servers"]["mta-sts.anotherdomain.org"] == {
            "ip": net.hosts["mail.anotherdomain.org"].ip,
            "port": net.https_ports["mail.anotherdomain.org"],
            "url": "https://mta-sts.anotherdomain.org/.well-known/mta-sts.txt"}
        assert described["dns"] == {"ip": net.dns_address[0], "port": net.dns_address[1]}
        assert set(described["hosts"]) == set(world.hosts)  # not the name server
        example = described["hosts"]["mail.example.com"]
        another = described["hosts"]["mail.anotherdomain.org"]
        info = net.hosts["mail.example.com"]
        # "ip" is where a tool connects; the world's own address too where they differ.
        assert set(example) == ({"ip", "ports"} if info.ip == info.bind_ip
                                else {"ip", "world_ip", "ports"})
        assert example["ip"] == info.bind_ip
        assert set(example["ports"]) == {"587", "465"}
        assert set(another["ports"]) == {"25", "110", "995", "143", "993"}
        assert tuple(net.address("mail.example.com", 587)) == (example["ip"],
                                                               example["ports"]["587"])
        assert Path(described["ca_file"]).read_text().startswith("-----BEGIN CERTIFICATE")
        assert described["users"] == {u.address: u.password for u in world.users()}
        assert described["users"][ALICE] == "wonderland"
        assert described["users"][BOB] == "builder"
        with pytest.raises(KeyError, match="serves 25, 110, 143, 993, 995"):
            net.address("mail.anotherdomain.org", 587)


# ------------------------------------------------------------------ world files


def test_a_bad_world_file_names_the_file_the_key_and_what_was_expected(
        tmp_path: Path) -> None:
    path = tmp_path / "broken.toml"
    path.write_text('[domains."example.com"]\n'
                    '[hosts."mail.example.com"]\n'
                    'domain = "example.com"\n'
                    'roles = ["mx", "smtp"]\n')
    with pytest.raises(WorldFileError) as caught:
        World.load(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    assert 'hosts."mail.example.com".roles[1]' in message
    assert "expected" in message and "smtp" in message
    assert caught.value.key == 'hosts."mail.example.com".roles[1]'


def test_a_world_file_that_is_not_toml_gets_its_line(tmp_path: Path) -> None:
    path = tmp_path / "typo.toml"
    path.write_text('[world]\nname = "unterminated\n')
    with pytest.raises(WorldFileError) as caught:
        World.load(path)
    assert caught.value.line == 2
    assert str(caught.value).startswith(f"{path}:2:")


def test_a_good_world_file_boots(tmp_path: Path) -> None:
    path = tmp_path / "tiny.toml"
    path.write_text('[world]\nname = "tiny"\n'
                    '[domains."tiny.test"]\nusers.ann = { password = "pw" }\n'
                    '[hosts."mx.tiny.test"]\ndomain = "tiny.test"\nroles = ["mx"]\n')
    world = World.load(path)
    with world.start(storage="memory") as net:
        ip, port = net.address("mx.tiny.test", 25)
        with smtplib.SMTP(ip, port, timeout=5) as client:
            client.sendmail("x@elsewhere.test", ["ann@tiny.test"], b"Subject: t\r\n\r\nx\r\n")
        assert [m["Subject"] for m in net.mailbox("ann@tiny.test")] == ["t"]


# ------------------------------------------------------------------ hosts down and up


def test_take_down_refuses_connections_and_bring_up_restores_the_same_port() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        address = net.address("mail.anotherdomain.org", 25)
        net.take_down("mail.anotherdomain.org")
        assert world.host("mail.anotherdomain.org").down
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(address, timeout=2).close()
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(net.address("mail.anotherdomain.org", 110),
                                     timeout=2).close()
        # the other host is unaffected
        with net.session("mail.example.com", 587) as other:
            assert other.connect().code == 220
        net.bring_up("mail.anotherdomain.org")
        assert not world.host("mail.anotherdomain.org").down
        assert net.address("mail.anotherdomain.org", 25) == address
        with net.session() as again:
            assert again.connect().code == 220
        kinds = [e.kind for e in world.trace.events("host")]
        assert kinds == ["host.down", "host.up"]


# ------------------------------------------------------------------ the boot benchmark


def test_the_boot_benchmark_prints_its_table() -> None:
    from benchmarks.boot import main

    lines: list[str] = []
    assert main(["--runs", "1", "--storage", "memory"], out=lines.append) == 0
    text = "\n".join(lines)
    for row in ("import simsmtp ", "boot to ready (seed world)", "stop ",
                "RSS added by the first world", "RSS added by each further world"):
        assert row in text
    assert text.startswith("simsmtp boot benchmark: N = 1, storage = memory")
