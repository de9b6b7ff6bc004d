"""The Faust echo floor: one agent that forwards every message of events.raw unchanged to
`<prefix>echo.out`, with the same app settings as the real worker, its output producer included
(PROFILESTREAM_OUTPUT_CLIENT; stream/output.py). `python -m bench.echo`."""

from __future__ import annotations

from typing import Any

from stream.settings import Settings

__all__ = ["run_echo_worker"]


def run_echo_worker(settings: Settings) -> None:
    import faust

    from stream.agents import send_output
    from stream.app import create_app_shell
    from stream.topics import ensure_topics
    from stream.worker import use_event_loop

    use_event_loop(settings)
    ensure_topics(settings)
    app = create_app_shell(settings, model=None)  # the output producer included
    raw = app.topic(settings.topic("events.raw"), key_type=bytes, value_type=bytes)
    out = app.topic(settings.topic("echo.out"), key_type=bytes, value_type=bytes)

    @app.agent(raw, name="echo")
    async def echo(stream: Any) -> None:
        async for fe in stream.events():
            await send_output(app, out, fe.message.key, fe.message.value)

    @app.page("/ready")
    async def ready(web: Any, request: Any) -> Any:
        ok = len(app.consumer.assignment()) > 0 and not app.rebalancing
        return web.json({"ready": ok}, status=200 if ok else 503)

    faust.Worker(app, loglevel=settings.log_level, quiet=True).execute_from_commandline()


if __name__ == "__main__":
    run_echo_worker(Settings.from_env())
