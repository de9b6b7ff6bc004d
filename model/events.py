"""The input event contract: parse and validate raw bytes once, at the edge.

Everything downstream (the profile agent, the offline `ProfileModel.profile`) receives
`Event` records and trusts them. Validation failures raise `InvalidEvent` whose message is
meant for a person reading the dead-letter topic.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Final, Literal, Mapping

__all__ = [
    "EVENT_TYPES",
    "CONTROL_TYPES",
    "Event",
    "InvalidEvent",
    "parse_event",
    "validate_event",
    "MAX_EVENT_BYTES",
]

EventType = Literal["view", "click", "cart", "purchase", "rate", "skip"]
#: Item event types, in the order of the model's type embedding (never reorder: artifacts
#: store embeddings by this index).
EVENT_TYPES: Final[tuple[str, ...]] = ("view", "click", "cart", "purchase", "rate", "skip")
#: Control events: no item, not fed to the model.
CONTROL_TYPES: Final[tuple[str, ...]] = ("forget",)

#: Default ceiling on one raw message; larger payloads go to the DLQ unparsed.
MAX_EVENT_BYTES: Final[int] = 64 * 1024
MAX_ID_CHARS: Final[int] = 256
#: 1990-01-01T00:00:00Z: anything earlier is a unit mistake (ms vs s) or garbage.
MIN_TS: Final[float] = 631_152_000.0
#: Clock skew allowed for producers whose clocks run ahead.
MAX_FUTURE_S: Final[float] = 86_400.0
#: Per-type value ranges: ratings, dwell seconds, quantities.
VALUE_RANGES: Final[Mapping[str, tuple[float, float]]] = {
    "rate": (0.0, 10.0),
    "view": (0.0, 86_400.0),
    "click": (0.0, 86_400.0),
    "skip": (0.0, 86_400.0),
    "cart": (0.0, 10_000.0),
    "purchase": (0.0, 10_000.0),
}


class InvalidEvent(ValueError):
    """Raised for input that breaks the event contract; the message is the DLQ reason."""


@dataclass(frozen=True, slots=True)
class Event:
    """One validated event. `ts` is float64 epoch seconds (never float32: ML-100k needs it)."""

    user_id: str
    type: str
    ts: float
    item_id: str | None = None
    value: float | None = None
    event_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"user_id": self.user_id, "type": self.type, "ts": self.ts}
        if self.item_id is not None:
            out["item_id"] = self.item_id
        if self.value is not None:
            out["value"] = self.value
        if self.event_id is not None:
            out["event_id"] = self.event_id
        return out


def _reject_constant(name: str) -> Any:
    # json.loads accepts NaN / Infinity literals by default; the contract does not.
    raise InvalidEvent(f"non-standard JSON number literal {name!r}")


def parse_event(raw: bytes | None, *, now: float | None = None, max_bytes: int = MAX_EVENT_BYTES) -> Event:
    """Decode one raw Kafka message value into an `Event`, or raise `InvalidEvent`."""
    if raw is None:
        raise InvalidEvent("empty message (null value)")
    if len(raw) > max_bytes:
        raise InvalidEvent(f"payload of {len(raw)} bytes exceeds the {max_bytes}-byte limit")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"payload is not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise InvalidEvent("empty message")
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except InvalidEvent:
        raise
    except RecursionError:
        raise InvalidEvent("JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise InvalidEvent(f"not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer literal longer than Python's digit limit
        raise InvalidEvent(f"not valid JSON: {str(exc)[:120]}") from None
    return validate_event(obj, now=now)


def _id_field(obj: Mapping[str, Any], name: str) -> str:
    v = obj.get(name)
    if v is None:
        raise InvalidEvent(f"missing required field {name!r}")
    if isinstance(v, bool) or not isinstance(v, (str, int)):
        raise InvalidEvent(f"{name!r} must be a string or an integer, got {type(v).__name__}")
    s = str(v).strip()
    if not s:
        raise InvalidEvent(f"{name!r} is empty")
    if len(s) > MAX_ID_CHARS:
        raise InvalidEvent(f"{name!r} is longer than {MAX_ID_CHARS} characters")
    if not s.isprintable():
        raise InvalidEvent(f"{name!r} contains control characters")
    return s


def _as_float(v: int | float, name: str) -> float:
    try:
        return float(v)
    except OverflowError:  # an integer literal beyond float range (e.g. 400 digits)
        raise InvalidEvent(f"{name!r} integer is too large ({len(str(v))} digits)") from None


def _timestamp(v: Any, now: float) -> float:
    if v is None:
        raise InvalidEvent("missing required field 'ts'")
    if isinstance(v, bool):
        raise InvalidEvent("'ts' must be epoch seconds or an ISO-8601 string, got bool")
    if isinstance(v, (int, float)):
        ts = _as_float(v, "ts")
    elif isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.strip())
        except ValueError:
            raise InvalidEvent(f"'ts' string {v[:40]!r} is not ISO-8601") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)  # naive times are taken as UTC
        ts = dt.timestamp()
    else:
        raise InvalidEvent(f"'ts' must be epoch seconds or an ISO-8601 string, got {type(v).__name__}")
    if not math.isfinite(ts):
        raise InvalidEvent("'ts' is not a finite number")
    if ts < MIN_TS:
        raise InvalidEvent(f"'ts' {ts:.0f} is before 1990-01-01 (milliseconds instead of seconds?)")
    if ts > now + MAX_FUTURE_S:
        raise InvalidEvent(f"'ts' {ts:.0f} is more than a day in the future")
    return ts


def validate_event(obj: Any, *, now: float | None = None) -> Event:
    """Validate an already-decoded JSON value against the event contract."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"event must be a JSON object, got {type(obj).__name__}")
    now = time.time() if now is None else now
    etype_raw = obj.get("type")
    if etype_raw is None:
        raise InvalidEvent("missing required field 'type'")
    if not isinstance(etype_raw, str):
        raise InvalidEvent(f"'type' must be a string, got {type(etype_raw).__name__}")
    etype = etype_raw.strip().lower()
    if etype not in EVENT_TYPES and etype not in CONTROL_TYPES:
        known = ", ".join(EVENT_TYPES + CONTROL_TYPES)
        raise InvalidEvent(f"unknown event type {etype_raw[:40]!r} (known: {known})")
    user_id = _id_field(obj, "user_id")
    event_id: str | None = None
    if obj.get("event_id") is not None:
        event_id = _id_field(obj, "event_id")
    if etype in CONTROL_TYPES:
        ts_raw = obj.get("ts")
        ts = _timestamp(ts_raw, now) if ts_raw is not None else now
        return Event(user_id=user_id, type=etype, ts=ts, event_id=event_id)
    item_id = _id_field(obj, "item_id")
    ts = _timestamp(obj.get("ts"), now)
    value: float | None = None
    v = obj.get("value")
    if v is not None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise InvalidEvent(f"'value' must be a number, got {type(v).__name__}")
        value = _as_float(v, "value")
        if not math.isfinite(value):
            raise InvalidEvent("'value' is not a finite number")
        lo, hi = VALUE_RANGES[etype]
        if not lo <= value <= hi:
            raise InvalidEvent(f"'value' {value:g} out of range [{lo:g}, {hi:g}] for type {etype!r}")
    return Event(user_id=user_id, type=etype, ts=ts, item_id=item_id, value=value, event_id=event_id)
