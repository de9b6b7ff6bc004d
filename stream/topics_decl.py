"""Faust topic declarations (names from `stream.topics`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .topics import topic_names

if TYPE_CHECKING:
    from .app import ProfilestreamApp

__all__ = ["declare"]


def declare(app: "ProfilestreamApp") -> None:
    n = topic_names(app.ps_settings)
    p = app.ps_settings.partitions
    # Topics are created by ensure_topics() with their configs; Faust must not re-declare them.
    kw: dict[str, Any] = dict(partitions=p, key_type=bytes, value_type=bytes, internal=False)
    app.raw_topic = app.topic(n.raw, **kw)
    app.events_topic = app.topic(n.events, **kw)
    app.dlq_topic = app.topic(n.dlq, **kw)
    app.profiles_topic = app.topic(n.profiles, **kw)
    app.recs_topic = app.topic(n.recommendations, **kw)
