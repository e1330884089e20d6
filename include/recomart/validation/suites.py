"""Great Expectations 1.x suites: distribution-level checks that complement the Pandera row rules.

Per dataset, two validation definitions in one ephemeral context:
- ``<name>.sample``: null rates and value sets on a seeded sample of at most ``SAMPLE_ROWS`` rows
  (GX computes metrics row-wise in pandas; on a 1M-row table the sample keeps it in seconds while
  every row was already checked by Pandera, so nothing row-level is missed);
- ``<name>.volume``: row count vs the previous run (0.5x-2x) and freshness (latest timestamp at most
  ``FRESHNESS_DAYS`` before the logical date's end) on the full table, both cheap aggregates. GX
  gets the timestamp column as ``datetime64`` with datetime bounds: formatting 2M timestamps as
  strings for it (and GX hashing those strings for its batch fingerprint) took ~10 s at 100k users;
  the samples keep their timestamps as they are too (their only timestamp check is not-null).
Results feed the summary's ``checks``; Data Docs HTML are built once, after every suite ran, into
``gx_data_docs/`` (a docs action per checkpoint re-rendered every earlier result each time; the
validation definitions run directly, as a checkpoint per dataframe only added store traffic).
GX findings are warnings (dataset status ``warn``); only the bad-row ratio fails a run.
"""

from __future__ import annotations

import logging
import os
import threading
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd

from recomart.errors import RecomartError
from recomart.tables import DATASETS, EVENT_TYPES, GENDERS

log = logging.getLogger(__name__)
SAMPLE_ROWS = 100_000
FRESHNESS_DAYS = 7
# tolerated null share for optional columns (the rest must be complete)
MAX_NULL_RATE = {"age": 0.5, "region": 0.5, "brand": 0.5, "description": 0.5, "subcategory": 0.5,
                 "review": 0.95, "price": 0.8}
# null for most rows by design (only events that follow a served list carry a request_id): no
# null-rate expectation at all rather than one that cannot fail
NULL_BY_DESIGN = frozenset({"request_id"})
VALUE_SETS = {"gender": list(GENDERS), "event_type": list(EVENT_TYPES)}


class SuiteDefinitionError(RecomartError):
    """GX refused an expectation this module defines: a bug here, never a data problem."""


def _import_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx

    return gx


def prefetch_gx() -> threading.Thread:
    """Import GX (~3 s of Python) in a background thread while the caller parses and coerces
    (Arrow work that releases the GIL); :func:`run_suites` then finds it imported. A failed
    prefetch is harmless: the import is simply retried (and reported) where GX is used."""

    def _run() -> None:
        try:
            _import_gx()
        except Exception:
            log.debug("GX prefetch failed; importing it again when the suites run", exc_info=True)

    thread = threading.Thread(target=_run, name="recomart-gx-import", daemon=True)
    thread.start()
    return thread


_TEMPLATES: Any = None  # the process's compiled Data Docs templates (see _cache_templates)


def template_cache_dir() -> Path:
    """Where compiled Data Docs templates persist between runs: a per-user cache (like pip's;
    ``RECOMART_CACHE_DIR`` moves it), one folder per jinja2 and GX version (code one compiler
    wrote is never run by another)."""
    import great_expectations
    import jinja2

    base = os.environ.get("RECOMART_CACHE_DIR") or (
        Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "recomart")
    return (Path(base) / "gx-templates"
            / f"jinja2-{jinja2.__version__}-gx-{great_expectations.__version__}")


def _private_folder(folder: Path) -> bool:
    """``folder`` exists (made if need be), is ours and only ours: its files are loaded as code."""
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = folder.stat()
    except OSError:
        return False
    return st.st_uid == os.getuid() and not st.st_mode & 0o077


def _cache_templates() -> None:
    """Give every GX jinja view one jinja2 bytecode cache: in memory for the process, and on disk
    (``template_cache_dir``) between runs.

    GX makes a new jinja Environment for every docs build, and each compiled its ~50 templates
    again: 0.35 s of a 0.46 s build here (cProfile), on the validation's critical path. Jinja
    checks an entry's source checksum and Python's bytecode version before it uses it; the files
    are written atomically. Where the folder cannot be made, or is not private to this user, the
    cache is the process's memory only."""
    global _TEMPLATES
    if _TEMPLATES is not None:
        return
    import jinja2
    from great_expectations.render.view.view import DefaultJinjaView

    folder = template_cache_dir()
    files = jinja2.FileSystemBytecodeCache(str(folder)) if _private_folder(folder) else None

    class TemplateCache(jinja2.BytecodeCache):
        def __init__(self) -> None:
            self.code: dict[str, bytes] = {}
            self.files = files

        def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            code = self.code.get(bucket.key)
            if code is not None:
                bucket.bytecode_from_string(code)
            elif self.files is not None:
                self.files.load_bytecode(bucket)
                if bucket.code is not None:
                    self.code[bucket.key] = bucket.bytecode_to_string()

        def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
            self.code[bucket.key] = bucket.bytecode_to_string()
            if self.files is not None:
                try:
                    self.files.dump_bytecode(bucket)
                except OSError as exc:  # a full or read-only disk costs a compile, not the docs
                    log.debug("template cache %s not written: %s", folder, exc)

        def clear(self) -> None:
            """Forget every entry, in memory and on disk."""
            self.code.clear()
            if self.files is not None:
                self.files.clear()

    cache = TemplateCache()
    init = DefaultJinjaView.__init__

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        self.env.bytecode_cache = cache

    DefaultJinjaView.__init__ = __init__  # type: ignore[method-assign]
    _TEMPLATES = cache


def _context():
    gx = _import_gx()
    _cache_templates()
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    return gx, ctx


def _sample_expectations(gx, name: str, nullable: frozenset[str]) -> list:
    out = []
    for col in DATASETS[name].columns:
        if col in NULL_BY_DESIGN:
            continue
        mostly = 1.0 - MAX_NULL_RATE.get(col, 0.5) if col in nullable else 1.0
        out.append(gx.expectations.ExpectColumnValuesToNotBeNull(column=col, mostly=round(mostly, 4)))
        if col in VALUE_SETS:
            out.append(gx.expectations.ExpectColumnValuesToBeInSet(column=col, value_set=VALUE_SETS[col]))
    if name == "ratings":
        out.append(gx.expectations.ExpectColumnMeanToBeBetween(column="rating", min_value=1.0,
                                                                max_value=5.0))
    return out


def _volume_expectations(gx, name: str, previous_rows: int | None, ds_end: pd.Timestamp) -> list:
    if previous_rows:
        bounds = {"min_value": previous_rows // 2, "max_value": previous_rows * 2}
    else:  # first run: no baseline yet
        bounds = {"min_value": 0, "max_value": None}
    out = [gx.expectations.ExpectTableRowCountToBeBetween(**bounds)]
    ts_col = time_column(name)
    if ts_col and name != "users":
        oldest = ds_end - pd.Timedelta(days=FRESHNESS_DAYS)
        out.append(gx.expectations.ExpectColumnMaxToBeBetween(
            column=ts_col, min_value=oldest.to_pydatetime(), max_value=ds_end.to_pydatetime(),
            meta={"check": "freshness"}))
    return out


def time_column(name: str) -> str | None:
    return next((c for c, k in DATASETS[name].columns.items() if k in ("timestamp", "date")), None)


def _iso(value: Any) -> Any:
    """Datetimes as ISO strings in check details (the summary and the PDF show them as text)."""
    if value is pd.NaT:  # the max of an empty column
        return None
    if isinstance(value, pd.Timestamp | datetime):
        return pd.Timestamp(value).isoformat()
    return value


def _as_check(result: Any, suite_name: str) -> dict[str, Any]:
    cfg = result.expectation_config
    res = result.result or {}
    kwargs = {k: _iso(v) for k, v in cfg.kwargs.items() if k not in ("column", "batch_id")}
    check = (cfg.meta or {}).get("check") or cfg.type.removeprefix("expect_")
    observed = _iso(res.get("observed_value"))
    detail = f"{kwargs}" + (f"; observed {observed}" if observed is not None else "")
    if res.get("unexpected_percent") is not None:
        detail += f"; unexpected {res['unexpected_percent']:.2f}%"
    return {"suite": f"great_expectations:{suite_name}", "check": check,
            "column": cfg.kwargs.get("column"), "passed": bool(result.success),
            "failed_rows": res.get("unexpected_count"), "detail": detail}


class SuiteRun:
    """One validation run's GX context, fed one dataset at a time (so a caller can run each
    dataset's suites while it still validates the next one); Data Docs are built at the end."""

    def __init__(self, nullables: dict[str, frozenset[str]], previous_rows: dict[str, int],
                 ds_end: pd.Timestamp, docs_dir: Path):
        self.gx, self.ctx = _context()
        self.nullables, self.previous_rows, self.ds_end = nullables, previous_rows, ds_end
        self.docs_dir = docs_dir
        site = {"class_name": "SiteBuilder", "show_how_to_buttons": False,
                "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
                "store_backend": {"class_name": "TupleFilesystemStoreBackend",
                                  "base_directory": str(docs_dir)}}
        self.ctx.add_data_docs_site(site_name="recomart", site_config=site)
        self.source = self.ctx.data_sources.add_pandas("recomart")
        self._rendered: list[Any] = []  # store keys whose Data Docs pages are written

    def _suite(self, suite_name: str, expectations: list):
        """The suite saved once with all its expectations (``suite.add_expectation`` on a saved
        suite re-serialises the whole suite into the store for every expectation)."""
        suite = self.ctx.suites.add(self.gx.ExpectationSuite(name=suite_name, expectations=expectations))
        if len(suite.expectations) != len(expectations):  # GX logs and drops an invalid one
            raise SuiteDefinitionError(f"GX suite {suite_name}: {len(expectations)} expectations given, "
                             f"{len(suite.expectations)} accepted")
        return suite

    def add(self, name: str, sample: pd.DataFrame, volume: pd.DataFrame) -> list[dict]:
        """Run ``name``'s two suites on (its curated sample, its full time column: see
        :func:`recomart.validation.gx_input.gx_tables`); their results are stored for the docs."""
        gx = self.gx
        parts = {"sample": (sample, _sample_expectations(gx, name, self.nullables[name])),
                 "volume": (volume, _volume_expectations(gx, name, self.previous_rows.get(name),
                                                         self.ds_end))}
        checks: list[dict] = []
        for part, (data, expectations) in parts.items():
            suite_name = f"{name}.{part}"
            asset = self.source.add_dataframe_asset(name=suite_name)
            batch_def = asset.add_batch_definition_whole_dataframe(f"{suite_name}.batch")
            vd = self.ctx.validation_definitions.add(gx.ValidationDefinition(
                name=suite_name, data=batch_def, suite=self._suite(suite_name, expectations)))
            result = vd.run(batch_parameters={"dataframe": data})
            checks += [_as_check(r, suite_name) for r in result.results]
        return checks

    def _unrendered(self) -> list[Any]:
        keys = [*self.ctx.validation_results_store.list_keys(),
                *self.ctx.expectations_store.list_keys()]
        return [k for k in keys if k not in self._rendered]

    def render_added(self) -> None:
        """Write the Data Docs pages of the results and suites stored since the last call, not
        the index: the GX child does this while it waits for the next dataset, so that only the
        last dataset's pages and the index are left for the end of the run."""
        keys = self._unrendered()
        if keys:
            self.ctx.build_data_docs(site_names=["recomart"], resource_identifiers=keys,
                                     build_index=False)
            self._rendered += keys

    def build_docs(self) -> Path:
        """The pages not written yet and the index (which lists every stored result). Each page
        is rendered once: a docs action per validation would re-render every earlier result."""
        keys = self._unrendered()
        if keys or not self._rendered:  # (none stored at all: None renders every page, i.e. none)
            self.ctx.build_data_docs(site_names=["recomart"], resource_identifiers=keys or None)
        else:  # every page written: the index, and one page again (an empty list would mean
            # "every page")
            self.ctx.build_data_docs(site_names=["recomart"], resource_identifiers=self._rendered[:1])
        self._rendered += keys
        return self.docs_dir / "index.html"


def run_suites(frames: dict[str, tuple[pd.DataFrame, pd.DataFrame]],
               nullables: dict[str, frozenset[str]], previous_rows: dict[str, int],
               ds_end: pd.Timestamp, docs_dir: Path) -> tuple[dict[str, list[dict]], Path]:
    """Run each dataset's suites on (its curated sample, its full time column); returns checks
    per dataset and the docs index. In this process: ``recomart.validation.suite_worker`` runs the
    same :class:`SuiteRun` in a child process beside the Arrow work.

    ``docs_dir`` is a local folder (``Lake.build_tree`` puts it into the lake afterwards)."""
    run = SuiteRun(nullables, previous_rows, ds_end, docs_dir)
    checks = {name: run.add(name, sample, volume) for name, (sample, volume) in frames.items()}
    return checks, run.build_docs()
