"""Lineage: lake facts for OpenLineage datasets, and the upstream graph read back from the events.

Airflow's OpenLineage provider emits the events (a run per task, with input and output datasets);
the Airflow glue in ``plugins/recomart_openlineage.py`` asks :func:`lake_facts` what a lake Asset
is at run time (Delta version, schema, rows; or the raw files of the date with their sha256 from the
landing manifests). This module never imports Airflow: it reads the lake and the event file.

A lake Asset URI is ``file://recomart-lake/<zone>/<path>``; the provider names its dataset
namespace ``file://recomart-lake`` and name ``/<zone>/<path>``.

**What a task reports** (keys of the small JSON a task returns, read by the plugin from its
``return_value`` XCom when the task finishes; see :func:`reported_lineage`):

- ``read_versions``: ``{"<zone>/<table>": version}``, the Delta version the task actually read of
  each input table. An input table the task reports is described at that version (schema, rows,
  bytes, operation), with ``extra.version_source = "task"``; one it does not report is described
  at its latest version when the task finished, marked ``version_source = "latest_at_completion"``
  (a commit made while the task ran is then indistinguishable from what it read).
- ``written_versions``: the same for output tables (the version the task committed).
- ``merge_id``: the speed merge that ran in the task (``recomart.streaming.merge``); its input
  ``speed/clickstream`` becomes one dataset per landed file that merge read, with the file's
  sha256, size and rows from the merged-files record.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from recomart.lake import ZONES, Lake, LakeError
from recomart.orchestration import LAKE_ASSET_HOST

log = logging.getLogger(__name__)

LAKE_NAMESPACE = f"file://{LAKE_ASSET_HOST}"
FACET = "recomart"
"""Name of the custom dataset facet carrying the lake facts (kind, path, rows, sha256, ...)."""
MANIFEST = "_manifest.json"
HASH_LIMIT = 64 << 20
"""Plain files up to this size get a sha256 in their facet (bigger ones only their size)."""


READ_VERSIONS = "read_versions"
WRITTEN_VERSIONS = "written_versions"
MERGE_ID = "merge_id"
SPEED_FILES = "speed/clickstream"
"""The speed-zone landing folder (``speed/clickstream/date=<event date>/<file>.parquet``)."""


def reported_lineage(result: Any) -> dict[str, Any]:
    """The lineage keys of a task's return value (nothing when it returned something else)."""
    if not isinstance(result, dict):
        return {}
    out: dict[str, Any] = {}
    for key in (READ_VERSIONS, WRITTEN_VERSIONS):
        versions = result.get(key)
        if isinstance(versions, dict):
            out[key] = {str(k).strip("/"): int(v) for k, v in versions.items()
                        if isinstance(v, int) and not isinstance(v, bool)}
    if isinstance(result.get(MERGE_ID), str):
        out[MERGE_ID] = result[MERGE_ID]
    return out


def events_path(lake: Lake) -> Path:
    """Where the OpenLineage file transport writes (see ``recomart.airflow_env.lineage_env``)."""
    return lake.path("lineage", "events", "events.jsonl")


def lake_relpath(uri: str) -> str | None:
    """``file://recomart-lake/curated/users`` → ``curated/users``; None for other URIs."""
    parts = urlsplit(uri)
    if parts.scheme != "file" or parts.netloc != LAKE_ASSET_HOST:
        return None
    rel = parts.path.strip("/")
    return rel if rel.split("/", 1)[0] in ZONES else None


def relpath_of_dataset(namespace: str, name: str) -> str | None:
    return name.strip("/") if namespace == LAKE_NAMESPACE else None


@dataclass
class DatasetFacts:
    """What one lake dataset was when a task finished (becomes OpenLineage facets)."""

    name: str
    kind: str  # delta | raw_file | file | folder | missing
    path: str
    namespace: str = LAKE_NAMESPACE
    schema: list[tuple[str, str]] = field(default_factory=list)
    version: int | None = None
    rows: int | None = None
    bytes: int | None = None
    files: int | None = None
    sha256: str | None = None
    rows_written: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, [], {})}


def lake_facts(lake: Lake, uri: str, ds: str | None, reported: dict[str, Any] | None = None, *,
               output: bool = False) -> list[DatasetFacts]:
    """The dataset(s) behind a lake Asset URI for logical date ``ds``.

    A Delta table gives one dataset with version, schema and row count: at the version the task
    reported (``reported``, see :func:`reported_lineage`), else the latest. A raw landing folder
    (``raw/<source>/<dataset>``) gives one dataset per landed file of ``ds`` with its manifest's
    sha256; the speed landing folder gives one dataset per file the task's speed merge read (or,
    without a merge, the files of event date ``ds``) with its sha256; a file gives its size (and
    sha256 when small). Unknown URIs give nothing.
    """
    rel = lake_relpath(uri)
    if rel is None:
        return []
    reported = reported or {}
    zone, _, rest = rel.partition("/")
    path = lake.root / rel
    if rest and lake.table_exists(zone, rest):
        version = (reported.get(WRITTEN_VERSIONS if output else READ_VERSIONS) or {}).get(rel)
        return [_delta_facts(lake, zone, rest, version)]
    if rel == SPEED_FILES:
        facts = _speed_facts(lake, reported.get(MERGE_ID), ds)
        if facts is not None:
            return facts
    if path.is_dir() and ds:
        manifests = sorted(path.glob(f"ds={ds}/{MANIFEST}")) or sorted(path.glob(f"*/ds={ds}/{MANIFEST}"))
        facts = [f for m in manifests for f in _manifest_facts(lake, m)]
        if facts:
            return facts
    if path.is_file():
        return [_file_facts(lake, path)]
    kind = "folder" if path.is_dir() else "missing"
    return [DatasetFacts(name=f"/{rel}", kind=kind, path=rel)]


def _delta_facts(lake: Lake, zone: str, name: str, version: int | None = None) -> DatasetFacts:
    """A table at ``version`` (the one a task read or wrote), else at its latest version."""
    stats = lake.table_stats(zone, name, version)
    history = lake.table_history(zone, name)
    last = next((h for h in history if h.get("version") == stats["version"]),
                history[0] if version is None and history else {})
    metrics = last.get("operationMetrics") or {}
    extra = {k.removeprefix("recomart."): v for k, v in last.items() if k.startswith("recomart.")}
    extra["operation"] = last.get("operation")
    extra["version_source"] = "task" if version is not None else "latest_at_completion"
    return DatasetFacts(name=f"/{zone}/{name}", kind="delta", path=f"{zone}/{name}",
                        schema=lake.table_schema(zone, name, stats["version"]),
                        version=stats["version"], rows=stats["rows"], bytes=stats["bytes"],
                        files=stats["files"], rows_written=metrics.get("num_added_rows"), extra=extra)


def _speed_facts(lake: Lake, merge_id: str | None, ds: str | None) -> list[DatasetFacts] | None:
    """Landed speed files with their checksums: those a merge read (from the merged-files
    record), or without a merge the files of event date ``ds``. None when there is nothing."""
    from recomart.streaming.merge import merged_files

    if merge_id:
        record = merged_files(lake, merge_id).to_pylist()
        return [DatasetFacts(name=f"/{r['path']}", kind="speed_file", path=r["path"], rows=r["rows"],
                             bytes=r["bytes"], sha256=r["sha256"],
                             extra={"merge_id": merge_id, "master_version": r["master_version"]})
                for r in record] or [DatasetFacts(name=f"/{SPEED_FILES}", kind="folder",
                                                   path=SPEED_FILES,
                                                   extra={"merge_id": merge_id, "files_read": 0})]
    if not ds:
        return None
    files = sorted((lake.root / SPEED_FILES / f"date={ds}").glob("*.parquet"))
    known = {r["path"]: r for r in merged_files(lake).to_pylist()} if files else {}
    out = []
    for f in files:
        rel = f.relative_to(lake.root).as_posix()
        if rel in known:
            r = known[rel]
            out.append(DatasetFacts(name=f"/{rel}", kind="speed_file", path=rel, rows=r["rows"],
                                    bytes=r["bytes"], sha256=r["sha256"]))
        else:
            facts = _file_facts(lake, f)
            facts.kind = "speed_file"
            out.append(facts)
    return out or None


def _manifest_facts(lake: Lake, manifest_path: Path) -> list[DatasetFacts]:
    try:
        manifest = lake.read_json(manifest_path)
    except (LakeError, ValueError):
        return []
    out = []
    for m in manifest if isinstance(manifest, list) else [manifest]:
        rel = m.get("path") or (manifest_path.parent.relative_to(lake.root) / "data").as_posix()
        extra = {k: m[k] for k in ("source", "dataset", "logical_date", "fetched_at", "origin")
                 if k in m}
        out.append(DatasetFacts(name=f"/{rel}", kind="raw_file", path=rel, rows=m.get("rows"),
                                bytes=m.get("bytes"), sha256=m.get("sha256"), extra=extra))
    return out


def _file_facts(lake: Lake, path: Path) -> DatasetFacts:
    from recomart.lake import sha256_file

    rel = path.relative_to(lake.root).as_posix()
    size = path.stat().st_size
    return DatasetFacts(name=f"/{rel}", kind="file", path=rel, bytes=size,
                        sha256=sha256_file(path) if size <= HASH_LIMIT else None)


# ---- reading the events back ---------------------------------------------------------------------
@dataclass
class DatasetRef:
    namespace: str
    name: str
    facets: dict[str, Any] = field(default_factory=dict)

    @property
    def key(self) -> str:
        return f"{self.namespace}{self.name}" if self.name.startswith("/") \
            else f"{self.namespace}/{self.name}"

    @property
    def lake(self) -> dict[str, Any]:
        return self.facets.get(FACET) or {}


@dataclass
class RunNode:
    """One finished task run (its COMPLETE event)."""

    job: str
    ol_run_id: str
    airflow_run_id: str | None
    event_time: str
    start_time: str | None
    inputs: list[DatasetRef]
    outputs: list[DatasetRef]


def read_lake_events(lake: Lake) -> list[dict[str, Any]]:
    """The lake's lineage events: the appended ``events.jsonl`` (local lakes) and the
    one-object-per-event files (``event-*.json``, object-store lakes), in file order."""
    events = read_events(events_path(lake))
    objects = lake.glob(lake.path("lineage", "events"), "event-*.json")
    for blob in lake.read_many(objects):
        events += _parse_event_lines(blob.decode("utf-8").splitlines())
    return events


def read_events(path: Path) -> list[dict[str, Any]]:
    """Every JSON event in an OpenLineage file-transport file (bad lines are skipped)."""
    if not path.exists():
        return []
    with path.open("r", encoding="utf-8") as fh:
        return _parse_event_lines(fh, path)


def _parse_event_lines(lines: Iterable[str], where: object = "a lineage file") -> list[dict[str, Any]]:
    events = []
    for line in lines:
        line = line.strip()
        if not line:
            continue
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            log.warning("skipping a malformed lineage event line in %s", where)
    return events


def _refs(items: Iterable[dict[str, Any]]) -> list[DatasetRef]:
    out = []
    for d in items or []:
        facets = {**(d.get("facets") or {}), **(d.get("inputFacets") or {}),
                  **(d.get("outputFacets") or {})}
        out.append(DatasetRef(d["namespace"], d["name"], facets))
    return out


def _airflow_run_id(run_facets: dict[str, Any]) -> str | None:
    for key in ("airflow", "airflowDagRun"):
        dag_run = (run_facets.get(key) or {}).get("dagRun") or {}
        if dag_run.get("run_id"):
            return str(dag_run["run_id"])
    return None


class LineageGraph:
    """Datasets and the task runs that produced them, from COMPLETE events."""

    def __init__(self, events: Iterable[dict[str, Any]]) -> None:
        starts: dict[str, str] = {}
        runs: dict[str, RunNode] = {}
        for ev in events:
            run_id = (ev.get("run") or {}).get("runId")
            if not run_id:
                continue
            if ev.get("eventType") == "START":
                starts[run_id] = ev.get("eventTime", "")
            if ev.get("eventType") != "COMPLETE":
                continue
            runs[run_id] = RunNode(
                job=(ev.get("job") or {}).get("name", "?"), ol_run_id=run_id,
                airflow_run_id=_airflow_run_id((ev.get("run") or {}).get("facets") or {}),
                event_time=ev.get("eventTime", ""), start_time=None,
                inputs=_refs(ev.get("inputs")), outputs=_refs(ev.get("outputs")))
        for run_id, node in runs.items():
            node.start_time = starts.get(run_id)
        self.runs = sorted(runs.values(), key=lambda r: r.event_time)
        self.producers: dict[str, list[RunNode]] = {}
        self.datasets: dict[str, DatasetRef] = {}
        for run in self.runs:
            for ref in run.inputs:
                self.datasets.setdefault(ref.key, ref)
            for ref in run.outputs:
                self.datasets[ref.key] = ref
                self.producers.setdefault(ref.key, []).append(run)

    @classmethod
    def from_lake(cls, lake: Lake) -> LineageGraph:
        return cls(read_lake_events(lake))

    def resolve(self, query: str) -> str:
        """A dataset key from a name: exact key or name, a path suffix (``features/user_features``)
        or a unique substring (a model name such as ``recomart_hybrid``)."""
        q = query.strip()
        names = {key: ref.name.strip("/") for key, ref in self.datasets.items()}
        for test in (lambda k, n: k == q or n == q.strip("/"),
                     lambda k, n: n.endswith("/" + q.strip("/")),
                     lambda k, n: q in n):
            hits = sorted(k for k, n in names.items() if test(k, n))
            produced = [k for k in hits if k in self.producers]
            if len(hits) == 1:
                return hits[0]
            if produced:  # e.g. a model name: the dataset written last (its published output)
                return max(produced, key=lambda k: self.producers[k][-1].event_time)
            if hits:
                raise LakeError(f"{query!r} matches several datasets: {', '.join(hits[:10])}")
        raise LakeError(f"no dataset matching {query!r} in the lineage events "
                        f"({len(self.datasets)} datasets known)")

    def producer(self, key: str, before: str | None = None, airflow_run_id: str | None = None
                 ) -> RunNode | None:
        """The latest run that wrote ``key`` (finished before ``before``, or of that Airflow run)."""
        runs = self.producers.get(key, [])
        if airflow_run_id:
            same = [r for r in runs if r.airflow_run_id == airflow_run_id]
            if same:
                return same[-1]
        if before:
            runs = [r for r in runs if r.event_time <= before]
        return runs[-1] if runs else None

    def upstream(self, key: str, *, airflow_run_id: str | None = None, max_depth: int = 20
                 ) -> dict[str, Any]:
        """Nested ``{dataset, facets, run, inputs: [...]}`` back to datasets nothing produced."""
        return self._node(key, None, airflow_run_id, set(), max_depth)

    def _node(self, key: str, before: str | None, airflow_run_id: str | None, seen: set[str],
              depth: int) -> dict[str, Any]:
        ref = self.datasets[key]
        run = self.producer(key, before, airflow_run_id)
        node: dict[str, Any] = {"dataset": key, "name": ref.name, "namespace": ref.namespace,
                                "facets": ref.facets, "run": None, "inputs": []}
        if run is None:
            return node
        out_ref = next((o for o in run.outputs if o.key == key), ref)
        node["facets"] = out_ref.facets
        node["run"] = {"job": run.job, "airflow_run_id": run.airflow_run_id,
                       "ol_run_id": run.ol_run_id, "finished": run.event_time}
        marker = f"{key}@{run.ol_run_id}"
        if marker in seen or depth <= 0:
            node["truncated"] = True
            return node
        seen = seen | {marker}
        for inp in run.inputs:
            child = self._node(inp.key, run.start_time or run.event_time, run.airflow_run_id, seen,
                               depth - 1)
            if not child["run"]:
                child["facets"] = {**child["facets"], **inp.facets}
            node["inputs"].append(child)
        return node


def upstream_of(lake: Lake, query: str, airflow_run_id: str | None = None) -> dict[str, Any]:
    """The upstream tree of a dataset or model name, with raw files' sha256 from their manifests."""
    graph = LineageGraph.from_lake(lake)
    tree = graph.upstream(graph.resolve(query), airflow_run_id=airflow_run_id)
    _fill_checksums(lake, tree)
    return tree


def _fill_checksums(lake: Lake, node: dict[str, Any]) -> None:
    """Raw files whose events lack a sha256 get it from the landing manifest still in the lake."""
    facts = node["facets"].get(FACET) or {}
    rel = relpath_of_dataset(node["namespace"], node["name"])
    if rel and rel.startswith("raw/") and not facts.get("sha256"):
        manifest = (lake.root / rel).parent / MANIFEST
        if manifest.exists():
            found = next((f for f in _manifest_facts(lake, manifest) if f.path == rel), None)
            if found:
                node["facets"] = {**node["facets"], FACET: {**facts, **found.to_dict()}}
    for child in node["inputs"]:
        _fill_checksums(lake, child)


def leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    """The source datasets of a tree (nothing upstream of them)."""
    if not node["inputs"]:
        return [node]
    return [leaf for child in node["inputs"] for leaf in leaves(child)]


def walk(node: dict[str, Any]) -> Iterable[dict[str, Any]]:
    yield node
    for child in node["inputs"]:
        yield from walk(child)
