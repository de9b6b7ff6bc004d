"""Reading outputs back and checking them against the offline model pass."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np

from model import ProfileModel
from stream import Settings
from stream.consume import OutputFollower

SCHEMAS = {name: json.loads((Path(__file__).resolve().parents[2] / "docs" / "schemas" / f"{name}.v1.json").read_text())
           for name in ("profile", "recommendations", "dlq")}


def _validate(kind: str, value: dict[str, Any]) -> None:
    jsonschema.validate(value, SCHEMAS[kind])


def Outputs(settings: Settings) -> OutputFollower:  # noqa: N802 - reads like the class it returns
    """Follows profiles, recommendations and the DLQ; validates every record against its schema."""
    return OutputFollower(settings, validate=_validate)


def by_user(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        out.setdefault(str(e["user_id"]), []).append(e)
    return out


def caught_up(outputs: OutputFollower, expected: dict[str, int]) -> bool:
    return all(outputs.profiles.get(u, {}).get("events_seen") == n and outputs.recs.get(u, {}).get("seq") ==
               outputs.profiles[u]["seq"] for u, n in expected.items())


def assert_parity(model: ProfileModel, outputs: OutputFollower, histories: dict[str, list[dict[str, Any]]], k: int) -> float:
    """Each user's last emitted profile/recommendations equal the offline pass; returns max |diff|."""
    worst = 0.0
    for uid, hist in histories.items():
        state = model.replay_history(hist)
        profile, recs = model.outputs([state], k=k)[0]
        online = outputs.profiles[uid]
        diff = float(np.max(np.abs(np.array(online["vector"]) - np.array(profile["vector"]))))
        worst = max(worst, diff)
        assert diff <= 1e-5, f"user {uid}: profile vector differs by {diff}"
        assert online["events_seen"] == profile["events_seen"] == len(hist)
        assert online["tags"].keys() == profile["tags"].keys()
        assert_same_recs(outputs.recs[uid]["items"], recs["items"], uid)
    return worst


def assert_same_recs(online: list[dict[str, Any]], offline: list[dict[str, Any]], uid: str) -> None:
    """Equal lists; a swap is tolerated only between items whose scores tie within 1e-5
    (float32 matmuls of different batch sizes may round the last bit differently)."""
    a = [it["item_id"] for it in online]
    b = [it["item_id"] for it in offline]
    sa = np.array([it["score"] for it in online])
    sb = np.array([it["score"] for it in offline])
    assert len(a) == len(b), f"user {uid}: {len(a)} vs {len(b)} recommendations"
    np.testing.assert_allclose(sa, sb, atol=1e-5, rtol=0, err_msg=f"user {uid}: recommendation scores differ")
    if a == b:
        return
    for j, (x, y) in enumerate(zip(a, b)):
        if x != y:
            near = [i for i in range(len(sb)) if abs(sb[i] - sb[j]) <= 1e-5]
            assert len(near) > 1, f"user {uid}: item {j} is {x} online but {y} offline, with no tie: {a} vs {b}"
    assert set(a[:-1]) <= set(b) | {x for x in a if abs(sa[-1] - sa[a.index(x)]) <= 1e-5}, f"user {uid}: {a} vs {b}"
