"""A message accepted with 250 survives a SIGKILL of ``up`` and is delivered exactly once
after a restart with the same ``--directory`` (RFC 5321 §6.1: never lose accepted mail)."""

from __future__ import annotations

import json
import smtplib
import ssl
import time
from pathlib import Path

from tests.cli._up import UpProcess

WORLD = """
[world]
name = "Bob's server is {state}"
seed = 1

[domains."example.com"]
mx = [{{ preference = 10, host = "mail.example.com" }}]
users.alice = {{ name = "Alice", password = "wonderland" }}

[domains."anotherdomain.org"]
mx = [{{ preference = 10, host = "mail.anotherdomain.org" }}]
users.bob = {{ name = "Bob", password = "builder" }}

[hosts."mail.example.com"]
domain = "example.com"
roles = ["submission", "outbound"]

[hosts."mail.anotherdomain.org"]
domain = "anotherdomain.org"
roles = ["mx", "pop3"]
down = {down}
"""


def submit(up: UpProcess, subject: str) -> str:
    """Alice submits on 587 (STARTTLS, AUTH); returns the queue id of the 250."""
    context = ssl.create_default_context(cafile=up.ca_file)
    with smtplib.SMTP(*up.address("mail.example.com", 587), timeout=10) as client:
        client.starttls(context=context)
        client.login("alice@example.com", "wonderland")
        client.mail("alice@example.com")
        client.rcpt("bob@anotherdomain.org")
        code, text = client.data(f"Subject: {subject}\r\n\r\nStill there?\r\n".encode())
    assert code == 250, text
    return text.decode().rpartition(" ")[2]


def journal(directory: Path, queue_id: str) -> list[dict[str, object]]:
    path = directory / "queue" / "mail.example.com" / "status" / queue_id
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def wait_until(predicate: object, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(0.02)
    return False


def test_accepted_mail_survives_sigkill_and_is_delivered_once(tmp_path: Path) -> None:
    down = tmp_path / "down.toml"
    down.write_text(WORLD.format(state="down", down="true"))
    back = tmp_path / "back.toml"
    back.write_text(WORLD.format(state="back", down="false"))
    data = tmp_path / "data"

    first = UpProcess("--world", str(down), "--directory", str(data))
    try:
        queue_id = submit(first, "survivor")
        queued = data / "queue" / "mail.example.com" / "active" / queue_id
        assert queued.exists()  # on disk before the 250
        # the first attempt finds Bob's server down: deferred, retry due later
        assert wait_until(lambda: any(r.get("status") == "deferred"
                                      for r in journal(data, queue_id)))
    finally:
        first.proc.kill()  # SIGKILL: no goodbye, no cleanup
        first.kill()
    assert first.proc.returncode == -9
    assert queued.exists()

    second = UpProcess("--world", str(back), "--directory", str(data))
    try:
        [message] = second.wait_for_subject("survivor")
        assert "Still there?" in message.get_content()
        assert wait_until(lambda: not queued.exists())  # delivered, so off the queue
        assert len(second.pop3_messages()) == 1
    finally:
        assert second.terminate() == 0, second.stderr()

    third = UpProcess("--world", str(back), "--directory", str(data))
    try:
        time.sleep(0.2)  # give a (wrong) second delivery the chance to happen
        assert [m["Subject"] for m in third.pop3_messages()] == ["survivor"]
    finally:
        assert third.terminate() == 0, third.stderr()


def test_a_restart_never_reuses_the_queue_id_of_a_queued_message(tmp_path: Path) -> None:
    down = tmp_path / "down.toml"
    down.write_text(WORLD.format(state="down", down="true"))
    data = tmp_path / "data"
    first = UpProcess("--world", str(down), "--directory", str(data))
    try:
        kept = submit(first, "first")
    finally:
        first.kill()
    second = UpProcess("--world", str(down), "--directory", str(data))
    try:
        # the same seed draws the same ids: the queued message's id must be skipped
        fresh = submit(second, "second")
    finally:
        assert second.terminate() == 0, second.stderr()
    assert fresh != kept
    active = data / "queue" / "mail.example.com" / "active"
    assert sorted(p.name for p in active.iterdir()) == sorted([kept, fresh])
