"""Grammar helpers: paths, parameters, xtext, reply lines, message text; persona; SASL."""

from __future__ import annotations

import pytest

from simsmtp.protocol.grammar import (
    GrammarError,
    Mailbox,
    dot_stuff,
    format_path,
    is_address_literal,
    is_domain,
    message_size,
    normalize_line_endings,
    parse_params,
    parse_path,
    parse_reply_line,
    replace_stray_cr_lf,
    split_path,
    xtext_decode,
    xtext_encode,
)
from simsmtp.protocol.persona import POSTFIX, Persona
from simsmtp.protocol.sasl import Credentials, LoginClient, PlainClient, SASLError, decode_response


@pytest.mark.parametrize("path, mailbox", [
    ("<a@example.com>", Mailbox("a", "example.com")),
    ("<first.last+tag@sub.example.com>", Mailbox("first.last+tag", "sub.example.com")),
    ('<"john doe"@example.com>', Mailbox('"john doe"', "example.com", (), True)),
    ('<"a\\"b"@example.com>', Mailbox('"a\\"b"', "example.com", (), True)),
    ("<u@[192.0.2.1]>", Mailbox("u", "[192.0.2.1]")),
    ("<u@[IPv6:2001:db8::1]>", Mailbox("u", "[IPv6:2001:db8::1]")),
    ("<@a.example,@b.example:u@c.example>", Mailbox("u", "c.example", ("a.example", "b.example"))),
])
def test_valid_paths(path: str, mailbox: Mailbox) -> None:
    assert parse_path(path) == mailbox


@pytest.mark.parametrize("path", ["a@b.c", "<a@b.c", "<>", "<a>", "<@a:b>", "<a@@b.c>",
                                  "<a..b@c.d>", "<.a@b.c>", "<a@-b.c>", "<a@b_c.d>",
                                  "<a b@c.d>", "<a@[300.1.1.1]>", "<a@[IPv6:zz]>",
                                  '<"unterminated@b.c>', "<a@b.c@d.e>", "<jé@x.org>"])
def test_invalid_paths(path: str) -> None:
    with pytest.raises(GrammarError):
        parse_path(path)


def test_special_paths_and_properties() -> None:
    assert parse_path("<>", allow_null=True).is_null
    pm = parse_path("<PostMaster>", allow_postmaster=True)
    assert pm.is_postmaster and pm.address == "PostMaster"
    assert parse_path("<jé@bücher.example>", utf8=True).domain == "bücher.example"
    with pytest.raises(GrammarError) as info:
        parse_path("<jé@x.org>")
    assert info.value.kind == "utf8"
    assert parse_path("<relaytest%relay.invalid@anotherdomain.org>").has_routing
    assert parse_path('<"relaytest@relay.invalid"@anotherdomain.org>').has_routing
    assert not parse_path("<bob@anotherdomain.org>").has_routing


def test_limits_have_their_own_kinds() -> None:
    with pytest.raises(GrammarError) as info:
        parse_path("<" + "a" * 65 + "@b.c>")
    assert info.value.kind == "local_part"
    parse_path("<" + "a" * 64 + "@b.c>")
    with pytest.raises(GrammarError) as info:
        parse_path("<u@" + "a." * 130 + "com>")
    assert info.value.kind == "path"
    assert not is_domain("a" * 64 + ".com") and is_domain("a" * 63 + ".com")


def test_split_path_and_params() -> None:
    assert split_path("<a@b.c> SIZE=10  BODY=8BITMIME") == ("<a@b.c>", "SIZE=10  BODY=8BITMIME")
    assert split_path('<"x>y"@b.c>') == ('<"x>y"@b.c>', "")
    with pytest.raises(GrammarError):
        split_path("<a@b.c>SIZE=1")
    assert parse_params("size=10 SMTPUTF8") == {"SIZE": "10", "SMTPUTF8": None}
    for bad in ("=1", "A=", "A=b=c", "-A=1", "A=1 A=2"):
        with pytest.raises(GrammarError):
            parse_params(bad)


def test_xtext_round_trip() -> None:
    assert xtext_decode("a+2Bb+3Dc") == "a+b=c"
    assert xtext_encode("a+b=c d") == "a+2Bb+3Dc+20d"
    for bad in ("+2", "+zz", "a=b", "a b"):
        with pytest.raises(GrammarError):
            xtext_decode(bad)


def test_address_literals_and_format_path() -> None:
    assert is_address_literal("[127.0.0.1]") and is_address_literal("[x-tag:stuff]")
    assert not is_address_literal("127.0.0.1")
    assert format_path("a@b.c") == "<a@b.c>"
    assert format_path("", allow_null=True) == "<>"
    with pytest.raises(GrammarError):
        format_path("a@b.c>\r\nRCPT TO:<evil@y")


@pytest.mark.parametrize("line, parsed", [
    (b"250 ok", (250, True, "ok")), (b"250-ok", (250, False, "ok")), (b"250", (250, True, "")),
    (b"354 go ahead", (354, True, "go ahead"))])
def test_reply_lines(line: bytes, parsed: tuple[int, bool, str]) -> None:
    assert parse_reply_line(line) == parsed


@pytest.mark.parametrize("line", [b"25 x", b"abc", b"250x", b"199 x", b"600 x",
                                  b"250 " + b"x" * 507])
def test_bad_reply_lines(line: bytes) -> None:
    with pytest.raises(GrammarError):
        parse_reply_line(line)


def test_message_text_helpers() -> None:
    assert normalize_line_endings(b"a\rb\nc\r\nd") == b"a\r\nb\r\nc\r\nd\r\n"
    assert normalize_line_endings(b"") == b""
    assert replace_stray_cr_lf(b"a\rb\nc\r\n\r\r\n") == b"a b c\r\n \r\n"
    assert dot_stuff(b".a\n..b\nc") == b"..a\r\n...b\r\nc\r\n.\r\n"
    assert dot_stuff(b"") == b".\r\n"
    assert message_size(b"ab\ncd") == 8


def test_persona_table_codes_are_valid_and_lines_fit() -> None:
    persona = Persona("mail.anotherdomain.org")
    for key, (code, _template) in POSTFIX.items():
        assert 200 <= code <= 599, key
    reply = persona.reply("vrfy_default", arg="x" * 1000)
    assert all(len(line.encode()) + 6 <= 512 for line in reply.lines)
    assert persona.reply("queued", id="ABC").enhanced == "2.0.0"
    assert "Enhanced status 5.3.4" in persona.reply("size_declared").explain()


def test_sasl_helpers_never_show_passwords() -> None:
    assert repr(Credentials("alice", "hunter2")) == "Credentials(username='alice', password='***')"
    assert "hunter2" not in repr(PlainClient("alice", "hunter2"))
    assert PlainClient("alice", "pw").initial_response() == b"\0alice\0pw"
    login = LoginClient("alice", "pw")
    assert (login.initial_response(), login.respond(b"Username:"),
            login.respond(b"Password:")) == (None, b"alice", b"pw")
    assert decode_response("=") == b""
    with pytest.raises(SASLError) as info:
        decode_response("*")
    assert info.value.reason == "auth_aborted"
