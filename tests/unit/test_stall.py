"""The stall watchdog's decision (stream/stall.py): exit only after `stall_s` seconds in which
records waited, the broker answered and no rebalance ran, yet no event reached an agent."""

from __future__ import annotations

from stream.stall import StallWatch, backlog, generation_progress


def test_backlog_counts_unread_records_of_partitions_with_a_seen_offset() -> None:
    ends = {("raw", 0): 10, ("raw", 1): 5, ("raw", 2): 7}
    seen = {("raw", 0): 9, ("raw", 1): 2}  # partition 0 read to its end, 1 has offsets 3 and 4 left
    per = backlog(ends, seen)
    assert per == {("raw", 0): 0, ("raw", 1): 2}  # per partition, for the log line
    assert per is not None and sum(per.values()) == 2  # what the watchdog judges by
    assert backlog(ends, {("raw", 0): 9}) == {("raw", 0): 0}
    assert backlog(ends, {("other", 0): 1}) is None  # nothing to judge by
    assert backlog({}, seen) is None


def test_progress_counts_from_this_generation_not_from_an_earlier_one() -> None:
    raw0, raw1, raw3 = ("raw", 0), ("raw", 1), ("raw", 3)
    last = {raw0: (40, 7),   # seen in this generation (7), past where it began
            raw1: (120, 3)}  # seen before the worker lost the partition; another worker then read it to 900
    floors = {raw0: 30, raw1: 900, raw3: 12}  # raw3: assigned and sought, nothing seen yet
    seen = generation_progress([raw0, raw1, raw3], last, 7, floors.get, lambda tp: None)
    assert seen == {raw0: 40, raw1: 899, raw3: 11}
    # raw1 read to its end (900) by the other worker: nothing waits for this one. With the offset it
    # had seen itself (120), 779 records "waited" and an idle worker exited with 75.
    assert backlog({raw0: 41, raw1: 900, raw3: 12}, seen) == {raw0: 0, raw1: 0, raw3: 0}
    assert backlog({raw1: 900}, {tp: off for tp, (off, _) in last.items()}) == {raw1: 779}
    assert generation_progress([raw1], last, 3, lambda tp: None, lambda tp: None) == {raw1: 120}  # its generation


def test_a_partition_without_a_seek_counts_from_its_committed_offset() -> None:
    raw0, raw1, raw2 = ("raw", 0), ("raw", 1), ("raw", 2)
    last = {raw0: (40, 7), raw1: (55, 3)}  # raw1: seen in an earlier generation only
    floors = {raw0: 30}  # raw1 and raw2 never sought in generation 7
    committed = {raw1: 60}.get  # raw2: nothing committed
    seen = generation_progress([raw0, raw1, raw2], last, 7, floors.get, committed)
    assert seen == {raw0: 40, raw1: 59, raw2: -1}
    # their records wait, from 60 and from 0: until 2026-12-07 raw2 was left out and raw1 judged from 55
    assert backlog({raw0: 41, raw1: 70, raw2: 5}, seen) == {raw0: 0, raw1: 10, raw2: 5}


def test_backlog_of_a_settled_partition_is_zero() -> None:
    # raw[0] ends with a transaction's commit marker at 10: the last record is 9, the end 11
    ends = {("raw", 0): 11, ("raw", 1): 11}
    seen = {("raw", 0): 9, ("raw", 1): 9}
    fetched_to = {("raw", 0): 11, ("raw", 1): 10}  # raw[1]: offset 10 is not fetched yet, maybe a record
    calls = []

    def settled(tp: tuple[str, int], last: int, end: int) -> bool:
        calls.append((tp, last, end))
        return fetched_to[tp] >= end

    assert backlog(ends, seen, settled) == {("raw", 0): 0, ("raw", 1): 1}
    assert sorted(calls) == [(("raw", 0), 9, 11), (("raw", 1), 9, 11)]
    assert backlog(ends, seen) == {("raw", 0): 1, ("raw", 1): 1}  # without the fetch's word


def test_stalls_only_after_stall_s_of_waiting_records_without_events() -> None:
    w = StallWatch(20.0, now=0.0)
    assert not w.check(behind=5, busy=False, now=10.0)
    assert not w.check(behind=5, busy=False, now=20.0)
    assert w.check(behind=5, busy=False, now=20.5)
    w.saw_event(now=21.0)  # an event reached an agent: the clock starts again
    assert not w.check(behind=5, busy=False, now=40.0)
    assert w.check(behind=5, busy=False, now=41.5)


def test_idle_rebalancing_or_broker_unreachable_restart_the_clock() -> None:
    for quiet in ({"behind": 0, "busy": False}, {"behind": 3, "busy": True}, {"behind": None, "busy": False}):
        w = StallWatch(20.0, now=0.0)
        assert not w.check(now=15.0, **quiet)  # type: ignore[arg-type]
        # the 20 s count from the quiet check at 15 s, not from the start
        assert not w.check(behind=3, busy=False, now=34.0)
        assert w.check(behind=3, busy=False, now=35.5)


def test_end_offsets_starts_a_fresh_client_after_a_failed_query() -> None:
    # librdkafka can keep a partition leaderless for good after a broker restart (librdkafka#5430);
    # a watchdog asking through that client again would be blind, so a failure drops the client.
    from stream.process import free_port
    from stream.stall import EndOffsets

    ends = EndOffsets({"bootstrap.servers": f"127.0.0.1:{free_port()}", "log_level": 2}, timeout=0.5)
    assert ends([("t", 0)]) is None  # nothing listens there
    assert ends._consumer is None
    assert ends([("t", 0)]) is None and ends._consumer is None


def test_chaos_harness_outwaits_the_watchdog() -> None:
    """The chaos harness stops waiting for outputs only after the watchdog could have fired: its
    stall time, one 5 s timer period, and one failed end-offsets query (2 s) after an outage."""
    from bench.chaos import SETTLE_IDLE_S, settle_idle_s

    for stall_s in (3.0, 20.0, 60.0):
        assert settle_idle_s(stall_s) > stall_s + 5.0 + 5.0 + 2.0
    assert settle_idle_s(0.0) == SETTLE_IDLE_S  # watchdog off: the plain idle window


def test_held_reports_a_silence_the_exemptions_hide_once_per_period() -> None:
    """`held` (logged by the worker) says when only an exemption keeps the watchdog from firing:
    no event for over stall_s while rebalancing / flow suspended (busy) or the backlog unknown."""
    w = StallWatch(20.0, now=0.0)
    assert not w.held(behind=None, busy=False, now=15.0)  # not silent long enough
    assert not w.check(behind=None, busy=False, now=25.0)  # the exemption at work: no exit...
    assert w.held(behind=None, busy=False, now=25.0)  # ...but it is said
    assert not w.held(behind=None, busy=False, now=40.0)  # at most once per HELD_LOG_EVERY_S
    assert w.held(behind=3, busy=True, now=25.0 + StallWatch.HELD_LOG_EVERY_S)
    assert not w.held(behind=3, busy=False, now=200.0)  # not exempt: `check` decides, nothing to report
    assert not w.held(behind=0, busy=True, now=300.0)  # nothing waits: idle, not held
    w.saw_event(now=301.0)
    assert not w.held(behind=None, busy=True, now=310.0)  # an event restarts the silence
    assert w.held(behind=None, busy=True, now=322.0)


def test_orphaned_lists_partitions_no_member_holds() -> None:
    from stream.stall import orphaned

    parts = [("a", 0), ("a", 1), ("b", 0)]
    assert orphaned(parts, [("a", 1), ("b", 0), ("c", 5)]) == [("a", 0)]
    assert orphaned(parts, parts) == []


def test_orphans_stuck_needs_stall_s_of_orphans_without_a_break() -> None:
    w = StallWatch(10.0, now=0.0)
    orphans = [("t", 0)]
    assert not w.orphans_stuck(orphans, now=1.0)  # the clock starts here
    w.saw_event(now=5.0)  # the worker's own events say nothing about partitions nobody reads
    assert not w.orphans_stuck(orphans, now=11.0)
    assert w.orphans_stuck(orphans, now=11.5)
    assert not w.orphans_stuck(None, now=12.0)  # unknown (rebalancing, broker away) restarts the clock
    assert not w.orphans_stuck(orphans, now=13.0)
    assert not w.orphans_stuck([], now=14.0)  # none orphaned: the same
    assert not w.orphans_stuck(orphans, now=20.0)
    assert w.orphans_stuck(orphans, now=30.5)


def test_chaos_log_digest_keeps_what_explains_a_failed_run(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from bench.chaos import log_digest

    (tmp_path / "w0.log").write_text(
        "[2026-12-07 04:04:36,255] [6229] [INFO] Setting newly assigned partitions \n"
        "| chaos.events.raw | {0-2} |\n"
        "[2026-12-07 04:04:36,300] [6229] [INFO] opening partition 2 for gen id 1 app id 1 \n"
        "[2026-12-07 04:04:37,000] [6229] [INFO] stream partitions read from their committed offsets: c.events.raw[0] 314 \n"
        "[2026-12-07 04:04:37,100] [6229] [INFO] c.events.raw[0]: first record of consumer generation 1 at offset 314 \n"
        "[2026-12-07 04:04:46,446] [6229] [WARNING] Heartbeat failed for group g because it is rebalancing \n"
        "[2026-12-07 04:05:20,000] [6229] [ERROR] stalled: the agents saw no event for over 20 s ...\n")
    (tmp_path / "w1.log").write_text("[2026-12-07 04:04:50,000] [7000] [INFO] [^---Recovery]: Worker ready \n"
                                     + "".join(f"[x] [1] [WARNING] w{i}\n" for i in range(5)))
    out = log_digest(tmp_path, max_lines=5).splitlines()
    w0 = [ln for ln in out if ln.startswith("w0| ")]
    assert [ln.split("] ", 3)[-1].strip() for ln in w0] == [
        "Setting newly assigned partitions", "stream partitions read from their committed offsets: c.events.raw[0] 314",
        "c.events.raw[0]: first record of consumer generation 1 at offset 314", "Heartbeat failed for group g because it is rebalancing",
        "stalled: the agents saw no event for over 20 s ..."]
    assert "--- w1.log: 6 lines of interest, the last 5" in out
    assert [ln for ln in out if ln.startswith("w1| ")] == [f"w1| [x] [1] [WARNING] w{i}" for i in (0, 1, 2, 3, 4)]
