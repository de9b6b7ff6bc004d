"""Hostile-input generator for the fuzz scenario: hypothesis draws each message's *kind* and its
contents; whether a message is valid is decided by construction (which generator made it), never
by asking the validator under test.

Valid messages carry real ML-100k events (in order, keyed by user, so each user's events stay on
one partition) rendered in legal but unusual ways: extra and nested unknown fields, integer ids,
ISO-8601 timestamps, upper-case types with spaces, non-ASCII escapes, unicode user ids, boundary
values. Invalid messages are random bytes, invalid UTF-8, arbitrary JSON that is not an event,
truncated events, oversized and deeply nested payloads, wrong field types, numeric extremes and
unicode control characters in ids.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Callable

__all__ = ["FuzzMessage", "generate"]

#: Unicode ids that are printable (so valid), chosen to stress encodings and key handling.
#: (Format characters such as ZWJ or the RTL override are not printable: the contract rejects them.)
_UNICODE_TAGS = ("ユーザー", "Straße", "e\u0301", "😀", "👍🏽", "עברית", "Ω≈ç√", "中文", "ﬁ", "𝔘𝔫𝔦", "İı")


@dataclass(frozen=True)
class FuzzMessage:
    kind: str  # the generator that made it, e.g. "valid/iso-ts" or "invalid/random-bytes"
    valid: bool  # by construction
    key: bytes | None
    value: bytes | None
    event: dict[str, Any] | None = None  # valid only: the event as the offline pass should see it


# ---- valid renderings of one event ---------------------------------------------------------
# Each takes the canonical event and a hypothesis `data` object and returns (wire object, canonical).

def _plain(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    return dict(ev), ev


def _extra_fields(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    from hypothesis import strategies as st

    extra = data.draw(st.dictionaries(st.text(min_size=1, max_size=12).filter(lambda k: k not in (
        "user_id", "item_id", "type", "ts", "value", "event_id")), _json_values(max_leaves=8), max_size=4))
    return {**ev, **extra}, ev


def _int_ids(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    obj = dict(ev)
    for f in ("user_id", "item_id"):
        if str(obj[f]).isdigit() and not str(obj[f]).startswith("0"):
            obj[f] = int(obj[f])
    return obj, ev


def _iso_ts(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    from hypothesis import strategies as st

    ts = int(ev["ts"])
    offset = data.draw(st.sampled_from(["Z", "+00:00", "", "+02:00"]))
    dt = datetime.fromtimestamp(ts, tz=timezone.utc)
    if offset == "+02:00":
        text = (dt + timedelta(hours=2)).replace(tzinfo=None).isoformat() + "+02:00"
    else:
        text = dt.replace(tzinfo=None).isoformat() + ("+00:00" if offset == "Z" else offset)
    return {**ev, "ts": text}, {**ev, "ts": float(ts)}


def _type_case(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    return {**ev, "type": f"  {str(ev['type']).upper()} "}, ev


def _unicode_user(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    from hypothesis import strategies as st

    tag = data.draw(st.sampled_from(_UNICODE_TAGS))
    uid = f"{tag}-{ev['user_id']}"
    return {**ev, "user_id": uid}, {**ev, "user_id": uid}


def _boundary_value(ev: dict[str, Any], data: Any) -> tuple[Any, dict[str, Any]]:
    from hypothesis import strategies as st

    v = data.draw(st.sampled_from([0, 0.0, 10, 10.0, 5e-324, 2.2250738585072014e-308, 9.999999999999998]))
    return {**ev, "type": "rate", "value": v}, {**ev, "type": "rate", "value": float(v)}


_VALID: dict[str, Callable[[dict[str, Any], Any], tuple[Any, dict[str, Any]]]] = {
    "plain": _plain, "extra-fields": _extra_fields, "int-ids": _int_ids, "iso-ts": _iso_ts,
    "type-case": _type_case, "unicode-user": _unicode_user, "boundary-value": _boundary_value,
}


def _json_values(max_leaves: int = 20) -> Any:
    from hypothesis import strategies as st

    leaf = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text()
    return st.recursive(leaf, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c, max_size=4),
                        max_leaves=max_leaves)


# ---- invalid messages ------------------------------------------------------------------------

#: The valid event the invalid kinds start from. Fixed, so that what hypothesis draws never depends
#: on state outside the strategy (hypothesis requires that of a strategy).
_TEMPLATE: dict[str, Any] = {"user_id": "196", "item_id": "242", "type": "rate", "ts": 881250949, "value": 3}


def _invalid(data: Any, kind: str) -> bytes | None:
    from hypothesis import strategies as st

    ev = _TEMPLATE
    draw = data.draw
    if kind == "random-bytes":
        raw: bytes = draw(st.binary(max_size=300))
        return raw
    if kind == "invalid-utf8":
        body = json.dumps(ev).encode()
        bad: bytes = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80", b"\x80"]))
        cut = draw(st.integers(0, len(body)))
        return body[:cut] + bad + body[cut:]
    if kind == "not-an-event":  # any JSON without a 'type' field, or not an object at all
        v = draw(_json_values())
        if isinstance(v, dict):
            v.pop("type", None)
        return json.dumps(v).encode()
    if kind == "truncated":
        body = json.dumps(ev).encode()
        return body[:draw(st.integers(0, len(body) - 1))]
    if kind == "huge":  # a valid event padded past the 64 KiB message limit
        pad = draw(st.sampled_from(["x" * 70_000, "€" * 30_000, list(range(20_000))]))
        return json.dumps({**ev, "padding": pad}).encode()
    if kind == "deep-nesting":
        depth: int = draw(st.integers(1_500, 30_000))
        inner = "[" * depth + "]" * depth
        if draw(st.booleans()):
            return inner.encode()
        return json.dumps(ev)[:-1].encode() + b', "nested": ' + inner.encode() + b"}"
    if kind == "wrong-type":
        field = draw(st.sampled_from(["user_id", "item_id", "type", "ts", "value"]))
        bad = draw(st.sampled_from([None, True, False, [], {}, [1], {"a": 1}, 1.5] if field != "value"
                                   else ["5", True, [], {}, "NaN"]))
        if field == "type" and bad is None:
            bad = 7
        if field in ("user_id", "item_id") and bad is None:
            obj = {k: v for k, v in ev.items() if k != field}  # missing instead of null
            return json.dumps(obj).encode()
        return json.dumps({**ev, field: bad}).encode()
    if kind == "numeric-extreme":
        field, text = draw(st.sampled_from([
            ("ts", "1e400"), ("ts", "-1e400"), ("ts", "1e18"), ("ts", "-5"), ("ts", "0"), ("ts", "9" * 400),
            ("ts", "1.7976931348623157e308"), ("value", "1e400"), ("value", "-1e-300"), ("value", "1e308"),
            ("value", "9" * 500), ("value", "-0.000001"), ("value", "10.000001"), ("value", "NaN"),
            ("value", "Infinity"), ("ts", "-Infinity"), ("value", "9" * 5000)]))
        obj = {**ev, "type": "rate"}
        body = json.dumps({**obj, field: "@@"}).encode()
        return body.replace(b'"@@"', text.encode())
    if kind == "unicode-control":
        field = draw(st.sampled_from(["user_id", "item_id"]))
        char: str = draw(st.sampled_from(["\u0000", "\u0007", "\u200b", "\ufeff", "\ud800", "\udfff", "\x7f"]))
        where = draw(st.sampled_from(["prefix", "suffix", "middle"]))
        s = str(ev[field])
        val = {"prefix": char + s, "suffix": s + char, "middle": s[:1] + char + s[1:]}[where]
        return json.dumps({**ev, field: val}).encode()  # ensure_ascii: lone surrogates go out as \\udXXX escapes
    if kind == "unknown-type":
        t = draw(st.text(min_size=1, max_size=20).filter(
            lambda x: x.strip().lower() not in ("view", "click", "cart", "purchase", "rate", "skip", "forget")))
        return json.dumps({**ev, "type": t}).encode()
    if kind == "null-value":
        return None
    raise ValueError(kind)


_INVALID = ("random-bytes", "invalid-utf8", "not-an-event", "truncated", "huge", "deep-nesting", "wrong-type",
            "numeric-extreme", "unicode-control", "unknown-type", "null-value")


def generate(base: list[dict[str, Any]], n: int, *, seed: int = 0, valid_share: float = 0.5) -> list[FuzzMessage]:
    """`n` messages, roughly `valid_share` of them (hypothesis leans to small draws: about 0.6 in
    practice) valid renderings of `base` events, consumed in order so each user's valid events
    keep their order. Seeded: the same call, from the same call site and hypothesis version,
    gives the same list."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st
    from hypothesis.errors import NonInteractiveExampleWarning

    out: list[FuzzMessage] = []
    it = iter(base)
    cut = int(valid_share * 1000)

    @hseed(seed)
    @settings(max_examples=n, database=None, phases=[Phase.generate], deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(st.data())
    def draw_one(data: Any) -> None:
        if len(out) >= n:
            return
        if data.draw(st.integers(0, 999)) < cut:
            ev = next(it, None)
            if ev is None:
                raise IndexError(f"fuzz needs more base events than the {len(base)} given")
            name = data.draw(st.sampled_from(sorted(_VALID)))
            wire, canon = _VALID[name](ev, data)
            ensure_ascii = data.draw(st.booleans())
            indent = data.draw(st.sampled_from([None, 2]))
            out.append(FuzzMessage(f"valid/{name}", True, str(canon["user_id"]).encode(),
                                   json.dumps(wire, ensure_ascii=ensure_ascii, indent=indent).encode(), canon))
        else:
            kind = data.draw(st.sampled_from(_INVALID))
            key = data.draw(st.none() | st.binary(max_size=16))
            out.append(FuzzMessage(f"invalid/{kind}", False, key, _invalid(data, kind)))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NonInteractiveExampleWarning)
        while len(out) < n:  # hypothesis may stop a run early; draw again until there are n
            before = len(out)
            draw_one()
            if len(out) == before:
                break
    return out[:n]
