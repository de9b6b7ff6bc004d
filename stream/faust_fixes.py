"""A fix to faust-streaming's recovery order, applied when the app is built.

`Recovery.on_recovery_completed` (faust-streaming 0.15.x) resumes the stream partitions *before* it
seeks them to their committed offsets. A worker that had to read a changelog has its flow running
already (Faust resumes it to read the changelog), so in the gap between the two calls the fetcher
delivers records from the consumer's old position; the seek then rewinds the consumer, records
already handed to the stream are partly skipped, and Faust's read-offset bookkeeping drops the
re-fetched ones. Seen in the rebalance chaos test (issue 5): a new worker forwarded raw offsets
817-830, then 836 onwards; 831-835 stayed un-acked, so the committed offset stuck there and they
were forwarded only after the next rebalance, behind later events of the same users (profiles
applied in the wrong order), or were marked as a gap and never applied (events lost).

The same ordering bug was fixed upstream for apps without tables (faust-streaming PR #217, issue
#216: "seek, then resume"); this applies that order to the table path too. The rest of the method
is Faust's own, unchanged.
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["apply"]

_applied = False


async def _on_recovery_completed(self: Any, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callback_coros = [
        asyncio.ensure_future(table.on_recovery_completed(self.actives_for_table[table],
                                                          self.standbys_for_table[table]))
        for table in self.tables.values()
    ]
    if callback_coros:
        await asyncio.wait(callback_coros)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning(f"Recovery rebalancing again app id {self.app.consumer_generation_id} param {generation_id}")
        return
    if assignment:  # the fix: seek while the stream partitions are still paused ...
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(), timeout=self.app.conf.broker_request_timeout)
    # ... and only then let the fetcher hand their records to the streams.
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await self.app._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


def apply() -> None:
    """Install the fix (idempotent). Refuses a faust-streaming whose method it was not written for."""
    global _applied
    if _applied:
        return
    import faust
    from faust.tables.recovery import Recovery

    if not faust.__version__.startswith("0.15."):
        raise RuntimeError(f"stream/faust_fixes.py patches faust-streaming 0.15.x, found {faust.__version__}: "
                           "check Recovery.on_recovery_completed still resumes before it seeks, then update the pin")
    Recovery.on_recovery_completed = _on_recovery_completed  # type: ignore[method-assign]
    _applied = True
