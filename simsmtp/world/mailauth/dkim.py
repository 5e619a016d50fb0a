"""DKIM (RFC 6376): a domain signs a message; any receiver checks the signature.

Signing and verification are dkimpy's (``dkim``, imported where used). Verification asks
DNS only through the ``dns_txt`` function it is given (dkimpy's ``dnsfunc=`` hook), and
looks the key up first itself, so a missing key (permerror), a failing DNS (temperror), a
changed body (fail: body hash) and a changed header (fail: signature) are told apart.

Keys are RSA (2048 bits by default) made with ``cryptography``; the public half goes into
DNS as ``<selector>._domainkey.<domain> TXT "v=DKIM1; k=rsa; p=…"`` (RFC 6376 §3.6.1).
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from simsmtp.world.mailauth.lookup import DNSTempError, TxtLookup

__all__ = [
    "DEFAULT_HEADERS",
    "MAX_SIGNATURES_TO_VERIFY",
    "MEANINGS",
    "DKIMKey",
    "DKIMResult",
    "generate_key",
    "parse_signature",
    "sign",
    "verify",
    "verify_all",
]

#: The header fields signed by default (RFC 6376 §5.4.1: From is required; these are the
#: ones a forger would most like to change).
DEFAULT_HEADERS = ("From", "To", "Subject", "Date", "Message-ID")

#: Results a signature can get (RFC 8601 §2.7.1; RFC 6376 §6.1 SUCCESS/PERMFAIL/TEMPFAIL);
#: ``policy`` is the one entry for the signatures past :data:`MAX_SIGNATURES_TO_VERIFY`.
DKIM_RESULTS = ("pass", "fail", "none", "permerror", "temperror", "policy")

#: What each DKIM result means (RFC 6376 §6.1; RFC 8601 §2.7.1).
MEANINGS = {
    "pass": "a signature verified with the key its domain publishes: the signed header "
            "fields and the body are unchanged since d= signed them",
    "fail": "a signature did not verify: the message was changed after signing (or the "
            "signature is forged)",
    "none": "the message is not signed",
    "permerror": "a signature cannot be checked (no key, a revoked or bad key, a malformed "
                 "signature)",
    "temperror": "the key could not be fetched now; try again later",
    "neutral": "a signature was there but could not be evaluated",
    "policy": "the signature verified but the receiver's policy does not accept it",
}

#: How many DKIM-Signature fields a verifier checks, top first (OpenDKIM
#: ``MaximumSignaturesToVerify``; RFC 6376 §6.1: "to limit potential denial-of-service
#: attacks, Verifiers MAY limit the total number of signatures they will attempt to
#: verify"). The rest are reported in one ``policy`` result, not verified.
MAX_SIGNATURES_TO_VERIFY = 5

_PUBLIC_EXPONENT = 65537


# ------------------------------------------------------------------------------- keys

@dataclass(frozen=True)
class DKIMKey:
    """An RSA key pair for DKIM.

    Attributes:
        private_pem: the private key, PKCS#1 PEM (``-----BEGIN RSA PRIVATE KEY-----``),
            the form dkimpy signs with.
    """

    private_pem: bytes

    def _private(self) -> Any:
        from cryptography.hazmat.primitives import serialization

        return serialization.load_pem_private_key(self.private_pem, password=None)

    @property
    def bits(self) -> int:
        """The modulus size in bits."""
        return int(self._private().key_size)

    @property
    def public_b64(self) -> str:
        """The public key, DER SubjectPublicKeyInfo in base64: the ``p=`` value."""
        from cryptography.hazmat.primitives import serialization

        der = self._private().public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return base64.b64encode(der).decode("ascii")

    def txt_record(self) -> str:
        """The key record to publish at ``<selector>._domainkey.<domain>`` (RFC 6376 §3.6.1).

        It is longer than 255 octets for 2048 bits: publish it as several strings (see
        :func:`.lookup.txt_presentation`, RFC 6376 §3.6.2.2).
        """
        return f"v=DKIM1; k=rsa; p={self.public_b64}"


def generate_key(bits: int = 2048, *, seed: bytes | str | None = None) -> DKIMKey:
    """Make an RSA key pair for DKIM (RFC 8301 §3.2: at least 1024 bits, 2048 advised).

    Args:
        bits: modulus size.
        seed: when given, the same seed always gives the same key, so a world's DKIM
            signatures are reproducible (a notebook validated with nbval). Such keys are
            for the simulator only: anyone who knows the seed can sign.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    if bits < 1024 or bits % 2:  # RFC 8301 §3.2: shorter keys MUST NOT be used
        raise ValueError(f"DKIM keys need an even number of bits >= 1024, not {bits}")
    if seed is None:
        key = rsa.generate_private_key(public_exponent=_PUBLIC_EXPONENT, key_size=bits)
    else:
        key = _seeded_key(bits, seed.encode("utf-8") if isinstance(seed, str) else seed)
    pem = key.private_bytes(serialization.Encoding.PEM,
                            serialization.PrivateFormat.TraditionalOpenSSL,
                            serialization.NoEncryption())
    return DKIMKey(pem)


_SMALL_PRIMES = [p for p in range(3, 2000) if all(p % d for d in range(2, int(p ** 0.5) + 1))]


def _probable_prime(n: int, rng: random.Random, rounds: int = 40) -> bool:
    """Miller-Rabin (error below 4**-rounds)."""
    if any(n % p == 0 for p in _SMALL_PRIMES):
        return n in _SMALL_PRIMES
    d, s = n - 1, 0
    while d % 2 == 0:
        d, s = d // 2, s + 1
    for _ in range(rounds):
        x = pow(rng.randrange(2, n - 2), d, n)
        if x in (1, n - 1):
            continue
        for _ in range(s - 1):
            x = pow(x, 2, n)
            if x == n - 1:
                break
        else:
            return False
    return True


def _seeded_prime(rng: random.Random, bits: int) -> int:
    while True:
        # Top two bits set so that p*q has exactly 2*bits bits; odd.
        n = rng.getrandbits(bits) | (3 << (bits - 2)) | 1
        if (n - 1) % _PUBLIC_EXPONENT and _probable_prime(n, rng):
            return n


def _seeded_key(bits: int, seed: bytes) -> Any:
    from cryptography.hazmat.primitives.asymmetric import rsa

    rng = random.Random(hashlib.sha256(b"simsmtp dkim key\0" + seed).digest())
    p = _seeded_prime(rng, bits // 2)
    q = _seeded_prime(rng, bits // 2)
    while q == p:
        q = _seeded_prime(rng, bits // 2)
    e = _PUBLIC_EXPONENT
    d = pow(e, -1, (p - 1) * (q - 1))
    numbers = rsa.RSAPrivateNumbers(
        p=p, q=q, d=d, dmp1=rsa.rsa_crt_dmp1(d, p), dmq1=rsa.rsa_crt_dmq1(d, q),
        iqmp=rsa.rsa_crt_iqmp(p, q), public_numbers=rsa.RSAPublicNumbers(e, p * q))
    return numbers.private_key()


# ---------------------------------------------------------------------------- signing

def sign(message: bytes, domain: str, selector: str, private_key: bytes | DKIMKey, *,
         headers: Sequence[str] = DEFAULT_HEADERS, timestamp: int | None = None,
         timed: bool = True) -> bytes:
    """Sign ``message`` and return it with a ``DKIM-Signature`` header field on top.

    rsa-sha256 (RFC 8301 §3.1), relaxed/relaxed canonicalization (RFC 6376 §3.4.2, §3.4.4),
    so re-folded headers and trailing whitespace survive transport.

    Args:
        message: the whole message (header and body), CRLF line endings.
        domain: the signing domain (``d=``), e.g. ``"example.com"``.
        selector: names the key (``s=``): it is at ``<selector>._domainkey.<domain>``.
        private_key: a :class:`DKIMKey` or its PKCS#1 PEM.
        headers: the header fields to sign (``h=``); From must be among them.
        timestamp: the ``t=`` value (seconds since 1970); default now. Pass the world's
            clock for reproducible signatures; verifiers refuse a t= more than 10 hours
            in their future (dkimpy).
        timed: False leaves ``t=`` out altogether (RFC 6376 §3.5: it is RECOMMENDED,
            not required), for a clock a verifier would take for the future.
    """
    import dkim as dkimpy

    pem = private_key.private_pem if isinstance(private_key, DKIMKey) else private_key
    signer = _signer_class()(message, signature_algorithm=b"rsa-sha256")
    signer.fixed_timestamp = timestamp
    signer.timed = timed
    header = signer.sign(selector.encode("ascii"), domain.encode("ascii"), pem,
                         canonicalize=(dkimpy.Relaxed, dkimpy.Relaxed),
                         include_headers=[h.encode("ascii") for h in headers])
    return bytes(header) + message


@functools.cache
def _signer_class() -> type[Any]:
    """dkimpy's DKIM with a settable ``t=``, or none (dkimpy always uses the current
    time)."""
    import dkim as dkimpy

    class Signer(dkimpy.DKIM):  # type: ignore[misc]
        fixed_timestamp: int | None = None
        timed = True

        def gen_header(self, fields: list[tuple[bytes, bytes]], *args: Any,
                       **kwargs: Any) -> Any:
            if not self.timed:
                fields = [(k, v) for k, v in fields if k != b"t"]
            elif self.fixed_timestamp is not None:
                stamp = str(int(self.fixed_timestamp)).encode("ascii")
                fields = [(k, stamp if k == b"t" else v) for k, v in fields]
            return super().gen_header(fields, *args, **kwargs)

    return Signer


def parse_signature(value: str | bytes) -> dict[str, str]:
    """Take a DKIM-Signature value apart into its tags (RFC 6376 §3.5), folding whitespace
    removed from ``b=`` and ``bh=``.

    >>> parse_signature("v=1; a=rsa-sha256; d=example.com; s=mail; b=ab c=")["b"]
    'abc='
    """
    from dkim.util import parse_tag_value

    raw = value.encode("utf-8") if isinstance(value, str) else value
    tags = {k.decode("ascii", "replace"): v.decode("utf-8", "replace")
            for k, v in parse_tag_value(raw).items()}
    for key in ("b", "bh"):
        if key in tags:
            tags[key] = re.sub(r"\s+", "", tags[key])
    for key in ("h", "d", "s", "a", "c"):
        if key in tags:
            tags[key] = re.sub(r"\s+", "", tags[key]) if key == "h" else tags[key].strip()
    return tags


# ----------------------------------------------------------------------- verification

@dataclass(frozen=True)
class DKIMResult:
    """The outcome for one DKIM-Signature (or ``none`` when there is no signature).

    Attributes:
        result: one of ``pass fail none permerror temperror``.
        domain: the signing domain ``d=`` ("" when none).
        selector: the selector ``s=``.
        reason: a short reason for RFC 8601's ``reason=`` ("" on pass/none).
        key_name: where the key was looked up (``<s>._domainkey.<d>``).
        key_record: the key record read, or None.
        tags: the signature's tags (see :func:`parse_signature`).
        explanation: the check in plain words.
    """

    result: str
    domain: str = ""
    selector: str = ""
    reason: str = ""
    key_name: str = ""
    key_record: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    explanation: str = ""

    @property
    def signed_headers(self) -> tuple[str, ...]:
        """The header fields the signature covers (``h=``), lower-case."""
        return tuple(h for h in self.tags.get("h", "").lower().split(":") if h)

    @property
    def algorithm(self) -> str:
        """The signing algorithm ``a=`` (``rsa-sha256``)."""
        return self.tags.get("a", "")


def verify(message: bytes, dns_txt: TxtLookup) -> DKIMResult:
    """Verify the message's DKIM signatures; return the first that passes, else the first
    result (``none`` when unsigned). See :func:`verify_all` for every signature."""
    results = verify_all(message, dns_txt)
    return next((r for r in results if r.result == "pass"), results[0])


def header_section(message: bytes) -> bytes:
    """The header section of ``message``: everything before the first empty line
    (RFC 5322 §2.1), whether lines end in CRLF or in a bare LF; the whole message when it
    has no body."""
    end = message.find(b"\r\n\r\n")
    end = len(message) if end < 0 else end
    bare = message.find(b"\n\n", 0, end)  # no copy of a big body: only the head is cut
    return message[:end if bare < 0 else bare]


def verify_all(message: bytes, dns_txt: TxtLookup, *,
               max_signatures: int = MAX_SIGNATURES_TO_VERIFY) -> list[DKIMResult]:
    """Verify the DKIM-Signatures of ``message``, top first (RFC 6376 §6).

    The message is parsed once, whatever the number of signatures, and at most
    ``max_signatures`` are verified (OpenDKIM ``MaximumSignaturesToVerify``): a message
    with thousands of them costs no more than one with five. The others are reported in
    one ``policy`` result (RFC 8601 §2.7.1: "some aspect of the signatures was not
    acceptable"), never verified, so they can never make DMARC pass.

    Args:
        message: the message as received.
        dns_txt: TXT lookup (see :mod:`.lookup`) for the key records.
        max_signatures: how many signatures to verify at most (>= 1).

    Returns:
        One :class:`DKIMResult` per verified signature (plus the ``policy`` one for the
        rest); ``[DKIMResult("none")]`` when unsigned.
    """
    import dkim as dkimpy

    if max_signatures < 1:
        raise ValueError(f"max_signatures must be at least 1, not {max_signatures}")
    signed = b"dkim-signature" in header_section(message).lower()
    if not signed:  # no field name anywhere in the header section: no need to parse it
        return [DKIMResult("none", explanation="DKIM: the message carries no DKIM-Signature "
                                               "header field, so none")]
    try:  # the one parse of the message (dkimpy splits header fields and body)
        verifier = dkimpy.DKIM(message, minkey=1024)  # RFC 8301 §3.2: refuse < 1024 bits
    except dkimpy.DKIMException as exc:  # RFC 6376 §6.1.1: a signature we cannot read
        return [DKIMResult("permerror", reason="malformed message",
                           explanation=f"DKIM: the header section cannot be parsed "
                                       f"({exc}), so permerror (RFC 6376 §6.1.1)")]
    raws = [v for n, v in verifier.headers if n.lower() == b"dkim-signature"]
    if not raws:
        return [DKIMResult("none", explanation="DKIM: the message carries no DKIM-Signature "
                                               "header field, so none")]
    results = [_verify_one(verifier, raw, index, dns_txt)
               for index, raw in enumerate(raws[:max_signatures])]
    skipped = len(raws) - max_signatures
    if skipped > 0:
        many = "signature was" if skipped == 1 else "signatures were"
        results.append(DKIMResult(
            "policy", reason=f"{skipped} more not verified (limit {max_signatures})",
            explanation=f"DKIM: the message carries {len(raws)} DKIM-Signature fields; the "
                        f"top {max_signatures} were checked and {skipped} more {many} not "
                        f"verified (a verifier limits its work per message, as OpenDKIM's "
                        f"MaximumSignaturesToVerify does; RFC 6376 §6.1), so policy: they "
                        "count for nothing"))
    return results


def _verify_one(verifier: Any, raw: bytes, index: int, dns_txt: TxtLookup) -> DKIMResult:
    """Verify the ``index``-th signature (value ``raw``) with the parsed message
    ``verifier`` (a dkimpy ``DKIM``, reused for every signature)."""
    import dkim as dkimpy
    from dkim.util import InvalidTagValueList

    try:
        tags = parse_signature(raw)
    except (dkimpy.DKIMException, InvalidTagValueList):
        tags = {}
    d, s = tags.get("d", ""), tags.get("s", "")
    who = f"the signature d={d} s={s}" if d or s else "a DKIM-Signature"

    def done(result: str, reason: str, words: str, **extra: Any) -> DKIMResult:
        return DKIMResult(result, d, s, reason, tags=tags,
                          explanation=f"DKIM: {who}: {words}", **extra)

    try:
        verifier.verify_headerprep(index)
    except dkimpy.DKIMException as exc:  # RFC 6376 §6.1.1: PERMFAIL (signature syntax)
        return done("permerror", "malformed signature",
                    f"the signature is malformed ({exc}), so permerror (RFC 6376 §6.1.1)")

    key_name = f"{s}._domainkey.{d}"
    try:
        records = dns_txt(key_name)
    except DNSTempError as exc:  # RFC 6376 §6.1.2: TEMPFAIL (key unavailable)
        return done("temperror", "key unavailable",
                    f"the key lookup at {key_name} failed for now ({exc}), so temperror "
                    "(RFC 6376 §6.1.2)", key_name=key_name)
    if not records:  # RFC 6376 §6.1.2: PERMFAIL (no key for signature)
        why = "does not exist (NXDOMAIN)" if records is None else "has no TXT record"
        return done("permerror", "no key for signature",
                    f"the key should be at {key_name}, which {why}, so permerror "
                    "(RFC 6376 §6.1.2)", key_name=key_name)
    key_record = records[0]  # RFC 6376 §3.6.2.2: several records: any one may be used
    key_bytes = key_record.encode("utf-8", "surrogateescape")
    try:
        dkimpy.evaluate_pk(key_name.encode("ascii", "replace"), key_bytes)
    except (dkimpy.DKIMException, binascii.Error, ValueError) as exc:
        if re.search(r"(^|;)\s*p=\s*(;|$)", key_record):  # RFC 6376 §3.6.1: empty p=
            return done("permerror", "key revoked",
                        f"the key record at {key_name} has an empty p=, meaning the key "
                        "was revoked, so permerror (RFC 6376 §3.6.1)",
                        key_name=key_name, key_record=key_record)
        return done("permerror", "bad key record",
                    f"the key record at {key_name} is unusable ({exc}), so permerror "
                    "(RFC 6376 §3.6.1)", key_name=key_name, key_record=key_record)

    def dnsfunc(_name: bytes, timeout: float = 5) -> bytes:
        return key_bytes  # already looked up above: no second query

    try:
        good = verifier.verify(idx=index, dnsfunc=dnsfunc)
    except dkimpy.ValidationError as exc:
        if "body hash" in str(exc):  # RFC 6376 §6.1.3 step 4
            return done("fail", "body hash mismatch",
                        "the body hash computed now differs from bh= (the body was changed "
                        "after signing), so fail (RFC 6376 §6.1.3)",
                        key_name=key_name, key_record=key_record)
        return done("permerror", "malformed signature",
                    f"the signature cannot be used ({exc}), so permerror (RFC 6376 §6.1.1)",
                    key_name=key_name, key_record=key_record)
    except dkimpy.DKIMException as exc:
        return done("permerror", "bad key or signature",
                    f"verification stopped ({exc}), so permerror (RFC 6376 §6.1.3)",
                    key_name=key_name, key_record=key_record)
    signed = tags.get("h", "").replace(":", " ")
    if not good:  # RFC 6376 §6.1.3 step 5
        return done("fail", "signature did not verify",
                    f"the body is intact but b= does not verify with the key at {key_name}"
                    f" (a signed header field — {signed} — was changed, or the key does not"
                    " belong to the signer), so fail (RFC 6376 §6.1.3)",
                    key_name=key_name, key_record=key_record)
    return done("pass", "",
                f"the key at {key_name} verifies b= over the header fields {signed}, and "
                f"the body hash matches bh= ({tags.get('a', '')}, c={tags.get('c', '')}), "
                "so pass", key_name=key_name, key_record=key_record)
