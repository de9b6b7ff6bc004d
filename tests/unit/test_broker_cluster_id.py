"""The KRaft cluster id handed to `kafka-storage format -t`: a leading '-' made the tool read the
id as an option (a fresh broker start failed about once in 64; seen in CI on 2026-11-29)."""

from __future__ import annotations

import base64
import uuid

import pytest

from stream import broker


def test_cluster_id_never_starts_with_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    dash_first = uuid.UUID(bytes=b"\xfb" + bytes(15))  # urlsafe base64 of 0xfb... starts with '-'
    assert base64.urlsafe_b64encode(dash_first.bytes).decode().startswith("-")
    draws = iter([dash_first, dash_first, uuid.UUID(bytes=b"\x00" * 16)])
    monkeypatch.setattr(broker.uuid, "uuid4", lambda: next(draws))
    cid = broker.new_cluster_id()
    assert cid == "A" * 22  # the third draw, the first without a leading '-'


def test_cluster_ids_are_22_char_urlsafe_and_distinct() -> None:
    ids = {broker.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(c) == 22 and not c.startswith("-") and set(c) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for c in ids)
