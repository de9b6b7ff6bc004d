"""With a pseudonymisation key, no raw user id reaches state or outputs; `forget` by the raw id
still erases the user, also after a restart."""

from __future__ import annotations

import json
from typing import Any, Callable

import pytest

from model import ProfileModel
from stream import Settings
from stream.records import pseudonymise
from stream.replay import iter_dataset_events, produce_events

from .conftest import Worker, wait_for
from .helpers import Outputs, assert_parity, by_user, caught_up

pytestmark = pytest.mark.integration

KEY = "test-secret-not-for-production"


def test_pseudonymised_ids_and_erasure_by_raw_id_after_restart(stream_settings: Settings,
                                                              worker_factory: Callable[..., Worker]) -> None:
    s = stream_settings.with_(batch_size=32, pseudonym_key=KEY)
    events = list(iter_dataset_events("ml-100k", s))[:800]
    raw_hist = by_user(events)
    pseudo = {u: pseudonymise(u, KEY) for u in raw_hist}
    worker = worker_factory(s).start()
    outputs = Outputs(s)
    produce_events(s, events, progress=False)
    wait_for(lambda: caught_up(outputs, {pseudo[u]: len(h) for u, h in raw_hist.items()}), timeout=120,
             what="pseudonymised profiles", poll=outputs.poll)
    raw_ids = set(raw_hist)
    assert not raw_ids & (set(outputs.profiles) | set(outputs.recs))
    for rec in list(outputs.profiles.values()) + list(outputs.recs.values()):
        assert rec["user_id"] not in raw_ids and len(rec["user_id"]) == 32
    # The model sees the same events under the pseudonym: parity holds on pseudonymised histories.
    hist_p = {pseudo[u]: [dict(e, user_id=pseudo[u]) for e in h] for u, h in list(raw_hist.items())[:10]}
    assert_parity(ProfileModel.load(s.artifact_path), outputs, hist_p, s.top_k)

    assert worker.stop() == 0, worker.tail()
    worker.start()
    victim = max(raw_hist, key=lambda u: len(raw_hist[u]))
    produce_events(s, [{"user_id": victim, "type": "forget"}], progress=False)
    wait_for(lambda: pseudo[victim] in outputs.tombstones["profiles"]
             and pseudo[victim] in outputs.tombstones["recommendations"], timeout=90,
             what="tombstones for the pseudonym of the forgotten raw id", poll=outputs.poll)
    later: list[Any] = [dict(e, event_id=f"again-{j}") for j, e in enumerate(raw_hist[victim][:3])]
    produce_events(s, later, progress=False)
    wait_for(lambda: outputs.profiles.get(pseudo[victim], {}).get("events_seen") == 3, timeout=60,
             what="a fresh profile after the erasure", poll=outputs.poll)
    assert json.dumps(outputs.profiles[pseudo[victim]]).find(f'"{victim}"') == -1
    outputs.close()
