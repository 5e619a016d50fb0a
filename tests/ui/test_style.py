"""Every text colour meets WCAG AA, and every figure's text is big enough to read."""

from __future__ import annotations

import re

import pytest

from simsmtp.ui.sequence import sequence_diagram
from simsmtp.ui.states import state_diagram
from simsmtp.ui.style import COLORS, MAX_WIDTH, MIN_FONT, Diagram
from simsmtp.world import World


def _luminance(color: str) -> float:
    def channel(value: int) -> float:
        c = value / 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4
    r, g, b = (int(color.lstrip("#")[i:i + 2], 16) for i in (0, 2, 4))
    return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)


def contrast(a: str, b: str) -> float:
    """The WCAG contrast ratio of two colours (1 to 21)."""
    la, lb = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (la + 0.05) / (lb + 0.05)


def test_contrast_formula() -> None:
    assert contrast("#000000", "#FFFFFF") == pytest.approx(21)
    assert contrast("#777777", "#FFFFFF") == pytest.approx(4.48, abs=0.01)


@pytest.mark.parametrize("name", ["client", "server", "dns", "tls", "ok", "warn", "fail",
                                  "note", "muted", "text"])
@pytest.mark.parametrize("background", ["#FFFFFF", COLORS["background"], "#DFF3EA"])
def test_every_text_colour_meets_wcag_aa(name: str, background: str) -> None:
    assert contrast(COLORS[name], background) >= 4.5


def _font_sizes(svg: str) -> list[float]:
    return [float(m) for m in re.findall(r"font[^;\"]*?:[^;\"]*?([\d.]+)px", svg)]


@pytest.mark.parametrize("draw", [
    lambda: sequence_diagram(_journey_world(), title="The journey"),
    lambda: state_diagram("server", current="MAIL"),
    lambda: state_diagram("client", current="RCPT"),
], ids=["sequence", "server-states", "client-states"])
def test_diagrams_are_svg_with_readable_text(draw: object) -> None:
    diagram = draw()  # type: ignore[operator]
    assert isinstance(diagram, Diagram)
    assert diagram.get_figwidth() <= MAX_WIDTH
    bundle = diagram._repr_mimebundle_()
    svg = bundle["image/svg+xml"]
    assert "<text" in svg and bundle["image/png"] and bundle["text/plain"].startswith("<Fig")
    sizes = _font_sizes(svg)
    assert sizes and min(sizes) >= MIN_FONT
    assert svg == diagram._repr_mimebundle_()["image/svg+xml"]  # reproducible for nbval


_WORLD: list[World] = []


def _journey_world() -> World:
    from .conftest import play_journey

    if not _WORLD:
        world = World.seed_world()
        play_journey(world)
        _WORLD.append(world)
    return _WORLD[0]
