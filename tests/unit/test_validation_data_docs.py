"""GX Data Docs built the faster way (pages written dataset by dataset, then the index; jinja
templates compiled once per process) against the one build with freshly compiled templates that
they replaced: the same pages with the same HTML, times aside."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from recomart.tables import DATASETS
from recomart.validation import suites
from recomart.validation.suites import SuiteRun

NAMES = ("users", "products", "orders", "ratings", "clickstream")
# run times, epoch sort keys and the ?d= cache busters differ between two builds, nothing else
_TIMES = re.compile(r"\d{8}T\d{6}\.\d+Z|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?"
                    r"|\d{10}\.\d+")


def _frames(name: str, n: int = 30) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(len(name))
    make = {"int": lambda: rng.integers(1, 50, n), "float": lambda: rng.uniform(0, 6, n),
            "str": lambda: rng.choice(["view", "purchase", "x", None], n),
            "timestamp": lambda: pd.date_range("2024-01-01", periods=n, freq="h", tz="UTC"),
            "date": lambda: pd.date_range("2024-01-01", periods=n).date}
    frame = pd.DataFrame({c: make[kind]() for c, kind in DATASETS[name].columns.items()})
    times = [c for c, kind in DATASETS[name].columns.items() if kind == "timestamp"]
    return frame, frame[times[:1]] if times else frame.iloc[:, :1]


def _build(docs: Path, incremental: bool) -> dict[str, str]:
    run = SuiteRun({n: DATASETS[n].nullable for n in NAMES}, {"orders": 10},
                   pd.Timestamp("2024-02-01", tz="UTC"), docs)
    for name in NAMES:
        run.add(name, *_frames(name))
        if incremental and name != NAMES[-1]:
            run.render_added()
    index = run.build_docs()
    assert index == docs / "index.html" and index.is_file()
    pages = {}
    for page in docs.rglob("*.html"):
        parts = page.relative_to(docs).parts  # validations/<suite>/<run name>/<run time>/<page>
        key = "/".join((*parts[:3], parts[-1])) if parts[0] == "validations" else "/".join(parts)
        pages[key] = _TIMES.sub("T", page.read_text(encoding="utf-8"))
    return pages


def test_pages_by_dataset_with_cached_templates_equal_one_fresh_build(tmp_path, monkeypatch):
    suites._cache_templates()
    cache = suites._TEMPLATES
    cache.clear()
    compiled: list[str] = []
    original = cache.dump_bytecode
    monkeypatch.setattr(cache, "dump_bytecode",
                        lambda bucket: (compiled.append(bucket.key), original(bucket))[1])
    fresh = _build(tmp_path / "fresh", incremental=False)  # compiles every template it uses
    assert compiled, "the first build compiled no template: the cache is not in use"
    compiled.clear()
    fast = _build(tmp_path / "fast", incremental=True)
    assert compiled == []  # every template came from the cache
    assert sorted(fast) == sorted(fresh)
    assert len([p for p in fresh if p.startswith("validations/")]) == 2 * len(NAMES)
    for page, html in fresh.items():
        assert fast[page] == html, page
    # the index links every result, though it was written after the other pages
    for name in NAMES:
        for part in ("sample", "volume"):
            assert f"recomart-{name}.{part}.html" in fast["index.html"]
