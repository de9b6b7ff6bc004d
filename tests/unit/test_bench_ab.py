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


def test_each_p99_is_divided_by_the_echo_floors_p99_of_its_own_round() -> None:
    from bench.ab import ECHO, ratios_to_echo

    rows = [{"round": 1, "variant": "A", "p99_ms": 30.0}, {"round": 1, "variant": ECHO, "p99_ms": 10.0},
            {"round": 2, "variant": "A", "p99_ms": 30.0}, {"round": 2, "variant": ECHO, "p99_ms": 60.0},
            {"round": 3, "variant": "A", "p99_ms": float("nan")}, {"round": 3, "variant": ECHO, "p99_ms": 5.0},
            {"round": 4, "variant": "A", "p99_ms": 8.0}]  # round 4's floor never ran
    ratios_to_echo(rows)
    assert [r["p99_vs_echo"] for r in rows] == [3.0, None, 0.5, None, None, None, None]


def test_echo_without_b_compares_a_with_the_floor_alone(monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    import bench.ab

    seen: dict[str, object] = {}

    def fake_run_ab(base: object, variants: dict[str, dict[str, str]], **kw: object) -> dict[str, object]:
        seen.update(variants=variants, **kw)
        return {"rounds": 1, "events": 100, "rate": 1000.0, "seconds": 1.0, "summary": []}

    monkeypatch.setattr(bench.ab, "run_ab", fake_run_ab)
    assert main(["bench", "ab", "--a", "PROFILESTREAM_SINGLE_HOP=1", "--echo", "--rate", "1000"]) == 0
    assert seen["variants"] == {"A": {"PROFILESTREAM_SINGLE_HOP": "1"}} and seen["echo"] is True
    # an empty --b is variant B with the environment's settings, run beside A and the floor
    assert main(["bench", "ab", "--a", "PROFILESTREAM_SINGLE_HOP=1", "--b", "--echo"]) == 0
    assert seen["variants"] == {"A": {"PROFILESTREAM_SINGLE_HOP": "1"}, "B": {}}
    # without --echo, A and B must still differ
    assert main(["bench", "ab", "--a", "PROFILESTREAM_SINGLE_HOP=1", "--b", "PROFILESTREAM_SINGLE_HOP=1"]) == 2
    assert "--echo" in capsys.readouterr().err


def test_summary_names_the_echo_floor_and_explains_the_ratio() -> None:
    from bench.ab import ECHO

    stats = {"mean": 2.5, "min": 2.0, "max": 3.0}
    res = {"rounds": 2, "events": 1000, "rate": 1000.0, "seconds": 60.0, "summary": [
        {"variant": "A", "settings": {}, **{k: stats for k, _, _ in METRICS}},
        {"variant": ECHO, "settings": {}, **{k: stats for k, _, _ in METRICS}, "p99_vs_echo": None}]}
    text = format_ab(res)
    assert "| echo floor | a Faust agent forwarding each event" in text
    assert "2.50 (2.00–3.00)" in text and "same round" in text.splitlines()[-1]
