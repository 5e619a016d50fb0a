"""The state diagram comes from the cores' transition table, with the current state lit."""

from __future__ import annotations

import re

import pytest

from simsmtp.protocol.session import ClientState, ServerState, transitions
from simsmtp.ui.states import StateMachineView, state_diagram, state_graph
from simsmtp.ui.style import COLORS, MAX_WIDTH


@pytest.mark.parametrize("role", ["server", "client"])
def test_every_row_of_the_table_is_drawn(role: str) -> None:
    g = state_graph(role)
    states = ServerState if role == "server" else ClientState
    assert set(g.states) == {s.name for s in states}
    for state, verb, ok, fail in transitions(role):
        src, dst, bad = state.name, ok.name, fail.name
        if verb == "QUIT":
            assert src in g.quits
            continue
        if dst == src:
            assert verb in g.loops[src]
        elif dst == "CLOSED":
            assert verb in g.closing
        else:
            assert verb in g.edges[(src, dst)]
        if bad not in (src, dst):
            in_fail = verb in g.fail_edges.get((src, bad), [])
            merged = f"{verb} ✗" in g.edges.get((src, bad), [])
            assert in_fail or merged or f"{verb} ✗" in g.closing


def test_the_happy_path_is_there() -> None:
    g = state_graph("server")
    assert "MAIL" in g.edges[("GREETED", "MAIL")]
    assert "RCPT" in g.edges[("MAIL", "RCPT")]
    assert "DATA" in g.edges[("RCPT", "DATA")]
    assert "<end-of-data>" in g.edges[("DATA", "GREETED")]
    assert "STARTTLS" in g.edges[("GREETED", "TLS_HANDSHAKE")]


def _node_faces(fig: object) -> dict[str, str]:
    from matplotlib.colors import to_hex

    faces = {}
    for t in fig.axes[0].texts:  # type: ignore[attr-defined]
        box = t.get_bbox_patch()
        if box is not None and t.get_fontweight() == "bold":
            faces[t.get_text().replace("_\n", "_")] = to_hex(box.get_facecolor())
    return faces


def test_the_current_state_is_highlighted() -> None:
    faces = _node_faces(state_diagram("server", current=ServerState.MAIL))
    assert faces["MAIL"] == COLORS["highlight"].lower()
    assert faces["GREETED"] == "#ffffff"
    assert all(face == "#ffffff" for name, face in faces.items() if name != "MAIL")


def test_the_widget_follows_a_connection() -> None:
    view = StateMachineView("client", current="CONNECTING")
    first = view.image.value
    assert "<svg" in first and "CONNECTING" in view.caption.value
    assert re.search(r"<text[^>]*>\s*CONNECTING", first)  # text a browser can measure
    view.show("GREETED", previous="CONNECTED", verb="EHLO")
    assert view.image.value != first
    assert view.current == "GREETED"
    assert "after EHLO in CONNECTED" in view.caption.value
    view.show("GREETED", previous="DATA", verb="<end-of-data>")
    assert "after &lt;end-of-data&gt; in DATA" in view.caption.value
    assert repr(view) == "StateMachineView(role='client', current='GREETED')"
    bundle = view._repr_mimebundle_()
    assert bundle["text/plain"] == repr(view)
    assert "application/vnd.jupyter.widget-view+json" in bundle


def _overlapping_words(role: str, **kw: float) -> list[tuple[str, str]]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    figure = state_diagram(role, current="GREETED", **kw).figure
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    renderer = canvas.get_renderer()
    texts = [(t.get_text(), t.get_window_extent(renderer)) for t in figure.axes[0].texts]
    return [(a, b) for i, (a, box) in enumerate(texts) for b, other in texts[:i]
            if box.overlaps(other)]


@pytest.mark.parametrize("max_width", [MAX_WIDTH, 8.6])  # a notebook's size, the stepper's
def test_the_server_diagram_s_words_do_not_overlap(max_width: float) -> None:
    # each label takes the first free place beside its arc or its node (notebook 2 had
    # ↻ lists over the STARTTLS and AUTH arrows near CONNECTED and GREETED)
    assert _overlapping_words("server", max_width=max_width) == []


def test_a_state_the_layout_does_not_know_gets_readable_words(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import simsmtp.ui.states as states

    layout = {k: v for k, v in states.LAYOUT["server"].items() if k != "AUTH"}
    monkeypatch.setitem(states.LAYOUT, "server", layout)  # AUTH goes to the bottom row
    assert len(_overlapping_words("server")) <= 1
