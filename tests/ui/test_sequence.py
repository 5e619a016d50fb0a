"""The sequence diagram draws exactly the journey's rows."""

from __future__ import annotations

from simsmtp.ui.journey import journey
from simsmtp.ui.sequence import ROW, sequence_diagram
from simsmtp.world import World


def _texts(fig: object) -> list[str]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return [t.get_text() for t in ax.texts]


def test_one_row_per_arrow_and_a_header_per_lane(journey_world: World) -> None:
    j = journey(journey_world)
    fig = sequence_diagram(journey_world, title="The journey")
    texts = _texts(fig)
    for lane in j.lanes:
        assert j.label(lane) in texts
    sections = [a.label for a in j.arrows if a.kind == "section"]
    assert all(s in texts for s in sections)
    arrows = [a for a in j.arrows if a.kind in ("command", "reply", "connect", "content",
                                                 "dns-query", "dns-answer", "failed")]
    drawn = [t for t in fig.axes[0].texts  # annotate() arrows have an arrow patch
             if getattr(t, "arrow_patch", None) is not None]
    assert len(drawn) == len(arrows)
    assert fig.get_figheight() >= ROW * len(j.arrows)
    assert "The journey" in [t.get_text() for t in fig.texts]


def test_labels_are_the_real_lines(journey_world: World) -> None:
    texts = _texts(sequence_diagram(journey_world))
    assert "220 mail.anotherdomain.org ESMTP Postfix" in texts
    assert "MX? anotherdomain.org" in texts
    assert "AUTH PLAIN ***" in texts
    assert any(t.startswith("TLS handshake") for t in texts)


def test_summary_diagram_is_short(journey_world: World) -> None:
    full = sequence_diagram(journey_world)
    summary = sequence_diagram(journey_world, detail="summary")
    assert summary.get_figheight() < full.get_figheight() / 3


def test_an_empty_trace_still_draws() -> None:
    fig = sequence_diagram(World.seed_world())
    assert fig.axes and fig.get_figwidth() > 0
