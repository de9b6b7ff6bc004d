"""Prometheus metrics of a worker, served at /metrics on its web port."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

__all__ = ["WorkerMetrics", "BATCH_PHASES", "READ_AGAIN_REASONS"]

#: The phases of `profilestream_batch_phase_seconds`, in the order a micro-batch goes through them.
BATCH_PHASES = ("wait", "read", "step", "write", "outputs", "send")
#: The reasons of `profilestream_read_again_total`: the path that sent the fetch back.
READ_AGAIN_REASONS = ("before_seek", "not_yielded", "watchdog")
_SECONDS_BUCKETS = (1e-4, 2.5e-4, 5e-4, 1e-3, 2.5e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.25, 1.0)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.events_in = Counter("profilestream_events_in", "raw events read by the validation stage", registry=r)
        self.events_valid = Counter("profilestream_events_valid", "events that passed validation", registry=r)
        self.events_applied = Counter("profilestream_events_applied", "events applied to a user state", registry=r)
        self.events_duplicate = Counter("profilestream_events_duplicate",
                                        "events skipped as already applied (redelivery or repeated event_id)", registry=r)
        self.dlq = Counter("profilestream_dlq", "messages sent to the dead-letter topic", ["stage"], registry=r)
        self.profiles_out = Counter("profilestream_profiles_out", "profile records emitted", registry=r)
        self.recs_out = Counter("profilestream_recommendations_out", "recommendation records emitted", registry=r)
        self.offset_gaps = Counter("profilestream_offset_gaps", "records an agent did not see between two records "
                                   "of one partition in one consumer generation", ["topic"], registry=r)
        self.stale_events = Counter("profilestream_stale_events", "events left unprocessed and unacked because a "
                                    "rebalance began before they were (the partitions' next owner reads them again)",
                                    registry=r)
        self.fetch_held = Counter(
            "profilestream_fetch_held_back", "stream records the fetch loop did not hand to the agents as fetched "
            "(stream/sequencer.py), by reason: wait (before the generation's seek to the committed offset), drop "
            "(handed over already), seek/hold (fetched ahead of the next offset; sought back), gap (offsets without "
            "records, counted done)", ["reason"], registry=r)
        self.read_again = Counter(
            "profilestream_read_again", "times the fetch went back to read stream records the agents had not been "
            "handed, by reason: before_seek (held back before the generation's seek), not_yielded (taken from the "
            "Kafka client but dropped by Faust's getmany), watchdog (seen by the stall watchdog only: the "
            "backstop; docs/operations.md 'Records fetched but never handed over')", ["reason"], registry=r)
        for reason in READ_AGAIN_REASONS:
            self.read_again.labels(reason)
        self.raw_partition_mismatch = Counter(
            "profilestream_raw_partition_mismatch", "single-hop mode: raw events on another partition than Kafka's "
            "default (murmur2) partitioner gives their key (state then does not survive a switch to two-hop mode)",
            registry=r)
        self.commits_held = Counter(
            "profilestream_commits_held", "offset commits that did not go out, by reason: changelog (the state "
            "changelog records not on the broker in time), refused (by the broker, e.g. in a rebalance); their "
            "offsets go with the next commit (stream/sequencer.py HeldCommits)", ["reason"], registry=r)
        self.stall_checks = Counter("profilestream_stall_checks", "checks of the stall watchdog (every 5 s)",
                                    registry=r)
        self.records_waiting = Gauge(
            "profilestream_records_waiting", "records of the worker's source partitions its agents have not seen, "
            "at the stall watchdog's last check (-1: unknown, e.g. broker down or rebalancing)", registry=r)
        self.orphaned_partitions = Gauge(
            "profilestream_orphaned_partitions", "source partitions the consumer group, while stable, gave to no "
            "member, at the stall watchdog's last check (-1: unknown, e.g. broker down or rebalancing)", registry=r)
        self.last_applied = Gauge(
            "profilestream_last_applied_time_seconds", "Unix time at which the profile agent last finished a "
            "micro-batch that applied events (0: none yet); now minus this is how fresh the newest profile is, "
            "and the bench reads a burst's end from it", registry=r)
        self.forgets = Counter("profilestream_forgets", "users erased by forget events", registry=r)
        self.batch_size = Histogram("profilestream_batch_events", "events per profile micro-batch",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096), registry=r)
        self.step_seconds = Histogram(
            "profilestream_step_seconds", "time per profile micro-batch in the processor, from the first event's "
            "validation to the last output handed to the producer (the read, step, write, outputs and send "
            "phases of profilestream_batch_phase_seconds)",
            buckets=_SECONDS_BUCKETS, registry=r)
        self.phase_seconds = Histogram(
            "profilestream_batch_phase_seconds", "time per profile micro-batch, by phase: wait (first event in "
            "the batch buffer until the batch is taken; micro-batches of what has arrived only), read (validation, "
            "state read and unpack), step (LSTM rounds and bookkeeping), write (pack, state write with its changelog "
            "record, rejected events to the DLQ, forgets), outputs (scores, top-K, tags, reasons, records), send "
            "(outputs handed to the producer)", ["phase"], buckets=_SECONDS_BUCKETS, registry=r)
        pauses = Histogram(
            "profilestream_gc_pause_seconds", "time the garbage collector stopped the worker, per collection of "
            "generation 1 or 2 (a full collection, generation 2, walks every tracked object; docs/operations.md "
            "'Garbage-collector pauses')",
            ["generation"], buckets=(1e-4, 1e-3, 5e-3, 1e-2, 2.5e-2, 5e-2, 0.1, 0.2, 0.5, 1.0), registry=r)
        #: generation → observe() of its histogram child, bound once (the gc callback runs often)
        self.gc_pause = {g: pauses.labels(str(g)).observe for g in (1, 2)}
        self.lag = Gauge("profilestream_consumer_lag", "end offset minus committed offset, summed over the "
                         "worker's assigned partitions", ["topic"], registry=r)
