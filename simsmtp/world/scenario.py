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


#: The seed's letter with the names left open (``SEED_BODY`` for Alice and Bob).
LETTER = ("Hi {recipient},\r\n"
          "\r\n"
          "Just a reminder about our meeting tomorrow at 10 AM.\r\n"
          "\r\n"
          "Best regards,\r\n"
          "{sender}\r\n")


def letter(world: World, sender: str, recipient: str, template: str = LETTER) -> str:
    """``template`` signed by ``sender`` and addressed to ``recipient``, by the names the
    world gives them (the seed's letter for Alice and Bob is :data:`SEED_BODY`)."""
    from simsmtp.world.cast import display_name

    return template.format(sender=display_name(world, sender),
                           recipient=display_name(world, recipient))


def seed_message(world: World, *, sender: str | None = None, recipient: str | None = None,
                 subject: str = SEED_SUBJECT, body: str | None = None,
                 from_header: str | None = None) -> bytes:
    """The seed's message with CRLF line endings (RFC 5322), dated by the world clock.

    Args:
        world: gives the Date (its virtual clock) and the Message-ID (its seeded ids).
        sender: the author's address (default: the world's first sender,
            :func:`simsmtp.world.cast.sender`; ``alice@example.com`` in the seed).
        recipient: the addressee (default: the world's first recipient for that sender;
            ``bob@anotherdomain.org`` in the seed).
        subject: the Subject header.
        body: the body text (CRLF line endings; default: the seed's letter with the
            sender's and the recipient's names).
        from_header: a ``From:`` value that differs from the sender, to show that the
            envelope sender and the header are separate things.
    """
    from simsmtp.world import cast

    if sender is None:
        sender = cast.sender(world)
    if recipient is None:
        recipient = cast.recipient(world, sender)
    if body is None:
        body = letter(world, sender, recipient)
    domain = sender.rpartition("@")[2]
    headers = [
        f"From: {from_header or cast.mailbox(world, sender)}",
        f"To: {cast.mailbox(world, recipient)}",
        f"Subject: {subject}",
        f"Date: {world.clock.rfc5322()}",
        f"Message-ID: {world.ids.message_id(domain)}",
    ]
    return ("\r\n".join(headers) + "\r\n\r\n" + body).encode("utf-8")
