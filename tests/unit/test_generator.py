"""The synthetic shop: deterministic, contract-shaped, internally consistent and worth modelling."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from recomart.sources.generator import generate
from recomart.tables import DATASETS, EVENT_TYPES, GENDERS

ARGS = {"users": 2000, "products": 300, "days": 28, "seed": 7, "end_date": date(2024, 6, 30)}
START = pd.Timestamp("2024-06-02", tz="UTC")
END = pd.Timestamp("2024-06-30", tz="UTC")


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> tuple[Path, dict[str, int]]:
    out = tmp_path_factory.mktemp("shop")
    return out, generate(out, **ARGS)


@pytest.fixture(scope="module")
def frames(shop) -> dict[str, pd.DataFrame]:
    out, _ = shop
    frames = {name: pd.read_csv(out / f"{name}.csv") for name in DATASETS}
    for name in ("orders", "ratings", "clickstream"):
        frames[name]["timestamp"] = pd.to_datetime(frames[name]["timestamp"], utc=True,
                                                   format="%Y-%m-%dT%H:%M:%SZ")
    frames["users"]["signup_date"] = pd.to_datetime(frames["users"]["signup_date"], format="%Y-%m-%d")
    return frames


def test_same_seed_gives_identical_bytes_and_other_seed_differs(shop, tmp_path):
    out, _ = shop
    again = generate(tmp_path / "again", **ARGS)
    other = generate(tmp_path / "other", **{**ARGS, "seed": 8})
    for name in DATASETS:
        assert (tmp_path / "again" / f"{name}.csv").read_bytes() == (out / f"{name}.csv").read_bytes()
    assert again == shop[1]
    differs = [name for name in DATASETS
               if (tmp_path / "other" / f"{name}.csv").read_bytes() != (out / f"{name}.csv").read_bytes()]
    assert set(differs) == set(DATASETS)
    assert other != again


def test_columns_match_the_contract_and_counts_match_files(shop):
    out, counts = shop
    for name, dataset in DATASETS.items():
        with open(out / f"{name}.csv", newline="") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            rows = sum(1 for _ in reader)
        assert header == list(dataset.columns), name
        assert counts[name] == rows
        assert rows > 0, name


def test_timestamp_format_is_iso_utc(shop):
    out, _ = shop
    with open(out / "clickstream.csv", newline="") as fh:
        row = next(csv.DictReader(fh))
    assert pd.Timestamp(row["timestamp"]).tzinfo is not None
    assert len(row["timestamp"]) == 20 and row["timestamp"].endswith("Z") and row["timestamp"][10] == "T"


def test_keys_unique_and_types(frames):
    for name, dataset in DATASETS.items():
        df = frames[name]
        assert not df.duplicated(list(dataset.key)).any(), name
        for col, kind in dataset.columns.items():
            if kind == "int":
                assert pd.api.types.is_integer_dtype(df[col].dropna().astype("int64")), (name, col)
                assert (df[col].dropna() % 1 == 0).all(), (name, col)
            if col not in dataset.nullable:
                assert df[col].notna().all(), (name, col)
    assert frames["clickstream"]["event_id"].str.match(r"^e\d+$").all()
    assert frames["clickstream"]["session_id"].str.match(r"^s\d+$").all()


def test_foreign_keys_and_value_domains(frames):
    users = set(frames["users"]["user_id"])
    products = set(frames["products"]["product_id"])
    for name in ("orders", "ratings", "clickstream"):
        assert set(frames[name]["user_id"]) <= users, name
        assert set(frames[name]["product_id"]) <= products, name
    assert set(frames["clickstream"]["event_type"]) == set(EVENT_TYPES)
    assert set(frames["users"]["gender"]) <= set(GENDERS)
    assert frames["ratings"]["rating"].between(1, 5).all()
    assert (frames["ratings"]["rating"] % 1 == 0).all()
    assert (frames["products"]["price"] > 0).all()
    assert (frames["orders"]["quantity"] >= 1).all()
    ages = frames["users"]["age"].dropna()
    assert ages.between(18, 100).all()


def test_timestamps_in_window_and_signup_before_first_activity(frames):
    for name in ("orders", "ratings", "clickstream"):
        ts = frames[name]["timestamp"]
        assert (ts >= START).all() and (ts < END).all(), name
    first = frames["clickstream"].groupby("user_id")["timestamp"].min().dt.tz_localize(None)
    signup = frames["users"].set_index("user_id")["signup_date"].reindex(first.index)
    assert (signup <= first.dt.normalize()).all()
    assert (frames["users"]["signup_date"] < END.tz_localize(None)).all()


def test_orders_equal_purchase_events(frames):
    click = frames["clickstream"]
    purchases = click[click["event_type"] == "purchase"]
    key = ["user_id", "product_id", "timestamp"]
    a = purchases[key].sort_values(key).reset_index(drop=True)
    b = frames["orders"][key].sort_values(key).reset_index(drop=True)
    pd.testing.assert_frame_equal(a, b)
    price = purchases.set_index(key)["price"].sort_index()
    unit = frames["orders"].set_index(key)["unit_price"].sort_index()
    np.testing.assert_allclose(price.to_numpy(), unit.to_numpy())
    # one order = one user at one time
    per_order = frames["orders"].groupby("order_id").agg(users=("user_id", "nunique"),
                                                         times=("timestamp", "nunique"))
    assert (per_order["users"] == 1).all() and (per_order["times"] == 1).all()


def test_session_funnels(frames):
    click = frames["clickstream"]
    assert (click.groupby("session_id")["user_id"].nunique() == 1).all()
    assert click["timestamp"].is_monotonic_increasing
    first = click.groupby(["session_id", "product_id", "event_type"])["timestamp"].min().unstack()
    carted = first["add_to_cart"].notna()
    assert (first.loc[carted, "view"] <= first.loc[carted, "add_to_cart"]).all()
    bought = first["purchase"].notna()
    assert (first.loc[bought, "add_to_cart"] <= first.loc[bought, "purchase"]).all()
    counts = click["event_type"].value_counts()
    assert counts["view"] > counts["add_to_cart"] > counts["purchase"]


def test_ratings_follow_purchases(frames):
    ratings, orders = frames["ratings"], frames["orders"]
    first_buy = orders.groupby(["user_id", "product_id"])["timestamp"].min()
    bought_at = first_buy.reindex(pd.MultiIndex.from_frame(ratings[["user_id", "product_id"]]))
    assert bought_at.notna().all()
    assert (ratings["timestamp"].to_numpy() > bought_at.to_numpy()).all()
    assert ratings["review"].notna().any() and ratings["review"].isna().any()


def test_long_tail_one_time_users_and_repeat_buyers(frames):
    click = frames["clickstream"]
    views = click[click["event_type"] == "view"]["product_id"].value_counts()
    top = views.head(max(1, len(frames["products"]) // 10)).sum()
    assert top / views.sum() > 0.3  # uniform popularity would give ~0.1
    sessions = click.groupby("user_id")["session_id"].nunique()
    assert 0.1 < (sessions == 1).mean() < 0.9
    orders = frames["orders"].groupby("user_id")["order_id"].nunique()
    assert (orders > 1).sum() > 0


def test_users_concentrate_on_few_categories(frames):
    click = frames["clickstream"].merge(frames["products"][["product_id", "category"]],
                                        on="product_id")
    active = click.groupby("user_id").filter(lambda g: len(g) >= 10)
    share = active.groupby(["user_id", "category"]).size().groupby("user_id").apply(
        lambda s: s.max() / s.sum())
    n_categories = frames["products"]["category"].nunique()
    assert n_categories >= 8
    assert share.median() > 3 / n_categories


def test_weekends_busier_than_weekdays(frames):
    ts = frames["clickstream"]["timestamp"]
    per_day = ts.dt.floor("D").value_counts()
    weekend = per_day[per_day.index.weekday >= 5].mean()
    weekday = per_day[per_day.index.weekday < 5].mean()
    assert weekend > weekday


def test_ratings_higher_in_preferred_categories(frames):
    click = frames["clickstream"].merge(frames["products"][["product_id", "category"]],
                                        on="product_id")
    share = click.groupby(["user_id", "category"]).size() / click.groupby("user_id").size()
    rated = frames["ratings"].merge(frames["products"][["product_id", "category"]], on="product_id")
    rated["affinity"] = share.reindex(pd.MultiIndex.from_frame(rated[["user_id", "category"]])).to_numpy()
    assert rated["affinity"].corr(rated["rating"]) > 0


def test_descriptions_are_more_alike_within_a_category(frames):
    products = frames["products"].dropna(subset=["description"])

    def words(text: str) -> set[str]:
        return set(text.lower().replace(".", " ").replace(",", " ").replace(":", " ").split())

    rng = np.random.default_rng(0)
    rows = products.to_dict("records")
    same, other = [], []
    for _ in range(2000):
        a, b = rng.choice(len(rows), size=2, replace=False)
        wa, wb = words(rows[a]["description"]), words(rows[b]["description"])
        jaccard = len(wa & wb) / len(wa | wb)
        (same if rows[a]["category"] == rows[b]["category"] else other).append(jaccard)
    assert np.mean(same) > 1.5 * np.mean(other)


def test_end_date_moves_the_window_and_progress_is_reported(tmp_path):
    steps: list[tuple[str, int, int]] = []
    counts = generate(tmp_path, users=50, products=20, days=3, seed=1, end_date=date(2023, 1, 10),
                      progress=lambda what, done, total: steps.append((what, done, total)))
    ts = pd.to_datetime(pd.read_csv(tmp_path / "clickstream.csv")["timestamp"], utc=True)
    assert ts.min() >= pd.Timestamp("2023-01-07", tz="UTC")
    assert ts.max() < pd.Timestamp("2023-01-10", tz="UTC")
    assert counts["clickstream"] == len(ts)
    assert [d for _, d, _ in steps] == list(range(1, len(steps) + 1))
    assert steps[-1][1] == steps[-1][2]


@pytest.mark.parametrize("kwargs", [{"users": 0}, {"products": 3}, {"days": 0}])
def test_invalid_sizes_are_rejected(tmp_path, kwargs):
    with pytest.raises(ValueError):
        generate(tmp_path, **{"users": 10, "products": 20, "days": 2, **kwargs})


@pytest.mark.parametrize("seed", range(8))
def test_tiny_shops_still_write_every_file(tmp_path, seed):
    counts = generate(tmp_path, users=1, products=10, days=1, seed=seed)
    for name, dataset in DATASETS.items():
        df = pd.read_csv(tmp_path / f"{name}.csv")
        assert list(df.columns) == list(dataset.columns)
        assert len(df) == counts[name]
