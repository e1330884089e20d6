"""MovieLens adapter: maps a MovieLens folder onto the canonical source tables (recomart.tables).

So real data flows through the same pipeline as shop data. Three layouts are recognised:

- ``ratings.csv`` / ``movies.csv`` (/ ``tags.csv``): ml-latest, ml-latest-small, ml-25m ...
- ``u.data`` / ``u.item`` (/ ``u.user``): the classic ml-100k.
- ``ratings.dat`` / ``movies.dat`` (/ ``users.dat``): ml-1m.

Mapping: ratings -> ``ratings`` (the interactions, with their timestamps); movies -> ``products``
(category = first genre, subcategory = all genres ``|``-joined, description = title, genres and
the most used user tags, price unknown); users -> ``users`` (demographics where the layout has
them, signup = first rating). MovieLens has no orders or clickstream: those come out empty.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recomart.errors import PermanentError
from recomart.tables import DATASETS

ML100K_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime",
                 "Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery",
                 "Romance", "Sci-Fi", "Thriller", "War", "Western"]


class MovieLensFormatError(PermanentError, ValueError):
    """The folder is not a MovieLens layout this adapter knows."""


def detect_layout(path: Path) -> str:
    path = Path(path)
    if (path / "ratings.csv").exists() and (path / "movies.csv").exists():
        return "csv"
    if (path / "u.data").exists() and (path / "u.item").exists():
        return "100k"
    if (path / "ratings.dat").exists() and (path / "movies.dat").exists():
        return "1m"
    raise MovieLensFormatError(
        f"{path} is not a MovieLens folder: expected ratings.csv+movies.csv, u.data+u.item, "
        "or ratings.dat+movies.dat")


def _read_csv_layout(path: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame | None,
                                           pd.DataFrame | None]:
    ratings = pd.read_csv(path / "ratings.csv",
                          dtype={"userId": "int64", "movieId": "int64", "rating": "float64",
                                 "timestamp": "int64"})
    movies = pd.read_csv(path / "movies.csv", dtype={"movieId": "int64"}, keep_default_na=False)
    tags = None
    if (path / "tags.csv").exists():
        tags = pd.read_csv(path / "tags.csv", keep_default_na=False)
        tags = tags.rename(columns={"movieId": "product_id"})[["product_id", "tag"]]
    ratings = ratings.rename(columns={"userId": "user_id", "movieId": "product_id"})
    movies = movies.rename(columns={"movieId": "product_id"})
    return ratings, movies[["product_id", "title", "genres"]], None, tags


def _read_100k_layout(path: Path):
    ratings = pd.read_csv(path / "u.data", sep="\t", header=None,
                          names=["user_id", "product_id", "rating", "timestamp"])
    cols = ["product_id", "title", "release", "video_release", "url", *ML100K_GENRES]
    items = pd.read_csv(path / "u.item", sep="|", header=None, names=cols, encoding="latin-1",
                        keep_default_na=False)
    flags = items[ML100K_GENRES].astype(int).to_numpy().astype(bool)
    items["genres"] = ["|".join(g for g, on in zip(ML100K_GENRES, row, strict=True) if on)
                       for row in flags]
    users = None
    if (path / "u.user").exists():
        users = pd.read_csv(path / "u.user", sep="|", header=None,
                            names=["user_id", "age", "gender", "occupation", "zip"],
                            dtype={"zip": "str"})
        users["region"] = users["zip"].str[:1].map(lambda z: f"zip-{z}" if z else None)
    return ratings, items[["product_id", "title", "genres"]], users, None


def _read_1m_layout(path: Path):
    def dat(name: str, cols: list[str]) -> pd.DataFrame:
        return pd.read_csv(path / name, sep="::", engine="python", header=None, names=cols,
                           encoding="latin-1", keep_default_na=False)

    ratings = dat("ratings.dat", ["user_id", "product_id", "rating", "timestamp"])
    movies = dat("movies.dat", ["product_id", "title", "genres"])
    users = None
    if (path / "users.dat").exists():
        users = dat("users.dat", ["user_id", "gender", "age", "occupation", "zip"])
        users["region"] = users["zip"].astype(str).str[:1].map(lambda z: f"zip-{z}" if z else None)
    return ratings, movies, users, None


def load_movielens(path: Path | str, top_tags: int = 5) -> dict[str, pd.DataFrame]:
    """Canonical frames per dataset (timestamps tz-aware UTC), ready for the pipeline or models."""
    path = Path(path)
    layout = detect_layout(path)
    reader = {"csv": _read_csv_layout, "100k": _read_100k_layout, "1m": _read_1m_layout}[layout]
    ratings, movies, users_raw, tags = reader(path)

    ratings = ratings.astype({"user_id": "int64", "product_id": "int64", "rating": "float64"})
    ratings["timestamp"] = pd.to_datetime(ratings["timestamp"].astype("int64"), unit="s", utc=True)
    ratings["review"] = pd.Series([None] * len(ratings), dtype="object")
    ratings = ratings[list(DATASETS["ratings"].columns)]

    genres = movies["genres"].replace({"(no genres listed)": ""}).fillna("")
    first = genres.str.split("|").str[0].replace({"": "Unknown"})
    tag_text = pd.Series("", index=movies.index)
    if tags is not None and len(tags):
        top = (tags.assign(tag=tags["tag"].astype(str).str.strip().str.lower())
               .groupby(["product_id", "tag"]).size().rename("n").reset_index()
               .sort_values(["product_id", "n", "tag"], ascending=[True, False, True])
               .groupby("product_id").head(top_tags)
               .groupby("product_id")["tag"].agg(" ".join))
        tag_text = movies["product_id"].map(top).fillna("")
    description = (movies["title"].astype(str) + ". Genres: " + genres.str.replace("|", ", ")
                   + ". Tags: " + tag_text).str.replace(r"\. Tags: $", "", regex=True)
    products = pd.DataFrame({
        "product_id": movies["product_id"].astype("int64"),
        "title": movies["title"].astype(str),
        "category": first,
        "subcategory": genres.where(genres != "", None),
        "brand": pd.Series([None] * len(movies), dtype="object"),
        "price": pd.Series([float("nan")] * len(movies), dtype="float64"),
        "description": description,
    })

    first_seen = ratings.groupby("user_id")["timestamp"].min()
    users = pd.DataFrame({"user_id": first_seen.index.astype("int64")})
    users["signup_date"] = first_seen.dt.strftime("%Y-%m-%d").to_numpy()
    if users_raw is not None:
        demo = users_raw.set_index("user_id")
        users["age"] = users["user_id"].map(demo["age"]).astype("Int64")
        users["gender"] = users["user_id"].map(demo["gender"]).fillna("U")
        users["region"] = users["user_id"].map(demo["region"])
    else:
        users["age"] = pd.array([pd.NA] * len(users), dtype="Int64")
        users["gender"] = "U"
        users["region"] = None
    users = users[list(DATASETS["users"].columns)]

    empty = {name: pd.DataFrame({c: pd.Series([], dtype="object") for c in DATASETS[name].columns})
             for name in ("orders", "clickstream")}
    return {"users": users, "products": products, "ratings": ratings, **empty}


def _iso(ts: pd.Series) -> pd.Series:
    return ts.dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def write_movielens_sources(path: Path | str, out_dir: Path | str) -> dict[str, int]:
    """Write the canonical ``<dataset>.csv`` files for a MovieLens folder; returns rows per file."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts: dict[str, int] = {}
    for name, frame in load_movielens(path).items():
        frame = frame.copy()
        for col, kind in DATASETS[name].columns.items():
            if kind == "timestamp" and len(frame) and hasattr(frame[col], "dt"):
                frame[col] = _iso(frame[col])
        tmp = out / f".{name}.csv.tmp"
        frame.to_csv(tmp, index=False)
        tmp.replace(out / f"{name}.csv")
        counts[name] = len(frame)
    return counts
