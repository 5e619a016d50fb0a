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

from typing import TYPE_CHECKING, Any

from simsmtp.trace import Trace, TraceEvent

if TYPE_CHECKING:
    from simsmtp.world.model import World


class View:
    """Base class: subclasses set ``self.widget`` (an ipywidgets ``Widget``)."""

    widget: Any

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


__all__ = ["View"]


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
