"""Speed-layer knobs (``RECOMART_STREAM_<FIELD>``), kept beside the code that uses them.

Shared settings (bootstrap servers, topic names, lake root) stay in ``recomart.config``.
"""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class StreamSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RECOMART_STREAM_", extra="ignore")

    app_id: str = "recomart-speed"
    partitions: int = Field(default=4, ge=1, description="Partitions of topics the app declares.")
    batch_max: int = Field(default=10_000, ge=1, description="Events per landing batch (at most).")
    batch_within_s: float = Field(default=1.0, gt=0, description="Max wait to fill a batch.")
    max_message_bytes: int = Field(default=16 * 1024, ge=64,
                                   description="Messages larger than this go to the DLQ (oversized).")
    session_timeout_s: float = Field(default=8.0, gt=0,
                                     description="Group session timeout (Tansu joins take half).")
    web_port: int = Field(default=6066, ge=1, le=65535, description="Faust web server (the /trending/ view).")
    window_s: int = Field(default=60, ge=1, description="Tumbling window of the trending table.")
    trending: bool = Field(default=True, description="Maintain the trending window table.")
    trend_flush_s: float = Field(default=2.0, gt=0, description="Trending table write interval.")
    decisions: bool = Field(default=True, description="Run the real-time decision agent.")
    decision_interval_s: float = Field(default=10.0, ge=0,
                                       description="Min seconds between two decisions per session.")
    champion_refresh_s: float = Field(default=120.0, gt=0)
    session_idle_s: float = Field(default=1800.0, gt=0, description="A session expires after this.")


@lru_cache(maxsize=1)
def get_stream_settings() -> StreamSettings:
    return StreamSettings()
