"""The merge rule (batch view + real-time view) on hand-made cases."""

from __future__ import annotations

import itertools

from recomart.serving.blend import MergeRules, merge
from recomart.serving.online_store import RecentEvent

# product p's neighbours: p*10+1, p*10+2, p*10+3 (best first)
SIMILAR = {p: [p * 10 + 1, p * 10 + 2, p * 10 + 3] for p in range(1, 10)}
BATCH = ([1, 2, 3, 4, 5], [0.9, 0.8, 0.7, 0.6, 0.5])


def sim(p: int, k: int):
    return SIMILAR.get(p, [])[:k] or None


def ev(pid: int, kind: str = "view", ts: float = 100.0) -> RecentEvent:
    return RecentEvent(pid, kind, ts)


def run(batch=BATCH, recent=(), trending=(), popular=(), n=5, rules=MergeRules()):
    out = merge(batch, list(recent), sim, list(trending), list(popular), n, rules)
    return [(s.product_id, s.reason) for s in out], out


def test_no_recent_events_is_the_batch_list_by_rank():
    got, scored = run()
    assert got == [(1, "batch"), (2, "batch"), (3, "batch"), (4, "batch"), (5, "batch")]
    assert [round(s.score, 3) for s in scored] == [1.0, 0.8, 0.6, 0.4, 0.2]


def test_bought_since_the_batch_run_is_dropped_everywhere():
    # 2 was bought: gone from the batch list and from the fill sources
    got, _ = run(recent=[ev(2, "purchase")], trending=[2, 7], popular=[2, 8], n=5)
    assert [p for p, _ in got] == [1, 3, 4, 5, 7]
    assert dict(got)[7] == "trending"


def test_repeat_purchase_is_buy_again_at_the_top():
    got, _ = run(recent=[ev(3, "purchase", 200), ev(3, "purchase", 100)])
    assert got[0] == (3, "buy_again")
    assert [p for p, _ in got[1:]] == [1, 2, 4, 5]


def test_viewed_often_without_buying_is_demoted_but_not_if_carted():
    # anchors are off so that only the demotion acts
    rules = MergeRules(anchors=0)
    views = [ev(1), ev(1), ev(1)]
    got, _ = run(recent=views, rules=rules)
    assert [p for p, _ in got] == [2, 3, 4, 1, 5]  # 1.0 * 0.3 = 0.3: between 0.4 and 0.2
    got, _ = run(recent=[*views, ev(1, "add_to_cart")], rules=rules)
    assert got[0][0] == 1
    got, _ = run(recent=[ev(1), ev(1)], rules=rules)  # below the threshold: untouched
    assert got[0][0] == 1


def test_similar_to_recent_views_blend_in_newest_first():
    # newest view 7 (neighbours 71, 72, 73), older view 8 (81...) decayed by 0.7
    got, _ = run(recent=[ev(7, ts=200), ev(8, ts=100)], n=6)
    # 71 scores 1.0 * 1.0 and ties the batch top: the lower product id goes first
    assert got[:2] == [(1, "batch"), (71, "similar_to_recent")]
    # 72 (rank 2 of 3 behind the newest view) scores 0.667, 81 (best behind the older) 0.7
    assert got[2:] == [(2, "batch"), (81, "similar_to_recent"), (72, "similar_to_recent"),
                       (3, "batch")]
    # the viewed products themselves are not pushed by the similarity step
    assert 7 not in dict(got) and 8 not in dict(got)


def test_a_similar_item_already_in_the_batch_list_keeps_its_best_score():
    rules = MergeRules(similar_weight=2.0)
    got, scored = run(batch=([11, 1], [0.9, 0.8]), recent=[ev(1)], rules=rules, n=3)
    # 11 is batch rank 1 (score 1.0) and 1's best neighbour (2.0): the bigger one wins
    assert got[0] == (11, "similar_to_recent") and round(scored[0].score, 3) == 2.0
    assert [p for p, _ in got].count(11) == 1


def test_unknown_user_gets_trending_then_popular_without_duplicates():
    got, scored = run(batch=None, trending=[9, 8], popular=[8, 7, 6], n=4)
    assert got == [(9, "trending"), (8, "trending"), (7, "popular"), (6, "popular")]
    assert all(a.score > b.score for a, b in itertools.pairwise(scored))


def test_cold_session_with_views_gets_their_neighbours_first():
    got, _ = run(batch=None, recent=[ev(3)], trending=[5], popular=[6], n=5)
    assert got == [(31, "similar_to_recent"), (32, "similar_to_recent"),
                   (33, "similar_to_recent"), (5, "trending"), (6, "popular")]


def test_n_caps_the_list_and_ties_break_by_product_id():
    got, _ = run(batch=([5, 4], [1.0, 1.0]), n=1)
    assert got == [(5, "batch")]  # rank wins over product id: 5 was ranked first
    got, _ = run(batch=None, recent=[ev(2), ev(1)], rules=MergeRules(recency_decay=1.0), n=2)
    assert got == [(11, "similar_to_recent"), (21, "similar_to_recent")]
