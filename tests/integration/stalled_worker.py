"""Fault injection for the stall watchdog test: a real worker whose profile agent hangs for good
in its first batch, after it has seen the batch's events (`python -m tests.integration.stalled_worker`)."""

from __future__ import annotations

import asyncio
from typing import Any

from stream.agents import ProfileProcessor
from stream.settings import Settings
from stream.worker import run_worker


async def _hang(self: ProfileProcessor, work: Any, states: Any, clock: Any) -> None:
    await asyncio.Event().wait()


if __name__ == "__main__":
    ProfileProcessor._apply_round = _hang  # type: ignore[method-assign]
    run_worker(Settings.from_env())
