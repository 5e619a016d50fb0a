"""The world's mail services need only a narrow view of the running world (a
:class:`~simsmtp.net.runtime.MailSite`), not the whole network: here they run on a small
stand-in, with no sockets and no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from simsmtp.net.runtime import HostInfo, MailSite, Receiver
from simsmtp.net.services import InboundHandler, MaildropLocks, POP3Login, login_user
from simsmtp.net.store import MemoryStore
from simsmtp.protocol.mailbox import MaildropInUse
from simsmtp.protocol.replies import Reply
from simsmtp.protocol.session import Envelope, Session
from simsmtp.world import World

MX = "mail.anotherdomain.org"
BOB = "bob@anotherdomain.org"


class Site:
    """Just what the services use: the world, a store, and who owns which address."""

    def __init__(self, world: World) -> None:
        self.world = world
        self.store = MemoryStore()
        self.hosts = {MX: HostInfo(MX, "127.0.0.3")}
        self.dns = None
        self.answer_caches: dict[str, Any] = {}
        self.accepted: list[tuple[list[str], bytes | None]] = []

    def local_domains(self, host_name: str) -> list[str]:
        return self.world.local_domains(host_name)

    def queue_of(self, host_name: str) -> None:
        return None

    def name_of(self, ip: str) -> str | None:
        return {"127.0.0.2": "mail.example.com"}.get(ip)

    def accept(self, handler: Receiver, session: Session, envelope: Envelope, *,
               folder: str | None = None, content: bytes | None = None) -> Reply | None:
        self.accepted.append((handler.final_recipients(envelope), content))
        return None


@pytest.fixture
def site() -> Site:
    return Site(World.seed_world())


def test_the_stand_in_is_a_mail_site(site: Site) -> None:
    narrow: MailSite = site  # what mypy checks: the services ask no more than this
    assert narrow.world is site.world


def test_inbound_handler_names_the_client_through_the_site(site: Site) -> None:
    handler = InboundHandler(site, site.world.host(MX), "smtp")
    session = Session(peer=("127.0.0.2", 40000), local=("127.0.0.3", 25))
    session.helo_name = "mail.example.com"
    envelope = Envelope()
    envelope.queue_id = "4XyZ1"
    header = handler.received(session, envelope, BOB).decode()
    assert header.startswith("Received: from mail.example.com (mail.example.com "
                             "[127.0.0.2])")
    assert f"for <{BOB}>" in header
    assert handler.handle_RCPT(session, envelope, BOB, {}) is None  # a user here
    refused = handler.handle_RCPT(session, envelope, "nobody@anotherdomain.org", {})
    assert refused is not None and refused.code == 550
    relay = handler.handle_RCPT(session, envelope, "x@elsewhere.example", {})
    assert relay is not None and relay.code == 454  # no outbound queue: no relaying


def test_pop3_login_opens_the_maildrop_of_the_site_store_once(site: Site) -> None:
    site.store.deliver(BOB, b"Subject: hi\r\n\r\nhello\r\n")
    host = site.world.host(MX)
    user = site.world.user(BOB)
    assert user is not None and user.password
    password = user.password
    assert login_user(site, host, "bob", "wrong") is None
    locks = MaildropLocks()
    first, second = POP3Login(site, host, locks), POP3Login(site, host, locks)
    mailbox = first.authenticate("bob", password)
    assert len(mailbox.list_messages()) == 1
    with pytest.raises(MaildropInUse):
        second.authenticate(BOB, password)
    first.release()
    assert second.authenticate(BOB, password) is not None
