"""The exploratory-analysis PDF: how users interact with the catalog, from the curated tables.

Everything is aggregated in pandas first (value counts, group-bys on integer keys) and only the
aggregates are plotted, so a million-row table costs seconds. Datasets may be empty (MovieLens has
no orders and no clickstream): sections that need them say so and move on.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recomart.lake import Lake, LakeError
from recomart.reports import charts, read_curated, read_summary
from recomart.reports.pdf import ReportPDF, fmt_int, fmt_pct, publish

log = logging.getLogger(__name__)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
TOP_SHARE = 0.2


def build_eda_report(lake: Lake, ds: str) -> Path:
    """Write ``reports/ds=<ds>/eda.pdf`` (and the ``reports/latest`` copy); return its path."""
    try:
        summary: dict[str, Any] = read_summary(lake, ds)
    except LakeError:
        summary = {}
    versions = {name: e.get("curated_version") for name, e in (summary.get("datasets") or {}).items()}
    data = load(lake, ds, versions)
    inter = interactions(data)
    pdf = ReportPDF("EDA report", ds, summary.get("run_id"))
    _overview(pdf, ds, summary, data, inter)
    if inter.empty:
        pdf.section("Interactions over time")
        pdf.note("No interactions (clickstream events, ratings or orders) in the curated tables: weekday "
                 "pattern, long tail, sparsity, user activity and retention are skipped.")
    else:
        _over_time(pdf, inter)
        _weekday(pdf, inter)
        _long_tail(pdf, inter, data["products"])
        _sparsity(pdf, inter, data["products"])
        _user_activity(pdf, inter, data)
        _retention(pdf, inter, data["users"])
    _category_mix(pdf, inter, data["products"])
    _price(pdf, data["products"])
    _ratings(pdf, data["ratings"])
    _repeat_purchases(pdf, data["orders"])
    return publish(lake, ds, "eda.pdf", pdf.to_bytes())


def _repeat_purchases(pdf: ReportPDF, orders: pd.DataFrame) -> None:
    """How repeat-heavy the shop is: the figure the training uses to pick its protocol and mix."""
    from recomart.config import get_settings
    from recomart.models.protocols import repeat_share

    pdf.section("Repeat purchases", min_space=40)
    if orders.empty:
        pdf.note("No orders: repeat purchases cannot be measured; training selects on the explore "
                 "protocol.")
        return
    rep = repeat_share(orders)
    settings = get_settings()
    heavy = (settings.models_repeat_heavy if settings.models_repeat_heavy is not None
             else rep["repeat_share"] >= settings.models_repeat_share)
    pdf.data_table(["measure", "value"], [
        ["order lines", f"{rep['order_lines']:,}"],
        ["lines re-buying a product the user bought in an earlier order",
         f"{rep['repeat_lines']:,} ({fmt_pct(rep['repeat_share'])})"],
        ["users with >= 2 orders who re-bought something", fmt_pct(rep["repeat_users_share"])],
    ])
    forced = " (forced by RECOMART_MODELS_REPEAT_HEAVY)" if settings.models_repeat_heavy is not None else ""
    pdf.takeaway(f"{fmt_pct(rep['repeat_share'])} of order lines are repeats: the shop counts as "
                 f"{'repeat-heavy' if heavy else 'not repeat-heavy'}{forced} (threshold "
                 f"{fmt_pct(settings.models_repeat_share)}), so training selects on the "
                 f"{'next-basket' if heavy else 'explore'} protocol"
                 f"{' and the hybrid adds buy-again candidates' if heavy else ''}.")


# ---- inputs -----------------------------------------------------------------------------------
COLUMNS = {
    "users": ["user_id", "signup_date"],
    "products": ["product_id", "category", "price"],
    "orders": ["order_id", "user_id", "product_id", "timestamp"],
    "ratings": ["user_id", "product_id", "rating", "timestamp"],
    "clickstream": ["user_id", "product_id", "event_type", "timestamp"],
}


def load(lake: Lake, ds: str, versions: dict[str, int | None] | None = None) -> dict[str, pd.DataFrame]:
    """The curated columns the EDA needs, as of ``ds`` (the run's table versions when known)."""
    versions = versions or {}
    out = {}
    for name, cols in COLUMNS.items():
        v = versions.get(name)
        df = read_curated(lake, name, ds, cols, version=int(v) if v is not None else None)
        if "timestamp" in df.columns:
            df["timestamp"] = pd.to_datetime(df["timestamp"], utc=True, errors="coerce")
        out[name] = df
    return out


def interactions(data: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every user–product signal: clickstream events (by type), ratings and order lines."""
    parts = []
    clicks = data["clickstream"]
    if len(clicks):
        parts.append(pd.DataFrame({"user_id": clicks["user_id"], "product_id": clicks["product_id"],
                                   "kind": clicks["event_type"].astype(str),
                                   "timestamp": clicks["timestamp"]}))
    for name, kind in (("ratings", "rating"), ("orders", "order")):
        df = data[name]
        if len(df):
            parts.append(pd.DataFrame({"user_id": df["user_id"], "product_id": df["product_id"],
                                       "kind": kind, "timestamp": df["timestamp"]}))
    if not parts:
        return pd.DataFrame({"user_id": pd.Series(dtype="int64"), "product_id": pd.Series(dtype="int64"),
                             "kind": pd.Series(dtype="object"),
                             "timestamp": pd.Series(dtype="datetime64[us, UTC]")})
    out = pd.concat(parts, ignore_index=True)
    out = out.dropna(subset=["user_id", "product_id", "timestamp"])
    out["user_id"] = out["user_id"].astype("int64")
    out["product_id"] = out["product_id"].astype("int64")
    out["kind"] = out["kind"].astype("category")
    return out


def one_time_user_share(inter: pd.DataFrame) -> float:
    """Share of users active on exactly one (UTC) day."""
    day = _utc_naive(inter["timestamp"]).to_numpy().astype("datetime64[D]").astype("int64")
    per_user = pd.DataFrame({"u": inter["user_id"].to_numpy(), "d": day}).drop_duplicates()
    counts = per_user["u"].value_counts()
    return float((counts == 1).mean()) if len(counts) else 0.0


def _utc_naive(ts: pd.Series) -> pd.Series:
    """UTC wall-clock timestamps without a zone (fast numpy datetime64 underneath)."""
    return ts.dt.tz_convert("UTC").dt.tz_localize(None) if ts.dt.tz is not None else ts


def popularity(inter: pd.DataFrame, products: pd.DataFrame) -> pd.Series:
    """Interactions per product over the catalog (zero for never-touched products), most popular first."""
    counts = inter["product_id"].value_counts()
    catalog = pd.to_numeric(products["product_id"], errors="coerce").dropna().astype("int64")
    ids = pd.Index(catalog.unique()).union(counts.index)
    return counts.reindex(ids, fill_value=0).sort_values(ascending=False, kind="stable")


def top_share(counts: pd.Series, share: float = TOP_SHARE) -> float:
    """Share of interactions taken by the most popular ``share`` of products (rounded up)."""
    total = counts.sum()
    if not total:
        return 0.0
    k = max(1, math.ceil(share * len(counts)))
    return float(counts.iloc[:k].sum() / total)


def gini_coefficient(values: np.ndarray) -> float:
    """0 = every product equally popular, 1 = one product takes everything."""
    x = np.sort(np.asarray(values, dtype=float))
    n, total = len(x), x.sum()
    if n < 2 or total == 0:
        return 0.0
    return float(2 * np.sum(np.arange(1, n + 1) * x) / (n * total) - (n + 1) / n)


# ---- sections ---------------------------------------------------------------------------------
def _overview(pdf: ReportPDF, ds: str, summary: dict[str, Any], data: dict[str, pd.DataFrame],
              inter: pd.DataFrame) -> None:
    facts = [("Logical date", ds), ("Run id", summary.get("run_id", "n/a (no validation summary)")),
             ("Interactions", f"{len(inter):,} (clickstream events + ratings + order lines)")]
    if len(inter):
        first, last = inter["timestamp"].min(), inter["timestamp"].max()
        facts += [("Period", f"{first:%Y-%m-%d} → {last:%Y-%m-%d} ({(last - first).days + 1:,} days)"),
                  ("Users / products", f"{inter['user_id'].nunique():,} active users, "
                                       f"{inter['product_id'].nunique():,} products touched")]
    pdf.title_block("RecoMart · Exploratory data analysis", f"Curated tables as of logical date {ds}", facts)
    pdf.section("Curated tables", min_space=40)
    rows = []
    for name, df in data.items():
        ts = df["timestamp"].dropna() if "timestamp" in df.columns else pd.Series(dtype=object)
        rows.append([name, fmt_int(len(df)),
                     f"{ts.min():%Y-%m-%d} → {ts.max():%Y-%m-%d}" if len(ts) else "",
                     "empty" if df.empty else ""])
    pdf.data_table(["Dataset", "Rows", "Time span", "Note"], rows, widths=[25, 20, 40, 15],
                   align=["L", "R", "L", "L"], max_width=130)
    empty = [n for n in ("orders", "clickstream", "ratings") if data[n].empty]
    if empty:
        used = [n for n in ("clickstream", "ratings", "orders") if not data[n].empty]
        pdf.note(f"{' and '.join('no ' + n for n in empty).capitalize()} in the curated tables: "
                 + (f"interactions are {' + '.join(used)} only." if used else "there are no interactions."))
    pdf.note("Interactions = every user–product signal: clickstream events (view, add_to_cart, purchase), "
             "ratings and order lines, each counted once.")


def _granularity(inter: pd.DataFrame) -> tuple[str, str]:
    span = (inter["timestamp"].max() - inter["timestamp"].min()).days
    if span <= 120:
        return "D", "day"
    if span <= 3 * 365:
        return "W", "week"
    return "M", "month"


def _period_start(ts: pd.Series, freq: str) -> pd.Series:
    naive = _utc_naive(ts)
    if freq == "D":
        return naive.dt.floor("D")
    if freq == "W":
        day = naive.dt.floor("D")
        return day - pd.to_timedelta(day.dt.dayofweek, unit="D")
    return naive.dt.to_period("M").dt.start_time


def _over_time(pdf: ReportPDF, inter: pd.DataFrame) -> None:
    freq, unit = _granularity(inter)
    period = _period_start(inter["timestamp"], freq)
    table = (pd.DataFrame({"p": period, "k": inter["kind"].astype(str)}).groupby(["p", "k"]).size()
             .unstack(fill_value=0).sort_index())
    full = pd.date_range(table.index.min(), table.index.max(),
                         freq={"D": "D", "W": "W-MON", "M": "MS"}[freq])
    table = table.reindex(full, fill_value=0)
    order = table.sum().sort_values(ascending=False).index
    series = {k: table[k].to_numpy() for k in order}
    png = charts.lines(list(table.index.to_pydatetime()), series, title=f"Interactions per {unit} by type",
                       xlabel=unit, ylabel=f"interactions per {unit}", height_in=2.9)
    pdf.section("Interactions over time", min_space=pdf.figure_height(png) + 25)
    pdf.figure(png)
    totals = table.sum(axis=1)
    busiest = totals.idxmax()
    half = len(totals) // 2
    trend = ""
    if half >= 2 and totals.iloc[:half].mean() > 0:
        change = totals.iloc[half:].mean() / totals.iloc[:half].mean() - 1
        trend = f"; second half of the period {change:+.0%} vs the first"
    pdf.takeaway(f"{totals.mean():,.0f} interactions per {unit} on average, busiest {unit} "
                 f"{busiest:%Y-%m-%d} with {totals.max():,}{trend}.")


def _weekday(pdf: ReportPDF, inter: pd.DataFrame) -> None:
    counts = inter["timestamp"].dt.dayofweek.value_counts().reindex(range(7), fill_value=0)
    shares = counts / counts.sum()
    png = charts.bars(WEEKDAYS, shares.to_numpy(), title="Share of interactions per weekday (UTC)",
                      xlabel="weekday", ylabel="share of interactions", percent=True, height_in=2.3)
    pdf.section("Weekday pattern", min_space=pdf.figure_height(png, width=150) + 25)
    pdf.figure(png, width=150)
    hi, lo = int(shares.idxmax()), int(shares.idxmin())
    pdf.takeaway(f"busiest weekday {WEEKDAYS[hi]} ({fmt_pct(shares[hi])}), quietest {WEEKDAYS[lo]} "
                 f"({fmt_pct(shares[lo])}); a flat week would give 14.3% each.")


def _long_tail(pdf: ReportPDF, inter: pd.DataFrame, products: pd.DataFrame) -> None:
    counts = popularity(inter, products)
    n = len(counts)
    cum = np.concatenate([[0.0], counts.cumsum().to_numpy() / counts.sum()])
    x = np.arange(n + 1) / n
    idx = np.unique(np.linspace(0, n, min(n + 1, 500)).astype(int))
    png = charts.lorenz(x[idx], cum[idx], title="Cumulative share of interactions by product")
    pdf.section("Long tail of popularity", min_space=pdf.figure_height(png, width=130) + 25)
    pdf.figure(png, width=130)
    top = top_share(counts)
    gini = gini_coefficient(counts.to_numpy())
    zero = int((counts == 0).sum())
    pdf.takeaway(f"the top 20% of products take {100 * top:.1f}% of interactions "
                 f"({n:,} products, popularity Gini {gini:.2f}); {zero:,} catalog products "
                 f"({fmt_pct(zero / n)}) have no interaction at all.")


def _sparsity(pdf: ReportPDF, inter: pd.DataFrame, products: pd.DataFrame) -> None:
    pdf.section("Sparsity of the user–item matrix", min_space=45)
    users = inter["user_id"].nunique()
    items = inter["product_id"].nunique()
    keys = inter["user_id"].to_numpy().astype(np.int64) * (1 << 31) + inter["product_id"].to_numpy()
    pairs = len(pd.unique(keys))
    catalog = max(items, products["product_id"].nunique())
    density = pairs / (users * items) if users and items else 0.0
    rows = [["active users × touched products", f"{users:,} × {items:,}", f"{pairs:,}",
             f"{100 * density:.3f}%", f"{100 * (1 - density):.3f}%"]]
    if catalog > items:
        d2 = pairs / (users * catalog)
        rows.append(["active users × whole catalog", f"{users:,} × {catalog:,}", f"{pairs:,}",
                     f"{100 * d2:.3f}%", f"{100 * (1 - d2):.3f}%"])
    pdf.data_table(["Matrix", "Size", "Observed pairs", "Density", "Sparsity"], rows,
                   widths=[40, 25, 18, 12, 12], align=["L", "R", "R", "R", "R"])
    pdf.takeaway(f"{100 * (1 - density):.2f}% of the user–item cells are empty; a user touches "
                 f"{pairs / users:,.1f} distinct products on average (median "
                 f"{_median_items(keys):,.0f}).")


def _median_items(keys: np.ndarray) -> float:
    """Median number of distinct products per user, from the combined user/product keys."""
    users = pd.unique(keys) // (1 << 31)
    return float(pd.Series(users).value_counts().median())


def _user_activity(pdf: ReportPDF, inter: pd.DataFrame, data: dict[str, pd.DataFrame]) -> None:
    per_user = inter["user_id"].value_counts()
    top = max(int(per_user.max()), 1)
    edges = np.unique(np.round(np.geomspace(1, top + 1, num=min(30, top + 1)))).astype(float)
    if len(edges) < 2:
        edges = np.array([1.0, 2.0])
    counts, edges = np.histogram(per_user.to_numpy(), bins=edges)
    png = charts.histogram(edges, counts, title="Interactions per user", xlabel="interactions (log scale)",
                           ylabel="users", logx=True, height_in=2.4)
    pdf.section("User activity", min_space=pdf.figure_height(png, width=150) + 25)
    pdf.figure(png, width=150)
    one_time = one_time_user_share(inter)
    lines = [f"One-time users (active on a single day): {100 * one_time:.1f}% of "
             f"{len(per_user):,} active users.",
             f"Interactions per user: median {per_user.median():,.0f}, mean {per_user.mean():,.1f}, "
             f"top 10% of users make {fmt_pct(_top_users_share(per_user))} of interactions."]
    orders, clicks = data["orders"], data["clickstream"]
    if len(orders):
        buys = orders.groupby("user_id")["order_id"].nunique()
        lines.append(f"Repeat-purchase rate: {fmt_pct((buys >= 2).mean())} of {len(buys):,} buyers placed "
                     "two or more orders.")
    elif len(clicks) and (clicks["event_type"].astype(str) == "purchase").any():
        buys = clicks.loc[clicks["event_type"].astype(str) == "purchase", "user_id"].value_counts()
        lines.append(f"Repeat-purchase rate: {fmt_pct((buys >= 2).mean())} of {len(buys):,} buyers made two "
                     "or more purchase events (no orders table).")
    else:
        lines.append("Repeat-purchase rate: not available (no orders and no purchase events).")
    for line in lines:
        pdf.para("• " + line)
    pdf.takeaway(f"{fmt_pct(one_time)} of users were seen on a single day only; recommendations for them "
                 "must lean on popularity and item similarity.")


def _top_users_share(per_user: pd.Series) -> float:
    k = max(1, math.ceil(0.1 * len(per_user)))
    return float(per_user.sort_values(ascending=False).iloc[:k].sum() / per_user.sum())


def _period_index(ts: pd.Series, freq: str) -> np.ndarray:
    naive = _utc_naive(ts)
    if freq == "W":
        days = (naive.dt.floor("D") - pd.Timestamp("1970-01-05")).dt.days  # a Monday
        return (days // 7).to_numpy()
    return (naive.dt.year * 12 + naive.dt.month - 1).to_numpy()


def _period_label(idx: int, freq: str) -> str:
    if freq == "W":
        return f"{pd.Timestamp('1970-01-05') + pd.Timedelta(weeks=int(idx)):%Y-%m-%d}"
    return f"{idx // 12:04d}-{idx % 12 + 1:02d}"


def _retention(pdf: ReportPDF, inter: pd.DataFrame, users: pd.DataFrame) -> None:
    freq = "W" if (inter["timestamp"].max() - inter["timestamp"].min()).days <= 180 else "M"
    unit = "week" if freq == "W" else "month"
    act = pd.DataFrame({"u": inter["user_id"].to_numpy(), "p": _period_index(inter["timestamp"], freq)})
    act = act.drop_duplicates()
    first = act.groupby("u")["p"].min()
    cohort, basis = first, "first activity"
    if len(users) and users["signup_date"].notna().any():
        signup = pd.to_datetime(users["signup_date"], utc=True, errors="coerce")
        sp = pd.Series(_period_index(signup, freq), index=users["user_id"].astype("int64")).dropna()
        sp = sp[~sp.index.duplicated()]
        joined = sp.reindex(first.index)
        inside = joined.notna() & (joined >= act["p"].min()) & (joined <= act["p"].max())
        if inside.mean() >= 0.5:
            cohort, basis = joined.where(inside, first).astype("int64"), "signup"
    act["c"] = act["u"].map(cohort)
    act["k"] = act["p"] - act["c"]
    act = act[act["k"] >= 0]
    last = int(act["p"].max())
    sizes = act[act["k"] == 0].groupby("c")["u"].nunique()
    if sizes.empty:
        pdf.section("Retention by cohort")
        pdf.note("Not enough activity to build cohorts.")
        return
    cohorts = sorted(sizes.index)[-12:]
    max_k = min(11, last - int(cohorts[0]))
    active = act[act["c"].isin(cohorts) & (act["k"] <= max_k)].groupby(["c", "k"])["u"].nunique()
    matrix = np.full((len(cohorts), max_k + 1), np.nan)
    for i, c in enumerate(cohorts):
        for k in range(max_k + 1):
            if c + k <= last:
                matrix[i, k] = active.get((c, k), 0) / sizes[c]
    labels = [f"{_period_label(int(c), freq)} (n={int(sizes[c]):,})" for c in cohorts]
    png = charts.heatmap(matrix, labels, [str(k) for k in range(max_k + 1)],
                         title=f"Share of each {basis} cohort active {unit}s later",
                         xlabel=f"{unit}s since cohort start", ylabel=f"cohort ({unit} of {basis})",
                         colorbar_label="active share")
    pdf.section("Retention by cohort", min_space=pdf.figure_height(png) + 25)
    pdf.figure(png)
    if max_k >= 1:
        col = matrix[:, 1]
        w = np.array([sizes[c] for c in cohorts], dtype=float)
        ok = ~np.isnan(col)
        avg = float(np.average(col[ok], weights=w[ok])) if ok.any() else float("nan")
        pdf.takeaway(f"on average {fmt_pct(avg)} of a cohort comes back in the {unit} after its first "
                     f"({len(cohorts)} most recent {unit}ly cohorts by {basis}; blank cells are not "
                     "observed yet).")
    else:
        pdf.takeaway(f"the data covers a single {unit}: retention needs a longer history.")


def _category_mix(pdf: ReportPDF, inter: pd.DataFrame, products: pd.DataFrame) -> None:
    if products.empty or products["category"].isna().all():
        pdf.section("Category mix")
        pdf.note("No products (or no categories) in the curated tables: category mix skipped.")
        return
    cat = products.dropna(subset=["product_id"]).drop_duplicates("product_id")
    cat_of = pd.Series(cat["category"].astype(str).to_numpy(), index=cat["product_id"].astype("int64"))
    catalog = cat_of.value_counts(normalize=True)
    if len(inter):
        used = inter["product_id"].map(cat_of).fillna("(unknown product)").value_counts(normalize=True)
    else:
        used = pd.Series(dtype=float)
    order = (used if len(used) else catalog).sort_values(ascending=False).index[:12]
    specs = [{"kind": "hbar", "title": "Share of catalog", "labels": list(order),
              "values": catalog.reindex(order, fill_value=0).to_numpy(), "percent": True,
              "xlabel": "share of products"}]
    if len(used):
        specs.append({"kind": "hbar", "title": "Share of interactions", "labels": list(order),
                      "values": used.reindex(order, fill_value=0).to_numpy(), "percent": True,
                      "xlabel": "share of interactions", "color": charts.PALETTE[1]})
    png = charts.panels(specs, ncols=2, panel_height_in=max(2.0, 0.5 + 0.24 * len(order)))
    pdf.section("Category mix", min_space=pdf.figure_height(png) + 25)
    pdf.figure(png)
    top = order[0]
    text = f"{len(catalog):,} categories; the largest by interactions is {top} " \
           f"({fmt_pct(used.get(top, 0))} of interactions, {fmt_pct(catalog.get(top, 0))} of the catalog)"
    if len(used) > 1:
        lift = (used / catalog.reindex(used.index)).replace([np.inf], np.nan).dropna()
        if len(lift):
            text += f"; most over-represented: {lift.idxmax()} (×{lift.max():.1f} its catalog share)"
    pdf.takeaway(text + "." if len(used) else f"{len(catalog):,} categories; no interactions to compare.")


def _price(pdf: ReportPDF, products: pd.DataFrame) -> None:
    price = pd.to_numeric(products["price"], errors="coerce").dropna()
    if price.empty:
        pdf.section("Price distribution")
        pdf.note("No product prices in the curated tables (MovieLens has none): price distribution skipped.")
        return
    cap = float(price.quantile(0.99)) if len(price) > 100 else float(price.max())
    counts, edges = np.histogram(price.clip(upper=cap), bins=40)
    capped = cap < price.max()
    png = charts.histogram(edges, counts, title="Product prices",
                           xlabel="price" + (" (top 1% capped at p99)" if capped else ""),
                           ylabel="products", height_in=2.4)
    pdf.section("Price distribution", min_space=pdf.figure_height(png, width=150) + 25)
    pdf.figure(png, width=150)
    q1, med, q3 = price.quantile([0.25, 0.5, 0.75])
    pdf.takeaway(f"median price {med:,.2f}, half of the catalog between {q1:,.2f} and {q3:,.2f}; "
                 f"most expensive {price.max():,.2f}.")


def _ratings(pdf: ReportPDF, ratings: pd.DataFrame) -> None:
    rating = pd.to_numeric(ratings["rating"], errors="coerce").dropna()
    if rating.empty:
        pdf.section("Rating distribution")
        pdf.note("No ratings in the curated tables: rating distribution skipped.")
        return
    vc = (rating * 2).round().div(2).value_counts(normalize=True).sort_index()
    png = charts.bars([f"{v:g}" for v in vc.index], vc.to_numpy(), title="Ratings by value",
                      xlabel="rating", ylabel="share of ratings", percent=True, height_in=2.3)
    pdf.section("Rating distribution", min_space=pdf.figure_height(png, width=150) + 25)
    pdf.figure(png, width=150)
    per_user = ratings["user_id"].value_counts()
    pdf.takeaway(f"{len(rating):,} ratings, mean {rating.mean():.2f}, {fmt_pct((rating >= 4).mean())} are 4 "
                 f"or more; a rater gives {per_user.median():,.0f} ratings (median).")
