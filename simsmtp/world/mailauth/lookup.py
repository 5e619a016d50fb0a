"""DNS as the mail-authentication checks see it: three plain functions.

Every check (SPF, DKIM, DMARC) asks DNS through functions, never through a socket, so the
checks stay pure and a test can back them with a dict:

* ``dns_txt(name) -> list[str] | None``: the TXT records at ``name``, each one's strings
  joined (RFC 7208 §3.3, RFC 6376 §3.6.2.2); ``None`` when the name does not exist
  (NXDOMAIN), ``[]`` when it exists without TXT records.
* ``dns_a(name)`` / ``dns_aaaa(name) -> list[str] | None``: addresses, same convention.
* ``dns_mx(name) -> list[tuple[int, str]] | None``: ``(preference, exchange)`` pairs.

A lookup that fails for now (timeout, SERVFAIL, REFUSED) raises :class:`DNSTempError`; the
checks turn it into ``temperror``. :func:`dns_functions` builds all four from a dnspython
resolver, which is how the running world passes its own DNS server.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypedDict

__all__ = [
    "AddressLookup",
    "DNSFunctions",
    "DNSTempError",
    "MXLookup",
    "QueryLog",
    "TxtLookup",
    "dns_functions",
    "no_addresses",
    "txt_presentation",
]

TxtLookup = Callable[[str], list[str] | None]
AddressLookup = Callable[[str], list[str] | None]
MXLookup = Callable[[str], list[tuple[int, str]] | None]

#: Longest character-string in a TXT record (RFC 1035 §3.3: one length octet).
TXT_STRING_MAX = 255


class DNSTempError(Exception):
    """A DNS lookup failed for now: timeout, SERVFAIL, REFUSED (RFC 7208 §2.6.6 temperror,
    RFC 6376 §6.1.2 TEMPFAIL, RFC 7489 §6.6.3)."""


class DNSFunctions(TypedDict):
    """The lookup functions every check takes, as keyword arguments (``**functions``)."""

    dns_txt: TxtLookup
    dns_a: AddressLookup
    dns_aaaa: AddressLookup
    dns_mx: MXLookup


def no_addresses(name: str) -> list[str] | None:
    """An address lookup that finds nothing (the default for ``dns_aaaa``: the simulated
    world is IPv4 loopback only)."""
    return []


@dataclass
class QueryLog:
    """The DNS questions a check asked and what it was told, in order.

    Each entry is ``(rtype, name, answer)`` where answer is the returned list, ``None``
    for NXDOMAIN, or the string ``"temperror"``.
    """

    entries: list[tuple[str, str, Any]] = field(default_factory=list)

    def wrap(self, rtype: str, fn: Callable[[str], Any]) -> Callable[[str], Any]:
        """Return ``fn`` that also appends each question and answer here."""

        def logged(name: str) -> Any:
            try:
                answer = fn(name)
            except DNSTempError:
                self.entries.append((rtype, name, "temperror"))
                raise
            self.entries.append((rtype, name, answer))
            return answer

        return logged

    def answer(self, rtype: str, name: str) -> Any:
        """The first answer recorded for ``(rtype, name)``; ``KeyError`` if never asked."""
        key = name.lower().rstrip(".")
        for kind, asked, answer in self.entries:
            if kind == rtype and asked.lower().rstrip(".") == key:
                return answer
        raise KeyError((rtype, name))


def txt_presentation(text: str) -> str:
    """Render ``text`` as a TXT value in zone-file form: quoted character-strings of at most
    255 octets (RFC 1035 §3.3.14, §5.1), e.g. for a 2048-bit DKIM key (RFC 6376 §3.6.2.2).

    >>> txt_presentation('v=spf1 -all')
    '"v=spf1 -all"'
    """
    data = text.encode("utf-8")
    chunks = [data[i:i + TXT_STRING_MAX] for i in range(0, len(data), TXT_STRING_MAX)] or [b""]
    out = []
    for chunk in chunks:
        escaped = chunk.decode("utf-8", "surrogateescape")
        escaped = escaped.replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{escaped}"')
    return " ".join(out)


def dns_functions(resolver: Any) -> DNSFunctions:
    """Build the lookup functions from a dnspython resolver (``dns.resolver.Resolver``).

    Names are asked as absolute names (no search list). NXDOMAIN gives ``None``, NODATA
    ``[]``; a timeout or a server failure (SERVFAIL/REFUSED: ``NoNameservers``) raises
    :class:`DNSTempError`. TXT strings are joined per record (RFC 7208 §3.3) and decoded as
    UTF-8 with ``surrogateescape``, so odd octets survive a round trip.

    Args:
        resolver: anything with dnspython's ``resolve(qname, rdtype, ...)``; for the world
            use ``simsmtp.net.dns.make_resolver(ip, port)``.
    """
    import dns.exception
    import dns.name
    import dns.resolver

    def ask(name: str, rdtype: str) -> list[Any] | None:
        try:
            qname = dns.name.from_text(name)
        except dns.exception.DNSException:
            return None  # not a domain name: nothing can exist there
        try:
            answer = resolver.resolve(qname, rdtype, raise_on_no_answer=False, search=False)
        except dns.resolver.NXDOMAIN:
            return None
        except dns.resolver.NoAnswer:
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers) as exc:
            raise DNSTempError(f"{rdtype} {name}: {exc}") from exc
        except dns.resolver.YXDOMAIN:
            return None
        return list(answer.rrset) if answer.rrset is not None else []

    def dns_txt(name: str) -> list[str] | None:
        records = ask(name, "TXT")
        if records is None:
            return None
        return [b"".join(r.strings).decode("utf-8", "surrogateescape") for r in records]

    def dns_a(name: str) -> list[str] | None:
        records = ask(name, "A")
        return None if records is None else [r.address for r in records]

    def dns_aaaa(name: str) -> list[str] | None:
        records = ask(name, "AAAA")
        return None if records is None else [r.address for r in records]

    def dns_mx(name: str) -> list[tuple[int, str]] | None:
        records = ask(name, "MX")
        if records is None:
            return None
        # A null MX (RFC 7505 §3) has the root as exchange: given as "".
        return [(int(r.preference), "" if r.exchange == dns.name.root
                 else r.exchange.to_text(omit_final_dot=True)) for r in records]

    return DNSFunctions(dns_txt=dns_txt, dns_a=dns_a, dns_aaaa=dns_aaaa, dns_mx=dns_mx)
