from __future__ import annotations

import json

import pytest

from model.events import Event, InvalidEvent, parse_event
from tests.malformed import MALFORMED


@pytest.mark.parametrize("name,raw", MALFORMED, ids=[n for n, _ in MALFORMED])
def test_malformed_events_are_rejected_with_a_reason(name: str, raw: bytes | None) -> None:
    with pytest.raises(InvalidEvent) as exc:
        parse_event(raw)  # type: ignore[arg-type]
    assert len(str(exc.value)) > 5


def test_integer_ids_become_strings_and_extra_fields_are_dropped() -> None:
    ev = parse_event(json.dumps({"user_id": 7, "item_id": 42, "type": "RATE", "ts": 881250949, "value": 4,
                                 "email": "a@b.c"}).encode())
    assert ev == Event(user_id="7", type="rate", ts=881250949.0, item_id="42", value=4.0)
    assert "email" not in ev.to_json()


def test_iso_timestamps_are_utc_and_naive_means_utc() -> None:
    a = parse_event(b'{"user_id": "u", "item_id": "i", "type": "view", "ts": "1998-03-01T12:00:00Z"}')
    b = parse_event(b'{"user_id": "u", "item_id": "i", "type": "view", "ts": "1998-03-01T12:00:00"}')
    c = parse_event(b'{"user_id": "u", "item_id": "i", "type": "view", "ts": "1998-03-01T13:00:00+01:00"}')
    assert a.ts == b.ts == c.ts == 888753600.0


def test_timestamps_keep_second_resolution() -> None:
    # float32 would merge these two ML-100k timestamps (~64 s resolution at 8.8e8).
    a = parse_event(b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 881250949}')
    b = parse_event(b'{"user_id": "u", "item_id": "i", "type": "view", "ts": 881250950}')
    assert b.ts - a.ts == 1.0


def test_forget_needs_no_item_or_ts() -> None:
    ev = parse_event(b'{"user_id": "u9", "type": "forget"}')
    assert ev.type == "forget" and ev.item_id is None and ev.user_id == "u9"


def test_hypothesis_messages_are_classified_as_constructed() -> None:
    """1,500 hypothesis-generated messages (bench/fuzz.py): each valid rendering parses to the
    event it was made from; each hostile one raises InvalidEvent (never another exception)."""
    from bench.fuzz import generate

    base = [{"user_id": str(u), "item_id": str(100 + i), "type": t, "ts": 881250949.0 + i, "value": 3.0,
             "event_id": f"e{i}"} for i, (u, t) in enumerate((u % 40, "rate") for u in range(2000))]
    msgs = generate(base, 1500, seed=7)
    kinds = {m.kind for m in msgs}
    assert sum(m.valid for m in msgs) >= 300 and sum(not m.valid for m in msgs) >= 300  # both well represented
    assert len([k for k in kinds if k.startswith("invalid/")]) >= 10  # every hostile family shows up
    for m in msgs:
        if m.valid:
            assert m.event is not None
            ev = parse_event(m.value)  # type: ignore[arg-type]
            want = m.event
            assert (ev.user_id, ev.item_id, ev.type, ev.ts, ev.value) == (
                str(want["user_id"]), str(want["item_id"]), want["type"], float(want["ts"]), float(want["value"])), m
        else:
            with pytest.raises(InvalidEvent):
                parse_event(m.value)  # type: ignore[arg-type]
