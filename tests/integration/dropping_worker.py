"""Fault injection for the stall watchdog test: a real worker that drops the first round of stream
records its fetch loop gets after the generation's seek, after the Kafka client has counted them
consumed (`python -m tests.integration.dropping_worker [--hide]`).

The fetch position is then past records the agents never got, and with nothing new arriving no
later record shows the hole. That is what a rebalance CI run of 2026-12-07 left behind on
events.raw[1] (102 records unread, the watchdog silent; docs/operations.md "Records fetched but
never handed over"). The drop here is where faust-streaming's `getmany` drops records (a round it
ends early), so the fetch loop itself sees it and reads them again. With `--hide` the worker also
forgets the round's bookkeeping (`_round_fetched`): a drop the fetch loop cannot see, which only
the stall watchdog's check finds."""

from __future__ import annotations

import sys
from typing import Any, AsyncIterator

from stream.app import _Consumer
from stream.settings import Settings
from stream.worker import run_worker

_getmany = _Consumer.getmany
_dropped = False


async def _dropping_getmany(self: _Consumer, timeout: float) -> AsyncIterator[tuple[Any, Any]]:
    global _dropped
    dropping = False
    async for tp, message in _getmany(self, timeout=timeout):
        if not _dropped and self._is_stream(tp) and self.sequencer.next_offset(tp) is not None:
            dropping = True  # this whole round
        if dropping:
            continue
        yield tp, message
    if dropping:
        _dropped = True
        if "--hide" in sys.argv:
            self._round_fetched = {}


if __name__ == "__main__":
    _Consumer.getmany = _dropping_getmany  # type: ignore[method-assign]
    run_worker(Settings.from_env())
