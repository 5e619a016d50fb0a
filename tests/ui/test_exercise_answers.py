"""Each checker's accepted and refused forms: a right answer written another way is right,
and a plausible wrong answer gets an explanation of its own, never a bare "not it".

The Wireshark filters of 04.filter are also put to a real tshark (skipped without it):
every accepted filter selects exactly the AUTH command of a captured login, and the
refused ones do not.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from simsmtp.ui.exercises import exercise

#: Right answers in the forms a learner may plausibly write them.
ACCEPTED: dict[str, list[Any]] = {
    "00.submission-port": [587, "587", " 587 ", "port 587", "587/tcp"],
    "00.dns-questions": [2, "2"],
    "00.who-stored": ["mail.anotherdomain.org", "Mail.AnotherDomain.org.",
                      "<mail.anotherdomain.org>"],
    "01.order": [["mx-a.example.net", "mx-b.example.net", "mx-c.example.net"],
                 "mx-a.example.net, mx-b.example.net, mx-c.example.net",
                 "mx-a mx-b mx-c", "mx-a -> mx-b -> mx-c"],
    "01.null-mx": ["5.1.10", "556 5.1.10", "X.1.10"],
    "02.pipelining": ["PIPELINING", " pipelining ", "250-PIPELINING"],
    "02.state-after-data": ["DATA", "data", "ServerState.DATA"],
    "02.bounce-to": ["b", "(b)", "B"],
    "03.transient": ["b", "(b)", "(b) keep it in its queue", "b."],
    "03.first-retry": [300, "300", 300.0, "300 s", "300 seconds"],
    "04.base64": ["builder", "Builder"],
    "04.what-leaks": ["d", "(d)"],
    "04.filter": ['smtp.req.command == "AUTH"', 'smtp.req.command=="AUTH"',
                  'smtp.req.command eq "AUTH"', 'smtp.req.command === "AUTH"',
                  'smtp.req.command contains "AUTH"', 'smtp.req.command in {"AUTH"}',
                  'smtp.req.command matches "auth"', 'smtp.req.command ~ "^AUTH$"',
                  'smtp.req.command == AUTH',
                  'smtp.req.command == "AUTH" && tcp.port == 587'],
    "05.sni": ["mail.anotherdomain.org", "mail.anotherdomain.org."],
    "05.last-clear": ["ServerHello", "Server Hello", "server_hello", "serverhello"],
    "05.defence": ["b", "(B)"],
    "06.ports": [(587, 465), [587, 465], "587, 465", "(587, 465)"],
    "06.why-no-auth": ["b", "B"],
    "06.relay": [454, "454"],
    "07.new": ["new", "new/", "Maildir/new"],
    "07.first-hop": ["mail.example.com", "mail.example.com."],
    "07.dele": ["DELE", "dele", "DELE 1"],
    "08.softfail": ["softfail", "SOFTFAIL"],
    "08.alignment": ["b", "(b)"],
    "08.forwarded": ["dkim", "DKIM", "DKIM only"],
}

#: Plausible wrong answers, each with words its explanation must contain.
REFUSED: dict[str, list[tuple[Any, str]]] = {
    "00.submission-port": [(25, "servers deliver"), (465, "submissions"), (110, "POP3")],
    "00.dns-questions": [(1, "ADDITIONAL"), (3, "AAAA"), (0, "pink arrows")],
    "00.who-stored": [("mail.example.com", "relayed"), ("bob", "fetched"),
                      ("bob@anotherdomain.org", "mailbox"), ("ns.simsmtp.test", "name server")],
    "01.order": [(["mx-b.example.net", "mx-a.example.net", "mx-c.example.net"], "order"),
                 ("mx-c, mx-b, mx-a", "order"), ("mx-a, mx-b", "Expected 3 names")],
    "01.null-mx": [("5.4.4", "neither MX"), ("556", "RFC 7504"), ("5.7.27", "SENDER"),
                   ("5.1.1", "no such user")],
    "02.pipelining": [("CHUNKING", "BDAT"), ("SIZE", "largest"), ("VRFY", "address")],
    "02.state-after-data": [("MESSAGE", "CLIENT's state"), ("RCPT", "before DATA"),
                            ("GREETED", "<CRLF>.<CRLF>"), ("354", "reply code")],
    "02.bounce-to": [("a", "envelope"), ("c", "recipient")],
    "03.transient": [("a", "transient"), ("c", "silently")],
    "03.first-retry": [(600, "second failure"), ("5 minutes", "seconds"),
                       (1800, "RFC 5321 §4.5.4.1"),
                       (4000, "maximal_backoff_time")],
    "04.base64": [("bob", "user name"), ("AGJvYgBidWlsZGVy", "base64")],
    "04.what-leaks": [("a", "in clear"), ("c", "base64")],
    "04.filter": [('smtp.req.command == "auth"', "case-sensitively"),
                  ('smtp.req.command contains "auth"', "case-sensitively"),
                  ("smtp.req.command == 'AUTH'", "double quotes"),
                  ('smtp contains "AUTH"', "EHLO reply"),
                  ("smtp.auth.username", "AUTH LOGIN"),
                  ('smtp.req.parameter contains "PLAIN"', "AUTH PLAIN only"),
                  ('smtp.req.command == "PLAIN"', "mechanisms"),
                  ("smtp", "every SMTP packet"), ("tcp.port == 587", "every")],
    "05.sni": [("mail.example.com", "client"), ("anotherdomain.org", "host name")],
    "05.last-clear": [("ClientHello", "answers it"), ("Certificate", "encrypted"),
                      ("EncryptedExtensions", "FIRST encrypted"),
                      ("ChangeCipherSpec", "middleboxes"), ("Finished", "encrypted")],
    "05.defence": [("a", "key"), ("c", "falls back"), ("d", "cipher")],
    "06.ports": [((465, 587), "Swapped"), ((25, 587), "servers deliver"),
                 ((110, 995), "fetching")],
    "06.why-no-auth": [("a", "second EHLO"), ("c", "AUTH PLAIN LOGIN")],
    "06.relay": [(554, "defer_unauth_destination"), (550, "unknown user"),
                 (250, "open relay"), (530, "authentication")],
    "07.new": [("tmp", "renamed"), ("cur", "seen"), ("INBOX", "subdirectory")],
    "07.first-hop": [("mail.anotherdomain.org", "top header"), ("127.0.0.1", "'by' part")],
    "07.dele": [("QUIT", "does not choose"), ("RSET", "undoes"), ("RETR", "stays"),
                ("EXPUNGE", "IMAP")],
    "08.softfail": [("fail", "-all"), ("neutral", "?all"), ("pass", "mx"),
                    ("reject", "DMARC policy")],
    "08.alignment": [("a", "evil.example"), ("c", "From: domain")],
    "08.forwarded": [("spf", "forwarder"), ("both", "forwarder"), ("dmarc", "aligned")],
}


@pytest.mark.parametrize(("key", "answer"),
                         [(k, a) for k, forms in ACCEPTED.items() for a in forms])
def test_right_answers_in_every_plausible_form(key: str, answer: Any) -> None:
    feedback = exercise(key).check(answer)
    assert feedback.correct, (key, answer, feedback.message)


@pytest.mark.parametrize(("key", "answer", "words"),
                         [(k, a, w) for k, forms in REFUSED.items() for a, w in forms])
def test_plausible_wrong_answers_are_explained(key: str, answer: Any, words: str) -> None:
    feedback = exercise(key).check(answer)
    assert not feedback.correct and feedback.answered
    assert "is not it" not in feedback.message
    assert words in feedback.message, (key, answer, feedback.message)
    assert feedback.hint  # and the hint follows every wrong answer


def test_every_typed_exercise_is_in_both_tables() -> None:
    assert set(ACCEPTED) == set(REFUSED)


def test_two_numbers_are_not_one_answer() -> None:
    feedback = exercise("00.submission-port").check("587 or 465")
    assert not feedback.correct and "write one number, like 3" in feedback.message


def test_08_spf_only_hint_allows_softfail() -> None:
    ex = exercise("08.spf-only")
    assert "~all" in ex.hint and "-all" in ex.hint
    assert "RFC 7489 §10.1" in ex.solution


# -- the filters against a real tshark ---------------------------------------------------------

@pytest.fixture(scope="module")
def login_pcap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A capture of Alice logging in with AUTH PLAIN in plaintext, then sending."""
    from simsmtp.capture.pcap import export_pcap
    from simsmtp.world import World
    from simsmtp.world.scenario import seed_message

    world = World.seed_world()
    world.host("mail.example.com").policy.auth_plaintext = True
    world.host("mail.example.com").policy.outbound_tls = "none"
    path = tmp_path_factory.mktemp("pcap") / "login.pcap"
    with world.start(storage="memory") as net:
        mua = net.session("mail.example.com", 587, local_name="alice-laptop")
        mua.connect()
        mua.ehlo()
        assert mua.auth("alice@example.com", "wonderland").code == 235
        mua.transaction("alice@example.com", "bob@anotherdomain.org", seed_message(world))
        mua.quit()
        assert net.wait(net.idle, 10)
        export_pcap(net.tap, path)
    yield path


def _selected(tshark: str, pcap: Path, display_filter: str) -> list[str] | None:
    """The SMTP commands of the packets the filter selects (None: tshark refused it)."""
    done = subprocess.run([tshark, "-r", str(pcap), "-Y", display_filter, "-T", "fields",
                           "-e", "smtp.req.command", "-e", "smtp.response.code"],
                          capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        return None
    return [line for line in done.stdout.splitlines()]


def test_the_accepted_filters_select_exactly_the_auth_command(login_pcap: Path) -> None:
    from tests.conftest import require_program

    tshark = require_program("tshark")
    for display_filter in ACCEPTED["04.filter"]:
        assert _selected(tshark, login_pcap, display_filter) == ["AUTH\t"], display_filter


@pytest.mark.parametrize("display_filter", ['smtp.req.command == "auth"',
                                            'smtp.req.command contains "auth"',
                                            "smtp.req.command == 'AUTH'",
                                            'smtp contains "AUTH"', "smtp", "tcp.port == 587"])
def test_the_refused_filters_do_not(login_pcap: Path, display_filter: str) -> None:
    from tests.conftest import require_program

    tshark = require_program("tshark")
    assert _selected(tshark, login_pcap, display_filter) != ["AUTH\t"]
