"""Who plays which part in a world: the defaults every function takes from the world it is
given, never from the seed's names.

The seed's story is "Alice (example.com) writes to Bob (anotherdomain.org); Mallory spoofs
Alice from her own machine". Any world has the same parts, found by their roles:

* the **sending server**: the first host with the ``outbound`` role (``mail.example.com``);
* the **sender**: the first user, with a password, of that host's domain
  (``alice@example.com``);
* the **recipient**: the first user of another domain that has a mail server of the world
  (``bob@anotherdomain.org``), and the **receiving server**: that domain's most preferred
  MX host (``mail.anotherdomain.org``);
* the **spoofer**: the first host that only connects (role ``client``,
  ``mallory.evil.example``), and her own address: the first user of its domain.

A part the world does not have raises :class:`MissingPart`, a ``ValueError`` whose message
says which argument to pass instead. Pure: no sockets, no widgets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from simsmtp.world.model import Domain, User, World


class MissingPart(ValueError):
    """The world has no host or user for a part a function needs: pass its name."""


def _missing(world: World, what: str, arg: str) -> MissingPart:
    return MissingPart(f"world {world.name!r} has no {what}: pass {arg}=... to say which")


def _bare(name: str) -> str:
    return name.lower().rstrip(".")


def sending_host(world: World, *, arg: str = "sender") -> str:
    """The world's first host with an outbound agent (``mail.example.com`` in the seed)."""
    hosts = world.hosts_with_role("outbound")
    if not hosts:
        raise _missing(world, "host with the 'outbound' role", arg)
    return hosts[0].name


def client_host(world: World, *, arg: str = "host") -> str:
    """The world's first host that only connects (role ``client``: the seed's
    ``mallory.evil.example``), e.g. an attacker's machine."""
    found = [h for h in world.hosts.values() if h.roles and set(h.roles) == {"client"}]
    if not found:
        raise _missing(world, "host with only the 'client' role (an attacker's machine)", arg)
    return found[0].name


def _users(domain: Domain, *, with_password: bool) -> list[User]:
    return [u for u in domain.users.values() if u.password is not None or not with_password]


def user_of(world: World, domain: str, *, arg: str = "sender",
            with_password: bool = True) -> str:
    """The first user of ``domain`` (with a password when ``with_password``: one who can
    log in to submit)."""
    found = world.domains.get(_bare(domain))
    users = [] if found is None else _users(found, with_password=with_password)
    if not users:
        what = "user with a password" if with_password else "user"
        raise _missing(world, f"{what} in domain {domain!r}", arg)
    return users[0].address


def sender(world: World, host: str | None = None, *, arg: str = "sender") -> str:
    """The first user with a password of ``host``'s domain (default: the sending host),
    else of another domain whose mail it keeps (``alice@example.com`` in the seed)."""
    h = world.host(host or sending_host(world, arg=arg))
    for name in [h.domain, *world.local_domains(h)]:
        domain = world.domains.get(name)
        if domain is not None and _users(domain, with_password=True):
            return _users(domain, with_password=True)[0].address
    raise _missing(world, f"user with a password in {h.name}'s domain {h.domain!r}", arg)


def mail_host(world: World, domain: str) -> str | None:
    """The most preferred MX of ``domain`` that is a world host serving port 25, else the
    domain's own first host with the ``mx`` role (its MX records may be edited away for a
    lesson); None when it has neither."""
    found = world.domains.get(_bare(domain))
    if found is None:
        return None
    for record in sorted(found.mx, key=lambda r: r.preference):
        host = world.hosts.get(_bare(record.exchange))
        if host is not None and host.has_role("mx"):
            return host.name
    own = [h.name for h in world.hosts_with_role("mx") if h.domain == found.name]
    return own[0] if own else None


def recipient(world: World, sender_address: str | None = None, *,
              arg: str = "recipient") -> str:
    """The first user of another domain than the sender's that has an MX host in the world
    (``bob@anotherdomain.org`` in the seed); a user of the sender's own domain only when
    no other domain has one."""
    own = _bare((sender_address or "").rpartition("@")[2])
    domains = [d for d in world.domains.values() if d.users and mail_host(world, d.name)]
    for domain in sorted(domains, key=lambda d: d.name == own):  # other domains first
        return next(iter(domain.users.values())).address
    raise _missing(world, "user in a domain with an MX host", arg)


def recipient_at(world: World, host: str, sender_address: str | None = None, *,
                 arg: str = "recipient") -> str:
    """The first user whose mail ``host`` keeps (a recipient its RCPT accepts), preferring
    another domain than the sender's: ``bob@anotherdomain.org`` at the seed's MX."""
    h = world.host(host)
    own = _bare((sender_address or "").rpartition("@")[2])
    kept = [world.domains[name] for name in world.local_domains(h)]
    kept.sort(key=lambda d: (d.name == own, d.name != h.domain))
    for domain in kept:
        if domain.users:
            return next(iter(domain.users.values())).address
    raise _missing(world, f"user whose mail {h.name} keeps", arg)


def receiving_host(world: World, recipient_address: str | None = None, *,
                   arg: str = "host") -> str:
    """The MX host of ``recipient_address``'s domain (default: of :func:`recipient`):
    ``mail.anotherdomain.org`` in the seed."""
    address = recipient_address
    if address is None:
        try:
            address = recipient(world, _default_sender(world), arg=arg)
        except MissingPart:
            hosts = world.hosts_with_role("mx")
            if not hosts:
                raise _missing(world, "host with the 'mx' role", arg) from None
            return hosts[0].name
    domain = address.rpartition("@")[2]
    found = mail_host(world, domain)
    if found is None:
        raise _missing(world, f"MX host for {domain!r}", arg)
    return found


def _default_sender(world: World) -> str | None:
    try:
        return sender(world)
    except MissingPart:
        return None


def spoofer_address(world: World, host: str) -> str | None:
    """The spoofer's own address: the first user of ``host``'s domain (None if none)."""
    found = world.domains.get(_bare(world.host(host).domain))
    users = [] if found is None else list(found.users.values())
    return users[0].address if users else None


def display_name(world: World, address: str) -> str:
    """What to call the owner of ``address`` in a label: the user's name, else the local
    part (``Alice``; ``orders``)."""
    user = world.user(address)
    if user is not None and user.name:
        return user.name
    return address.rpartition("@")[0] or address


def possessive(name: str) -> str:
    """``Alice's``, ``Bank Alerts'``: a label's owner."""
    return f"{name}'" if name.endswith("s") else f"{name}'s"


def mailbox(world: World, address: str) -> str:
    """``Alice <alice@example.com>`` (the address alone when the user has no name)."""
    user = world.user(address)
    return f"{user.name} <{address}>" if user is not None and user.name else address


__all__ = ["MissingPart", "client_host", "display_name", "mail_host", "mailbox", "possessive",
           "receiving_host", "recipient", "recipient_at", "sender", "sending_host",
           "spoofer_address", "user_of"]
