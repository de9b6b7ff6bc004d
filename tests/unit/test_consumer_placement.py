"""Where the worker's Kafka consumer runs (PROFILESTREAM_CONSUMER_THREAD; docs/operations.md
"Consumer thread"): on the worker's event loop by default, in Faust's consumer thread with its own
loop when asked. The in-loop consumer reuses Faust's thread service, so its shutdown must not do
what the thread's does to the loop it ran on."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

import pytest
from mode.threads import ServiceThread

from stream.app import create_app_shell
from stream.settings import Settings


def _app(thread: bool):  # noqa: ANN202 - a ProfilestreamApp
    s = Settings.from_env({"PROFILESTREAM_CONSUMER_THREAD": "1" if thread else "0"}, state_dir=Path(tempfile.mkdtemp()))
    return create_app_shell(s, None)


@pytest.mark.parametrize("thread", [False, True], ids=["event-loop", "faust-thread"])
def test_the_consumer_runs_where_the_setting_says(thread: bool) -> None:
    app = _app(thread)
    service = app.consumer._thread
    assert (service.thread_loop is app.loop) is not thread
    assert (service.thread_loop is service.parent_loop) is not thread


def test_the_in_loop_consumer_calls_aiokafka_directly_and_spares_the_workers_tasks() -> None:
    app = _app(False)
    service = app.consumer._thread
    loop = app.loop

    async def main() -> None:
        assert asyncio.get_running_loop() is service.thread_loop

        async def aiokafka_call(x: int) -> int:
            await asyncio.sleep(0)
            return x + 1

        # no method queue (it is not even started): the call is awaited in this task
        assert await service.call_thread(aiokafka_call, 41) == 42
        assert await service.call_thread(lambda: 7) == 7

        bystander = asyncio.ensure_future(asyncio.sleep(30))  # one of the worker's own tasks
        await service._gather_remaining_tasks()
        await asyncio.sleep(0)
        assert not bystander.done(), "stopping the consumer must leave the worker's tasks running"
        # what the thread version's clean-up would have done on this loop: cancel them all
        await ServiceThread._gather_remaining_tasks(service)
        assert bystander.cancelled()

    loop.run_until_complete(main())
