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


def _fresh_cache(monkeypatch, folder: Path):
    """A template cache of this test's own (on disk in ``folder``); the process's is restored."""
    from great_expectations.render.view.view import DefaultJinjaView

    monkeypatch.setenv("RECOMART_CACHE_DIR", str(folder))
    monkeypatch.setattr(DefaultJinjaView, "__init__", DefaultJinjaView.__init__)
    monkeypatch.setattr(suites, "_TEMPLATES", None)
    suites._cache_templates()
    cache = suites._TEMPLATES
    compiled: list[str] = []
    dump = cache.dump_bytecode
    monkeypatch.setattr(cache, "dump_bytecode", lambda bucket: (compiled.append(bucket.key),
                                                                dump(bucket))[1])
    return cache, compiled


def test_pages_by_dataset_with_cached_templates_equal_one_fresh_build(tmp_path, monkeypatch):
    cache, compiled = _fresh_cache(monkeypatch, tmp_path / "cache")
    folder = suites.template_cache_dir()
    assert folder.parent == tmp_path / "cache" / "gx-templates"
    assert folder.name.startswith("jinja2-") and "-gx-" in folder.name  # one per version pair
    assert cache.files is not None and folder.stat().st_mode & 0o777 == 0o700
    fresh = _build(tmp_path / "fresh", incremental=False)  # compiles every template it uses
    assert compiled, "the first build compiled no template: the cache is not in use"
    on_disk = list(suites.template_cache_dir().iterdir())
    assert len(on_disk) == len(set(compiled))
    compiled.clear()
    fast = _build(tmp_path / "fast", incremental=True)
    assert compiled == []  # every template came from the cache (memory)
    cache.code.clear()  # as a new process would start: only the files are left
    again = _build(tmp_path / "again", incremental=True)
    assert compiled == []  # ... and every template came from the files
    assert sorted(fast) == sorted(fresh) == sorted(again)
    assert len([p for p in fresh if p.startswith("validations/")]) == 2 * len(NAMES)
    for page, html in fresh.items():
        assert fast[page] == html and again[page] == html, page
    # the index links every result, though it was written after the other pages
    for name in NAMES:
        for part in ("sample", "volume"):
            assert f"recomart-{name}.{part}.html" in fast["index.html"]


def test_an_unwritable_cache_folder_leaves_the_cache_in_memory(tmp_path, monkeypatch):
    (tmp_path / "cache").write_text("a file where the folder should be")
    cache, compiled = _fresh_cache(monkeypatch, tmp_path / "cache")
    assert cache.files is None
    first = _build(tmp_path / "first", incremental=False)
    assert compiled
    compiled.clear()
    assert _build(tmp_path / "second", incremental=True) == first and compiled == []


def test_a_cache_folder_others_can_write_is_not_used(tmp_path, monkeypatch):
    monkeypatch.setenv("RECOMART_CACHE_DIR", str(tmp_path / "cache"))
    folder = suites.template_cache_dir()
    folder.mkdir(parents=True)
    folder.chmod(0o777)  # someone else could plant compiled code here
    cache, _ = _fresh_cache(monkeypatch, tmp_path / "cache")
    assert cache.files is None


def test_lines_tell_whether_the_next_message_has_arrived():
    import os

    from recomart.validation.suite_worker import _Lines

    read, write = os.pipe()
    lines = _Lines(read)
    it = iter(lines)
    assert not lines.pending()
    os.write(write, b'{"op": "a"}\n{"op": "b"}\n{"op"')
    assert lines.pending()
    assert next(it) == b'{"op": "a"}'
    assert lines.pending()  # the second line is already in the buffer
    assert next(it) == b'{"op": "b"}'
    assert not lines.pending()  # only half a line so far
    os.write(write, b': "c"}\n')
    assert lines.pending() and next(it) == b'{"op": "c"}'
    os.close(write)
    assert list(it) == []  # EOF ends the messages
    os.close(read)
