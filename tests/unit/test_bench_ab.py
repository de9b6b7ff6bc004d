"""`profilestream bench ab`: its arguments and its summary table (the run itself is in
tests/integration/test_bench_smoke.py)."""

from __future__ import annotations

import pytest

from bench.ab import METRICS, format_ab, parse_assignments
from stream.cli import main
from stream.errors import ConfigError


def test_assignments_must_be_known_settings_as_name_equals_value() -> None:
    assert parse_assignments(["PROFILESTREAM_PRODUCER_LINGER_MS=5", "PROFILESTREAM_BATCH_SIZE=16"]) == {
        "PROFILESTREAM_PRODUCER_LINGER_MS": "5", "PROFILESTREAM_BATCH_SIZE": "16"}
    with pytest.raises(ConfigError, match="not a profilestream setting"):
        parse_assignments(["PROFILESTREAM_LINGER=5"])
    with pytest.raises(ConfigError, match="NAME=VALUE"):
        parse_assignments(["PROFILESTREAM_BATCH_SIZE"])


@pytest.mark.parametrize("argv, message", [
    (["bench", "ab"], "same settings"),
    (["bench", "ab", "--b", "PROFILESTREAM_BATCH_SIZE=16", "--rounds", "0"], "--rounds"),
    (["bench", "ab", "--b", "NOT_A_SETTING=1"], "not a profilestream setting"),
])
def test_bad_arguments_end_with_one_error_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_summary_table_shows_mean_and_range_and_dashes_for_missing() -> None:
    stats = {"mean": 1500.0, "min": 1400.0, "max": 1600.0}
    res = {"rounds": 2, "events": 1000, "rate": 100.0, "seconds": 60.0, "summary": [
        {"variant": "A", "settings": {}, **{k: stats for k, _, _ in METRICS}},
        {"variant": "B", "settings": {"PROFILESTREAM_PRODUCER_LINGER_MS": "5"},
         **{k: stats for k, _, _ in METRICS}, "broker_cpu_us_per_event": None}]}
    lines = format_ab(res).splitlines()
    assert lines[0].count("|") == len(METRICS) + 3
    a, b = lines[2], lines[3]
    assert a.startswith("| A | (as the environment) | 1500 (1400–1600) |")
    assert "PROFILESTREAM_PRODUCER_LINGER_MS=5" in b and "| — |" in b
