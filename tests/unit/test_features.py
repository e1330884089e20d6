"""Feature engineering: values from a hand-made shop, the as-of cut-off, and a generated build."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recomart.curated import logical_date_end, publish
from recomart.features.engineering import build_features, load_inputs
from recomart.tables import DATASETS

DS = "2024-05-10"  # as of 2024-05-11T00:00Z


def curated_frame(name: str, rows: list[dict], ds: str = DS) -> pd.DataFrame:
    """A frame typed like the curated tables (canonical columns + _source/_ds)."""
    spec = DATASETS[name]
    df = pd.DataFrame(rows, columns=list(spec.columns))
    for col, kind in spec.columns.items():
        if kind == "timestamp":
            df[col] = pd.to_datetime(df[col], utc=True).astype("datetime64[us, UTC]")
        elif kind == "date":
            df[col] = pd.to_datetime(df[col]).dt.date
        elif kind == "int":
            df[col] = pd.to_numeric(df[col]).astype("Int64" if col in spec.nullable else "int64")
        elif kind == "float":
            df[col] = pd.to_numeric(df[col]).astype("float64")
    return df.assign(_source="csv", _ds=ds)


def _ev(i, user, product, kind, session, ts, price=10.0):
    return {"event_id": f"e{i}", "user_id": user, "product_id": product, "event_type": kind,
            "session_id": session, "timestamp": ts, "price": price}


@pytest.fixture
def shop(lake):
    users = [{"user_id": 1, "age": 30, "gender": "F", "region": "North", "signup_date": "2024-01-01"},
             {"user_id": 2, "age": None, "gender": "U", "region": None, "signup_date": "2024-05-01"},
             {"user_id": 3, "age": 50, "gender": "M", "region": "South", "signup_date": "2024-06-01"}]
    products = [
        {"product_id": 10, "title": "Trail running shoes", "category": "Sports",
         "subcategory": "Running", "brand": "Fleet", "price": 80.0,
         "description": "Lightweight trail running shoes with grip"},
        {"product_id": 11, "title": "Road running shoes", "category": "Sports",
         "subcategory": "Running", "brand": "Fleet", "price": 90.0,
         "description": "Cushioned road running shoes for daily running"},
        {"product_id": 12, "title": "Espresso machine", "category": "Kitchen",
         "subcategory": "Coffee", "brand": "Brewmont", "price": 300.0,
         "description": "Programmable espresso coffee machine with milk frother"},
    ]
    clicks = [
        _ev(1, 1, 10, "view", "s1", "2024-05-01T10:00:00Z"),
        _ev(2, 1, 10, "add_to_cart", "s1", "2024-05-01T10:01:00Z"),
        _ev(3, 1, 10, "purchase", "s1", "2024-05-01T10:02:00Z"),
        _ev(4, 1, 12, "view", "s2", "2024-05-08T09:00:00Z"),
        _ev(5, 2, 11, "view", "s3", "2024-05-10T23:59:59Z"),     # last second of ds: counted
        _ev(6, 2, 12, "view", "s4", "2024-05-11T00:00:00Z"),     # the as-of instant: excluded
        _ev(7, 1, 11, "purchase", "s5", "2024-06-01T00:00:00Z"),  # the future: excluded
    ]
    orders = [{"order_id": 1, "user_id": 1, "product_id": 10, "quantity": 2, "unit_price": 80.0,
               "timestamp": "2024-05-01T10:02:00Z"},
              {"order_id": 2, "user_id": 1, "product_id": 11, "quantity": 1, "unit_price": 90.0,
               "timestamp": "2024-06-01T00:00:00Z"}]                 # future order: excluded
    ratings = [{"user_id": 1, "product_id": 10, "rating": 4.0, "review": None,
                "timestamp": "2024-05-02T00:00:00Z"},
               {"user_id": 1, "product_id": 10, "rating": 2.0, "review": "meh",
                "timestamp": "2024-05-09T00:00:00Z"}]
    for name, rows in (("users", users), ("products", products), ("clickstream", clicks),
                       ("orders", orders), ("ratings", ratings)):
        lake.write_table("curated", name, curated_frame(name, rows))
    publish_latest(lake, DS)
    return lake


def publish_latest(lake, ds: str) -> None:
    """What a passing quality gate does: publish the newest curated versions for ``ds``."""
    publish(lake, ds, {n: lake.table_version("curated", n) for n in DATASETS}, "test")


def test_features_read_only_published_versions(shop):
    """A staged (unpublished) curated version, e.g. one whose gate failed, is never read."""
    products = shop.read_table("curated", "products").drop(columns=["_ds"])
    shop.write_table("curated", "products", products.assign(price=products["price"] * 100, _ds=DS))
    inp = load_inputs(shop, DS)
    assert inp.versions["products"] == 0
    assert inp.products.set_index("product_id")["price"][10] == 80.0


def test_features_refuse_to_run_when_nothing_was_published(lake):
    from recomart.curated import NothingPublishedError

    for name in DATASETS:
        lake.write_table("curated", name, curated_frame(name, []))
    with pytest.raises(NothingPublishedError, match="quality gate must pass"):
        load_inputs(lake, DS)


def test_as_of_is_the_end_of_the_logical_date():
    assert logical_date_end("2024-05-10") == pd.Timestamp("2024-05-11T00:00:00Z")


def test_inputs_exclude_everything_at_or_after_the_as_of_time(shop):
    inp = load_inputs(shop, DS)
    assert set(inp.clickstream["event_id"]) == {"e1", "e2", "e3", "e4", "e5"}
    assert list(inp.orders["order_id"]) == [1]
    assert set(inp.users["user_id"]) == {1, 2}          # user 3 signs up after the as-of date
    assert inp.versions == {n: 0 for n in DATASETS}


def test_user_features_from_a_hand_made_shop(shop):
    build_features(shop, DS, "run-1")
    from recomart.features.store import FeatureStore

    users = FeatureStore(shop).get_snapshot("user_features").set_index("user_id")
    assert sorted(users.index) == [1, 2]
    u1, u2 = users.loc[1], users.loc[2]
    assert (u1["n_views"], u1["n_add_to_cart"], u1["n_purchases"]) == (2, 1, 1)
    assert u1["frequency"] == 1 and u1["monetary"] == 160.0 and u1["avg_order_value"] == 160.0
    assert u1["avg_rating"] == 3.0 and u1["n_ratings"] == 2
    assert u1["n_sessions"] == 2 and u1["events_per_session"] == 2.0
    assert u1["avg_session_seconds"] == pytest.approx((120 + 0) / 2)
    # last activity is the rating of 2024-05-09 (later than the last view on 05-08)
    assert u1["recency_days"] == pytest.approx(2.0)
    assert u1["tenure_days"] == pytest.approx((pd.Timestamp("2024-05-11") - pd.Timestamp("2024-01-01")).days)
    # weights: Sports view 1 + cart 3 + purchase 5 + two ratings 2 + 2 = 13, Kitchen view 1
    # -> shares in vocabulary order [Kitchen, Sports]
    assert np.allclose(u1["category_affinity"], [1 / 14, 13 / 14])
    assert u1["top_category"] == "Sports" and list(u1["top_categories"]) == ["Sports", "Kitchen"]
    assert u2["n_views"] == 1 and u2["frequency"] == 0 and pd.isna(u2["avg_order_value"])
    assert pd.isna(u2["age"]) and u2["recency_days"] == pytest.approx(1 / 86400)
    reg = FeatureStore(shop).registry()["tables"]["user_features"]
    assert reg["metadata"]["category_vocabulary"] == ["Kitchen", "Sports"]


def test_item_and_pair_features_from_a_hand_made_shop(shop):
    from recomart.features.store import FeatureStore

    build_features(shop, DS, "run-1")
    store = FeatureStore(shop)
    items = store.get_snapshot("item_features").set_index("product_id")
    i10, i11, i12 = items.loc[10], items.loc[11], items.loc[12]
    assert (i10["n_views"], i10["n_purchases"], i10["conversion_rate"]) == (1, 1, 1.0)
    assert i10["units_sold"] == 2 and i10["revenue"] == 160.0
    # 7-day window [05-04, 05-11): item 10's rating (05-09, weight 2), item 11's view (05-10),
    # item 12's view (05-08); the week before: item 10's view, cart, purchase and rating (05-01/02)
    assert (i10["popularity_7d"], i11["popularity_7d"], i12["popularity_7d"]) == (2.0, 1.0, 1.0)
    assert i10["popularity_prev_7d"] == 11.0 and i10["popularity_trend"] < 0 < i11["popularity_trend"]
    assert i10["avg_rating"] == 3.0 and pd.isna(i11["avg_rating"])
    assert i10["price_band"] < i11["price_band"]          # cheaper within the same category
    vec = {pid: np.asarray(v) for pid, v in items["content_vector"].items()}
    assert all(len(v) == 16 and np.isclose(np.linalg.norm(v), 1.0, atol=1e-5) for v in vec.values())
    assert vec[10] @ vec[11] > vec[10] @ vec[12]          # two running shoes are more alike

    pairs = store.get_snapshot("user_item_features").set_index(["user_id", "product_id"])
    assert sorted(pairs.index) == [(1, 10), (1, 12), (2, 11)]
    p = pairs.loc[(1, 10)]
    assert (p["n_views"], p["n_add_to_cart"], p["n_purchases"], p["units_bought"]) == (1, 1, 1, 2)
    assert p["interaction_weight"] == 13.0 and p["rating"] == 2.0   # 1 + 3 + 5 + 2 ratings × 2
    assert p["last_interaction"] == pd.Timestamp("2024-05-09T00:00:00Z")


def test_build_on_generated_shop_covers_every_entity_and_is_idempotent(lake, tmp_path):
    from recomart.features.store import FeatureStore
    from recomart.sources.generator import generate

    generate(tmp_path / "src", users=300, products=80, days=14, seed=11)
    for name in DATASETS:
        raw = pd.read_csv(tmp_path / "src" / f"{name}.csv", dtype=str, keep_default_na=False,
                          na_values=[""])
        lake.write_table("curated", name, curated_frame(name, raw.to_dict("records"), "2024-06-29"))
    publish_latest(lake, "2024-06-29")
    first = build_features(lake, "2024-06-29", "r1")
    store = FeatureStore(lake)
    users = store.get_snapshot("user_features")
    clicks = lake.read_table("curated", "clickstream")
    assert first["tables"]["item_features"]["rows"] == 80
    assert users["n_views"].sum() == (clicks["event_type"] == "view").sum()
    assert set(users["user_id"]) <= set(lake.read_table("curated", "users")["user_id"])
    pairs = store.get_snapshot("user_item_features")
    keys = ["user_id", "product_id"]
    expected = {tuple(r) for t in ("clickstream", "orders", "ratings")
                for r in lake.read_table("curated", t, columns=keys).itertuples(index=False)}
    assert set(pairs[keys].itertuples(index=False, name=None)) == expected
    again = build_features(lake, "2024-06-29", "r1")
    for table, info in again["tables"].items():
        snaps = store.snapshots(table)
        assert list(snaps["_ds"]) == ["2024-06-29"] and snaps["rows"].iloc[0] == info["rows"]
    a = users.drop(columns=["_run_id"]).sort_values("user_id", ignore_index=True)
    b = store.get_snapshot("user_features").drop(columns=["_run_id"]).sort_values(
        "user_id", ignore_index=True)
    pd.testing.assert_frame_equal(a, b)


def test_backfill_reads_the_curated_version_written_for_its_own_date(shop):
    from recomart.features.store import FeatureStore

    products = shop.read_table("curated", "products").drop(columns=["_ds"])
    shop.write_table("curated", "products", products.assign(_ds=DS),
                     metadata={"logical_date": DS})
    publish_latest(shop, DS)
    repriced = products.assign(price=products["price"] * 10, _ds="2024-05-20")
    shop.write_table("curated", "products", repriced, metadata={"logical_date": "2024-05-20"})
    publish_latest(shop, "2024-05-20")
    build_features(shop, "2024-05-20", "later")
    back = build_features(shop, DS, "backfill")             # after the later date was built
    store = FeatureStore(shop)
    prices = {ds: store.get_snapshot("item_features", ds).set_index("product_id")["price"]
              for ds in (DS, "2024-05-20")}
    assert prices[DS][10] == 80.0 and prices["2024-05-20"][10] == 800.0
    assert back["curated_versions"]["products"] == 1
    # the backfill of an older date leaves the online copy at the newest snapshot
    assert store.get_online_row("item_features", 10)["price"] == 800.0
