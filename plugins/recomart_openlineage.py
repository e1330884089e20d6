"""Airflow glue: OpenLineage datasets with lake facets for RecoMart's TaskFlow tasks.

Airflow's OpenLineage provider emits a START and a COMPLETE event for every task. For a TaskFlow
task (``_PythonDecoratedOperator``) it has no extractor, so it only turns the task's Asset
inlets/outlets into bare datasets. This plugin registers an extractor for those tasks on the
provider's own listener; it keeps the same datasets (static inlets/outlets, outlets attached at run
time, assets reported to the hook-lineage collector) and, for lake Assets
(``file://recomart-lake/...``), adds what the lake says when the task finishes (via
``recomart.lineage.lake_facts``): schema, Delta version, row counts and sizes (input/output
statistics), for raw landing folders one dataset per file landed for the run's date with the
manifest's sha256, and for the speed landing folder one dataset per landed file the task's merge
read, with its sha256.

Versions are the ones the task read, not the latest at completion: the extractor reads the task's
return value (its ``return_value`` XCom) and uses the keys ``read_versions``
(``{"curated/users": 3, ...}``), ``written_versions`` and ``merge_id`` documented in
``recomart.lineage``. A table the task does not report is described at its latest version, and its
facet says so (``extra.version_source = "latest_at_completion"``).

The provider still builds, redacts and sends the events through the configured transport (the
lake's file transport by default, an HTTP endpoint such as Marquez when set).

Equivalent configuration without this plugin's registration:
``AIRFLOW__OPENLINEAGE__EXTRACTORS=recomart_openlineage.RecomartLakeExtractor``.

The provider runs extraction in a forked child by default; deltalake's tokio runtime panics after
a fork ("the tokio runtime does not support forked processes"), so this plugin defaults
``[openlineage] execute_in_thread`` to True (the provider's own opt-in: extraction in a bounded
thread of the task process). Set ``AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD=False`` to opt out; lake
datasets then carry no Delta facts.
"""

from __future__ import annotations

import logging
import os
from typing import Any, ClassVar

import attr
from airflow.plugins_manager import AirflowPlugin
from airflow.providers.openlineage.extractors.base import BaseExtractor, OperatorLineage
from openlineage.client.facet_v2 import DatasetFacet

log = logging.getLogger(__name__)

TASKFLOW_OPERATORS = ("_PythonDecoratedOperator",)
os.environ.setdefault("AIRFLOW__OPENLINEAGE__EXECUTE_IN_THREAD", "True")


@attr.define
class RecomartLakeDatasetFacet(DatasetFacet):
    """Lake facts of a dataset: kind (delta, raw_file, file), lake path, rows, bytes, sha256."""

    kind: str
    path: str
    version: int | None = attr.field(default=None)
    rows: int | None = attr.field(default=None)
    bytes: int | None = attr.field(default=None)
    sha256: str | None = attr.field(default=None)
    extra: dict[str, Any] = attr.field(factory=dict)

    _additional_skip_redact: ClassVar[list[str]] = ["kind", "path", "sha256", "rows", "bytes"]

    @staticmethod
    def _get_schema() -> str:
        return "urn:recomart:openlineage:facets:RecomartLakeDatasetFacet:1-0-0"


def _uri(obj: Any) -> str | None:
    uri = getattr(obj, "uri", None)
    return uri if isinstance(uri, str) else None


def _task_uris(task: Any, task_instance: Any) -> tuple[list[str], list[str]]:
    """Input and output URIs: declared inlets/outlets, runtime outlets and hook-lineage assets."""
    inputs = [u for u in map(_uri, task.inlets or []) if u]
    outputs = [u for u in map(_uri, task.outlets or []) if u]
    if task_instance is not None:
        from airflow.providers.openlineage.utils.utils import get_runtime_outlet_assets

        try:
            outputs += [u for a, _ in get_runtime_outlet_assets(task_instance) if (u := _uri(a))]
        except Exception:  # lineage must never fail the task
            log.debug("no runtime outlet assets", exc_info=True)
    try:
        from airflow.providers.openlineage.extractors.manager import (
            _is_hook_lineage_collector_created,
        )
        from airflow.sdk.lineage import get_hook_lineage_collector

        if _is_hook_lineage_collector_created():
            collected = get_hook_lineage_collector().collected_assets
            inputs += [u for i in collected.inputs if (u := _uri(i.asset))]
            outputs += [u for o in collected.outputs if (u := _uri(o.asset))]
    except Exception:
        log.debug("no hook lineage", exc_info=True)
    return list(dict.fromkeys(inputs)), list(dict.fromkeys(outputs))


def _run_ds(task_instance: Any) -> str | None:
    """The run's date by the DAGs' own rule (``recomart.orchestration.context_ds``)."""
    from recomart.orchestration import context_ds

    try:
        return context_ds(task_instance.get_template_context())
    except Exception:
        log.debug("cannot tell the run's date", exc_info=True)
        return None


def _to_ol(facts: Any, *, output: bool, full: bool):
    from openlineage.client.event_v2 import InputDataset, OutputDataset
    from openlineage.client.facet_v2 import (
        dataset_version_dataset,
        datasource_dataset,
        input_statistics_input_dataset,
        output_statistics_output_dataset,
        schema_dataset,
        storage_dataset,
    )

    from recomart.lineage import FACET

    facets: dict[str, Any] = {
        "dataSource": datasource_dataset.DatasourceDatasetFacet(name="recomart-lake",
                                                                uri=facts.namespace)}
    if full:
        if facts.schema:
            facets["schema"] = schema_dataset.SchemaDatasetFacet(fields=[
                schema_dataset.SchemaDatasetFacetFields(name=n, type=t) for n, t in facts.schema])
        if facts.version is not None:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=str(facts.version))
        elif facts.sha256:
            facets["version"] = dataset_version_dataset.DatasetVersionDatasetFacet(
                datasetVersion=facts.sha256)
        if facts.kind == "delta":
            facets["storage"] = storage_dataset.StorageDatasetFacet(storageLayer="delta",
                                                                    fileFormat="parquet")
        facets[FACET] = RecomartLakeDatasetFacet(
            kind=facts.kind, path=facts.path, version=facts.version, rows=facts.rows,
            bytes=facts.bytes, sha256=facts.sha256, extra=facts.extra)
    if output:
        stats = {}
        if full and (facts.rows is not None or facts.bytes is not None):
            stats["outputStatistics"] = output_statistics_output_dataset.OutputStatisticsOutputDatasetFacet(
                rowCount=facts.rows_written if facts.rows_written is not None else facts.rows,
                size=facts.bytes, fileCount=facts.files)
        return OutputDataset(namespace=facts.namespace, name=facts.name, facets=facets,
                             outputFacets=stats)
    stats = {}
    if full and (facts.rows is not None or facts.bytes is not None):
        stats["inputStatistics"] = input_statistics_input_dataset.InputStatisticsInputDatasetFacet(
            rowCount=facts.rows, size=facts.bytes, fileCount=facts.files)
    return InputDataset(namespace=facts.namespace, name=facts.name, facets=facets, inputFacets=stats)


def _task_result(task_instance: Any) -> Any:
    """The task's return value (its ``return_value`` XCom, pushed before the listeners run)."""
    try:
        return task_instance.xcom_pull(task_ids=task_instance.task_id, key="return_value")
    except Exception:  # lineage must never fail the task
        log.debug("no return value for lineage", exc_info=True)
        return None


def _datasets(uris: list[str], ds: str | None, *, output: bool, full: bool,
              reported: dict[str, Any] | None = None) -> list[Any]:
    from airflow.providers.common.compat.assets import Asset
    from airflow.providers.common.compat.openlineage.utils.utils import translate_airflow_asset

    from recomart.lake import Lake
    from recomart.lineage import DatasetFacts, lake_relpath

    lake = Lake() if full else None
    out = []
    for uri in uris:
        rel = lake_relpath(uri)
        if rel is None:  # not a lake Asset: let the provider translate it as usual
            if (ds_ := translate_airflow_asset(Asset(uri=uri), None)) is not None:
                out.append(ds_)
            continue
        try:
            from recomart.lineage import lake_facts

            facts = lake_facts(lake, uri, ds, reported, output=output) if lake is not None else []
        except BaseException as exc:  # also a Rust panic of deltalake (a BaseException)
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            log.warning("could not read lake facts for %s", uri, exc_info=True)
            facts = []
        facts = facts or [DatasetFacts(name=f"/{rel}", kind="unknown", path=rel)]
        out += [_to_ol(f, output=output, full=full) for f in facts]
    return out


class RecomartLakeExtractor(BaseExtractor):
    """OpenLineage extractor for TaskFlow tasks whose inlets/outlets are lake Assets."""

    @classmethod
    def get_operator_classnames(cls) -> list[str]:
        return list(TASKFLOW_OPERATORS)

    def _source_code_facets(self) -> dict[str, Any]:
        import inspect

        from openlineage.client.facet_v2 import source_code_job

        fn = getattr(self.operator, "python_callable", None)
        if fn is None or not getattr(self, "source_code_enabled", True):
            return {}
        try:
            return {"sourceCode": source_code_job.SourceCodeJobFacet(
                language="python", sourceCode=inspect.getsource(fn))}
        except (OSError, TypeError):
            return {}

    def _execute_extraction(self) -> OperatorLineage | None:
        """START event: the declared datasets, without reading the lake."""
        inputs, outputs = _task_uris(self.operator, None)
        return OperatorLineage(inputs=_datasets(inputs, None, output=False, full=False),
                               outputs=_datasets(outputs, None, output=True, full=False),
                               job_facets=self._source_code_facets())

    def extract_on_complete(self, task_instance: Any) -> OperatorLineage | None:
        """COMPLETE/FAIL event: the datasets at the versions the task reported reading and writing
        (its return value), else as the lake has them now the task has finished."""
        from recomart.lineage import reported_lineage

        inputs, outputs = _task_uris(self.operator, task_instance)
        ds = _run_ds(task_instance)
        reported = reported_lineage(_task_result(task_instance))
        return OperatorLineage(inputs=_datasets(inputs, ds, output=False, full=True, reported=reported),
                               outputs=_datasets(outputs, ds, output=True, full=True, reported=reported),
                               job_facets=self._source_code_facets())


def register_extractor() -> bool:
    """Attach the extractor to the provider's listener (no-op when OpenLineage is disabled)."""
    try:
        from airflow.providers.openlineage import conf

        if conf.is_disabled():
            return False
        from airflow.providers.openlineage.plugins.listener import get_openlineage_listener

        manager = get_openlineage_listener().extractor_manager
    except Exception:
        log.warning("OpenLineage provider unavailable: RecoMart lineage facets are off", exc_info=True)
        return False
    for name in TASKFLOW_OPERATORS:
        if name not in manager.extractors:  # an explicitly configured extractor wins
            manager.add_extractor(name, RecomartLakeExtractor)
    return True


class RecomartLineagePlugin(AirflowPlugin):
    """Loads with the other plugins (workers, dag.test()) and registers the extractor."""

    name = "recomart_lineage"


register_extractor()
