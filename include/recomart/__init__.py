"""RecoMart: a lambda-architecture recommendation data pipeline (library half; no Airflow here)."""

__version__ = "0.1.0"
