"""Typed settings: one way in for every knob, embedded defaults, overridable by environment.

Every variable is ``RECOMART_<FIELD>`` (e.g. ``RECOMART_LAKE_ROOT``). With nothing set the whole
pipeline runs on one machine: a local lake, SQLite for MLflow, an embedded Kafka-protocol broker.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def project_root() -> Path:
    """The checkout this package was installed from (editable install), else the working directory."""
    here = Path(__file__).resolve().parents[2]
    return here if (here / "pyproject.toml").exists() else Path.cwd()


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
