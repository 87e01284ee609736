"""``_eager.start``: a coroutine's first step runs at once, a task carries on only if needed."""

from __future__ import annotations

import asyncio
import contextvars

import pytest

from sipgate_ai_flow._eager import start

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="caller")


async def test_a_coroutine_that_never_waits_runs_to_the_end_without_a_task():
    ran: list[str] = []

    async def quick() -> None:
        ran.append("all of it")

    assert start(quick()) is None
    assert ran == ["all of it"]  # before start() returned: no loop iteration needed


async def test_a_coroutine_that_waits_runs_its_first_step_at_once_then_in_a_task():
    gate: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    steps: list[str] = []

    async def slow() -> None:
        steps.append("before")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield to the loop, resumed too
        steps.append("after")

    task = start(slow())
    assert isinstance(task, asyncio.Task)
    assert steps == ["before"]
    gate.set_result("woken")
    await asyncio.wait_for(task, 5)
    assert steps == ["before", "woken", "after"]


async def test_context_variables_stay_with_the_coroutine_across_its_suspension():
    gate: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    seen: list[str] = []

    async def sets_a_variable() -> None:
        var.set("handler")
        await gate
        seen.append(var.get())

    task = start(sets_a_variable())
    assert var.get() == "caller"  # nothing leaked into the caller
    gate.set_result(None)
    assert task is not None
    await task
    assert seen == ["handler"]
    assert var.get() == "caller"


async def test_an_exception_before_the_first_wait_reaches_the_caller():
    async def broken() -> None:
        raise ValueError("at once")

    with pytest.raises(ValueError, match="at once"):
        start(broken())


async def test_an_exception_after_a_wait_fails_the_task():
    async def broken_later() -> None:
        await asyncio.sleep(0)
        raise ValueError("later")

    task = start(broken_later())
    assert task is not None
    with pytest.raises(ValueError, match="later"):
        await task


async def test_cancelled_before_its_task_ran_it_cancels_what_it_waits_for_and_cleans_up():
    waited_on: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    cleaned: list[bool] = []

    async def waits() -> None:
        try:
            await waited_on
        finally:
            cleaned.append(True)

    task = start(waits())
    assert task is not None
    task.cancel()  # before the loop ever ran the task's first step
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert waited_on.cancelled()  # whoever completes it knows nobody takes the result


async def test_cancelled_while_waiting_later_it_cleans_up():
    loop = asyncio.get_running_loop()
    first: asyncio.Future[None] = loop.create_future()
    second: asyncio.Future[None] = loop.create_future()
    cleaned: list[bool] = []

    async def waits_twice() -> None:
        await first
        try:
            await second
        finally:
            cleaned.append(True)

    task = start(waits_twice())
    assert task is not None
    first.set_result(None)
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == [True]
    assert second.cancelled()
