from __future__ import annotations

import re

import numpy as np
import pytest

from model.data import Dataset, chronological_split
from model.evaluate import metrics_from_ranks, rank_of_targets


def _ds(users: list[str], items: list[int], ts: list[float]) -> Dataset:
    n = len(users)
    return Dataset("t", np.array(users, object), np.array(items, np.int64), np.zeros(n, np.int64),
                   np.full(n, np.nan), np.array(ts, np.float64), [str(i) for i in range(10)], [""] * 10, [""] * 10,
                   [[] for _ in range(10)], [], "h")


def test_split_sorts_by_time_and_ties_keep_file_order() -> None:
    # user a: file order 0..5; events 3 and 4 share a timestamp and must stay 3 before 4,
    # even though item ids would order them the other way.
    ds = _ds(["a"] * 6, [5, 4, 3, 9, 1, 2], [10, 20, 30, 50, 50, 40])
    sp = chronological_split(ds)
    order = list(sp.train["a"]) + [sp.valid["a"], sp.test["a"]]
    assert order == [0, 1, 2, 5, 3, 4]
    assert (sp.valid["a"], sp.test["a"]) == (3, 4)


def test_users_with_fewer_than_five_events_stay_in_training() -> None:
    ds = _ds(["a"] * 4 + ["b"] * 5, [1, 2, 3, 4, 1, 2, 3, 4, 5], [1, 2, 3, 4, 1, 2, 3, 4, 5])
    sp = chronological_split(ds)
    assert "a" not in sp.test and list(sp.train["a"]) == [0, 1, 2, 3]
    assert sp.test["b"] == 8 and sp.valid["b"] == 7 and list(sp.train["b"]) == [4, 5, 6]


def test_metrics_on_hand_computed_ranks() -> None:
    m = metrics_from_ranks(np.array([0, 1, 9, 10, 50]))
    assert m["HR@10"] == pytest.approx(3 / 5)
    assert m["NDCG@10"] == pytest.approx((1 / np.log2(2) + 1 / np.log2(3) + 1 / np.log2(11)) / 5)
    assert m["MRR@10"] == pytest.approx((1 + 1 / 2 + 1 / 10) / 5)


def test_rank_masks_history_and_ties_count_against_the_target() -> None:
    scores = np.array([[0.9, 0.5, 0.7, 0.5, 0.1]])
    # target 1 (0.5); item 0 masked; item 2 scores higher; item 3 ties → rank 2
    assert rank_of_targets(scores, np.array([1]), [np.array([0])]).tolist() == [2]
    assert rank_of_targets(scores, np.array([0]), [np.array([], np.int64)]).tolist() == [0]


def _ml_dir(tmp_path, users_text: str):  # type: ignore[no-untyped-def]
    d = tmp_path / "ml-100k"
    d.mkdir()
    (d / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                     "1\t10\t4\t100\n2\t20\t3\t90\n")
    (d / "ml-100k.item").write_text("item_id:token\tmovie_title:token_seq\trelease_year:token\tclass:token_seq\n"
                                    "10\tA Film\t1995\tDrama\n20\tAnother\t1996\tComedy Sci-Fi\n")
    (d / "ml-100k.user").write_text(users_text)
    return tmp_path


def test_ml100k_loader_reads_user_attributes_and_not_the_zip_code(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_ml100k

    ds = load_ml100k(_ml_dir(tmp_path, "user_id:token\tage:token\tgender:token\toccupation:token\tzip_code:token\n"
                                       "1\t24\tM\ttechnician\t85711\n2\t53\tF\tother\t94043\n"))
    assert ds.user_attrs == {"1": {"age": 24, "gender": "M", "occupation": "technician"},
                             "2": {"age": 53, "gender": "F", "occupation": "other"}}
    assert list(ds.users) == ["1", "2"] and ds.item_text[1] == "Another (1996) — Comedy, Sci-Fi"


def test_ml100k_loader_names_the_file_of_a_malformed_user_row(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_ml100k
    from model.errors import DataError

    with pytest.raises(DataError, match=r"ml-100k\.user:3: expected user_id, age"):
        load_ml100k(_ml_dir(tmp_path, "header\n1\t24\tM\ttechnician\t85711\n2\tfifty\tF\n"))


def test_metrics_by_user_group_on_hand_computed_ranks() -> None:
    from model.evaluate import EvalSet, evaluate_scorer, user_groups

    # four users, one item each as target; the scorer puts the target at rank 0, 3, 20, 1
    users = ["u1", "u2", "u3", "u4"]
    targets = np.array([0, 1, 2, 3])
    ranks_wanted = [0, 3, 20, 1]
    n_items = 30

    def scorer(es: EvalSet) -> np.ndarray:
        s = np.zeros((len(es.users), n_items))
        for r, (t, k) in enumerate(zip(es.targets, ranks_wanted)):
            others = [i for i in range(n_items) if i != t]
            s[r, others] = -np.arange(len(others))  # the other items score 0, -1, -2 …
            s[r, t] = 0.5 - k  # … so exactly k of them score above the target
        return s

    es = EvalSet(users, [np.zeros(0, np.int64)] * 4, targets, [np.zeros(0, np.int64)] * 4)
    attrs = {"u1": {"age": 19, "gender": "F", "occupation": "student"},
             "u2": {"age": 30, "gender": "M", "occupation": "writer"},
             "u3": {"age": 24, "gender": "F", "occupation": "student"},
             "u4": {"age": 61, "gender": "M", "occupation": "retired"}}
    groups = user_groups(users, attrs)
    assert list(groups) == ["gender F", "gender M", "age under 25", "age 25-34", "age 50 and over",
                            "occupation retired", "occupation student", "occupation writer"]
    out = evaluate_scorer(scorer, es, groups=groups)
    assert out["HR@10"] == pytest.approx(3 / 4)
    g = out["user_groups"]
    # F = ranks 0 and 20; M = ranks 3 and 1; under 25 = u1 and u3 (F); 50 and over = u4 alone
    assert g["gender F"] == {"HR@10": 0.5, "NDCG@10": pytest.approx(0.5), "MRR@10": 0.5, "n": 2}
    assert g["gender M"]["NDCG@10"] == pytest.approx((1 / np.log2(5) + 1 / np.log2(3)) / 2)
    assert g["age under 25"]["n"] == 2 and g["age under 25"]["HR@10"] == 0.5
    assert g["age 50 and over"]["MRR@10"] == pytest.approx(1 / 2)
    assert user_groups(users, {}) == {}


def test_recent_popularity_counts_training_events_in_the_window_before_each_target() -> None:
    from model.evaluate import build_eval_set, recent_counts

    day = 86400.0
    # c's events: item 7 twice at days 1 and 2, item 8 at day 40; the training events of a and b
    # are the other rows. Windows of 30 days end at each target's time, the end excluded.
    ds = _ds(["c", "c", "c", "a", "a", "a", "a", "a"],
             [7, 7, 8, 1, 2, 3, 4, 5],
             [1 * day, 2 * day, 40 * day, 10 * day, 31 * day, 32 * day, 50 * day, 60 * day])
    train_idx = np.array([0, 1, 2, 3, 4, 5])  # a's last two are its validation and test events
    got = recent_counts(ds, train_idx, np.array([32 * day, 2 * day, 61 * day]), days=30)
    want = np.zeros((3, 10))
    want[0, [7, 1, 2]] = 1  # [2 d, 32 d): day 2's 7, day 10's 1, day 31's 2; day 32 is the end
    want[1, 7] = 1  # [-28 d, 2 d): day 1's 7
    want[2, [2, 3, 8]] = 1  # [31 d, 61 d): day 31's 2, day 32's 3, day 40's 8
    assert np.array_equal(got, want)
    # build_eval_set gives each target its own time
    sp = chronological_split(ds)
    es = build_eval_set(ds, sp, "test")
    assert list(es.target_ts) == [60 * day] and list(es.targets) == [5]


def test_users_file_csv_and_jsonl_give_the_same_attributes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_users_file

    (tmp_path / "u.csv").write_text("user_id,age,country,plan\n7,34,FR,\n8,,DE,pro\n")
    (tmp_path / "u.jsonl").write_text('{"user_id": 7, "age": 34, "country": "FR"}\n\n'
                                      '{"user_id": "8", "country": "DE", "plan": "pro", "age": null}\n')
    want = {"7": {"age": 34, "country": "FR"}, "8": {"country": "DE", "plan": "pro"}}  # empty = unknown
    assert load_users_file(tmp_path / "u.csv") == want
    assert load_users_file(tmp_path / "u.jsonl") == want


@pytest.mark.parametrize("name,text,message", [
    ("dup.csv", "user_id,country\n1,FR\n2,DE\n1,IT\n", "dup.csv:4: user '1' is listed twice (first on line 2)"),
    ("noid.csv", "uid,country\n1,FR\n", "noid.csv:2: no user_id"),
    ("nested.jsonl", '{"user_id": "1", "tags": ["a"]}\n', "nested.jsonl:1: attribute 'tags' is not a string or a number"),
    ("bad.jsonl", '{"user_id": "1"\n', "bad.jsonl:1: not valid JSON"),
    ("empty.csv", "user_id,country\n", "lists no users"),
])
def test_users_file_errors_name_the_line(tmp_path, name: str, text: str, message: str) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_users_file
    from model.errors import DataError

    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=re.escape(message)):
        load_users_file(tmp_path / name)


def test_users_file_replaces_the_attributes_of_an_events_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from model.data import load_dataset

    ev = tmp_path / "events.csv"
    ev.write_text("user_id,item_id,type,ts\n" + "".join(f"u{u},i{i},view,{1_700_000_000 + 100 * u + i}\n"
                                                          for u in (1, 2) for i in range(5)))
    (tmp_path / "users.csv").write_text("user_id,country\nu1,FR\n")
    assert load_dataset(str(ev), tmp_path).user_attrs == {}
    assert load_dataset(str(ev), tmp_path, users=tmp_path / "users.csv").user_attrs == {"u1": {"country": "FR"}}


def test_user_groups_of_any_attribute_and_none_for_one_with_too_many_values() -> None:
    from model.evaluate import MAX_GROUPS_PER_ATTRIBUTE, user_groups

    n = MAX_GROUPS_PER_ATTRIBUTE + 1
    users = [f"u{i}" for i in range(n)]
    # every user has its own zip (too many values: no groups); countries FR/DE; u0 has no country;
    # the gender, though listed last, comes first, as on ML-100k
    attrs = {u: {"zip": f"{10000 + i}", "country": "FR" if i % 2 else "DE", "gender": "F"} for i, u in enumerate(users)}
    del attrs["u0"]["country"]
    groups = user_groups(users, attrs)
    assert list(groups) == ["gender F", "country DE", "country FR"]
    assert groups["country FR"].tolist() == [i % 2 == 1 for i in range(n)]
    assert groups["country DE"].tolist() == [i % 2 == 0 and i > 0 for i in range(n)]
    assert groups["gender F"].all()


def test_evaluate_prints_the_attributes_with_few_groups_and_names_the_others(capsys) -> None:  # type: ignore[no-untyped-def]
    from model.cli import PRINT_GROUPS_MAX, _print_user_groups

    m = {"NDCG@10": 0.5, "HR@10": 1.0, "n": 3}
    many = {f"zip {i}": m for i in range(PRINT_GROUPS_MAX + 1)}
    _print_user_groups({"LSTM": {"user_groups": {"gender F": m, **many, "country FR": m}}, "Pop": {}})
    out = capsys.readouterr().out
    assert "| gender F | 3 | 0.5000 / 1.0000 |" in out and "| country FR | 3 |" in out
    assert "zip 0" not in out and '(zip: in the JSON, "user_groups")' in out
    _print_user_groups({"LSTM": {"user_groups": many}})
    assert capsys.readouterr().out.strip() == (f"test by user group: zip: more than {PRINT_GROUPS_MAX} groups each, "
                                               'in the JSON only ("user_groups")')
