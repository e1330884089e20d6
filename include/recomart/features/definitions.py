"""What each feature means: the definitions the store's registry records for every build.

Engineering code and the registry share these, so a feature cannot be written without a
description, and `recomart features describe` can explain every column a model consumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

EVENT_WEIGHTS = {"view": 1.0, "add_to_cart": 3.0, "purchase": 5.0}
"""Implicit-feedback strength of each clickstream event type (used for affinities and popularity)."""

RATING_WEIGHT = 2.0
"""Strength of a rating (any value) as an interaction; rating-only sources (MovieLens) rely on it."""

CONTENT_DIM = 16
"""Length of the item content vector (TF-IDF of the item text → truncated SVD, L2-normalised)."""

TIMESTAMP_COLUMN = "feature_timestamp"
"""As-of time of a snapshot: every value in it was computed from data strictly before this time."""

META_COLUMNS = (TIMESTAMP_COLUMN, "_ds", "_run_id")


@dataclass(frozen=True)
class FeatureDef:
    name: str
    description: str


@dataclass(frozen=True)
class FeatureTableSpec:
    name: str
    entity: tuple[str, ...]
    description: str
    features: tuple[FeatureDef, ...] = field(default_factory=tuple)

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    def describe(self, name: str) -> str:
        return next((f.description for f in self.features if f.name == name), "")


def _defs(*pairs: tuple[str, str]) -> tuple[FeatureDef, ...]:
    return tuple(FeatureDef(n, d) for n, d in pairs)


USER_FEATURES = FeatureTableSpec(
    "user_features", ("user_id",),
    "One row per known user: RFM, activity, sessions, ratings, category affinity, demographics.",
    _defs(
        ("age", "Age in years (null when unknown)."),
        ("gender", "F, M or U (unknown)."),
        ("region", "Region (null when unknown)."),
        ("tenure_days", "Days from signup to the as-of time."),
        ("recency_days", "Days since the user's last clickstream event, order or rating (null: never)."),
        ("frequency", "Distinct orders placed."),
        ("monetary", "Total order value (quantity × unit price)."),
        ("avg_order_value", "monetary / frequency (null without orders)."),
        ("n_views", "Clickstream view events."),
        ("n_add_to_cart", "Clickstream add_to_cart events."),
        ("n_purchases", "Clickstream purchase events."),
        ("view_to_purchase", "n_purchases / n_views (null without views)."),
        ("n_sessions", "Distinct clickstream sessions."),
        ("events_per_session", "Mean clickstream events per session."),
        ("avg_session_seconds", "Mean time between the first and last event of a session."),
        ("active_days_30d", "Distinct days with clickstream activity in the last 30 days."),
        ("avg_rating", "Mean rating given (null: never rated)."),
        ("n_ratings", "Ratings given."),
        ("top_category", "Category with the highest weighted interaction share (null: no activity)."),
        ("top_categories", "Up to three categories by weighted interaction share, strongest first."),
        ("category_affinity", "Share of weighted interactions per category (view 1, cart 3, "
                              "purchase 5, rating 2) in the order of the table's "
                              "`category_vocabulary`; sums to 1 or all 0."),
    ),
)

ITEM_FEATURES = FeatureTableSpec(
    "item_features", ("product_id",),
    "One row per catalog product: popularity and trend, conversion, ratings, price band, content.",
    _defs(
        ("category", "Catalog category."),
        ("subcategory", "Catalog subcategory (null when unknown)."),
        ("brand", "Brand (null when unknown)."),
        ("price", "Current list price."),
        ("price_band", "Price quintile within the category, 1 (cheapest) to 5."),
        ("n_views", "Clickstream view events."),
        ("n_add_to_cart", "Clickstream add_to_cart events."),
        ("n_purchases", "Clickstream purchase events."),
        ("unique_users", "Distinct users with any clickstream event or rating."),
        ("conversion_rate", "n_purchases / n_views (null without views)."),
        ("units_sold", "Ordered quantity."),
        ("revenue", "Order value."),
        ("popularity_7d", "Weighted interactions (view 1, cart 3, purchase 5, rating 2) in the 7 days "
                           "before the as-of time."),
        ("popularity_prev_7d", "Weighted interactions in the 7 days before that."),
        ("popularity_30d", "Weighted interactions in the 30 days before the as-of time."),
        ("popularity_trend", "log1p(popularity_7d) - log1p(popularity_prev_7d): > 0 means rising."),
        ("days_since_first_event", "Days since the item's first clickstream event or rating "
                                    "(null: never seen)."),
        ("avg_rating", "Mean rating (null: not rated)."),
        ("n_ratings", "Ratings received."),
        ("bayes_rating", "Rating shrunk to the global mean with a prior weight of 5 ratings."),
        ("content_vector", f"{CONTENT_DIM}-d L2-normalised vector: TF-IDF of title, description, "
                           "category, subcategory and brand reduced by truncated SVD; dot product = "
                           "content similarity."),
    ),
)

USER_ITEM_FEATURES = FeatureTableSpec(
    "user_item_features", ("user_id", "product_id"),
    "One row per user–product pair with any interaction: the ranker's pair features.",
    _defs(
        ("n_views", "Views of this product by this user."),
        ("n_add_to_cart", "Add-to-cart events of this product by this user."),
        ("n_purchases", "Purchase events of this product by this user."),
        ("units_bought", "Ordered quantity of this product by this user."),
        ("interaction_weight", "Weighted interactions (view 1, cart 3, purchase 5, rating 2)."),
        ("last_interaction", "Time of the last event, order or rating of this pair."),
        ("days_since_last_interaction", "Days from last_interaction to the as-of time."),
        ("rating", "The user's latest rating of this product (null: not rated)."),
    ),
)

TABLES: dict[str, FeatureTableSpec] = {
    t.name: t for t in (USER_FEATURES, ITEM_FEATURES, USER_ITEM_FEATURES)
}
