"""Malformed raw events, one per kind, shared by the unit tests of the contract and the
integration test that sends them through the real broker."""

from __future__ import annotations

import json
import time

_NOW = time.time()


def _ev(**over: object) -> bytes:
    base: dict[str, object] = {"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": 4}
    for k, v in over.items():
        if v is _DROP:
            base.pop(k, None)
        else:
            base[k] = v
    return json.dumps(base).encode()


_DROP = object()

MALFORMED: list[tuple[str, bytes | None]] = [
    ("not json", b"hello world"),
    ("truncated json", b'{"user_id": "1", "item_id": '),
    ("json array", b"[1, 2, 3]"),
    ("json string", b'"just a string"'),
    ("json number", b"42"),
    ("json null", b"null"),
    ("empty payload", b""),
    ("whitespace payload", b"   \n "),
    ("null message value", None),
    ("missing user_id", _ev(user_id=_DROP)),
    ("empty user_id", _ev(user_id="")),
    ("blank user_id", _ev(user_id="   ")),
    ("bool user_id", _ev(user_id=True)),
    ("float user_id", _ev(user_id=1.5)),
    ("object user_id", _ev(user_id={"id": 1})),
    ("list item_id", _ev(item_id=[1])),
    ("missing item_id", _ev(item_id=_DROP)),
    ("null item_id", _ev(item_id=None)),
    ("control chars in user_id", _ev(user_id="ab\u0000cd")),
    ("user_id too long", _ev(user_id="x" * 300)),
    ("missing type", _ev(type=_DROP)),
    ("unknown type", _ev(type="teleport")),
    ("numeric type", _ev(type=5)),
    ("missing ts", _ev(ts=_DROP)),
    ("ts far in the future", _ev(ts=_NOW + 10 * 365 * 86400)),
    ("ts before 1990", _ev(ts=1000)),
    ("ts in milliseconds", _ev(ts=_NOW * 1000)),
    ("ts unparseable string", _ev(ts="yesterday")),
    ("ts bool", _ev(ts=True)),
    ("value NaN literal", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": NaN}'),
    ("value Infinity literal", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": Infinity}'),
    ("value -Infinity literal", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": -Infinity}'),
    ("ts NaN literal", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": NaN}'),
    ("rating out of range", _ev(value=11)),
    ("negative purchase quantity", _ev(type="purchase", value=-1)),
    ("value as string", _ev(value="5")),
    ("value integer beyond float range",
     b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": ' + b"9" * 400 + b"}"),
    ("ts integer beyond float range", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": ' + b"9" * 400 + b"}"),
    ("huge number value", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "value": 1e999}'),
    ("oversize payload", _ev(pad="x" * 100_000)),
    ("deeply nested array", b"[" * 100_000 + b"]" * 100_000),
    ("deeply nested field", b'{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949, "x": '
     + b'{"a": ' * 50_000 + b"1" + b"}" * 50_000 + b"}"),
    ("invalid utf-8", b'\xff\xfe{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949}'),
    ("utf-16 encoded json", '{"user_id": "u1", "item_id": "1", "type": "rate", "ts": 881250949}'.encode("utf-16")),
    ("integer id beyond digit limit", b'{"user_id": ' + b"9" * 5000 + b', "item_id": "1", "type": "rate", "ts": 881250949}'),
    ("empty event_id", _ev(event_id="")),
]
