"""One look for every widget and plot: colours, fonts, and small HTML helpers.

Everything here is pure (no ipywidgets, no matplotlib at import time). HTML uses inline
``style`` attributes only, never ``<style>`` blocks: JupyterLab keeps inline styles when it
shows the stored outputs of a notebook that is not trusted yet, and widgets render the same
way in JupyterLab, Notebook 7 and VS Code.

A new widget family (a new module in :mod:`simsmtp.ui`) should take its colours from
:data:`COLORS`, render tables with :func:`html_table`, code with :func:`pre`, verdicts with
:func:`callout`, and make figures with :func:`new_figure`.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

#: The palette: the hues of Okabe-Ito (colour-blind safe), darkened so that every colour
#: used for text meets WCAG AA (contrast of at least 4.5:1) on white, on the panels'
#: background and on the light-green TLS band (``tests/ui/test_style.py`` checks it).
COLORS: dict[str, str] = {
    "client": "#006199",      # a mail program (MUA) or the client side of a connection
    "server": "#444444",      # a server (MTA) and its replies
    "dns": "#9C3D74",         # DNS questions and answers
    "tls": "#00785A",         # anything inside TLS
    "ok": "#00785A",          # 2xx / 3xx, +OK, delivered
    "warn": "#8F5F00",        # 4xx: try again later
    "fail": "#B34A00",        # 5xx, -ERR, bounced, refused
    "note": "#2A6F9E",        # notes: stored, queued
    "muted": "#5F5F5F",       # secondary text, lifelines
    "highlight": "#F0E442",   # the current state, the selected row
    "background": "#F7F7F7",  # panels
    "text": "#222222",
}

#: Fonts for plots (DejaVu ships with matplotlib, so every machine draws the same).
FONT = "DejaVu Sans"
MONO = "DejaVu Sans Mono"

_PANEL = (f"border:1px solid #DDDDDD;border-radius:4px;background:{COLORS['background']};"
          "padding:6px 10px;margin:4px 0;")
_CELL = "padding:2px 8px;border-bottom:1px solid #E5E5E5;text-align:left;vertical-align:top;"
_HEAD = _CELL + "border-bottom:2px solid #BBBBBB;font-weight:bold;"


class Raw(str):
    """A string that is already HTML: :func:`html_table` puts it in a cell unescaped."""

    __slots__ = ()


def escape(text: object) -> str:
    """HTML-escape ``text`` (a :class:`Raw` string is returned as it is)."""
    if isinstance(text, Raw):
        return str(text)
    return html.escape(str(text), quote=True)


def code_color(code: int | None) -> str:
    """The colour of a reply code: green 2xx/3xx, orange 4xx, red 5xx, grey for none."""
    if code is None:
        return COLORS["muted"]
    if code >= 500:
        return COLORS["fail"]
    if code >= 400:
        return COLORS["warn"]
    return COLORS["ok"]


def reply_color(text: str) -> str:
    """The colour of a reply line (SMTP ``250 …`` or POP3 ``+OK``/``-ERR``)."""
    if text.startswith("-ERR"):
        return COLORS["fail"]
    if text.startswith("+OK"):
        return COLORS["ok"]
    head = text[:3]
    return code_color(int(head)) if head.isdigit() else COLORS["server"]


def span(text: object, color: str | None = None, *, bold: bool = False,
         mono: bool = False) -> Raw:
    """An inline, optionally coloured, bold or monospaced piece of text."""
    style = []
    if color:
        style.append(f"color:{color}")
    if bold:
        style.append("font-weight:bold")
    if mono:
        style.append("font-family:monospace")
    return Raw(f'<span style="{";".join(style)}">{escape(text)}</span>')


def pre(text: str, *, max_height: str | None = None) -> Raw:
    """A block of monospaced text (a dig answer, a dialogue, a file tree)."""
    scroll = f"max-height:{max_height};overflow:auto;" if max_height else ""
    return Raw(f'<pre style="{_PANEL}{scroll}font-size:12px;line-height:1.35;'
               f'white-space:pre;">{escape(text)}</pre>')


def panel(body: str, title: str | None = None) -> Raw:
    """A light box around some HTML, with an optional bold title."""
    head = f'<div style="font-weight:bold;margin-bottom:4px;">{escape(title)}</div>' \
        if title else ""
    return Raw(f'<div style="{_PANEL}">{head}{body}</div>')


def callout(kind: str, body: str, title: str | None = None) -> Raw:
    """A verdict box: ``kind`` is ``"ok"``, ``"warn"``, ``"fail"`` or ``"note"``."""
    color = COLORS.get(kind, COLORS["note"])
    head = f'<b style="color:{color};">{escape(title)}</b> ' if title else ""
    return Raw(f'<div style="border-left:4px solid {color};background:{COLORS["background"]};'
               f'padding:6px 10px;margin:4px 0;">{head}{body}</div>')


def html_table(headers: Sequence[str], rows: Iterable[Sequence[object]], *,
               caption: str | None = None, max_height: str | None = None,
               mono_columns: Iterable[int] = ()) -> Raw:
    """An HTML table; cells are escaped unless they are :class:`Raw`.

    Args:
        headers: the column titles.
        rows: the rows, one value per column.
        caption: a line above the table.
        max_height: a CSS height after which the table scrolls (e.g. ``"24em"``).
        mono_columns: indexes of columns shown in a monospaced font.
    """
    mono = set(mono_columns)
    out = []
    if caption:
        out.append(f'<div style="font-weight:bold;margin:4px 0;">{escape(caption)}</div>')
    scroll = f"max-height:{max_height};overflow:auto;" if max_height else ""
    out.append(f'<div style="{scroll}"><table style="border-collapse:collapse;'
               'font-size:12px;">')
    out.append("<thead><tr>" + "".join(f'<th style="{_HEAD}">{escape(h)}</th>'
                                        for h in headers) + "</tr></thead><tbody>")
    for row in rows:
        cells = []
        for i, value in enumerate(row):
            style = _CELL + ("font-family:monospace;white-space:pre-wrap;" if i in mono else "")
            cells.append(f'<td style="{style}">{escape(value)}</td>')
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table></div>")
    return Raw("".join(out))


def text_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """The same table as plain text, columns aligned (for ``print`` and for tests)."""
    data = [[str(h) for h in headers]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(r[i]) for r in data) for i in range(len(headers))]
    lines = ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
             for r in data]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


class HTMLText:
    """Something shown as HTML in a notebook and as plain text elsewhere (and by nbval)."""

    def __init__(self, html_text: str, plain: str) -> None:
        self.html = html_text
        self.plain = plain

    def _repr_html_(self) -> str:
        return self.html

    def __repr__(self) -> str:
        return self.plain

    def __str__(self) -> str:
        return self.plain


#: matplotlib settings of every course figure. SVG keeps its text as text (``svg.fonttype``
#: none), so a browser can read and measure it; the hash salt makes its ids reproducible.
RC: dict[Any, Any] = {"font.family": FONT, "font.size": 9, "axes.edgecolor": COLORS["muted"],
      "axes.titlesize": 11, "axes.titleweight": "bold", "svg.hashsalt": "simsmtp",
      "svg.fonttype": "none"}

#: The widest figure (inches) and smallest font (points) of the course: at JupyterLab's
#: default zoom a 10-inch figure fits a 1400-pixel window with the file browser open, so it
#: is never scaled down, and 8 points are 10.7 CSS pixels.
MAX_WIDTH = 10.0
MIN_FONT = 8.0


def figure_svg(fig: Figure, *, salt: str = "simsmtp") -> str:
    """``fig`` as SVG text (its text kept as ``<text>``, no date: reproducible)."""
    import io

    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({**RC, "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # no XML prolog: it goes inline in HTML too


def figure_png(fig: Figure, dpi: int = 96) -> bytes:
    """``fig`` as PNG (for a notebook opened before it is trusted, which shows no SVG)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, metadata={"Software": None})
    return buffer.getvalue()


def inline_svg(fig: Figure, css_class: str = "simsmtp-svg") -> str:
    """``fig`` as an SVG element to put in an HTML widget; its ids are unique on the page
    (several figures in one page must not share clip-path ids)."""
    import secrets

    svg = figure_svg(fig, salt=secrets.token_hex(8))
    return f'<div class="{css_class}" style="max-width:100%;overflow-x:auto;">{svg}</div>'


class Diagram:
    """A course figure, shown as SVG (text a browser can read and measure) and as PNG (what
    JupyterLab shows of a notebook that is not trusted yet). Everything else is the
    matplotlib figure's: ``diagram.axes``, ``diagram.savefig(...)``, ``diagram.figure``."""

    def __init__(self, figure: Figure) -> None:
        self.figure = figure

    def __getattr__(self, name: str) -> Any:
        return getattr(self.figure, name)

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> dict[str, Any]:
        import base64

        return {"image/svg+xml": figure_svg(self.figure),
                "image/png": base64.b64encode(figure_png(self.figure)).decode("ascii"),
                "text/plain": repr(self.figure)}

    def __repr__(self) -> str:
        return repr(self.figure)


@contextlib.contextmanager
def plot_style() -> Iterator[None]:
    """Draw inside this block to get the course's fonts and colours."""
    import matplotlib

    with matplotlib.rc_context(RC):
        yield


def new_figure(width: float, height: float) -> tuple[Figure, Axes]:
    """A matplotlib figure of ``width`` x ``height`` inches, not left open in pyplot.

    A figure returned as the value of a cell is drawn once by the inline backend; since
    pyplot forgets it at once, it is not drawn a second time at the end of the cell. Draw
    on it inside :func:`plot_style`.
    """
    import matplotlib.pyplot as plt

    with plot_style():
        fig, ax = plt.subplots(figsize=(width, height))
    plt.close(fig)
    return fig, ax


def short(text: str, limit: int = 60) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def plural(n: int, word: str, words: str | None = None) -> str:
    """``"1 line"``, ``"3 lines"``."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


__all__ = [
    "COLORS",
    "FONT",
    "MAX_WIDTH",
    "MIN_FONT",
    "MONO",
    "Diagram",
    "HTMLText",
    "Raw",
    "callout",
    "code_color",
    "escape",
    "figure_png",
    "figure_svg",
    "html_table",
    "inline_svg",
    "new_figure",
    "panel",
    "plot_style",
    "plural",
    "pre",
    "reply_color",
    "short",
    "span",
    "text_table",
]
