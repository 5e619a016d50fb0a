"""Maildir trees, Received: hops, dialogues and the ports table."""

from __future__ import annotations

from typing import Any

import pytest

from simsmtp.ui.mailbox import (
    dialogue,
    maildir_tree,
    ports_table,
    received_hops,
    received_table,
)
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE

RECEIVED = (
    b"Received: from mail.example.com (mail.example.com [127.0.0.2])\r\n"
    b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
    b"\tby mail.anotherdomain.org (Postfix) with ESMTPS id 0B13A6B11A\r\n"
    b"\tfor <bob@anotherdomain.org>; Mon, 10 Mar 2025 09:00:00 +0000\r\n"
    b"Received: from alice-laptop (unknown [127.0.0.1])\r\n"
    b"\t(using TLSv1.3 with cipher TLS_AES_256_GCM_SHA384)\r\n"
    b"\t(Authenticated sender: alice@example.com)\r\n"
    b"\tby mail.example.com (Postfix) with ESMTPSA id D2DFE1DB1E;\r\n"
    b"\tMon, 10 Mar 2025 09:00:00 +0000\r\n"
    b"Subject: hi\r\n\r\nbody\r\n")


def test_received_hops_read_bottom_to_top() -> None:
    first, second = received_hops(RECEIVED)
    assert (first.step, first.by, first.from_name, first.from_detail) == \
        (1, "mail.example.com", "alice-laptop", "unknown [127.0.0.1]")
    assert (first.protocol, first.authenticated, first.queue_id, first.recipient) == \
        ("ESMTPSA", "alice@example.com", "D2DFE1DB1E", "")
    assert first.tls == "TLSv1.3 with cipher TLS_AES_256_GCM_SHA384"
    assert (second.by, second.protocol, second.recipient, second.authenticated) == \
        ("mail.anotherdomain.org", "ESMTPS", "bob@anotherdomain.org", "")
    assert second.date == "Mon, 10 Mar 2025 09:00:00 +0000"
    table = received_table(RECEIVED)
    assert repr(table).splitlines()[2].split()[:3] == ["1", "mail.example.com", "alice-laptop"]
    assert received_hops(b"Subject: none\r\n\r\n") == []


@pytest.fixture
def delivered() -> Any:
    world = World.seed_world()
    with world.start() as net:
        net.submit(seed_message(world), recipients=["bob@anotherdomain.org"], **ALICE)
        assert net.wait(net.idle, 10)
        yield net


def test_maildir_tree_shows_relative_paths(delivered: Any) -> None:
    tree = repr(maildir_tree(delivered))
    lines = tree.splitlines()
    assert lines[0] == "mail/   (the world's Maildir store)"
    assert "    └── bob/" in lines and "        ├── cur/" in lines and "        └── tmp/" in lines
    key = delivered.store.keys("bob@anotherdomain.org")[0]
    assert any(line.startswith(f"        │   └── {key}  (") for line in lines)
    assert str(delivered.directory) not in tree and "/tmp" not in tree.replace("tmp/", "")
    one = repr(maildir_tree(delivered, "bob@anotherdomain.org"))
    assert one.splitlines()[0] == "mail/anotherdomain.org/bob/   (the Maildir of " \
                                  "bob@anotherdomain.org)"
    empty = repr(maildir_tree(delivered, "alice@example.com"))
    assert "nothing delivered yet" in empty


def test_the_real_message_has_two_hops(delivered: Any) -> None:
    message = delivered.mailbox("bob@anotherdomain.org")[0]
    hops = received_hops(message)
    assert [h.by for h in hops] == ["mail.example.com", "mail.anotherdomain.org"]
    assert [h.protocol for h in hops] == ["ESMTPSA", "ESMTPS"]


def test_dialogue_and_ports(delivered: Any) -> None:
    text = dialogue(delivered.world, "mail.anotherdomain.org", "smtp", content=False)
    assert "<-  220 mail.anotherdomain.org ESMTP Postfix" in text
    assert " ~> RCPT TO:<bob@anotherdomain.org>" in text
    assert "had no pop3 conversation" in dialogue(delivered.world, "mail.anotherdomain.org",
                                                  "pop3")
    table = repr(ports_table(delivered)).splitlines()
    rows = {(line.split()[0], line.split()[1]): line for line in table[2:]}
    assert set(rows) == {("mail.example.com", "587"), ("mail.example.com", "465"),
                         ("mail.anotherdomain.org", "25"), ("mail.anotherdomain.org", "110"),
                         ("mail.anotherdomain.org", "995"), ("mail.anotherdomain.org", "143"),
                         ("mail.anotherdomain.org", "993")}
    assert "LOGIN after STARTTLS" in rows[("mail.anotherdomain.org", "143")]
    assert "implicit: TLS first" in rows[("mail.anotherdomain.org", "993")]
    assert "only after STARTTLS" in rows[("mail.example.com", "587")]
    # The host's address in the world (also where hosts share 127.0.0.1), its real port.
    _, port = delivered.address("mail.anotherdomain.org", 25)
    ip = delivered.hosts["mail.anotherdomain.org"].ip
    assert rows[("mail.anotherdomain.org", "25")].endswith(f"{ip}:{port}")


def test_memory_worlds_have_no_tree() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net, pytest.raises(ValueError, match="memory"):
        maildir_tree(net)


def test_the_pop3_dialogue_shows_listings_and_says_why_capa_comes_twice(delivered: Any
                                                                         ) -> None:
    import poplib

    bob = poplib.POP3(*delivered.address("mail.anotherdomain.org", 110), timeout=5)
    bob.capa()
    bob.stls(context=delivered.ca.client_context())   # poplib asks CAPA again first
    bob.user("bob")
    bob.pass_("builder")
    bob.list()
    bob.retr(1)
    bob.quit()
    text = dialogue(delivered.world, "mail.anotherdomain.org", "pop3")
    assert "[...]" not in text
    assert "<-  STLS" in text and "<-  UIDL" in text  # the capability list, line by line
    assert text.count(" -> CAPA") == 2
    assert "=== the client asks CAPA again (Python's poplib.stls() does" in text
    listing = text.split(" ~> LIST\n")[1].splitlines()
    assert listing[0].startswith("<~  +OK 1 messages") and listing[1].startswith("<~  1 ")
    assert listing[2] == "<~  ."
    assert "<~  [the message: " in text.split(" ~> RETR 1\n")[1].splitlines()[1]
