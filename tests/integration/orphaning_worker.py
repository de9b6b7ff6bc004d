"""Fault injection for the stall watchdog's group check: a real worker whose consumer-group
leader hands the source partitions to no member (`python -m tests.integration.orphaning_worker`).
The group is stable, the worker holds only its tables' changelogs, and nobody reads the sources:
what a group whose assignment was computed from stale metadata looks like."""

from __future__ import annotations

from typing import Any

from faust.assignor.partition_assignor import PartitionAssignor

from stream.settings import Settings
from stream.topics import topic_names
from stream.worker import run_worker

_original = PartitionAssignor._protocol_assignments


def _without_sources(self: PartitionAssignor, assignments: Any, *args: Any, **kwargs: Any) -> Any:
    names = topic_names(Settings.from_env())
    for client in assignments.values():
        for topic in (names.raw, names.events):
            client.actives.pop(topic, None)
            client.standbys.pop(topic, None)
    return _original(self, assignments, *args, **kwargs)


if __name__ == "__main__":
    PartitionAssignor._protocol_assignments = _without_sources  # type: ignore[method-assign]
    run_worker(Settings.from_env())
