"""The canonical source tables: the contract between sources, ingestion, validation and features.

Every source (the generator, the MovieLens adapter, a shop's own export, the Faust speed layer)
produces these datasets with these columns. CSV files are named ``<dataset>.csv`` in a source
folder. Timestamps are ISO-8601 UTC strings in CSV and ``timestamp[us, UTC]`` once curated.
A dataset may legitimately have zero rows (a header-only CSV): MovieLens has no orders.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_TYPES = ("view", "add_to_cart", "purchase")
GENDERS = ("F", "M", "U")


@dataclass(frozen=True)
class Dataset:
    name: str
    columns: dict[str, str]  # column -> logical type: int, float, str, timestamp, date
    key: tuple[str, ...]
    nullable: frozenset[str] = frozenset()
    description: str = ""


USERS = Dataset(
    "users",
    {"user_id": "int", "age": "int", "gender": "str", "region": "str", "signup_date": "date"},
    key=("user_id",),
    nullable=frozenset({"age", "region"}),
    description="One row per customer; demographics may be unknown (age null, gender 'U').",
)
PRODUCTS = Dataset(
    "products",
    {"product_id": "int", "title": "str", "category": "str", "subcategory": "str", "brand": "str",
     "price": "float", "description": "str"},
    key=("product_id",),
    nullable=frozenset({"brand", "description", "subcategory", "price"}),
    description="The catalog; MovieLens genres map to category (first genre) and subcategory (all);\n"
                "price may be unknown (MovieLens) but never negative.",
)
ORDERS = Dataset(
    "orders",
    {"order_id": "int", "user_id": "int", "product_id": "int", "quantity": "int",
     "unit_price": "float", "timestamp": "timestamp"},
    key=("order_id", "product_id"),
    description="Order lines: one row per product in an order.",
)
RATINGS = Dataset(
    "ratings",
    {"user_id": "int", "product_id": "int", "rating": "float", "review": "str",
     "timestamp": "timestamp"},
    key=("user_id", "product_id", "timestamp"),
    nullable=frozenset({"review"}),
    description="Explicit feedback, rating in [0.5, 5] (shops use whole stars 1-5).",
)
CLICKSTREAM = Dataset(
    "clickstream",
    {"event_id": "str", "user_id": "int", "product_id": "int", "event_type": "str",
     "session_id": "str", "timestamp": "timestamp", "price": "float", "request_id": "str"},
    key=("event_id",),
    nullable=frozenset({"price", "request_id"}),
    description="Implicit feedback events (view, add_to_cart, purchase); also the Kafka payload.\n"
                "request_id (optional) names the served list (exposure) the event follows.",
)

DATASETS: dict[str, Dataset] = {d.name: d for d in (USERS, PRODUCTS, ORDERS, RATINGS, CLICKSTREAM)}
