from __future__ import annotations

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
