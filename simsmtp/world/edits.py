"""How a world notices its own edits cheaply (no process-wide state).

A running world asks "did the DNS data change?" before every DNS answer; with 1,000
domains, comparing their whole state each time costs more than the answer. So each part
that holds DNS data (a World, its ``domains`` dict and ``records`` list, a Domain and its
``mx`` list) has an EditCount that counts its edits and passes each one up to the counts
of the parts that hold it: a domain's MX edit reaches its world's count, and
World.dns_version() is O(1). Nothing is shared between worlds. A plain list a notebook
assigns later (``domain.mx = [...]``) is kept as it is (the same object) and compared by
content instead, so in-place edits of it are seen too.
"""

from __future__ import annotations

import functools
from typing import Any

__all__ = ["EditCount", "WatchedDict", "WatchedList", "edit_count", "watched_dict",
           "watched_list"]


class EditCount:
    """How many edits one part of a world has seen, its own and those of the parts it holds.

    ``count`` grows by one per edit. A part held by another (a domain in a world's
    ``domains``) is linked up to the holder's count, which then counts the part's edits too;
    ``loose`` lists the domains below whose ``mx`` is a plain list (compared by content).
    Copies and pickles start with a fresh, unlinked count.
    """

    __slots__ = ("_ups", "count", "loose")

    def __init__(self) -> None:
        self.count = 0
        self.loose: dict[EditCount, Any] = {}
        self._ups: list[EditCount] = []

    def __reduce__(self) -> tuple[type[EditCount], tuple[()]]:
        return (EditCount, ())

    def edited(self) -> None:
        """Count one edit here and in every part that holds this one."""
        self.count += 1
        for up in self._ups:
            up.edited()

    def link(self, up: EditCount) -> None:
        """Pass this part's edits (and loose domains) to ``up`` from now on."""
        if up is self or any(u is up for u in self._ups):
            return
        self._ups.append(up)
        if self.loose:
            up._loosen(dict(self.loose))

    def unlink(self, up: EditCount) -> None:
        """Stop passing edits to ``up`` (the part left its holder)."""
        for i, u in enumerate(self._ups):
            if u is up:
                del self._ups[i]
                if self.loose:
                    up._tighten(list(self.loose))
                return

    def mark_loose(self, domain: Any, loose: bool) -> None:
        """Note whether ``domain`` (whose count this is) has a plain ``mx`` list."""
        if loose and self not in self.loose:
            self._loosen({self: domain})
        elif not loose and self in self.loose:
            self._tighten([self])

    def _loosen(self, items: dict[EditCount, Any]) -> None:
        self.loose.update(items)
        for up in self._ups:
            up._loosen(items)

    def _tighten(self, keys: list[EditCount]) -> None:
        for key in keys:
            self.loose.pop(key, None)
        for up in self._ups:
            up._tighten(keys)


def edit_count(value: Any) -> EditCount | None:
    """The edit count of a watched container or a domain, else None."""
    count = getattr(value, "_edits", None)
    return count if isinstance(count, EditCount) else None


class WatchedList(list[Any]):
    """A list that counts every change in its own :class:`EditCount`; otherwise a plain
    list (copies and pickles are fresh watched lists)."""

    __slots__ = ("_edits",)

    def __init__(self, *args: Any) -> None:
        self._edits = EditCount()
        super().__init__(*args)

    def __reduce__(self) -> tuple[Any, ...]:
        return (WatchedList, (list(self),))


def _count_edits(cls: type, base: type, names: tuple[str, ...]) -> None:
    """Make the methods ``names`` of ``base`` (every one that changes the container) count
    an edit in ``cls`` after they ran."""
    for name in names:
        method = getattr(base, name)

        @functools.wraps(method)
        def edit(self: Any, *args: Any, _method: Any = method, **kwargs: Any) -> Any:
            result = _method(self, *args, **kwargs)
            self._edits.edited()
            return result

        setattr(cls, name, edit)


_count_edits(WatchedList, list, ("__setitem__", "__delitem__", "__iadd__", "__imul__",
                                  "append", "extend", "insert", "remove", "pop", "clear",
                                  "sort", "reverse"))


class WatchedDict(dict[Any, Any]):
    """A dict that counts every change in its own :class:`EditCount` and links the counts
    of the domains it holds to it; otherwise a plain dict (copies and pickles are fresh
    watched dicts)."""

    __slots__ = ("_edits",)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._edits = EditCount()
        super().__init__(*args, **kwargs)
        self._adopt(self.values())

    def __reduce__(self) -> tuple[Any, ...]:
        return (WatchedDict, (dict(self),))

    def _adopt(self, values: Any) -> None:
        for value in values:
            if (count := edit_count(value)) is not None:
                count.link(self._edits)

    def _release(self, values: Any) -> None:
        kept: set[int] | None = None  # the values still held (one may be under two keys)
        for value in values:
            count = edit_count(value)
            if count is None:
                continue
            if kept is None:
                kept = {id(v) for v in self.values()}
            if id(value) not in kept:
                count.unlink(self._edits)

    def _changed(self, added: Any = (), removed: Any = ()) -> None:
        self._release(removed)
        self._adopt(added)
        self._edits.edited()

    def __setitem__(self, key: Any, value: Any) -> None:
        old = self.get(key)
        super().__setitem__(key, value)
        self._changed((value,), () if old is None or old is value else (old,))

    def __delitem__(self, key: Any) -> None:
        old = self[key]
        super().__delitem__(key)
        self._changed(removed=(old,))

    def __ior__(self, other: Any) -> Any:  # type: ignore[misc]
        self.update(other)
        return self

    def pop(self, key: Any, *default: Any) -> Any:
        had = key in self
        value = super().pop(key, *default)
        if had:
            self._changed(removed=(value,))
        return value

    def popitem(self) -> tuple[Any, Any]:
        item = super().popitem()
        self._changed(removed=(item[1],))
        return item

    def clear(self) -> None:
        old = list(self.values())
        super().clear()
        self._changed(removed=old)

    def update(self, *args: Any, **kwargs: Any) -> None:
        old = list(self.values())
        super().update(*args, **kwargs)
        self._changed(self.values(), old)

    def setdefault(self, key: Any, default: Any = None) -> Any:
        had = key in self
        value = super().setdefault(key, default)
        if not had:
            self._changed((value,))
        return value


def watched_list(value: Any) -> Any:
    """A watched copy of a plain list (what a constructor was given), else ``value``."""
    return WatchedList(value) if type(value) is list else value


def watched_dict(value: Any) -> Any:
    """A watched copy of a plain dict (what a constructor was given), else ``value``."""
    return WatchedDict(value) if type(value) is dict else value
