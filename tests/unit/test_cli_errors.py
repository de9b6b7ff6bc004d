"""A command that needs Kafka, run while no broker listens, ends with one line that names the
cause and the fix: no traceback, no page of client connection errors."""

from __future__ import annotations

import subprocess
import sys

import pytest

from stream.process import free_port


@pytest.mark.parametrize("argv", [["tail", "dlq", "--n", "1"], ["replay", "--limit", "5"]])
def test_command_without_broker_names_the_cause_and_the_fix(argv: list[str], tmp_path) -> None:
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    proc = subprocess.run([sys.executable, "-m", "stream", *argv, "--bootstrap-servers", bootstrap,
                           "--state-dir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines[-1].startswith(f"error: Kafka not reachable at {bootstrap}"), lines[-5:]
    assert "profilestream broker up" in lines[-1]
    assert "Traceback" not in proc.stderr
    assert len(lines) <= 3, lines[:10]  # not one librdkafka line per reconnect attempt


def test_single_hop_setting_reads_yes_no_values_and_rejects_others() -> None:
    from stream.errors import ConfigError
    from stream.settings import Settings

    for raw, want in (("1", True), ("true", True), ("on", True), ("0", False), ("no", False), ("OFF", False)):
        assert Settings.from_env(environ={"PROFILESTREAM_SINGLE_HOP": raw}).single_hop is want
    assert Settings.from_env(environ={}).single_hop is False
    with pytest.raises(ConfigError, match="PROFILESTREAM_SINGLE_HOP: .maybe. is not a yes/no value"):
        Settings.from_env(environ={"PROFILESTREAM_SINGLE_HOP": "maybe"})
    shown = {env: default for env, default, _ in Settings.describe()}
    assert shown["PROFILESTREAM_SINGLE_HOP"] == "0"


def test_settings_command_prints_the_single_hop_flag_as_the_variable_is_written(
        capsys: pytest.CaptureFixture[str]) -> None:
    from stream.cli import main

    assert main(["settings", "--single-hop"]) == 0
    line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("PROFILESTREAM_SINGLE_HOP "))
    assert line.split()[1] == "1"


def test_batch_window_zero_is_allowed_and_negative_is_refused() -> None:
    from stream.errors import ConfigError
    from stream.settings import Settings

    assert Settings.from_env(environ={"PROFILESTREAM_BATCH_WINDOW_MS": "0"}).batch_window_ms == 0.0
    with pytest.raises(ConfigError, match="batch_window_ms must be >= 0"):
        Settings.from_env(environ={"PROFILESTREAM_BATCH_WINDOW_MS": "-1"})
    with pytest.raises(ConfigError, match="cpu_kernel|PROFILESTREAM_CPU_KERNEL"):
        Settings.from_env(environ={"PROFILESTREAM_CPU_KERNEL": "cuda"})
    assert Settings.from_env(environ={}).record_handoff == "direct"
    assert Settings.from_env(environ={"PROFILESTREAM_RECORD_HANDOFF": "wait_first"}).record_handoff == "wait_first"
    with pytest.raises(ConfigError, match="PROFILESTREAM_RECORD_HANDOFF must be direct or wait_first"):
        Settings.from_env(environ={"PROFILESTREAM_RECORD_HANDOFF": "queue"})


def test_event_loop_setting_installs_the_named_loop_and_refuses_unknown_names() -> None:
    import asyncio

    import uvloop

    from stream.errors import ConfigError
    from stream.settings import Settings
    from stream.worker import use_event_loop

    with pytest.raises(ConfigError, match="PROFILESTREAM_EVENT_LOOP must be asyncio or uvloop, got 'trio'"):
        Settings.from_env(environ={"PROFILESTREAM_EVENT_LOOP": "trio"})
    before = asyncio.get_event_loop_policy()
    try:
        use_event_loop(Settings.from_env(environ={}))  # the default leaves the standard loop alone
        assert asyncio.get_event_loop_policy() is before
        use_event_loop(Settings.from_env(environ={"PROFILESTREAM_EVENT_LOOP": "uvloop"}))
        loop = asyncio.new_event_loop()
        try:
            assert isinstance(loop, uvloop.Loop)
        finally:
            loop.close()
    finally:
        asyncio.set_event_loop_policy(before)


def test_sigterm_ends_a_command_like_ctrl_c_once_and_restores_the_handlers() -> None:
    """stream/signals.py: SIGTERM raises Stopped (a KeyboardInterrupt, so the command's clean-up
    runs), a second one during that clean-up does not cut it short, and the handlers in place
    before come back afterwards."""
    import signal

    from stream.signals import Stopped, stop_like_ctrl_c

    before = signal.getsignal(signal.SIGTERM)
    cleaned = []
    with pytest.raises(Stopped) as info:
        with stop_like_ctrl_c():
            try:
                signal.raise_signal(signal.SIGTERM)  # the Python handler runs before this returns
                cleaned.append("not stopped")
            finally:
                signal.raise_signal(signal.SIGTERM)
                cleaned.append("clean-up finished")
    assert isinstance(info.value, KeyboardInterrupt) and info.value.exit_status == 128 + signal.SIGTERM
    assert cleaned == ["clean-up finished"]
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_worker_that_ends_before_it_is_ready_is_named_with_its_log(tmp_path) -> None:
    """The demo, the bench and the chaos runs start workers through `WorkerProcess`; one that ends
    at start-up raises a StreamError (printed as one `error:` line, no traceback) that says how it
    ended, where its log is, and the log's last lines."""
    import signal

    from stream.errors import StreamError
    from stream.process import WorkerProcess, describe_exit
    from stream.settings import Settings

    log = tmp_path / "w.log"
    w = WorkerProcess(Settings.from_env(environ={}), log, module="profilestream_no_such_module")
    with pytest.raises(StreamError) as err:
        w.start(ready_timeout=60)
    msg = str(err.value)
    assert msg.startswith(f"the worker exited with status 1 before it was ready. Its log is {log}; the last lines:"), msg
    assert "No module named profilestream_no_such_module" in msg, msg
    assert describe_exit(-signal.SIGKILL) == "was killed by SIGKILL"
    assert describe_exit(75).startswith("exited with status 75") and "stall" in describe_exit(75)


@pytest.mark.parametrize("status,restart", [(75, True), (74, True), (0, False), (1, False), (70, False)])
def test_only_the_stall_and_output_exits_ask_for_a_fresh_worker(status: int, restart: bool, tmp_path) -> None:
    """The demo and the chaos harness start a fresh worker for exactly these statuses
    (`WorkerProcess.asks_for_restart`); any other end is an error (demo) or a crash (chaos)."""
    from stream.output import EXIT_OUTPUT_FAILED
    from stream.process import WorkerProcess
    from stream.settings import Settings
    from stream.stall import EXIT_STALLED

    assert {EXIT_STALLED, EXIT_OUTPUT_FAILED} == {75, 74}  # the statuses documented in the README
    w = WorkerProcess(Settings.from_env(environ={}), tmp_path / "w.log")
    assert not w.asks_for_restart()  # never started
    w.proc = subprocess.Popen([sys.executable, "-c", f"raise SystemExit({status})"])
    w.proc.wait(30)
    assert w.asks_for_restart() is restart


def test_the_demos_broker_error_shows_the_logs_warnings_and_errors_not_its_routine(tmp_path) -> None:
    from stream.broker import BrokerInfo
    from stream.demo import _broker_error

    log = tmp_path / "server.log"
    info = BrokerInfo(pid=4321, port=1, controller_port=2, bootstrap="127.0.0.1:1", data_dir=str(tmp_path),
                      log_file=str(log))
    log.write_text("".join(f"[2026-12-07 22:00:{i:02d},000] INFO routine line {i} (kafka.server)\n" for i in range(40)))
    quiet = str(_broker_error(info, "was killed by SIGKILL"))
    assert quiet.startswith("the Kafka broker the demo started (pid 4321) was killed by SIGKILL while the demo ran. "
                            f"Its log is {log}, with no warning or error at its end\n"), quiet
    assert "routine" not in quiet and quiet.endswith("Run the demo again to start a fresh broker.")
    with log.open("a") as f:
        f.write("[2026-12-07 22:01:00,000] WARN disk almost full (kafka.log)\n"
                "[2026-12-07 22:01:01,000] INFO routine again (kafka.server)\n"
                "java.lang.OutOfMemoryError: Java heap space\n"
                "[2026-12-07 22:01:02,000] ERROR shutting down (kafka.server)\n")
    loud = str(_broker_error(info, "exited with status 1"))
    assert "; its last warnings and errors:\nWARN" not in loud  # the lines are shown whole
    assert loud.split("its last warnings and errors:\n")[1].splitlines()[:3] == [
        "[2026-12-07 22:01:00,000] WARN disk almost full (kafka.log)", "java.lang.OutOfMemoryError: Java heap space",
        "[2026-12-07 22:01:02,000] ERROR shutting down (kafka.server)"], loud
    missing = BrokerInfo(**{**info.__dict__, "log_file": str(tmp_path / "none.log")})
    assert str(_broker_error(missing, "ended")).startswith(
        f"the Kafka broker the demo started (pid 4321) ended while the demo ran. Its log is "
        f"{tmp_path / 'none.log'}, which is not there\n")
