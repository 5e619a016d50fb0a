"""The base of every course widget.

A :class:`View` is a plain Python object that builds an ipywidgets tree in ``.widget`` and
keeps references to the controls a test (or a curious learner) may drive::

    editor = MXEditor(net)
    editor.add_button.click()              # what a click in the browser does
    editor.rows[1].preference.value = 5     # what typing a number does
    "backup" in editor.route_view.value    # what the learner now sees

Shown as the value of a cell it displays the widget; its plain-text form (what
``print`` and nbval see) is a short, stable ``repr`` rather than ipywidgets' dump of every
child, so stored notebooks stay readable and reproducible.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from simsmtp.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from simsmtp.world.model import World


_HTML_CLASS: Any = None
_BLOCKS = re.compile(r"<(div|table|pre|br|ol|ul|p|details)\b", re.I)
_TAGS = re.compile(r"<[^>]+>")


def readable(value: str) -> str:
    """``value`` at a reading line height: an ipywidgets ``HTML`` widget's own line height
    (28 px) is made for one-line labels beside buttons, so anything longer (blocks, or
    text that may wrap) gets 1.45."""
    if not value or value.startswith('<div style="line-height:1.45;">'):
        return value
    if _BLOCKS.search(value) or len(_TAGS.sub("", value)) > 80:
        return f'<div style="line-height:1.45;">{value}</div>'
    return value


def html_widget(value: str = "", **kwargs: Any) -> Any:
    """An ipywidgets ``HTML`` widget whose every value is :func:`readable` (the one HTML
    widget of the course)."""
    global _HTML_CLASS
    if _HTML_CLASS is None:
        import ipywidgets as w
        from traitlets import validate

        class ReadableHTML(w.HTML):  # type: ignore[misc]
            @validate("value")
            def _readable(self, proposal: Any) -> str:
                return readable(str(proposal["value"]))

        _HTML_CLASS = ReadableHTML
    return _HTML_CLASS(value=value, **kwargs)


def tabs(children: list[Any], titles: list[str]) -> Any:
    """Tabs made of toggle buttons over a stack: every title in full (ipywidgets' ``Tab``
    cuts long titles) and in readable contrast. ``.buttons`` picks, ``.stack`` shows."""
    import ipywidgets as w

    buttons = w.ToggleButtons(options=titles, value=titles[0],
                              style={"button_width": "auto"})
    buttons.add_class("simsmtp-tab-buttons")
    stack = w.Stack(children=children, selected_index=0)
    stack.add_class("simsmtp-tab-stack")
    w.jslink((buttons, "index"), (stack, "selected_index"))  # works in the page alone
    box = w.VBox([buttons, stack])
    box.add_class("simsmtp-tabs")
    box.buttons, box.stack = buttons, stack
    return box


#: What a widget says when the world it drives is stopped.
WORLD_STOPPED = ("The world of this notebook is stopped, so this widget cannot reach it: "
                 "run the first cell again (it boots a fresh world), then this cell.")


def plain_error(exc: BaseException) -> str:
    """An exception in plain words for a learner (no traceback, no class path)."""
    if isinstance(exc, TimeoutError):
        return "No answer came in time: the server may be down (net.bring_up(...)) or " \
               "stalled by a fault rule (print(world.faults))."
    if isinstance(exc, ConnectionRefusedError):
        return "The connection was refused: nothing listens there now (a host taken " \
               "down? net.bring_up(...))."
    if isinstance(exc, (ConnectionError, EOFError)):
        return "The connection was closed by the other side."
    text = str(exc).strip() or type(exc).__name__
    return text[0].upper() + text[1:]


class View:
    """Base class: subclasses set ``self.widget`` (an ipywidgets ``Box``).

    Every callback of a widget goes through :meth:`guarded`: an error is shown inside the
    widget, in plain words (never only in JupyterLab's hidden log), and a widget whose world
    is stopped says so and what to do.
    """

    _widget: Any = None
    _problem: Any = None

    @property
    def widget(self) -> Any:
        """The ipywidgets tree; it carries the CSS classes ``simsmtp-view`` and
        ``simsmtp-<class name>`` (``simsmtp-mxeditor``), so a browser test finds every view."""
        return self._widget

    @widget.setter
    def widget(self, value: Any) -> None:
        self._widget = value
        if hasattr(value, "add_class"):
            value.add_class("simsmtp-view")
            value.add_class(f"simsmtp-{type(self).__name__.lower()}")

    def world_stopped(self) -> bool:
        """True when the running network this widget drives (``self.net``) is stopped."""
        net = getattr(self, "net", None)
        return net is not None and getattr(net, "running", True) is False

    def show_problem(self, message: str) -> None:
        """Show ``message`` in a red box at the top of the widget (an empty one clears it)."""
        from .style import callout, escape

        if self._problem is None:
            if not message:
                return
            self._problem = html_widget()
            self._problem.add_class("simsmtp-problem")
        self._problem.value = callout("fail", escape(message), "Problem:") if message else ""
        children = tuple(getattr(self.widget, "children", ()))
        if message and self._problem not in children and hasattr(self.widget, "children"):
            self.widget.children = (self._problem, *children)

    def guarded(self, action: Callable[[Any], Any]) -> Callable[[Any], None]:
        """``action`` as a widget callback: errors shown in the widget, in plain words."""
        def callback(event: Any = None) -> None:
            if self.world_stopped():
                self.show_problem(WORLD_STOPPED)
                return
            try:
                action(event)
            except Exception as exc:  # shown to the learner, never lost in a log
                self.show_problem(plain_error(exc))
            else:
                if self._problem is not None and self._problem.value:
                    self.show_problem("")
        return callback

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None,
                          **kwargs: Any) -> Any:
        bundle = self.widget._repr_mimebundle_(include=include, exclude=exclude, **kwargs)
        if isinstance(bundle, tuple):  # (data, metadata)
            data, metadata = bundle
            return {**data, "text/plain": repr(self)}, metadata
        return {**bundle, "text/plain": repr(self)}

    def display(self) -> None:
        """Show the widget now (in the middle of a cell)."""
        from IPython import display as ipython_display

        show: Any = ipython_display.display
        show(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


__all__ = ["WORLD_STOPPED", "View", "html_widget", "plain_error", "readable", "tabs"]


def left_out(source: Any, since: int = 0) -> str:
    """"N older events were left out …" when the trace of ``source`` (a world or a trace)
    no longer holds every event from position ``since`` on; "" otherwise."""
    from simsmtp.world.model import World

    trace = source.trace if isinstance(source, World) else source
    return trace.left_out(since) if isinstance(trace, Trace) else ""


def trace_events(source: Any) -> tuple[list[TraceEvent], World | None]:
    """What a view shows: the events of a :class:`~simsmtp.world.model.World` (with the
    world), of a :class:`~simsmtp.trace.Trace`, or of any iterable of events (no world)."""
    from simsmtp.world.model import World

    if isinstance(source, World):
        return source.trace.events(), source
    if isinstance(source, Trace):
        return source.events(), None
    return list(source), None
