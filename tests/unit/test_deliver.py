"""stream.app.deliver: a fetched record goes to the agents' queues at once when there is room
(no task per record), and when there is not, a flow suspension still ends the wait as Faust's
`wait_first(callback, suspend_flow.wait())` did."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

import pytest
from mode import Service

from stream.app import deliver


def _run(scenario: Callable[[Service, asyncio.Event, list[int]], Awaitable[Any]]) -> tuple[Any, list[int]]:
    async def main() -> tuple[Any, list[int]]:
        tasks = [0]
        loop = asyncio.get_running_loop()

        def counting_factory(loop: asyncio.AbstractEventLoop, coro: Any, **kw: Any) -> asyncio.Task[Any]:
            tasks[0] += 1
            return asyncio.Task(coro, loop=loop, **kw)

        service = Service()
        await service.start()
        loop.set_task_factory(counting_factory)
        try:
            return await asyncio.wait_for(scenario(service, asyncio.Event(), tasks), timeout=10), tasks
        finally:
            loop.set_task_factory(None)
            await service.stop()

    return asyncio.run(main())


def test_a_record_with_room_in_the_queue_is_put_without_any_task() -> None:
    async def scenario(service: Service, suspend: asyncio.Event, tasks: list[int]) -> list[int]:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=10)
        before = tasks[0]
        for i in range(5):
            await deliver(q.put(i), suspend, service.wait_first)
        assert tasks[0] == before  # Faust's wait_first made four per record
        return [q.get_nowait() for _ in range(q.qsize())]

    got, _ = _run(scenario)
    assert got == [0, 1, 2, 3, 4]


def test_a_full_queue_is_waited_on_until_it_has_room() -> None:
    async def scenario(service: Service, suspend: asyncio.Event, tasks: list[int]) -> list[int]:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        q.put_nowait(0)
        before = tasks[0]
        pending = asyncio.ensure_future(deliver(q.put(1), suspend, service.wait_first))
        while not q._putters:  # type: ignore[attr-defined]  # the put is waiting for room
            await asyncio.sleep(0)
        assert not pending.done()
        first = await q.get()
        await pending
        assert tasks[0] - before > 1  # only this slow path makes tasks (beyond `pending` itself)
        return [first, q.get_nowait()]

    got, _ = _run(scenario)
    assert got == [0, 1]


def test_a_flow_suspension_ends_the_wait_and_the_record_is_not_put() -> None:
    async def scenario(service: Service, suspend: asyncio.Event, tasks: list[int]) -> tuple[int, int]:
        q: asyncio.Queue[int] = asyncio.Queue(maxsize=1)
        q.put_nowait(0)
        pending = asyncio.ensure_future(deliver(q.put(1), suspend, service.wait_first))
        while not q._putters:  # type: ignore[attr-defined]
            await asyncio.sleep(0)
        suspend.set()  # a rebalance: the wait must end although the queue is still full
        await pending
        first = q.get_nowait()  # room now: a put that was still waiting would take it within a few turns
        for _ in range(5):
            await asyncio.sleep(0)
        return first, q.qsize()

    (first, left), _ = _run(scenario)
    assert (first, left) == (0, 0)  # the waiting put was cancelled, not completed


@pytest.mark.parametrize("after_a_wait", [False, True])
def test_an_error_in_the_callback_reaches_the_caller(after_a_wait: bool) -> None:
    async def scenario(service: Service, suspend: asyncio.Event, tasks: list[int]) -> None:
        gate = asyncio.Event()

        async def callback() -> None:
            if after_a_wait:
                await gate.wait()
            raise ValueError("bad record")

        if after_a_wait:
            asyncio.get_running_loop().call_soon(gate.set)
        await deliver(callback(), suspend, service.wait_first)

    with pytest.raises(ValueError, match="bad record"):
        _run(scenario)
