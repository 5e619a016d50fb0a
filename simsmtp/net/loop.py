"""An asyncio event loop running in a daemon thread.

A world's servers, its DNS and its outbound agent all run on one loop in a background
thread, so a notebook cell (or a test) stays free to call into them from the main thread::

    loop = EventLoopThread(name="world").start()
    listener = loop.run(create_listener(...))
    loop.stop()

The loop is made by the current event-loop policy: on Windows the proactor loop (or the
selector loop a Jupyter kernel installs there); a world needs nothing that only one kind of
loop has (client sockets are connected by the loop itself where it must, see
:func:`simsmtp.net.channel.open_connection`).

Every running loop is kept in a module registry; an :mod:`atexit` hook stops them all when
the interpreter ends (which is also what happens when a Jupyter kernel restarts), so no
socket outlives its world.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import threading
from collections.abc import Callable, Coroutine
from types import TracebackType
from typing import Any, TypeVar

T = TypeVar("T")

#: Every EventLoopThread that is started and not yet stopped.
_RUNNING: set[EventLoopThread] = set()
_RUNNING_LOCK = threading.Lock()


class EventLoopThread:
    """An asyncio loop in its own daemon thread.

    Args:
        name: the thread's name (shows in debuggers and ``threading.enumerate()``).
        stop_timeout: how long :meth:`stop` waits for tasks to finish and the thread to end.
    """

    def __init__(self, name: str = "simsmtp-loop", *, stop_timeout: float = 5.0) -> None:
        self.name = name
        self.stop_timeout = stop_timeout
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._state = "new"  # new -> running -> stopped
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> EventLoopThread:
        """Start the thread; return (self) once the loop is running.

        Raises:
            RuntimeError: the loop was already started (a stopped loop cannot restart).
        """
        with self._lock:
            if self._state != "new":
                raise RuntimeError(f"{self.name}: already {self._state}")
            self._state = "running"
            loop = asyncio.new_event_loop()
            self._loop = loop
            started = threading.Event()
            self._thread = threading.Thread(target=self._main, args=(loop, started),
                                            name=self.name, daemon=True)
            self._thread.start()
        started.wait()
        with _RUNNING_LOCK:
            _RUNNING.add(self)
        return self

    def _main(self, loop: asyncio.AbstractEventLoop, started: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(started.set)
        try:
            loop.run_forever()
        finally:
            # Stopped by something other than stop(): still cancel what is left.
            with contextlib.suppress(Exception):
                loop.run_until_complete(_cancel_all(loop))
            loop.close()

    def stop(self) -> None:
        """Cancel the remaining tasks, close the loop and join the thread (idempotent).

        Raises:
            RuntimeError: called from the loop's own thread (it cannot join itself).
        """
        with self._lock:
            if self._state != "running":
                self._state = "stopped"
                return
            if self.in_loop_thread():
                raise RuntimeError(f"{self.name}: stop() called from the loop's own thread")
            self._state = "stopped"
        loop, thread = self._loop, self._thread
        assert loop is not None and thread is not None
        if not loop.is_closed():
            try:
                future = asyncio.run_coroutine_threadsafe(_cancel_all(loop, executor=True), loop)
                with contextlib.suppress(Exception):
                    future.result(self.stop_timeout)
                loop.call_soon_threadsafe(loop.stop)
            except RuntimeError:  # closed meanwhile (the thread ended on its own)
                pass
        thread.join(self.stop_timeout)
        with _RUNNING_LOCK:
            _RUNNING.discard(self)

    def __enter__(self) -> EventLoopThread:
        return self.start() if self._state == "new" else self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------
    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The asyncio loop (only to be used from its own thread or with *threadsafe calls)."""
        if self._loop is None:
            raise RuntimeError(f"{self.name}: not started")
        return self._loop

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._state == "running"

    def in_loop_thread(self) -> bool:
        """True when called from the loop's own thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    # -- calling in ----------------------------------------------------------------------
    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop from another thread and return its result.

        Args:
            coro: the coroutine to run.
            timeout: seconds to wait; on expiry the coroutine is cancelled.

        Raises:
            TimeoutError: the coroutine did not finish within ``timeout``.
            RuntimeError: the loop is not running, or this is the loop's own thread
                (blocking there would deadlock: ``await`` the coroutine instead).
        """
        if not self.running:
            coro.close()
            raise RuntimeError(f"{self.name}: loop is not running")
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError(f"{self.name}: run() from the loop thread would deadlock; "
                               "await the coroutine instead")
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"{self.name}: no result within {timeout} s") from None

    def call_soon(self, fn: Callable[..., object], *args: object) -> None:
        """Schedule ``fn(*args)`` on the loop (thread-safe; returns at once)."""
        if not self.running:
            raise RuntimeError(f"{self.name}: loop is not running")
        self.loop.call_soon_threadsafe(fn, *args)

    def __repr__(self) -> str:
        return f"<EventLoopThread {self.name!r} {self._state}>"


async def _cancel_all(loop: asyncio.AbstractEventLoop, *, executor: bool = False) -> None:
    """Cancel every task of ``loop`` but the caller, wait for them, finish async generators
    (and, with ``executor``, the default thread pool used by ``run_in_executor``)."""
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks(loop) if t is not current and not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.gather(*tasks, return_exceptions=True)
    await loop.shutdown_asyncgens()
    if executor:
        await loop.shutdown_default_executor()


def running_loops() -> list[EventLoopThread]:
    """The loops started and not yet stopped (a snapshot)."""
    with _RUNNING_LOCK:
        return list(_RUNNING)


def stop_all() -> None:
    """Stop every running :class:`EventLoopThread` (registered with :mod:`atexit`)."""
    for loop_thread in running_loops():
        if not loop_thread.in_loop_thread():
            loop_thread.stop()


atexit.register(stop_all)
