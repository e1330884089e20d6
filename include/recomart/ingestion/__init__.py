"""Ingestion: land source files and API pages in the raw zone exactly as received.

Raw landings are immutable and idempotent per logical date: re-landing identical bytes is a no-op,
different bytes for an already-landed CSV date fail loudly (see ``landing.RawLandingConflict``).
"""

from __future__ import annotations

from recomart.ingestion.catalog import ingest_catalog
from recomart.ingestion.csv_sources import SourceMissingError, ingest_csv_sources
from recomart.ingestion.landing import RawLandingConflict, landing_dir, read_manifest

__all__ = ["RawLandingConflict", "SourceMissingError", "ingest_catalog", "ingest_csv_sources",
           "landing_dir", "read_manifest"]
