"""Seeded synthetic e-commerce shop: the five canonical tables as CSV, realistic enough to learn from.

Why it looks the way it does (each trait gives a model or a check something real to find):

- a category → subcategory hierarchy with brands, lognormal prices per category and template
  descriptions built from category/brand/feature words, so content similarity is meaningful;
- Zipf long-tail product popularity and per-user affinities for 1–3 categories (tilted by gender and
  age), so collaborative filtering and cold-start features have signal;
- many one-time users, heavy repeat buyers, weekend peaks, a mild upward trend and evening hours;
- sessions with view → add_to_cart → purchase funnels that stay in one subcategory (co-views);
- order lines equal to purchase events (same user, product, time) and 1–5 star ratings, correlated
  with affinity and a hidden product quality, for a share of purchases, with short review text.

Everything is vectorised numpy + pyarrow and driven by one ``numpy.random.Generator``: the same
arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from recomart.tables import DATASETS

log = logging.getLogger(__name__)

Arrays = dict[str, np.ndarray]
Progress = Callable[[str, int, int], None]
"""``progress(step_description, steps_done, steps_total)``."""

# ---- vocabulary --------------------------------------------------------------------------------
# name -> (popularity weight, median price, price sigma, subcategories, brands, adjectives, features,
#          uses)
CATEGORIES: dict[str, tuple[float, float, float, tuple[str, ...], tuple[str, ...], tuple[str, ...],
                            tuple[str, ...], tuple[str, ...]]] = {
    "Electronics": (
        0.16, 120.0, 0.9,
        ("Headphones", "Smartphones", "Laptops", "Cameras", "Smartwatches"),
        ("Voltix", "Sonora", "Pixelon", "Nordwave", "Auralis", "Kintek"),
        ("wireless", "compact", "pro", "ultra-slim", "smart", "high-resolution"),
        ("bluetooth 5.3", "long battery life", "fast charging", "noise cancelling",
         "OLED display", "USB-C", "water resistance", "4K video"),
        ("commuting", "gaming", "travel", "work from home", "content creation"),
    ),
    "Home & Kitchen": (
        0.13, 45.0, 0.7,
        ("Cookware", "Coffee Makers", "Bedding", "Lighting", "Storage"),
        ("Casaluna", "Hearthly", "Brewmont", "Linenfold", "Lumea", "Stackwise"),
        ("non-stick", "stainless", "cosy", "minimalist", "stackable", "energy-saving"),
        ("dishwasher safe", "cast iron core", "programmable timer", "organic cotton",
         "dimmable LED", "BPA free", "induction ready", "space saving design"),
        ("everyday cooking", "small apartments", "family dinners", "guest rooms", "morning coffee"),
    ),
    "Fashion": (
        0.14, 55.0, 0.6,
        ("Sneakers", "Jackets", "Dresses", "Handbags", "Sunglasses"),
        ("Urbane", "Velora", "Kestrel", "Maison Ode", "Trailfox", "Nova Thread"),
        ("classic", "slim-fit", "vintage", "breathable", "waterproof", "lightweight"),
        ("genuine leather", "recycled polyester", "polarised lenses", "cushioned sole",
         "adjustable strap", "hidden pockets", "stretch fabric", "hand stitched seams"),
        ("city walks", "office wear", "weekend trips", "evening events", "summer days"),
    ),
    "Beauty": (
        0.10, 22.0, 0.6,
        ("Skincare", "Makeup", "Fragrance", "Haircare"),
        ("Lumiskin", "Petalis", "Auréa", "Glowlab", "Verdance"),
        ("hydrating", "vegan", "fragrance-free", "long-lasting", "gentle", "radiant"),
        ("hyaluronic acid", "vitamin C", "SPF 30", "argan oil", "shea butter", "matte finish",
         "dermatologist tested", "cruelty free formula"),
        ("sensitive skin", "daily routine", "dry hair", "night care", "special occasions"),
    ),
    "Books": (
        0.10, 15.0, 0.4,
        ("Fiction", "Cookbooks", "Biographies", "Children's Books", "Science"),
        ("Penwright Press", "Inkstone", "Harbor House", "Little Owl", "Quanta Books"),
        ("bestselling", "illustrated", "award-winning", "paperback", "hardcover", "new edition"),
        ("gripping plot", "step by step recipes", "full colour photos", "large print",
         "author interview", "study questions", "bedtime stories", "clear explanations"),
        ("book clubs", "curious minds", "home cooks", "young readers", "long flights"),
    ),
    "Sports & Outdoors": (
        0.09, 60.0, 0.8,
        ("Running Shoes", "Yoga Mats", "Tents", "Bicycles", "Backpacks"),
        ("Stridex", "Summitra", "Flowcore", "Ridgeline", "Velocita", "Campora"),
        ("lightweight", "durable", "ergonomic", "all-weather", "foldable", "grippy"),
        ("carbon frame", "non-slip surface", "waterproof shell", "breathable mesh",
         "reflective details", "quick pitch design", "padded straps", "shock absorbing foam"),
        ("marathon training", "hiking", "camping", "daily commuting", "home workouts"),
    ),
    "Toys & Games": (
        0.08, 28.0, 0.6,
        ("Board Games", "Puzzles", "Building Sets", "Dolls", "RC Cars"),
        ("Playfort", "Brickly", "Wonderkin", "Zoomix", "Meeple & Co"),
        ("colourful", "educational", "strategic", "collectible", "remote-controlled", "family"),
        ("1000 pieces", "rechargeable battery", "2 to 6 players", "ages 8 and up",
         "STEM learning", "snap together bricks", "wooden pieces", "glow in the dark"),
        ("game nights", "rainy days", "birthday gifts", "classrooms", "family holidays"),
    ),
    "Grocery": (
        0.08, 9.0, 0.5,
        ("Coffee", "Tea", "Snacks", "Olive Oil", "Chocolate"),
        ("Terra Verde", "Roastery 9", "Leaf & Co", "Crunchwell", "Cacao Norte"),
        ("organic", "single-origin", "gluten-free", "artisan", "fair-trade", "cold-pressed"),
        ("dark roast", "whole beans", "loose leaf", "70 percent cocoa", "extra virgin",
         "sea salt", "no added sugar", "resealable pack"),
        ("breakfast", "afternoon breaks", "gift baskets", "healthy snacking", "home baking"),
    ),
    "Pet Supplies": (
        0.06, 25.0, 0.6,
        ("Dog Food", "Cat Toys", "Pet Beds", "Aquarium"),
        ("Pawsome", "Whiskerly", "Barkley", "Aquanest", "Furbest"),
        ("grain-free", "chew-resistant", "orthopedic", "interactive", "washable", "natural"),
        ("real chicken", "catnip filled", "memory foam", "silent filter", "high protein",
         "non-toxic materials", "removable cover", "LED lighting"),
        ("puppies", "senior dogs", "indoor cats", "small tanks", "playful pets"),
    ),
    "Garden & DIY": (
        0.06, 40.0, 0.8,
        ("Power Tools", "Hand Tools", "Plant Pots", "Garden Hoses"),
        ("Forgeline", "Greenroot", "Torqmax", "Bloomwell", "Handyman Pro"),
        ("cordless", "heavy-duty", "weatherproof", "self-watering", "precision", "expandable"),
        ("brushless motor", "18V battery", "chrome vanadium steel", "drainage holes",
         "kink free hose", "soft grip handle", "UV resistant", "quick release nozzle"),
        ("home renovation", "balcony gardens", "weekend projects", "lawn care", "workshops"),
    ),
}
CATEGORY_NAMES = tuple(CATEGORIES)
REGIONS = ("North", "South", "East", "West", "Central", "Capital", "Coast", "Islands")
# Category tilts by gender (F, M, U) and age bucket (<30, 30-49, 50+), added to log-popularity.
_GENDER_TILT = {
    "F": {"Fashion": 0.5, "Beauty": 0.9, "Home & Kitchen": 0.3, "Garden & DIY": -0.3},
    "M": {"Electronics": 0.5, "Sports & Outdoors": 0.4, "Garden & DIY": 0.3, "Beauty": -0.6},
    "U": {},
}
_AGE_TILT = (
    {"Electronics": 0.3, "Fashion": 0.3, "Toys & Games": -0.3, "Garden & DIY": -0.5},
    {"Toys & Games": 0.6, "Home & Kitchen": 0.3, "Pet Supplies": 0.2},
    {"Books": 0.6, "Garden & DIY": 0.6, "Grocery": 0.3, "Electronics": -0.3, "Fashion": -0.3},
)
_DESCRIPTION_TEMPLATES = (
    "{adj} {sub} by {brand} with {f1} and {f2}. Made for {use}. Part of our {cat} range.",
    "The {brand} {sub_l} line combines {f1} with {f2}: a {adj} choice for {use}.",
    "{brand} brings {f1}, {f2} and a {adj} design to {sub_l} for {use}. {cat} essentials.",
)
_REVIEWS = {
    1: ("Disappointed, the {sub} broke quickly.", "Not as described. Returned it.",
        "Poor quality for the price.", "Would not buy this {brand} again."),
    2: ("Below expectations.", "The {sub} works but feels cheap.", "Arrived late and scratched.",
        "Meh. {brand} can do better."),
    3: ("It's okay for the price.", "Average {sub}, does the job.", "Decent but nothing special.",
        "Fine, though delivery was slow."),
    4: ("Good {sub}, happy with it.", "Solid quality from {brand}.", "Works well, would recommend.",
        "Nice, almost perfect."),
    5: ("Love it! Best {sub} I have bought.", "Excellent quality, highly recommend {brand}.",
        "Perfect, exactly as described.", "Five stars, will buy again."),
}
_HOUR_WEIGHTS = np.array([2, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 6, 7, 6, 5, 5, 6, 7, 8, 10, 11, 10, 7, 4],
                         dtype=float)


def _check(users: int, products: int, days: int) -> None:
    if users < 1 or days < 1:
        raise ValueError(f"users and days must be >= 1 (got users={users}, days={days})")
    if products < len(CATEGORIES):
        raise ValueError(f"products must be >= {len(CATEGORIES)} (one per category), got {products}")


def _price_text(price: np.ndarray) -> pa.Array:
    """Prices as fixed two-decimal strings ("4.00"), so CSV keeps them visibly decimal."""
    cents = np.rint(price * 100).astype(np.int64)
    whole = pc.cast(pa.array(cents // 100), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), width=2, padding="0")
    return pc.binary_join_element_wise(whole, frac, ".")


def _iso(epoch_s: np.ndarray) -> pa.Array:
    """``2024-06-01T12:34:56Z`` (casting to string is ~6x faster than pc.strftime)."""
    text = pc.cast(pa.array(epoch_s.astype("datetime64[s]"), type=pa.timestamp("s")), pa.string())
    return pc.binary_join_element_wise(pc.replace_substring(text, " ", "T", max_replacements=1),
                                       "Z", "")


def _ids(prefix: str, n: int, width: int) -> pa.Array:
    digits = pc.utf8_lpad(pc.cast(pa.array(np.arange(1, n + 1, dtype=np.int64)), pa.string()),
                          width=width, padding="0")
    return pc.binary_join_element_wise(prefix, digits, "")


def _group_cdf_keys(group: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """Keys ``group + cumulative share within group`` (rows sorted by group) for searchsorted."""
    cum = np.cumsum(weight)
    starts = np.r_[0, np.flatnonzero(np.diff(group)) + 1]
    ends = np.r_[starts[1:], len(group)]
    before = np.repeat(np.r_[0.0, cum[starts[1:] - 1]], ends - starts)
    total = np.repeat(cum[ends - 1] - np.r_[0.0, cum[starts[1:] - 1]], ends - starts)
    share = (cum - before) / total
    share[ends - 1] = 1.0
    return group + share


# ---- products ----------------------------------------------------------------------------------
def _products(rng: np.random.Generator, n: int) -> tuple[pa.Table, Arrays]:
    specs = list(CATEGORIES.values())
    cat_w = np.array([s[0] for s in specs])
    cat_w = cat_w / cat_w.sum()
    n_sub = np.array([len(s[3]) for s in specs])
    sub_offset = np.r_[0, np.cumsum(n_sub)[:-1]]
    cat = np.r_[np.arange(len(specs)), rng.choice(len(specs), size=n - len(specs), p=cat_w)]
    cat = cat[rng.permutation(n)]
    sub_local = rng.integers(0, n_sub[cat])
    sub = sub_offset[cat] + sub_local
    brand_i = rng.integers(0, np.array([len(s[4]) for s in specs])[cat])
    med = np.log(np.array([s[1] for s in specs]))[cat]
    sig = np.array([s[2] for s in specs])[cat]
    sub_scale = rng.normal(0, 0.35, size=n_sub.sum())[sub]  # laptops cost more than headphones
    price = np.maximum(0.99, np.round(np.exp(med + sub_scale + sig * rng.normal(size=n)), 2))
    rank = rng.permutation(n) + 1
    popularity = rank.astype(float) ** -1.0
    quality = rng.normal(0, 0.5, size=n)
    adj_i, f1_i, f2_i, use_i = (rng.integers(0, 6, size=n), rng.integers(0, 8, size=n),
                                rng.integers(1, 8, size=n), rng.integers(0, 5, size=n))
    tmpl_i = rng.integers(0, len(_DESCRIPTION_TEMPLATES), size=n)
    model_no = rng.integers(100, 1000, size=n)
    model_letter = rng.integers(0, 26, size=n)
    no_brand = rng.random(n) < 0.02
    no_desc = rng.random(n) < 0.03

    titles, brands, subs, cats, descs = [], [], [], [], []
    for i in range(n):
        name, (_, _, _, sublist, blist, adjs, feats, uses) = CATEGORY_NAMES[cat[i]], specs[cat[i]]
        s = sublist[sub_local[i]]
        b = blist[brand_i[i]]
        adj = adjs[adj_i[i]]
        f1, f2 = feats[f1_i[i]], feats[(f1_i[i] + f2_i[i]) % len(feats)]
        model = f"{chr(65 + model_letter[i])}{model_no[i]}"
        titles.append(f"{'' if no_brand[i] else b + ' '}{adj.capitalize()} {s} {model}")
        brands.append(None if no_brand[i] else b)
        subs.append(s)
        cats.append(name)
        descs.append(None if no_desc[i] else _DESCRIPTION_TEMPLATES[tmpl_i[i]].format(
            adj=adj.capitalize() if tmpl_i[i] == 0 else adj, sub=s, sub_l=s.lower(),
            brand=b if not no_brand[i] else "our workshop", f1=f1, f2=f2, use=uses[use_i[i]],
            cat=name))
    table = pa.table({
        "product_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "title": pa.array(titles, pa.string()),
        "category": pa.array(cats, pa.string()),
        "subcategory": pa.array(subs, pa.string()),
        "brand": pa.array(brands, pa.string()),
        "price": _price_text(price),
        "description": pa.array(descs, pa.string()),
    })
    return table, {"cat": cat, "sub": sub, "price": price, "popularity": popularity,
                   "quality": quality, "cat_w": cat_w, "brand": np.array(brands, dtype=object),
                   "subname": np.array(subs, dtype=object)}


# ---- users -------------------------------------------------------------------------------------
def _day_cdf(start: date, days: int) -> np.ndarray:
    weekend = np.array([(start + timedelta(d)).weekday() >= 5 for d in range(days)])
    trend = 1.0 + 0.2 * np.arange(days) / max(days - 1, 1)
    w = (1.0 + 0.35 * weekend) * trend
    return np.cumsum(w) / w.sum()


def _users(rng: np.random.Generator, n: int, days: int, day_cdf: np.ndarray, start: date,
           cat_w: np.ndarray) -> tuple[pa.Table, Arrays]:
    gender = rng.choice(3, size=n, p=[0.48, 0.46, 0.06])
    age = np.clip(np.rint(rng.normal(38, 13, size=n)), 18, 85).astype(np.int64)
    age_null = rng.random(n) < 0.08
    region = rng.choice(len(REGIONS), size=n, p=[0.16, 0.14, 0.14, 0.14, 0.12, 0.16, 0.09, 0.05])
    region_null = rng.random(n) < 0.03
    in_window = rng.random(n) < 0.3
    signup_day = np.where(in_window, np.searchsorted(day_cdf, rng.random(n), side="right"),
                          -rng.integers(1, 731, size=n))
    signup_day = np.minimum(signup_day, days - 1)

    # Category affinities: gumbel top-3 over tilted log-popularity, 1-3 of them kept.
    C = len(CATEGORY_NAMES)
    tilt = np.zeros((3, 3, C))
    for gi, g in enumerate("FMU"):
        for ai, by_age in enumerate(_AGE_TILT):
            for c, name in enumerate(CATEGORY_NAMES):
                tilt[gi, ai, c] = _GENDER_TILT[g].get(name, 0.0) + by_age.get(name, 0.0)
    age_bucket = np.digitize(age, [30, 50])
    logits = np.log(cat_w)[None, :] + tilt[gender, age_bucket] + rng.gumbel(size=(n, C))
    top = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    k = rng.choice([1, 2, 3], size=n, p=[0.35, 0.4, 0.25])
    w = -np.sort(-rng.dirichlet([2.0, 1.5, 1.0], size=n), axis=1)
    w[np.arange(3)[None, :] >= k[:, None]] = 0.0
    w /= w.sum(axis=1, keepdims=True)
    affinity = np.zeros((n, C))
    np.put_along_axis(affinity, top, w, axis=1)

    signup_dates = np.datetime64(start) + signup_day.astype("timedelta64[D]")
    table = pa.table({
        "user_id": pa.array(np.arange(1, n + 1, dtype=np.int64)),
        "age": pa.array(age, mask=age_null),
        "gender": pa.array(np.array(["F", "M", "U"])[gender]),
        "region": pa.array(np.array(REGIONS)[region], mask=region_null),
        "signup_date": pa.array(signup_dates, type=pa.date32()),
    })
    return table, {"signup_day": signup_day, "in_window": in_window, "affinity": affinity}


# ---- sessions and events -----------------------------------------------------------------------
def _sessions(rng: np.random.Generator, n_users: int, days: int, day_cdf: np.ndarray,
              users: Arrays) -> Arrays:
    active = rng.random(n_users) < 0.92
    one_time = rng.random(n_users) < 0.4
    first_day = np.maximum(users["signup_day"], 0)
    avail = (days - first_day) / days
    rate = rng.lognormal(np.log(max(days / 15.0, 0.5)), 0.8, size=n_users) * avail
    n_sess = np.where(one_time, 1, 2 + rng.poisson(rate)) * active
    user = np.repeat(np.arange(n_users), n_sess)
    lo = np.r_[0.0, day_cdf][first_day][user]
    day = np.searchsorted(day_cdf, lo + rng.random(len(user)) * (1.0 - lo), side="right")
    day = np.clip(day, first_day[user], days - 1)
    firsts = np.r_[0, np.cumsum(n_sess)[:-1]][n_sess > 0]
    new_users = users["in_window"][user[firsts]]
    day[firsts[new_users]] = users["signup_day"][user[firsts[new_users]]]
    hours = rng.choice(24, size=len(user), p=_HOUR_WEIGHTS / _HOUR_WEIGHTS.sum())
    start_s = day.astype(np.int64) * 86400 + hours * 3600 + rng.integers(0, 3600, size=len(user))
    return {"user": user, "start": start_s}


def _pick(keys: np.ndarray, group: np.ndarray, u: np.ndarray) -> np.ndarray:
    return np.minimum(np.searchsorted(keys, group + u, side="left"), len(keys) - 1)


def _events(rng: np.random.Generator, sessions: Arrays, users: Arrays, prods: Arrays,
            span_s: int) -> Arrays:
    S = len(sessions["user"])
    s_user = sessions["user"]
    affinity = users["affinity"]
    C = affinity.shape[1]
    # session category: mostly one of the user's preferred ones
    cum_aff = np.cumsum(affinity[s_user], axis=1)
    pref_cat = np.minimum((rng.random(S)[:, None] > cum_aff).sum(axis=1), C - 1)
    other_cat = rng.choice(C, size=S, p=prods["cat_w"])
    s_cat = np.where(rng.random(S) < 0.85, pref_cat, other_cat)

    n_views = np.minimum(rng.geometric(0.33, size=S), 15)
    s_first = np.cumsum(n_views) - n_views
    v_sess = np.repeat(np.arange(S), n_views)
    V = len(v_sess)
    pos = np.arange(V) - s_first[v_sess]
    v_cat = s_cat[v_sess]
    drift = (rng.random(V) < 0.1) & (pos > 0)
    v_cat = np.where(drift, rng.choice(C, size=V, p=prods["cat_w"]), v_cat)

    order = np.argsort(prods["sub"], kind="stable")
    cat_s, sub_s, pop_s = prods["cat"][order], prods["sub"][order], prods["popularity"][order]
    # sub ids are numbered category by category, so sorting by sub also groups by category
    cat_keys = _group_cdf_keys(cat_s, pop_s)
    sub_keys = _group_cdf_keys(sub_s, pop_s)
    v_prod = order[_pick(cat_keys, v_cat, rng.random(V))]
    anchor = prods["sub"][v_prod[s_first]][v_sess]
    stay = (pos > 0) & ~drift & (rng.random(V) < 0.6)
    v_prod[stay] = order[_pick(sub_keys, anchor[stay], rng.random(int(stay.sum())))]

    # times: gaps of >= 45 s between views, carts 5-40 s after their view, checkout at the end
    gaps = 45 + rng.exponential(60, size=V).astype(np.int64)
    gaps[pos == 0] = 0
    cs = np.cumsum(gaps)
    v_time = sessions["start"][v_sess] + cs - cs[s_first][v_sess]

    v_user = s_user[v_sess]
    v_aff = affinity[v_user, prods["cat"][v_prod]]
    propensity = np.minimum(rng.lognormal(0, 0.6, size=affinity.shape[0]), 4.0)
    p_cart = np.clip(0.05 * (1 + 2.5 * v_aff) * propensity[v_user], 0, 0.9)
    cart = rng.random(V) < p_cart
    buy = cart & (rng.random(V) < 0.45)
    # one order line per product per session
    bi = np.flatnonzero(buy)
    _, first_of_pair = np.unique(v_sess[bi].astype(np.int64) * (len(prods["cat"]) + 1) + v_prod[bi],
                                 return_index=True)
    keep = np.zeros(V, dtype=bool)
    keep[bi[first_of_pair]] = True
    buy &= keep

    last_view = v_time[s_first + n_views - 1]
    checkout = last_view + 60 + rng.exponential(120, size=S).astype(np.int64)
    c_time = v_time + rng.integers(5, 41, size=V)
    end = span_s - 1
    return {
        "v_sess": v_sess, "v_user": v_user, "v_prod": v_prod, "v_aff": v_aff,
        "v_time": np.minimum(v_time, end), "c_time": np.minimum(c_time, end),
        "p_time": np.minimum(checkout[v_sess], end), "cart": cart, "buy": buy,
    }


# ---- repeat purchases (consumables) ------------------------------------------------------------
#: Categories that turn consumable first as ``consumables`` grows, with their median repurchase
#: cycle in days (each product gets its own cycle around it).
CONSUMABLE_CYCLES: dict[str, float] = {
    "Grocery": 7.0, "Pet Supplies": 18.0, "Beauty": 28.0, "Home & Kitchen": 35.0,
    "Garden & DIY": 40.0, "Toys & Games": 45.0, "Sports & Outdoors": 45.0, "Fashion": 60.0,
    "Books": 60.0, "Electronics": 90.0}


def _repeat_purchases(rng: np.random.Generator, ev: Arrays, prods: Arrays, share: float,
                      span_s: int) -> Arrays:
    """Append repurchase sessions (view, cart, buy) of consumable products on per-product cycles.

    A consumable product's first purchase by a user starts a chain: the next purchase follows
    after the product's cycle (jittered per purchase) while the user stays loyal (a per-user
    probability). Uses its own random stream, so ``share=0`` leaves the shop byte-identical."""
    n_cons = round(share * len(CATEGORY_NAMES))
    if n_cons <= 0:
        return ev
    chosen = list(CONSUMABLE_CYCLES)[:n_cons]
    cat_cycle = np.array([CONSUMABLE_CYCLES.get(c, np.nan) if c in chosen else np.nan
                          for c in CATEGORY_NAMES])
    cycle = cat_cycle[prods["cat"]] * rng.lognormal(0, 0.3, size=len(prods["cat"]))
    bi = np.flatnonzero(ev["buy"] & np.isfinite(cycle[ev["v_prod"]]))
    pair = ev["v_user"][bi].astype(np.int64) * (len(cycle) + 1) + ev["v_prod"][bi]
    order = np.lexsort((ev["p_time"][bi], pair))
    first = bi[order][np.r_[True, pair[order][1:] != pair[order][:-1]]]
    n_users = int(ev["v_user"].max()) + 1
    loyalty = rng.beta(6, 2, size=n_users)
    u, p, t = ev["v_user"][first], ev["v_prod"][first], ev["p_time"][first].astype(np.float64)
    out_u, out_p, out_t = [], [], []
    while len(u):
        t = t + cycle[p] * 86400 * rng.lognormal(0, 0.25, size=len(u))
        go = (t < span_s - 1) & (rng.random(len(u)) < loyalty[u])
        u, p, t = u[go], p[go], t[go]
        out_u.append(u)
        out_p.append(p)
        out_t.append(t.astype(np.int64))
    ru, rp, rt = np.concatenate(out_u), np.concatenate(out_p), np.concatenate(out_t)
    n = len(ru)
    if n == 0:
        return ev
    sess0 = int(ev["v_sess"].max()) + 1
    add = {"v_sess": np.arange(sess0, sess0 + n), "v_user": ru, "v_prod": rp,
           "v_aff": np.full(n, 1.0), "v_time": np.maximum(rt - 90, 0), "c_time": np.maximum(rt - 40, 0),
           "p_time": rt, "cart": np.ones(n, bool), "buy": np.ones(n, bool)}
    return {k: np.r_[ev[k], add[k].astype(ev[k].dtype)] for k in ev}


# ---- assembly ----------------------------------------------------------------------------------
def _clickstream(ev: Arrays, prods: Arrays, t0: int) -> tuple[pa.Table, Arrays]:
    c, b = ev["cart"], ev["buy"]
    sess = np.r_[ev["v_sess"], ev["v_sess"][c], ev["v_sess"][b]]
    user = np.r_[ev["v_user"], ev["v_user"][c], ev["v_user"][b]]
    prod = np.r_[ev["v_prod"], ev["v_prod"][c], ev["v_prod"][b]]
    kind = np.r_[np.zeros(len(c), np.int8), np.ones(int(c.sum()), np.int8),
                 np.full(int(b.sum()), 2, np.int8)]
    t = np.r_[ev["v_time"], ev["c_time"][c], ev["p_time"][b]]
    o = np.argsort(t, kind="stable")
    sess, user, prod, kind, t = sess[o], user[o], prod[o], kind[o], t[o]
    # session ids numbered by first appearance in time
    uniq, first_idx = np.unique(sess, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first_idx, kind="stable")] = np.arange(len(uniq))
    s_num = rank[np.searchsorted(uniq, sess)]
    s_ids = _ids("s", len(uniq), 9)
    table = pa.table({
        "event_id": _ids("e", len(t), 10),
        "user_id": pa.array(user + 1),
        "product_id": pa.array(prod + 1),
        "event_type": pa.array(np.array(["view", "add_to_cart", "purchase"])[kind]),
        "session_id": s_ids.take(pa.array(s_num)),
        "timestamp": _iso(t + t0),
        "price": _price_text(prods["price"][prod]),
        "request_id": pa.nulls(len(t), pa.string()),  # exports carry no served-list id
    })
    return table, {"sess": sess, "user": user, "prod": prod, "kind": kind, "t": t}


def _orders(rng: np.random.Generator, cs: Arrays) -> tuple[Arrays, Arrays]:
    """Order lines (sorted by order, product) and the purchases they came from."""
    p = cs["kind"] == 2
    sess, user, prod, t = cs["sess"][p], cs["user"][p], cs["prod"][p], cs["t"][p]
    # order ids by checkout time (events are already time-sorted; ties broken by session)
    uniq, first_idx = np.unique(sess, return_index=True)
    rank = np.empty(len(uniq), np.int64)
    rank[np.argsort(first_idx, kind="stable")] = np.arange(1, len(uniq) + 1)
    order_id = rank[np.searchsorted(uniq, sess)]
    qty = rng.choice([1, 2, 3], size=len(prod), p=[0.85, 0.1, 0.05])
    o = np.lexsort((prod, order_id))
    return (
        {"order_id": order_id[o], "user": user[o], "prod": prod[o], "qty": qty[o], "t": t[o]},
        {"user": user, "prod": prod, "t": t},
    )


def _ratings(rng: np.random.Generator, purchases: Arrays, prods: Arrays, users_aff: np.ndarray,
             span_s: int, n_users: int) -> dict[str, Any]:
    user, prod, t = purchases["user"], purchases["prod"], purchases["t"]
    review_rate = rng.beta(3, 3, size=n_users)
    bias = rng.normal(0, 0.4, size=n_users)
    n = len(user)
    rated = rng.random(n) < review_rate[user]
    aff = users_aff[user, prods["cat"][prod]]
    score = 3.5 + 1.5 * (aff - 0.3) + prods["quality"][prod] + bias[user] + rng.normal(0, 0.6, n)
    stars = np.clip(np.rint(score), 1, 5).astype(np.int64)
    delay = (86400 * (0.5 + rng.exponential(2.5, size=n))).astype(np.int64)
    rt = t + delay
    no_text = rng.random(n) < 0.35
    tmpl = rng.integers(0, 4, size=n)
    ok = rated & (rt < span_s)
    idx = np.flatnonzero(ok)
    # one rating per (user, product): the first one
    o = idx[np.lexsort((rt[idx], prod[idx], user[idx]))]
    pair = user[o].astype(np.int64) * (len(prods["cat"]) + 1) + prod[o]
    o = o[np.r_[True, pair[1:] != pair[:-1]][: len(o)]]
    o = o[np.argsort(rt[o], kind="stable")]
    reviews = [None if no_text[i] else _REVIEWS[stars[i]][tmpl[i]].format(
        sub=prods["subname"][prod[i]].lower(), brand=prods["brand"][prod[i]] or "this brand")
        for i in o]
    return {"user": user[o], "prod": prod[o], "stars": stars[o], "review": reviews, "t": rt[o]}


def _write_csv(table: pa.Table, path: Path) -> None:
    expected = list(DATASETS[path.stem].columns)
    if table.column_names != expected:
        raise RuntimeError(f"{path.stem}: columns {table.column_names} != contract {expected}")
    tmp = path.with_name(f".{path.name}.tmp")
    pacsv.write_csv(table, tmp, pacsv.WriteOptions(quoting_style="needed"))
    os.replace(tmp, path)


def generate(out_dir: Path, *, users: int, products: int, days: int, seed: int = 42,
             end_date: date = date(2024, 6, 30), progress: Progress | None = None,
             consumables: float = 0.0) -> dict[str, int]:
    """Write users/products/orders/ratings/clickstream CSVs to ``out_dir``; returns rows per table.

    All timestamps fall in ``[end_date - days, end_date)`` UTC (midnight boundaries).
    ``consumables`` (0-1): share of categories that are consumable (Grocery first, then Pet
    Supplies, Beauty, ...): their buyers re-buy on per-product cycles (a repeat-heavy shop).
    """
    if not 0 <= consumables <= 1:
        raise ValueError(f"consumables must be in [0, 1], got {consumables}")
    _check(users, products, days)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    steps = ["catalog", "users", "sessions", "events", "clickstream", "orders", "ratings"]
    total = len(steps) + len(DATASETS)
    done = 0

    def tick(what: str) -> None:
        nonlocal done
        done += 1
        log.info("generate: %s (%d/%d)", what, done, total)
        if progress:
            progress(what, done, total)

    rng = np.random.default_rng(seed)
    start = end_date - timedelta(days=days)
    t0 = int(datetime(start.year, start.month, start.day, tzinfo=UTC).timestamp())
    span_s = days * 86400
    day_cdf = _day_cdf(start, days)

    products_t, prods = _products(rng, products)
    tick("catalog")
    users_t, usr = _users(rng, users, days, day_cdf, start, prods["cat_w"])
    tick("users")
    sessions = _sessions(rng, users, days, day_cdf, usr)
    tick("sessions")
    ev = _events(rng, sessions, usr, prods, span_s)
    ev = _repeat_purchases(np.random.default_rng([seed, 1]), ev, prods, consumables, span_s)
    tick("events")
    click_t, cs = _clickstream(ev, prods, t0)
    del ev, sessions
    tick("clickstream")
    lines, purchases = _orders(rng, cs)
    orders_t = pa.table({
        "order_id": pa.array(lines["order_id"]),
        "user_id": pa.array(lines["user"] + 1),
        "product_id": pa.array(lines["prod"] + 1),
        "quantity": pa.array(lines["qty"].astype(np.int64)),
        "unit_price": _price_text(prods["price"][lines["prod"]]),
        "timestamp": _iso(lines["t"] + t0),
    })
    tick("orders")
    r = _ratings(rng, purchases, prods, usr["affinity"], span_s, users)
    ratings_t = pa.table({
        "user_id": pa.array(r["user"] + 1),
        "product_id": pa.array(r["prod"] + 1),
        "rating": pc.binary_join_element_wise(pc.cast(pa.array(r["stars"]), pa.string()), "0", "."),
        "review": pa.array(r["review"], pa.string()),
        "timestamp": _iso(r["t"] + t0),
    })
    tick("ratings")

    tables = {"users": users_t, "products": products_t, "orders": orders_t, "ratings": ratings_t,
              "clickstream": click_t}
    counts: dict[str, int] = {}
    for name in DATASETS:
        _write_csv(tables[name], out_dir / f"{name}.csv")
        counts[name] = tables[name].num_rows
        tick(f"write {name}.csv")
    return counts


def latent_state(*, users: int, products: int, days: int, seed: int = 42,
                 end_date: date = date(2024, 6, 30)) -> dict[str, np.ndarray]:
    """The hidden truth behind ``generate(...)`` with the same arguments: per-user category
    affinities (users x categories, rows sum to 1) and per-product category, quality, price and
    popularity. Index ``i`` is ``user_id``/``product_id`` ``i + 1``. The shopper simulator draws
    clicks and purchases from it, so an experiment's ground truth is known."""
    _check(users, products, days)
    rng = np.random.default_rng(seed)
    start = end_date - timedelta(days=days)
    _, prods = _products(rng, products)
    _, usr = _users(rng, users, days, _day_cdf(start, days), start, prods["cat_w"])
    return {"affinity": usr["affinity"], "cat": prods["cat"], "quality": prods["quality"],
            "price": prods["price"], "popularity": prods["popularity"]}
