"""Fault injection for the changelog test: a real worker whose table changelog records take
`SLOW_CHANGELOG_S` each to leave Faust's producer buffer, as on a busy event loop or a slow broker
(`python -m tests.integration.slow_changelog_worker`). Faust's buffer flush gives up after 0.1 s
without progress (`ProducerBuffer.flush_atmost`), so a commit then went out ahead of the state
changes of the events it committed. `SLOW_CHANGELOG_COMMIT_WAIT_S` shortens how long a commit waits
for those records before it is skipped (`stream.app.CHANGELOG_COMMIT_WAIT_S`), so that skipped
commits happen in a short test."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from faust.transport.producer import ProducerBuffer

from stream import app as stream_app
from stream.settings import Settings
from stream.worker import run_worker

SLOW_CHANGELOG_S = float(os.environ.get("SLOW_CHANGELOG_S", "0.25"))
_send_pending = ProducerBuffer._send_pending


async def _slow_send_pending(self: ProducerBuffer, fut: Any) -> None:
    await asyncio.sleep(SLOW_CHANGELOG_S)
    await _send_pending(self, fut)


if __name__ == "__main__":
    ProducerBuffer._send_pending = _slow_send_pending  # type: ignore[method-assign]
    if "SLOW_CHANGELOG_COMMIT_WAIT_S" in os.environ:
        stream_app.CHANGELOG_COMMIT_WAIT_S = float(os.environ["SLOW_CHANGELOG_COMMIT_WAIT_S"])
    run_worker(Settings.from_env())
