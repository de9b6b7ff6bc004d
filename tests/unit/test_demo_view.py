"""What the demo's live view shows for an item."""

from __future__ import annotations

from stream.demo import display_titles


def test_a_title_two_items_share_is_shown_with_each_item_id() -> None:
    # ML-100k's own case: "Kull the Conqueror" is items 266 and 680; Toy Story is one item
    got = display_titles(["1", "266", "680", "7"], ["Toy Story", "Kull the Conqueror", "Kull the Conqueror", "Twelve Monkeys"])
    assert got == {"1": "Toy Story", "266": "Kull the Conqueror [266]", "680": "Kull the Conqueror [680]",
                   "7": "Twelve Monkeys"}
