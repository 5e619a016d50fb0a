"""Readability checks for the HTML and SVG the views draw: text at least 10 px, and text
colours with WCAG AA contrast (4.5:1, WCAG 2.1 §1.4.3) against their background."""

from __future__ import annotations

import re


def _channel(value: int) -> float:
    c = value / 255
    return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4


def luminance(color: str) -> float:
    """The relative luminance of ``#RRGGBB`` (WCAG 2.1 definition)."""
    r, g, b = (int(color[i:i + 2], 16) for i in (1, 3, 5))
    return 0.2126 * _channel(r) + 0.7152 * _channel(g) + 0.0722 * _channel(b)


def contrast(foreground: str, background: str) -> float:
    """The contrast ratio of two ``#RRGGBB`` colours (1 to 21)."""
    a, b = sorted((luminance(foreground), luminance(background)), reverse=True)
    return (a + 0.05) / (b + 0.05)


def font_sizes(markup: str) -> list[float]:
    """Every font size given in px (CSS ``font-size:12px`` or SVG ``font-size="12"``)."""
    css = [float(v) for v in re.findall(r"font-size:\s*([\d.]+)px", markup)]
    svg = [float(v) for v in re.findall(r'font-size="([\d.]+)"', markup)]
    return css + svg


def text_colors(markup: str) -> set[str]:
    """Every text colour: CSS ``color:#…`` and the ``fill`` of SVG ``<text>``."""
    css = set(re.findall(r"(?<![-\w])color:\s*(#[0-9A-Fa-f]{6})", markup))
    svg = set(re.findall(r'<text[^>]*fill="(#[0-9A-Fa-f]{6})"', markup))
    return css | svg
