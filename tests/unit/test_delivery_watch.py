"""The default output path (PROFILESTREAM_OUTPUT_CLIENT=faust): records go straight into Faust's
aiokafka producer, each future watched by `DeliveryWatch`, and a record aiokafka gave up on stops
the next commit (stream/output.py, stream/app.py `_Consumer._commit`)."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

import pytest
from aiokafka.errors import KafkaTimeoutError

from stream.output import DeliveryWatch, OutputError


def test_watch_stays_quiet_for_delivered_records_and_names_the_first_failure() -> None:
    async def main() -> DeliveryWatch:
        watch = DeliveryWatch()
        loop = asyncio.get_running_loop()
        futs = [loop.create_future() for _ in range(4)]
        for f in futs:
            f.add_done_callback(watch)
        futs[0].set_result("metadata")
        await asyncio.sleep(0)
        watch.check()  # delivered: nothing to report
        futs[1].set_exception(KafkaTimeoutError("batch expired"))
        futs[2].cancel()
        futs[3].set_result("metadata")
        await asyncio.sleep(0)
        return watch

    watch = asyncio.run(main())
    assert watch.n_failed == 2
    with pytest.raises(OutputError, match=r"2 output record\(s\) not delivered, the first: KafkaTimeoutError"):
        watch.check()


class _Producer:
    """Faust's transport producer as far as send_output uses it: `send` queues and returns the future."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, ...]] = []
        self.futures: list[asyncio.Future[Any]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: Any, timestamp: Any,
                   headers: Any) -> asyncio.Future[Any]:
        self.sent.append((topic, key, value, partition, timestamp, headers))
        self.futures.append(asyncio.get_running_loop().create_future())
        return self.futures[-1]


class _Topic:
    def __init__(self, name: str) -> None:
        self.name = name
        self.topic_sends: list[dict[str, Any]] = []

    def get_topic_name(self) -> str:
        return self.name

    async def send(self, **kw: Any) -> None:
        self.topic_sends.append(kw)


class _App:
    def __init__(self, deliveries: DeliveryWatch | None) -> None:
        self.output = None
        self.deliveries = deliveries
        self.producer = _Producer()


def test_default_path_hands_the_record_to_the_producer_and_watches_its_future() -> None:
    from stream.agents import send_output

    async def main() -> tuple[_App, _Topic]:
        app, topic = _App(DeliveryWatch()), _Topic("profiles")
        await send_output(app, topic, b"u1", b"{}", [("h", b"1")])
        app.producer.futures[0].set_exception(KafkaTimeoutError("gave up"))
        await asyncio.sleep(0)
        return app, topic

    app, topic = asyncio.run(main())
    assert app.producer.sent == [("profiles", b"u1", b"{}", None, None, [("h", b"1")])]
    assert topic.topic_sends == []
    assert app.deliveries is not None and app.deliveries.n_failed == 1


def test_faust_topic_path_goes_through_topic_send() -> None:
    from stream.agents import send_output

    async def main() -> tuple[_App, _Topic]:
        app, topic = _App(None), _Topic("profiles")
        await send_output(app, topic, b"u1", b"{}")
        return app, topic

    app, topic = asyncio.run(main())
    assert topic.topic_sends == [{"key": b"u1", "value": b"{}", "headers": None}]
    assert app.producer.sent == []


@pytest.mark.parametrize("client,watched", [("faust", True), ("faust-topic", False), ("librdkafka", False)])
def test_the_watch_exists_only_for_the_default_client(client: str, watched: bool) -> None:
    from stream.app import create_app_shell
    from stream.settings import Settings

    s = Settings.from_env({"PROFILESTREAM_OUTPUT_CLIENT": client}, state_dir=Path(tempfile.mkdtemp()))
    app = create_app_shell(s, None)
    assert (app.deliveries is not None) is watched
    if app.output is not None:
        app.output.close(0)


def test_a_failed_record_stops_the_commit(monkeypatch: pytest.MonkeyPatch) -> None:
    import stream.app as app_mod
    from stream.settings import Settings

    exits: list[str] = []

    def fake_exit(exc: OutputError) -> None:
        exits.append(str(exc))
        raise SystemExit(74)

    monkeypatch.setattr(app_mod, "exit_output_failed", fake_exit)
    committed: list[Any] = []

    async def main() -> None:
        app = app_mod.create_app_shell(Settings.from_env({}, state_dir=Path(tempfile.mkdtemp())), None)
        consumer = app.consumer

        async def commit(offsets: Any) -> bool:
            committed.append(offsets)
            return True

        consumer._thread.commit = commit  # what Faust's _commit hands the offsets to
        assert await consumer._commit({"tp": 5}) is True  # nothing failed: the commit goes through
        assert app.deliveries is not None
        fut = asyncio.get_running_loop().create_future()
        fut.add_done_callback(app.deliveries)
        fut.set_exception(KafkaTimeoutError("batch expired"))
        await asyncio.sleep(0)
        with pytest.raises(SystemExit):
            await consumer._commit({"tp": 6})

    asyncio.run(main())
    assert committed == [{"tp": 5}]
    assert len(exits) == 1 and "KafkaTimeoutError" in exits[0]


def test_changelog_watch_waits_for_the_records_tracked_before_the_wait_and_names_the_first_failure() -> None:
    from stream.output import ChangelogWatch

    async def main() -> tuple[bool, bool, bool, ChangelogWatch]:
        watch = ChangelogWatch()
        loop = asyncio.get_running_loop()
        assert await watch.wait(0.01)  # nothing tracked: nothing to wait for
        a, b = loop.create_future(), loop.create_future()
        watch.track(a)
        watch.track(b)
        loop.call_later(0.05, a.set_result, "metadata")
        early = await watch.wait(0.01)  # neither delivered yet
        loop.call_later(0.05, b.set_result, "metadata")
        c = loop.create_future()
        waiter = asyncio.ensure_future(watch.wait(5.0))
        await asyncio.sleep(0)
        watch.track(c)  # tracked after the wait began: not waited for
        both = await waiter
        assert watch.pending == {c}
        watch.check()
        c.set_exception(KafkaTimeoutError("batch expired"))
        d = loop.create_future()
        watch.track(d)
        d.cancel()
        await asyncio.sleep(0)
        return early, both, watch.pending == set(), watch

    early, both, drained, watch = asyncio.run(main())
    assert (early, both, drained) == (False, True, True)
    assert watch.n_failed == 2
    with pytest.raises(OutputError, match=r"2 state changelog record\(s\) not delivered, the first: KafkaTimeoutError"):
        watch.check()
