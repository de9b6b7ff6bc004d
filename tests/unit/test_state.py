from __future__ import annotations

import numpy as np
import pytest

import struct

from model.state import MARK_DTYPE, RECENT_DTYPE, StateFormatError, UserState, pack_state, unpack_state


def _state() -> UserState:
    rng = np.random.default_rng(0)
    recent = np.zeros(3, RECENT_DTYPE)
    recent["item"] = [5, 9, 2]
    recent["ts"] = [881250949.0, 881250950.0, 881250999.5]
    recent["value"] = [4.0, np.nan, 1.0]
    return UserState(h=rng.standard_normal(8).astype(np.float32), c=rng.standard_normal(8).astype(np.float32),
                     tags=rng.standard_normal(4).astype(np.float32), recent=recent,
                     event_ids=np.array([1, 2**63 + 5], np.uint64), model_version="abcdef012345", events_seen=3,
                     raw_marks=np.array([(0, 12), (3, 2**40)], MARK_DTYPE),
                     seq=2, last_partition=1, last_offset=77, last_ts=881250999.5)


def test_round_trip_is_exact() -> None:
    s = _state()
    t = unpack_state(pack_state(s))
    for name in ("h", "c", "tags", "event_ids"):
        np.testing.assert_array_equal(getattr(s, name), getattr(t, name))
    assert s.recent.tobytes() == t.recent.tobytes()
    assert t.raw_marks.tolist() == [(0, 12), (3, 2**40)]
    assert (t.model_version, t.events_seen, t.seq, t.last_partition, t.last_offset, t.last_ts) == \
        ("abcdef012345", 3, 2, 1, 77, 881250999.5)


def test_unknown_version_is_an_error_not_garbage() -> None:
    data = bytearray(pack_state(_state()))
    data[0] = 99
    with pytest.raises(StateFormatError, match="version 99"):
        unpack_state(bytes(data))


@pytest.mark.parametrize("cut", [0, 5, 40, -1])
def test_truncated_state_is_an_error(cut: int) -> None:
    data = pack_state(_state())
    with pytest.raises(StateFormatError):
        unpack_state(data[:cut])


def test_version_1_states_still_unpack_without_raw_marks() -> None:
    # A value written before 2026-11-29 (format 1: no raw marks, one header field fewer), laid
    # out by hand from the format-1 description, so this does not reuse the code under test.
    s = _state()
    head = struct.pack("<B16sQQiqdHHHH", 1, b"abcdef012345", 3, 2, 1, 77, 881250999.5, 8, 4, 3, 2)
    v1 = head + s.h.tobytes() + s.c.tobytes() + s.tags.tobytes() + s.recent.tobytes() + s.event_ids.tobytes()
    t = unpack_state(v1)
    np.testing.assert_array_equal(t.h, s.h)
    np.testing.assert_array_equal(t.event_ids, s.event_ids)
    assert (t.events_seen, t.seq, t.last_offset, len(t.raw_marks)) == (3, 2, 77, 0)
    assert unpack_state(pack_state(t)).raw_marks.size == 0 and pack_state(t)[0] == 2


def test_a_model_version_that_is_not_text_is_a_format_error() -> None:
    # Without the check the worker got a UnicodeDecodeError, which its StateFormatError handler
    # (the user's events to the dead-letter topic) does not catch.
    data = bytearray(pack_state(_state()))
    data[1:3] = b"\xff\xfe"  # the model version field starts after the format byte
    with pytest.raises(StateFormatError, match="model version"):
        unpack_state(bytes(data))


def test_pack_converts_arrays_held_in_another_dtype() -> None:
    # Code that assigns a float64 or int64 array to a state must still store the float32 / uint64
    # layout the header describes, not the array's own bytes.
    s = _state()
    want = pack_state(s)
    s.h = s.h.astype(np.float64)
    s.tags = s.tags.astype(np.float64)
    s.event_ids = s.event_ids.view(np.int64)  # same bits, signed (2**63 + 5 reads as negative)
    s.c = s.c[::-1].copy()[::-1]  # a non-contiguous view with the same values
    assert pack_state(s) == want
