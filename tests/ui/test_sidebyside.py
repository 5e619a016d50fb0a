"""One message in plaintext and with STARTTLS, side by side, from the capture."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from simsmtp import ui
from simsmtp.ui.sidebyside import (
    SideBySide,
    WireStep,
    align,
    compare,
    pick,
    side_by_side,
    side_by_side_text,
)
from simsmtp.world import World
from simsmtp.world.scenario import seed_message

from .conftest import ALICE
from .readability import contrast, font_sizes, text_colors


def _send(net: Any) -> None:
    net.submit(seed_message(net.world), recipients=["bob@anotherdomain.org"], **ALICE)
    assert net.wait(net.idle, 10)
    assert ui.wait_closed(net)


@pytest.fixture(scope="module")
def both() -> Iterator[Any]:
    """The seed message relayed once with STARTTLS, then once in plaintext."""
    world = World.seed_world()
    with world.start() as net:
        _send(net)
        world.host("mail.example.com").policy.outbound_tls = "none"
        net.agents["mail.example.com"].tls_policy = "none"
        _send(net)
        yield net


def test_steps_are_aligned_by_protocol_step(both: Any) -> None:
    left, right, rows = compare(both)
    assert not left.tls and right.tls
    keys = [r.key for r in rows]
    assert keys[:6] == ["greeting", "EHLO", "EHLO reply", "STARTTLS", "STARTTLS reply",
                        "TLS handshake"]
    by_key = {r.key: r for r in rows}
    for key in ("MAIL", "RCPT", "DATA", "message", "QUIT"):
        row = by_key[key]
        assert row.plain is not None and row.plain.clear
        assert row.tls is not None and not row.tls.clear and row.tls.named
    assert by_key["STARTTLS"].plain is None
    assert by_key["EHLO (again, inside TLS)"].plain is None
    mail = by_key["MAIL"]
    assert mail.plain.lines == ("MAIL FROM:<alice@example.com> SIZE=943",)  # type: ignore
    assert mail.tls.lines == mail.plain.lines  # type: ignore[union-attr]  # from the key log
    # a TLS 1.3 record: the line, its type byte and a 16-byte tag, plus the 5-byte header
    assert mail.tls.octets == len("MAIL FROM:<alice@example.com> SIZE=943\r\n") + 22  # type: ignore
    message = by_key["message"]
    assert message.tls.octets > left.message_octets  # type: ignore[union-attr]


def test_what_still_leaks_is_read_by_the_eavesdropper_code(both: Any) -> None:
    text = side_by_side_text(both)
    assert "EHLO name (before STARTTLS): mail.example.com" in text
    assert "SNI: the server name asked for: mail.anotherdomain.org" in text
    tls_conn = pick(both, tls=True)
    assert f"{tls_conn.client[0]} → {tls_conn.server[0]} port 25" in text
    assert "the message's records:" in text
    assert "[1 encrypted record" in text


def test_without_the_keys_the_right_column_is_only_records(both: Any) -> None:
    _, right, rows = compare(both, keys=False)
    after = right.steps[right.steps.index(next(s for s in right.steps
                                               if s.key == "TLS handshake")) + 1:]
    assert after and all(s.key == "encrypted record" and not s.named for s in after)
    assert not any(r.tls is not None and r.tls.key == "MAIL" for r in rows)


def test_align_pairs_what_matches_and_leaves_the_rest_alone() -> None:
    a = [WireStep(k, "c2s") for k in ("greeting", "EHLO", "MAIL", "QUIT")]
    b = [WireStep(k, "c2s") for k in ("greeting", "EHLO", "STARTTLS", "MAIL", "QUIT")]
    rows = align(a, b)
    assert [(r.key, r.plain is not None, r.tls is not None) for r in rows] == [
        ("greeting", True, True), ("EHLO", True, True), ("STARTTLS", False, True),
        ("MAIL", True, True), ("QUIT", True, True)]


def test_the_widget_reacts_to_clicks_and_is_readable(both: Any) -> None:
    view = SideBySide(both)
    assert "read in clear: 13 in plaintext, 5 with STARTTLS" in repr(view)
    assert "inside (read with the key log" in view.body.value
    view.keys_box.value = False
    assert "inside (read with the key log" not in view.body.value
    assert "encrypted record" in view.body.value
    view.refresh_button.click()
    assert view.rows and view.left is not None
    html_ = side_by_side(both).html
    assert min(font_sizes(html_)) >= 10
    for color in text_colors(html_):
        for background in ("#FFFFFF", "#FBE3D6", "#DDF2EA"):
            assert contrast(color, background) >= 4.5, (color, background)


def test_the_default_pair_is_on_one_path_even_after_other_mail(both: Any) -> None:
    ui.mallory_sends(both)  # a later plaintext connection, from another host
    assert ui.wait_closed(both)
    left, right, _ = compare(both)
    assert left.connection.client[0] == right.connection.client[0] == \
        both.hosts["mail.example.com"].ip
    assert left.message_octets == right.steps[[s.key for s in right.steps]
                                              .index("message")].octets - 22


def test_nothing_to_compare_is_said_in_words() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        view = SideBySide(net)
        assert repr(view) == "SideBySide(nothing to compare yet)"
        assert "no smtp connection in plaintext in the capture yet" in view.body.value
        _send(net)
        with pytest.raises(LookupError):
            compare(net)
