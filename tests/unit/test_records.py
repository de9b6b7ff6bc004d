"""The JSON the stream writes: compact UTF-8, exact floats, and the DLQ record's fields."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from model import ProfileModel
from stream.records import DLQ_RAW_LIMIT, dlq_record, encode
from tests.conftest import synthetic_history


def test_outputs_encode_to_json_that_reads_back_exactly(small_artifact: Path) -> None:
    model = ProfileModel.load(small_artifact)
    profile, recs = model.outputs([model.replay_history(synthetic_history("Zoë", 30))], k=5)[0]
    for record in (profile, recs):
        data = encode(record)
        assert json.loads(data) == record  # every float back to the same value, bit for bit
    assert '"user_id":"Zoë"'.encode() in encode(profile)  # UTF-8, not \\u escapes


def test_encode_matches_the_standard_library_byte_for_byte_without_floats() -> None:
    obj = {"reason": "similar to Amélie (2001) (Comedy, Romance)", "n": [1, 2, 3], "none": None, "ok": True}
    assert encode(obj) == json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def test_dlq_record_keeps_the_exact_bytes_and_says_why() -> None:
    raw = b"\xff\xfe not utf-8"
    rec = json.loads(dlq_record("payload is not valid UTF-8", raw, stage="normalize", topic="t", partition=2,
                                offset=7, key=b"u1"))
    assert rec["reason"] == "payload is not valid UTF-8"
    assert rec["raw"] is None and base64.b64decode(rec["raw_base64"]) == raw
    assert rec["source"] == {"topic": "t", "partition": 2, "offset": 7} and rec["key"] == "u1"
    big = b"x" * (DLQ_RAW_LIMIT + 10)
    rec = json.loads(dlq_record("too big", big, stage="normalize", topic="t", partition=0, offset=0))
    assert rec["raw_truncated"] and rec["raw_bytes"] == len(big) and len(rec["raw"]) == DLQ_RAW_LIMIT
