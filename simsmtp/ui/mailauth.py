"""SPF, DKIM and DMARC made visible (notebook 8), and a lab that edits the records live.

The tables read the running world (its DNS server over a real socket, like ``dig``; the
messages as stored; the trace's ``auth.*`` events that the MX records when it checks a
message, :mod:`simsmtp.net.authpolicy`) or a message you give them. Nothing re-evaluates
SPF, DKIM or DMARC on its own: the verdicts shown are the MX's. The messages are sent by
the scenarios of :mod:`simsmtp.net.mailauth_scenarios` (reached here as ``ui.alice_sends``
and so on; this module shows their outcomes as HTML), and an Authentication-Results value
is read by :func:`simsmtp.world.mailauth.parse_authentication_results`, beside its writer::

    ui.auth_records(net, "example.com")       # the three TXT records, read for you
    alice = ui.alice_sends(net)               # Alice's real mail, and Bob's MX's verdict
    ui.signature_table(alice.message)         # the DKIM-Signature taken apart
    ui.results_table(alice.message)           # the Authentication-Results header read
    spoof = ui.mallory_sends(net)             # From: Alice, sent from Mallory's machine
    ui.auth_story(net.world, since=spoof.since)   # why, check by check, from the trace
    ui.forward_message(net, "bob@forward.example", "bob@anotherdomain.org")
    ui.MailAuthLab(net)                       # edit SPF and DMARC; Alice vs Mallory

The lab sends both messages through the world each time *Check* is clicked and shows the
two verdicts side by side. In any world, names left out come from the world itself
(:mod:`simsmtp.world.cast`: its first sender and recipient, its attacker's host), and the
generic functions stand beside the seed's story::

    ui.user_sends(net, "alerts@bank.example", "ada@university.edu")   # a user's real mail
    ui.spoof_sends(net, "alerts@bank.example", "eve.attacker.example")  # a spoof of her
    ui.MailAuthLab(net, "bank.example")       # the bank's records; the bank vs the attacker
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, Any

from simsmtp.net.mailauth_scenarios import (
    SPOOFER,
    AuthOutcome,
    alice_sends,
    forward_message,
    mallory_sends,
    spoof_sends,
    submission_host,
    user_sends,
)
from simsmtp.protocol.mailbox import to_crlf
from simsmtp.world import cast
from simsmtp.world.mailauth import (
    aligned,
    authentication_results,
    organizational_domain,
    parse_authentication_results,
    parse_record,
    parse_signature,
    spf_terms,
)
from simsmtp.world.mailauth.results import PROPERTY_MEANINGS
from simsmtp.world.scenario import SEED_RECIPIENT, SEED_SENDER

from .base import View, html_widget
from .exercises import AnswerError, Exercise, choice, register, text
from .style import (
    COLORS,
    HTMLText,
    Raw,
    callout,
    escape,
    html_table,
    panel,
    pre,
    short,
    span,
    text_table,
)

if TYPE_CHECKING:
    from simsmtp.net.network import Network
    from simsmtp.trace import TraceEvent
    from simsmtp.world.model import World

#: The colour of each result.
RESULT_COLORS = {"pass": COLORS["ok"], "fail": COLORS["fail"], "permerror": COLORS["fail"],
                 "softfail": COLORS["warn"], "neutral": COLORS["warn"],
                 "temperror": COLORS["warn"], "none": COLORS["muted"],
                 "inbox": COLORS["ok"], "junk": COLORS["warn"], "reject": COLORS["fail"],
                 "skipped": COLORS["muted"], "signed": COLORS["ok"]}


# ------------------------------------------------------------------------ small helpers

def _result(value: str) -> Raw:
    return span(value, RESULT_COLORS.get(value, COLORS["text"]), bold=True)


def _as_message(message: EmailMessage | bytes | str) -> EmailMessage:
    if isinstance(message, EmailMessage):
        return message
    raw = message.encode("utf-8") if isinstance(message, str) else message
    parsed: EmailMessage = BytesParser(policy=policy.default).parsebytes(raw)
    return parsed


def _raw(message: EmailMessage | bytes | str) -> bytes:
    if isinstance(message, EmailMessage):
        return to_crlf(message.as_bytes())
    return to_crlf(message.encode("utf-8") if isinstance(message, str) else message)


def _txt(net: Network, name: str) -> list[str] | None:
    """The TXT strings at ``name`` from the world's DNS (None: the name does not exist)."""
    import dns.resolver

    try:
        answer = net.resolver().resolve(name, "TXT")
    except dns.resolver.NXDOMAIN:
        return None
    except dns.resolver.NoAnswer:
        return []
    return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]


# ------------------------------------------------------------------------- the records

def _key_bits(record: str) -> int | None:
    match = re.search(r"(?:^|;)\s*p=([A-Za-z0-9+/=\s]+)", record)
    if not match:
        return None
    try:
        from cryptography.hazmat.primitives.serialization import load_der_public_key

        key: Any = load_der_public_key(base64.b64decode("".join(match.group(1).split())))
        return int(key.key_size)
    except (ValueError, TypeError):
        return None


def _dmarc_words(record: str) -> str:
    parsed = parse_record(record)
    if parsed is None:
        return "not a DMARC record (it must start with v=DMARC1): ignored"
    words = {"none": "deliver it anyway (only watch and report)",
             "quarantine": "treat it as suspicious: the Junk folder",
             "reject": "refuse it"}
    parts = [f"p={parsed.p}: mail that fails DMARC: {words[parsed.p]}" if parsed.p
             else "no valid p=: no policy"]
    mode = {"r": "relaxed (the same organizational domain)", "s": "strict (the same name)"}
    parts.append(f"adkim={parsed.adkim}: DKIM alignment {mode[parsed.adkim]}")
    parts.append(f"aspf={parsed.aspf}: SPF alignment {mode[parsed.aspf]}")
    if parsed.pct != 100:
        parts.append(f"pct={parsed.pct}: the policy applies to {parsed.pct}% of failing mail")
    if parsed.rua:
        parts.append(f"rua: daily aggregate reports go to {', '.join(parsed.rua)}")
    parts.extend(parsed.problems)
    return "; ".join(parts)


@dataclass(frozen=True)
class RecordRow:
    """One TXT record of a domain's email authentication, as served now."""

    mechanism: str
    name: str
    value: str | None
    meaning: str


def _sender_domain(net: Network, arg: str = "domain") -> str:
    """The domain of the world's first sender (``example.com`` in the seed)."""
    return cast.sender(net.world, arg=arg).rpartition("@")[2]


def record_rows(net: Network, domain: str | None = None) -> list[RecordRow]:
    """Ask the world's DNS for ``domain``'s SPF, DKIM key and DMARC records (TXT).

    Args:
        net: the running world.
        domain: the domain whose records to read (default: the domain of the world's
            first sender, :func:`simsmtp.world.cast.sender`).
    """
    domain = domain or _sender_domain(net)
    rows: list[RecordRow] = []
    apex = _txt(net, domain) or []
    spf = [v for v in apex if v.lower().startswith("v=spf1")]
    for value in apex:
        if value in spf:
            continue
        rows.append(RecordRow("(not SPF)", domain, value,
                              "another TXT record: SPF reads only the one starting with "
                              "v=spf1 (RFC 7208 §4.5)"))
    if not spf:
        rows.insert(0, RecordRow("SPF", domain, None, "no SPF record: SPF gives none"))
    for value in spf:
        words = "; ".join(f"{t.text} = {t.meaning}" for t in spf_terms(value)[1:])
        if len(spf) > 1:
            words = "more than one SPF record: permerror (RFC 7208 §4.5)"
        rows.insert(0, RecordRow("SPF", domain, value, words))
    record = net.world.domains.get(domain)
    selector = record.dkim_selector if record is not None else None
    if selector:
        name = f"{selector}._domainkey.{domain}"
        keys = _txt(net, name)
        if keys:
            bits = _key_bits(keys[0])
            rows.append(RecordRow("DKIM key", name, keys[0],
                                  f"the public key ({bits}-bit RSA) that verifies signatures "
                                  f"with d={domain} s={selector}"))
        else:
            rows.append(RecordRow("DKIM key", name, None, "no key published"))
    else:
        rows.append(RecordRow("DKIM key", f"<selector>._domainkey.{domain}", None,
                              f"{domain} has no DKIM key: its mail is not signed"))
    dmarc = _txt(net, f"_dmarc.{domain}")
    if dmarc:
        rows.extend(RecordRow("DMARC", f"_dmarc.{domain}", v, _dmarc_words(v)) for v in dmarc)
    else:
        rows.append(RecordRow("DMARC", f"_dmarc.{domain}", None,
                              "no DMARC policy: DMARC gives none, nothing is enforced"))
    return rows


def auth_records(net: Network, domain: str | None = None) -> HTMLText:
    """``domain``'s SPF, DKIM and DMARC records as the world's DNS serves them now, each
    read in plain words (HTML in a notebook, text elsewhere). Default ``domain``: the
    domain of the world's first sender (``example.com`` in the seed)."""
    domain = domain or _sender_domain(net)
    rows = record_rows(net, domain)
    headers = ["record", "name (TXT)", "value", "what it says"]

    def value(row: RecordRow, limit: int) -> str:
        return "(none)" if row.value is None else short(row.value, limit)

    html = html_table(headers, [[r.mechanism, r.name, value(r, 64), r.meaning] for r in rows],
                      caption=f"{domain}: who may send its mail (asked just now from the "
                              "world's DNS)", mono_columns=[1, 2])
    plain = text_table(headers[:3], [[r.mechanism, r.name, value(r, 48)] for r in rows])
    plain += "\n" + "\n".join(f"{r.mechanism}: {r.meaning}" for r in rows)
    return HTMLText(html, plain)


# ------------------------------------------------------------------------------- DKIM

def _tag_meaning(tag: str, value: str, tags: dict[str, str]) -> str:
    if tag == "t" or tag == "x":
        try:
            when = datetime.datetime.fromtimestamp(int(value), datetime.UTC)
        except (ValueError, OverflowError):
            return "a time (seconds since 1970), unreadable here"
        what = "signed at" if tag == "t" else "expires at"
        return f"{what} {when:%Y-%m-%d %H:%M:%S} UTC (seconds since 1970)"
    if tag == "s":
        return (f"selector: the key is published at {value}._domainkey.{tags.get('d', '')} "
                "(a domain can have several keys)")
    if tag == "h":
        return ("the header fields signed, in this order: "
                + ", ".join(h.strip() for h in value.split(":")))
    return {
        "v": "version: always 1",
        "a": "algorithm: an RSA signature over a SHA-256 hash (RFC 8301)"
             if value == "rsa-sha256" else "the signing algorithm",
        "c": "canonicalization header/body: 'relaxed' forgives changes in whitespace and in "
             "header-name case that servers on the way make (RFC 6376 §3.4)",
        "d": "the signing domain: whose key signed. DMARC compares it with the From: domain",
        "i": "the identity the signer vouches for (here the whole domain)",
        "q": "how to fetch the key: a DNS TXT query",
        "l": "only this many body bytes are signed (risky: text can be appended)",
        "bh": "body hash: SHA-256 of the canonicalized body, in base64",
        "b": "the signature: made with the private key over the signed header fields and "
             "this header (with b= empty)",
        "z": "copies of the original header fields (for diagnosis)",
    }.get(tag, "an unknown tag: ignored (RFC 6376 §3.2)")


def signature_tags(message: EmailMessage | bytes | str) -> list[tuple[str, str, str]]:
    """The tags of the (first) DKIM-Signature: ``(tag, value, meaning)`` in header order.

    Args:
        message: a message, or the value of a DKIM-Signature header field.
    """
    if isinstance(message, str) and "v=1" in message and "\n\n" not in message \
            and "DKIM-Signature:" not in message:
        value = message
    else:
        found = _as_message(message)["DKIM-Signature"]
        if found is None:
            return []
        value = str(found)
    tags = parse_signature(value)
    order = [m.group(1) for m in re.finditer(r"(?:^|;)\s*([a-z]+)\s*=", value)]
    return [(t, tags[t], _tag_meaning(t, tags[t], tags)) for t in order if t in tags]


def signature_table(message: EmailMessage | bytes | str) -> HTMLText:
    """The DKIM-Signature taken apart, tag by tag (RFC 6376 §3.5)."""
    rows = signature_tags(message)
    if not rows:
        return HTMLText(callout("note", "This message carries no DKIM-Signature."),
                        "This message carries no DKIM-Signature.")
    shown = [(t, short(v, 48) if t == "b" else v, m) for t, v, m in rows]
    html = html_table(["tag", "value", "what it means"], shown,
                      caption="DKIM-Signature, tag by tag (RFC 6376 §3.5)", mono_columns=[0, 1])
    plain = text_table(["tag", "value"], [(t, short(v, 60)) for t, v, _ in shown])
    return HTMLText(html, plain)


def body_hash(message: EmailMessage | bytes | str, canonicalization: str = "relaxed") -> str:
    """Compute a DKIM body hash (``bh=``) now: SHA-256 of the canonicalized body, base64
    (RFC 6376 §3.7). Canonicalization is dkimpy's (``relaxed`` or ``simple``, §3.4.3-4)."""
    from dkim.canonicalization import Relaxed, Simple

    raw = _raw(message)
    _head, sep, body = raw.partition(b"\r\n\r\n")
    canon = (Relaxed if canonicalization == "relaxed" else Simple).canonicalize_body(
        body if sep else b"")
    return base64.b64encode(hashlib.sha256(canon).digest()).decode("ascii")


def received_message(world: World, host: str | None = None, index: int = -1) -> bytes:
    """A message exactly as it crossed the wire into ``host`` (from the trace's
    ``smtp.message`` events; ``index`` -1 is the latest one accepted). Default ``host``:
    the MX of the world's first recipient (``mail.anotherdomain.org`` in the seed)."""
    host = world.host(host).name if host else cast.receiving_host(world)
    found = [e for e in world.trace.events("smtp.message", host=host)
             if e.get("accepted") and e.get("content")]
    if not found:
        raise LookupError(f"{host} has not accepted a message yet")
    content: bytes = found[index]["content"]
    return content


# ------------------------------------------------------------- Authentication-Results

def results_table(message: EmailMessage | bytes | str, authserv_id: str | None = None
                  ) -> HTMLText:
    """The Authentication-Results header field(s) of ``message`` read, result by result.

    Args:
        message: a message (or one header value).
        authserv_id: our own server's name: its results are the ones to trust; any other
            was added by someone else on the way (RFC 8601 §5, §7.1).
    """
    if isinstance(message, str) and "\n" not in message and ";" in message \
            and "Authentication-Results:" not in message:
        fields = [parse_authentication_results(message)]
    else:
        fields = authentication_results(message)
    if not fields:
        return HTMLText(callout("note", "No Authentication-Results header field."),
                        "No Authentication-Results header field.")
    html_parts, plain_parts = [], []
    for ar in fields:
        if authserv_id is None:
            trust = ""
        elif ar.authserv_id.lower() == authserv_id.lower():
            trust = " (ours: added by our own server, trust it)"
        else:
            trust = (f" (added by {ar.authserv_id} on the way: trust it only if you trust "
                     f"{ar.authserv_id})")
        rows, plain_rows = [], []
        for r in ar.results:
            details = "; ".join([f"({r.comment})"] if r.comment else [])
            props = [f"{k}={v}: {PROPERTY_MEANINGS.get(k, '')}".rstrip(": ")
                     for k, v in r.properties.items()]
            comment = _comment_words(r.comment)
            rows.append([r.method, _result(r.result),
                         Raw("<br>".join(escape(p) for p in
                                         ([details + comment] if r.comment else [])
                                         + props)),
                         r.meaning])
            plain_rows.append([r.method, r.result, " ".join(
                ([f"({r.comment})"] if r.comment else [])
                + [f"{k}={v}" for k, v in r.properties.items()])])
        title = f"Authentication-Results by {ar.authserv_id}{trust}"
        html_parts.append(html_table(["method", "result", "details", "what it means"], rows,
                                     caption=title, mono_columns=[0]))
        plain_parts.append(title + "\n" + text_table(["method", "result", "details"],
                                                     plain_rows))
    return HTMLText("".join(html_parts), "\n\n".join(plain_parts))


def _comment_words(comment: str) -> str:
    match = re.search(r"p=(\w+)\s+dis=(\w+)", comment)
    if not match:
        return ""
    return (f": the domain asks p={match.group(1)}; the receiver's disposition: "
            f"{match.group(2)}")


# ------------------------------------------------------------------------- alignment

def alignment_table(author_domain: str, domains: Iterable[str]) -> HTMLText:
    """Is each domain aligned with the From: domain ``author_domain`` (RFC 7489 §3.1)?
    Relaxed: the same organizational domain; strict: exactly the same name."""
    rows = []
    for d in domains:
        rows.append([d, organizational_domain(d), "yes" if aligned(d, author_domain, "r")
                     else "no", "yes" if aligned(d, author_domain, "s") else "no"])
    headers = ["authenticated domain", "organizational domain", "relaxed (r)", "strict (s)"]
    colored = [[r[0], r[1], *(_yes(v) for v in r[2:])] for r in rows]
    return HTMLText(html_table(headers, colored, mono_columns=[0, 1],
                               caption=f"Aligned with From: {author_domain} "
                                       f"(organizational domain "
                                       f"{organizational_domain(author_domain)})?"),
                    text_table(headers, rows))


def _yes(value: str) -> Raw:
    return span(value, COLORS["ok"] if value == "yes" else COLORS["fail"], bold=True)


# ------------------------------------------------------------------------- the trace

_CHECKS = ("sign", "spf", "dkim", "dmarc", "verdict")


def _story_row(e: TraceEvent) -> tuple[str, str, str, str]:
    check = e.kind.split(".", 1)[1]
    if check == "sign":
        return ("DKIM sign", "signed", f"key {e.get('key_name')} ({e.get('bits')} bits)",
                f"{e.host} signed the header fields {e.get('headers')} and the body "
                f"(bh={short(str(e.get('body_hash')), 16)}) with d={e.get('domain')} "
                f"s={e.get('selector')}")
    if check == "spf":
        read = f"{e.get('domain')} TXT: {e.get('record') or '(no SPF record)'}"
        return "SPF", str(e.get("result")), read, str(e.get("explanation"))
    if check == "dkim":
        read = (f"{e.get('key_name')} TXT: "
                + (short(str(e.get("key_record")), 32) if e.get("key_record") else "(no key)")
                if e.get("key_name") else "(nothing to look up)")
        return "DKIM", str(e.get("result")), read, str(e.get("explanation"))
    if check == "dmarc":
        read = f"_dmarc.{e.get('from_domain')} TXT: {e.get('record') or '(no DMARC record)'}"
        return "DMARC", str(e.get("result")), read, str(e.get("explanation"))
    if check == "verdict":
        reply = e.get("reply")
        return ("verdict", str(e.get("action")), f"client {e.get('client_ip', '?')} "
                f"HELO {e.get('helo', '?')}", str(e.get("reason")) + (f"; {reply}" if reply
                                                                      else ""))
    return check, str(e.get("result", "")), "", str(e.get("explanation", ""))


def auth_events(world: World, since: int = 0, *, host: str | None = None,
                checks: Sequence[str] | None = None) -> list[TraceEvent]:
    """The trace's ``auth.*`` events from position ``since``: ``auth.sign`` (a submission
    server signed), ``auth.spf``, ``auth.dkim``, ``auth.dmarc`` and ``auth.verdict`` (an MX
    checked and decided), optionally only of ``host`` and of some ``checks``."""
    wanted = set(checks or _CHECKS)
    return [e for e in world.trace.since(since) if e.kind.startswith("auth.")
            and e.kind.split(".", 1)[1] in wanted and (host is None or e.host == host)]


def auth_story(world: World, since: int = 0, *, host: str | None = None,
               checks: Sequence[str] | None = None) -> HTMLText:
    """Step by step, from the trace: each check a server ran, the record it read from DNS,
    its result and why (HTML in a notebook, text elsewhere).

    Args:
        world: the world whose trace to read.
        since: the trace position to start from (``mark = len(world.trace)`` before
            sending).
        host: only this host's checks.
        checks: only these of ``"sign"``, ``"spf"``, ``"dkim"``, ``"dmarc"``,
            ``"verdict"``.
    """
    events = auth_events(world, since, host=host, checks=checks)
    rows = [(str(i), e.host, *_story_row(e)) for i, e in enumerate(events, 1)]
    headers = ["#", "host", "check", "result", "read from DNS", "why"]
    html_rows = [[n, h, c, _result(r), Raw(span(d, mono=True)), w]
                 for n, h, c, r, d, w in rows]
    html = html_table(headers, html_rows, caption="What the servers checked (the trace's "
                                                  "auth.* events)")
    plain = "\n".join(f"{n}. {h} {c}: {r}\n   read: {d}\n   why: {w}"
                      for n, h, c, r, d, w in rows) or "(no checks in this part of the trace)"
    return HTMLText(html, plain)


# ------------------------------------------------------------------ sending and judging

# --------------------------------------------------------------- an outcome, drawn

def outcome_html(outcome: AuthOutcome) -> str:
    """An :class:`~simsmtp.net.mailauth_scenarios.AuthOutcome` as HTML (what the lab
    shows): where the message went, the MX's reply, the three results, the
    Authentication-Results value and the MX's checks in plain words."""
    o = outcome
    kind = {"inbox": "ok", "junk": "warn", "reject": "fail"}.get(o.action, "note")
    head = callout(kind, escape(f"{o.receiver} answered: {o.reply}"),
                   o.where[0].upper() + o.where[1:] + ".")
    results = " ".join(f"{m}={_result(o.results.get(m, '?'))}" for m in ("spf", "dkim", "dmarc"))
    who = (f"<div style='font-size:12px;'>sent by <b>{escape(o.sender_host)}</b> "
           f"({escape(o.client_ip)}), MAIL FROM:&lt;{escape(o.mail_from)}&gt;, "
           f"From: {escape(o.from_header)}</div>")
    ar = ""
    if o.authentication_results:
        note = "" if o.message is not None else " (computed, not stored: refused)"
        ar = (f"<div style='font-size:12px;margin-top:4px;'><b>Authentication-Results"
              f"</b>{escape(note)}:</div>"
              + pre(o.authentication_results.replace("; ", ";\n    ")))
    steps = "".join(f"<li>{escape(s)}</li>" for s in o.steps)
    why = (f"<div style='font-size:12px;'><b>Why</b> (the trace's auth.* events):"
           f"<ol style='margin:2px 0 0 18px;padding:0;'>{steps}</ol></div>"
           if steps else "")
    return (f"<div style='line-height:1.4;'>{who}{head}<div style='font-size:14px;"
            f"margin:4px 0;'>{results}</div>{ar}{why}</div>")


def outcome_panel(outcome: AuthOutcome) -> str:
    """:func:`outcome_html` in a panel titled with the outcome's label (a notebook's view
    of an outcome)."""
    return str(panel(outcome_html(outcome), outcome.label))


def _show_outcomes_as_html() -> None:
    """Let IPython show an outcome left at the end of a cell as its panel: the outcome
    lives in ``net/``, which knows no screen, so its HTML is registered here, with
    IPython's formatter for a type (a kernel only; elsewhere ``print(outcome)``)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        shell.display_formatter.formatters["text/html"].for_type(AuthOutcome, outcome_panel)


_show_outcomes_as_html()


# -------------------------------------------------------------------------------- lab

#: SPF records to pick from in the lab (any other can be typed), for the seed's signer.
SPF_CHOICES = ["v=spf1 mx -all", "v=spf1 mx ~all", "v=spf1 mx ?all", "v=spf1 -all",
               "v=spf1 a:mail.example.com -all", "v=spf1 ip4:127.0.0.0/8 -all",
               "v=spf1 +all"]


def spf_choices(server: str) -> list[str]:
    """:data:`SPF_CHOICES` with ``a:`` naming ``server`` (the lab's sending server)."""
    return [c.replace("a:mail.example.com", f"a:{server}") for c in SPF_CHOICES]
#: The DMARC policies of the lab's dropdown; "" publishes no DMARC record.
POLICY_CHOICES = [("reject", "reject"), ("quarantine", "quarantine"), ("none", "none"),
                  ("(no DMARC record)", "")]
_MODE_CHOICES = [("relaxed (r)", "r"), ("strict (s)", "s")]


def dmarc_record(policy_: str, adkim: str = "r", aspf: str = "r",
                 keep: str | None = None) -> str | None:
    """A DMARC record with ``p=policy_`` (None when ``policy_`` is ""), alignment modes
    written only when strict, and the other tags of ``keep`` (e.g. ``rua=``) kept.

    >>> dmarc_record("none", "s", "r", "v=DMARC1; p=reject; rua=mailto:d@example.com")
    'v=DMARC1; p=none; adkim=s; rua=mailto:d@example.com'
    """
    if not policy_:
        return None
    parts = ["v=DMARC1", f"p={policy_}"]
    if adkim == "s":
        parts.append("adkim=s")
    if aspf == "s":
        parts.append("aspf=s")
    if keep and parse_record(keep) is not None:
        for part in keep.split(";")[1:]:
            name = part.split("=", 1)[0].strip().lower()
            if part.strip() and name not in ("p", "adkim", "aspf"):
                parts.append(part.strip())
    return "; ".join(parts)


class MailAuthLab(View):
    """Edit a domain's SPF and DMARC records (and whether its server signs with DKIM);
    on *Check*, Alice's real mail and Mallory's spoof are sent through the world and the
    two verdicts are shown side by side.

    Args:
        net: the running world.
        domain: the domain to edit (Alice's; default: the domain of the world's first
            sender, :func:`simsmtp.world.cast.sender`).
        sender: Alice's address (default: the first user of ``domain`` with a password).
        recipient: who both messages go to (default: the world's first recipient for
            ``sender``, in another domain).
        spoofer: the machine Mallory sends from (default: the world's first host with
            only the ``client`` role). Her spoof forges ``sender`` in From:.

    The labels use the world's own names: "Alice's real mail" and "Mallory's spoof" in
    the seed, "<sender's name>'s real mail" and "<the spoofer's user>'s spoof" elsewhere.

    Controls (for tests and the curious): ``spf`` (a text box with suggestions; empty:
    no SPF record), ``dkim_box`` (the server signs), ``policy`` (p=), ``adkim``, ``aspf``,
    ``mallory_from`` (the envelope sender Mallory gives), ``check_button``,
    ``reset_button``. Views: ``records_view``, ``alice_view``, ``mallory_view``,
    ``status`` (HTML). The last outcomes: ``alice`` and ``mallory``
    (:class:`AuthOutcome`).
    """

    def __init__(self, net: Network, domain: str | None = None, *,
                 sender: str | None = None, recipient: str | None = None,
                 spoofer: str | None = None) -> None:
        import ipywidgets as w

        self.net = net
        self.world = world = net.world
        self.domain = world.domain(domain or _sender_domain(net))
        sender = sender or cast.user_of(world, self.domain.name, arg="sender")
        recipient = recipient or cast.recipient(world, sender)
        spoofer = world.host(spoofer).name if spoofer else cast.client_host(world,
                                                                             arg="spoofer")
        self.sender, self.recipient, self.spoofer = sender, recipient, spoofer
        #: What the lab calls the two senders (the world's names for them).
        self.sender_name = cast.display_name(world, sender)
        own = cast.spoofer_address(world, spoofer)
        self.spoofer_name = cast.display_name(world, own) if own else spoofer
        self._original = (self.domain.spf, self.domain.dmarc, self.domain.dkim_selector)
        self._selector = self.domain.dkim_selector or "mail"
        self.alice: AuthOutcome | None = None
        self.mallory: AuthOutcome | None = None
        self.checks = 0

        wide = w.Layout(width="230px")
        label = {"description_width": "75px"}
        self.signer = submission_host(self.world, sender)
        self.spf = w.Combobox(options=spf_choices(self.signer), ensure_option=False,
                              description="SPF",
                              placeholder="empty: no SPF record", layout=w.Layout(width="460px"),
                              style=label)
        self.dkim_box = w.Checkbox(indent=False, description=f"{self.signer} signs with DKIM "
                                   f"(key at {self._selector}._domainkey.{self.domain.name})",
                                   layout=w.Layout(width="auto"))
        self.policy = w.Dropdown(options=POLICY_CHOICES, description="DMARC p=",
                                 layout=wide, style=label)
        self.adkim = w.Dropdown(options=_MODE_CHOICES, description="adkim=", layout=wide,
                                style=label)
        self.aspf = w.Dropdown(options=_MODE_CHOICES, description="aspf=", layout=wide,
                               style=label)
        mail_froms = [(f"{sender} (the same as From:)", sender)]
        if own:
            mail_froms.append((f"{own} (her own domain)", own))
        self.mallory_from = w.Dropdown(
            options=mail_froms,
            description=f"{cast.possessive(self.spoofer_name)} MAIL FROM",
            layout=w.Layout(width="620px"),
            style={"description_width": "150px"})
        self.check_button = w.Button(description="Check: send both", icon="paper-plane",
                                     button_style="primary", layout=w.Layout(width="auto"))
        self.reset_button = w.Button(description="Reset", icon="undo",
                                     layout=w.Layout(width="auto"))
        self.preview = html_widget()
        self.status = html_widget()
        self.records_view = html_widget()
        self.alice_view = html_widget()
        self.mallory_view = html_widget()
        self.check_button.on_click(self.guarded(lambda _: self.check()))
        self.reset_button.on_click(self.guarded(lambda _: self.reset()))
        for control in (self.spf, self.dkim_box, self.policy, self.adkim, self.aspf):
            control.observe(self.guarded(lambda _: self._preview()), names="value")
        self._load_controls()
        title = html_widget(
            f"<b>Email authentication records of {escape(self.domain.name)}</b> <span "
            f"style='color:{COLORS['muted']}'>(Check publishes them in the "
            f"world's DNS, then sends {escape(cast.possessive(self.sender_name))} "
            f"mail and {escape(cast.possessive(self.spoofer_name))} spoof to "
            f"{escape(recipient)})</span>")
        form = w.VBox([title, self.spf, self.dkim_box,
                       w.HBox([self.policy, self.adkim, self.aspf]), self.preview,
                       self.mallory_from, w.HBox([self.check_button, self.reset_button]),
                       self.status])
        sides = w.HBox([w.VBox([self.alice_view], layout=w.Layout(width="50%")),
                        w.VBox([self.mallory_view], layout=w.Layout(width="50%"))])
        self.widget = w.VBox([form, sides, self.records_view])
        self._preview()
        self._show_records()
        self._show(None, None)
        self.status.value = callout("note", "Change the records, then click "
                                    "<b>Check: send both</b>.")

    def __repr__(self) -> str:
        return f"MailAuthLab(domain={self.domain.name!r}, spoofer={self.spoofer!r})"

    # -- the controls ---------------------------------------------------------------------
    def _load_controls(self) -> None:
        record = parse_record(self.domain.dmarc) if self.domain.dmarc else None
        self.spf.value = self.domain.spf or ""
        self.dkim_box.value = bool(self.domain.dkim_selector)
        self.policy.value = (record.p or "none") if record is not None else ""
        self.adkim.value = record.adkim if record is not None else "r"
        self.aspf.value = record.aspf if record is not None else "r"

    def wanted(self) -> tuple[str | None, str | None, str | None]:
        """The SPF record, DMARC record and DKIM selector the controls describe."""
        spf = " ".join(str(self.spf.value).split()) or None
        dmarc = dmarc_record(str(self.policy.value), str(self.adkim.value),
                             str(self.aspf.value), self._original[1] or self.domain.dmarc)
        return spf, dmarc, self._selector if self.dkim_box.value else None

    def _preview(self) -> None:
        spf, dmarc, selector = self.wanted()
        off = not self.policy.value
        self.adkim.disabled = self.aspf.disabled = off
        lines = [f"{self.domain.name}. TXT  {spf or '(no SPF record)'}",
                 f"_dmarc.{self.domain.name}. TXT  {dmarc or '(no DMARC record)'}",
                 f"{selector}._domainkey.{self.domain.name}. TXT  v=DKIM1; k=rsa; p=…"
                 if selector else "(no DKIM key: mail is not signed)"]
        self.preview.value = (f"<div style='font-size:12px;color:{COLORS['muted']};'>"
                              "Check publishes:</div>" + pre("\n".join(lines)))

    # -- actions --------------------------------------------------------------------------
    def apply(self) -> None:
        """Publish the records the controls describe (the DNS serves them at once)."""
        self.domain.spf, self.domain.dmarc, self.domain.dkim_selector = self.wanted()
        self._show_records()

    def check(self) -> tuple[AuthOutcome, AuthOutcome]:
        """Publish the records, send Alice's real mail and Mallory's spoof, show both."""
        self.apply()
        self.checks += 1
        self.alice = user_sends(self.net, self.sender, self.recipient)
        # the spoof forges this lab's own sender, with the name the world gives her
        self.mallory = spoof_sends(self.net, self.sender, self.spoofer,
                                   mail_from=str(self.mallory_from.value),
                                   recipient=self.recipient)
        self._show(self.alice, self.mallory)
        note = ""
        a, m = self.alice.client_ip, self.mallory.client_ip
        if a == m:
            note = (f" Careful: {self.spoofer_name} and {self.alice.sender_host} share the "
                    f"address {a} "
                    "on this machine, so SPF cannot tell them apart.")
        self.status.value = callout("note", escape(f"Check {self.checks}: "
                                                   f"{self.summary()}{note}"))
        return self.alice, self.mallory

    def reset(self) -> None:
        """Put back the records the lab started with."""
        self.domain.spf, self.domain.dmarc, self.domain.dkim_selector = self._original
        self._load_controls()
        self._preview()
        self._show_records()
        self.status.value = callout("note", "Back to the records the world started with.")

    # -- what the learner sees ------------------------------------------------------------
    def _show_records(self) -> None:
        self.records_view.value = auth_records(self.net, self.domain.name).html

    def _show(self, alice: AuthOutcome | None, mallory: AuthOutcome | None) -> None:
        empty = callout("note", "Not sent yet.")
        self.alice_view.value = panel(outcome_html(alice) if alice else empty,
                                      f"{cast.possessive(self.sender_name)} real mail "
                                      f"(from {self.sender}'s server)")
        self.mallory_view.value = panel(outcome_html(mallory) if mallory else empty,
                                        f"{cast.possessive(self.spoofer_name)} spoof "
                                        f"(from {self.spoofer})")

    def summary(self) -> str:
        """One line per message: the results and where it went."""
        parts = []
        for name, outcome in ((self.sender_name, self.alice),
                              (self.spoofer_name, self.mallory)):
            if outcome is None:
                parts.append(f"{name}: not sent yet")
            else:
                parts.append(f"{name}: {outcome.summary} -> {outcome.where}")
        return "; ".join(parts)

    def text(self) -> str:
        """Everything the lab shows, as plain text."""
        out = [auth_records(self.net, self.domain.name).plain]
        for outcome in (self.alice, self.mallory):
            if outcome is not None:
                out.append(outcome.text())
        return "\n\n".join(out)


# ------------------------------------------------------------------------------ exercises

register(Exercise(
    "08.softfail", "A softer SPF",
    "example.com changes its SPF record to 'v=spf1 mx ~all'. Mallory sends again from her "
    "own machine with MAIL FROM:<alice@example.com>. Which SPF result does Bob's server "
    "record?",
    text("softfail", {"fail": "'-all' gives fail; the qualifier in front of 'all' changed.",
                      "neutral": "'?all' would give neutral; '~' is softer than '-' but "
                                 "not that soft.",
                      "pass": "Mallory's address is still not an address of example.com's "
                              "MX host: 'mx' does not match.",
                      "none": "example.com still publishes an SPF record.",
                      "permerror": "The record is valid: one mechanism and one qualified "
                                   "'all'.",
                      "reject": "'reject' is a DMARC policy (p=reject), not an SPF result."},
         "softfail (RFC 7208 §8.5): 'probably not authorized'. Only the last term, ~all, "
         "matches Mallory's address."),
    hint="Mallory's address does not match 'mx'; which result does the qualifier '~' give "
         "(the lab's SPF box offers this record: try it)?",
    solution="softfail: mx does not match 127.0.0.x of mallory.evil.example, so ~all "
             "decides, and ~ means softfail (RFC 7208 §4.6.2). DMARC treats softfail like "
             "fail: SPF did not pass.",
    answer_help='Write an SPF result in quotes instead of None (e.g. answer = "pass") and '
    'run the cell.'))

register(Exercise(
    "08.alignment", "Passing the wrong domain",
    "Mallory sends with MAIL FROM:<mallory@evil.example> (SPF passes for evil.example) "
    "and signs with her own DKIM key, d=evil.example (DKIM passes), but writes "
    "From: Alice <alice@example.com>. What does DMARC say at Bob's server? (a) pass: SPF "
    "and DKIM both passed; (b) fail: neither passed for a domain aligned with "
    "example.com; (c) none: evil.example publishes no DMARC record.",
    choice("b", {"a": "They passed, but for evil.example. DMARC asks whether they passed "
                      "for the domain in From:.",
                 "c": "DMARC looks up the policy of the From: domain, example.com, which "
                      "publishes one."},
           "DMARC passes only if SPF or DKIM passed for a domain aligned with the From: "
           "domain (RFC 7489 §3.1, §4.2)."),
    hint="Compare evil.example with the From: domain, in the alignment table.",
    solution="(b): fail. SPF passed for evil.example and DKIM for d=evil.example, but "
             "neither is aligned with example.com, so DMARC fails and example.com's "
             "p=reject applies: 550 5.7.1.",
    answer_help='Write a letter in quotes instead of None (e.g. answer = "a") and run the '
    'cell.'))

register(Exercise(
    "08.forwarded", "What survives forwarding",
    "After fwd.forward.example passed Alice's message on unchanged, which of the two "
    "mechanisms still passed at Bob's server, so that DMARC passed too?",
    text(["dkim", "dkim only"],
         {"spf": "SPF failed: Bob's server saw the forwarder's address, which is not in "
                 "example.com's SPF record.",
          "both": "SPF checks the connecting address: after forwarding it is the "
                  "forwarder's.",
          "spf and dkim": "SPF checks the connecting address: after forwarding it is the "
                          "forwarder's.",
          "dmarc": "DMARC is not an authentication of its own: it needs SPF or DKIM to "
                   "pass, aligned."},
         "DKIM: the signature travels inside the message and the forwarder changed "
         "nothing it covers; SPF only knows the last hop's address."),
    hint="Which mechanism checks the connecting address, and which one checks the "
         "message itself?",
    solution="dkim: the signature (d=example.com) still verifies because the bytes it "
             "covers are unchanged, and it is aligned with From:, so DMARC passes although "
             "SPF failed (RFC 7489 §4.2; RFC 7208 appendix D on forwarding).",
    answer_help='Write a mechanism in quotes instead of None (e.g. answer = "spf") and run '
    'the cell.'))


def _spf_only(answer: Any) -> tuple[bool, str]:
    net = answer if hasattr(answer, "hosts") and hasattr(answer, "world") else None
    if net is None:
        raise AnswerError("this check looks at the world: give it the running network, "
                          "check(net)")
    world = net.world
    sender_host = submission_host(world, SEED_SENDER)
    verdicts = [e for e in world.trace.events("auth.verdict")
                if SEED_RECIPIENT in (e.get("recipients") or [])]
    alice = [e for e in verdicts if str(e.get("helo", "")).lower() == sender_host]
    mallory = [e for e in verdicts if str(e.get("helo", "")).lower() == SPOOFER]
    if not alice or not mallory:
        return False, "Send both first: click Check in the lab (or lab.check())."
    a, m = alice[-1], mallory[-1]
    summary = str(a.get("summary", ""))
    if "dkim=none" not in summary:
        return False, "Alice's last message was DKIM-signed: untick 'signs with DKIM' first, " \
                      "so that only SPF can vouch for her."
    if a.get("action") != "inbox" or "spf=pass" not in summary:
        return False, f"Alice's last message: {summary}, {a.get('action')}. Her server " \
                      "(mail.example.com) must be allowed by the SPF record."
    if m.get("action") != "reject":
        return False, f"Mallory's last spoof was not refused ({m.get('action')}): the SPF " \
                      "record must not allow her machine, and p= must be reject."
    spf = world.domains["example.com"].spf
    return True, f"'{spf}' lets mail.example.com pass SPF, aligned with From:, so Alice's " \
                 "mail passes DMARC without DKIM; Mallory's address is not allowed, so her " \
                 "spoof is refused."


register(Exercise(
    "08.spf-only", "SPF on its own",
    "With DKIM signing off (untick it in the lab), Alice's mail can pass DMARC only through "
    "SPF. Choose an SPF record for example.com so that Alice's mail reaches Bob's inbox "
    "(still without DKIM) while Mallory's spoof is still refused with p=reject. Click "
    "Check, then run the check with the running network.",
    _spf_only,
    hint="The record must allow mail.example.com's address and nothing of Mallory's: "
         "'mx', 'a:mail.example.com' or its ip4: address, then -all or ~all (DMARC counts "
         "only an SPF pass, so softfail does not let Mallory through).",
    solution="SPF 'v=spf1 mx -all' (or 'v=spf1 a:mail.example.com -all', or 'v=spf1 "
             "ip4:127.0.0.2 -all'; ~all works too: for DMARC a softfail is not a pass), DKIM "
             "unticked, p=reject, Check. Careful with ip4:127.0.0.0/8: it allows Mallory "
             'too. Then ui.exercise("08.spf-only").check(net). (RFC 7489 §10.1 is why many '
             "domains pair p=reject with ~all rather than -all: a receiver that rejects on "
             "SPF -all before DMARC runs refuses forwarded mail that DKIM would have saved.)",
    answer_help="Run the check cell below after clicking Check in the lab."))


#: The scenarios of :mod:`simsmtp.net.mailauth_scenarios` are listed too: notebooks reach
#: them as ``ui.alice_sends`` …, and importing this module is what shows their outcomes as
#: HTML in a notebook.
__all__ = [
    "RESULT_COLORS",
    "SPF_CHOICES",
    "AuthOutcome",
    "MailAuthLab",
    "RecordRow",
    "alice_sends",
    "alignment_table",
    "auth_events",
    "auth_records",
    "auth_story",
    "body_hash",
    "dmarc_record",
    "forward_message",
    "mallory_sends",
    "outcome_html",
    "outcome_panel",
    "received_message",
    "record_rows",
    "results_table",
    "signature_table",
    "signature_tags",
    "spf_choices",
    "spoof_sends",
    "user_sends",
]
