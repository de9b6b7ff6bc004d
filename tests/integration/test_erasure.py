"""`forget` erases a user: tombstones on both output topics, state gone, later events start fresh."""

from __future__ import annotations

from typing import Any, Callable

import pytest

from model import ProfileModel
from stream import Settings
from stream.replay import iter_dataset_events, produce_events

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration


def test_forget_erases_and_later_events_start_fresh(stream_settings: Settings,
                                                    worker_factory: Callable[..., Worker]) -> None:
    s = stream_settings.with_(batch_size=32)
    events = list(iter_dataset_events("ml-100k", s))[:1200]
    hist = by_user(events)
    victim = max(hist, key=lambda u: len(hist[u]))
    before, after = hist[victim][: len(hist[victim]) // 2], hist[victim][len(hist[victim]) // 2:]
    others = [e for e in events if e["user_id"] != victim]
    sequence: list[Any] = before + others[:600] + [{"user_id": victim, "type": "forget"}] + after + others[600:]
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    produce_events(s, sequence, progress=False)
    expected = {u: len(h) for u, h in by_user(others).items()}
    expected[victim] = len(after)  # counting starts again after the erasure
    wait_for(lambda: caught_up(outputs, expected) and victim in outputs.tombstones["profiles"]
             and victim in outputs.tombstones["recommendations"], timeout=120,
             what="erasure tombstones and later events applied", poll=outputs.poll)
    model = ProfileModel.load(s.artifact_path)
    # The victim's profile now equals a fresh pass over the events after `forget` only.
    others_hist = by_user(others)
    assert_parity(model, outputs, {victim: after, **{u: others_hist[u] for u in list(others_hist)[:10]}}, s.top_k)
    assert worker.metrics()["profilestream_forgets_total"] == 1
    outputs.close()
