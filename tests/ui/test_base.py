"""Every widget callback shows its errors inside the widget, in plain words, and a widget
whose world is stopped says so and what to do."""

from __future__ import annotations

from typing import Any

from simsmtp.ui.base import WORLD_STOPPED, View, plain_error
from simsmtp.ui.console import Console
from simsmtp.ui.mx import MXEditor
from simsmtp.world import World


def _problem(view: View) -> str:
    shown = [c for c in view.widget.children if "simsmtp-problem" in c._dom_classes]
    return shown[0].value if shown else ""


def test_a_stopped_world_is_said_inside_the_widget() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        console = Console(net)
        editor = MXEditor(net)
    assert not net.running
    console.connect_button.click()
    assert "world of this notebook is stopped" in _problem(console)
    assert "run the first cell again" in _problem(console)
    editor.add_button.click()
    assert _problem(editor).count("stopped") == 1
    assert "The world of this notebook is stopped" in WORLD_STOPPED


def test_a_failing_callback_is_shown_in_plain_words_then_cleared() -> None:
    world = World.seed_world()
    with world.start(storage="memory") as net:
        editor = MXEditor(net)
        calls: list[Any] = []

        def boom(_: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("mx.example is not a host of this world")

        callback = editor.guarded(boom)
        callback(None)
        assert "Mx.example is not a host of this world" in _problem(editor)
        assert "Traceback" not in _problem(editor) and "ValueError" not in _problem(editor)
        callback(None)   # it works now: the problem goes away
        assert _problem(editor) == ""


def test_plain_words_for_network_errors() -> None:
    assert "refused" in plain_error(ConnectionRefusedError(111, "Connection refused"))
    assert "in time" in plain_error(TimeoutError())
    assert plain_error(RuntimeError("")) == "RuntimeError"
