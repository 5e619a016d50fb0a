"""The seed scenario: the message Alice writes to Bob, as in the seed transcript."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simsmtp.world.model import World

#: Who writes to whom in the seed.
SEED_SENDER = "alice@example.com"
SEED_RECIPIENT = "bob@anotherdomain.org"
SEED_SUBJECT = "Meeting Tomorrow"
SEED_BODY = (
    "Hi Bob,\r\n"
    "\r\n"
    "Just a reminder about our meeting tomorrow at 10 AM.\r\n"
    "\r\n"
    "Best regards,\r\n"
    "Alice\r\n"
)


def seed_message(world: World, *, sender: str = SEED_SENDER, recipient: str = SEED_RECIPIENT,
                 subject: str = SEED_SUBJECT, body: str = SEED_BODY,
                 from_header: str | None = None) -> bytes:
    """The seed's message with CRLF line endings (RFC 5322), dated by the world clock.

    Args:
        world: gives the Date (its virtual clock) and the Message-ID (its seeded ids).
        sender: the author's address.
        recipient: the addressee.
        subject: the Subject header.
        body: the body text (CRLF line endings).
        from_header: a ``From:`` value that differs from the sender, to show that the
            envelope sender and the header are separate things.
    """
    def display(address: str) -> str:
        user = world.user(address)
        return f"{user.name} <{address}>" if user is not None and user.name else address

    domain = sender.rpartition("@")[2]
    headers = [
        f"From: {from_header or display(sender)}",
        f"To: {display(recipient)}",
        f"Subject: {subject}",
        f"Date: {world.clock.rfc5322()}",
        f"Message-ID: {world.ids.message_id(domain)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")
