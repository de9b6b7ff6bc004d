"""The guards stream/app.py and stream/agents.py put around faust-streaming's rebalance handling
(issue 5): flow control that keeps the records of the current generation, the in-flight batch
gate a rebalance waits on, and the per-event generation check."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from mode.utils.queues import FlowControlQueue

from stream.agents import is_current
from stream.app import Inflight, _FlowControl
from stream.metrics import WorkerMetrics


def test_resume_keeps_queued_records_when_the_flow_was_already_active() -> None:
    async def main() -> tuple[int, int]:
        fc = _FlowControl()
        q: FlowControlQueue = FlowControlQueue(maxsize=10, flow_control=fc, clear_on_resume=True)  # as faust.Channel makes them
        fc.resume()  # recovery starts reading: suspended → active
        q.put_nowait("record of the new generation")
        fc.resume()  # recovery completed: already active, must not drop it
        kept = q.qsize()
        fc.suspend()  # a rebalance: what is queued now belongs to the old generation
        fc.resume()
        return kept, q.qsize()

    kept, after_rebalance = asyncio.run(main())
    assert kept == 1
    assert after_rebalance == 0


def test_inflight_reports_idle_only_after_the_last_batch() -> None:
    async def main() -> list[bool]:
        gate = Inflight()
        out = [await gate.wait_idle(0.01)]
        with gate:
            with gate:
                pass
            out.append(await gate.wait_idle(0.01))  # one batch still runs
        out.append(await gate.wait_idle(0.01))
        return out

    assert asyncio.run(main()) == [True, False, True]


@dataclass
class Msg:
    generation_id: int
    acked: bool = False


@dataclass
class Ev:
    message: Msg


@dataclass
class FakeApp:
    active: bool
    consumer_generation_id: int
    metrics: WorkerMetrics = field(default_factory=WorkerMetrics)
    unacked: set[Any] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.flow_control = SimpleNamespace(is_active=lambda: self.active)
        self.consumer = SimpleNamespace(unacked=self)  # `.discard` below goes to this object

    def discard(self, msg: Any) -> None:
        self.unacked.discard(id(msg))


def stale(app: FakeApp) -> float:
    return app.metrics.registry.get_sample_value("profilestream_stale_events_total") or 0.0


def test_current_events_pass_and_stay_ackable() -> None:
    app = FakeApp(active=True, consumer_generation_id=3)
    ev = Ev(Msg(3))
    assert is_current(app, ev)  # type: ignore[arg-type]
    assert not ev.message.acked
    assert stale(app) == 0


def test_events_of_an_old_generation_or_during_a_rebalance_are_held_back_unacked() -> None:
    for app, msg in [(FakeApp(active=True, consumer_generation_id=4), Msg(3)),    # fetched before the rebalance
                     (FakeApp(active=False, consumer_generation_id=3), Msg(3))]:  # rebalance under way
        app.unacked.add(id(msg))
        assert not is_current(app, Ev(msg))  # type: ignore[arg-type]
        # marked so that Faust's ack is a no-op: the offset is not committed, the next owner reads it
        assert msg.acked
        assert id(msg) not in app.unacked
        assert stale(app) == 1
