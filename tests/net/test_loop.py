"""EventLoopThread: a loop in a daemon thread, called into from other threads."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from simsmtp.net.loop import EventLoopThread, running_loops, stop_all


@pytest.fixture
def loop_thread():
    lt = EventLoopThread(name="test-loop").start()
    yield lt
    lt.stop()


async def _thread_name() -> str:
    await asyncio.sleep(0)
    return threading.current_thread().name


def test_start_returns_with_the_loop_running(loop_thread):
    assert loop_thread.running
    assert loop_thread.loop.is_running()
    assert loop_thread in running_loops()


def test_run_executes_on_the_loop_thread_and_returns_the_result(loop_thread):
    assert loop_thread.run(_thread_name()) == "test-loop"
    assert not loop_thread.in_loop_thread()


def test_run_propagates_exceptions(loop_thread):
    async def boom() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        loop_thread.run(boom())


def test_run_timeout_raises_and_cancels_the_coroutine(loop_thread):
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        loop_thread.run(forever(), timeout=0.05)
    assert cancelled.wait(2)


def test_call_soon_runs_the_function_on_the_loop_thread(loop_thread):
    seen: list[str] = []
    done = threading.Event()

    def fn(tag: str) -> None:
        seen.append(f"{tag}:{threading.current_thread().name}")
        done.set()

    loop_thread.call_soon(fn, "x")
    assert done.wait(2)
    assert seen == ["x:test-loop"]


def test_run_from_the_loop_thread_refuses_instead_of_deadlocking(loop_thread):
    async def nested() -> str:
        coro = _thread_name()
        try:
            loop_thread.run(coro)
        except RuntimeError as exc:
            return str(exc)
        return "no error"

    assert "deadlock" in loop_thread.run(nested(), timeout=2)


def test_stop_cancels_tasks_closes_the_loop_joins_the_thread_and_is_idempotent():
    lt = EventLoopThread(name="stopper").start()
    cleaned = threading.Event()

    async def background() -> None:
        try:
            await asyncio.Event().wait()
        finally:
            cleaned.set()

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(background())
        await asyncio.sleep(0)

    lt.run(spawn())
    thread = lt._thread
    lt.stop()
    assert cleaned.is_set()
    assert lt.loop.is_closed()
    assert thread is not None and not thread.is_alive()
    assert lt not in running_loops()
    lt.stop()  # idempotent
    with pytest.raises(RuntimeError):
        lt.run(_thread_name())
    with pytest.raises(RuntimeError):
        lt.call_soon(print)


def test_stop_from_the_loop_thread_is_refused(loop_thread):
    async def inside() -> str:
        try:
            loop_thread.stop()
        except RuntimeError as exc:
            return str(exc)
        return "stopped"

    assert "own thread" in loop_thread.run(inside())
    assert loop_thread.running


def test_context_manager_starts_and_stops():
    with EventLoopThread(name="ctx") as lt:
        assert lt.run(_thread_name()) == "ctx"
    assert not lt.running
    assert lt.loop.is_closed()


def test_two_loops_in_one_process_are_independent():
    a = EventLoopThread(name="world-a").start()
    b = EventLoopThread(name="world-b").start()
    try:
        assert a.loop is not b.loop
        assert a.run(_thread_name()) == "world-a"
        assert b.run(_thread_name()) == "world-b"
        a.stop()
        assert b.run(_thread_name()) == "world-b"
    finally:
        a.stop()
        b.stop()


def test_stop_all_stops_every_running_loop():
    loops = [EventLoopThread(name=f"many-{i}").start() for i in range(3)]
    stop_all()
    assert all(not lt.running and lt.loop.is_closed() for lt in loops)
    assert not set(loops) & set(running_loops())


def test_interpreter_exit_stops_a_loop_left_running(tmp_path: Path):
    marker = tmp_path / "cancelled"
    script = textwrap.dedent(f"""
        import asyncio
        from simsmtp.net.loop import EventLoopThread

        async def background():
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # not GeneratorExit from garbage collection
                open({str(marker)!r}, "w").write("done")
                raise

        async def spawn():
            asyncio.get_running_loop().create_task(background())
            await asyncio.sleep(0)

        lt = EventLoopThread(name="left-running").start()
        lt.run(spawn())
        # no lt.stop(): the atexit hook must do it
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                            timeout=30, cwd=Path(__file__).resolve().parents[2])
    assert result.returncode == 0, result.stderr
    assert marker.exists() and marker.read_text() == "done"
    assert "Task was destroyed" not in result.stderr
