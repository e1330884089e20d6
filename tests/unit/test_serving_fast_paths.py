"""Every faster path of the serving layer against the slower one it replaced, on the same inputs:
the merge (two flat dicts and C-level sort keys vs. tuples and a lambda; plain-tuple rows vs.
named tuples), the served items' encoding (remembered rounding vs. ``round`` per score), the hot
route's query parsing (vs. Starlette's), the batch view's lookups (memoryviews and a dense index
vs. ``np.searchsorted``)."""

from __future__ import annotations

import collections
import random
import time
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from recomart.serving import blend
from recomart.serving.batch_view import Lists
from recomart.serving.online_store import RecentEvent


def reference_merge(batch: tuple[Sequence[int], Sequence[float]] | None, recent: Sequence[RecentEvent],
          similar: Callable[[int, int], Sequence[int] | None], trending: Sequence[int],
          popular: Sequence[int], n: int, rules: blend.MergeRules = blend.MergeRules()) -> list[blend.Scored]:
    """The merge as first written (before the two-dict rewrite): the oracle."""
    items = list(batch[0]) if batch is not None else []
    if not recent:  # the common case needs none of the real-time machinery
        length = len(items)
        ranked = [blend.Scored(p, 1.0 - r / length, blend.BATCH) for r, p in enumerate(items[:n])]
        return reference_fill(ranked, n, trending, popular, frozenset())
    bought: dict[int, int] = {}
    views: dict[int, int] = {}
    engaged: set[int] = set()
    for e in recent:
        kind, pid = e.event_type, e.product_id
        if kind == "view":
            views[pid] = views.get(pid, 0) + 1
        else:
            engaged.add(pid)
            if kind == "purchase":
                bought[pid] = bought.get(pid, 0) + 1
    repeat = {p for p, c in bought.items() if c >= rules.buy_again_min}
    excluded = set(bought) - repeat

    best: dict[int, tuple[float, str]] = {}  # product -> (score, reason)
    length = len(items)
    for r, pid in enumerate(items):
        if pid not in excluded:
            best[pid] = (1.0 - r / length, blend.BATCH)
    anchors: list[tuple[int, bool]] = []  # (product, carted), newest first, distinct, not bought
    seen_anchor: set[int] = set()
    for e in recent:
        if len(anchors) >= rules.anchors:
            break
        pid = e.product_id
        if e.event_type == "purchase" or pid in bought:
            continue
        if pid in seen_anchor:
            if e.event_type == "add_to_cart":  # a cart anywhere in the window marks the anchor
                anchors = [(a, c or a == pid) for a, c in anchors]
            continue
        seen_anchor.add(pid)
        anchors.append((pid, e.event_type == "add_to_cart"))
    for j, (anchor, carted) in enumerate(anchors):
        sims = similar(anchor, rules.similar_per_anchor)
        if not sims:
            continue
        weight = rules.similar_weight * rules.recency_decay ** j * (rules.cart_boost if carted else 1.0)
        k = len(sims)
        for r, pid in enumerate(sims):
            if pid in seen_anchor or pid in excluded:
                continue
            score = weight * (1.0 - r / k)
            cur = best.get(pid)
            if cur is None or score > cur[0]:
                best[pid] = (score, blend.SIMILAR)
    for pid in repeat:
        best[pid] = (rules.buy_again_score, blend.BUY_AGAIN)
    for pid, c in views.items():
        if c >= rules.demote_views and pid not in engaged and pid in best:
            score, reason = best[pid]
            best[pid] = (score * rules.demote_factor, reason)
    top = sorted(best.items(), key=lambda kv: (-kv[1][0], kv[0]))[:n]
    ranked = [blend.Scored(pid, score, reason) for pid, (score, reason) in top]
    return reference_fill(ranked, n, trending, popular, frozenset(bought))


def reference_fill(ranked: list[blend.Scored], n: int, trending: Sequence[int], popular: Sequence[int],
                   bought: frozenset[int]) -> list[blend.Scored]:
    """The fill step as first written (named tuples): trending, then popular items below the
    last score, skipping bought and listed ones."""
    if len(ranked) >= n:
        return ranked
    listed = {s.product_id for s in ranked}
    floor = ranked[-1].score if ranked else 1.0
    for source, reason in ((trending, blend.TRENDING), (popular, blend.POPULAR)):
        for pid in source:
            if len(ranked) >= n:
                return ranked
            if pid in listed or pid in bought:
                continue
            floor *= 0.99
            ranked.append(blend.Scored(int(pid), floor, reason))
            listed.add(pid)
    return ranked




def _random_case(rng: random.Random):
    catalog = rng.choice([8, 30, 200])
    similar = {p: rng.sample(range(1, catalog + 1), rng.randint(0, min(12, catalog)))
               for p in range(1, catalog + 1) if rng.random() < 0.8}
    for p in list(similar)[::7]:  # a few lists that name an id twice (not what a build makes)
        similar[p] = rng.choices(range(1, catalog + 1), k=rng.randint(2, 12))

    def sim(p: int, k: int):
        return similar.get(p, [])[:k] or None

    batch = None
    if rng.random() < 0.85:
        items = rng.sample(range(1, catalog + 1), rng.randint(0, min(25, catalog)))
        batch = (items, [1.0 - i / 30 for i in range(len(items))])
    kinds = ("view", "view", "view", "add_to_cart", "purchase")
    recent = [RecentEvent(rng.randint(1, catalog), rng.choice(kinds), 100.0 - i)
              for i in range(rng.choice([0, 1, 3, 5, 12, 50]))]
    trending = rng.sample(range(1, catalog + 1), rng.randint(0, min(10, catalog)))
    popular = rng.sample(range(1, catalog + 1), rng.randint(0, min(20, catalog)))
    rules = blend.MergeRules(buy_again_min=rng.choice([1, 2, 3]), demote_views=rng.choice([1, 2, 3]),
                             anchors=rng.choice([1, 3, 5]), similar_per_anchor=rng.choice([3, 10]),
                             recency_decay=rng.choice([0.7, 1.0]), cart_boost=rng.choice([1.0, 1.2]))
    return batch, recent, sim, trending, popular, rng.choice([1, 5, 10, 20, 100]), rules


def test_merge_equals_the_reference_merge_on_random_cases():
    rng = random.Random(11)
    differing_reasons = set()
    for _ in range(3000):
        case = _random_case(rng)
        got = blend.merge(*case)
        want = reference_merge(*case)
        assert got == want, case
        differing_reasons.update(s.reason for s in got)
    # the cases reach every reason, so every branch of the rule was compared
    assert differing_reasons == {blend.BATCH, blend.BUY_AGAIN, blend.SIMILAR, blend.TRENDING,
                                 blend.POPULAR}


def test_merge_rows_are_the_merges_scored_items_as_plain_tuples():
    rng = random.Random(12)
    for _ in range(2000):
        case = _random_case(rng)
        rows = blend.merge_rows(*case)
        assert rows == blend.merge(*case) == reference_merge(*case), case
        assert all(type(r) is tuple and len(r) == 3 for r in rows)


def _reference_items(scored) -> bytes:
    """``app._items`` as first written: ``round`` on every score, then msgspec structs."""
    import msgspec

    from recomart.serving.app import _Item

    return msgspec.json.encode([_Item(s.product_id, round(s.score, 6), i, s.reason)
                                for i, s in enumerate(scored, start=1)])


def test_items_with_remembered_rounding_encode_like_round_on_every_score():
    from recomart.serving import app

    rng = random.Random(13)
    specials = [0.0, -0.0, 1e-7, 4e-7, 5e-7, 1.0000005, 0.1234565, 1.05, 2.0, -0.3, 5e-05,
                float("nan"), float("inf")]
    for k in range(3000):
        case = _random_case(rng)
        scored = blend.merge(*case)
        if k % 3 == 0:  # scores merges rarely make: tiny, negative, halfway, not finite
            scored = [blend.Scored(s.product_id, rng.choice(specials), s.reason) for s in scored]
        want = _reference_items(scored)
        assert bytes(app._items(scored)) == want  # the Scored items
        assert bytes(app._items([tuple(s) for s in scored])) == want  # the same as rows
        assert bytes(app._items(scored)) == want  # and again, from the remembered roundings
    assert 0.0 not in app._ROUNDED and all(k == k for k in app._ROUNDED)


@pytest.mark.parametrize("query", [b"", b"n=20", b"n=3&x=1", b"n=2&n=3", b"x=1", b"n", b"n=",
                                   b"&&n=7&", b"n=%32%30", b"n=+5", b"n=5+", b"m=1&n=4&m=2",
                                   b"n=5;x=1", b"n=%", b"N=5", "n=\xe9".encode("latin-1"),
                                   b"a=b=c&n=9", b"n=1&n"])
def test_query_param_equals_starlettes_query_params(query):
    from starlette.datastructures import QueryParams

    from recomart.serving.app import _query_param

    for name in ("n", "m", "x"):
        assert _query_param(query, name, "10") == QueryParams(query).get(name, "10")


def _reference_get(lists: Lists, key: int, n: int | None = None):
    """``Lists.get`` as first written: a numpy binary search and array slices."""
    i = int(np.searchsorted(lists.keys, key))
    if not (i < len(lists.keys) and int(lists.keys[i]) == key):
        return None
    a, b = int(lists.offsets[i]), int(lists.offsets[i + 1])
    if n is not None:
        b = min(b, a + n)
    return lists.items[a:b].tolist(), lists.scores[a:b].tolist()


@pytest.mark.parametrize("ids", ["dense", "sparse"])
def test_lists_lookups_equal_the_numpy_lookup(ids):
    rng = np.random.default_rng(5)
    n_keys = 500
    keys = (rng.choice(2_000, n_keys, replace=False) if ids == "dense"
            else rng.choice(np.int64(1) << 62, n_keys, replace=False))
    per = rng.integers(1, 8, n_keys)
    lists = Lists.from_columns(np.repeat(keys, per), rng.integers(0, 10**12, per.sum()),
                               rng.random(per.sum()).astype(np.float32),
                               np.concatenate([rng.permutation(k) + 1 for k in per]))
    assert (lists._dense is not None) == (ids == "dense")  # both paths are exercised
    probes = [int(k) for k in keys] + [int(k) + 1 for k in keys] + [0, -1, -(1 << 63),
                                                                    (1 << 63) - 1, 1 << 70]
    for key in probes:
        for n in (None, 1, 3, 100):
            want = _reference_get(lists, key, n) if -(1 << 63) <= key < (1 << 63) else None
            assert lists.get(key, n) == want
            assert lists.get_items(key, n or 1000) == (want[0] if want else None)
        assert (key in lists) == (want is not None)
    empty = Lists.empty()
    assert empty.get(1) is None and empty.get_items(1, 5) is None and 1 not in empty


def _reference_unpack_events(raw):
    """``unpack_events`` as first written: a set of seen entries, each decoded to text first,
    then split."""
    seen, out = set(), []
    for r in raw:
        if r in seen:
            continue
        seen.add(r)
        text = r.decode() if isinstance(r, bytes) else r
        try:
            pid, etype, ms, _ = text.split("|", 3)
            e = RecentEvent(int(pid), etype, int(ms) / 1000)
        except ValueError:
            e = None
        if e is not None:
            out.append(e)
    return out


def test_unpacking_entries_as_bytes_equals_unpacking_them_as_text():
    from recomart.serving.online_store import unpack_events

    rng = random.Random(8)
    parts = [["12", "7", "-3", " 5", "1_0", "x", "", "99999999999999999999"],
             ["view", "add_to_cart", "purchase", "refund", "", "vi|ew"],
             ["1700000000123", "0", "17e3", "-5", "z"], ["e1", "e|2", "", "é"]]
    valid = 0
    for _ in range(300):
        entries = []
        for _ in range(rng.randint(0, 12)):
            fields = [rng.choice(p) for p in parts][: rng.choice([1, 2, 3, 4, 4, 4])]
            entries.append("|".join(fields).encode())
        entries += rng.sample(entries, min(len(entries), rng.randint(0, 3)))  # replayed entries
        rng.shuffle(entries)
        want = _reference_unpack_events(entries)
        assert unpack_events(entries) == want, entries
        assert unpack_events([e.decode() for e in entries]) == want
        valid += len(want)
    assert valid > 200  # well-formed entries were compared, not only rejects
    assert len(unpack_events([b"5|view|1000|a", b"5|view|1000|a", b"6|purchase|2000|b"])) == 2
    # invalid UTF-8 in an entry's type: that entry is skipped (as text it failed the whole read)
    assert unpack_events([b"5|vi\xffew|1000|a", b"6|view|2000|b"]) == [RecentEvent(6, "view", 2.0)]


def test_remembered_similar_items_equal_the_lookup(monkeypatch):
    from recomart.serving import batch_view
    from recomart.serving.batch_view import BatchView

    rng = np.random.default_rng(6)
    keys = rng.choice(5_000, 300, replace=False)
    per = rng.integers(1, 15, len(keys))
    similar = Lists.from_columns(np.repeat(keys, per), rng.integers(0, 10**6, per.sum()),
                                 rng.random(per.sum()).astype(np.float32),
                                 np.concatenate([rng.permutation(k) + 1 for k in per]))
    view = BatchView("m", 1, "p", 0.0, "s", Lists.empty(), similar, Lists.empty())
    monkeypatch.setattr(batch_view, "SIMILAR_MEMO_MAX", 50)  # the bound is reached and cleared
    probes = [int(k) for k in keys] + [int(k) + 1 for k in keys[:50]] + [-1, 1 << 70]
    for _ in range(3):  # first asked, then remembered (or asked again after a clear)
        for key in rng.permutation(probes):
            for n in (1, 10, 100):
                got, want = view.similar_items(int(key), n), similar.get_items(int(key), n)
                assert (got is None and want is None) or list(got) == want
                assert got is None or type(got) is tuple  # shared between requests: immutable
    assert 0 < len(view._similar_memo) <= 50
    assert all(v is not None for v in view._similar_memo.values())  # unknown ids not kept


@pytest.fixture
def store_url(tmp_path):
    from recomart.serving.online_store import EmbeddedRedis

    with EmbeddedRedis(log_path=tmp_path / "redis.log") as r:
        yield r.url


def _fill_store(url: str):
    from recomart.serving.online_store import OnlineStore

    store = OnlineStore(url, max_events=50, ttl_s=600, window_s=60)
    rng = random.Random(3)
    n = 400
    users = [rng.randint(1, 40) for _ in range(n)]
    sessions = [rng.choice(["s1", "s 2", "sé|3", "x" * 128]) for _ in range(n)]
    store.record(users, sessions, [rng.randint(1, 99) for _ in range(n)],
                 [rng.choice(["view", "add_to_cart", "purchase"]) for _ in range(n)],
                 [1_000_000.0 + i for i in range(n)], [f"e{i}" for i in range(n)])
    store.client.set("rm:u:wrongtype", "a string, not a list")
    return store


def test_online_reads_packed_equal_the_pipeline_and_the_sync_store(store_url):
    import asyncio

    from recomart.serving.online_store import AsyncOnlineReader, unpack_events

    store = _fill_store(store_url)
    reads = ([(f"rm:u:{u}", stop) for u in range(0, 45) for stop in (0, 4, 49)]
             + [(f"rm:s:{s}", 9) for s in ("s1", "s 2", "sé|3", "x" * 128, "none")])

    async def scenario():
        reader = AsyncOnlineReader(store_url)
        try:
            by_packed = await reader.read_packed(reads)
            by_pipeline = await reader.read_pipeline(reads)
            # concurrent requests: micro-batched into one write, each gets its own list
            users = list(range(0, 45))
            batched = await asyncio.gather(*[reader.recent_user(u) for u in users])
            # a key of the wrong type fails its batch on both paths, wherever it is in the batch
            for read in (reader.read_packed, reader.read_pipeline):
                for bad in ([("rm:u:1", 9), ("rm:u:wrongtype", 9)],
                            [("rm:u:wrongtype", 9), ("rm:u:1", 9), ("rm:u:2", 3)]):
                    with pytest.raises(Exception, match="WRONGTYPE"):
                        await read(bad)
            with pytest.raises(Exception, match="WRONGTYPE"):
                await reader.recent_user("wrongtype")
            # in a micro-batch of concurrent reads, the wrong-type key fails its own read only
            mixed = await asyncio.gather(*[reader.recent_user(u) for u in (1, "wrongtype", 2, 3)],
                                         return_exceptions=True)
            assert "WRONGTYPE" in str(mixed[1])
            assert [mixed[0], *mixed[2:]] == [batched[1], batched[2], batched[3]]
            # ... and the connection stays in step: the next batch reads its own replies
            conn = reader._conn
            assert await reader.read_packed(reads) == by_packed and reader._conn is conn
            return by_packed, by_pipeline, users, batched
        finally:
            await reader.close()

    by_packed, by_pipeline, users, batched = asyncio.run(scenario())
    assert by_packed == by_pipeline
    assert sum(len(r) for r in by_packed) > 300  # the reads found data, not only empty lists
    for u, got in zip(users, batched, strict=True):
        assert got == store.recent_user(u) == unpack_events(store.client.lrange(f"rm:u:{u}", 0, 49))


def test_online_reads_keep_one_connection_and_survive_the_server_closing_it(store_url):
    """The batches' own connection (instead of one from the pool per batch) answers like the
    pool did: across batches, after the server killed it, and after a failed batch."""
    import asyncio

    from recomart.serving.online_store import AsyncOnlineReader

    store = _fill_store(store_url)
    users = list(range(1, 41))
    want = [store.recent_user(u) for u in users]

    async def scenario():
        reader = AsyncOnlineReader(store_url)
        try:
            got = [await asyncio.gather(*[reader.recent_user(u) for u in users])]
            conn = reader._conn
            got.append(await asyncio.gather(*[reader.recent_user(u) for u in users]))
            assert reader._conn is conn  # one connection for every batch
            store.client.execute_command("CLIENT", "KILL", "TYPE", "normal")  # the server drops it
            got.append(await asyncio.gather(*[reader.recent_user(u) for u in users]))
            with pytest.raises(Exception, match="WRONGTYPE"):  # a failed batch ...
                await reader.recent_user("wrongtype")
            got.append(await asyncio.gather(*[reader.recent_user(u) for u in users]))  # ... then fine
            return got
        finally:
            await reader.close()

    for answers in asyncio.run(scenario()):
        assert answers == want and any(want)


def test_online_reads_need_no_scripting(tmp_path):
    """Some managed servers disable EVAL: the reads never use it."""
    import asyncio

    from recomart.serving.online_store import AsyncOnlineReader, EmbeddedRedis

    with EmbeddedRedis(log_path=tmp_path / "redis.log", extra_args=["--rename-command", "EVAL", ""]) as r:
        store = _fill_store(r.url)

        async def scenario():
            reader = AsyncOnlineReader(r.url)
            try:
                first = await asyncio.gather(*[reader.recent_user(u) for u in range(1, 41)])
                again = await asyncio.gather(*[reader.recent_user(u) for u in range(1, 41)])
                return first, again
            finally:
                await reader.close()

        first, again = asyncio.run(scenario())
        want = [store.recent_user(u) for u in range(1, 41)]
        assert first == want and again == want and any(want)


def test_pack_command_writes_what_redis_py_writes():
    from redis.asyncio.connection import Connection

    from recomart.serving.online_store import pack_command

    args = [b"LRANGE", "rm:s:sé|3 x".encode(), b"0", b"49"]
    assert pack_command(*args) == b"".join(Connection().pack_command(*args))
    assert pack_command(b"LRANGE", b"", b"0", b"-1") == b"".join(
        Connection().pack_command(b"LRANGE", b"", b"0", b"-1"))


def test_the_starlette_hot_route_answers_like_the_fastapi_route(lake, store_url):
    from fastapi.testclient import TestClient

    from recomart.config import Settings
    from recomart.serving.app import create_app
    from recomart.serving.synthetic import publish_synthetic

    _fill_store(store_url)  # users 1..40 have recent events: the merge runs in full
    settings = Settings(lake_root=lake.root, online_store_url=store_url, serving_reload_poll_s=0.1)
    paths = ["/v1/users/1/recommendations", "/v1/users/7/recommendations?n=3",
             "/v1/users/39/recommendations?n=100", "/v1/users/999/recommendations?n=4",
             "/v1/users/0/recommendations", "/v1/users/-1/recommendations",
             "/v1/users/abc/recommendations", "/v1/users/99999999999999999999/recommendations",
             f"/v1/users/{(1 << 63) - 1}/recommendations", "/v1/users/5/recommendations?n=0",
             "/v1/users/5/recommendations?n=101", "/v1/users/5/recommendations?n=x",
             "/v1/users/5/recommendations?n=2&n=3", "/v1/users/5/recommendations/",
             "/v1/users//recommendations"]

    def answers(client):
        out = []
        for method in ("GET", "HEAD", "POST"):
            for path in paths:
                r = client.request(method, path)
                body = r.json() if r.content else None
                if isinstance(body, dict):
                    body.pop("request_id", None)
                out.append((method, path, r.status_code, body, r.headers["content-type"]))
        for path in paths[:4]:  # a GET with a body: the bare ASGI path leaves it to the stack
            r = client.request("GET", path, content=b"{}")
            out.append(("GET+body", path, r.status_code, {**r.json(), "request_id": None}))
        return out

    def latency_counts():
        from prometheus_client import REGISTRY

        return collections.Counter({
            (s.labels["route"], s.labels["status"]): s.value
            for m in REGISTRY.collect() if m.name == "recomart_http_request_duration_seconds"
            for s in m.samples if s.name.endswith("_count")})

    from recomart.serving.app import _HOT_PATH

    got, timed, hot_calls = {}, {}, [0]
    for fast in (True, False):
        app = create_app(settings, fast_route=fast)
        if fast:  # count what the bare ASGI handler answers
            inner = app.hot

            async def counted(*args, inner=inner):
                hot_calls[0] += 1
                await inner(*args)

            app.hot = counted
        with TestClient(app) as client:
            counts0 = latency_counts()
            before = answers(client)  # nothing published: 503s (and the 4xx of bad input)
            publish_synthetic(lake, users=40, products=30, n=10, version=1)
            deadline = time.monotonic() + 15
            while client.get("/readyz").status_code != 200 and time.monotonic() < deadline:
                time.sleep(0.1)
            counts1 = latency_counts()
            got[fast] = (before, answers(client))
            timed[fast] = (counts1 - counts0) + (latency_counts() - counts1)  # /readyz left out
            timed[fast] = {k: v for k, v in timed[fast].items() if k[0] != "/readyz"}
            (lake.root / "serving" / "latest.json").unlink()
    assert got[True] == got[False]
    # the shortcut took every plain GET of the route (and nothing else), before and after
    # (a trailing slash is redirected to the route by Starlette and the client follows it)
    plain = [p for p in paths if _HOT_PATH.fullmatch(p.split("?")[0].rstrip("/"))]
    assert len(plain) >= 10 and hot_calls[0] == 2 * len(plain)
    # every request is timed under the same route name and status on both paths
    assert timed[True] == timed[False]
    served = sum(1 for m, _, status, *_ in got[True][1] if m.startswith("GET") and status == 200)
    assert served >= 8 and timed[True][("/v1/users/{user_id}/recommendations", "200")] == served
    before, after = got[True]
    statuses = {(m, s) for m, _, s, *_ in after}
    assert {("GET", 200), ("GET", 422), ("GET", 404), ("HEAD", 405), ("POST", 405)} <= statuses
    assert any(s == 503 for _, _, s, *_ in before)
    fresh = [b["fresh_events"] for m, _, s, b, *_ in after if m == "GET" and s == 200]
    assert max(fresh) > 0  # the online store's events reached the merge on both paths


def test_an_unexpected_error_on_the_hot_route_answers_like_the_fastapi_route(
        lake, store_url, monkeypatch, caplog):
    from fastapi.testclient import TestClient

    from recomart.config import Settings
    from recomart.serving import app as serving_app
    from recomart.serving.app import LimitsAndMetrics, create_app
    from recomart.serving.synthetic import publish_synthetic

    publish_synthetic(lake, users=10, products=20, n=5, version=1)
    settings = Settings(lake_root=lake.root, online_store_url=store_url)

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the merge")

    answers = {}
    for fast in (True, False):
        app = create_app(settings, fast_route=fast)
        # the bare ASGI path does what LimitsAndMetrics and the exception handlers do: a new
        # middleware must be added there too (this list says which ones it covers)
        assert [m.cls for m in app.user_middleware] == [LimitsAndMetrics]
        with TestClient(app, raise_server_exceptions=False) as client:
            monkeypatch.setattr(serving_app.blend, "merge_rows", broken)
            caplog.clear()
            r = client.get("/v1/users/3/recommendations")
            monkeypatch.undo()
            answers[fast] = (r.status_code, r.json(), r.headers["content-type"])
            logged = [rec for rec in caplog.records if rec.exc_info
                      and "a bug in the merge" in str(rec.exc_info[1])]
            assert logged, "the 500 was not logged with its traceback"
    assert answers[True] == answers[False] == (
        500, {"error": "internal error (logged on the server)"}, "application/json")


def _reference_from_columns(keys, items, scores, ranks):
    """``Lists.from_columns`` as first written: always a lexsort and ``np.unique``."""
    order = np.lexsort((ranks, keys))
    keys, items, scores = keys[order], items[order], scores[order]
    uniq, starts = np.unique(keys, return_index=True)
    return uniq, np.append(starts, len(keys)), items, scores.astype(np.float32)


def _reference_popular(items, top=200):
    ids, counts = np.unique(items, return_counts=True)
    best = np.argsort(-counts, kind="stable")[:top]
    return [(int(ids[i]), float(counts[i]) / float(counts.sum())) for i in best]


@pytest.mark.parametrize("order", ["published", "shuffled"])
@pytest.mark.parametrize("ids", ["dense", "sparse"])
def test_building_lists_and_popular_equals_the_sorting_build(order, ids):
    from recomart.serving.batch_view import popular_items

    rng = np.random.default_rng(9)
    n_keys = 3000
    keys = np.sort(rng.choice(10_000 if ids == "dense" else np.int64(1) << 60, n_keys, replace=False))
    per = rng.integers(1, 25, n_keys)
    k = np.repeat(keys, per)
    r = np.concatenate([np.arange(1, c + 1) for c in per])
    items = rng.integers(0, 500 if ids == "dense" else 1 << 60, len(k))
    scores = rng.random(len(k))
    if order == "shuffled":
        perm = rng.permutation(len(k))
        k, r, items, scores = k[perm], r[perm], items[perm], scores[perm]
    got = Lists.from_columns(k, items, scores, r)
    want = _reference_from_columns(k, items, scores, r)
    for a, b in zip((got.keys, got.offsets, got.items, got.scores), want, strict=True):
        assert np.array_equal(a, b)
    assert popular_items(got.items) == _reference_popular(got.items)
    # a key whose ranks repeat or go down is not "in order": it is sorted like the rest
    bumpy = Lists.from_columns(np.array([1, 1, 2]), np.array([10, 11, 20]),
                               np.array([0.5, 0.9, 0.1]), np.array([2, 1, 1]))
    assert bumpy.get(1)[0] == [11, 10]


def test_exposures_and_events_go_through_their_own_producers(tmp_path):
    """Exposures on the lingering producer, events on the prompt one: every exposure is counted
    sent once acknowledged (the metric moves in steps from the poll thread), every event is acked
    before ``send_events`` returns, and both land on their topics."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
    from prometheus_client import REGISTRY

    from recomart.serving.kafka_out import EVENT_LINGER_MS, EXPOSURE_LINGER_MS, KafkaOut
    from recomart.streaming.broker import EmbeddedBroker

    assert EVENT_LINGER_MS < EXPOSURE_LINGER_MS

    def sent_metric() -> float:
        return REGISTRY.get_sample_value("recomart_exposures_total", {"outcome": "sent"}) or 0.0

    with EmbeddedBroker(log_path=tmp_path / "tansu.log", embedded=True,
                        topics={"x-exposures": 1, "x-clicks": 1}) as broker:
        out = KafkaOut(broker.bootstrap, "x-exposures", "x-clicks")
        before = sent_metric()
        try:
            for i in range(50):
                assert out.log_exposure(f"r{i}", b'{"request_id": "r%d"}' % i)
            results = out.send_events([(b"1", b'{"e": %d}' % i) for i in range(3)])
            assert results == [None, None, None]
        finally:
            out.close()
        assert out.sent == 50 and out.lost == 0
        assert sent_metric() - before == 50
        consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": "fast-path-test",
                             "auto.offset.reset": "earliest"})
        try:
            consumer.assign([TopicPartition(t, 0, OFFSET_BEGINNING) for t in ("x-exposures",
                                                                              "x-clicks")])
            seen: dict[str, int] = {}
            deadline = time.monotonic() + 60
            while sum(seen.values()) < 53 and time.monotonic() < deadline:
                msg = consumer.poll(0.5)
                if msg is not None and msg.error() is None:
                    seen[msg.topic()] = seen.get(msg.topic(), 0) + 1
        finally:
            consumer.close()
        assert seen == {"x-exposures": 50, "x-clicks": 3}


def test_exposures_undeliverable_are_counted_lost_from_failure_only_reports():
    """The exposure producer reports failures only: what never reaches a broker is counted lost
    (and not sent) once librdkafka gives up on it, as per-message reports counted it before."""
    from recomart.serving.kafka_out import KafkaOut
    from recomart.streaming.broker import free_port

    out = KafkaOut(f"127.0.0.1:{free_port()}", "x-exposures", "x-clicks", timeout_s=1.0)
    try:
        for i in range(7):
            assert out.log_exposure(f"r{i}", b"{}")
        assert out.queued == 7 and out.sent == 0
        deadline = time.monotonic() + 30
        while out.lost < 7 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert out.failed == 7 and out.lost == 7 and out.sent == 0
    finally:
        out.close()
    assert out.sent == 0 and out.lost == 7


def test_buffered_metric_children_expose_what_direct_updates_expose():
    """``metrics.Buffered`` + ``flush`` (the multiprocess mode's children) against the same
    observations made on the child directly: equal bucket counts (values on the bounds too),
    sums and counter values; nothing moves before the flush, a flush of nothing changes nothing."""
    from prometheus_client import CollectorRegistry, Counter, Histogram

    from recomart.serving.metrics import LATENCY_BUCKETS, Buffered

    registry = CollectorRegistry()
    hist = Histogram("x_seconds", "x", ["route"], buckets=LATENCY_BUCKETS, registry=registry)
    count = Counter("x_items", "x", ["route"], registry=registry)
    rng = random.Random(17)
    values = ([rng.expovariate(100) for _ in range(3000)] + list(LATENCY_BUCKETS)
              + [0.0, -1.0, 1e9])
    b_hist, b_count = Buffered(hist.labels("buffered")), Buffered(count.labels("buffered"))
    for k, v in enumerate(values):
        hist.labels("direct").observe(v)
        count.labels("direct").inc(k % 7)
        b_hist.observe(v)
        b_count.inc(k % 7)
        if k == 1000:
            assert registry.get_sample_value("x_seconds_count", {"route": "buffered"}) in (None, 0)
            b_hist.flush()
            b_count.flush()

    def samples(route):
        out = {}
        for metric in registry.collect():
            for s in metric.samples:
                if s.labels.get("route") == route and not s.name.endswith("_created"):
                    out[(s.name, s.labels.get("le"))] = s.value
        return out

    b_hist.flush()
    b_count.flush()
    b_hist.flush()  # nothing pending: no change
    direct, buffered = samples("direct"), samples("buffered")
    assert len(direct) == len(LATENCY_BUCKETS) + 4  # the buckets, +Inf, count, sum, the counter
    sums = direct.pop(("x_seconds_sum", None)), buffered.pop(("x_seconds_sum", None))
    assert direct == buffered and sums[1] == pytest.approx(sums[0], rel=1e-12)  # summed in steps
    assert buffered[("x_items_total", None)] == sum(k % 7 for k in range(len(values)))
    for one in (hist.labels("nan-direct"), Buffered(hist.labels("nan-buffered"))):
        one.observe(float("nan"))  # no bucket, a NaN sum, on both paths
        getattr(one, "flush", lambda: None)()
    nan_direct, nan_buffered = samples("nan-direct"), samples("nan-buffered")
    assert [k for k, v in nan_direct.items() if v != v] == [("x_seconds_sum", None)]
    assert nan_direct.keys() == nan_buffered.keys()
    assert all(v == nan_buffered[k] for k, v in nan_direct.items() if v == v)
    assert nan_buffered[("x_seconds_sum", None)] != nan_buffered[("x_seconds_sum", None)]
