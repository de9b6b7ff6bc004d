"""Fault injection for the stall watchdog test: a real worker whose Kafka fetches stop getting
answers once its profile agent has finished its first batch (`python -m tests.integration.deaf_worker`).

Every fetch request aiokafka sends after that waits for good, without an error: the consumer group
stays joined (heartbeats and commits go through other requests), and the agents simply see no more
records. That is how the upstream stall after a broker restart looked (stream/stall.py): nothing
fetched, nothing logged. The agents themselves are untouched, unlike `stalled_worker`, whose agent
hangs."""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from aiokafka.consumer.fetcher import Fetcher

from stream.agents import ProfileProcessor
from stream.settings import Settings
from stream.worker import run_worker

_deaf = False
_fetch = Fetcher._proc_fetch_request
_process = ProfileProcessor.process


async def _proc_fetch_request(self: Fetcher, assignment: Any, node_id: int, request: Any) -> Any:
    if _deaf:
        await asyncio.Event().wait()  # the broker's answer never comes
    return await _fetch(self, assignment, node_id, request)


async def _process_then_go_deaf(self: ProfileProcessor, batch: Sequence[Any]) -> None:
    global _deaf
    await _process(self, batch)
    _deaf = True


if __name__ == "__main__":
    Fetcher._proc_fetch_request = _proc_fetch_request  # type: ignore[method-assign]
    ProfileProcessor.process = _process_then_go_deaf  # type: ignore[method-assign]
    run_worker(Settings.from_env())
